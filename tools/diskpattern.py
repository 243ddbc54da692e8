"""The known sector contents of pvboot's test and demo disks.

Shared by three users that must agree byte for byte: the guest test programs
(tests/guests/lib.inc computes the same words in 16-bit assembly), the image
builder for those tests (tests/guests/build.py), and pvboot itself, which builds
the built-in demo disk at run time. So this module imports nothing from tests/.

Pattern, for a sector at LBA `lba` (0 <= lba < 2**32) and a 16-bit `salt`:
    lo = (lba & 0xFFFF) ^ salt,  hi = lba >> 16
    word[i] = (lo ^ (i * 0x0105)) & 0xFFFF      for i = 0..255 (little endian)
    then, for odd i only, word[i] = (word[i] + hi) & 0xFFFF
Every LBA gives a different sector (lo shows in the even words, hi in the odd
ones), and 0x0105 being odd makes all 256 words of a sector distinct, so a read
from the wrong LBA or landing at a shifted offset never matches. salt 0 is what
the image holds; WRITE_SALT marks data written by a guest.

Disk layout (disk_image): LBAs 0..PATTERN_START-1 hold the boot program
(zero padded), every later LBA holds pattern_sector(lba), except sectors given
explicitly (e.g. a chainloaded VBR).
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
