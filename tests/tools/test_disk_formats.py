"""`pvboot boot` on images in every format: a suite guest (disk_rw, which reads, writes
and checks its disk) converted with qemu-img boots through the Xen PV path to the same
transcript as the raw image; its writes land where the options say and nowhere else;
a second writer is refused in one line; a killed run leaves no storage daemon."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pvboot.emu.storage import locking
from pvboot.tools import runner
from tests.emu.storage_images import (FORMATS, convert, need_qemu_tools, overlay, qemu_img,
                                      raw_contents, sha)
from tests.guests import build
from tests.waiting import wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif(not build.tools_available(), reason="GNU as/ld not installed")


@pytest.fixture(scope="module")
def disk_rw(tmp_path_factory):
    need_qemu_tools()
    return build.build_image("disk_rw", tmp_path_factory.mktemp("disk_rw"))


def pvboot(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "pvboot.tools", "boot", "-q", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pvboot: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("path", ["bounce", "direct"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_boots_to_the_raw_transcript(fmt, path, disk_rw, tmp_path):
    image = convert(disk_rw, fmt, tmp_path / f"disk.{fmt}")
    before = sha(image)
    result = runner.boot([str(image)], driver="xen", pv_path=path, timeout=30)
    assert result.stop.reason == "exit", result.stop
    assert result.console == build.EXPECTED_SERIAL["disk_rw"]
    assert result.stop.exit_value == build.EXPECTED_EXIT
    assert not [m for m in result.messages if "falling back" in m], result.messages
    assert sha(image) == before                   # the guest's writes went to an overlay


@pytest.mark.parametrize("kind", ["ioemu", "host"])
def test_emulated_ide_and_host_driver_serve_qcow2_too(kind, disk_rw, tmp_path):
    image = convert(disk_rw, "qcow2", tmp_path / "disk.qcow2")
    if kind == "ioemu":
        result = runner.boot([], disks=[f"{image},type=ioemu"], timeout=30)
    else:
        result = runner.boot([str(image)], driver="host", timeout=30)
    assert (result.stop.reason, result.console) == ("exit", build.EXPECTED_SERIAL["disk_rw"])


def _persisted_raw(disk_rw, tmp_path):
    """What disk_rw's writes make of the raw image (the reference for the other layers)."""
    copy = tmp_path / "reference.img"
    copy.write_bytes(disk_rw.read_bytes())
    assert runner.boot([str(copy)], persist=True, timeout=30).stop.exit_value == 0
    return copy.read_bytes()


def test_overlay_chain_boots_and_writes_land_in_the_saved_overlay(disk_rw, tmp_path):
    reference = _persisted_raw(disk_rw, tmp_path)
    base = convert(disk_rw, "vmdk", tmp_path / "base.vmdk")
    top = overlay(base, "vmdk", tmp_path / "top.qcow2")
    sums = sha(base), sha(top)
    saved = tmp_path / "writes.qcow2"
    r = pvboot(top, "--save-overlay", saved)
    assert r.returncode == 0, r.stderr
    assert (sha(base), sha(top)) == sums
    chain = qemu_img("info", "--backing-chain", saved)
    assert chain.index(str(saved)) < chain.index(str(top)) < chain.index(str(base))
    assert raw_contents(saved, tmp_path) == reference
    qemu_img("commit", saved)                    # folds the writes into top.qcow2
    assert sha(base) == sums[0]
    assert raw_contents(top, tmp_path) == reference
    one_line_error(pvboot(top, "--save-overlay", saved), "exists already")


def test_raw_image_writes_can_be_saved_as_an_overlay(disk_rw, tmp_path):
    reference = _persisted_raw(disk_rw, tmp_path)
    before = sha(disk_rw)
    saved = tmp_path / "raw-writes.qcow2"
    assert pvboot(disk_rw, "--save-overlay", saved).returncode == 0
    assert sha(disk_rw) == before
    assert raw_contents(saved, tmp_path) == reference


def test_persist_on_qcow2_changes_only_the_qcow2(disk_rw, tmp_path):
    reference = _persisted_raw(disk_rw, tmp_path)
    base = convert(disk_rw, "raw", tmp_path / "base.img")
    top = overlay(base, "raw", tmp_path / "top.qcow2")
    before = sha(base), sha(top)
    r = pvboot("--disk", f"{top},format=qcow2,persist")
    assert r.returncode == 0, r.stderr
    assert sha(base) == before[0] and sha(top) != before[1]
    assert raw_contents(top, tmp_path) == reference


@pytest.fixture
def spinner(tmp_path, boot_program):
    """A boot sector that never ends: a run that holds its disk until --timeout."""
    return boot_program("spin: jmp spin", name="spin.img")


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_second_writer_is_refused(fmt, spinner, tmp_path):
    image = spinner if fmt == "raw" else convert(spinner, fmt, tmp_path / "spin.qcow2")
    first = subprocess.Popen([sys.executable, "-m", "pvboot.tools", "boot", "-q", "--persist",
                              "--timeout", "60", "--disk", f"{image},format={fmt}"], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Wait (bounded) until the first run holds its lock: a test that takes nothing.
        fd = os.open(image, os.O_RDONLY)
        try:
            wait_until(lambda: locking.conflict(fd, write=True) is not None,
                       "the first run to lock the image", 30, process=first)
        finally:
            os.close(fd)
        second = pvboot("--persist", "--timeout", "1", image)
        one_line_error(second, "lock")
        # A reader is refused while a writer runs, as QEMU refuses it.
        one_line_error(pvboot("--timeout", "1", image), "lock")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The killed run's backend and daemon follow it (bounded), and the image is free.
    fd = os.open(image, os.O_RDONLY)
    try:
        deadline = time.monotonic() + 10
        while locking.conflict(fd, write=True) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.close(fd)
    assert pvboot("--persist", "--timeout", "1", image).returncode == 1   # a timeout: it ran


def test_bad_images_exit_2_in_one_line(disk_rw, tmp_path):
    q = convert(disk_rw, "qcow2", tmp_path / "d.qcow2")
    with open(q, "r+b") as f:
        f.truncate(600)
    missing = tmp_path / "gone.img"
    missing.write_bytes(disk_rw.read_bytes())
    dangling = overlay(missing, "raw", tmp_path / "dangling.qcow2")
    missing.unlink()
    for args, fragment in (([q], "metadata damaged"), ([dangling], "No such file"),
                           (["--disk", f"{convert(disk_rw, 'vdi', tmp_path / 'd.vdi')},format=vhdx"],
                            "vhdx")):
        one_line_error(pvboot(*args), fragment)


def _run_daemons():
    """Storage daemons of pvboot runs (their sockets are in a run's private directory),
    found in /proc whoever their parent is now."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"qemu-storage-daemon" in cmdline and (b"/pvboot-xs-" in cmdline
                                                  or b"/pvboot-run-" in cmdline):
            found.add(int(pid))
    return found


def test_killing_the_run_leaves_no_storage_daemon(spinner, tmp_path):
    image = convert(spinner, "qcow2", tmp_path / "spin.qcow2")
    before = _run_daemons()
    run = subprocess.Popen([sys.executable, "-m", "pvboot.tools", "boot", "-q", "--timeout", "60",
                            image], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # blkback's, and the emulated IDE twin's
        wait_until(lambda: len(_run_daemons() - before) == 2, "the run's two storage daemons",
                   30, process=run)
        mine = _run_daemons() - before
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    deadline = time.monotonic() + 10
    while (_run_daemons() & mine) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _run_daemons() & mine


def test_snapshot_on_console_match_pins_what_the_guest_had_written(disk_rw, tmp_path):
    reference = _persisted_raw(disk_rw, tmp_path)
    disk = convert(disk_rw, "qcow2", tmp_path / "snap.qcow2")
    r = pvboot("--persist", disk, "--snapshot-on", "DISK_RW START=start",
               "--snapshot-on", "EDD WRITE OK=written")
    assert r.returncode == 0, r.stderr
    assert "snapshot 'start' taken" in r.stderr and "snapshot 'written' taken" in r.stderr

    def at(name):
        out = tmp_path / f"{name}.raw"
        qemu_img("convert", "-U", "-l", f"snapshot.name={name}", "-O", "raw", disk, out)
        return out.read_bytes()
    assert at("start") == disk_rw.read_bytes()       # before the guest's first write
    assert at("written") == reference                # after its last one
    # Without a layer that outlives the run the snapshot would be lost: refused.
    one_line_error(pvboot(disk_rw, "--snapshot-on", "START=s"), "--snapshot-on")
    one_line_error(pvboot(disk_rw, "--snapshot-on", "START=bad name"), "NAME")


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_qemu_writing_the_image_refuses_pvboot(fmt, spinner, tmp_path):
    if shutil.which("qemu-system-i386") is None:
        pytest.skip("qemu-system-i386 not installed")
    image = spinner if fmt == "raw" else convert(spinner, fmt, tmp_path / "spin.qcow2")
    qemu = subprocess.Popen(["qemu-system-i386", "-S", "-display", "none", "-nodefaults",
                             "-drive", f"file={image},format={fmt},if=ide"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        fd = os.open(image, os.O_RDONLY)
        try:
            wait_until(lambda: locking.conflict(fd, write=True) is not None,   # QEMU has opened it
                       "QEMU to lock the image", 30, process=qemu)
        finally:
            os.close(fd)
        one_line_error(pvboot("--persist", "--timeout", "5", image), "lock")
        one_line_error(pvboot("--timeout", "5", image), "lock")
    finally:
        qemu.kill()
        qemu.wait()


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_a_comma_in_the_path_is_written_doubled(fmt, disk_rw, tmp_path):
    image = convert(disk_rw, fmt, tmp_path / f"my,disk.{fmt}")
    saved = tmp_path / "saved,writes.qcow2"
    r = pvboot("--disk", str(image).replace(",", ",,") + f",format={fmt}", "--save-overlay", saved)
    assert r.returncode == 0, r.stderr
    assert qemu_img("info", "--output=json", saved).count(str(image)) >= 1


@pytest.mark.parametrize("mode", [[], ["--with-qemu"]])
def test_compare_reads_every_path_through_the_same_format(mode, disk_rw, tmp_path):
    """pvboot compare: the IDE and PV paths (and QEMU+SeaBIOS, told the same format)
    agree on a vmdk as they do on raw."""
    if mode and shutil.which("qemu-system-i386") is None:
        pytest.skip("qemu-system-i386 not installed")
    image = convert(disk_rw, "vmdk", tmp_path / "disk.vmdk")
    r = subprocess.run([sys.executable, "-m", "pvboot.tools", "compare", *mode, str(image)],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0 and "AGREE" in r.stdout + r.stderr, (r.stdout, r.stderr)
