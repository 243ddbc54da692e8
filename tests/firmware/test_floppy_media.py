"""Floppy media change from outside a run: `pvboot cd insert --drive floppy` (and
Debian's xenstore-write) swaps the diskette of drive 00h while the guest polls it;
the next read returns the new diskette's bytes and AH=15h/16h answer as SeaBIOS does
(AH=01h: no change line; AH=06h: changed)."""
import os
import shutil
import subprocess
import threading

import pytest

from pvboot.emu.xen.floppymedia import floppy_params_path
from pvboot.tools import cli, runner
from tests import qemu
from tests.guests import build

pytestmark = pytest.mark.skipif(not build.tools_available(), reason="GNU as/ld not installed")

FLOPPY_1440K = 1474560
MARK_OFFSET = 36 * 512          # C1 H0 S1 with 18 sectors a track


def _diskettes(tmp_path):
    program = build.assemble(build.GUEST_DIR / "floppy_swap.S", {"DISK_SECTORS": 2880})
    first = bytearray(FLOPPY_1440K)
    first[:len(program)] = program
    second = bytearray(first)
    second[MARK_OFFSET] = 0x42
    paths = tmp_path / "first.img", tmp_path / "second.img"
    for path, data in zip(paths, (first, second)):
        path.write_bytes(bytes(data))
    return paths


def _swap_run(tmp_path, swap):
    first, second = _diskettes(tmp_path)
    socket = tmp_path / "xenstored"
    console = bytearray()
    waiting = threading.Event()
    outcome = {}

    class Echo:
        def write(self, data):
            console.extend(data)
            if b"WAITING FOR SWAP\r\n" in console:
                waiting.set()

        def flush(self):
            pass

    def run():
        outcome["result"] = runner.boot([], floppy=str(first), timeout=60, echo=Echo(),
                                        realtime=True, xenstore_socket=str(socket))
    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert waiting.wait(30), console
        swap(socket, second)
    finally:
        thread.join(70)
    assert not thread.is_alive()
    return outcome["result"], first


def _check(result):
    lines = result.console.splitlines()
    assert "READ NEW AH=00 CF=0" in lines, lines
    assert "AH15 AH=01 CF=0" in lines           # SeaBIOS: no change-line support
    assert "AH16 AH=06 CF=1" in lines           # SeaBIOS: always "changed"
    assert result.stop.exit_value == 0


@pytest.mark.skipif(not qemu.qemu_available(), reason="QEMU not installed")
def test_floppy_swap_transcript_matches_qemu(tmp_path):
    """The same swap under QEMU+SeaBIOS (the monitor's `change floppy0`, made when the
    guest says it waits): the serial transcripts agree line by line."""
    def swap(socket, second):
        assert cli.run(["cd", "insert", str(socket), str(second), "--drive", "floppy"]) == 0
    result, first = _swap_run(tmp_path, swap)
    second = tmp_path / "second.img"
    reference = qemu.run(floppy=str(first), keys_after="WAITING FOR SWAP", snapshot=True,
                         monitor=[f"change floppy0 {second} raw read-only"], timeout=30)
    assert reference.exit_value == result.stop.exit_value == 0
    assert result.console.splitlines() == reference.serial_text.splitlines()


def test_floppy_swap_with_pvboot_cd_insert(tmp_path, capsys):
    def swap(socket, second):
        assert cli.run(["cd", "insert", str(socket), str(tmp_path / "nope.img"),
                        "--drive", "floppy"]) == 2
        assert "no such file" in capsys.readouterr().err
        assert cli.run(["cd", "insert", str(tmp_path), str(second), "--drive", "floppy"]) == 0
    result, first = _swap_run(tmp_path, swap)
    _check(result)
    assert first.read_bytes()[MARK_OFFSET] == 0          # the user's images are untouched


@pytest.mark.skipif(not shutil.which("xenstore-write"), reason="xenstore-utils missing")
def test_floppy_swap_with_xenstore_write(tmp_path):
    def swap(socket, second):
        env = dict(os.environ, XENSTORED_PATH=str(socket))
        done = subprocess.run(["xenstore-write", floppy_params_path(1, 0), str(second)],
                              env=env, capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
    result, _first = _swap_run(tmp_path, swap)
    _check(result)


def test_floppy_change_without_floppy_is_usage_error(tmp_path, capsys):
    disk = build.build_disk("disk_rw", tmp_path)
    socket = tmp_path / "xenstored"
    done = {}

    class Echo:
        def write(self, data):
            if "rc" not in done and socket.exists():
                done["rc"] = cli.run(["cd", "eject", str(socket), "--drive", "floppy"])

        def flush(self):
            pass
    runner.boot([str(disk)], timeout=30, echo=Echo(), xenstore_socket=str(socket))
    assert done["rc"] == 2
    assert "no floppy drive" in capsys.readouterr().err


@pytest.mark.skipif(not qemu.qemu_available(), reason="QEMU not installed")
def test_floppy_eject_transcript_matches_qemu(tmp_path):
    """An eject from outside: the next read fails as QEMU's controller makes SeaBIOS
    fail it (the monitor's `eject floppy0`)."""
    def eject(socket, _second):
        assert cli.run(["cd", "eject", str(socket), "--drive", "floppy"]) == 0
    result, first = _swap_run(tmp_path, eject)
    reference = qemu.run(floppy=str(first), keys_after="WAITING FOR SWAP", snapshot=True,
                         monitor=["eject floppy0"], timeout=30)
    assert reference.exit_value == result.stop.exit_value == 1
    assert reference.serial_text.splitlines()[-1].startswith("READ ERROR")
    assert result.console.splitlines() == reference.serial_text.splitlines()


def test_swap_to_a_non_floppy_empties_the_drive_with_a_warning(tmp_path):
    """A file over 2.88M is no diskette: the drive is left empty (reads fail with 20h,
    as an ejected drive's do) and the run says why."""
    def swap(socket, _second):
        big = tmp_path / "big.img"
        big.write_bytes(bytes(3 * 1024 * 1024))
        assert cli.run(["cd", "insert", str(socket), str(big), "--drive", "floppy"]) == 0
    result, _first = _swap_run(tmp_path, swap)
    assert result.console.splitlines()[-1] == "READ ERROR AH=20 CF=1"
    assert any("larger than the largest floppy" in message for message in result.messages), \
        result.messages
