"""The Debian installer's own graphical boot menu (Debian package
debian-installer-12-netboot-amd64: its boot-screens, vesamenu.c32 and splash.png) on an
ISOLINUX CD: --screenshot must show the splash and the menu as the installer draws
them in a VBE mode, where a text fallback would be a 640x400 palette picture."""
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.cli import pvboot
from tests.firmware.test_vbe import decode_png

NETBOOT = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")
BOOT_SCREENS = NETBOOT / "boot-screens"
ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")


@pytest.fixture(scope="module")
def installer_iso(tmp_path_factory):
    if not (BOOT_SCREENS / "syslinux.cfg").is_file():
        pytest.skip("Debian package debian-installer-12-netboot-amd64 not installed")
    if not ISOLINUX_BIN.is_file() or not shutil.which("xorriso"):
        pytest.skip("Debian packages isolinux and xorriso needed")
    root = tmp_path_factory.mktemp("d-i")
    tree = root / "cd" / "isolinux"
    # The installer's config names its files relative to the working directory, which
    # ISOLINUX sets to the folder its config is in.
    shutil.copytree(BOOT_SCREENS, tree / "debian-installer" / "amd64" / "boot-screens")
    shutil.copy(ISOLINUX_BIN, tree / "isolinux.bin")
    shutil.copy(BOOT_SCREENS / "ldlinux.c32", tree / "ldlinux.c32")    # the same SYSLINUX build
    shutil.copy(BOOT_SCREENS / "syslinux.cfg", tree / "isolinux.cfg")
    iso = root / "d-i.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso),
                    "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot",
                    "-boot-load-size", "4", "-boot-info-table", str(root / "cd")],
                   check=True, capture_output=True, timeout=120)
    return iso


def rgb_rows(png):
    """The RGB rows of an 8-bit RGB PNG with any of the five row filters."""
    chunks, pos = {}, 8
    idat = b""
    while pos < len(png):
        length, kind = struct.unpack_from(">I4s", png, pos)
        body = png[pos + 8:pos + 8 + length]
        idat += body if kind == b"IDAT" else b""
        chunks[kind] = body
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour_type, interlace) == (8, 2, 0)
    raw, stride, rows, prev = zlib.decompress(idat), 3 * width, [], bytearray(3 * width)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - 3] if i >= 3 else 0
            b, c = prev[i], (prev[i - 3] if i >= 3 else 0)
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def test_the_installer_menu_shows_in_a_vbe_screenshot(installer_iso, tmp_path):
    shot = tmp_path / "d-i.png"
    proc = pvboot("boot", "--cdrom", str(installer_iso), "--quiet", "--screenshot", str(shot),
                  "--timeout", "120", timeout=180)
    # The menu waits for a key (timeout 0) until the key script's guest-time limit.
    assert "waiting-for-key" in proc.stderr, proc.stderr
    assert "graphics mode" not in proc.stderr
    width, height, colour_type, _, rows = decode_png(shot.read_bytes())
    assert (width, height, colour_type) == (640, 480, 2)
    splash_w, splash_h, splash = rgb_rows((BOOT_SCREENS / "splash.png").read_bytes())
    assert (splash_w, splash_h) == (width, height)
    # Outside the menu box the screen is the installer's splash picture, pixel for pixel.
    same = sum(rows[y][3 * x:3 * x + 3] == splash[y][3 * x:3 * x + 3]
               for y in range(0, height, 2) for x in range(0, width, 2))
    assert same > 0.8 * (width // 2) * (height // 2)
    # And the menu is drawn over it: the box's rows differ from the splash.
    menu = sum(rows[y] != splash[y] for y in range(150, 250))
    assert menu > 50
