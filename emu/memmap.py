"""The PC's physical memory map: the one list of regions that guest memory maps into
Unicorn, that the firmware's disk paths fill, and that the grant table lets a backend map.

Pure Python on purpose (no Unicorn): blkback imports it and must start fast.  The map and
what each kind of region means for a disk read are in docs/memory-map.md.
"""
from typing import NamedTuple

MiB = 1 << 20
PAGE_SIZE = 4096

CONVENTIONAL_END = 0xA0000     # 640 KiB; the EBDA sits at its top
EBDA_SIZE = 0x400              # 1 KiB, as SeaBIOS reserves by default
EBDA_BASE = CONVENTIONAL_END - EBDA_SIZE
VGA_BASE = 0xA0000             # graphics window; text mode buffer at 0xB8000
VGA_TEXT_BASE = 0xB8000
VGA_END = 0xC0000
OPTION_ROM_BASE = 0xC0000      # option ROM space: mapped read-only and empty
BIOS_ROM_BASE = 0xF0000
BIOS_ROM_SIZE = 0x10000
EXTENDED_BASE = 0x100000
# The top of RAM is the Xen platform area, reserved in E820 so boot loaders leave it
# alone: grant table frames, event channel state, ring pages and bounce pages.
XEN_AREA_SIZE = 0x40000        # 256 KiB = 64 frames

# Region kinds.  RAM: a frontend may grant it and a backend may map it.  VGA: device
# memory - CPU and DMA stores land, but it is not RAM a domain can grant.  ROM: stores
# are dropped (SeaBIOS write-protects C0000-FFFFF before booting).
RAM, VGA, ROM = "ram", "vga", "rom"


class Region(NamedTuple):
    name: str
    start: int
    end: int              # exclusive
    kind: str


def regions(memory_size):
    """The regions of a guest with `memory_size` bytes of address space, in order."""
    return (
        Region("conventional RAM (with the EBDA at its top)", 0, CONVENTIONAL_END, RAM),
        Region("VGA window", VGA_BASE, VGA_END, VGA),
        Region("option ROMs", OPTION_ROM_BASE, BIOS_ROM_BASE, ROM),
        Region("BIOS ROM", BIOS_ROM_BASE, BIOS_ROM_BASE + BIOS_ROM_SIZE, ROM),
        Region("extended RAM", EXTENDED_BASE, memory_size, RAM),
    )


def _in_range(addr, length, memory_size):
    return addr >= 0 and length >= 0 and addr + length <= memory_size


def is_ram(addr, length, memory_size):
    """True if [addr, addr+length) is all RAM: pages a frontend may grant."""
    return _in_range(addr, length, memory_size) and \
        (addr + length <= CONVENTIONAL_END or addr >= EXTENDED_BASE)


def is_ram_frame(frame, memory_size):
    """True if guest frame `frame` is RAM a guest may grant (no VGA, no ROM, no hole)."""
    return frame >= 0 and is_ram(frame * PAGE_SIZE, PAGE_SIZE, memory_size)


def is_dma_writable(addr, length, memory_size):
    """True if a device (or the firmware) can fill all of [addr, addr+length): RAM or VGA."""
    return _in_range(addr, length, memory_size) and \
        (addr + length <= VGA_END or addr >= EXTENDED_BASE)


def dma_writable_pieces(start, end, memory_size):
    """The sub-ranges of [start, end) a device's stores land in (RAM and VGA)."""
    for lo, hi in ((0, VGA_END), (EXTENDED_BASE, memory_size)):
        a, b = max(start, lo), min(end, hi)
        if a < b:
            yield a, b
