"""firmware.block: SeaBIOS's geometry translation, drive mapping and the process_op door.

Expected geometries are SeaBIOS's answers on QEMU (its "PCHS=... translation=...
LCHS=..." debug line) or worked out by hand from block.c's rules, never taken from the
code under test.
"""
import struct

import pytest

from pvboot.emu.diskimage import DiskImage
from pvboot.firmware import block
from pvboot.firmware.block import (
    CHS, CMD_READ, CMD_VERIFY, CMD_WRITE, DISK_RET_EBADTRACK, DISK_RET_EBOUNDARY,
    DISK_RET_EPARAM, DISK_RET_EWRITEPROTECT, DISK_RET_SUCCESS, TRANSLATION_LARGE,
    TRANSLATION_LBA, TRANSLATION_NONE, TRANSLATION_RECHS, BlockError, DiskOp,
)
from tests.fakebios import FakeBios

MiB = 1 << 20
GiB = 1 << 30


def sparse_image(tmp_path, size, name="disk.img", sector0=None, **kw):
    path = tmp_path / name
    with open(path, "wb") as f:
        f.truncate(size)
        if sector0 is not None:
            f.write(sector0)
    return DiskImage(path, **kw)


def pattern_image(tmp_path, sectors, name="disk.img", **kw):
    """Every sector starts with its LBA (u32) and is filled with a byte derived from it."""
    data = b"".join(struct.pack("<I", lba) + bytes([lba * 7 & 0xFF]) * 508 for lba in range(sectors))
    path = tmp_path / name
    path.write_bytes(data)
    return DiskImage(path, **kw), data


def mbr_with_partition(end_head, end_sector, nr_sects=1000):
    mbr = bytearray(512)
    entry = bytearray(16)
    entry[5] = end_head
    entry[6] = end_sector
    entry[12:16] = struct.pack("<I", nr_sects)
    mbr[0x1BE:0x1CE] = entry
    mbr[510:512] = b"\x55\xAA"
    return bytes(mbr)


def lchs_of(sectors, sector0=None):
    pchs, hint = block.qemu_ide_geometry(sectors, sector0)
    translation = block.get_translation(pchs, sectors, hint)
    return pchs, translation, block.setup_translation(pchs, sectors, translation)


# -- geometry --------------------------------------------------------------------------------
@pytest.mark.parametrize("size, pchs, translation, lchs", [
    (10 * MiB, (20, 16, 63), TRANSLATION_NONE, (20, 16, 63)),
    (504 * MiB, (1024, 16, 63), TRANSLATION_NONE, (1024, 16, 63)),
    (1 * GiB, (2080, 16, 63), TRANSLATION_LBA, (1024, 32, 63)),
    (2 * GiB, (4161, 16, 63), TRANSLATION_LBA, (520, 128, 63)),
    (8 * GiB, (16383, 16, 63), TRANSLATION_LBA, (1024, 255, 63)),
    (100 * GiB, (16383, 16, 63), TRANSLATION_LBA, (1024, 255, 63)),
])
def test_qemu_disk_geometry(size, pchs, translation, lchs):
    got_pchs, got_translation, got_lchs = lchs_of(size // 512)
    assert (tuple(got_pchs), got_translation, tuple(got_lchs)) == (pchs, translation, lchs)


def test_lba_translation_heads_bucket_then_clip():
    # sect = 65600: sect/1024 = 64 stays in the 64-head bucket, 65600/64 = 1025 is clipped.
    sectors = 65600 * 63
    assert tuple(block.setup_translation(CHS(4100, 16, 63), sectors, TRANSLATION_LBA)) == (1024, 64, 63)


def test_small_disks():
    # QEMU's IDE disk has at least 2 cylinders and asks for no translation ...
    pchs, translation, lchs = lchs_of(1000)
    assert (tuple(pchs), translation, tuple(lchs)) == ((2, 16, 63), TRANSLATION_NONE, (2, 16, 63))
    # ... while SeaBIOS's own heuristic sees an invalid geometry and uses LBA: 1000/63 = 15
    # sectors' worth of cylinders over 16 heads is 0 cylinders.
    assert block.get_translation(CHS(0, 0, 0), 1000) == TRANSLATION_LBA
    assert tuple(block.setup_translation(CHS(0, 0, 0), 1000, TRANSLATION_LBA)) == (0, 16, 63)


def test_geometry_from_the_partition_table():
    sectors = GiB // 512
    # Heads > 16 in the table: standard physical geometry, LARGE since 2080*16 <= 131072.
    pchs, translation, lchs = lchs_of(sectors, mbr_with_partition(254, 63))
    assert (tuple(pchs), translation, tuple(lchs)) == ((2080, 16, 63), TRANSLATION_LARGE, (520, 64, 63))
    # Too many cylinders for LARGE: LBA.
    pchs, translation, lchs = lchs_of(8 * GiB // 512, mbr_with_partition(254, 63))
    assert (translation, tuple(lchs)) == (TRANSLATION_LBA, (1024, 255, 63))
    # Heads <= 16: the table's geometry is the physical one, untranslated (clipped to 1024).
    pchs, translation, lchs = lchs_of(100 * MiB // 512, mbr_with_partition(3, 32))
    assert (tuple(pchs), translation, tuple(lchs)) == ((1600, 4, 32), TRANSLATION_NONE, (1024, 4, 32))
    # No signature, empty entries or sector 0 in the table: no guess.
    unsigned = mbr_with_partition(254, 63)[:510] + b"\0\0"
    assert tuple(lchs_of(sectors, unsigned)[0]) == (2080, 16, 63)
    assert tuple(lchs_of(sectors, mbr_with_partition(254, 0))[0]) == (2080, 16, 63)
    assert tuple(lchs_of(sectors, mbr_with_partition(254, 63, nr_sects=0))[0]) == (2080, 16, 63)


def test_translation_heuristic_without_a_hint():
    assert block.get_translation(CHS(1000, 16, 63), 1000 * 16 * 63) == TRANSLATION_NONE
    assert block.get_translation(CHS(2000, 16, 63), 2000 * 16 * 63) == TRANSLATION_LARGE
    assert block.get_translation(CHS(16383, 16, 63), 16383 * 16 * 63) == TRANSLATION_LBA
    # Physical geometry larger than the disk: not valid.
    assert block.get_translation(CHS(1000, 16, 63), 1000) == TRANSLATION_LBA
    assert tuple(block.setup_translation(CHS(2000, 16, 63), 2000 * 1008, TRANSLATION_LARGE)) == (1000, 32, 63)
    # LARGE stops doubling once heads pass 127, then the cylinders are clipped.
    lchs = block.setup_translation(CHS(16383, 16, 63), 16383 * 1008, TRANSLATION_LARGE)
    assert tuple(lchs) == (1024, 128, 63)
    # r-echs: 16 heads become 15 (8192*16/15 = 8738 cylinders), then doubling to 240.
    assert tuple(block.setup_translation(CHS(8192, 16, 63), 8192 * 1008, TRANSLATION_RECHS)) == (546, 240, 63)


@pytest.mark.parametrize("kib, ftype, chs", [
    (160, 6, (40, 1, 8)), (180, 7, (40, 1, 9)), (320, 8, (40, 2, 8)), (360, 1, (40, 2, 9)),
    (720, 3, (80, 2, 9)), (1200, 2, (80, 2, 15)), (1440, 4, (80, 2, 18)), (2880, 5, (80, 2, 36)),
])
def test_floppy_types(kib, ftype, chs):
    assert block.find_floppy_type(kib * 1024) == ftype
    assert tuple(block.FLOPPY_INFO[ftype].chs) == chs


def test_odd_floppy_size_sits_in_a_288_drive_and_a_huge_one_is_refused(tmp_path):
    # QEMU's controller (and so SeaBIOS) reads an odd size as a 2.88M medium.
    assert block.find_floppy_type(1000 * 1024) == -1
    drive = FakeBios([sparse_image(tmp_path, 1000 * 1024, kind="floppy")]).block.get_drive(0)
    assert (drive.floppy_type, tuple(drive.lchs)) == (5, (80, 2, 36))
    with pytest.raises(BlockError, match="larger than the largest floppy"):
        FakeBios([sparse_image(tmp_path, 4 * MiB, "huge.img", kind="floppy")])


# -- mapping at POST ---------------------------------------------------------------------------
def test_setup_maps_drives_and_fills_the_bda(tmp_path):
    big = sparse_image(tmp_path, GiB, "big.img")
    small = sparse_image(tmp_path, 10 * MiB, "small.img")
    floppy = sparse_image(tmp_path, 1440 * 1024, "fd.img", kind="floppy")
    bios = FakeBios([big, floppy, small])
    mem, layer = bios.mem, bios.block
    assert sorted(layer.drives) == [0x00, 0x80, 0x81]
    assert layer.get_drive(0x80).name == "big.img"
    assert layer.get_drive(0x81).name == "small.img"
    assert layer.get_drive(0x82) is None
    assert mem.read_u8(0x475) == 2
    assert mem.read_u16(0x410) & 0x41 == 0x01
    assert mem.read_u8(0x48F) == 0x07

    def table(vector, length):
        ptr = mem.read_u32(vector * 4)
        return mem.read(((ptr >> 16) << 4) + (ptr & 0xFFFF), length)

    # INT 41h: translated (Phoenix) table of the 1 GiB disk, checksummed.
    fdpt = table(0x41, 16)
    cyl, heads, sig, psec, precomp, _, control, pcyl, pheads, landing, spt, _ = \
        struct.unpack("<HBBBHBBHBHBB", fdpt)
    assert (cyl, heads, spt) == (1024, 32, 63)
    assert (pcyl, pheads, psec) == (2080, 16, 63)
    assert (sig, precomp, control, landing) == (0xA0, 0xFFFF, 0xC8, 2080)
    assert sum(fdpt) & 0xFF == 0
    # INT 46h: the 10 MiB disk is untranslated: no Phoenix extension.
    fdpt = table(0x46, 16)
    cyl, heads, sig, psec, _, _, _, pcyl, pheads, _, spt, checksum = struct.unpack("<HBBBHBBHBHBB", fdpt)
    assert (cyl, heads, spt, sig, psec, pcyl, pheads, checksum) == (20, 16, 63, 0, 0, 0, 0, 0)
    # INT 1Eh: the 1.44M diskette parameter table of SeaBIOS.
    dbt = table(0x1E, 14)
    assert dbt[4] == 18 and dbt[0] == 0xAF and dbt[11] == 79 and dbt[13] == 4
    for image in (big, small, floppy):
        image.close()


def test_two_floppies_and_too_many(tmp_path):
    images = [sparse_image(tmp_path, 720 * 1024, f"f{i}.img", kind="floppy") for i in range(3)]
    bios = FakeBios(images[:2])
    assert sorted(bios.block.drives) == [0x00, 0x01]
    assert bios.mem.read_u16(0x410) & 0x41 == 0x41
    assert bios.mem.read_u8(0x48F) == 0x77
    assert bios.mem.read_u8(0x475) == 0
    with pytest.raises(BlockError, match="floppy"):
        FakeBios(images)


def test_boot_order_and_boot_sector(tmp_path):
    image, data = pattern_image(tmp_path, 8)
    floppy = sparse_image(tmp_path, 1440 * 1024, "fd.img", kind="floppy")
    bios = FakeBios([floppy, image])
    assert tuple(bios.block.boot_order()) == (0x80, 0x00)
    assert bios.block.read_boot_sector(0x80) == data[:512]
    assert bios.mem.read(0x7C00, 512) == data[:512]
    assert bios.block.read_boot_sector(0x81) is None
    assert tuple(FakeBios([image], boot_order=(0x00,)).block.boot_order()) == (0x00,)


# -- process_op ----------------------------------------------------------------------------
def test_process_op_reads_into_guest_memory_and_counts(tmp_path):
    image, data = pattern_image(tmp_path, 300)
    bios = FakeBios([image], trace=("disk",))
    drive = bios.block.get_drive(0x80)
    before = dict(bios.counters)
    op = DiskOp(CMD_READ, drive, 5, 128, 0x20000)
    assert bios.block.process_op(op) == DISK_RET_SUCCESS
    assert op.count == 128
    assert bios.mem.read(0x20000, 128 * 512) == data[5 * 512:133 * 512]
    assert bios.counters["disk_ops"] == before["disk_ops"] + 1
    assert bios.counters["sectors_read"] == before["sectors_read"] + 128
    last = bios.disk_trace[-1]
    assert (last.command, last.drive, last.lba, last.done, last.status) == (CMD_READ, 0x80, 5, 128, 0)
    assert "disk read drive 80h lba 5" in bios.lines[-1]


def test_process_op_refuses_more_than_64k(tmp_path):
    image, _ = pattern_image(tmp_path, 300)
    bios = FakeBios([image])
    drive = bios.block.get_drive(0x80)
    bios.mem.fill(0x20000, 130 * 512, 0xEE)
    for command in (CMD_READ, CMD_VERIFY):
        op = DiskOp(command, drive, 0, 129, 0x20000)
        assert bios.block.process_op(op) == DISK_RET_EBOUNDARY
        assert op.count == 0
    assert bios.mem.read(0x20000, 130 * 512) == b"\xEE" * (130 * 512)


def test_transfers_past_the_end(tmp_path):
    image, data = pattern_image(tmp_path, 100)
    bios = FakeBios([image])
    drive = bios.block.get_drive(0x80)
    bios.mem.fill(0x30000, 4 * 512, 0xEE)
    op = DiskOp(CMD_READ, drive, 98, 4, 0x30000)
    assert bios.block.process_op(op) == DISK_RET_EBADTRACK
    assert op.count == 2
    assert bios.mem.read(0x30000, 1024) == data[98 * 512:]
    assert bios.mem.read(0x30000 + 1024, 1024) == b"\xEE" * 1024
    # A write: the rejected sector counts as sent unless it was the last one.
    op = DiskOp(CMD_WRITE, drive, 98, 4, 0x30000)
    assert bios.block.process_op(op) == DISK_RET_EBADTRACK
    assert op.count == 3
    op = DiskOp(CMD_WRITE, drive, 98, 3, 0x30000)
    assert bios.block.process_op(op) == DISK_RET_EBADTRACK
    assert op.count == 0


def test_read_only_and_rom_buffers(tmp_path):
    image, data = pattern_image(tmp_path, 16, read_only=True)
    bios = FakeBios([image])
    drive = bios.block.get_drive(0x80)
    op = DiskOp(CMD_WRITE, drive, 1, 2, 0x10000)
    assert bios.block.process_op(op) == DISK_RET_EWRITEPROTECT
    assert op.count == 0
    assert image.read(0, 16) == data
    # A read into ROM succeeds and changes nothing; one straddling the end of the VGA
    # window fills the RAM part only.
    rom = bios.mem.read(0xF0000, 1024)
    assert bios.block.process_op(DiskOp(CMD_READ, drive, 3, 2, 0xF0000)) == DISK_RET_SUCCESS
    assert bios.mem.read(0xF0000, 1024) == rom
    hole = bios.mem.read(0xC0000, 512)
    assert bios.block.process_op(DiskOp(CMD_READ, drive, 3, 2, 0xBFE00)) == DISK_RET_SUCCESS
    assert bios.mem.read(0xBFE00, 512) == data[3 * 512:4 * 512]
    assert bios.mem.read(0xC0000, 512) == hole


def test_floppy_dma_boundary(tmp_path):
    floppy = sparse_image(tmp_path, 1440 * 1024, "fd.img", kind="floppy")
    bios = FakeBios([floppy])
    drive = bios.block.get_drive(0x00)
    assert bios.block.process_op(DiskOp(CMD_READ, drive, 0, 1, 0xFF00)) == DISK_RET_EBOUNDARY
    assert bios.block.process_op(DiskOp(CMD_READ, drive, 0, 1, 0xFE00)) == DISK_RET_SUCCESS
    # Not a floppy command.
    assert bios.block.process_op(DiskOp(block.CMD_SEEK, drive, 0, 0, 0)) == DISK_RET_EPARAM
