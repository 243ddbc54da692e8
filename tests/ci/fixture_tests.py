"""Tests using the pvboot fixture; tests/tools/test_plugin.py runs them as test_fixture.py
next to the images it builds."""


def test_boot_with_the_fixture(pvboot):
    result = pvboot("disk_rw.img", driver="host", timeout=20)
    assert result.stop.reason == "exit" and result.stop.exit_value == 0
    assert "DISK_RW START" in result.console
    assert result.counters["disk_ops"] > 0 and result.counters["sectors_written"] > 0
    pvboot.check(result, expect=["PASS"], exit=0)


def test_check_fails_with_the_story(pvboot):     # FAILS on purpose
    result = pvboot("spin.img", timeout=2, driver="host")
    pvboot.check(result, expect=["NEVER PRINTED"])
