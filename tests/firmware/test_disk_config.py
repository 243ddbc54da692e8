"""Disks configured like xl's disk= line (`--disk`), drive numbers in the order given
whatever the mix of types, and the fallback of a PV disk whose backend never connects
to the same image's emulated IDE twin."""
import contextlib
import io
import os
import signal
import subprocess
import sys

import pytest

from pvboot.emu.devices import ide_channel
from pvboot.emu.diskimage import DiskImage
from pvboot.emu.machine import Machine
from pvboot.emu.xen.abi import XenbusStateClosed, XenbusStateInitWait
from pvboot.emu.xen.platform import XenPlatform
from pvboot.firmware.bios import Bios, BiosConfig
from pvboot.firmware.block import xen_drive
from tests.conftest import assemble16
from tests.guests import build
from pvboot.tools import runner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_binutils = pytest.mark.skipif(not build.tools_available(),
                                    reason="GNU as / ld not installed (Debian package binutils)")

# Prints the BDA's hard disk count, then for each hard disk 80h, 81h, ... the 4-byte tag
# in its sector 1 (read with AH=02h), and exits 0 (1 if a read fails).
PRINT_TAGS = """
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov dx, 0x3f8
    mov al, [0x475]
    add al, '0'
    out dx, al
    mov al, ' '
    out dx, al
    mov byte ptr [drv], 0x80
next:
    mov ax, 0x0201
    mov cx, 2
    xor dh, dh
    mov dl, [drv]
    mov bx, 0x8000
    int 0x13
    jc fail
    mov si, 0x8000
    mov cx, 4
    mov dx, 0x3f8
tag:
    lodsb
    out dx, al
    loop tag
    inc byte ptr [drv]
    mov al, [0x475]
    add al, 0x80
    cmp [drv], al
    jb next
    mov al, 0
    out 0xf4, al
fail:
    mov al, 1
    out 0xf4, al
    cli
    hlt
drv: .byte 0
"""


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """tagged(name) -> path of a 64-sector disk whose sector 1 starts with name * 4; disk
    "A" also boots PRINT_TAGS."""
    tmp = tmp_path_factory.mktemp("tagged")
    program = assemble16(PRINT_TAGS)

    def make(name):
        path = tmp / f"{name}.img"
        if not path.exists():
            data = bytearray(64 * 512)
            data[:512] = program
            data[512:516] = name.encode() * 4
            path.write_bytes(bytes(data))
        return str(path)
    return make


def boot_traced(**kw):
    trace = io.StringIO()
    result = runner.boot([], trace={"disk"}, trace_out=trace, timeout=20, **kw)
    drives = [line for line in trace.getvalue().splitlines() if line.startswith("drive 8")]
    return result, drives


def drive_names(drives):
    """'drive 81h: vbd 51712 PCHS=...' -> ['vbd 51712', ...] in drive order."""
    return [line.split(": ", 1)[1].split(" PCHS=")[0].split(":")[0] for line in drives]


# -- drive order ----------------------------------------------------------------------
@needs_binutils
def test_drives_follow_the_order_given_whatever_the_types(tagged):
    a, b, c = tagged("A"), tagged("B"), tagged("C")
    result, drives = boot_traced(disks=[f"{a},type=ioemu", f"{b},path=direct", c])
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    assert result.console == "3 AAAABBBBCCCC"
    assert drive_names(drives) == ["ata0-0", "vbd 51712", "vbd 51728"]
    assert result.messages == []


@needs_binutils
def test_emulated_disks_take_the_channel_first_pv_disks_keep_their_place(tagged):
    a, b, c, d = (tagged(n) for n in "ABCD")
    result, drives = boot_traced(disks=[a, f"{b},type=ioemu", c, f"{d},type=ioemu"])
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    assert result.console == "4 AAAABBBBCCCCDDDD"
    assert drive_names(drives) == ["vbd 51712", "ata0-0", "vbd 51728", "ata0-1"]


@needs_binutils
def test_positional_images_and_driver_work_as_before(tagged):
    a, b = tagged("A"), tagged("B")
    for driver, names in ((None, ["vbd 51712", "vbd 51728"]), ("ata", ["ata0-0", "ata0-1"]),
                          ("host", ["A.img", "B.img"])):
        trace = io.StringIO()
        result = runner.boot([a, b], driver=driver, trace={"disk"}, trace_out=trace, timeout=20)
        assert result.console == "2 AAAABBBB", driver
        drives = [line for line in trace.getvalue().splitlines() if line.startswith("drive 8")]
        assert drive_names(drives) == names


@needs_binutils
def test_a_working_pv_disk_has_no_duplicate_and_leaves_the_ide_channel_alone(tagged):
    # The twin sits on the IDE channel (as QEMU's emulated disk in an HVM guest) but
    # the firmware never probes it while the PV disk works: one drive, no IDE port I/O.
    result, drives = boot_traced(disks=[tagged("A")])
    assert result.console == "1 AAAA"
    assert drive_names(drives) == ["vbd 51712"]
    assert result.counters["ata_register_reads"] == result.counters["ata_register_writes"] == 0
    assert result.counters["ata_data_reads"] == 0


@needs_binutils
def test_access_and_writes_per_disk(tmp_path):
    image = str(build.build_image("disk_rw", tmp_path))
    before = open(image, "rb").read()
    for spec in (f"{image},type=ioemu", f"{image},path=direct"):
        result = runner.boot([], disks=[spec], timeout=20)
        assert result.console == build.EXPECTED_SERIAL["disk_rw"]
        assert open(image, "rb").read() == before             # overlay: the file unchanged
    result = runner.boot([], disks=[f"{image},ro"], timeout=20)
    assert result.stop.exit_value != 0                          # its writes are refused
    assert open(image, "rb").read() == before
    result = runner.boot([], disks=[f"{image},type=ioemu,writes=persist"], timeout=20)
    assert result.console == build.EXPECTED_SERIAL["disk_rw"]
    after = open(image, "rb").read()
    changed = {lba for lba in range(len(before) // 512)
               if before[lba * 512:(lba + 1) * 512] != after[lba * 512:(lba + 1) * 512]}
    assert changed == set(build.WRITTEN_SECTORS["disk_rw"])


# -- fallback ---------------------------------------------------------------------------
FALLBACK = ("vbd 51712: backend did not reach InitWait within 0.5 s (state 1): "
            "falling back to emulated IDE (ata0-0)")


@needs_binutils
def test_without_a_backend_a_pv_disk_falls_back_to_emulated_ide(tmp_path):
    image = str(build.build_image("disk_rw", tmp_path))
    trace = io.StringIO()
    result = runner.boot([], disks=[f"{image},type=xenbus"], no_backend=True,
                         backend_timeout=0.5, trace={"disk"}, trace_out=trace, timeout=20)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    assert result.console == build.EXPECTED_SERIAL["disk_rw"]
    assert result.messages == [FALLBACK]
    drives = [line for line in trace.getvalue().splitlines() if line.startswith("drive 8")]
    assert drive_names(drives) == ["ata0-0"]
    # The data came through the IDE data port, none through a ring.
    assert result.counters["ata_data_reads"] > 0
    assert result.counters.get("ring_requests", 0) == 0


@needs_binutils
def test_no_backend_on_the_command_line_warns_and_passes(tmp_path):
    image = str(build.build_image("disk_rw", tmp_path))
    proc = subprocess.run([sys.executable, "-m", "pvboot.tools", "boot", "--disk", image, "--no-backend",
                           "--backend-timeout", "0.5", "--quiet"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert f"pvboot: warning: {FALLBACK}" in proc.stderr.splitlines()


@contextlib.contextmanager
def pv_disk_with_twin(tmp_path):
    """The platform's own pieces, as runner.boot assembles them, for disk_rw's image:
    yields (machine, platform, image, twin), the IDE twin not yet installed."""
    image = str(build.build_image("disk_rw", tmp_path))
    machine = Machine()
    platform = XenPlatform(machine.mem)
    twin = DiskImage(image)
    try:
        yield machine, platform, image, twin
    finally:
        platform.close()
        twin.close()
        machine.close()


def run_disk_rw_on_twin(machine, platform, twin, devid):
    """Installs the IDE twin, runs the BIOS with PV disk `devid` first (0.5 s to connect)
    and checks disk_rw passed on whichever took it; returns the Bios."""
    ide_channel.install(machine, [twin])
    bios = Bios(machine, BiosConfig(xen=platform.guest_interface(), pv_timeout=0.5,
                                    drives=[xen_drive(devid, "bounce", 0)]))
    stop = machine.run(timeout=20)
    assert (stop.reason, stop.exit_value) == ("exit", 0)
    assert machine.console.decode("latin-1") == build.EXPECTED_SERIAL["disk_rw"]
    return bios


@needs_binutils
def test_a_backend_killed_before_post_falls_back_too(tmp_path):
    # blkback started, then killed before the BIOS runs; the IDE twin of the same
    # image takes over.
    with pv_disk_with_twin(tmp_path) as (machine, platform, image, twin):
        devid = platform.attach_disk(image)
        backend = platform.backends[0][1]
        backend.send_signal(signal.SIGKILL)
        backend.wait()
        bios = run_disk_rw_on_twin(machine, platform, twin, devid)
        assert any("falling back to emulated IDE (ata0-0)" in m for m in bios.messages)
        assert bios.block.pv_fronts == []


@needs_binutils
def test_a_pv_disk_without_a_twin_is_left_out(tagged):
    # Three PV disks: the IDE channel has room for two twins; the third has no fallback.
    a, b, c = tagged("A"), tagged("B"), tagged("C")
    result, drives = boot_traced(disks=[a, b, c], no_backend=True, backend_timeout=0.3)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    assert result.console == "2 AAAABBBB"
    assert drive_names(drives) == ["ata0-0", "ata0-1"]
    assert [m.split(":")[-1].strip() for m in result.messages[:2]] == [
        "falling back to emulated IDE (ata0-0)", "falling back to emulated IDE (ata0-1)"]
    assert result.messages[2].startswith("vbd 51744: backend did not reach InitWait")
    assert "falling back" not in result.messages[2]


@needs_binutils
def test_a_backend_that_stalls_after_initwait_is_abandoned_cleanly(tmp_path):
    # The backend gets to InitWait, then stops: the frontend has granted its ring and
    # bounce page and waits for Connected in vain.  It takes them back, says Closed, and
    # the twin takes over; the backend, resumed, closes too.
    with pv_disk_with_twin(tmp_path) as (machine, platform, image, twin):
        devid = platform.attach_disk(image)
        backend = platform.backends[0][1]
        try:
            xs = platform.xs
            state = f"/local/domain/0/backend/vbd/1/{devid}/state"
            xs.watch(state, "t")
            xs.wait_for(lambda: xs.read(state) == str(XenbusStateInitWait), 10, "InitWait")
            backend.send_signal(signal.SIGSTOP)
            bios = run_disk_rw_on_twin(machine, platform, twin, devid)
            assert bios.messages == [f"vbd {devid}: backend did not reach Connected within 0.5 s "
                                     "(state 2): falling back to emulated IDE (ata0-0)"]
            frontend = f"/local/domain/1/device/vbd/{devid}"
            assert xs.read(frontend + "/state") == str(XenbusStateClosed)
            for ref in (8, 9):                              # ring and bounce page: ended
                assert platform.gnttab.flags(ref) == 0
            backend.send_signal(signal.SIGCONT)
            xs.wait_for(lambda: xs.read(state) == str(XenbusStateClosed), 10, "Closed")
        finally:
            backend.send_signal(signal.SIGCONT)
