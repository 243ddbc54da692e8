"""--screenshot: the final text screen as a 640x400 PNG drawn with a real VGA font in
the CGA palette.  The PNG is decoded here with zlib alone (chunk CRCs checked), and the
pixels are compared cell by cell with what the screen holds."""
import gzip
import os
import struct
import subprocess
import sys
import zlib

import pytest

from tests.guests import build
from tests.cli import image, pvboot
from pvboot.tools import runner, screenshot

needs_binutils = pytest.mark.skipif(not build.tools_available(), reason="GNU as/ld not installed")


def decode_png(data):
    """(width, height, palette, rows of palette indices) of an 8-bit palette PNG with
    filter 0 rows, checking the signature and every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        pos += 12 + length
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    width, height, depth, colour_type, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour_type) == (8, 3)
    plte = dict(chunks)[b"PLTE"]
    palette = [tuple(plte[i:i + 3]) for i in range(0, len(plte), 3)]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width + 1
    assert len(raw) == stride * height
    rows = []
    for y in range(height):
        assert raw[y * stride] == 0           # filter type None
        rows.append(raw[y * stride + 1:(y + 1) * stride])
    return width, height, palette, rows


def cell_pixels(rows, row, col):
    """The 8x16 palette indices of text cell (row, col)."""
    return [rows[row * 16 + y][col * 8:col * 8 + 8] for y in range(16)]


@pytest.fixture(scope="module")
def vga_font():
    try:
        return screenshot.load_font()
    except screenshot.FontError as exc:
        pytest.skip(str(exc))


@needs_binutils
def test_screenshot_of_the_video_guest_matches_its_screen(tmp_path, vga_font):
    """video.S leaves row 0 blank on blue (1Fh), "pvboot" white on green (2Fh) at row 9
    column 20, row 10 blank on grey (70h) and the rest blank on black (07h)."""
    image = build.build_disk("video", tmp_path)
    png_path = tmp_path / "screen.png"
    proc = pvboot("boot", str(image), "--screenshot", str(png_path), "--quiet", "--timeout", "20")
    assert proc.returncode == 0, proc.stderr
    width, height, palette, rows = decode_png(png_path.read_bytes())
    assert (width, height) == (640, 400)
    assert palette[:16] == list(screenshot.PALETTE)
    expected = build.expected_video_screen()
    for row in range(25):
        for col in range(80):
            char, attr = expected[(row * 80 + col) * 2], expected[(row * 80 + col) * 2 + 1]
            pixels = cell_pixels(rows, row, col)
            fg, bg = attr & 0x0F, (attr >> 4) & 0x07
            if char == 0x20:
                # No text: the whole cell is its background colour.
                assert all(p == bg for line in pixels for p in line), (row, col)
            else:
                # Text: the glyph's bits in the foreground, the rest in the background.
                glyph = vga_font.glyphs[char]
                for y in range(16):
                    want = bytes(fg if glyph[y] & (0x80 >> x) else bg for x in range(8))
                    assert pixels[y] == want, (row, col, y)
                assert any(p == fg for line in pixels for p in line)
    # "pvboot" is really drawn: white pixels at row 9, columns 20-25, none elsewhere.
    white = {(y // 16, x // 8) for y, line in enumerate(rows) for x, p in enumerate(line) if p == 15}
    assert white == {(9, col) for col in range(20, 26)}


def test_render_colours_and_blank_cells(vga_font):
    cells = [[(0x20, 0x07)] * 80 for _ in range(25)]
    cells[0][0] = (ord("A"), 0x1E)          # yellow on blue
    cells[24][79] = (0xDB, 0x8C)            # full block, bright red, blink bit set
    cells[12][40] = (ord("x"), 0x44)        # fg = bg: nothing to see
    width, height, _, rows = decode_png(screenshot.screenshot_png(cells, font=vga_font))
    assert (width, height) == (640, 400)
    a = cell_pixels(rows, 0, 0)
    assert {p for line in a for p in line} == {14, 1}
    block = cell_pixels(rows, 24, 79)
    assert all(p == 12 for line in block for p in line)
    assert all(p == 4 for line in cell_pixels(rows, 12, 40) for p in line)
    others = [cell_pixels(rows, r, c) for r in range(25) for c in range(80)
              if (r, c) not in {(0, 0), (24, 79), (12, 40)}]
    assert all(p == 0 for cell in others for line in cell for p in line)


def test_forty_columns_are_doubled_across(vga_font):
    cells = [[(ord("I"), 0x07)] * 40 for _ in range(25)]
    width, height, _, rows = decode_png(screenshot.screenshot_png(cells, font=vga_font))
    assert (width, height) == (640, 400)
    glyph = vga_font.glyphs[ord("I")]
    for y in range(16):
        want = bytes(7 if glyph[y] & (0x80 >> (x // 2)) else 0 for x in range(16))
        assert rows[y][:16] == want


def test_monochrome_attributes(vga_font):
    cells = [[(0xDB, 0x07), (0xDB, 0x0F), (0x20, 0x70), (0xDB, 0x00), (ord("_"), 0x01)] +
             [(0x20, 0x07)] * 75]
    _, _, _, rows = decode_png(screenshot.screenshot_png(cells, mode=0x07, font=vga_font))
    colours = [{p for line in cell_pixels(rows, 0, c) for p in line} for c in range(5)]
    assert colours[:4] == [{7}, {15}, {7}, {0}]
    assert cell_pixels(rows, 0, 4)[14] == bytes([7] * 8)     # underline


def psf2(glyphs, table=None, height=16):
    """A PSF 2 font of `glyphs` (lists of row bytes), with a Unicode table if given."""
    data = b"".join(bytes(g) for g in glyphs)
    header = struct.pack("<4s7I", b"\x72\xb5\x4a\x86", 0, 32, 1 if table else 0,
                         len(glyphs), height, height, 8)
    body = header + data
    if table:
        body += b"".join(chars.encode("utf-8") + b"\xff" for chars in table)
    return body


def test_psf2_font_with_a_unicode_table_is_read_in_cp437_order(tmp_path):
    # Glyph 0 shows "A", glyph 1 the smiley (CP437 01h), the rest nothing in particular.
    glyphs = [[0x11] * 16, [0x22] * 16] + [[0] * 16] * 254
    table = ["A", "\u263a"] + ["\ufffd"] * 254
    path = tmp_path / "font.psfu.gz"
    path.write_bytes(gzip.compress(psf2(glyphs, table)))
    font = screenshot.load_font(str(path))
    assert font.glyphs[ord("A")] == bytes([0x11] * 16)
    assert font.glyphs[0x01] == bytes([0x22] * 16)


def test_psf_without_a_table_is_taken_as_cp437(tmp_path):
    glyphs = [[i] * 16 for i in range(256)]
    path = tmp_path / "font.psf"
    path.write_bytes(psf2(glyphs))
    font = screenshot.load_font(str(path))
    assert font.glyphs[0x41] == bytes([0x41] * 16)


def test_wrong_font_shape_is_refused(tmp_path):
    path = tmp_path / "small.psf"
    path.write_bytes(psf2([[0] * 8] * 256, height=8))
    with pytest.raises(screenshot.FontError, match="8x16"):
        screenshot.load_font(str(path))
    junk = tmp_path / "junk.psf"
    junk.write_bytes(b"not a font at all")
    with pytest.raises(screenshot.FontError, match="not a PSF"):
        screenshot.load_font(str(junk))


def test_no_font_installed_says_what_to_install(monkeypatch):
    monkeypatch.delenv(screenshot.FONT_ENV, raising=False)
    monkeypatch.setattr(screenshot, "FONT_CANDIDATES", ())
    with pytest.raises(screenshot.FontError, match="console-data"):
        screenshot.load_font()


@needs_binutils
def test_cli_missing_font_is_one_line_before_booting(tmp_path):
    env_font = str(tmp_path / "no-such-font.psf.gz")
    proc = pvboot_env({"PVBOOT_FONT": env_font}, "boot", image(tmp_path, "cli\nhlt"),
                      "--screenshot", str(tmp_path / "x.png"))
    assert proc.returncode == runner.EXIT_USAGE
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--screenshot" in lines[0] and "no-such-font" in lines[0]
    assert not os.path.exists(tmp_path / "x.png")


def pvboot_env(env, *args):
    return subprocess.run([sys.executable, "-m", "pvboot.tools"] + list(args), capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env},
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@needs_binutils
def test_graphics_mode_is_said_not_drawn(tmp_path, vga_font):
    png_path = tmp_path / "gfx.png"
    proc = pvboot("boot", image(tmp_path, "mov ax, 0x0012\nint 0x10\ncli\nhlt"), "--quiet",
                  "--screenshot", str(png_path))
    assert proc.returncode == 0, proc.stderr
    assert "graphics mode 12h" in proc.stderr
    assert png_path.exists()
