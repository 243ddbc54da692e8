"""Logical geometry of a hard disk (SeaBIOS block.c get_translation /
setup_translation): the CHS INT 13h's CHS calls use, from the physical CHS the device
reports (emu/hdgeometry.py)."""
from pvboot.emu.hdgeometry import (CHS, TRANSLATION_HOST, TRANSLATION_LARGE,  # noqa: F401
                                   TRANSLATION_LBA, TRANSLATION_NAMES, TRANSLATION_NONE,
                                   TRANSLATION_RECHS, qemu_ide_geometry)


def get_translation(pchs, sectors, hint=None, host_lchs=None):
    """SeaBIOS get_translation: host-supplied LCHS first, then the device's hint (QEMU's
    CMOS byte for ATA disks), else a heuristic on the physical geometry."""
    if host_lchs is not None and host_lchs.heads <= 255 and 0 < host_lchs.sectors <= 63:
        return TRANSLATION_HOST
    if hint is not None:
        return hint
    heads, cylinders, spt = pchs.heads, pchs.cylinders, pchs.sectors
    if not heads or not cylinders or not spt or heads * cylinders * spt > sectors:
        # The physical geometry does not look valid: use LBA.
        return TRANSLATION_LBA
    if cylinders <= 1024 and heads <= 16 and spt <= 63:
        return TRANSLATION_NONE
    if cylinders * heads <= 131072:
        return TRANSLATION_LARGE
    return TRANSLATION_LBA


def setup_translation(pchs, sectors, translation, host_lchs=None):
    """SeaBIOS setup_translation: the logical CHS INT 13h's CHS calls use."""
    heads, cylinders, spt = pchs.heads, pchs.cylinders, pchs.sectors
    if translation == TRANSLATION_LBA:
        spt = 63
        if sectors > 63 * 255 * 1024:
            heads, cylinders = 255, 1024
        else:
            sect = (sectors & 0xFFFFFFFF) // 63
            heads = sect // 1024
            if heads > 128:
                heads = 255
            elif heads > 64:
                heads = 128
            elif heads > 32:
                heads = 64
            elif heads > 16:
                heads = 32
            else:
                heads = 16
            cylinders = sect // heads
    elif translation in (TRANSLATION_RECHS, TRANSLATION_LARGE):
        if translation == TRANSLATION_RECHS and heads == 16:
            # 16 heads become 15 so that the doubling below can reach 240 (r-echs).
            cylinders = min(cylinders, 61439)
            heads = 15
            cylinders = (cylinders * 16 // 15) & 0xFFFF
        while cylinders > 1024:
            cylinders >>= 1
            heads = (heads << 1) & 0xFFFF
            if heads > 127:
                break
    elif translation == TRANSLATION_HOST:
        cylinders, heads, spt = host_lchs.cylinders, host_lchs.heads, host_lchs.sectors
    cylinders = min(cylinders, 1024)
    return CHS(cylinders, heads, spt)

