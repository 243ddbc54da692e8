"""One 1-sector INT 13h AH=42h read into each region of the PC memory map
(emu/memmap.py), through every disk path, gives what QEMU + SeaBIOS gives: the status
and the word the buffer then holds (data lands in RAM and VGA, ROM keeps its bytes)."""
import pytest

from pvboot.emu import memmap
from pvboot.tools import qemu, runner
from pvboot.tools.diskpattern import pattern_sector
from tests.conftest import assemble16
from tests.firmware.guest_serial import SERIAL_ROUTINES

SOURCE_LBA = 5
# (segment, offset) of one buffer in each region: conventional RAM, the EBDA (its
# upper half: SeaBIOS keeps its own data at the bottom), the VGA graphics window and
# text buffer, the VGA BIOS and an empty option ROM slot, the BIOS ROM.  RAM above 1 MiB
# is left to tools/comparedisk.py: SeaBIOS's 16-bit ATA driver wraps such a buffer to
# 1 MiB lower, and the transcripts of that are compared there.
BUFFERS = ((0x1000, 0), (0x9FE0, 0), (0xA000, 0), (0xB800, 0), (0xC000, 0),
           (0xD000, 0), (0xF000, 0))
REGION_KINDS = {memmap.RAM, memmap.VGA, memmap.ROM}

def region_program():
    """For each buffer: one AH=42h read, then "AH WORD" (status, first word at the
    buffer) on COM1; exit 0 through port 0xF4."""
    entries = "\n".join(f"    .word {off:#x}, {seg:#x}" for seg, off in BUFFERS)
    return assemble16(f"""
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 0x7000
        mov bp, offset buffers
        mov cx, {len(BUFFERS)}
    next:
        push cx
        mov ax, [bp]
        mov [dap + 4], ax
        mov ax, [bp + 2]
        mov [dap + 6], ax
        mov word ptr [dap + 2], 1
        mov si, offset dap
        mov ah, 0x42
        mov dl, 0x80
        int 0x13
        mov al, ah
        call hex8
        mov al, ' '
        call putc
        les di, [bp]
        mov ax, es:[di]
        push ax
        mov al, ah
        call hex8
        pop ax
        call hex8
        mov al, 10
        call putc
        add bp, 4
        pop cx
        loop next
        mov al, 0
        out 0xf4, al
    1:  hlt
        jmp 1b
    {SERIAL_ROUTINES}
    .align 4
    dap:
        .byte 16, 0
        .word 1, 0, 0
        .quad {SOURCE_LBA}
    buffers:
    {entries}
    """)


@pytest.fixture(scope="module")
def region_disk(tmp_path_factory):
    path = tmp_path_factory.mktemp("memmap") / "regions.img"
    sectors = [region_program()] + [pattern_sector(lba) for lba in range(1, 64)]
    path.write_bytes(b"".join(sectors))
    return str(path)


def test_buffers_cover_every_kind_of_region():
    size = 64 * memmap.MiB
    kinds = set()
    for seg, off in BUFFERS:
        addr = (seg << 4) + off
        kinds |= {r.kind for r in memmap.regions(size) if r.start <= addr < r.end}
    assert kinds == REGION_KINDS


def test_the_direct_path_grants_only_ram():
    size = 64 * memmap.MiB
    assert memmap.is_ram(0x10000, 512, size) and memmap.is_ram(0x100000, 512, size)
    for addr in (0xA0000, 0xB8000, 0xC0000, 0xF0000, 0x9FE00 + 0x200 - 1):
        assert memmap.is_dma_writable(addr, 1, size) == (addr < memmap.VGA_END)
    assert not memmap.is_ram(0xB8000, 512, size)
    assert not memmap.is_ram_frame(0xB8, size) and memmap.is_ram_frame(0x9F, size)


@pytest.fixture(scope="module")
def seabios_transcript(region_disk):
    if not qemu.qemu_available():
        pytest.skip(f"{qemu.QEMU} not installed (Debian package {qemu.QEMU_PACKAGE})")
    exit_value, serial = qemu.run_qemu(region_disk, timeout=30)
    assert exit_value == 0, serial
    return serial.splitlines()


def landed(seg, off):
    """Whether the sector's data lands at seg:off on a PC: RAM and the VGA text buffer
    keep it, ROM drops it; None for the graphics window A0000-AFFFF, which QEMU's VGA
    does not decode in text mode (reads FFFF there) while pvboot's VGA is plain memory."""
    addr = (seg << 4) + off
    if memmap.VGA_BASE <= addr < memmap.VGA_TEXT_BASE:
        return None
    return memmap.is_dma_writable(addr, 512, 64 * memmap.MiB)


def check_transcript(lines):
    sector_word = f"{int.from_bytes(pattern_sector(SOURCE_LBA)[:2], 'little'):04X}"
    assert len(lines) == len(BUFFERS), lines
    for (seg, off), line in zip(BUFFERS, lines):
        status, word = line.split()
        assert status == "00", f"{seg:04X}:{off:04X}: {line}"
        expected = landed(seg, off)
        if expected is not None:
            assert (word == sector_word) == expected, f"{seg:04X}:{off:04X}: {line}"


def test_seabios_reads_into_every_region(seabios_transcript):
    check_transcript(seabios_transcript)


@pytest.mark.parametrize("driver,pv_path", [("xen", "bounce"), ("xen", "direct"), ("ata", "bounce"),
                                            ("host", "bounce")])
def test_each_path_answers_as_seabios(region_disk, seabios_transcript, driver, pv_path):
    result = runner.boot([region_disk], driver=driver, pv_path=pv_path, timeout=30)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    lines = result.console.splitlines()
    check_transcript(lines)
    statuses = [line.split()[0] for line in lines]
    assert statuses == [line.split()[0] for line in seabios_transcript]
