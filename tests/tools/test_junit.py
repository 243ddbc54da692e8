"""--junit FILE: one <testsuite>, one <testcase> per boot named after the image, with a
<failure> (stop reason, detail, report) when the exit code is not 0 and the console in
<system-out>; the file parses whatever bytes the guest sent."""
import xml.etree.ElementTree as ET

import pytest

from pvboot.emu.machine import Stop
from tests.cli import PRINT_PASS, image, pvboot
from pvboot.tools import junit, runner


def read_junit(path):
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    return suites[0]


def test_passing_boot(tmp_path):
    disk = image(tmp_path, PRINT_PASS)
    out = tmp_path / "result.xml"
    proc = pvboot("boot", disk, "--junit", str(out), "--expect", "PASS")
    assert proc.returncode == 0, proc.stderr
    suite = read_junit(out)
    assert suite.get("tests") == "1" and suite.get("failures") == "0" and suite.get("errors") == "0"
    (case,) = suite.findall("testcase")
    assert case.get("name") == disk
    assert float(case.get("time")) > 0
    assert case.find("failure") is None and case.find("error") is None
    assert "hello PASS" in case.find("system-out").text
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["reason"] == "expected" and props["exit_code"] == "0"


def test_timeout_is_a_failure_with_the_report(tmp_path):
    disk = image(tmp_path, "mov ah, 0x0e\nmov al, 'Z'\nint 0x10\nspin: jmp spin")
    out = tmp_path / "result.xml"
    proc = pvboot("boot", disk, "--junit", str(out), "--timeout", "2", "--quiet")
    assert proc.returncode == 1
    suite = read_junit(out)
    assert suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure.get("type") == "timeout"
    assert "timeout" in failure.get("message") and "no result within 2 s" in failure.get("message")
    text = failure.text
    for part in ("CS:IP", "=> ", "jmp", "interrupts (oldest first)", "int       10 ax=0e5a",
                 "disk read drive 80h lba 0", "screen:", "|Z"):
        assert part in text, part


def test_crash_is_a_failure_of_its_reason(tmp_path):
    out = tmp_path / "result.xml"
    proc = pvboot("boot", image(tmp_path, "ud2"), "--junit", str(out), "--json")
    assert proc.returncode == 3
    failure = read_junit(out).find("testcase/failure")
    assert failure.get("type") == "invalid-opcode"
    assert "ud2" in failure.text


def test_input_error_still_writes_a_result(tmp_path):
    out = tmp_path / "result.xml"
    missing = str(tmp_path / "nope.img")
    proc = pvboot("boot", missing, "--junit", str(out))
    assert proc.returncode == 2
    suite = read_junit(out)
    assert suite.get("errors") == "1"
    error = suite.find("testcase/error")
    assert "no such file" in error.get("message")
    assert suite.find("testcase").get("name") == missing


def test_control_characters_from_the_guest_keep_the_file_valid(tmp_path):
    # GRUB's serial terminal sends ANSI escapes; XML 1.0 cannot carry ESC or NUL.
    result = runner.Result(Stop("exit", "guest wrote 0x1 to port 0xf4", 1), "\x1b[2J\x00ok\x07\n",
                           "", {}, 0.5)
    out = tmp_path / "result.xml"
    junit.write_results(out, [("disk.img", result)])
    suite = read_junit(out)
    case = suite.find("testcase")
    assert case.find("system-out").text == "\u241b[2J\u2400ok\u2407\n"
    assert case.find("failure").get("type") == "exit"


def test_several_boots_in_one_suite(tmp_path):
    ok = runner.Result(Stop("exit", "", 0), "", "", {}, 0.25)
    bad = runner.Result(Stop("timeout", "no result within 1 s", report="CS:IP 0000:7c00"), "", "",
                        {}, 1.0)
    out = tmp_path / "result.xml"
    junit.write(out, [junit.testcase("a.img", ok), junit.testcase("b.img", bad),
                      junit.error_case("c.img", "c.img: no such file")])
    suite = read_junit(out)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    assert float(suite.get("time")) == pytest.approx(1.25)
    assert [c.get("name") for c in suite.findall("testcase")] == ["a.img", "b.img", "c.img"]
    assert "CS:IP 0000:7c00" in suite.find("testcase[@name='b.img']/failure").text
