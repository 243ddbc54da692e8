"""Backends forked from the pvboot process (emu/xen/backend_process.py): the child runs
main() and exits with its status, keeps only the descriptors it is given, writes its
errors to the stderr file, and every wait on it is bounded."""
import os
import signal
import subprocess
import time

import pytest

from pvboot.emu.xen.backend_process import EXIT_CHILD_FAILED, fork_main


def _descriptors(pid):
    """fd -> what it is, for a process that may be closing some of them right now."""
    found = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            found[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            pass
    return found


def test_child_returns_main_status_and_keeps_only_given_descriptors(tmp_path):
    keep_r, keep_w = os.pipe()           # the child blocks reading this until we write
    secret = open(tmp_path / "parent-only.txt", "w")   # must not reach the child
    err = open(tmp_path / "err.txt", "w+")

    def main(argv):
        os.read(keep_r, 1)
        print("child says", argv[0], file=__import__("sys").stderr)
        return 7

    child = fork_main(main, ["hello"], keep_fds=(keep_r,), stderr=err)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:       # until the child closed what it drops
            fds = _descriptors(child.pid)
            if keep_r in fds and len(fds) == 4:
                break
            time.sleep(0.01)
        assert set(fds) == {0, 1, 2, keep_r}, fds
        assert fds[0] == fds[1] == "/dev/null"
        assert fds[2] == str(tmp_path / "err.txt")
        assert child.poll() is None
        os.write(keep_w, b"x")
        assert child.wait(5) == 7 and child.returncode == 7
    finally:
        child.kill()
        for fd in (keep_r, keep_w):
            os.close(fd)
        secret.close()
    err.seek(0)
    assert err.read() == "child says hello\n"


def test_wait_is_bounded_and_terminate_ends_the_child(tmp_path):
    def main(_argv):
        signal.pause()
        return 0

    child = fork_main(main, [], keep_fds=())
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(0.2)
        child.terminate()
        assert child.wait(5) == -signal.SIGTERM
        child.terminate()                # already gone: nothing to signal
    finally:
        child.kill()


def test_an_exception_in_the_child_is_an_exit_status_and_a_traceback(tmp_path):
    err = open(tmp_path / "err.txt", "w+")

    def main(_argv):
        raise RuntimeError("backend bug")

    child = fork_main(main, [], keep_fds=(), stderr=err)
    assert child.wait(5) == EXIT_CHILD_FAILED
    err.seek(0)
    text = err.read()
    assert "Traceback" in text and "RuntimeError: backend bug" in text
