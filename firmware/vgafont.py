"""The VGA BIOS font: 256 CP437 glyphs of 8x16 pixels, read from a PSF console font.

pvboot ships no font.  The video BIOS (firmware/video.py, INT 10h AX=1130h) offers the
glyphs to guests that draw their own text in graphics modes (SYSLINUX's vesamenu), and
--screenshot draws text modes with them.  They come from a PSF console font at run
time, by default console-data's default8x16.psf.gz (Debian package console-data: the
IBM VGA 8x16 font in code page 437 order; GPL-2 like the rest of console-data).
PVBOOT_FONT names another PSF 1 or 2 font, gzipped or not, 8 pixels wide; a font with
a Unicode table is looked up by the CP437 characters' code points.
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
# The 8x8 font of mode 13h: console-data's iso01a-8x8 has the IBM VGA's 8x8 glyphs for
# printable ASCII (the screendump comparison with QEMU + SeaBIOS checks each one); its
# codes 00h-1Fh and 80h-FFh are ISO 8859-1's, not code page 437's.
FONT8_CANDIDATES = (
    "/usr/share/consolefonts/iso01a-8x8.psf.gz",
    "/usr/share/kbd/consolefonts/iso01a-8x8.psf.gz",
    "/usr/lib/kbd/consolefonts/iso01a-8x8.psf.gz",
)

# Where the video BIOS keeps its fonts: the VGA option ROM's segment (C000h), read-only
# to the guest.  AX=1130h and the INT 1Fh / 43h vectors point here.
VGA_ROM_SEGMENT = 0xC000
FONT16_OFFSET = 0x0000
FONT8_OFFSET = 0x1000

PSF1_MAGIC = b"\x36\x04"
PSF2_MAGIC = b"\x72\xb5\x4a\x86"


class FontError(Exception):
    """No usable console font: one line saying what to install or set."""


class Font:
    """256 glyphs in CP437 order, each CELL_HEIGHT bytes of 8 pixels (bit 7 leftmost)."""

    def __init__(self, glyphs, path):
        self.glyphs = glyphs
        self.path = path


def find_font(path=None, candidates=FONT_CANDIDATES, env=FONT_ENV):
    """The font file to use: `path`, else $`env` (None: none), else the first of
    `candidates`."""
    path = path or (os.environ.get(env) if env else None)
    if path:
        if not os.path.isfile(path):
            raise FontError(f"font {path}: no such file")
        return path
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise FontError("no VGA console font: install the Debian package "
                    "console-data (it has /usr/share/consolefonts/default8x16.psf.gz) or set "
                    f"{FONT_ENV} to a PSF font file")


def load_font(path=None, candidates=FONT_CANDIDATES, height=CELL_HEIGHT, env=FONT_ENV):
    """Read a PSF 1 or 2 font (gzipped or not) as a Font of 256 CP437 glyphs of 8 x
    `height` pixels."""
    expected_height = height
    path = find_font(path, candidates, env)
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
    if width != 8 or height != expected_height or len(data) < glyph_end or \
            count < 256 and table is None:
        raise FontError(f"font {path}: {width}x{height} with {count} glyphs; an "
                        f"8x{expected_height} font with the 256 CP437 characters is needed")
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
            glyphs.append(bitmaps[glyph] if glyph is not None else bytes(height))
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


def load_font8():
    """The 8x8 font of the graphics modes (FONT8_CANDIDATES; PVBOOT_FONT is the 8x16's)."""
    return load_font(None, FONT8_CANDIDATES, height=8, env=None)
