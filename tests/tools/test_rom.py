"""The ROM stubs assemble to what was meant: 16-bit encodings, no operand/address-size
prefixes (keystone's 16-bit pitfalls), traps where the firmware expects them;
and the prebuilt roms/bios.bin and bios.sym pvboot loads are what bios.asm assembles to."""
import capstone
import pytest

from pvboot.emu.machine import TRAP_PORT
from pvboot.firmware.bios import SERVICES
from pvboot.roms import ROM_BASE, RESET_VECTOR_OFFSET, build_rom
from pvboot.tools import build_rom as rom_builder
from pvboot.tools.build_rom import split_entries

CS16 = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)
CS16.detail = True


def disasm(label):
    rom = build_rom()
    start = rom.symbols[label] - ROM_BASE
    code = rom.image[start:start + rom.sizes[label]]
    insns = list(CS16.disasm(code, start))
    assert sum(i.size for i in insns) == len(code), f"{label}: undecodable bytes {code.hex()}"
    return insns


@pytest.mark.parametrize("label", sorted(build_rom().symbols))
def test_no_size_prefixes(label):
    for insn in disasm(label):
        # capstone prints `66 cf` as plain "iret"/"ret": look at the raw prefix bytes.
        assert 0x66 not in insn.prefix and 0x67 not in insn.prefix, \
            f"{label}: {insn.mnemonic} {insn.op_str} has a 32-bit size prefix ({insn.bytes.hex()})"
        if insn.mnemonic in ("ret", "retf", "iret", "call", "push", "pop"):
            assert insn.bytes[0] not in (0x66, 0x67)


@pytest.mark.parametrize("vector,label", [(v, l) for v, l, _ in SERVICES])
def test_service_stub_traps_then_returns(vector, label):
    insns = disasm(label)
    out = insns[0]
    assert out.mnemonic == "out" and out.bytes == bytes([0xE6, TRAP_PORT]), f"{label} starts {out.bytes.hex()}"
    assert insns[-1].bytes == b"\xcf", f"{label} must end in a 16-bit iret"


def test_reset_vector_jumps_far_to_post():
    rom = build_rom()
    insn = disasm("reset_vector")[0]
    assert rom.symbols["reset_vector"] == ROM_BASE + RESET_VECTOR_OFFSET
    assert insn.bytes[0] == 0xEA and len(insn.bytes) == 5
    offset = int.from_bytes(insn.bytes[1:3], "little")
    segment = int.from_bytes(insn.bytes[3:5], "little")
    assert segment * 16 + offset == rom.symbols["post_entry"]


def test_post_calls_int19_then_int18():
    mnemonics = [(i.mnemonic, i.op_str) for i in disasm("post_entry")]
    assert ("int", "0x19") in mnemonics
    assert mnemonics.index(("int", "0x19")) < mnemonics.index(("int", "0x18"))


def test_timer_stub_chains_to_int1c_and_acknowledges_the_pic():
    insns = [(i.mnemonic, i.op_str) for i in disasm("int08_entry")]
    assert ("int", "0x1c") in insns
    assert ("out", "0x20, al") in insns


def test_split_entries_rejects_code_before_a_label():
    with pytest.raises(ValueError):
        split_entries("    iret\nfoo:\n    iret\n")


def test_prebuilt_rom_matches_the_source():
    fresh, prebuilt = rom_builder.assemble_rom(), build_rom()
    assert fresh.image == prebuilt.image, "run: python -m pvboot.tools.build_rom"
    assert (fresh.symbols, fresh.sizes) == (prebuilt.symbols, prebuilt.sizes)
    assert rom_builder.main(["--check"]) == 0


def test_rebuilding_writes_what_pvboot_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(rom_builder, "IMAGE", tmp_path / "bios.bin")
    monkeypatch.setattr(rom_builder, "SYMBOLS", tmp_path / "bios.sym")
    assert rom_builder.main(["--check"]) == 1            # missing: out of date
    assert rom_builder.main([]) == 0
    assert (tmp_path / "bios.bin").read_bytes() == build_rom().image
    assert rom_builder.main(["--check"]) == 0
