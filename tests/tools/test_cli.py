"""The command line: one clear line and exit 2 for bad input, the documented exit code
for each stop reason, --json and --screen output."""
import json
import os
import subprocess
import sys

import pytest

from tests.cli import REPO, PRINT_PASS, assert_one_line_error, image, pvboot  # noqa: F401

def test_missing_file(tmp_path):
    assert_one_line_error(pvboot("boot", str(tmp_path / "nope.img")), "no such file")


def test_directory(tmp_path):
    assert_one_line_error(pvboot("boot", str(tmp_path)), "directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable(tmp_path):
    path = tmp_path / "locked.img"
    path.write_bytes(bytes(510) + b"\x55\xAA")
    path.chmod(0)
    assert_one_line_error(pvboot("boot", str(path)), "not readable")


def test_shorter_than_a_sector(tmp_path):
    path = tmp_path / "short.img"
    path.write_bytes(b"\xEB\xFE" * 100)
    assert_one_line_error(pvboot("boot", str(path)), "shorter than one 512-byte sector")


def test_no_boot_signature(tmp_path):
    path = tmp_path / "blank.img"
    path.write_bytes(bytes(4096))
    assert_one_line_error(pvboot("boot", str(path)), "no boot signature")


def test_bad_option_value(tmp_path):
    proc = pvboot("boot", "--timeout", "-1", "x.img")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_bad_regex(tmp_path):
    assert_one_line_error(pvboot("boot", image(tmp_path, "hlt"), "--expect", "("), "--expect")


def test_bad_key_name(tmp_path):
    assert_one_line_error(pvboot("boot", image(tmp_path, "hlt"), "--keys", "{nosuchkey}"), "nosuchkey")


@pytest.mark.parametrize("source,code,reason", [
    ("mov al, 0\nout 0xf4, al", 0, "exit"),
    ("mov al, 3\nout 0xf4, al", 1, "exit"),
    ("cli\nhlt", 0, "halted"),
    ("spin: jmp spin", 1, "timeout"),
    ("ud2", 3, "invalid-opcode"),
    ("xor cx, cx\ndiv cx", 3, "cpu-exception"),
    ("int 0x18", 1, "no-boot"),
])
def test_exit_code_per_stop_reason(tmp_path, source, code, reason):
    proc = pvboot("boot", image(tmp_path, source), "--timeout", "1", "--json")
    assert proc.returncode == code, proc.stderr
    result = json.loads(proc.stdout)
    assert result["reason"] == reason
    assert result["exit_code"] == code




def test_expect_met_stops_with_success(tmp_path):
    proc = pvboot("boot", image(tmp_path, PRINT_PASS.replace("cli\n    hlt", "spin: jmp spin")),
                  "--expect", "PA+SS", "--json", "--timeout", "5")
    result = json.loads(proc.stdout)
    assert (proc.returncode, result["reason"], result["expect_met"]) == (0, "expected", True)
    assert "hello PASS" in result["console"]


def test_expect_unmet_is_a_failure(tmp_path):
    proc = pvboot("boot", image(tmp_path, PRINT_PASS), "--expect", "NEVER", "--json")
    result = json.loads(proc.stdout)
    assert (proc.returncode, result["reason"], result["expect_met"]) == (1, "halted", False)


def test_console_echo_and_serial_file(tmp_path):
    serial = tmp_path / "serial.txt"
    proc = pvboot("boot", image(tmp_path, PRINT_PASS), "--serial", str(serial))
    assert proc.returncode == 0
    assert "hello PASS" in proc.stdout
    assert serial.read_text() == "hello PASS\n"
    assert "halted" in proc.stderr


def test_trace_int_prints_one_line_per_interrupt(tmp_path):
    source = "mov ah, 0x0e\nmov al, 'x'\nint 0x10\nint 0x11\ncli\nhlt"
    proc = pvboot("boot", image(tmp_path, source), "--trace", "int", "--quiet")
    lines = [l for l in proc.stderr.splitlines() if " int " in l]
    vectors = [l.split(" int ")[1].split()[0] for l in lines]
    assert vectors[-2:] == ["10", "11"], proc.stderr
    assert "ax=0e78" in lines[-2]


def test_screen_shows_teletype_output(tmp_path):
    source = "mov ah, 0x0e\nmov al, 'Q'\nint 0x10\nmov al, 'Z'\nint 0x10\ncli\nhlt"
    proc = pvboot("boot", image(tmp_path, source), "--screen", "--quiet")
    assert proc.returncode == 0
    assert "QZ" in proc.stdout


def test_a_bug_in_pvboot_is_one_line_and_exit_code_4(monkeypatch, capsys):
    from pvboot.tools import cli

    def broken(argv=None):
        raise KeyError("no such drive")
    monkeypatch.setattr(cli, "main", broken)
    assert cli.run(["boot", "x.img"]) == 4
    err = capsys.readouterr().err
    assert err == "pvboot: internal error: KeyError: 'no such drive'\n"


def test_subcommands_build_only_their_own_options():
    """A boot does not import compare's or mkimage's modules to parse its options, and
    the full parser (help) still has every subcommand's options."""
    from pvboot.tools import cli
    boot_only = cli.build_parser("boot")
    with pytest.raises(SystemExit):
        boot_only.parse_args(["compare", "--paths", "ata"])      # compare's options left out
    full = cli.build_parser()
    assert full.parse_args(["compare", "--paths", "ata", "x.img"]).paths == "ata"
    assert cli.build_parser("boot").parse_args(["boot", "x.img"]).images == ["x.img"]
    with pytest.raises(SystemExit):
        boot_only.parse_args(["demo", "--memory", "8"])            # demo's options left out
    assert cli.build_parser("demo").parse_args(["demo", "--memory", "8"]).memory == 8
    with pytest.raises(SystemExit):
        cli.build_parser("demo").parse_args(["boot", "x.img"])    # and boot's from a demo


PLAIN_BOOT_MODULES = """
import sys
from pvboot.tools import cli
code = cli.main(["boot", "-q"])
print(code, " ".join(sorted(sys.modules)))
"""
# What only some runs need, loaded by those runs alone (tests/test_architecture.py
# LAZY_LOADERS): the GDB stub, the kernel check, the daemon's own command line, the
# backend's option parser, the other subcommands.
NOT_IN_A_PLAIN_BOOT = ("pvboot.emu.gdbstub", "pvboot.emu.gdb_remote", "pvboot.tools.kernel",
                       "pvboot.emu.xen.xenstored.cli", "pvboot.tools.compare",
                       "pvboot.tools.mkimage", "pvboot.tools.batch", "pvboot.tools.screenshot")


def test_a_plain_boot_loads_no_optional_module():
    proc = subprocess.run([sys.executable, "-c", PLAIN_BOOT_MODULES], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    code, modules = proc.stdout.split(" ", 1)
    assert code == "0", proc.stderr
    loaded = set(modules.split())
    assert "pvboot.firmware.bios" in loaded      # the listing is the run's
    assert loaded.isdisjoint(NOT_IN_A_PLAIN_BOOT), loaded & set(NOT_IN_A_PLAIN_BOOT)


def _session_members(sid):
    """The live processes of session `sid` (pvboot started as its leader)."""
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":     # field 6 of stat: session
            members.append(int(pid))
    return members


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_a_boot_leaves_no_process_behind(tmp_path, fmt):
    """Everything a PV boot starts (blkback, and for qcow2 the storage daemons) has
    exited and been reaped by the time the pvboot process has: nothing of its session
    is left in /proc."""
    disk = tmp_path / "demo.img"
    subprocess.run([sys.executable, "-c", "import sys; from pvboot.tools.demo import "
                    "write_demo_disk; write_demo_disk(sys.argv[1])", str(disk)], check=True,
                   cwd=REPO, timeout=60)
    if fmt == "qcow2":
        qcow2 = tmp_path / "demo.qcow2"
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(disk), str(qcow2)],
                       check=True, timeout=60)
        disk = qcow2
    proc = subprocess.Popen([sys.executable, "-m", "pvboot.tools", "boot", "-q", str(disk)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert _session_members(proc.pid) == []
