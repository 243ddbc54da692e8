"""Bounded waits for the tests: poll a condition another process or thread makes true,
and fail the test, naming what never happened, once the bound has passed."""
import time

import pytest

POLL_SECONDS = 0.02


def wait_until(predicate, what, timeout=10.0, process=None):
    """Return once `predicate()` is true.  Fail the test if `timeout` seconds pass first,
    or at once if `process` (a Popen the condition depends on) has ended."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            stderr = process.stderr.read() if process.stderr else ""
            pytest.fail(f"{what}: the process ended first ({process.returncode}) {stderr}")
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_SECONDS)
