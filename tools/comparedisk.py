"""The disk comparison image: roms/compare.bin plus the known sector pattern, and the
transcript it must print (expected_transcript, computed from the image's bytes: the
ground truth every firmware path is checked against).  docs/tools.md describes the
operations, the transcript's lines and SeaBIOS's IDE wrap above 1 MiB.
"""
import argparse
import collections
import functools
import importlib.resources
import os
import sys
import zlib

from pvboot.tools import qemu
from pvboot.tools.diskpattern import SECTOR_SIZE, disk_image

# 40 MiB: LBAs 65536 and up exist, and QEMU's geometry for it (81 cylinders of
# 16 heads x 63 sectors) reaches every LBA the CHS operations use.
COMPARE_DISK_SECTORS = 81920
# The exit value (port 0xF4) when every call succeeded, and when one failed.
EXPECTED_EXIT = 0
FAILED_EXIT = 1
# What the program fills a buffer and its guards with before each call.
POISON = 0xCC
HIGH_MEM = 0x100000

Op = collections.namedtuple("Op", "kind lba count seg off high", defaults=(0,))

CHS, EDD, PM, REGION = "CHS", "EDD", "PM", "REGION"

# The same table as `ops` in roms/compare.S, in the same order. REGION's `lba`
# is the region's length in bytes.
OPS = (
    # CHS (AH=02h) of each size, buffer 1000:0000; LBAs as CHS through AH=08h
    Op(CHS, 16, 1, 0x1000, 0x0000),
    Op(CHS, 17, 2, 0x1000, 0x0000),
    Op(CHS, 61, 7, 0x1000, 0x0000),          # across the end of track 0 (63 spt)
    Op(CHS, 1000, 8, 0x1000, 0x0000),
    Op(CHS, 1001, 9, 0x1000, 0x0000),
    Op(CHS, 2015, 15, 0x1000, 0x0000),
    Op(CHS, 1008, 16, 0x1000, 0x0000),       # cylinder 1 with 16 heads x 63
    Op(CHS, 4097, 17, 0x1000, 0x0000),
    Op(CHS, 5000, 63, 0x1000, 0x0000),
    Op(CHS, 6047, 64, 0x1000, 0x0000),
    Op(CHS, 7777, 100, 0x1000, 0x0000),
    Op(CHS, 9001, 127, 0x1000, 0x0000),
    # EDD (AH=42h) of each size, buffer 1000:0000, across the disk
    Op(EDD, 12345, 1, 0x1000, 0x0000),
    Op(EDD, 32767, 2, 0x1000, 0x0000),
    Op(EDD, 65533, 7, 0x1000, 0x0000),       # across LBA 65536
    Op(EDD, 65536, 8, 0x1000, 0x0000),
    Op(EDD, 70001, 9, 0x1000, 0x0000),
    Op(EDD, 40000, 15, 0x1000, 0x0000),
    Op(EDD, 50001, 16, 0x1000, 0x0000),
    Op(EDD, 16, 17, 0x1000, 0x0000),
    Op(EDD, 75000, 63, 0x1000, 0x0000),
    Op(EDD, 20001, 64, 0x1000, 0x0000),
    Op(EDD, 30003, 100, 0x1000, 0x0000),
    Op(EDD, 60001, 127, 0x1000, 0x0000),
    Op(EDD, 81913, 7, 0x1000, 0x0000),       # the disk's last sectors
    # Awkward buffers
    Op(EDD, 101, 9, 0x1000, 0x0001),         # odd
    Op(CHS, 203, 17, 0x2000, 0x0003),        # odd
    Op(EDD, 307, 15, 0x1234, 0x0005),        # linear 12345h
    Op(EDD, 400, 8, 0x1000, 0x0200),         # sector-aligned, not page-aligned
    Op(EDD, 400, 8, 0x1020, 0x0000),         # the same linear address
    Op(EDD, 509, 16, 0x1000, 0x0100),        # offset not a multiple of 512
    Op(EDD, 611, 2, 0x1000, 0x0FFE),         # across a 4 KiB page after 2 bytes
    Op(EDD, 700, 16, 0x1FF0, 0x0000),        # across the 64 KiB boundary 20000h
    Op(CHS, 75, 7, 0x1FE0, 0x0180),          # across 20000h
    Op(EDD, 801, 127, 0x2FFF, 0x000F),       # odd, across 30000h
    Op(EDD, 80, 2, 0x1000, 0xFF00),          # past the segment's end: linear, no wrap
    Op(CHS, 90, 2, 0x1000, 0xFF00),
    Op(CHS, 3001, 64, 0x4000, 0x8001),       # odd, across 50000h
    Op(EDD, 66001, 100, 0x3000, 0x7E01),     # odd, across 40000h
    # Above 1 MiB in real mode (A20 on), within 10A000h-10FFEFh: a BIOS that
    # drops address bit 20 puts the data at 0A000h-0FFEFh, where the program
    # looks for it ("FAIL DATA WRAPPED TO"), not on the IVT or the program.
    Op(EDD, 1101, 8, 0xFFFF, 0xA010),
    Op(EDD, 1203, 7, 0xFFFF, 0xB011),        # odd
    Op(EDD, 70003, 40, 0xFFFF, 0xA210),
    Op(CHS, 1501, 16, 0xFFFF, 0xC010),
    Op(EDD, 1301, 47, 0xFFFF, 0xA020),       # up to 10FE10h
    # Protected-mode round trips: read low, copy to 2 MiB, digest there
    Op(PM, 20001, 127, 0x1000, 0x0000, 0x200000),
    Op(PM, 20128, 127, 0x1000, 0x0000, 0x20FE00),
    Op(PM, 20255, 127, 0x1000, 0x0000, 0x21FC00),
    Op(PM, 20382, 127, 0x1000, 0x0000, 0x22FA00),
    Op(REGION, 4 * 127 * 512, 0, 0, 0, 0x200000),
    Op(PM, 77777, 9, 0x2FFF, 0x000F, 0x300001),
)


def compare_program():
    """roms/compare.bin, the comparison boot program (built by tools/build_compare.py)."""
    return importlib.resources.files("pvboot.roms").joinpath("compare.bin").read_bytes()


@functools.lru_cache(maxsize=2)
def _image(program, total_sectors):
    return bytes(disk_image(program, total_sectors))


def compare_disk_image(program=None, total_sectors=COMPARE_DISK_SECTORS):
    """The comparison disk (bytes): `program` (default roms/compare.bin) plus the pattern."""
    return _image(compare_program() if program is None else bytes(program), total_sectors)


def write_compare_disk(path, program=None):
    """Write the comparison disk to `path`; return `path`."""
    with open(path, "wb") as f:
        f.write(compare_disk_image(program))
    return path


def _load(image):
    if image is None:
        return compare_disk_image()
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            return f.read()
    return bytes(image)


def linear(op):
    """The linear address of an operation's real-mode buffer."""
    return (op.seg << 4) + op.off


def expected_lines(image=None, wrap_above_1mib=False):
    """The transcript's lines (without line ends) for `image` (bytes, a path, or None
    for the comparison disk), TOTAL included. wrap_above_1mib: as printed under a
    BIOS that puts the data for a buffer above 1 MiB 1 MiB lower (SeaBIOS over IDE)."""
    data = _load(image)
    need = max(op.lba + op.count for op in OPS if op.kind != REGION)
    if len(data) < need * SECTOR_SIZE:
        raise ValueError(f"image of {len(data)} bytes: the comparison reads up to LBA {need - 1}")
    memory = {}                     # high address -> bytes the PM operations copied there
    lines = ["COMPARE START"]
    failed = 0
    for number, op in enumerate(OPS, 1):
        if op.kind == REGION:
            region = _high_region(memory, op.high, op.lba)
            lines.append(f"OP {number:02X} REGION HIGH={op.high:08X} LEN={op.lba:08X} "
                         f"DIGEST={zlib.crc32(region):08X}")
            continue
        got = data[op.lba * SECTOR_SIZE:(op.lba + op.count) * SECTOR_SIZE]
        wrapped = wrap_above_1mib and linear(op) >= HIGH_MEM
        if wrapped:
            got = bytes([POISON]) * len(got)        # the buffer keeps its poison
        high = ""
        if op.kind == PM:
            memory[op.high] = got
            high = f" HIGH={op.high:08X}"
        lines.append(f"OP {number:02X} {op.kind} LBA={op.lba:08X} N={op.count:02X} "
                     f"BUF={op.seg:04X}:{op.off:04X}{high} AH=00 DIGEST={zlib.crc32(got):08X}")
        if wrapped:
            lines.append(f"OP {number:02X} FAIL DATA WRAPPED TO {linear(op) - HIGH_MEM:08X}")
            failed += 1
    if failed:
        lines.append(f"FAILED CALLS={failed:02X}")
    before_total = "".join(line + "\r\n" for line in lines)
    lines.append(f"TOTAL DIGEST={zlib.crc32(before_total.encode('ascii')):08X}")
    return lines


def _high_region(memory, start, length):
    region = bytearray(length)
    filled = bytearray(length)
    for at, data in memory.items():
        lo, hi = max(at, start), min(at + len(data), start + length)
        if lo < hi:
            region[lo - start:hi - start] = data[lo - at:hi - at]
            filled[lo - start:hi - start] = b"\x01" * (hi - lo)
    if 0 in filled:
        raise ValueError(f"REGION {start:#x}+{length:#x} is not all written by PM operations")
    return bytes(region)


def expected_transcript(image=None, wrap_above_1mib=False):
    """What roms/compare.bin prints on COM1 booted from `image` (bytes, a path, or None
    for the comparison disk) through a firmware path that reads it correctly (with
    wrap_above_1mib: through SeaBIOS's 16-bit ATA driver, see the module docstring)."""
    return "".join(line + "\r\n" for line in expected_lines(image, wrap_above_1mib))


def expected_exit(wrap_above_1mib=False):
    """The exit value the program writes to port 0xF4 on a good comparison disk."""
    return FAILED_EXIT if wrap_above_1mib else EXPECTED_EXIT


def run_under_seabios(image, interface="virtio", timeout=10.0, memory_mb=64):
    """Boot `image` under QEMU + SeaBIOS with the disk on `interface`: "virtio" (prints
    expected_transcript()), "ahci" (the same) or "ide" (QEMU's default disk: prints
    expected_transcript(wrap_above_1mib=True)). Returns a tools.qemu.QemuRun; raises
    tools.qemu.QemuMissing without qemu-system-i386 (Debian package qemu-system-x86)."""
    drive = f"file={str(image).replace(',', ',,')},format=raw"
    if interface == "ahci":
        args = ["-drive", f"{drive},if=none,id=cmpdisk", "-device", "ahci,id=cmpahci",
                "-device", "ide-hd,drive=cmpdisk,bus=cmpahci.0"]
    elif interface in ("virtio", "ide"):
        args = ["-drive", f"{drive},if={interface}"]
    else:
        raise ValueError(f"unknown disk interface {interface!r} (virtio, ahci or ide)")
    return qemu.run((), boot="hd", memory_mb=memory_mb, timeout=timeout, snapshot=True,
                    extra_args=args)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", help="write the comparison disk here (with "
                        "--expected: compute the transcript of this existing image)")
    parser.add_argument("--expected", action="store_true",
                        help="print the transcript the comparison program must print")
    parser.add_argument("--wrap-above-1mib", action="store_true",
                        help="with --expected: as SeaBIOS over IDE prints it (buffers above "
                        "1 MiB filled 1 MiB lower)")
    args = parser.parse_args(argv)
    if args.expected:
        text = expected_transcript(args.image, args.wrap_above_1mib)
        sys.stdout.write(text.replace("\r\n", "\n"))
        return 0
    if not args.image:
        parser.error("give an image path to write, or --expected")
    write_compare_disk(args.image)
    print(f"wrote {args.image} ({COMPARE_DISK_SECTORS * SECTOR_SIZE} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
