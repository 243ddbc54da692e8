"""`pvboot image`: qemu-img's daily steps through pvboot's command line; a test pins a
disk state with a snapshot and returns to it; bad input is one line and exit 2."""
import json
import os
import subprocess
import sys

import pytest

from tests.emu.storage_images import need_qemu_tools, patterned, qemu_img, raw_contents

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def qemu_tools():
    need_qemu_tools()


def image(*args):
    return subprocess.run([sys.executable, "-m", "pvboot.tools", "image", *map(str, args)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def ok(*args):
    r = image(*args)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return r.stdout


def test_create_overlay_convert_and_info(tmp_path):
    base = patterned(tmp_path / "base.img")
    ok("create", tmp_path / "top.qcow2", "--backing", base)
    chain = json.loads(ok("info", "--json", tmp_path / "top.qcow2"))
    assert [layer["format"] for layer in chain] == ["qcow2", "raw"]
    assert chain[0]["backing-filename"] == str(base)
    ok("convert", tmp_path / "top.qcow2", tmp_path / "copy.vdi", "--format", "vdi")
    assert raw_contents(tmp_path / "copy.vdi", tmp_path) == base.read_bytes()
    ok("create", tmp_path / "blank.vhdx", "1M", "--format", "vhdx")
    assert json.loads(qemu_img("info", "--output=json", tmp_path / "blank.vhdx"))[
        "virtual-size"] == 1 << 20


def test_snapshot_pins_a_state_and_returns_to_it(tmp_path):
    base = patterned(tmp_path / "base.img")
    disk = tmp_path / "disk.qcow2"
    ok("convert", base, disk)
    ok("snapshot", "create", disk, "clean")
    subprocess.run(["qemu-io", "-c", "write -P 0x55 0 512", str(disk)], check=True,
                   capture_output=True, timeout=60)               # the state changes
    assert raw_contents(disk, tmp_path)[:512] == b"\x55" * 512
    assert "clean" in ok("snapshot", "list", disk)
    ok("snapshot", "apply", disk, "clean")
    assert raw_contents(disk, tmp_path) == base.read_bytes()
    ok("snapshot", "delete", disk, "clean")
    assert "clean" not in ok("snapshot", "list", disk)


@pytest.mark.parametrize("args,fragment", [
    (["create", "{tmp}/x.qcow2", "NaN"], "not a size"),
    (["create", "{tmp}/x.qcow2", "-5M"], None),
    (["create", "{tmp}/x.qcow2", "99999999T"], "at most"),
    (["create", "{tmp}/x.qcow2"], "SIZE or --backing"),
    (["create", "{tmp}/x.qcow2", "--backing", "{tmp}/none.img"], "No such file"),
    (["convert", "{tmp}/base.img", "{tmp}/y", "--format", "qed"], "unknown image format"),
    (["snapshot", "create", "{tmp}/base.img", "s"], "need a qcow2"),
    (["snapshot", "apply", "{tmp}/disk.qcow2", "nope"], "nope"),
    (["snapshot", "create", "{tmp}/disk.qcow2"], "needs a NAME"),
    (["info", "{tmp}/none.qcow2"], "No such file"),
])
def test_bad_input_is_one_line_exit_2(args, fragment, tmp_path):
    base = patterned(tmp_path / "base.img")
    qemu_img("convert", "-O", "qcow2", base, tmp_path / "disk.qcow2")
    r = image(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2 and r.stdout == "", r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in r.stderr
    assert fragment is None or fragment in lines[0], lines[0]
    assert not (tmp_path / "x.qcow2").exists()
