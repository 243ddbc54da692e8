"""Rebuilds roms/demo.bin, the built-in demo disk's boot program, from roms/demo.S.

    python -m pvboot.tools.build_demo           # assemble and write roms/demo.bin
    python -m pvboot.tools.build_demo --check   # exit 1 if roms/demo.bin is out of date

Needs GNU as and ld (binutils); pvboot itself only reads the prebuilt
roms/demo.bin, so running pvboot does not. The output is a flat binary linked
at 0x7C00, a whole number of 512-byte sectors (one, while it fits).
"""
import argparse
import sys
from pathlib import Path

from pvboot.tools import gnuas

ROMS_DIR = Path(__file__).resolve().parents[1] / "roms"
SOURCE = ROMS_DIR / "demo.S"
OUTPUT = ROMS_DIR / "demo.bin"
LOAD_ADDRESS = 0x7C00
SECTOR_SIZE = 512


def build(source=SOURCE):
    """Assemble and link `source`; return the flat binary (bytes)."""
    data = gnuas.assemble(source, base=LOAD_ADDRESS)
    if len(data) % SECTOR_SIZE or data[510:512] != b"\x55\xAA":
        raise RuntimeError(f"{source}: {len(data)} bytes, not whole sectors with 55 AA at 510")
    return data


def rebuild_command(argv, build, output, module):
    """The --check / write command line shared by the prebuilt programs' builders."""
    parser = argparse.ArgumentParser(description=f"Rebuild {output.name} from its source.")
    parser.add_argument("--check", action="store_true",
                        help=f"only compare with the existing roms/{output.name}")
    args = parser.parse_args(argv)
    data = build()
    if args.check:
        current = output.read_bytes() if output.exists() else b""
        if current != data:
            print(f"{output} is out of date: run python -m {module}", file=sys.stderr)
            return 1
        print(f"{output} is up to date ({len(data)} bytes)")
        return 0
    output.write_bytes(data)
    print(f"wrote {output} ({len(data)} bytes)")
    return 0


def main(argv=None):
    return rebuild_command(argv, build, OUTPUT, "pvboot.tools.build_demo")


if __name__ == "__main__":
    sys.exit(main())
