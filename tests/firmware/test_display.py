"""firmware.display.capture reads what the display scans out: each VBE depth's pixel
layout (the colour masks AX=4F01h reports) as R, G, B, 8-bit modes through the DAC."""
import struct

import pytest

from pvboot.emu.devices import vga as vga_device
from pvboot.emu.machine import Machine
from pvboot.firmware import display
from tests.firmware.test_vbe import six_to_eight

WIDTH, HEIGHT = 16, 3


def scale(value, bits):
    """A `bits`-bit channel as 8 bits, the top bits repeated into the bottom."""
    value <<= 8 - bits
    return value | (value >> bits)


# depth -> (pack one pixel of channel values, channel widths red/green/blue)
LAYOUTS = {
    15: (lambda r, g, b: struct.pack("<H", r << 10 | g << 5 | b), (5, 5, 5)),
    16: (lambda r, g, b: struct.pack("<H", r << 11 | g << 5 | b), (5, 6, 5)),
    24: (lambda r, g, b: bytes((b, g, r)), (8, 8, 8)),
    32: (lambda r, g, b: bytes((b, g, r, 0xEE)), (8, 8, 8)),
}


@pytest.fixture
def machine():
    m = Machine(memory_mib=4)
    yield m
    m.close()


def enable(device, depth):
    for index, value in ((vga_device.VBE_DISPI_INDEX_BPP, depth), (vga_device.VBE_DISPI_INDEX_XRES, WIDTH),
                         (vga_device.VBE_DISPI_INDEX_YRES, HEIGHT),
                         (vga_device.VBE_DISPI_INDEX_ENABLE, vga_device.VBE_DISPI_ENABLED)):
        device.dispi_write(index, value)


@pytest.mark.parametrize("depth", sorted(LAYOUTS))
def test_direct_colour_depths(machine, depth):
    device = machine.devices["vga"]
    enable(device, depth)
    pack, bits = LAYOUTS[depth]
    expected, data = bytearray(), bytearray()
    for i in range(WIDTH * HEIGHT):
        channels = [(i * (3 + k) + k) % (1 << width) for k, width in enumerate(bits)]
        data += pack(*channels)
        expected += bytes(scale(c, width) for c, width in zip(channels, bits))
    device.vram[:len(data)] = bytes(data)
    screen = display.capture(machine)
    assert (screen.kind, screen.width, screen.height) == ("rgb", WIDTH, HEIGHT)
    assert screen.pixels == bytes(expected)


def test_eight_bit_mode_is_indexed_through_the_dac(machine):
    device = machine.devices["vga"]
    enable(device, 8)
    device.vram[:WIDTH * HEIGHT] = bytes(range(WIDTH * HEIGHT))
    device.set_palette(0, bytes(range(48)))                # 6-bit values 0..47
    screen = display.capture(machine)
    assert (screen.kind, screen.width, screen.height) == ("indexed", WIDTH, HEIGHT)
    assert screen.pixels == bytes(range(WIDTH * HEIGHT))
    # QEMU's DAC scaling (which the screendump comparison in test_vbe.py holds us to).
    assert screen.palette[:48] == bytes(six_to_eight(v) for v in range(48))


def test_display_start_moves_the_picture(machine):
    device = machine.devices["vga"]
    enable(device, 8)
    device.vram[WIDTH * 2 + 1] = 0x7F                     # line 2, pixel 1 of VRAM
    device.dispi_write(vga_device.VBE_DISPI_INDEX_Y_OFFSET, 2)
    screen = display.capture(machine)
    assert screen.pixels[1] == 0x7F                        # now top line, pixel 1
