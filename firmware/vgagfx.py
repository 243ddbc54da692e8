"""Text and pixels in VGA mode 13h, as SeaBIOS's vgafb.c draws them in packed-pixel
modes: characters are the glyphs of the font the INT 43h vector points at (INT 1Fh for
codes 80h-FFh of an 8-line font), in the colour the caller gives on black; scrolling
moves pixel rows; AH=0Ch/0Dh write and read one pixel.

The fonts live in the video ROM segment (firmware/vgafont.py reads them from console
fonts at POST).  The glyph height is the BDA's character height, a guest-writable byte:
it is clamped to 32 lines, and every store is bounded to the 64 KiB graphics window.
The other graphics modes (planar, CGA, VBE) are not drawn into.  AX=1130h (font
information) is here too: it hands out the same ROM fonts.
"""
from pvboot.firmware import bda, vgafont

MODE_13H = 0x13
WIDTH, HEIGHT = 320, 200
WINDOW = 0xA0000
WINDOW_SIZE = WIDTH * HEIGHT
MAX_CHAR_HEIGHT = 32


def draws(mem):
    """Whether the BIOS draws text and pixels in the current mode (mode 13h)."""
    return mem.buf[bda.VIDEO_MODE] == MODE_13H


def install_fonts(bios):
    """Put the 8x16 and 8x8 fonts in the video ROM; returns (font16, font8) installed,
    and the reason for the first one missing (or None)."""
    problem = None
    installed = []
    for load, offset in ((vgafont.load_font, vgafont.FONT16_OFFSET),
                         (vgafont.load_font8, vgafont.FONT8_OFFSET)):
        try:
            font = load()
        except vgafont.FontError as exc:
            problem = problem or str(exc)
            installed.append(False)
            continue
        bios.mem.write((vgafont.VGA_ROM_SEGMENT << 4) + offset, b"".join(font.glyphs))
        installed.append(True)
    return installed[0], installed[1], problem


def set_font_vectors(bios, cheight):
    """INT 1Fh (8x8 codes 80h-FFh) and INT 43h (the mode's font) as a mode set leaves
    them; a font pvboot lacks leaves its vector alone."""
    mem, video = bios.mem, bios.video
    rom = vgafont.VGA_ROM_SEGMENT << 16
    if video.font8:
        mem.write_u32(0x1F * 4, rom | (vgafont.FONT8_OFFSET + 128 * 8))
        if cheight == 8:
            mem.write_u32(0x43 * 4, rom | vgafont.FONT8_OFFSET)
    if video.font16 and cheight == 16:
        mem.write_u32(0x43 * 4, rom | vgafont.FONT16_OFFSET)


def _char_height(mem):
    return min(max(mem.buf[bda.CHAR_HEIGHT], 1), MAX_CHAR_HEIGHT)


def _glyph(mem, char, height):
    if height == 8 and char >= 128:
        vector, char = mem.read_u32(0x1F * 4), char - 128
    else:
        vector = mem.read_u32(0x43 * 4)
    address = ((vector >> 16) << 4) + (vector & 0xFFFF) + char * height
    return mem.read(address, height).ljust(height, b"\0")


def write_char(mem, x, y, char, colour):
    """Draw `char` in cell (x, y): glyph bits in `colour`, the rest black."""
    if x >= mem.read_u16(bda.VIDEO_COLS):
        return
    height = _char_height(mem)
    glyph = _glyph(mem, char, height)
    for row in range(height):
        offset = (y * height + row) * WIDTH + x * 8
        if offset + 8 > WINDOW_SIZE:
            return
        bits = glyph[row]
        mem.write(WINDOW + offset, bytes(colour if bits & (0x80 >> i) else 0 for i in range(8)))


def scroll(mem, ulx, uly, lrx, lry, lines, colour):
    """Scroll the character window up (`lines` > 0) or down (< 0) by whole character
    rows, or clear it (0), filling with `colour`."""
    height = _char_height(mem)
    left, right = ulx * 8, min((lrx + 1) * 8, WIDTH)
    top, bottom = uly * height, min((lry + 1) * height, HEIGHT)
    if left >= right or top >= bottom:
        return
    area = bytearray(mem.read(WINDOW + top * WIDTH, (bottom - top) * WIDTH))
    rows = bottom - top
    shift = lines * height
    span = right - left

    def line(r):
        return slice(r * WIDTH + left, r * WIDTH + right)

    if lines == 0 or abs(shift) >= rows:
        moved, cleared = [], range(rows)
    elif lines > 0:
        moved, cleared = [(r, r + shift) for r in range(rows - shift)], range(rows - shift, rows)
    else:
        moved, cleared = [(r, r + shift) for r in range(rows - 1, -shift - 1, -1)], range(-shift)
    for dest, src in moved:
        area[line(dest)] = area[line(src)]
    for r in cleared:
        area[line(r)] = bytes((colour,)) * span
    mem.write(WINDOW + top * WIDTH, bytes(area))


def write_pixel(mem, x, y, colour):
    if x < WIDTH and y < HEIGHT:
        mem.write_u8(WINDOW + y * WIDTH + x, colour)


def read_pixel(mem, x, y):
    return mem.buf[WINDOW + y * WIDTH + x] if x < WIDTH and y < HEIGHT else 0


def handle_101130(bios, regs):
    """Font information: CX = scan lines per character, DL = last row.  BH=0/1 give the
    INT 1Fh / 43h vectors as SeaBIOS does, BH=3/4 the 8x8 font's halves and BH=6 the
    8x16 font in the video ROM; pvboot has no 8x14 font, so the others give 0000:0000."""
    mem = bios.mem
    bh = regs.bh
    video = bios.video
    rom_fonts = {3: (video.font8, vgafont.FONT8_OFFSET),
                 4: (video.font8, vgafont.FONT8_OFFSET + 128 * 8),
                 6: (video.font16, vgafont.FONT16_OFFSET)}
    if bh > 7:
        return
    if bh in (0, 1):
        vector = mem.read_u32((0x1F if bh == 0 else 0x43) * 4)
        regs.es = vector >> 16
        regs.bp = vector & 0xFFFF
    elif bh in rom_fonts and rom_fonts[bh][0]:
        regs.es = vgafont.VGA_ROM_SEGMENT
        regs.bp = rom_fonts[bh][1]
    else:
        if bh in (3, 4, 6) and bios.video.font_problem:
            bios.warn(f"the guest asked for a VGA ROM font: {bios.video.font_problem}")
            bios.video.font_problem = None
        regs.es = 0
        regs.bp = 0
    regs.cx = mem.buf[bda.CHAR_HEIGHT]
    regs.dl = mem.buf[bda.VIDEO_ROWS]
