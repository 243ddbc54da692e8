"""The GDB stub (emu/gdbstub.py) driven by Debian's gdb in batch mode against a
`pvboot boot --gdb` process: breakpoints, memory, registers, stepping, watchpoints,
Ctrl-C, detach, kill, attaching to a running guest, real and protected mode."""
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import capstone
import pytest

from pvboot.emu.gdb_remote import GdbAddressError, parse_address
from pvboot.tools import demo
from tests.guests import build
from tests.tools.small_guests import SPINNER, build_guest, loop_address

pytestmark = [
    pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb not installed"),
    pytest.mark.skipif(not build.tools_available(), reason="GNU as/ld not installed"),
]

WAIT = 60            # bound of every wait on gdb or pvboot

# Spins in 32-bit protected mode (flat segments, through roms/pm_call.inc).
PMODE_SPINNER = """
        .include "lib.inc"
main:
        PUTLN "TO PMODE"
        movl $spin32, %ebx
        call pm_call
        EXIT 0
        .code32
spin32:
1:      incl %eax
        jmp 1b
        .code16
        .include "pm_call.inc"
"""


class Session:
    """A pvboot process with a GDB stub on a free port, and gdb batch runs against it."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pvboot.tools", "boot", "-q", "--gdb", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.port = self._listening_port()

    def _listening_port(self):
        deadline = time.monotonic() + WAIT
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.5)
            if ready:
                line = self.proc.stderr.readline()
                match = re.search(rb"listening on 127\.0\.0\.1:(\d+)", line)
                if match:
                    return int(match.group(1))
                if not line:
                    break
        raise AssertionError(f"pvboot never listened: {line!r}")

    def gdb(self, *commands, interrupt_after=None):
        script = ["set pagination off", "set confirm off",
                  f"target remote 127.0.0.1:{self.port}", *commands]
        argv = ["gdb", "-nx", "-batch"] + [a for c in script for a in ("-ex", c)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            if interrupt_after is not None:
                time.sleep(interrupt_after)     # let the guest run, then Ctrl-C gdb
                os.kill(proc.pid, signal.SIGINT)
            out, _ = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return out

    def finish(self):
        try:
            out, err = self.proc.communicate(timeout=WAIT)
        finally:
            self.close()
        return self.proc.returncode, out.decode("latin-1"), err.decode("latin-1")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def demo_path(tmp_path):
    return demo.write_demo_disk(str(tmp_path / "demo.img"))


def _register(out, name):
    match = re.search(rf"^{name}\s+0x([0-9a-f]+)", out, re.M)
    assert match, f"no {name} in {out}"
    return int(match.group(1), 16)


def test_break_at_the_boot_sector_read_it_step_and_run_to_the_end(demo_path):
    session = Session(demo_path)
    try:
        out = session.gdb("set architecture i8086", "break *0x7c00", "continue",
                          "x/16xb 0x7c00", "info registers", "x/i $pc", "stepi",
                          "info registers eip", "continue")
    finally:
        code, _, err = session.finish()
    assert "Breakpoint 1, 0x00007c00" in out
    sector = open(demo_path, "rb").read(16)
    dumped = re.findall(r"^0x7c0[08]:\s+(.*)$", out, re.M)
    assert bytes(int(b, 16) for line in dumped for b in line.split()) == sector
    assert _register(out, "cs") == 0 and _register(out, "ss") == 0
    # x/i $pc shows the sector's first instruction; stepi moves past exactly it.
    first = next(capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16).disasm(sector, 0x7C00))
    assert re.search(rf"=> 0x7c00:\s+{first.mnemonic}", out)
    eips = re.findall(r"^eip\s+0x([0-9a-f]+)", out, re.M)
    assert [int(e, 16) for e in eips] == [0x7C00, 0x7C00 + first.size]
    assert "exited normally" in out
    assert code == 0, err


def test_the_exit_code_reaches_gdb(demo_path):
    session = Session(demo_path, "--fail", "EDD READ")
    try:
        out = session.gdb("continue")
    finally:
        code, _, err = session.finish()
    assert "exited with code 01" in out
    assert code == 1 and "fail-pattern" in err


def test_a_write_watchpoint_stops_after_the_store(demo_path):
    # The demo sets SP to 7C00h; its first push writes the word below.
    session = Session(demo_path)
    try:
        out = session.gdb("set architecture i8086", "watch *(short *)0x7bfe", "continue",
                          "info registers esp", "detach")
    finally:
        code, _, _ = session.finish()
    assert "Hardware watchpoint 1" in out and "New value" in out
    assert _register(out, "esp") == 0x7BFE        # the push is done when gdb looks
    assert code == 0                              # detached: the run went on to its end


def test_ctrl_c_stops_a_spinning_guest_and_kill_ends_the_run(tmp_path):
    image, program = build_guest(tmp_path, "spinner", SPINNER)
    loop = loop_address(program)
    session = Session(image)
    try:
        out = session.gdb("continue", "info registers eip", "kill", interrupt_after=3)
    finally:
        code, _, err = session.finish()
    assert "SIGINT" in out
    assert _register(out, "eip") in (loop, loop + 1)
    assert code == 1 and "killed" in err


def test_attach_to_a_running_guest_and_see_protected_mode(tmp_path):
    image, program = build_guest(tmp_path, "pmspin", PMODE_SPINNER)
    loop = loop_address(program)
    session = Session(image, "--gdb-wait=no", "--timeout", "30")
    try:
        time.sleep(1)                             # the guest spins in protected mode by now
        out = session.gdb("info registers cs eip", f"break *{loop:#x}", "continue",
                          "x/2i $pc", "kill")
    finally:
        code, _, _ = session.finish()
    assert _register(out, "cs") == 0x08
    assert re.search(rf"=> {loop:#x}:\s+inc\s+%eax", out)
    assert re.search(rf"{loop + 1:#x}:\s+jmp\s+{loop:#x}", out)
    assert code == 1


def test_detach_at_once_lets_the_run_finish(demo_path):
    session = Session(demo_path)
    try:
        out = session.gdb("p $st0", "detach")
    finally:
        code, _, _ = session.finish()
    assert "$1 = <unavailable>" in out             # no FPU state: shown, not an error
    assert "Detaching" in out or "detached" in out
    assert code == 0


@pytest.mark.parametrize("text, expected", [("1234", ("127.0.0.1", 1234)),
                                            ("0.0.0.0:99", ("0.0.0.0", 99)),
                                            ("[::1]:5", ("::1", 5))])
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["x", "70000", "-1", "host:", "nan"])
def test_bad_addresses(text):
    with pytest.raises(GdbAddressError):
        parse_address(text)


def test_cli_bad_gdb_address_is_a_usage_error(demo_path):
    proc = subprocess.run([sys.executable, "-m", "pvboot.tools", "boot", demo_path, "--gdb",
                           "nope"], capture_output=True, text=True, timeout=WAIT)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--gdb" in proc.stderr


def test_guest_time_stands_still_while_gdb_holds_the_machine(demo_path):
    session = Session(demo_path, "--json")
    try:
        session.gdb("break *0x7c00", "continue", "shell sleep 3", "continue")
    finally:
        code, out, _ = session.finish()
    data = json.loads(out)
    assert code == 0 and data["counters"]["gdb_breakpoint_hits"] == 1
    # Three seconds held at the breakpoint (and the wait for gdb to attach) are not
    # guest time: the whole boot stays far below them on the virtual clock.
    boot_sector = next(s for s in data["stages"] if s["stage"] == "boot-sector")
    assert data["stages"][-1]["virtual_seconds"] - boot_sector["virtual_seconds"] < 1.0


def test_a_second_debugger_attaches_after_a_detach(tmp_path):
    image, program = build_guest(tmp_path, "spinner", SPINNER)
    session = Session(image)
    try:
        first = session.gdb("detach")            # the guest runs on, spinning
        second = session.gdb("info registers eip", "kill")
    finally:
        code, _, err = session.finish()
    assert "Detaching" in first or "detached" in first
    assert _register(second, "eip") in (loop_address(program), loop_address(program) + 1)
    assert code == 1 and "killed" in err
