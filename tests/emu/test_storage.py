"""emu/storage: images in every format through qemu-storage-daemon and the NBD client,
checked against what qemu-img says the image holds; QEMU's image locks against a real
qemu-system-i386; bad images refused in one line without being changed; no daemon
outliving the process that started it."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pvboot.emu.diskimage import SECTOR_SIZE, DiskImage, DiskImageError
from pvboot.emu.storage.daemon import StorageDaemon, StorageError
from pvboot.emu.storage.images import claim_image, open_image
from pvboot.emu.storage.locking import ImageLock, ImageLockError
from pvboot.emu.storage.nbd import NbdClient
from pvboot.emu.storage.nbdimage import NbdImage
from pvboot.emu.storage.probe import format_hint, image_info
from tests.emu.storage_images import (FORMATS, convert, need_qemu_tools, overlay, patterned,
                                      qemu_img, raw_contents, sha)
from tests.waiting import wait_until

pytestmark = pytest.mark.usefixtures("qemu_tools")


@pytest.fixture
def qemu_tools():
    need_qemu_tools()


@pytest.fixture
def raw(tmp_path):
    return patterned(tmp_path / "base.img")


# -- formats --------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_what_qemu_img_reads(fmt, raw, tmp_path):
    image = convert(raw, fmt, tmp_path / f"disk.{fmt}")
    # Detection agrees with qemu-img; only raw skips running it.
    assert (format_hint(image) == "raw") == (fmt == "raw")
    assert image_info(str(image)).format == fmt
    expected = raw_contents(image, tmp_path)
    with open_image(str(image), run_dir=str(tmp_path)) as disk:
        assert isinstance(disk, DiskImage if fmt == "raw" else NbdImage)
        assert disk.sectors * SECTOR_SIZE == len(expected)
        # One command, three buffers: the payload lands in each in order.
        parts = [bytearray(SECTOR_SIZE), bytearray(3 * SECTOR_SIZE), bytearray(SECTOR_SIZE)]
        disk.read_into_parts(7, parts)
        assert b"".join(parts) == expected[7 * SECTOR_SIZE:12 * SECTOR_SIZE]
        assert disk.read(0, disk.sectors) == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_overlay_writes_read_back_and_leave_the_image_alone(fmt, raw, tmp_path):
    image = convert(raw, fmt, tmp_path / f"disk.{fmt}")
    before = sha(image)
    with open_image(str(image), run_dir=str(tmp_path)) as disk:
        disk.write_from_parts(10, [memoryview(b"A" * 512), memoryview(b"B" * 1024)])
        disk.flush()
        assert disk.read(9, 4) == raw.read_bytes()[9 * 512:10 * 512] + b"A" * 512 + b"B" * 1024
    assert sha(image) == before
    assert not [n for n in os.listdir(tmp_path) if n.startswith("sd-")], "run dir left behind"


def test_persist_writes_through_the_format(raw, tmp_path):
    image = convert(raw, "qcow2", tmp_path / "disk.qcow2")
    with open_image(str(image), persist=True, run_dir=str(tmp_path)) as disk:
        disk.write_from(5, 1, b"P" * 512)
    assert qemu_img("info", "--output=json", image).count('"format": "qcow2"') == 1
    assert raw_contents(image, tmp_path)[5 * 512:6 * 512] == b"P" * 512


def test_read_only_export_refuses_writes(raw, tmp_path):
    image = convert(raw, "vdi", tmp_path / "disk.vdi")
    with open_image(str(image), read_only=True, run_dir=str(tmp_path)) as disk:
        with pytest.raises(DiskImageError, match="read-only"):
            disk.write_from(0, 1, bytes(512))


def test_user_backing_chain_is_served_as_it_is(raw, tmp_path):
    base = convert(raw, "vmdk", tmp_path / "base.vmdk")
    mid = overlay(base, "vmdk", tmp_path / "mid.qcow2")
    with open_image(str(mid), persist=True, run_dir=str(tmp_path)) as disk:
        disk.write_from(1, 1, b"M" * 512)
    top = overlay(mid, "qcow2", tmp_path / "top.qcow2")
    with open_image(str(top), run_dir=str(tmp_path)) as disk:
        expected = bytearray(raw.read_bytes())
        expected[512:1024] = b"M" * 512
        assert disk.read(0, disk.sectors) == bytes(expected)


def test_saved_overlay_is_a_qcow2_on_the_image_that_commit_folds_back(raw, tmp_path):
    image = convert(raw, "vhdx", tmp_path / "disk.vhdx")
    before = sha(image)
    saved = tmp_path / "writes.qcow2"
    with open_image(str(image), run_dir=str(tmp_path), save_overlay=str(saved)) as disk:
        disk.write_from(3, 1, b"S" * 512)
    assert sha(image) == before
    chain = qemu_img("info", "--backing-chain", "--output=json", saved)
    assert str(image) in chain and '"format": "vhdx"' in chain
    assert raw_contents(saved, tmp_path)[3 * 512:4 * 512] == b"S" * 512
    qemu_img("commit", saved)
    assert raw_contents(image, tmp_path)[3 * 512:4 * 512] == b"S" * 512


# -- issue: aliasing segments give sequential order in every mode ---------------------------
@pytest.mark.parametrize("mode", ["overlay", "persist", "qcow2-overlay", "qcow2-persist"])
def test_aliasing_buffers_hold_the_last_segment(mode, raw, tmp_path):
    """Segments of one read that point at the same guest bytes: each later segment wins,
    as if the sectors were read one after the other, whether or not the sectors come
    from a copy-on-write layer."""
    image = raw if mode in ("overlay", "persist") else convert(raw, "qcow2", tmp_path / "d.qcow2")
    disk = open_image(str(image), persist=mode.endswith("persist"), run_dir=str(tmp_path))
    with disk:
        disk.write_from(20, 1, b"W" * 512)          # sector 20 in the writable layer
        for order in ((20, 21), (19, 20)):
            page = bytearray(512)
            view = memoryview(page)
            disk.read_into_parts(order[0], [view, view])
            sequential = bytearray(512)
            for lba in order:
                disk.read_into(lba, 1, sequential)
            assert page == sequential, (mode, order)


# -- bad input: one line, nothing modified -------------------------------------------------
def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def _corrupt(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _bad_images(raw, tmp_path):
    cases = {}
    # Cut inside the header, and (qcow2) after it, before the tables it points at.
    for fmt, size in (("qcow2", 64), ("qcow2", 600), ("vmdk", 600), ("vdi", 300)):
        trunc = convert(raw, fmt, tmp_path / f"trunc{size}.{fmt}")
        _truncate(trunc, size)
        cases[f"{fmt} truncated to {size} bytes"] = (trunc, None)
    bad = convert(raw, "qcow2", tmp_path / "version.qcow2")
    _corrupt(bad, 4, b"\xff\xff\xff\xff")               # header version field
    cases["corrupt qcow2 header"] = (bad, None)
    bad = convert(raw, "vdi", tmp_path / "sector.vdi")
    _corrupt(bad, 0x168, b"\x00\x00\x00\x00")           # VDI sector size
    cases["corrupt vdi header"] = (bad, None)
    missing = tmp_path / "missing-base.img"
    shutil.copy(raw, missing)
    dangling = overlay(missing, "raw", tmp_path / "dangling.qcow2")
    missing.unlink()
    cases["missing backing file"] = (dangling, None)
    a, b = tmp_path / "loop-a.qcow2", tmp_path / "loop-b.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", b, "-F", "qcow2", a, "128K")
    qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", a, "-F", "qcow2", b, "128K")
    cases["looping backing chain"] = (a, None)
    enc = tmp_path / "secret.qcow2"
    for attempt in range(5):
        # LUKS times its key derivation; on a loaded machine qemu-img may find "no
        # accurate CPU usage" and give up: try again.
        try:
            qemu_img("create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=pw", "-o",
                     "encrypt.format=luks,encrypt.key-secret=s0", enc, "1M")
            break
        except subprocess.CalledProcessError:
            if attempt == 4:
                raise
    cases["encrypted"] = (enc, None)
    q = convert(raw, "qcow2", tmp_path / "really.qcow2")
    cases["format=vmdk on a qcow2"] = (q, "vmdk")
    cases["format=raw on a qcow2"] = (q, "raw")
    return cases


def test_bad_images_are_refused_in_one_line_and_left_unchanged(raw, tmp_path):
    for what, (path, fmt) in _bad_images(raw, tmp_path).items():
        before = sha(path)
        with pytest.raises(DiskImageError) as info:
            open_image(str(path), fmt, persist=True, run_dir=str(tmp_path))
        message = str(info.value)
        assert "\n" not in message and str(path) in message, (what, message)
        with pytest.raises(DiskImageError):
            claim_image(str(path), fmt, write=True)
        assert sha(path) == before, what


# -- locks, as QEMU takes them --------------------------------------------------------------
def test_readers_share_writers_exclude(raw):
    with ImageLock.acquire(str(raw), write=False), ImageLock.acquire(str(raw), write=False):
        with pytest.raises(ImageLockError, match='"write" lock'):
            ImageLock.acquire(str(raw), write=True)
    with ImageLock.acquire(str(raw), write=True):
        for write in (True, False):
            with pytest.raises(ImageLockError):
                ImageLock.acquire(str(raw), write=write)
    ImageLock.acquire(str(raw), write=True).close()       # all released


def _qemu_holding(image, fmt="raw"):
    if shutil.which("qemu-system-i386") is None:
        pytest.skip("qemu-system-i386 not installed")
    proc = subprocess.Popen(["qemu-system-i386", "-S", "-display", "none", "-nodefaults",
                             "-drive", f"file={image},format={fmt},if=ide"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_pvboot_and_qemu_exclude_each_other(fmt, raw, tmp_path):
    image = raw if fmt == "raw" else convert(raw, fmt, tmp_path / "d.qcow2")
    qemu = _qemu_holding(image, fmt)
    try:
        refusals = []

        def refused():                   # QEMU holds its locks once it has opened the disk
            try:
                claim = claim_image(str(image), fmt, write=False)
            except ImageLockError as e:
                refusals.append(str(e))
                return True
            if claim[1] is not None:
                claim[1].close()
            return False
        wait_until(refused, "QEMU to lock the image", 20, process=qemu)
        assert "\n" not in refusals[0]
        with pytest.raises(ImageLockError):
            claim_image(str(image), fmt, write=True)
    finally:
        qemu.kill()
        qemu.wait()
    # And the other way: pvboot writes, QEMU is refused.
    with open_image(str(image), fmt, persist=True, run_dir=str(tmp_path)) as disk:
        lock = ImageLock(disk.fileno(), str(image), write=True) if fmt == "raw" else None
        r = subprocess.run(["qemu-system-i386", "-S", "-display", "none", "-nodefaults",
                            "-drive", f"file={image},format={fmt},if=ide"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and 'Failed to get "write" lock' in r.stderr
        if lock:
            lock.close()


# -- the daemon dies with its parent --------------------------------------------------------
def _daemons_under(directory):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"qemu-storage-daemon" in cmdline and directory.encode() in cmdline:
            found.append(int(pid))
    return found


def test_storage_daemon_does_not_outlive_a_killed_parent(raw, tmp_path):
    image = convert(raw, "qcow2", tmp_path / "d.qcow2")
    code = ("import sys, time\n"
            "from pvboot.emu.storage.images import open_image\n"
            "disk = open_image(sys.argv[1], run_dir=sys.argv[2])\n"
            "print('open', flush=True)\n"
            "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code, str(image), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "open"
        daemons = _daemons_under(str(tmp_path))
        assert len(daemons) == 1
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while _daemons_under(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _daemons_under(str(tmp_path)) == []


# -- qemu-nbd, when qemu-storage-daemon is not there ---------------------------------------
def test_qemu_nbd_serves_when_the_storage_daemon_is_missing(raw, tmp_path):
    if shutil.which("qemu-nbd") is None:
        pytest.skip("qemu-nbd not installed")
    image = convert(raw, "vmdk", tmp_path / "d.vmdk")
    top = overlay(image, "vmdk", tmp_path / "top.qcow2")
    blockdev = {"driver": "qcow2", "file": {"driver": "file", "filename": str(top)}}
    run = tmp_path / "run"
    run.mkdir()
    daemon = StorageDaemon(blockdev, str(run), writable=True, servers=("qemu-nbd",))
    try:
        assert daemon.qmp_path is None
        client = NbdClient.connect_unix(daemon.nbd_path)
        client.write_from(512, [b"N" * 512])
        page = bytearray(1024)
        client.read_into(0, [memoryview(page)])
        assert page == raw.read_bytes()[:512] + b"N" * 512
        client.close()
        with pytest.raises(StorageError, match="no monitor"):
            daemon.qmp("query-block")
    finally:
        daemon.stop()
    with pytest.raises(StorageError, match="neither"):
        StorageDaemon(blockdev, str(run), writable=False, servers=("no-such-nbd-server",))
