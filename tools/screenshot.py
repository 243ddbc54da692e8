"""The final screen as a PNG (`pvboot boot --screenshot FILE.png`).

Details: docs/video.md.
"""
import struct
import zlib

from pvboot.firmware import vgafont
from pvboot.firmware.vgafont import (  # noqa: F401 (the font API, re-exported)
    CELL_HEIGHT, CELL_WIDTH, CP437_CHARS, FONT_CANDIDATES, FONT_ENV, Font, FontError, find_font)

# The 16 colours of the CGA palette as a VGA DAC gives them in text mode (colour 6 is
# brown, not dark yellow).
PALETTE = (
    (0x00, 0x00, 0x00), (0x00, 0x00, 0xAA), (0x00, 0xAA, 0x00), (0x00, 0xAA, 0xAA),
    (0xAA, 0x00, 0x00), (0xAA, 0x00, 0xAA), (0xAA, 0x55, 0x00), (0xAA, 0xAA, 0xAA),
    (0x55, 0x55, 0x55), (0x55, 0x55, 0xFF), (0x55, 0xFF, 0x55), (0x55, 0xFF, 0xFF),
    (0xFF, 0x55, 0x55), (0xFF, 0x55, 0xFF), (0xFF, 0xFF, 0x55), (0xFF, 0xFF, 0xFF),
)
MONO_MODE = 0x07


def load_font(path=None):
    """The font for text screens (firmware.vgafont.load_font with this module's
    candidate paths)."""
    return vgafont.load_font(path, FONT_CANDIDATES)


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
