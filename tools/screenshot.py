"""The final screen as a PNG (`pvboot boot --screenshot FILE.png`).

A graphics mode the display scans out (a VBE mode of any depth, VGA mode 13h) is saved
pixel for pixel as firmware.display.capture reads it: 8-bit modes as a palette image
in the DAC's colours, 15/16/24/32-bit modes as an RGB image.  A text mode is drawn:
each character cell is drawn 8x16 with a real VGA font, so an 80x25 screen makes a
640x400 picture (a 40-column mode is doubled across, as the VGA's clock does), in the
16 colours of the CGA/VGA text palette: foreground = attribute bits 0-3, background =
bits 4-6 (bit 7 is blink, the VGA's power-on meaning of it; a blinking character is
drawn in its visible phase).  Mode 7 (monochrome) attributes are drawn as an MDA shows
them: normal, bright, reverse, underline, invisible.  No cursor is drawn.

The font is not shipped: it is read at run time from a PSF console font, by default
console-data's default8x16.psf.gz (Debian package console-data: the IBM VGA 8x16 font in
code page 437 order; GPL-2 like the rest of console-data).  PVBOOT_FONT (or font=) names
another PSF 1 or 2 font, gzipped or not, 8 pixels wide; a font with a Unicode table
is looked up by the CP437 characters' code points, so any font with those works.

The PNG is written with zlib and struct: a palette or RGB image is five chunks and
needs no imaging library.
"""
import gzip
import os
import struct
import zlib

# The character each CP437 code shows (codes 01h-1Fh and 7Fh are glyphs on a PC, not
# controls), to find the glyphs in a font with a Unicode table.
CP437_CHARS = (["\0"] + list("☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼") +
               [bytes([code]).decode("cp437") for code in range(0x20, 0x100)])
CP437_CHARS[0x7F] = "⌂"

FONT_ENV = "PVBOOT_FONT"
FONT_CANDIDATES = (
    "/usr/share/consolefonts/default8x16.psf.gz",          # Debian/Ubuntu: console-data
    "/usr/share/kbd/consolefonts/default8x16.psfu.gz",     # kbd's own layout (Fedora, Arch)
    "/usr/lib/kbd/consolefonts/default8x16.psfu.gz",       # kbd on older layouts
)
CELL_WIDTH, CELL_HEIGHT = 8, 16

# The 16 colours of the CGA palette as a VGA DAC gives them in text mode (colour 6 is
# brown, not dark yellow).
PALETTE = (
    (0x00, 0x00, 0x00), (0x00, 0x00, 0xAA), (0x00, 0xAA, 0x00), (0x00, 0xAA, 0xAA),
    (0xAA, 0x00, 0x00), (0xAA, 0x00, 0xAA), (0xAA, 0x55, 0x00), (0xAA, 0xAA, 0xAA),
    (0x55, 0x55, 0x55), (0x55, 0x55, 0xFF), (0x55, 0xFF, 0x55), (0x55, 0xFF, 0xFF),
    (0xFF, 0x55, 0x55), (0xFF, 0x55, 0xFF), (0xFF, 0xFF, 0x55), (0xFF, 0xFF, 0xFF),
)
MONO_MODE = 0x07

PSF1_MAGIC = b"\x36\x04"
PSF2_MAGIC = b"\x72\xb5\x4a\x86"


class FontError(Exception):
    """No usable console font: one line saying what to install or set."""


class Font:
    """256 glyphs in CP437 order, each CELL_HEIGHT bytes of 8 pixels (bit 7 leftmost)."""

    def __init__(self, glyphs, path):
        self.glyphs = glyphs
        self.path = path


def find_font(path=None):
    """The font file to use: `path`, else $PVBOOT_FONT, else the first of FONT_CANDIDATES."""
    path = path or os.environ.get(FONT_ENV)
    if path:
        if not os.path.isfile(path):
            raise FontError(f"font {path}: no such file")
        return path
    for candidate in FONT_CANDIDATES:
        if os.path.isfile(candidate):
            return candidate
    raise FontError("no VGA console font for --screenshot: install the Debian package "
                    "console-data (it has /usr/share/consolefonts/default8x16.psf.gz) or set "
                    f"{FONT_ENV} to a PSF font file")


def load_font(path=None):
    """Read a PSF 1 or 2 font (gzipped or not) as a Font of 256 CP437 glyphs."""
    path = find_font(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise FontError(f"font {path}: {exc}") from None
    if data[:2] == PSF1_MAGIC:
        mode, height = data[2], data[3]
        count, width, size, start = (512 if mode & 1 else 256), 8, height, 4
        glyph_end = start + count * size
        table = _psf1_table(data[glyph_end:], count) if mode & 2 else None
    elif data[:4] == PSF2_MAGIC:
        (_version, start, flags, count, size, height, width) = struct.unpack_from("<7I", data, 4)
        glyph_end = start + count * size
        table = _psf2_table(data[glyph_end:], count) if flags & 1 else None
    else:
        raise FontError(f"font {path}: not a PSF console font")
    if width != 8 or height != CELL_HEIGHT or len(data) < glyph_end or count < 256 and table is None:
        raise FontError(f"font {path}: {width}x{height} with {count} glyphs; an 8x16 font "
                        "with the 256 CP437 characters is needed")
    bitmaps = [data[start + i * size:start + (i + 1) * size] for i in range(count)]
    if table is None:
        glyphs = bitmaps[:256]
    else:
        index = {}
        for glyph, chars in enumerate(table):
            for char in chars:
                index.setdefault(char, glyph)
        glyphs = []
        for code, char in enumerate(CP437_CHARS):
            glyph = index.get(char)
            if glyph is None and code < count:
                glyph = code       # the usual PSF order is CP437's
            glyphs.append(bitmaps[glyph] if glyph is not None else bytes(CELL_HEIGHT))
    return Font(glyphs, path)


def _psf1_table(data, count):
    """Per glyph, the characters it shows (PSF 1: UCS-2 entries, 0xFFFE starts sequences)."""
    table, pos = [], 0
    for _ in range(count):
        chars, in_sequence = [], False
        while pos + 2 <= len(data):
            value = struct.unpack_from("<H", data, pos)[0]
            pos += 2
            if value == 0xFFFF:
                break
            if value == 0xFFFE:
                in_sequence = True
            elif not in_sequence:
                chars.append(chr(value))
        table.append(chars)
    return table


def _psf2_table(data, count):
    """Per glyph, the characters it shows (PSF 2: UTF-8, 0xFE starts sequences, 0xFF ends)."""
    table = []
    for entry in data.split(b"\xff")[:count]:
        single = entry.split(b"\xfe")[0]
        table.append(list(single.decode("utf-8", "replace")))
    return table


def render(cells, font, mode=0x03):
    """Rows of palette indices (one bytes object per pixel row) for `cells`, the rows of
    (character, attribute) pairs firmware.video.screen_cells reads."""
    rows = []
    mono = mode == MONO_MODE
    columns = max((len(row) for row in cells), default=0)
    scale = 2 if 0 < columns <= 40 else 1       # 40-column modes: 16-pixel cells
    # glyph row byte -> 8 pixels of 0 (background) / 1 (foreground)
    spread = [bytes((byte >> (7 - bit)) & 1 for bit in range(8)) for byte in range(256)]
    if scale > 1:
        spread = [bytes(p for p in pixels for _ in range(scale)) for pixels in spread]
    colours = {}
    blank = bytes(CELL_HEIGHT)
    for row in cells:
        lines = [[] for _ in range(CELL_HEIGHT)]
        for char, attr in row:
            fg, bg, underline = _mono_colours(attr) if mono else (attr & 0x0F, (attr >> 4) & 0x07, False)
            table = colours.get((fg, bg))
            if table is None:
                table = colours[(fg, bg)] = bytes([bg, fg]) + bytes(254)
            glyph = font.glyphs[char] if fg != bg else blank
            for y in range(CELL_HEIGHT):
                bits = glyph[y] | (0xFF if underline and y == CELL_HEIGHT - 2 else 0)
                lines[y].append(spread[bits].translate(table))
        rows.extend(b"".join(line) for line in lines)
    return rows


def _mono_colours(attr):
    """(fg, bg, underline) of an MDA attribute in palette indices."""
    bright = 0x08 if attr & 0x08 else 0
    if attr & 0x77 == 0x00:
        return 0, 0, False                      # invisible
    if attr & 0x77 == 0x70:
        return 0, 7, False                      # reverse video
    return 7 | bright, 0, attr & 0x07 == 0x01   # normal or bright, maybe underlined


def png(rows, palette=PALETTE, rgb=False):
    """An 8-bit palette PNG of `rows` (equal-length bytes of palette indices), or with
    rgb=True a truecolour PNG of rows of R, G, B bytes."""
    height = len(rows)
    width = len(rows[0]) // (3 if rgb else 1) if rows else 0

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    raw = b"".join(b"\0" + row for row in rows)      # filter type 0 on every row
    colour_type = 2 if rgb else 3
    plte = b"" if rgb else chunk(b"PLTE", b"".join(bytes(entry) for entry in palette))
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)) +
            plte + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def is_drawn(screen):
    """Whether `screen` (a firmware.display.Screen) is drawn as it is: False for the
    graphics modes pvboot does not render, whose picture shows the text buffer."""
    return screen.kind != "undrawn"


def screenshot_png(cells, mode=0x03, font=None):
    """PNG bytes of a text screen; `font` is a Font, a path, or None for the default."""
    if not isinstance(font, Font):
        font = load_font(font)
    return png(render(cells, font, mode))


def screen_png(screen, font=None):
    """PNG bytes of a firmware.display.Screen: its pixels in a graphics mode, its text
    cells drawn with `font` otherwise."""
    if screen.kind == "indexed":
        palette = [screen.palette[i:i + 3] for i in range(0, len(screen.palette), 3)]
        return png(screen.rows(), palette)
    if screen.kind == "rgb":
        return png(screen.rows(), rgb=True)
    return screenshot_png(screen.cells, screen.mode, font)


def save(path, screen, font=None):
    data = screen_png(screen, font)
    with open(path, "wb") as f:
        f.write(data)
