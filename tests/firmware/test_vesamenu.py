"""SYSLINUX's graphical menu (vesamenu.c32, Debian package syslinux-common), the menu
the Debian installer's images boot into: it finds a VBE mode through INT 10h AH=4Fh,
draws into the linear frame buffer with the VGA BIOS's 8x16 font (AX=1130h), and waits
for a key.  --screenshot must show that picture: an RGB frame, with the menu title
drawn exactly in the font's glyphs, where a text-mode fallback would be a 640x400
palette image."""
import pytest

from pvboot.firmware import vgafont
from pvboot.tools import mkimage
from tests.firmware.test_vbe import decode_png
from tests.cli import pvboot

TITLE = "pvboot graphical boot menu"
MENU_CONFIG = f"""UI vesamenu.c32
MENU TITLE {TITLE}
MENU RESOLUTION 640 480
PROMPT 0
TIMEOUT 0
LABEL hello
  MENU LABEL Say hello
  COM32 cat.c32
  APPEND hello.txt
LABEL off
  MENU LABEL Power off
  COM32 poweroff.c32
"""
MENU_MODULES = ("vesamenu.c32", "libcom32.c32", "libutil.c32")


@pytest.fixture(scope="module")
def menu_image(tmp_path_factory):
    missing = [m for m in MENU_MODULES if not (mkimage.SYSLINUX_MODULES / m).is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian package syslinux-common)")
    files = {m: (mkimage.SYSLINUX_MODULES / m).read_bytes() for m in MENU_MODULES}
    try:
        return mkimage.build_syslinux_image(tmp_path_factory.mktemp("menu") / "menu.img",
                                            config=MENU_CONFIG, files=files)
    except mkimage.MissingTool as exc:
        pytest.skip(str(exc))


def glyph_pixels(font, text, x0, y0):
    pixels = set()
    for i, char in enumerate(text):
        glyph = font.glyphs[ord(char)]
        for y in range(16):
            for x in range(8):
                if glyph[y] & (0x80 >> x):
                    pixels.add((x0 + 8 * i + x, y0 + y))
    return pixels


def test_vesamenu_draws_its_menu_in_a_vbe_mode(menu_image, tmp_path):
    try:
        font = vgafont.load_font()
    except vgafont.FontError as exc:
        pytest.skip(str(exc))
    png_path = tmp_path / "menu.png"
    proc = pvboot("boot", str(menu_image), "--quiet", "--screenshot", str(png_path),
                  "--timeout", "120", timeout=180)
    # The menu waits for a key (TIMEOUT 0) until the key script's guest-time limit.
    assert "waiting-for-key" in proc.stderr, proc.stderr
    assert "graphics mode" not in proc.stderr
    width, height, colour_type, _, rows = decode_png(png_path.read_bytes())
    assert (width, height, colour_type) == (640, 480, 2)      # MENU RESOLUTION, direct colour

    def pixel(x, y):
        return tuple(rows[y][3 * x:3 * x + 3])

    colours = {pixel(x, y) for y in range(0, height, 4) for x in range(0, width, 4)}
    assert len(colours) > 64                                  # a shaded background, not 16 colours
    # The title is drawn in vesamenu's default title colour (blue on grey): exactly the
    # font's glyphs for the title, centred on an 8-pixel grid near the top.
    blue = {(x, y) for y in range(0, 80) for x in range(width)
            if pixel(x, y)[2] > pixel(x, y)[0] + 60}
    assert blue
    left, top = min(x for x, _ in blue), min(y for _, y in blue)
    matches = [(x0, y0) for y0 in range(top - 15, top + 1) for x0 in range(left - 7, left + 1)
               if glyph_pixels(font, TITLE, x0, y0) == blue]
    assert matches, "the title's pixels are not the title's glyphs"
    x0, _ = matches[0]
    assert abs(x0 + 8 * len(TITLE) / 2 - width / 2) <= 8
