"""--fail, ordered --expect markers and the JSON's markers and stages (tools/markers.py),
on the demo disk and on small guests built here."""
import json
import subprocess
import sys

import pytest

from pvboot.tools import demo, runner
from tests.guests import build
from tests.tools.small_guests import SPINNER, build_guest

pytestmark = pytest.mark.skipif(not build.tools_available(), reason="GNU as/ld not installed")

# Prints on the screen only (INT 10h teletype), never on COM1, then exits 0.
SCREEN_ONLY = """
        .include "lib.inc"
main:
        movw $msg, %si
1:      lodsb
        testb %al, %al
        jz 2f
        movb $0x0E, %ah
        int $0x10
        jmp 1b
2:      EXIT 0
msg:    .asciz "Boot failed: screen only"
"""


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory):
    return demo.write_demo_disk(str(tmp_path_factory.mktemp("demo") / "demo.img"))


def test_fail_ends_the_run_at_the_failure_message(tmp_path):
    image = build_guest(tmp_path, "spinner", SPINNER)[0]
    result = runner.boot([image], timeout=20, fail=["Kernel panic", "error:"])
    assert result.stop.reason == "fail-pattern"
    assert result.exit_code == runner.EXIT_TEST_FAILURE
    assert "'error:'" in result.stop.detail
    (hit,) = result.markers
    assert hit["kind"] == "fail" and hit["text"] == "error:" and hit["source"] == "console"
    assert 0 < hit["virtual_seconds"] <= result.stages[-1]["virtual_seconds"]


def test_without_fail_the_spinner_runs_to_its_timeout(tmp_path):
    image = build_guest(tmp_path, "spinner", SPINNER)[0]
    result = runner.boot([image], timeout=0.5)
    assert result.stop.reason == "timeout"


def test_fail_stops_the_demo_before_it_writes(demo_path):
    result = runner.boot([demo_path], timeout=20, fail="EDD READ")
    assert result.stop.reason == "fail-pattern" and result.exit_code == 1
    assert "CHS READ OK" in result.console
    assert "WRITE OK" not in result.console      # the run ended at the match
    assert result.counters["sectors_written"] == 0


def test_ordered_markers_in_order_succeed_with_times(demo_path):
    result = runner.boot([demo_path], timeout=20, expect=["CHS READ", "EDD READ", "WRITE OK"])
    assert (result.stop.reason, result.exit_code, result.expect_met) == ("expected", 0, True)
    assert "PASS" not in result.console           # stopped at the last marker
    assert [m["pattern"] for m in result.markers] == ["CHS READ", "EDD READ", "WRITE OK"]
    walls = [m["wall_seconds"] for m in result.markers]
    virtuals = [m["virtual_seconds"] for m in result.markers]
    assert walls == sorted(walls) and virtuals == sorted(virtuals)
    assert all(m["source"] == "console" for m in result.markers)


def test_markers_out_of_order_fail(demo_path):
    result = runner.boot([demo_path], timeout=20, expect=["WRITE OK", "CHS READ"])
    assert result.expect_met is False and result.exit_code == 1
    assert [m["pattern"] for m in result.markers] == ["WRITE OK"]


def test_stages_run_from_power_on_through_the_boot_sector_to_the_end(demo_path):
    result = runner.boot([demo_path], timeout=20, expect=["CHS READ", "WRITE OK"])
    stages = result.stages
    assert [s["stage"] for s in stages] == ["power-on", "boot-sector", "expect", "expect", "end"]
    assert stages[-1]["detail"] == "expected"
    virtuals = [s["virtual_seconds"] for s in stages]
    assert virtuals == sorted(virtuals) and virtuals[1] > 0
    assert all(s["virtual_delta"] >= 0 and s["wall_delta"] >= 0 for s in stages)


def test_a_plain_run_has_stages_but_no_markers(demo_path):
    result = runner.boot([demo_path], timeout=20)
    assert result.markers is None
    assert [s["stage"] for s in result.stages] == ["power-on", "boot-sector", "end"]
    assert result.stages[-1]["detail"] == "exit"


def test_the_final_screen_counts_for_expect_and_fail(tmp_path):
    image = build_guest(tmp_path, "screen", SCREEN_ONLY)[0]
    ok = runner.boot([image], timeout=20, expect="screen only")
    assert "screen only" not in ok.console
    assert ok.expect_met and ok.exit_code == 0
    assert ok.markers[0]["source"] == "screen"
    bad = runner.boot([image], timeout=20, fail="Boot failed")
    assert bad.stop.reason == "fail-pattern" and bad.exit_code == 1
    assert "final screen" in bad.stop.detail and "exit" in bad.stop.detail


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pvboot.tools", *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_json_has_markers_and_stages(demo_path):
    proc = _cli("boot", demo_path, "--json", "--expect", "CHS READ", "--expect", "WRITE OK")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [m["text"] for m in data["markers"]] == ["CHS READ", "WRITE OK"]
    assert [s["stage"] for s in data["stages"]][0] == "power-on"
    assert data["stages"][-1]["stage"] == "end"


def test_cli_fail_exit_code_and_bad_regex(demo_path):
    proc = _cli("boot", demo_path, "-q", "--fail", "nothing like this", "--fail", "EDD")
    assert proc.returncode == 1
    assert "fail-pattern" in proc.stderr
    proc = _cli("boot", demo_path, "--fail", "(")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "bad regular expression" in proc.stderr
