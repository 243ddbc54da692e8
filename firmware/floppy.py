"""Floppy drive types and media (SeaBIOS hw/floppy.c), and the drive QEMU's floppy
controller puts an image in (hw/block/fdc.c pick_geometry), as the CMOS type SeaBIOS
reads.  Image sizes and the odd-size rule: docs/floppy.md."""
from typing import NamedTuple

from pvboot.emu.hdgeometry import CHS
from pvboot.firmware.diskop import DISK_SECTOR_SIZE, BlockError

FLOPPY_SIZE_525 = 0x01
FLOPPY_SIZE_350 = 0x02
FLOPPY_RATE_500K = 0x00
FLOPPY_RATE_300K = 0x01
FLOPPY_RATE_250K = 0x02
FLOPPY_RATE_1M = 0x03
MAX_FLOPPIES = 2            # the CMOS floppy byte has room for two drives


class FloppyInfo(NamedTuple):
    chs: CHS
    floppy_size: int
    data_rate: int
    name: str


# Indexed by the CMOS floppy drive type, as SeaBIOS's table is.
FLOPPY_INFO = {
    1: FloppyInfo(CHS(40, 2, 9), FLOPPY_SIZE_525, FLOPPY_RATE_300K, "360K"),
    2: FloppyInfo(CHS(80, 2, 15), FLOPPY_SIZE_525, FLOPPY_RATE_500K, "1.2M"),
    3: FloppyInfo(CHS(80, 2, 9), FLOPPY_SIZE_350, FLOPPY_RATE_250K, "720K"),
    4: FloppyInfo(CHS(80, 2, 18), FLOPPY_SIZE_350, FLOPPY_RATE_500K, "1.44M"),
    5: FloppyInfo(CHS(80, 2, 36), FLOPPY_SIZE_350, FLOPPY_RATE_1M, "2.88M"),
    6: FloppyInfo(CHS(40, 1, 8), FLOPPY_SIZE_525, FLOPPY_RATE_250K, "160K"),
    7: FloppyInfo(CHS(40, 1, 9), FLOPPY_SIZE_525, FLOPPY_RATE_300K, "180K"),
    8: FloppyInfo(CHS(40, 2, 8), FLOPPY_SIZE_525, FLOPPY_RATE_250K, "320K"),
}

# The 11-byte diskette parameter table plus IBM's 3 extra bytes (diskette_param_table2):
# INT 1Eh and floppy AH=08h ES:DI point at it.  As in SeaBIOS it describes a 1.44M
# drive whatever is attached.
FLOPPY_SPECIFY1 = 0xAF
FLOPPY_SPECIFY2 = 0x02
FLOPPY_MOTOR_TICKS = 37
FLOPPY_SIZE_CODE = 0x02
FLOPPY_GAPLEN = 0x1B
FLOPPY_DATALEN = 0xff
FLOPPY_FORMAT_GAPLEN = 0x6c
FLOPPY_FILLBYTE = 0xf6
FLOPPY_STARTUP_TIME = 8
DISKETTE_PARAM_TABLE2 = bytes([
    FLOPPY_SPECIFY1, FLOPPY_SPECIFY2, FLOPPY_MOTOR_TICKS, FLOPPY_SIZE_CODE, 18,
    FLOPPY_GAPLEN, FLOPPY_DATALEN, FLOPPY_FORMAT_GAPLEN, FLOPPY_FILLBYTE, 0x0F,
    FLOPPY_STARTUP_TIME,
    79, 0, 4,                 # max track, data rate, CMOS drive type
])

# The drive QEMU's controller puts a standard medium in (the first format of its table
# that matches the size): a 720K diskette sits in a 1.44M drive and 5.25" media in a
# 1.2M drive, so the drive's geometry (what INT 13h checks) can exceed the medium's.
QEMU_FLOPPY_DRIVE_FOR_MEDIA = {1: 2, 2: 2, 3: 4, 4: 4, 5: 5, 6: 2, 7: 2, 8: 2}
# A size no format matches gets QEMU's fallback drive (fdc "fallback" property,
# default 2.88M) and that drive's first format: 80/2/36.
QEMU_FALLBACK_DRIVE = 5


def _size(info):
    return info.chs.cylinders * info.chs.heads * info.chs.sectors * DISK_SECTOR_SIZE


LARGEST_FLOPPY = max(_size(info) for info in FLOPPY_INFO.values())


def find_floppy_type(size):
    """The SeaBIOS floppy type whose geometry holds exactly `size` bytes, or -1."""
    for ftype, info in FLOPPY_INFO.items():
        if _size(info) == size:
            return ftype
    return -1


def floppy_type_for_size(size, name="floppy image"):
    """Like find_floppy_type, but a size that is no standard floppy is a BlockError."""
    ftype = find_floppy_type(size)
    if ftype < 0:
        sizes = ", ".join(f"{i.name} ({_size(i)})" for i in FLOPPY_INFO.values())
        raise BlockError(f"{name}: {size} bytes is not a standard floppy size ({sizes})")
    return ftype


def qemu_floppy_drive_type(size, name="floppy image"):
    """(drive type, medium type) of a floppy image of `size` bytes on QEMU's PC.  An odd
    size up to 2.88M is read as a 2.88M medium (the part past the image reads as
    zeros); a larger image is no floppy at all (BlockError)."""
    media = find_floppy_type(size)
    if media >= 0:
        return QEMU_FLOPPY_DRIVE_FOR_MEDIA[media], media
    if size > LARGEST_FLOPPY:
        raise BlockError(f"{name}: {size} bytes is larger than the largest floppy "
                         f"(2.88M, {LARGEST_FLOPPY} bytes); attach it as a hard disk")
    return QEMU_FALLBACK_DRIVE, QEMU_FALLBACK_DRIVE
