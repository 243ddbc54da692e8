"""VBE and the VGA DAC: tests/guests/vbe.S prints what INT 10h AH=4Fh and the DAC
functions answer (controller info, every mode's mode info, the state functions, the
mode 13h palette) and must print the same under QEMU + SeaBIOS and pvboot; then it
draws a pattern, and --screenshot must show exactly that pattern in the DAC's colours."""
import struct
import zlib

import pytest

from pvboot.tools.diskpattern import disk_image
from tests import qemu
from tests.guests import build
from tests.cli import pvboot

needs_binutils = pytest.mark.skipif(not build.tools_available(), reason="GNU as/ld not installed")
needs_qemu = pytest.mark.skipif(not qemu.qemu_available(), reason=f"{qemu.QEMU} not installed")

FINAL_MODES = {"mode13": 0x13, "vbe16": 0x4111, "vbe32": 0x4142}   # 320x200, 640x480
PV_PREFIX = "PV "


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    if not build.tools_available():
        pytest.skip("GNU as/ld not installed")
    paths = {}
    for name, mode in FINAL_MODES.items():
        paths[name] = guest_image(tmp_path_factory.mktemp(name), "vbe", FINAL_MODE=mode)
    return paths


def boot_with_screenshot(image, tmp_path):
    png_path = tmp_path / "screen.png"
    serial_path = tmp_path / "serial.txt"
    proc = pvboot("boot", str(image), "--quiet", "--screenshot", str(png_path),
                  "--serial", str(serial_path), "--timeout", "60")
    assert proc.returncode == 0, proc.stderr
    return serial_path.read_bytes().decode("latin-1"), png_path.read_bytes()


def decode_png(data):
    """(width, height, colour type, palette, rows) of an 8-bit palette or RGB PNG with
    filter-0 rows, every chunk's CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        assert struct.unpack_from(">I", data, pos + 8 + length)[0] == zlib.crc32(kind + body)
        if kind == b"IDAT":
            idat += body
        chunks[kind] = body
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and colour_type in (2, 3)
    plte = chunks.get(b"PLTE", b"")
    palette = [tuple(plte[i:i + 3]) for i in range(0, len(plte), 3)]
    raw = zlib.decompress(idat)
    stride = 1 + width * (3 if colour_type == 2 else 1)
    assert len(raw) == stride * height
    assert all(raw[y * stride] == 0 for y in range(height))
    rows = [raw[y * stride + 1:(y + 1) * stride] for y in range(height)]
    return width, height, colour_type, palette, rows


def dac_from_serial(serial, mode=0x13):
    """The 256 6-bit palette entries the guest read with AX=1017h in `mode`."""
    data = bytearray()
    for line in serial.splitlines():
        if line.startswith(f"DAC{mode:02X} "):
            data += bytes.fromhex(line.split()[2])
    assert len(data) == 768
    return [tuple(data[i:i + 3]) for i in range(0, 768, 3)]


def six_to_eight(value):
    """A 6-bit DAC value as a display shows it (QEMU's scaling)."""
    return (value << 2) | ((value & 1) * 3)


@needs_binutils
@needs_qemu
def test_vbe_answers_match_qemu_and_seabios(images, tmp_path):
    serial, _ = boot_with_screenshot(images["vbe32"], tmp_path)
    exit_value, reference = qemu.run_qemu(images["vbe32"], timeout=60)
    assert exit_value == 0, reference
    ours = [line for line in serial.splitlines() if not line.startswith(PV_PREFIX)]
    theirs = [line for line in reference.splitlines() if not line.startswith(PV_PREFIX)]
    assert ours == theirs
    modes = [line.split()[1] for line in ours if line.startswith("MODE ")]
    # The modes a kernel's vga= asks for, and the ones every depth needs, are there.
    for mode in ("0101", "0112", "0114", "0115", "0117", "0118", "0144", "0013"):
        assert mode in modes


@needs_binutils
def test_vbe_functions_pvboot_answers_as_current_seabios(images, tmp_path):
    serial, _ = boot_with_screenshot(images["vbe32"], tmp_path)
    lines = serial.splitlines()
    assert "PV 4F05 LINEAR AX=034F" in lines        # invalid in a linear mode
    assert "PV 4F09 SET AX=004F" in lines
    assert "PV 4F09 ENTRY 5 112233" in lines        # blue, green, red in, R G B back
    assert "PV 1019 PEL MASK FF" in lines
    assert "4F0A AX=0100" in lines                  # no protected-mode interface
    info = next(line for line in lines if line.startswith("MODE 0114 "))
    raw = bytes.fromhex(info.split()[4])           # mode info from offset 16
    bytes_per_line, width, height = struct.unpack_from("<HHH", raw, 0)
    assert (width, height, raw[9], raw[11]) == (800, 600, 16, 0x06)   # direct colour
    # What Linux's boot code wants of a vga=788 (314h) mode: supported, colour,
    # graphics, linear frame buffer (attributes 99h), packed or direct colour.
    attributes = struct.unpack_from("<H", bytes.fromhex(info.split()[3]), 0)[0]
    assert attributes & 0x99 == 0x99
    assert struct.unpack_from("<I", raw, 24)[0] == 0xFD000000
    assert bytes_per_line == 1600


def pattern_rgb(depth, x, y):
    if depth == 32:
        return x & 0xFF, y & 0xFF, (x + y) & 0xFF
    red, green, blue = x & 31, y & 63, (x + y) & 31
    return (red << 3) | (red >> 2), (green << 2) | (green >> 4), (blue << 3) | (blue >> 2)


@needs_binutils
@pytest.mark.parametrize("name,depth", [("vbe16", 16), ("vbe32", 32)])
def test_screenshot_of_a_vbe_mode_is_the_frame_buffer(images, tmp_path, name, depth):
    _, png = boot_with_screenshot(images[name], tmp_path)
    width, height, colour_type, _, rows = decode_png(png)
    assert (width, height, colour_type) == (640, 480, 2)
    for y in range(0, height, 7):
        row = rows[y]
        for x in range(0, width, 5):
            assert tuple(row[3 * x:3 * x + 3]) == pattern_rgb(depth, x, y), (x, y)


@needs_binutils
def test_screenshot_of_mode_13h_uses_the_dac_palette(images, tmp_path):
    serial, png = boot_with_screenshot(images["mode13"], tmp_path)
    width, height, colour_type, palette, rows = decode_png(png)
    assert (width, height, colour_type) == (320, 200, 3)
    assert all(rows[y] == bytes((x + 2 * y) & 0xFF for x in range(320)) for y in range(200))
    # The picture's colours are the DAC's: the default 256-colour palette the guest
    # read back (and which the QEMU comparison checks), scaled to 8 bits.
    dac = dac_from_serial(serial)
    assert palette == [tuple(six_to_eight(c) for c in rgb) for rgb in dac]
    assert len(set(palette)) > 200


def read_ppm(data):
    """(width, height, RGB bytes) of a binary PPM as QEMU's screendump writes it."""
    magic, size, maxval, pixels = data.split(b"\n", 3)
    assert magic == b"P6" and maxval == b"255"
    width, height = map(int, size.split())
    assert len(pixels) == width * height * 3
    return width, height, pixels


def assert_screen_matches_qemu(image, tmp_path):
    """Boot `image` (a guest that says PICTURE READY and waits for a key) under QEMU,
    saving its display then (QMP screendump), and under pvboot with --screenshot at the
    end of the run; the pixels must agree.  QEMU shows mode 13h double-scanned and
    double-clocked (640x400), so each of pvboot's 320x200 pixels stands for 2x2."""
    dump = tmp_path / "qemu.ppm"
    result = qemu.run((image,), timeout=60, keys=["ret"], keys_after="PICTURE READY",
                      screendump=dump)
    assert result.exit_value == 0, result.serial_text
    qemu_width, qemu_height, qemu_pixels = read_ppm(dump.read_bytes())
    png_path = tmp_path / "pvboot.png"
    proc = pvboot("boot", str(image), "--quiet", "--keys", "x", "--screenshot", str(png_path))
    assert proc.returncode == 0, proc.stderr
    width, height, colour_type, palette, rows = decode_png(png_path.read_bytes())
    scale = qemu_width // width
    assert (width * scale, height * scale) == (qemu_width, qemu_height)
    for y in range(qemu_height):
        row = rows[y // scale]
        if colour_type == 3:
            ours = b"".join(bytes(palette[row[x // scale]]) for x in range(qemu_width))
        else:
            ours = b"".join(row[3 * (x // scale):3 * (x // scale) + 3] for x in range(qemu_width))
        assert ours == qemu_pixels[y * qemu_width * 3:(y + 1) * qemu_width * 3], y


def guest_image(tmp_path, name, **defsyms):
    program = build.assemble(build.GUEST_DIR / f"{name}.S",
                             {"DISK_SECTORS": build.DEFAULT_DISK_SECTORS, **defsyms})
    image = tmp_path / f"{name}.img"
    image.write_bytes(bytes(disk_image(program, build.DEFAULT_DISK_SECTORS, {})))
    return image


@needs_binutils
@needs_qemu
@pytest.mark.parametrize("mode", [0x13, 0x4111, 0x4142])
def test_screenshot_matches_qemu_screendump(tmp_path, mode):
    """vbe.S's pattern in mode 13h and in 16- and 32-bit VBE modes."""
    assert_screen_matches_qemu(guest_image(tmp_path, "vbe", FINAL_MODE=mode, WAIT_KEY=1), tmp_path)


@needs_binutils
@needs_qemu
def test_mode_13h_text_and_pixels_match_qemu(tmp_path):
    """mode13.S: INT 10h pixels, teletype lines that scroll, repeated characters, a
    string, a window scroll and every printable ASCII glyph of the 8x8 font."""
    assert_screen_matches_qemu(guest_image(tmp_path, "mode13"), tmp_path)
