"""Rebuilds roms/demo.bin, the built-in demo disk's boot program, from roms/demo.S.

    python -m tools.build_demo           # assemble and write roms/demo.bin
    python -m tools.build_demo --check   # exit 1 if roms/demo.bin is out of date

Needs GNU as and ld (binutils); pvboot itself only reads the prebuilt
roms/demo.bin, so running pvboot does not. The output is a flat binary linked
at 0x7C00, a whole number of 512-byte sectors (one, while it fits).
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROMS_DIR = Path(__file__).resolve().parents[1] / "roms"
SOURCE = ROMS_DIR / "demo.S"
OUTPUT = ROMS_DIR / "demo.bin"
LOAD_ADDRESS = 0x7C00
SECTOR_SIZE = 512


def build(source=SOURCE):
    """Assemble and link `source`; return the flat binary (bytes)."""
    with tempfile.TemporaryDirectory(prefix="pvboot-demo-") as tmp:
        obj = Path(tmp) / "demo.o"
        out = Path(tmp) / "demo.bin"
        _run(["as", "--32", "-o", str(obj), str(source)])
        _run(["ld", "-m", "elf_i386", "-nostdlib", "-Ttext", f"{LOAD_ADDRESS:#x}", "-e", "_start",
              "--oformat", "binary", "-o", str(out), str(obj)])
        data = out.read_bytes()
    if len(data) % SECTOR_SIZE or data[510:512] != b"\x55\xAA":
        raise RuntimeError(f"{source}: {len(data)} bytes, not whole sectors with 55 AA at 510")
    return data


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or proc.stderr.strip():
        raise RuntimeError(f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only compare with the existing roms/demo.bin")
    args = parser.parse_args(argv)
    data = build()
    if args.check:
        current = OUTPUT.read_bytes() if OUTPUT.exists() else b""
        if current != data:
            print(f"{OUTPUT} is out of date: run python -m tools.build_demo", file=sys.stderr)
            return 1
        print(f"{OUTPUT} is up to date ({len(data)} bytes)")
        return 0
    OUTPUT.write_bytes(data)
    print(f"wrote {OUTPUT} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
