"""Reference runs: every guest test program boots under real QEMU + SeaBIOS.

Each program must print exactly build.EXPECTED_SERIAL[name], exit with 0
through isa-debug-exit, and leave its image exactly as expected (the writers'
sectors salted, nothing else touched). pvboot is later held to the same
output. Also checks the image builder and that the guests' checks can fail.
"""
import pytest

from tests import qemu
from tests.guests import build
from pvboot.tools.diskpattern import PATTERN_START, SECTOR_SIZE, pattern_sector

needs_binutils = pytest.mark.skipif(not build.tools_available(),
                                    reason="GNU as / ld not installed")
needs_qemu = pytest.mark.skipif(not qemu.qemu_available(),
                                reason="qemu-system-i386 not installed")

TIMEOUT = 10.0


def boot(image, name, **kwargs):
    floppy = build.PROGRAMS[name]["media"] == "floppy"
    return qemu.run_qemu(image, floppy=floppy, timeout=TIMEOUT, **kwargs)


@needs_binutils
@needs_qemu
@pytest.mark.parametrize("name", sorted(build.PROGRAMS))
def test_guest_passes_under_qemu(name, tmp_path):
    image = build.build_image(name, tmp_path)
    kwargs = {}
    if name == "keys":
        kwargs = {"keys": build.KEYS, "keys_after": build.KEYS_READY}
    exit_value, serial = boot(image, name, **kwargs)
    assert serial == build.EXPECTED_SERIAL[name]
    assert serial.endswith("PASS\r\n")
    assert exit_value == build.EXPECTED_EXIT
    assert image.read_bytes() == build.expected_image_after(name)


@needs_binutils
@needs_qemu
def test_keys_waits_for_input(tmp_path):
    # Without keys the program must sit polling INT 16h until killed.
    image = build.build_image("keys", tmp_path)
    exit_value, serial = qemu.run_qemu(image, timeout=2.0)
    assert exit_value is None
    assert serial == "KEYS START\r\nKEYS READY\r\n"


@needs_binutils
@needs_qemu
def test_corrupted_sector_is_reported(tmp_path):
    # The guests' pattern checks must be able to fail: flip one word of LBA 100.
    image = build.build_image("disk_rw", tmp_path)
    data = bytearray(image.read_bytes())
    at = 100 * SECTOR_SIZE + 0x10
    want = int.from_bytes(data[at:at + 2], "little")
    data[at:at + 2] = (want ^ 0xFFFF).to_bytes(2, "little")
    image.write_bytes(data)
    exit_value, serial = boot(image, "disk_rw")
    assert exit_value == 1
    assert serial.endswith(f"EDD READ DATA FAIL MISMATCH LBA=00000064 OFF=0010 "
                           f"GOT={want ^ 0xFFFF:04X} WANT={want:04X}\r\n")


@needs_binutils
def test_builds_are_reproducible():
    for name in build.PROGRAMS:
        first = build.build_program(name)
        build._build_cached.cache_clear()
        assert build.build_program(name) == first


@needs_binutils
@pytest.mark.parametrize("name", sorted(build.PROGRAMS))
def test_image_layout(name):
    image = build.image_bytes(name)
    sectors = len(image) // SECTOR_SIZE
    if build.PROGRAMS[name]["media"] == "floppy":
        assert len(image) == build.FLOPPY_1440K
    else:
        assert sectors == build.DEFAULT_DISK_SECTORS
    assert image[510:512] == b"\x55\xAA"
    # Zero partition table (chain has its own): QEMU would guess geometry from it.
    if name != "chain":
        assert image[0x1BE:0x1FE] == bytes(64)
    program = build.build_program(name)
    assert len(program) <= PATTERN_START * SECTOR_SIZE
    vbr_lba = build.CHAIN_VBR_LBA if name == "chain" else None
    for lba in (PATTERN_START, PATTERN_START + 1, 1000, sectors - 1):
        sector = image[lba * SECTOR_SIZE:(lba + 1) * SECTOR_SIZE]
        assert sector == pattern_sector(lba), lba
    if vbr_lba is not None:
        vbr = image[vbr_lba * SECTOR_SIZE:(vbr_lba + 1) * SECTOR_SIZE]
        assert vbr[510:512] == b"\x55\xAA"
        assert vbr != pattern_sector(vbr_lba)
        # The MBR's active entry points at the VBR.
        entry = image[0x1BE:0x1CE]
        assert entry[0] == 0x80
        assert int.from_bytes(entry[8:12], "little") == vbr_lba


def test_pattern_definition():
    # The rule in tools/diskpattern.py, written out the slow way.
    def slow(lba, salt=0):
        lo, hi = (lba & 0xFFFF) ^ salt, lba >> 16
        words = [(((lo ^ (i * 0x0105)) & 0xFFFF) + (hi if i & 1 else 0)) & 0xFFFF
                 for i in range(256)]
        return b"".join(w.to_bytes(2, "little") for w in words)

    for lba in (0, 1, 16, 40, 0xFFFF, 0x10000, 0x12345678, 0xFFFFFFFF):
        for salt in (0, build.WRITE_SALT):
            assert pattern_sector(lba, salt) == slow(lba, salt)
    assert pattern_sector(16)[:4] == bytes.fromhex("10001501")
    assert len({pattern_sector(lba) for lba in range(4096)}) == 4096
