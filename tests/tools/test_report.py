"""Reports on a timeout, a used-up instruction budget and a crash: registers, CS:IP,
disassembly, the last interrupts (Machine.interrupt_history, always on) and the last
disk operations; on stderr, in --json and in tools/report.failure_text.

`python -m tests.test_report` measures what the interrupt history costs a guest that
does nothing but interrupts (see the README)."""
import json

import pytest

from pvboot.emu.faults import interrupt_history_lines
from pvboot.emu.machine import INTERRUPT_HISTORY_LENGTH, Machine
from tests.conftest import assemble16
from tests.cli import image, pvboot
from pvboot.tools import report, runner

# Reads LBA 1 with CHS, prints Z with INT 10h, then loops forever.
READ_PRINT_SPIN = """
    mov ax, 0x0201
    mov cx, 0x0002
    mov dx, 0x0080
    mov bx, 0x8000
    int 0x13
    mov ah, 0x0e
    mov al, 'Z'
    int 0x10
spin:
    jmp spin
"""


def boot(tmp_path, source, **kw):
    path = tmp_path / "disk.img"
    path.write_bytes(assemble16(source) + bytes(512 * 15))
    kw.setdefault("timeout", 10)
    return runner.boot([str(path)], **kw)


@pytest.mark.parametrize("driver", ["xen", "host"])
def test_timeout_report(tmp_path, driver):
    # 2 s: time enough for POST (and the PV handshake) on a loaded machine.
    result = boot(tmp_path, READ_PRINT_SPIN, timeout=2, driver=driver)
    assert result.stop.reason == "timeout"
    text = result.stop.report
    assert "CS:IP 0000:7c14" in text
    assert "=> 00007c14: ebfe             jmp 0x7c14" in text
    assert "eax=00000e5a" in text
    lines = text.splitlines()
    start = lines.index("last 3 interrupts (oldest first):")
    ints = lines[start + 1:start + 4]
    assert [line.split()[1:3] for line in ints] == [["int", "19"], ["int", "13"], ["int", "10"]]
    assert "ax=0201 bx=8000 cx=0002 dx=0080" in ints[1] and "from 0000:7c0e" in ints[1]
    assert "ax=0e5a" in ints[2]
    assert "last 2 disk operations (oldest first):" in text
    assert "disk read drive 80h lba 1 count 1/1 buf 0x8000 status 00" in text


def test_instruction_budget_has_a_report(tmp_path):
    result = boot(tmp_path, READ_PRINT_SPIN, max_insns=20000, driver="host")
    assert result.stop.reason == "insn-limit"
    assert "CS:IP" in result.stop.report and "int       13" in result.stop.report


def test_crash_report_has_the_faulting_exception_last(tmp_path):
    result = boot(tmp_path, "mov ax, 0x1234\nint 0x11\nxor cx, cx\ndiv cx", driver="host")
    assert result.stop.reason == "cpu-exception"
    lines = result.stop.report.splitlines()
    history = [line for line in lines if line.startswith("  #")]
    assert history[-2].split()[1:3] == ["int", "11"]
    assert history[-1].split()[1:3] == ["exception", "00"]
    assert "=> " in result.stop.report and "div" in result.stop.report


def test_history_keeps_the_last_interrupts_only(tmp_path):
    result = boot(tmp_path, "mov cx, 100\nagain:\nint 0x11\nloop again\nud2", driver="host")
    assert result.stop.reason == "invalid-opcode"
    history = [l for l in result.stop.report.splitlines() if l.startswith("  #")]
    assert len(history) == INTERRUPT_HISTORY_LENGTH
    # int 19h is #0; the 100 int 11h are #1..#100.
    assert history[-1].split()[0] == "#100" and history[0].split()[0] == f"#{101 - len(history)}"


def test_clean_stops_have_no_report(tmp_path):
    assert boot(tmp_path, "cli\nhlt", driver="host").stop.report == ""


def test_cli_prints_the_timeout_report_and_json_has_it(tmp_path):
    disk = image(tmp_path, READ_PRINT_SPIN)
    proc = pvboot("boot", disk, "--timeout", "2", "--quiet")
    assert proc.returncode == 1
    assert "pvboot: timeout" in proc.stderr
    assert "last 3 interrupts" in proc.stderr and "disk read drive 80h lba 1" in proc.stderr
    proc = pvboot("boot", disk, "--timeout", "2", "--json")
    data = json.loads(proc.stdout)
    assert data["reason"] == "timeout" and "jmp 0x7c14" in data["report"]


def test_failure_text_tells_the_whole_story(tmp_path):
    result = boot(tmp_path, READ_PRINT_SPIN, timeout=1, driver="host")
    text = report.failure_text(result, ["console has no match for 'PASS'"])
    first, second = text.splitlines()[:2]
    assert first.startswith("pvboot: timeout: no result within 1 s [exit code 1]")
    assert second == "  - console has no match for 'PASS'"
    assert "report:" in text and "  CS:IP 0000:7c14" in text
    assert "screen:\n  |Z" in text
    assert "console: (nothing)" in text


def test_console_tail_is_bounded():
    rows, cut = report.console_tail("".join(f"line {i}\r\n" for i in range(100)), 10)
    assert rows == [f"line {i}" for i in range(90, 100)] and cut == 90


def test_interrupt_history_records_registers_and_stays_bounded():
    """The history is always on: each entry keeps the vector and the registers that
    matter, and the buffer never grows past its length (its cost is measured by the
    benchmark's interrupt round trips, not here)."""
    machine = Machine(memory_mib=1)
    try:
        machine.cpu.set("ax", 0x4242)
        machine.cpu.set("cs", 0x07C0)
        machine._record_interrupt(0x13, "int", machine.cpu.read_state())
        assert machine.interrupt_history[-1][1:3] == (0x13, "int")
        line, = interrupt_history_lines([machine.interrupt_history[-1]])
        assert " 13 ax=4242 " in line and "from 07c0:" in line
        for _ in range(INTERRUPT_HISTORY_LENGTH + 5):
            machine._record_interrupt(0x10, "int", machine.cpu.read_state())
        assert len(machine.interrupt_history) == INTERRUPT_HISTORY_LENGTH
    finally:
        machine.close()
