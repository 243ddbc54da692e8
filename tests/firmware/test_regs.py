"""Regs: a BIOS call's status (AH, CF) and flags are set in place, and nothing else
the caller sees changes with them."""
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from pvboot.emu.machine import Machine
from pvboot.firmware.regs import Regs

FRAME = 0x6FFA          # the caller's IP, CS, FLAGS, as `int` pushed them


def _regs(machine, eax, flags):
    cpu = machine.cpu
    cpu.set("eax", eax)
    cpu.set("ss", 0)
    cpu.set("esp", FRAME)
    machine.mem.write(FRAME, struct.pack("<HHH", 0x7C00, 0, flags))
    return Regs.at_trap(cpu, machine.mem)


@settings(max_examples=200, deadline=None)
@given(eax=st.integers(0, 0xFFFFFFFF), flags=st.integers(0, 0xFFFF),
       ah=st.integers(0, 0xFF), cf=st.booleans(), zf=st.booleans())
def test_status_and_flags_change_only_their_own_bits(eax, flags, ah, cf, zf):
    machine = Machine(memory_mib=1)
    try:
        regs = _regs(machine, eax, flags)
        regs.set_ah_cf(ah, cf)
        regs.zf = zf
        regs.commit()
        assert machine.cpu.get("eax") == (eax & 0xFFFF00FF) | (ah << 8)
        expected = (flags & ~0x41) | (0x01 if cf else 0) | (0x40 if zf else 0)
        assert machine.mem.read_u16(FRAME + 4) == expected
        assert (regs.ah, regs.cf, regs.zf) == (ah, cf, zf)
        # The rest of the frame (the return address) is untouched.
        assert machine.mem.read(FRAME, 4) == struct.pack("<HH", 0x7C00, 0)
    finally:
        machine.close()


def test_ok_and_fail_set_ah_and_cf_as_the_properties_do():
    machine = Machine(memory_mib=1)
    try:
        regs = _regs(machine, 0xDEAD12AB, 0x0202)
        regs.fail(0x80)
        assert (regs.eax, regs.cf, regs.interrupts_enabled) == (0xDEAD80AB, True, True)
        regs.ok(0x30)
        assert (regs.eax, regs.cf, regs.interrupts_enabled) == (0xDEAD30AB, False, True)
        regs.ok()
        assert (regs.ah, regs.cf) == (0, False)
    finally:
        machine.close()
