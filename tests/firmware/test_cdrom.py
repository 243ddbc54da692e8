"""The PV CD-ROM against QEMU + SeaBIOS -cdrom: INT 13h on the boot CD (E0h), El Torito
no-emulation, floppy and hard-disk emulation, ISOLINUX and grub-mkrescue ISOs.

Each guest program (tests/guests/cd_int13.S) prints every INT 13h result on COM1; the
ISO boots under both, and pvboot must print exactly what QEMU printed.  A few facts of
the PV CD are asserted on top (2048-byte sectors, B1h for an eject while locked), and
media changes from outside with Debian's xenstore-write.
"""
import os
import shutil
import subprocess
import threading

import pytest

from pvboot.tools import cli, comparepaths, iso, qemu, runner
from tests.guests import build
from tests.waiting import wait_until

needs_tools = pytest.mark.skipif(
    not (build.tools_available() and shutil.which("xorriso") and qemu.qemu_available()),
    reason="GNU as, xorriso or qemu-system-i386 missing")
GUEST = build.GUEST_DIR / "cd_int13.S"
TIMEOUT = 15.0
# QEMU's PC has an empty floppy drive A unless told otherwise; pvboot has none.
NO_FLOPPY = ["-global", "isa-fdc.fdtypeA=none"]
HD_EMULATION_SIZE = 2 * 1024 * 1024


def _program(**defsyms):
    return build.assemble(GUEST, defsyms or None)


def _both(cdrom, disks=(), floppy=None, **kwargs):
    reference = qemu.run([str(d) for d in disks], None if floppy is None else str(floppy),
                         cdrom=str(cdrom), boot="cd", timeout=TIMEOUT,
                         extra_args=NO_FLOPPY if floppy is None else ())
    result = runner.boot([str(d) for d in disks], floppy=floppy and str(floppy),
                         cdrom=str(cdrom), boot_from="cd", timeout=TIMEOUT, **kwargs)
    return reference, result


@pytest.fixture(scope="module")
def int13_iso(tmp_path_factory):
    return iso.eltorito_iso(tmp_path_factory.mktemp("cd") / "int13.iso", _program(), "noemul")


@needs_tools
@pytest.mark.parametrize("path", ["bounce", "direct", "atapi", "pv-fallback"])
def test_int13_on_cd_matches_qemu(int13_iso, path):
    """PV bounce, PV direct, the emulated ATAPI drive, and the PV CD falling back to it
    (no backend) print the same INT 13h results and bytes read as QEMU's -cdrom."""
    options = {"atapi": {"cdrom_type": "ioemu"},
               "pv-fallback": {"no_backend": True, "backend_timeout": 0.5}}.get(
                   path, {"pv_path": path})
    reference, result = _both(int13_iso, **options)
    if path == "pv-fallback":
        assert any("falling back to its emulated ATAPI twin" in m for m in result.messages)
    assert reference.exit_value == 0
    assert result.console == reference.serial_text
    lines = result.console.splitlines()
    assert lines[0] == "CD BOOT DL=E0"
    # AH=48h: 2048 bytes a sector, removable/lockable/media-change flags (0074h).
    at = next(i for i, line in enumerate(lines) if line.startswith("48/74 AX=00"))
    assert lines[at].endswith("CF=0")
    edd = lines[at + 1]
    assert edd[4:8] == "7400" and edd.endswith("0008")
    assert any(line.startswith("46 LOCKED AX=B1") and line.endswith("CF=1") for line in lines)
    assert any(line.startswith("43 WRITE AX=03") and line.endswith("CF=1") for line in lines)
    assert result.stop.reason == "exit" and result.stop.exit_value == 0


@needs_tools
@pytest.mark.parametrize("mode,size,real", [
    ("floppy", 1228800, None), ("floppy", 1474560, None), ("floppy", 2949120, None),
    ("hd", HD_EMULATION_SIZE, None), ("floppy", 1474560, "floppy"), ("hd", HD_EMULATION_SIZE, "hd"),
    ("floppy", 1474560, "atapi"), ("hd", HD_EMULATION_SIZE, "atapi")])
def test_emulation_matches_qemu(tmp_path, mode, size, real):
    """The emulated drive as 00h or 80h; with a real drive of the same kind attached,
    that one answers as 01h or 81h (the program asks the next number too); "atapi":
    the image read through the emulated ATAPI drive instead of the PV CD."""
    program = _program(EMULATION=1)
    image = bytearray(i % 251 for i in range(size))
    image[:len(program)] = program
    if mode == "hd":
        # One partition ending at cylinder 3, head 15, sector 63: the emulated geometry.
        image[0x1BE:0x1CE] = bytes([0x80, 1, 1, 0, 0x83, 15, 63, 3]) + \
            (63).to_bytes(4, "little") + (4 * 16 * 63 - 63).to_bytes(4, "little")
    cd = iso.eltorito_iso(tmp_path / "emu.iso", bytes(image), mode)
    extra = {}
    if real == "floppy":
        extra["floppy"] = build.build_floppy("floppy", tmp_path)
    elif real == "hd":
        extra["disks"] = [build.build_disk("disk_rw", tmp_path)]
    elif real == "atapi":
        extra["cdrom_type"] = "ioemu"       # the emulated drive read through ATAPI
    reference, result = _both(cd, **extra)
    assert reference.exit_value == 0
    assert result.console == reference.serial_text
    assert result.console.startswith("CD BOOT DL=" + ("00" if mode == "floppy" else "80"))


@needs_tools
def test_isolinux_iso_boots_like_qemu(tmp_path):
    marker = "ISOLINUX PV CD MARKER"
    cd = iso.isolinux_iso(tmp_path / "isolinux.iso", marker)
    reference = qemu.run(cdrom=str(cd), boot="cd", timeout=TIMEOUT)
    result = runner.boot([], cdrom=str(cd), timeout=TIMEOUT, expect=marker)
    assert marker in reference.serial_text
    assert result.expect_met
    end = reference.serial_text.index(marker) + len(marker)
    assert result.console[:end] == reference.serial_text[:end]


@needs_tools
def test_grub_rescue_iso_boots_as_hard_disk(tmp_path):
    marker = "GRUB RESCUE MARKER"
    cd = iso.grub_rescue_iso(tmp_path / "grub.iso", marker)
    reference = qemu.run((str(cd),), timeout=TIMEOUT)
    result = runner.boot([str(cd)], timeout=TIMEOUT)
    assert marker in reference.serial_text
    assert result.console == reference.serial_text
    assert result.stop.reason == "poweroff"


@needs_tools
def test_grub_rescue_iso_boots_as_cd(tmp_path):
    marker = "GRUB RESCUE MARKER"
    cd = iso.grub_rescue_iso(tmp_path / "grub.iso", marker)
    result = runner.boot([], cdrom=str(cd), timeout=TIMEOUT)
    assert marker in result.console


@needs_tools
def test_disc_without_boot_catalog_falls_through(tmp_path, int13_iso):
    # A plain data ISO: LBA 17 is its terminator (type FFh), SeaBIOS code 4; then the disk.
    root = tmp_path / "data"
    root.mkdir()
    (root / "file.txt").write_text("data\n")
    plain = tmp_path / "plain.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(plain), str(root)],
                   check=True, capture_output=True)
    disk = build.build_disk("disk_rw", tmp_path)
    result = runner.boot([str(disk)], cdrom=str(plain), boot_from="cd", timeout=TIMEOUT)
    assert "Boot failed: Could not read from CDROM (code 0004)" in " ".join(result.messages)
    assert result.console == build.EXPECTED_SERIAL["disk_rw"]


@needs_tools
def test_empty_drive_fails_boot_with_code_3(tmp_path):
    disk = build.build_disk("disk_rw", tmp_path)
    result = runner.boot([str(disk)], cdrom="", boot_from="cd", timeout=TIMEOUT)
    assert "Could not read from CDROM (code 0003)" in " ".join(result.messages)
    assert result.stop.exit_value == 0


def _xenstore(tool, socket, *args):
    env = dict(os.environ, XENSTORED_PATH=str(socket))
    return subprocess.run([tool, *args], env=env, capture_output=True, text=True, timeout=10)


@needs_tools
@pytest.mark.skipif(not shutil.which("xenstore-write"), reason="xenstore-utils missing")
def test_media_change_from_outside_with_xenstore_write(tmp_path, capsys):
    first = iso.eltorito_iso(tmp_path / "first.iso", _program(MEDIA_CHANGE=1), "noemul",
                             volume_id="FIRSTDISC")
    second = iso.eltorito_iso(tmp_path / "second.iso", b"\0" * 2048, "noemul",
                              volume_id="SECONDDISC")
    socket = tmp_path / "xenstored"
    console = bytearray()
    locked, empty = threading.Event(), threading.Event()
    outcome = {}

    class Echo:
        def write(self, data):
            console.extend(data)
            if b"LOCKED\r\n" in console:
                locked.set()
            if b"EMPTY\r\n" in console:
                empty.set()

        def flush(self):
            pass

    def run():
        outcome["result"] = runner.boot([], cdrom=str(first), timeout=60, echo=Echo(),
                                        realtime=True, xenstore_socket=str(socket))
    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert locked.wait(30), console
        devid = _xenstore("xenstore-list", socket, "/local/domain/1/device/vbd").stdout.split()[0]
        fe = f"/local/domain/1/device/vbd/{devid}"
        be = _xenstore("xenstore-read", socket, fe + "/backend").stdout.strip()
        # The guest's lock is visible, and outside ejects are refused while it holds.
        assert _xenstore("xenstore-read", socket, fe + "/media-req").stdout.strip() == "lock"
        assert _xenstore("xenstore-read", socket, be + "/media-req-sup").stdout.strip() == "1"
        assert _xenstore("xenstore-read", socket, be + "/info").stdout.strip() == "7"
        assert _xenstore("xenstore-read", socket, be + "/sector-size").stdout.strip() == "2048"
        assert _xenstore("xenstore-write", socket, be + "/params", "").returncode == 0
        assert cli.run(["cd", "eject", str(socket)]) == 1             # refused: locked
        assert "locked" in capsys.readouterr().err
        assert _xenstore("xenstore-read", socket, be + "/params").stdout.strip() == str(first)
        # The guest unlocks and ejects (the toolstack's eject watch empties the drive).
        assert empty.wait(30), console
        # the watch acknowledges after the change
        wait_until(lambda: _xenstore("xenstore-read", socket, fe + "/eject").stdout.strip() == "",
                   "the eject request to be acknowledged", 10)
        assert _xenstore("xenstore-write", socket, be + "/params", str(second)).returncode == 0
    finally:
        thread.join(60)
    result = outcome["result"]
    lines = result.console.splitlines()

    def status(name):
        return [line.split("AX=")[1][:2] for line in lines if line.startswith(name + " AX=")]
    assert status("42 STILL") == ["00"]            # the refused ejects left the disc
    assert status("46") == ["00"]
    assert status("42 CHANGED") == ["06", "06"]    # once after the eject, once after insert
    assert status("42 EMPTY") == ["0C"]
    assert status("42 NEW DISC") == ["00"]
    assert lines[-2] == "SECONDDISC".encode().hex().upper() + "202020202020"
    assert result.stop.exit_value == 0


@needs_tools
def test_compare_paths_reads_the_cd_alike(int13_iso):
    """pvboot compare --paths --cdrom: ATAPI, PV bounce, PV direct and QEMU+SeaBIOS."""
    comparison = comparepaths.compare_paths([], cdrom=str(int13_iso), timeout=TIMEOUT)
    assert comparison.agree, comparison.verdict()
    reference = comparison.reference
    assert reference.digests and all(d.drive == 0xE0 for d in reference.digests)
    assert {run.name for run in comparison.runs} == set(comparepaths.ALL_PATHS)
