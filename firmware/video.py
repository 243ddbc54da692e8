"""The video BIOS (INT 10h), after SeaBIOS's vgasrc/vgabios.c, for a colour VGA with
QEMU stdvga's VBE extensions.

Text state lives where a PC keeps it: characters and attributes in the text buffer at
0xB8000 (0xB0000 in mode 7), mode, page and cursor in the BDA.  Nothing is shadowed, so
a guest that writes the buffer or the BDA directly and one that calls INT 10h see the
same screen, and `screen_text` reads what is really there.  The BDA's sizes are the
guest's to write: every reader clamps them to the largest VGA text screen first.

Mode setting is firmware/modeset.py, the DAC functions firmware/palette.py, VBE
(AH=4Fh) firmware/vbe.py.  Characters written in graphics modes are not drawn (guests
that draw text there use their own renderer or the ROM font AX=1130h hands out); they
only move the cursor and are counted in `VideoState.undrawn`.
"""
from pvboot.emu.memory import VGA_BASE, VGA_END
from pvboot.firmware import bda, modeset, palette, vbe, vgagfx
from pvboot.firmware.vgamodes import MM_TEXT, TEXT_MODES

# BDA fields bda.py does not name (SeaBIOS's struct bios_data_area_s).
DCC_INDEX = 0x48A

MONO_MODE = modeset.MONO_MODE
TEXT_VERTICAL_LINES = 400      # scan lines of the 80x25 text modes (sets rows per font)
FILL_ATTR = 0x07
AL_NOCLEARMEM = 0x80           # INT 10h AH=00h: AL bit 7 keeps video memory

# The largest text screen a VGA shows (VESA's 132x60 mode): the BDA's columns and rows
# are guest-writable, so every reader clamps them to this before sizing anything.
MAX_TEXT_COLS = 132
MAX_TEXT_ROWS = 60

# CP437 glyphs for 0x01-0x1F and 0x7F; Python's cp437 codec maps those to controls.
_CP437_LOW = "☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼"
_CHARS = [" "] + list(_CP437_LOW) + [bytes([b]).decode("cp437") for b in range(0x20, 0x100)]
_CHARS[0x7F] = "⌂"
_TO_TEXT = {b: c for b, c in enumerate(_CHARS)}


class VideoState:
    """What the video BIOS knows beyond the BDA: nothing a guest could change behind its
    back, only bookkeeping for reports."""

    def __init__(self):
        self.undrawn = 0          # characters written in graphics modes (not rendered)
        self.mode_sets = 0
        self.vbe_mode = 0x0003    # the last mode set with its VBE flag bits (AX=4F03h)
        self.vbe_strings = None   # far pointers to the VBE OEM strings, once placed
        self.power_state = 0      # VBE/PM display power state (AX=4F10h)
        self.font16 = False       # the 8x16 font is in the video ROM (AX=1130h BH=06h)
        self.font8 = False        # the 8x8 font is (mode 13h text, AX=1130h BH=03h/04h)
        self.font_problem = None  # why one is not (said once, when a guest asks)


# -- layout helpers ---------------------------------------------------------------------
def _text_base(mem):
    return 0xB0000 if mem.buf[bda.VIDEO_MODE] == MONO_MODE else 0xB8000


def _in_text_mode(mem):
    return mem.buf[bda.VIDEO_MODE] in TEXT_MODES


def _cols(mem):
    return min(mem.read_u16(bda.VIDEO_COLS) or 80, MAX_TEXT_COLS)


def _rows(mem):
    # 0 only before POST has described a mode; show the 25 rows of the power-on screen.
    return min(mem.buf[bda.VIDEO_ROWS] + 1 if mem.buf[bda.VIDEO_ROWS] else 25, MAX_TEXT_ROWS)


def _page_address(mem, page):
    return _text_base(mem) + mem.read_u16(bda.VIDEO_PAGESIZE) * page


def _put(mem, addr, data):
    """Write into the text buffer, never past the video window into option ROM space."""
    end = min(addr + len(data), VGA_END)
    if VGA_BASE <= addr < end:
        mem.write(addr, data[:end - addr])


def get_cursor_pos(mem, page):
    """(x, y) of the cursor of `page`."""
    if page > 7:
        return 0, 0
    xy = mem.read_u16(bda.CURSOR_POS + 2 * page)
    return xy & 0xFF, xy >> 8


def set_cursor_pos(mem, page, x, y):
    if page > 7:
        return
    mem.write_u16(bda.CURSOR_POS + 2 * page, ((y & 0xFF) << 8) | (x & 0xFF))


# -- screen contents (for reports and screenshots) ------------------------------------
def screen_cells(mem):
    """The active page as rows of (character code, attribute) pairs."""
    cols, rows = _cols(mem), _rows(mem)
    start = _text_base(mem) + mem.read_u16(bda.VIDEO_PAGESTART)
    length = min(cols * rows * 2, VGA_END - start)
    raw = mem.read(start, max(length, 0)).ljust(cols * rows * 2, b"\0")
    pairs = list(zip(raw[0::2], raw[1::2]))
    return [pairs[r * cols:(r + 1) * cols] for r in range(rows)]


def screen_text(mem):
    """The active page as text: one line per row (25 of 80 characters in mode 3), each
    stripped on the right, CP437 decoded, NUL shown as a space."""
    cols, rows = _cols(mem), _rows(mem)
    start = _text_base(mem) + mem.read_u16(bda.VIDEO_PAGESTART)
    length = min(cols * rows * 2, VGA_END - start)
    chars = mem.read(start, max(length, 0))[0::2].ljust(cols * rows, b" ")
    text = "".join(map(_TO_TEXT.__getitem__, chars))
    return "\n".join(text[r * cols:(r + 1) * cols].rstrip() for r in range(rows))


# -- character output (SeaBIOS write_char / write_teletype) ----------------------------
def write_char(bios, page, x, y, char, attr, colour=None):
    """Store one character (and its attribute unless `attr` is None) at x, y of `page`,
    or in mode 13h draw it in `colour` (default: `attr`); returns the next position,
    wrapping to the next line like SeaBIOS."""
    mem = bios.mem
    cols = _cols(mem)
    if _in_text_mode(mem):
        addr = _page_address(mem, page) + (y * cols + x) * 2
        _put(mem, addr, bytes((char,)) if attr is None else bytes((char, attr)))
    elif vgagfx.draws(mem):
        vgagfx.write_char(mem, x, y, char, (attr or 0) if colour is None else colour)
    else:
        bios.video.undrawn += 1
    x += 1
    if x == cols:
        x = 0
        y += 1
    return x, y


def scroll(mem, page, ulx, uly, lrx, lry, lines, attr):
    """Scroll the window up (`lines` > 0) or down (< 0), or clear it (0), filling with
    blanks of `attr` (SeaBIOS vgafb_scroll); in mode 13h with pixels of colour `attr`."""
    if vgagfx.draws(mem):
        vgagfx.scroll(mem, ulx, uly, lrx, lry, lines, attr)
        return
    if not _in_text_mode(mem):
        return
    cols = _cols(mem)
    stride = cols * 2
    start = _page_address(mem, page) + uly * stride
    height = lry - uly + 1
    length = min(height * stride, VGA_END - start)
    if length <= 0:
        return
    area = bytearray(mem.read(start, length)).ljust(height * stride, b"\0")
    left, right = ulx * 2, (lrx + 1) * 2
    blank = bytes((0x20, attr)) * (lrx - ulx + 1)

    def span(row):
        return slice(row * stride + left, row * stride + right)

    if lines > 0:
        for r in range(height - lines):
            area[span(r)] = area[span(r + lines)]
        cleared = range(height - lines, height)
    elif lines < 0:
        for r in range(height - 1, -lines - 1, -1):
            area[span(r)] = area[span(r + lines)]
        cleared = range(-lines)
    else:
        cleared = range(height)
    for r in cleared:
        area[span(r)] = blank
    _put(mem, start, bytes(area[:length]))


def write_teletype(bios, page, x, y, char, attr, colour=None):
    """Teletype one character at x, y: BEL, BS, CR and LF act, anything else is written
    (`colour`: as write_char); scrolls the page when the cursor falls off the bottom.
    Returns the new position."""
    if char == 7:
        pass                                    # no speaker
    elif char == 8:
        if x > 0:
            x -= 1
    elif char == 13:
        x = 0
    elif char == 10:
        y += 1
    else:
        x, y = write_char(bios, page, x, y, char, attr, colour)
    mem = bios.mem
    last_row = mem.buf[bda.VIDEO_ROWS]
    if y > last_row:
        y -= 1
        # Text fills with grey on black, graphics with black (SeaBIOS's attribute 0).
        fill = FILL_ATTR if _in_text_mode(mem) else 0
        scroll(mem, page, 0, 0, _cols(mem) - 1, last_row, 1, fill)
    return x, y


# -- mode setting ---------------------------------------------------------------------
def video_init(bios):
    """The video part of POST (SeaBIOS init_bios_area, then mode 3 as enable_vga_console
    sets it): 80x25 colour text, screen cleared to attribute 07h, cursor home."""
    mem = bios.mem
    flags = mem.read_u16(bda.EQUIPMENT_LIST_FLAGS)
    mem.write_u16(bda.EQUIPMENT_LIST_FLAGS, (flags & ~0x30) | 0x20)   # 80x25 colour
    mem.write_u8(bda.MODESET_CTL, 0x51)
    mem.write_u8(DCC_INDEX, 0x08)              # VGA with colour analog display
    mem.write_u8(bda.VIDEO_MSR, 0x00)
    mem.write_u8(bda.VIDEO_PAL, 0x00)
    # The fonts first: the mode set points INT 43h at one.  Without a console font,
    # AX=1130h answers 0000:0000 and the first caller hears why.
    video = bios.video
    video.font16, video.font8, video.font_problem = vgagfx.install_fonts(bios)
    modeset.set_mode(bios, 0x03, 0)


def set_character_height(mem, lines):
    """A text font of `lines` scan lines: as many rows as fit in 400 lines."""
    mem.write_u16(bda.CHAR_HEIGHT, lines)
    rows = TEXT_VERTICAL_LINES // lines
    mem.write_u8(bda.VIDEO_ROWS, rows - 1)
    mem.write_u16(bda.VIDEO_PAGESIZE, modeset.calc_page_size(MM_TEXT, _cols(mem), rows))
    mem.write_u16(bda.CURSOR_TYPE, 0x0607 if lines == 8 else ((lines - 3) << 8) | (lines - 2))


# -- INT 10h functions ----------------------------------------------------------------
def handle_1000(bios, regs):
    al = regs.al
    mode = al & 0x7F
    flags = modeset.MF_LEGACY | (bios.mem.buf[bda.MODESET_CTL] &
                                 (palette.MF_NOPALETTE | palette.MF_GRAYSUM))
    if al & AL_NOCLEARMEM:
        flags |= modeset.MF_NOCLEARMEM
    regs.al = 0x20 if mode > 7 else 0x3F if mode == 6 else 0x30
    modeset.set_mode(bios, mode, flags)


def handle_1001(bios, regs):
    bios.mem.write_u16(bda.CURSOR_TYPE, regs.cx)


def handle_1002(bios, regs):
    dx = regs.dx
    set_cursor_pos(bios.mem, regs.bh, dx & 0xFF, dx >> 8)


def handle_1003(bios, regs):
    mem = bios.mem
    regs.cx = mem.read_u16(bda.CURSOR_TYPE)
    x, y = get_cursor_pos(mem, regs.bh)
    regs.dx = (y << 8) | x


def handle_1004(bios, regs):
    # No light pen.
    regs.ax = 0
    regs.bx = 0
    regs.cx = 0
    regs.dx = 0


def handle_1005(bios, regs):
    page = regs.al
    if page > 7:
        return
    mem = bios.mem
    mem.write_u16(bda.VIDEO_PAGESTART, mem.read_u16(bda.VIDEO_PAGESIZE) * page)
    mem.write_u8(bda.VIDEO_PAGE, page)


def verify_scroll(bios, regs, direction):
    mem = bios.mem
    cx, dx = regs.cx, regs.dx
    ulx, uly, lrx, lry = cx & 0xFF, cx >> 8, dx & 0xFF, dx >> 8
    nbrows = _rows(mem)
    nbcols = _cols(mem)
    lry = min(lry, nbrows - 1)
    lrx = min(lrx, nbcols - 1)
    winrows = lry - uly + 1
    if lrx < ulx or winrows <= 0:
        return
    lines = regs.al
    if lines >= winrows:
        lines = 0
    scroll(mem, mem.buf[bda.VIDEO_PAGE], ulx, uly, lrx, lry, lines * direction, regs.bh)


def handle_1006(bios, regs):
    verify_scroll(bios, regs, 1)


def handle_1007(bios, regs):
    verify_scroll(bios, regs, -1)


def handle_1008(bios, regs):
    mem = bios.mem
    page = regs.bh
    x, y = get_cursor_pos(mem, page)
    if not _in_text_mode(mem):
        regs.ax = 0
        return
    addr = _page_address(mem, page) + (y * _cols(mem) + x) * 2
    regs.ax = mem.read_u16(addr) if addr + 2 <= VGA_END else 0


def _write_repeated(bios, regs, with_attr):
    """AH=09h/0Ah: CX copies at the cursor, which does not move.  Consecutive cells are
    consecutive in memory, so this is one store."""
    mem = bios.mem
    page = regs.bh
    count = regs.cx
    if not count:
        return
    if vgagfx.draws(mem):
        # Cell by cell, wrapping as SeaBIOS does, up to the end of the screen.
        x, y = get_cursor_pos(mem, page)
        for _ in range(min(count, _cols(mem) * (mem.buf[bda.VIDEO_ROWS] + 1))):
            x, y = write_char(bios, page, x, y, regs.al, regs.bl)
        return
    if not _in_text_mode(mem):
        bios.video.undrawn += count
        return
    x, y = get_cursor_pos(mem, page)
    addr = _page_address(mem, page) + (y * _cols(mem) + x) * 2
    char = regs.al
    if with_attr:
        _put(mem, addr, bytes((char, regs.bl)) * count)
        return
    end = min(addr + 2 * count, VGA_END)
    if end <= addr:
        return
    cells = bytearray(mem.read(addr, end - addr))
    cells[0::2] = bytes((char,)) * ((end - addr + 1) // 2)
    _put(mem, addr, bytes(cells))


def handle_1009(bios, regs):
    _write_repeated(bios, regs, True)


def handle_100a(bios, regs):
    _write_repeated(bios, regs, False)


def handle_100b(bios, regs):
    pass                        # CGA palette: nothing to show it on


def handle_100c(bios, regs):
    """Write pixel AL at column CX, row DX (mode 13h; other modes are not drawn)."""
    if vgagfx.draws(bios.mem):
        vgagfx.write_pixel(bios.mem, regs.cx, regs.dx, regs.al)


def handle_100d(bios, regs):
    regs.al = vgagfx.read_pixel(bios.mem, regs.cx, regs.dx) if vgagfx.draws(bios.mem) else 0


def handle_100e(bios, regs):
    # Output goes to the active page whatever BH says, as in SeaBIOS.
    mem = bios.mem
    page = mem.buf[bda.VIDEO_PAGE]
    xy = mem.read_u16(bda.CURSOR_POS + 2 * page) if page <= 7 else 0
    x, y = write_teletype(bios, page, xy & 0xFF, xy >> 8, regs.al, None, colour=regs.bl)
    set_cursor_pos(mem, page, x, y)


def handle_100f(bios, regs):
    buf = bios.mem.buf
    regs.bh = buf[bda.VIDEO_PAGE]
    regs.ax = (buf[bda.VIDEO_COLS] << 8) | buf[bda.VIDEO_MODE] | (buf[bda.VIDEO_CTL] & 0x80)


def _load_gfx_font(mem, height, bl, dl):
    rows = {0: dl, 1: 14, 3: 43}.get(bl, 25)
    mem.write_u8(bda.VIDEO_ROWS, (rows - 1) & 0xFF)
    mem.write_u16(bda.CHAR_HEIGHT, height)


def handle_1011(bios, regs):
    """Character generator.  Loading a font changes the text geometry as on a VGA
    (AL=11h/12h/14h: 14, 8 or 16 scan lines); pvboot keeps no glyphs."""
    mem = bios.mem
    al = regs.al
    if al in (0x11, 0x12, 0x14):
        set_character_height(mem, {0x11: 14, 0x12: 8, 0x14: 16}[al])
    elif al == 0x10:
        if regs.bh:
            set_character_height(mem, regs.bh)
    elif al == 0x20:
        mem.write_u32(0x1F * 4, (regs.es << 16) | regs.bp)
    elif al == 0x21:
        mem.write_u32(0x43 * 4, (regs.es << 16) | regs.bp)
        _load_gfx_font(mem, regs.cx, regs.bl, regs.dl)
    elif al in (0x22, 0x23, 0x24):
        _load_gfx_font(mem, {0x22: 14, 0x23: 8, 0x24: 16}[al], regs.bl, regs.dl)
    elif al == 0x30:
        vgagfx.handle_101130(bios, regs)


def handle_101210(bios, regs):
    """EGA information: colour, 256 KiB, switch settings."""
    mem = bios.mem
    regs.bx = 0x0103 if mem.read_u16(bda.CRTC_ADDRESS) == modeset.VGAREG_MDA_CRTC_ADDRESS else 0x0003
    regs.cx = mem.buf[bda.VIDEO_SWITCHES] & 0x0F


def handle_1012(bios, regs):
    bl = regs.bl
    if bl == 0x10:
        handle_101210(bios, regs)
    elif 0x30 <= bl <= 0x36:
        # Scan lines, palette loading, video enable, grey summing, cursor emulation,
        # display switch, screen refresh: accepted.
        regs.al = 0x12


def handle_1013(bios, regs):
    """Write string: AL bit 0 moves the cursor, bit 1 means char/attribute pairs."""
    mem = bios.mem
    al = regs.al
    page = regs.bh
    dx = regs.dx
    x, y = dx & 0xFF, dx >> 8
    count = regs.cx
    attr = regs.bl
    with_attrs = bool(al & 2)
    step = 2 if with_attrs else 1
    data = mem.read((regs.es << 4) + regs.bp, count * step)
    count = min(count, len(data) // step)
    for i in range(count):
        if with_attrs:
            char, attr = data[2 * i], data[2 * i + 1]
        else:
            char = data[i]
        x, y = write_teletype(bios, page, x, y, char, attr)
    if al & 1:
        set_cursor_pos(mem, page, x, y)


def handle_101a(bios, regs):
    """Display combination code: AL=00h reads it (08h: VGA, colour), AL=01h sets it."""
    al = regs.al
    if al == 0x00:
        regs.bx = bios.mem.buf[DCC_INDEX]
        regs.al = 0x1A
    elif al == 0x01:
        bios.mem.write_u8(DCC_INDEX, regs.bl)
        regs.al = 0x1A


def handle_10XX(bios, regs):
    pass


_FUNCTIONS = {
    0x00: handle_1000, 0x01: handle_1001, 0x02: handle_1002, 0x03: handle_1003,
    0x04: handle_1004, 0x05: handle_1005, 0x06: handle_1006, 0x07: handle_1007,
    0x08: handle_1008, 0x09: handle_1009, 0x0A: handle_100a, 0x0B: handle_100b,
    0x0C: handle_100c, 0x0D: handle_100d, 0x0E: handle_100e, 0x0F: handle_100f,
    0x10: palette.handle_1010, 0x11: handle_1011, 0x12: handle_1012, 0x13: handle_1013,
    0x1A: handle_101a, 0x4F: vbe.handle_104f,
}


def handle_10(bios, regs):
    """INT 10h entry."""
    _FUNCTIONS.get(regs.ah, handle_10XX)(bios, regs)
