"""Every INT 13h function on every drive type (floppy 00h, hard disk 80h, CD E0h),
one transcript line a call (tests/guests/int13_all.S), under pvboot's default PV
path and QEMU+SeaBIOS: the transcripts agree line by line."""
import shutil

import pytest

from pvboot.tools import iso, runner
from tests import qemu
from tests.guests import build

pytestmark = pytest.mark.skipif(
    not (build.tools_available() and shutil.which("xorriso") and qemu.qemu_available()),
    reason="GNU as/ld, xorriso or QEMU missing")

FLOPPY_1440K = 1474560


@pytest.fixture(scope="module")
def drives(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("int13all")
    program = build.assemble(build.GUEST_DIR / "int13_all.S", {"DISK_SECTORS": 2880})
    floppy = tmp / "int13_all.img"
    floppy.write_bytes(program + bytes(FLOPPY_1440K - len(program)))
    disk = build.build_disk("disk_rw", tmp)
    cd = iso.eltorito_iso(tmp / "cd.iso", build.build_program("disk_rw")[:2048].ljust(2048, b"\0"),
                          "noemul")
    return floppy, disk, cd


def test_every_function_on_every_drive_matches_qemu(drives):
    floppy, disk, cd = drives
    result = runner.boot([str(disk)], floppy=str(floppy), cdrom=str(cd), boot_from="floppy",
                         timeout=60)
    reference = qemu.run(disks=[str(disk)], floppy=str(floppy), cdrom=str(cd), boot="floppy",
                         snapshot=True, timeout=60)
    ours, theirs = result.console.splitlines(), reference.serial_text.splitlines()
    assert theirs[-1] == "INT13 ALL END" and reference.exit_value == 0
    assert len([line for line in theirs if line[:2] in ("00", "80", "E0")]) == 3 * 43
    for mine, seabios in zip(ours, theirs):
        assert mine == seabios
    assert ours == theirs
    assert result.stop.exit_value == 0
