"""The benchmark's guest programs (bench/*.S) and the disk images that boot them.

Each program is one boot sector, assembled at bench time with GNU as and ld (Debian
binutils, already needed by the test suite) with its size given as an absolute
symbol (--defsym), so a run of 1 MiB and a run of 64 MiB differ only in that number.
The ELF is kept long enough to read the symbols bench/rawcpu.py needs (where the
CPU loop starts and ends), then flattened with objcopy.
"""
from pathlib import Path

from pvboot.tools import gnuas

BENCH_DIR = Path(__file__).resolve().parent
ROMS_DIR = BENCH_DIR.parents[1] / "roms"      # boot_start.inc, shared with roms/demo.S
LOAD_ADDRESS = 0x7C00
SECTOR = 512
MIB = 1 << 20
BUILD_TIMEOUT = 30

PROGRAMS = ("bulkread", "intloop", "cpuloop")


BuildError = gnuas.AssemblerError


def tools_missing():
    """None when GNU as, ld, objcopy and nm are installed, else why not."""
    if gnuas.available(symbols=True):
        return None
    return "GNU as, ld, nm or objcopy not found: install the Debian package binutils"


def assemble(name, defsyms):
    """Assemble bench/<name>.S; returns (flat binary at 0x7C00, {symbol: address})."""
    if name not in PROGRAMS:
        raise KeyError(f"unknown bench program {name!r}")
    missing = tools_missing()
    if missing:
        raise BuildError(missing)
    code, symbols = gnuas.assemble(BENCH_DIR / f"{name}.S", base=LOAD_ADDRESS,
                                   include_dirs=(ROMS_DIR,),
                                   defsyms={k: int(v) for k, v in defsyms.items()}, symbols=True)
    if len(code) != SECTOR or code[510:512] != b"\x55\xAA":
        raise BuildError(f"{name}.S: {len(code)} bytes, not one sector ending in 55 AA")
    return code, symbols


def data_block():
    """1 MiB of non-zero, non-repeating-per-sector data for the bulk-read disks (so no
    layer can take a short cut for holes or zero pages)."""
    block = bytearray(MIB)
    for i in range(0, MIB, SECTOR):
        block[i:i + SECTOR] = (i // SECTOR).to_bytes(4, "little") * (SECTOR // 4)
    return bytes(block)


def write_image(path, boot_sector, size_bytes, fill=None):
    """A disk image: `boot_sector` at LBA 0, then `fill` (repeated) or zeros up to
    size_bytes (whole MiB are written, not left sparse, when fill is given)."""
    with open(path, "wb") as f:
        f.write(boot_sector)
        if fill is None:
            f.truncate(size_bytes)
        else:
            left = size_bytes - SECTOR
            while left > 0:
                chunk = fill[:left]
                f.write(chunk)
                left -= len(chunk)
    return path


def bulkread_image(path, mib):
    """A disk whose boot program reads `mib` MiB from LBA 1 in 127-sector AH=42h calls;
    the disk holds exactly that plus its boot sector (and a spare MiB)."""
    code, _ = assemble("bulkread", {"SECTORS": mib * MIB // SECTOR})
    return write_image(path, code, (mib + 1) * MIB, fill=data_block())


def intloop_image(path, iterations):
    code, _ = assemble("intloop", {"ITERATIONS": iterations})
    return write_image(path, code, MIB)


def cpuloop_image(path, iterations):
    """The CPU-loop disk; returns (path, symbols) (symbols for bench/rawcpu.py)."""
    code, symbols = assemble("cpuloop", {"ITERATIONS": iterations})
    write_image(path, code, MIB)
    return path, symbols
