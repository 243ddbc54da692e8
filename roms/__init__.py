"""The BIOS ROM image and the prebuilt boot programs.

roms/bios.asm holds the ROM's entry stubs; tools/build_rom.py assembles it (keystone)
into roms/bios.bin, 64 KiB at 0xF0000, and roms/bios.sym, the address and size of
each top-level label.  The tests check both match the source.  demo.bin and
compare.bin are boot programs built the same way from demo.S and compare.S (GNU as).
"""
import functools
from pathlib import Path

ROM_BASE = 0xF0000
ROM_SIZE = 0x10000
RESET_VECTOR_OFFSET = 0xFFF0
# Where the ROM keeps data tables (disk parameter tables, DPTE, config table).
DATA_AREA_OFFSET = 0xE000
ROMS_DIR = Path(__file__).resolve().parent


class Rom:
    """The assembled ROM: `image` (64 KiB) and `symbols` (label -> linear address)."""

    def __init__(self, image, symbols, sizes):
        self.image = image
        self.symbols = symbols
        self.sizes = sizes

    def segoff(self, label):
        """(segment, offset) of a label, with the ROM's segment 0xF000."""
        return ROM_BASE >> 4, self.symbols[label] - ROM_BASE


def format_symbols(rom):
    """bios.sym: one `label address size` line per entry, in address order."""
    return "".join(f"{label} {rom.symbols[label]:#x} {rom.sizes[label]}\n"
                   for label in sorted(rom.symbols, key=rom.symbols.get))


@functools.lru_cache(maxsize=None)
def build_rom():
    """The prebuilt ROM (roms/bios.bin, roms/bios.sym)."""
    image = (ROMS_DIR / "bios.bin").read_bytes()
    if len(image) != ROM_SIZE:
        raise RuntimeError(f"roms/bios.bin is {len(image)} bytes, not {ROM_SIZE}")
    symbols, sizes = {}, {}
    for line in (ROMS_DIR / "bios.sym").read_text().splitlines():
        label, address, size = line.split()
        symbols[label], sizes[label] = int(address, 0), int(size)
    return Rom(image, symbols, sizes)


def demo_program():
    """The built-in demo disk's boot program (assembled from roms/demo.S by tools/build_demo.py)."""
    return (ROMS_DIR / "demo.bin").read_bytes()
