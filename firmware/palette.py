"""The VGA palette: the DAC contents each BIOS mode loads, and INT 10h AH=10h's DAC
functions (AL=10h/12h/15h/17h/18h/19h/1Ah/1Bh), after SeaBIOS's vgasrc.

The default palettes are the IBM VGA's (6-bit values): the 64-entry EGA palette of the
text and 16-colour modes, the CGA palette of modes 4-6 and 0Dh/0Eh, the monochrome one
of modes 7 and 0Fh, and the 256-colour palette of mode 13h and the 8-bit VBE modes (16
CGA colours, 16 greys, then 9 rings of 24 hues).  They are built from their structure
here rather than listed; tests compare them entry by entry with what QEMU + SeaBIOS
gives through INT 10h AX=1017h.

The DAC itself is the display device's (emu/devices/vga.py): a palette set here and
one written through ports 0x3C8/0x3C9 are the same palette.
"""
# The 16 CGA colours as 6-bit DAC values (colour 6 is brown).
CGA_COLOURS = tuple(
    (0x2A * ((c >> 2) & 1) + 0x15 * (c >> 3),
     (0x2A * ((c >> 1) & 1) + 0x15 * (c >> 3)) if c != 6 else 0x15,
     0x2A * (c & 1) + 0x15 * (c >> 3))
    for c in range(16))

# Grey ramp of entries 10h-1Fh of the 256-colour palette.
GREYS = (0x00, 0x05, 0x08, 0x0B, 0x0E, 0x11, 0x14, 0x18,
         0x1C, 0x20, 0x24, 0x28, 0x2D, 0x32, 0x38, 0x3F)
# The five levels a hue ring steps through, per (brightness, saturation); rings in
# palette order: bright, medium, dark, each strongly, medium and weakly saturated.
RING_LEVELS = (
    (0x00, 0x10, 0x1F, 0x2F, 0x3F), (0x1F, 0x27, 0x2F, 0x37, 0x3F), (0x2D, 0x31, 0x36, 0x3A, 0x3F),
    (0x00, 0x07, 0x0E, 0x15, 0x1C), (0x0E, 0x11, 0x15, 0x18, 0x1C), (0x14, 0x16, 0x18, 0x1A, 0x1C),
    (0x00, 0x04, 0x08, 0x0C, 0x10), (0x08, 0x0A, 0x0C, 0x0E, 0x10), (0x0B, 0x0C, 0x0D, 0x0F, 0x10),
)
# Around a ring from blue: red rises, blue falls, green rises, red falls, blue rises,
# green falls (component index, rising).
_RING_PATH = ((0, True), (2, False), (1, True), (0, False), (2, True), (1, False))


def _ega64():
    """Entry bits 0-2: blue, green, red at 2/3; bits 3-5: the same at 1/3."""
    return [(0x2A * ((i >> 2) & 1) + 0x15 * ((i >> 5) & 1),
             0x2A * ((i >> 1) & 1) + 0x15 * ((i >> 4) & 1),
             0x2A * (i & 1) + 0x15 * ((i >> 3) & 1)) for i in range(64)]


def _cga64():
    """Bits 0-2 the colour, bit 4 the intensity; bits 3 and 5 do not matter."""
    return [CGA_COLOURS[(i & 7) | ((i >> 1) & 8)] for i in range(64)]


def _mono64():
    """Bit 3 video, bit 4 intensity."""
    return [(v, v, v) for v in ((0x00, 0x2A, 0x2A, 0x3F)[(i >> 3) & 3] for i in range(64))]


def _hue_ring(levels):
    colour = [levels[0], levels[0], levels[4]]
    ring = []
    for component, rising in _RING_PATH:
        for k in range(4):
            colour[component] = levels[k] if rising else levels[4 - k]
            ring.append(tuple(colour))
        colour[component] = levels[4] if rising else levels[0]
    return ring


def _vga256():
    entries = list(CGA_COLOURS) + [(g, g, g) for g in GREYS]
    for levels in RING_LEVELS:
        entries += _hue_ring(levels)
    return entries + [(0, 0, 0)] * (256 - len(entries))


def _flat(entries):
    return bytes(c for rgb in entries for c in rgb)


EGA_PALETTE = _flat(_ega64())
CGA_PALETTE = _flat(_cga64())
MONO_PALETTE = _flat(_mono64())
VGA256_PALETTE = _flat(_vga256())

# BIOS mode -> the palette its mode set loads (the rest of the 256 entries are zeroed).
MODE_PALETTES = {
    0x00: EGA_PALETTE, 0x01: EGA_PALETTE, 0x02: EGA_PALETTE, 0x03: EGA_PALETTE,
    0x04: CGA_PALETTE, 0x05: CGA_PALETTE, 0x06: CGA_PALETTE, 0x07: MONO_PALETTE,
    0x0D: CGA_PALETTE, 0x0E: CGA_PALETTE, 0x0F: MONO_PALETTE, 0x10: EGA_PALETTE,
    0x11: EGA_PALETTE, 0x12: EGA_PALETTE, 0x13: VGA256_PALETTE, 0x6A: EGA_PALETTE,
}

# MODESET_CTL (BDA 0x489) bits that a mode set honours (SeaBIOS MF_GRAYSUM, MF_NOPALETTE).
MF_GRAYSUM = 0x02
MF_NOPALETTE = 0x08


def grey_summed(rgb):
    """Each entry replaced by its luminance, 30% red, 59% green, 11% blue (rounded)."""
    out = bytearray()
    for i in range(0, len(rgb) - 2, 3):
        intensity = min((77 * rgb[i] + 151 * rgb[i + 1] + 28 * rgb[i + 2] + 0x80) >> 8, 0x3F)
        out += bytes((intensity,) * 3)
    return bytes(out)


def load_mode_palette(dac, mode, flags):
    """What a mode set does to the DAC: PEL mask FFh and the mode's palette, unless
    `flags` (MODESET_CTL bits) say not to load one."""
    if flags & MF_NOPALETTE:
        return
    dac.pel_mask = 0xFF
    rgb = MODE_PALETTES.get(mode, b"")
    if flags & MF_GRAYSUM:
        rgb = grey_summed(rgb)
    dac.set_palette(0, rgb.ljust(256 * 3, b"\0"))


# -- INT 10h AH=10h DAC functions ------------------------------------------------------
def _dac(bios):
    return bios.machine.devices["vga"]


def handle_101010(bios, regs):
    """Set one DAC register BX to DH (red), CH (green), CL (blue)."""
    _dac(bios).set_palette(regs.bx & 0xFF, bytes((regs.dh, regs.ch, regs.cl)))


def handle_101012(bios, regs):
    """Set CX DAC registers from BX with the R, G, B triplets at ES:DX."""
    data = bios.mem.read((regs.es << 4) + regs.dx, regs.cx * 3)
    _dac(bios).set_palette(regs.bx & 0xFF, data)


def handle_101015(bios, regs):
    red, green, blue = _dac(bios).get_palette(regs.bx & 0xFF, 1)
    regs.dh = red
    regs.ch = green
    regs.cl = blue


def handle_101017(bios, regs):
    """Read CX DAC registers from BX into ES:DX."""
    count = regs.cx
    address = (regs.es << 4) + regs.dx
    if bios.mem.is_writable_ram(address, count * 3):
        bios.mem.write(address, _dac(bios).get_palette(regs.bx & 0xFF, count))


def handle_101018(bios, regs):
    _dac(bios).pel_mask = regs.bl


def handle_101019(bios, regs):
    regs.bl = _dac(bios).pel_mask


def handle_10101a(bios, regs):
    # Paging mode 0 (four pages of 64), page 0: the state after every mode set.
    regs.bx = 0


def handle_10101b(bios, regs):
    """Grey-scale sum CX registers from BX."""
    dac = _dac(bios)
    start, count = regs.bx & 0xFF, min(regs.cx, 256)
    dac.set_palette(start, grey_summed(dac.get_palette(start, count)))


def handle_1010_attribute(bios, regs):
    """The attribute controller's palette (AL=00h-09h): accepted; reads give 0 as
    pvboot keeps no attribute registers."""
    if regs.al in (0x07, 0x08):
        regs.bh = 0


DAC_FUNCTIONS = {
    0x10: handle_101010, 0x12: handle_101012, 0x15: handle_101015, 0x17: handle_101017,
    0x18: handle_101018, 0x19: handle_101019, 0x1A: handle_10101a, 0x1B: handle_10101b,
}


def handle_1010(bios, regs):
    DAC_FUNCTIONS.get(regs.al, handle_1010_attribute)(bios, regs)
