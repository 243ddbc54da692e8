"""Guest-written sizes the video BIOS and --screenshot trust are clamped to what the
hardware allows (issue 13): a guest that writes absurd columns, rows, page size, page
start, cursor and font height into the BDA, or absurd resolutions into the display's
DISPI registers, gets a bounded screen, bounded memory and a normal end of run."""
import tracemalloc

import pytest

from pvboot.emu.devices import vga as vga_device
from pvboot.firmware import video
from pvboot.tools import runner
from tests.firmware.test_vbe import decode_png
from tests.cli import image, pvboot

# BDA at 0040:0000; every field INT 10h and the screenshot read, set to its worst.
HOSTILE_BDA = """
    mov ax, 0x40
    mov es, ax
    mov word ptr es:[0x4A], 0xFFFF
    mov byte ptr es:[0x84], 0xFF
    mov word ptr es:[0x4C], 0xFFFF
    mov word ptr es:[0x4E], 0xFFF0
    mov word ptr es:[0x50], 0xFFFF
    mov byte ptr es:[0x62], 0x07
    mov byte ptr es:[0x85], 0x00
    mov ax, 0x0E41
    int 0x10
    mov ax, 0x0601
    xor cx, cx
    mov dx, 0xFFFF
    mov bh, 0x1F
    int 0x10
    mov ax, 0x0958
    mov bx, 0x0007
    mov cx, 0xFFFF
    int 0x10
    mov ax, 0x1130
    xor bh, bh
    int 0x10
    mov ax, 0x0E42
    int 0x10
    cli
    hlt
"""

# DISPI straight through its ports: widest, tallest, a depth it does not have, then on.
HOSTILE_DISPI = """
    mov dx, 0x1CE
    mov ax, 1
    out dx, ax
    inc dx
    mov ax, 0xFFFF
    out dx, ax
    dec dx
    mov ax, 2
    out dx, ax
    inc dx
    mov ax, 0xFFFF
    out dx, ax
    dec dx
    mov ax, 3
    out dx, ax
    inc dx
    mov ax, 7
    out dx, ax
    dec dx
    mov ax, 9
    out dx, ax
    inc dx
    mov ax, 0xFFFF
    out dx, ax
    dec dx
    mov ax, 4
    out dx, ax
    inc dx
    mov ax, 0x41
    out dx, ax
    cli
    hlt
"""


def test_hostile_bda_sizes_give_a_bounded_screen(tmp_path):
    tracemalloc.start()
    try:
        result = runner.boot([image(tmp_path, HOSTILE_BDA)], driver="host", timeout=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.stop.reason == "halted", result.stop
    cells = result.display.cells
    assert 0 < len(cells) <= video.MAX_TEXT_ROWS
    assert all(len(row) == len(cells[0]) <= video.MAX_TEXT_COLS for row in cells)
    lines = result.screen.splitlines()
    assert len(lines) <= video.MAX_TEXT_ROWS and all(len(line) <= video.MAX_TEXT_COLS for line in lines)
    assert peak < 64 << 20, peak


def test_hostile_bda_screenshot_is_bounded(tmp_path):
    png_path = tmp_path / "screen.png"
    proc = pvboot("boot", image(tmp_path, HOSTILE_BDA), "--quiet", "--screenshot", str(png_path))
    assert proc.returncode == 0, proc.stderr
    width, height, _, _, _ = decode_png(png_path.read_bytes())
    assert width <= video.MAX_TEXT_COLS * 8 and height <= video.MAX_TEXT_ROWS * 16


def test_hostile_dispi_registers_give_a_picture_inside_video_memory(tmp_path):
    result = runner.boot([image(tmp_path, HOSTILE_DISPI)], driver="host", timeout=60)
    assert result.stop.reason == "halted", result.stop
    screen = result.display
    assert screen.kind == "indexed"                        # bpp 7 is no depth: 8 bits
    assert screen.width <= vga_device.VBE_DISPI_MAX_XRES
    assert screen.width * screen.height <= vga_device.VRAM_SIZE
    assert len(screen.pixels) == screen.width * screen.height


@pytest.mark.parametrize("index,value", [
    (vga_device.VBE_DISPI_INDEX_XRES, 0), (vga_device.VBE_DISPI_INDEX_XRES, 0xFFFF),
    (vga_device.VBE_DISPI_INDEX_YRES, 0), (vga_device.VBE_DISPI_INDEX_YRES, 0xFFFF),
    (vga_device.VBE_DISPI_INDEX_BPP, 0), (vga_device.VBE_DISPI_INDEX_BPP, 0xFFFF),
    (vga_device.VBE_DISPI_INDEX_VIRT_WIDTH, 0xFFFF), (vga_device.VBE_DISPI_INDEX_X_OFFSET, 0xFFFF),
    (vga_device.VBE_DISPI_INDEX_Y_OFFSET, 0xFFFF), (vga_device.VBE_DISPI_INDEX_BANK, 0xFFFF),
])
def test_every_dispi_register_value_keeps_the_scanout_in_vram(index, value):
    device = vga_device.Vga()
    for bpp in vga_device.VALID_BPP:
        device.dispi_write(vga_device.VBE_DISPI_INDEX_BPP, bpp)
        device.dispi_write(vga_device.VBE_DISPI_INDEX_XRES, 4096)
        device.dispi_write(vga_device.VBE_DISPI_INDEX_YRES, 4096)
        device.dispi_write(vga_device.VBE_DISPI_INDEX_ENABLE, vga_device.VBE_DISPI_ENABLED)
        device.dispi_write(index, value)
        width, height, depth, line, start = device.scanout()
        assert depth in vga_device.VALID_BPP and width >= 8 and height >= 1
        assert width * vga_device.bytes_per_pixel(depth) <= line
        assert start + (height - 1) * line + width * vga_device.bytes_per_pixel(depth) <= vga_device.VRAM_SIZE
        assert device.dispi_read(vga_device.VBE_DISPI_INDEX_BANK) < vga_device.VRAM_SIZE >> 16
        device.dispi_write(vga_device.VBE_DISPI_INDEX_ENABLE, 0)
