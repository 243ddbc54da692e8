"""The video modes the BIOS offers: the standard VGA modes (00h-13h, 6Ah) and the VBE
modes of SeaBIOS's VGA BIOS for QEMU's stdvga (vgasrc/svgamodes.c), with the same
numbers, so a guest (or a kernel's vga=788 = 314h = mode 114h) finds what it finds on
QEMU.

A VBE mode is offered only if the display device can show it: SeaBIOS drops the modes
wider or deeper than the card reports through DISPI GETCAPS, or larger than its video
memory; OFFERED_VBE_MODES applies the same rule to pvboot's device.
"""
import collections

from pvboot.emu.devices import vga as vga_device

# Memory models (SeaBIOS vgasrc/vgabios.h; VBE mode info MemoryModel).
MM_TEXT, MM_CGA, MM_PLANAR, MM_PACKED, MM_DIRECT = 0x00, 0x01, 0x03, 0x04, 0x06

SEG_GRAPH = 0xA000
SEG_CTEXT = 0xB800
SEG_MTEXT = 0xB000

Mode = collections.namedtuple("Mode", "memmodel width height depth cwidth cheight segment")

# Text modes in characters, graphics modes in pixels.
VGA_MODES = {
    0x00: Mode(MM_TEXT, 40, 25, 4, 9, 16, SEG_CTEXT),
    0x01: Mode(MM_TEXT, 40, 25, 4, 9, 16, SEG_CTEXT),
    0x02: Mode(MM_TEXT, 80, 25, 4, 9, 16, SEG_CTEXT),
    0x03: Mode(MM_TEXT, 80, 25, 4, 9, 16, SEG_CTEXT),
    0x04: Mode(MM_CGA, 320, 200, 2, 8, 8, SEG_CTEXT),
    0x05: Mode(MM_CGA, 320, 200, 2, 8, 8, SEG_CTEXT),
    0x06: Mode(MM_CGA, 640, 200, 1, 8, 8, SEG_CTEXT),
    0x07: Mode(MM_TEXT, 80, 25, 4, 9, 16, SEG_MTEXT),
    0x0D: Mode(MM_PLANAR, 320, 200, 4, 8, 8, SEG_GRAPH),
    0x0E: Mode(MM_PLANAR, 640, 200, 4, 8, 8, SEG_GRAPH),
    0x0F: Mode(MM_PLANAR, 640, 350, 1, 8, 14, SEG_GRAPH),
    0x10: Mode(MM_PLANAR, 640, 350, 4, 8, 14, SEG_GRAPH),
    0x11: Mode(MM_PLANAR, 640, 480, 1, 8, 16, SEG_GRAPH),
    0x12: Mode(MM_PLANAR, 640, 480, 4, 8, 16, SEG_GRAPH),
    0x13: Mode(MM_PACKED, 320, 200, 8, 8, 8, SEG_GRAPH),
    0x6A: Mode(MM_PLANAR, 800, 600, 4, 8, 16, SEG_GRAPH),
}
TEXT_MODES = frozenset(m for m, info in VGA_MODES.items() if info.memmodel == MM_TEXT)


def _svga(memmodel, width, height, depth):
    return Mode(memmodel, width, height, depth, 8, 16, SEG_GRAPH)


# (number, memory model, width, height, depth) in SeaBIOS's order, which is the order
# of the mode list INT 10h AX=4F00h returns.
_SVGA_TABLE = (
    (0x100, MM_PACKED, 640, 400, 8), (0x101, MM_PACKED, 640, 480, 8),
    (0x102, MM_PLANAR, 800, 600, 4), (0x103, MM_PACKED, 800, 600, 8),
    (0x104, MM_PLANAR, 1024, 768, 4), (0x105, MM_PACKED, 1024, 768, 8),
    (0x106, MM_PLANAR, 1280, 1024, 4), (0x107, MM_PACKED, 1280, 1024, 8),
    (0x10D, MM_DIRECT, 320, 200, 15), (0x10E, MM_DIRECT, 320, 200, 16),
    (0x10F, MM_DIRECT, 320, 200, 24), (0x110, MM_DIRECT, 640, 480, 15),
    (0x111, MM_DIRECT, 640, 480, 16), (0x112, MM_DIRECT, 640, 480, 24),
    (0x113, MM_DIRECT, 800, 600, 15), (0x114, MM_DIRECT, 800, 600, 16),
    (0x115, MM_DIRECT, 800, 600, 24), (0x116, MM_DIRECT, 1024, 768, 15),
    (0x117, MM_DIRECT, 1024, 768, 16), (0x118, MM_DIRECT, 1024, 768, 24),
    (0x119, MM_DIRECT, 1280, 1024, 15), (0x11A, MM_DIRECT, 1280, 1024, 16),
    (0x11B, MM_DIRECT, 1280, 1024, 24), (0x11C, MM_PACKED, 1600, 1200, 8),
    (0x11D, MM_DIRECT, 1600, 1200, 15), (0x11E, MM_DIRECT, 1600, 1200, 16),
    (0x11F, MM_DIRECT, 1600, 1200, 24),
    (0x140, MM_DIRECT, 320, 200, 32), (0x141, MM_DIRECT, 640, 400, 32),
    (0x142, MM_DIRECT, 640, 480, 32), (0x143, MM_DIRECT, 800, 600, 32),
    (0x144, MM_DIRECT, 1024, 768, 32), (0x145, MM_DIRECT, 1280, 1024, 32),
    (0x146, MM_PACKED, 320, 200, 8), (0x147, MM_DIRECT, 1600, 1200, 32),
    (0x148, MM_PACKED, 1152, 864, 8), (0x149, MM_DIRECT, 1152, 864, 15),
    (0x14A, MM_DIRECT, 1152, 864, 16), (0x14B, MM_DIRECT, 1152, 864, 24),
    (0x14C, MM_DIRECT, 1152, 864, 32),
) + tuple(
    # Wide-screen modes 175h-198h: 16, 24 and 32 bits each.
    (0x175 + 3 * i + k, MM_DIRECT, width, height, (16, 24, 32)[k])
    for i, (width, height) in enumerate((
        (1280, 768), (1280, 800), (1280, 960), (1440, 900), (1400, 1050), (1680, 1050),
        (1920, 1200), (2560, 1600), (1280, 720), (1920, 1080), (1600, 900), (2560, 1440)))
    for k in range(3)
) + (
    # 4K modes: 16 and 32 bits.
    (0x199, MM_DIRECT, 3840, 2160, 16), (0x19A, MM_DIRECT, 3840, 2160, 32),
    (0x19B, MM_DIRECT, 4096, 2160, 16), (0x19C, MM_DIRECT, 4096, 2160, 32),
    (0x19D, MM_DIRECT, 5120, 2160, 16), (0x19E, MM_DIRECT, 5120, 2160, 32),
)
SVGA_MODES = {number: _svga(model, width, height, depth)
              for number, model, width, height, depth in _SVGA_TABLE}


def bits_per_pixel(mode):
    """Bits a pixel takes in memory (SeaBIOS vga_bpp): 16 for a text cell, 1 per plane
    in planar modes, depth rounded up to whole bytes above 8."""
    if mode.memmodel == MM_TEXT:
        return 16
    if mode.memmodel == MM_PLANAR:
        return 1
    if mode.depth > 8:
        return (mode.depth + 7) & ~7
    return mode.depth


def line_size(mode):
    """Bytes per scan line (per plane in planar modes)."""
    return (mode.width * bits_per_pixel(mode) + 7) // 8


def vram_ratio(mode):
    return {MM_TEXT: 2, MM_CGA: 4 // mode.depth, MM_PLANAR: 4}.get(mode.memmodel, 1)


def fits_the_card(mode):
    """Whether the stdvga-like display device can show `mode` (SeaBIOS's bochsvga_setup
    rule: within the maximum width and depth and the video memory)."""
    size = mode.height * line_size(mode) * vram_ratio(mode)
    return (mode.width <= vga_device.VBE_DISPI_MAX_XRES and mode.depth <= vga_device.VBE_DISPI_MAX_BPP
            and size <= vga_device.VRAM_SIZE)


OFFERED_VBE_MODES = tuple(number for number, *_ in _SVGA_TABLE if fits_the_card(SVGA_MODES[number]))


def find_mode(number):
    """The Mode for a BIOS or VBE mode number (flags already stripped), or None."""
    if number in SVGA_MODES and number in OFFERED_VBE_MODES:
        return SVGA_MODES[number]
    return VGA_MODES.get(number)


def mode_list():
    """The mode numbers INT 10h AX=4F00h lists: the VBE modes, then the VGA modes."""
    return OFFERED_VBE_MODES + tuple(VGA_MODES)
