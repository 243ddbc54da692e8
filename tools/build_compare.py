"""Rebuilds roms/compare.bin, the disk comparison program, from roms/compare.S.

    python -m pvboot.tools.build_compare           # assemble and write roms/compare.bin
    python -m pvboot.tools.build_compare --check   # exit 1 if roms/compare.bin is out of date

Needs GNU as and ld (binutils), like tools/build_demo.py whose build() it uses;
pvboot itself only reads the prebuilt roms/compare.bin. The output is a flat
binary linked at 0x7C00, whole 512-byte sectors, at most PATTERN_START sectors
(its boot sector loads LBAs 1-15; the disk's pattern starts at LBA 16).
"""
import sys

from pvboot.tools import build_demo
from pvboot.tools.diskpattern import PATTERN_START, SECTOR_SIZE

SOURCE = build_demo.ROMS_DIR / "compare.S"
OUTPUT = build_demo.ROMS_DIR / "compare.bin"


def build(source=SOURCE):
    """Assemble and link `source`; return the flat binary (bytes)."""
    data = build_demo.build(source)
    if len(data) > PATTERN_START * SECTOR_SIZE:
        raise RuntimeError(f"{source}: {len(data)} bytes, more than the {PATTERN_START} sectors "
                           "stage 1 loads")
    return data


def main(argv=None):
    return build_demo.rebuild_command(argv, build, OUTPUT, "pvboot.tools.build_compare")


if __name__ == "__main__":
    sys.exit(main())
