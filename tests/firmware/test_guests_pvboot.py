"""The guest test programs (tests/guests/*.S) booted under pvboot, through the Xen PV
path and through the plain driver: each prints exactly the serial transcript it prints
under QEMU+SeaBIOS, side by side in one test run, and leaves the disk as SeaBIOS does."""
import hashlib
import shutil

import pytest

from pvboot.firmware.video import screen_cells
from tests import qemu
from tests.guests import build
from pvboot.tools import runner

pytestmark = pytest.mark.skipif(not build.tools_available(), reason="GNU as/ld not installed")

# keys.S under QEMU gets these as sendkey names; pvboot gets the same keystrokes scripted.
PVBOOT_KEYS = "hiA1{f1}{up}{enter}"


def boot_under_pvboot(name, image, **kw):
    kw.setdefault("timeout", 20)
    if name == "keys":
        kw["keys"] = PVBOOT_KEYS
    if build.PROGRAMS[name]["media"] == "floppy":
        return runner.boot([], floppy=str(image), **kw)
    return runner.boot([str(image)], **kw)


def boot_under_qemu(name, image):
    floppy = build.PROGRAMS[name]["media"] == "floppy"
    keys = build.KEYS if name == "keys" else None
    return qemu.run_qemu(str(image), floppy=floppy, keys=keys,
                         keys_after=build.KEYS_READY if keys else None)


PATHS = {"pv-bounce": {"driver": "xen", "pv_path": "bounce"},
         "pv-direct": {"driver": "xen", "pv_path": "direct"},
         "host": {"driver": "host"}}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("name", sorted(build.PROGRAMS))
def test_same_transcript_as_seabios(name, path, tmp_path):
    image = build.build_image(name, tmp_path)
    result = boot_under_pvboot(name, image, **PATHS[path])
    assert result.stop.reason == "exit", f"{result.stop}\n{result.console}"
    assert result.console == build.EXPECTED_SERIAL[name]
    assert result.stop.exit_value == build.EXPECTED_EXIT
    if not qemu.qemu_available():
        pytest.skip("qemu-system-i386 not installed: compared with the recorded transcript only")
    qemu_image = tmp_path / f"{name}-qemu.img"
    shutil.copyfile(image, qemu_image)
    exit_value, serial = boot_under_qemu(name, qemu_image)
    assert (exit_value, serial) == (result.stop.exit_value, result.console)


@pytest.mark.parametrize("name", sorted(build.WRITTEN_SECTORS))
def test_persisted_writes_match_seabios(name, tmp_path):
    image = build.build_image(name, tmp_path)
    result = boot_under_pvboot(name, image, persist=True)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    assert image.read_bytes() == build.expected_image_after(name)


@pytest.mark.parametrize("name", sorted(build.WRITTEN_SECTORS))
def test_default_run_leaves_the_image_untouched(name, tmp_path):
    image = build.build_image(name, tmp_path)
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    result = boot_under_pvboot(name, image)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before


def test_video_screen_reads_back_as_seabios_leaves_it(tmp_path):
    from pvboot.emu.diskimage import DiskImage
    from pvboot.emu.machine import Machine
    from pvboot.firmware.bios import Bios, BiosConfig
    image = build.build_image("video", tmp_path)
    machine = Machine()
    disk = DiskImage(str(image), kind="hd")
    try:
        Bios(machine, BiosConfig(disks=[disk]))
        stop = machine.run(timeout=20)
        assert (stop.reason, stop.exit_value) == ("exit", 0)
        assert machine.mem.read(0xB8000, 4000) == build.expected_video_screen()
        cells = screen_cells(machine.mem)
        assert len(cells) == 25 and len(cells[0]) == 80
    finally:
        disk.close()
        machine.close()


def test_demo_disk_passes(tmp_path):
    from pvboot.tools import demo
    path = demo.write_demo_disk(str(tmp_path / "demo.img"))
    result = runner.boot([path], timeout=20)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    assert "PASS" in result.console and "pvboot demo" in result.screen
