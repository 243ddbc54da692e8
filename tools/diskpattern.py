"""The known sector contents of pvboot's test and demo disks.

The guest test programs (tests/guests/lib.inc, in assembly), the test image builder
and the built-in demo disk must agree byte for byte, so this module imports nothing
from tests/. Every LBA's sector differs from every other and all 256 words of a
sector differ, so a wrong LBA or a shifted offset never matches; the formula is in
docs/images.md.
"""
import struct

SECTOR_SIZE = 512
# The boot program owns LBAs below this (its stage 1 loads them all).
PATTERN_START = 16
# Salt of the "new" pattern that guests write, distinct from the image's salt 0.
WRITE_SALT = 0xA5A5
# Size of the built-in demo disk (1 MiB): the demo reads up to LBA 1000.
DEMO_DISK_SECTORS = 2048

_WORDS = SECTOR_SIZE // 2
# Salt-free part of the words packed into one integer, so that XOR with a
# replicated lo word builds a whole sector in one big-int operation.
_BASE = int.from_bytes(struct.pack(f"<{_WORDS}H", *((i * 0x0105) & 0xFFFF for i in range(_WORDS))),
                       "little")
_REPLICATE = int.from_bytes(b"\x01\x00" * _WORDS, "little")


def pattern_sector(lba, salt=0):
    """The 512 bytes of the known pattern for `lba` (see the module docstring)."""
    if not 0 <= lba < 1 << 32:
        raise ValueError(f"LBA out of range: {lba}")
    lo = (lba & 0xFFFF) ^ (salt & 0xFFFF)
    hi = lba >> 16
    data = (_BASE ^ (lo * _REPLICATE)).to_bytes(SECTOR_SIZE, "little")
    if hi == 0:
        return data
    words = list(struct.unpack(f"<{_WORDS}H", data))
    for i in range(1, _WORDS, 2):
        words[i] = (words[i] + hi) & 0xFFFF
    return struct.pack(f"<{_WORDS}H", *words)


def pattern_range(first_lba, count, salt=0):
    """`count` consecutive pattern sectors starting at `first_lba`."""
    return b"".join(pattern_sector(first_lba + n, salt) for n in range(count))


def disk_image(program, total_sectors, extra_sectors=None):
    """A raw disk image: `program` at LBA 0, the pattern from PATTERN_START on.

    extra_sectors maps an LBA to 512 bytes that replace the pattern there.
    """
    if len(program) > PATTERN_START * SECTOR_SIZE:
        raise ValueError(f"boot program is {len(program)} bytes, more than {PATTERN_START} sectors")
    if total_sectors <= PATTERN_START:
        raise ValueError("disk too small for the pattern area")
    image = bytearray(total_sectors * SECTOR_SIZE)
    image[:len(program)] = program
    for lba in range(PATTERN_START, total_sectors):
        image[lba * SECTOR_SIZE:(lba + 1) * SECTOR_SIZE] = pattern_sector(lba)
    for lba, data in (extra_sectors or {}).items():
        if len(data) != SECTOR_SIZE or not 0 <= lba < total_sectors:
            raise ValueError(f"bad extra sector at LBA {lba}")
        image[lba * SECTOR_SIZE:(lba + 1) * SECTOR_SIZE] = data
    return image


def demo_disk_image(program, total_sectors=DEMO_DISK_SECTORS):
    """The built-in demo disk: roms/demo.bin (passed in as `program`) plus the pattern."""
    return disk_image(program, total_sectors)
