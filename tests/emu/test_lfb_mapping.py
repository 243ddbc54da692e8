"""The display's linear frame buffer is memory above RAM: guest stores there reach video
memory, and addresses past it are still unmapped (a crash report, not a silent write)."""
import pytest

from pvboot.emu.devices import vga as vga_device
from pvboot.tools import runner
from tests.test_cli import image

PMODE_STORE = """
    cli
{prelude}
    xor ax, ax
    mov ds, ax
    lgdt [gdtr]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp 0x08:pm
.code32
pm:
    mov ax, 0x10
    mov ds, ax
    mov dword ptr [{address}], 0x11223344
    hlt
.align 8
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
gdtr:
    .word 23
    .long gdt
"""


# DISPI on at 320x200x32 through its ports (index 1CEh, data 1CFh).
DISPI_ON = "\n".join(f"""
    mov dx, 0x1CE
    mov ax, {index}
    out dx, ax
    inc dx
    mov ax, {value}
    out dx, ax""" for index, value in ((3, 32), (1, 320), (2, 200), (4, 0x41)))


def test_store_to_the_frame_buffer_reaches_video_memory(tmp_path):
    source = PMODE_STORE.format(prelude=DISPI_ON, address=vga_device.LFB_BASE + 4 * 321)
    result = runner.boot([image(tmp_path, source)], driver="host", timeout=60)
    assert result.stop.reason == "halted", result.stop
    screen = result.display
    assert (screen.kind, screen.width, screen.height) == ("rgb", 320, 200)
    pixel = 321                                    # x 1, y 1: blue 44, green 33, red 22
    assert screen.pixels[3 * pixel:3 * pixel + 3] == bytes((0x22, 0x33, 0x44))
    assert screen.pixels.count(0) == 320 * 200 * 3 - 3


@pytest.mark.parametrize("address", [vga_device.LFB_BASE + vga_device.VRAM_SIZE, vga_device.LFB_BASE - 4])
def test_addresses_around_the_frame_buffer_are_unmapped(tmp_path, address):
    source = PMODE_STORE.format(prelude="", address=address)
    result = runner.boot([image(tmp_path, source)], driver="host", timeout=60)
    assert result.stop.reason == "unmapped-access", result.stop
    assert f"{address:#x}" in result.stop.detail
