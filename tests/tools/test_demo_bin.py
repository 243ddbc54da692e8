"""The built-in demo disk: roms/demo.bin is exactly what GNU as makes of
roms/demo.S (tools/build_demo.py), and the demo disk that pvboot builds at run
time (tools/diskpattern.demo_disk_image) boots to PASS under QEMU + SeaBIOS.
"""
import pytest

from tests import qemu
from tests.guests import build
from pvboot.tools import build_demo
from pvboot.tools.diskpattern import (DEMO_DISK_SECTORS, SECTOR_SIZE, WRITE_SALT, demo_disk_image,
                               pattern_sector)

# What the demo prints on COM1 (and on the screen) on a good disk; pvboot must match.
DEMO_EXPECTED_SERIAL = "pvboot demo\r\nCHS READ OK\r\nEDD READ OK\r\nWRITE OK\r\nPASS\r\n"
DEMO_WRITE_LBA = 40

needs_binutils = pytest.mark.skipif(not build.tools_available(),
                                    reason="GNU as / ld not installed")
needs_qemu = pytest.mark.skipif(not qemu.qemu_available(),
                                reason="qemu-system-i386 not installed")


def demo_bin():
    return build_demo.OUTPUT.read_bytes()


def test_demo_bin_is_one_boot_sector():
    data = demo_bin()
    assert len(data) == SECTOR_SIZE
    assert data[510:512] == b"\x55\xAA"


@needs_binutils
def test_demo_bin_matches_source():
    assert build_demo.build() == demo_bin(), "run: python -m pvboot.tools.build_demo"


@needs_qemu
def test_demo_disk_boots_to_pass(tmp_path):
    image = tmp_path / "demo.img"
    image.write_bytes(demo_disk_image(demo_bin()))
    exit_value, serial = qemu.run_qemu(image, timeout=10)
    assert serial == DEMO_EXPECTED_SERIAL
    assert exit_value == 0
    after = bytearray(demo_disk_image(demo_bin()))
    at = DEMO_WRITE_LBA * SECTOR_SIZE
    after[at:at + SECTOR_SIZE] = pattern_sector(DEMO_WRITE_LBA, WRITE_SALT)
    assert image.read_bytes() == bytes(after)
    assert len(after) == DEMO_DISK_SECTORS * SECTOR_SIZE


@needs_qemu
def test_demo_reports_bad_data(tmp_path):
    data = bytearray(demo_disk_image(demo_bin()))
    data[1003 * SECTOR_SIZE + 100] ^= 0xFF     # inside the EDD read (LBAs 1000-1007)
    image = tmp_path / "demo.img"
    image.write_bytes(data)
    exit_value, serial = qemu.run_qemu(image, timeout=10)
    assert serial == "pvboot demo\r\nCHS READ OK\r\nFAIL\r\n"
    assert exit_value == 1
