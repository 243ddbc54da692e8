"""The disk comparison program: roms/compare.bin is exactly what GNU as makes of
roms/compare.S (tools/build_compare.py), and booted from the comparison disk
(tools/comparedisk.py) it prints tools.comparedisk.expected_transcript() under
QEMU + SeaBIOS (virtio-blk; over IDE, SeaBIOS's known wrap above 1 MiB, modelled)
and under pvboot through every firmware path: Xen PV bounce page (the default),
PV direct grants, emulated IDE and the plain image driver.
"""
import struct
import zlib

import pytest

from tests.guests import build
from pvboot.tools import build_compare, comparedisk, qemu, runner
from pvboot.tools.diskpattern import PATTERN_START, SECTOR_SIZE, pattern_range

needs_binutils = pytest.mark.skipif(not build.tools_available(),
                                    reason="GNU as / ld not installed (Debian package binutils)")
needs_qemu = pytest.mark.skipif(not qemu.qemu_available(),
                                reason=f"{qemu.QEMU} not installed (Debian package "
                                       f"{qemu.QEMU_PACKAGE})")

KINDS = {comparedisk.CHS: 1, comparedisk.EDD: 2, comparedisk.PM: 3, comparedisk.REGION: 4}


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The comparison disk, written once: neither pvboot nor this program writes to it."""
    return comparedisk.write_compare_disk(tmp_path_factory.mktemp("compare") / "compare.img")


def program():
    return build_compare.OUTPUT.read_bytes()


def run_seabios(image, interface):
    run = comparedisk.run_under_seabios(image, interface, timeout=20)
    assert run.outcome == qemu.EXIT, f"{run.outcome}\n{run.stderr}\n{run.serial_text}"
    return run.exit_value, run.serial_text


def test_compare_bin_is_whole_sectors_stage_1_loads():
    data = program()
    assert len(data) % SECTOR_SIZE == 0
    assert len(data) <= PATTERN_START * SECTOR_SIZE
    assert data[510:512] == b"\x55\xAA"
    assert comparedisk.compare_program() == data


@needs_binutils
def test_compare_bin_matches_source():
    assert build_compare.build() == program(), "run: python -m pvboot.tools.build_compare"


def test_program_table_is_comparedisk_ops():
    # roms/compare.S's `ops`, as its OP macro lays them out, then the end byte.
    table = b"".join(struct.pack("<BBHHIIH", KINDS[op.kind], op.count, op.off, op.seg, op.lba,
                                 op.high, 0) for op in comparedisk.OPS) + b"\0"
    assert table in program()


def test_expected_transcript_from_the_pattern():
    lines = comparedisk.expected_lines()
    assert lines[0] == "COMPARE START"
    assert len(lines) == len(comparedisk.OPS) + 2
    for number, (op, line) in enumerate(zip(comparedisk.OPS, lines[1:]), 1):
        assert line.startswith(f"OP {number:02X} {op.kind} ")
        if op.kind == comparedisk.REGION:
            continue
        # Independently of the image: the pattern itself.
        digest = zlib.crc32(pattern_range(op.lba, op.count))
        assert line.endswith(f" AH=00 DIGEST={digest:08X}")
    region = [op for op in comparedisk.OPS if op.kind == comparedisk.PM][:4]
    data = b"".join(pattern_range(op.lba, op.count) for op in region)
    assert lines[0x31].endswith(f"REGION HIGH=00200000 LEN={len(data):08X} "
                              f"DIGEST={zlib.crc32(data):08X}")
    before = "".join(line + "\r\n" for line in lines[:-1]).encode()
    assert lines[-1] == f"TOTAL DIGEST={zlib.crc32(before):08X}"
    # The same LBA read to one linear address through two seg:off pairs.
    assert lines[0x1D][-8:] == lines[0x1E][-8:]


@needs_qemu
def test_seabios_virtio_prints_the_expected_transcript(image):
    # SeaBIOS's virtio-blk driver runs in 32-bit mode: buffers above 1 MiB work.
    assert run_seabios(image, "virtio") == (comparedisk.EXPECTED_EXIT,
                                            comparedisk.expected_transcript())


@needs_qemu
def test_seabios_ide_fills_buffers_above_1mib_1mib_lower(image):
    # SeaBIOS's 16-bit ATA driver truncates ES: the known difference, modelled exactly.
    exit_value, serial = run_seabios(image, "ide")
    assert serial == comparedisk.expected_transcript(wrap_above_1mib=True)
    assert exit_value == comparedisk.expected_exit(wrap_above_1mib=True) == 1
    assert serial.count("FAIL DATA WRAPPED TO 0000") == 5


# runner.boot's default path (Xen PV, bounce page), then each other firmware path.
PVBOOT_PATHS = {"default": {}, "pv-direct": {"driver": "xen", "pv_path": "direct"},
                "ata": {"driver": "ata"}, "host": {"driver": "host"}}


@pytest.mark.parametrize("path", sorted(PVBOOT_PATHS))
def test_pvboot_prints_the_expected_transcript(image, path):
    result = runner.boot([str(image)], timeout=20, **PVBOOT_PATHS[path])
    assert result.stop.reason == "exit", f"{result.stop}\n{result.console}"
    assert result.console == comparedisk.expected_transcript()
    assert result.stop.exit_value == comparedisk.EXPECTED_EXIT


def test_digests_follow_the_image_contents(tmp_path):
    data = bytearray(comparedisk.compare_disk_image())
    data[1003 * SECTOR_SIZE + 7] ^= 0x01        # OPs 04, 05: CHS LBAs 1000-1007, 1001-1009
    data[20100 * SECTOR_SIZE + 300] ^= 0x80     # OP 2D (PM, LBAs 20001-20127) and the REGION
    path = tmp_path / "changed.img"
    path.write_bytes(data)
    result = runner.boot([str(path)], driver="host", timeout=20)
    assert result.console == comparedisk.expected_transcript(path)
    changed = [i for i, (a, b) in enumerate(zip(result.console.splitlines(),
                                                comparedisk.expected_lines()))
               if a != b]
    assert changed == [0x04, 0x05, 0x2D, 0x31, len(comparedisk.OPS) + 1]
    assert result.stop.exit_value == 0          # different data is no failed call


def test_a_failed_call_is_reported_and_the_rest_still_runs(tmp_path):
    # 81913 sectors: OP 19 (EDD LBAs 81913-81919) starts past the end.
    path = tmp_path / "short.img"
    path.write_bytes(comparedisk.compare_disk_image()[:81913 * SECTOR_SIZE])
    result = runner.boot([str(path)], driver="host", timeout=20)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", comparedisk.FAILED_EXIT)
    got = result.console.splitlines()
    want = comparedisk.expected_lines()
    assert got[0x19].startswith("OP 19 EDD LBA=00013FF9 N=07 BUF=1000:0000 AH=01 DIGEST=")
    assert got[0x1A].startswith("OP 19 FAIL CF=1 AH=01 CNT=")
    assert got[:0x19] + got[0x1B:-2] == want[:0x19] + want[0x1A:-1]
    assert got[-2] == "FAILED CALLS=01"
    assert got[-1].startswith("TOTAL DIGEST=") and got[-1] != want[-1]
