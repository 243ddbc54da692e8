"""The geometry a hard disk reports on QEMU's PC (hw/block/hd-geometry.c): what an IDE
disk's IDENTIFY words and the CMOS translation byte say.  The device model reports it and
every firmware disk path uses the same guess, so CHS calls agree on every path."""
from typing import NamedTuple

# Geometry translations (SeaBIOS block.h); the values are also QEMU's CMOS encoding.
TRANSLATION_NONE = 0
TRANSLATION_LBA = 1
TRANSLATION_LARGE = 2
TRANSLATION_RECHS = 3
TRANSLATION_HOST = 4
TRANSLATION_NAMES = {TRANSLATION_NONE: "none", TRANSLATION_LBA: "lba", TRANSLATION_LARGE: "large",
                     TRANSLATION_RECHS: "r-echs", TRANSLATION_HOST: "host-supplied"}


class CHS(NamedTuple):
    cylinders: int
    heads: int
    sectors: int

    def __str__(self):
        return f"{self.cylinders}/{self.heads}/{self.sectors}"


def qemu_ide_geometry(sectors, boot_sector=None):
    """(physical CHS, translation) of an IDE disk of `sectors` on QEMU's PC
    (hd_geometry_guess for a raw image): a logical geometry read off the MBR's
    partition table if it has one, else 16 heads, 63 sectors and as many cylinders as
    fit (2..16383), with LBA translation once that exceeds 1024 cylinders."""
    guess = _guess_lchs_from_mbr(sectors, boot_sector)

    def standard():
        return CHS(min(max(sectors // (16 * 63), 2), 16383), 16, 63)

    if guess is None:
        pchs = standard()
        small = pchs.cylinders <= 1024 and pchs.heads <= 16 and pchs.sectors <= 63
        return pchs, (TRANSLATION_NONE if small else TRANSLATION_LBA)
    if guess.heads > 16:
        # The partition table was written under a BIOS translation: plain physical geometry.
        pchs = standard()
        large = pchs.cylinders * pchs.heads <= 131072
        return pchs, (TRANSLATION_LARGE if large else TRANSLATION_LBA)
    # A partition table with <= 16 heads becomes the physical geometry, untranslated.
    return guess, TRANSLATION_NONE


def _guess_lchs_from_mbr(sectors, boot_sector):
    if boot_sector is None or len(boot_sector) < 512 or boot_sector[510:512] != b"\x55\xAA":
        return None
    for i in range(4):
        entry = boot_sector[0x1BE + 16 * i:0x1BE + 16 * (i + 1)]
        end_head, end_sector = entry[5], entry[6]
        nr_sects = int.from_bytes(entry[12:16], "little")
        if nr_sects and end_head:
            heads = end_head + 1
            spt = end_sector & 63
            if spt == 0:
                continue
            cylinders = sectors // (heads * spt)
            if cylinders < 1 or cylinders > 16383:
                continue
            return CHS(cylinders, heads, spt)
    return None
