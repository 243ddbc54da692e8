"""How pvboot starts a backend: a child forked from the pvboot process that runs the
backend's main() and exits, never returning into the parent's code.

Forking rather than executing a new interpreter is what makes a PV boot start quickly:
a fresh `python -m pvboot.emu.xen.blkback` spends ~40 ms starting up and importing before it
reaches InitWait, and the firmware waits for exactly that at POST.  The child is still
a separate process with its own address space: it keeps only the descriptors it is
given (guest memory, event channels, stderr) and reaches guest memory, the grant table
and the event channel page through its own mapping of the memfd, as an exec'd backend
does (`pvboot blkback` runs the same main() that way).  The child gets SIGTERM when
the pvboot process dies, however it dies.

`ForkedProcess` offers the part of subprocess.Popen that pvboot and its tests use.
"""
import gc
import os
import select
import signal
import subprocess
import sys
import traceback

from pvboot.emu.storage.daemon import die_with_parent

EXIT_CHILD_FAILED = 70          # the child could not even run main() (EX_SOFTWARE)


class ForkedProcess:
    """poll / wait(timeout) / terminate / kill / returncode for a forked child."""

    def __init__(self, pid, args):
        self.pid = pid
        self.args = args
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        """Wait for the child to exit, at most `timeout` seconds (subprocess.TimeoutExpired
        after that, as Popen.wait)."""
        if self.poll() is not None:
            return self.returncode
        if timeout is None:
            _pid, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode
        pidfd = os.pidfd_open(self.pid)
        try:
            readable, _, _ = select.select([pidfd], [], [], max(0.0, timeout))
        finally:
            os.close(pidfd)
        if not readable or self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, signum):
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self):
        self.send_signal(15)

    def kill(self):
        self.send_signal(9)


def fork_main(main, argv, keep_fds, stderr=None):
    """Run main(argv) in a forked child whose descriptors are only `keep_fds`, stdin
    and stdout on /dev/null, and stderr on the file `stderr` (None: this process's).
    Returns the child as a ForkedProcess; its exit status is main's return value."""
    stderr_fd = stderr.fileno() if stderr is not None else None
    for stream in (sys.stdout, sys.stderr):
        stream.flush()          # else the child could write the parent's buffered text
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return ForkedProcess(pid, argv)
    status = EXIT_CHILD_FAILED
    try:
        # A killed pvboot takes its backends along (they stop their storage daemons).
        die_with_parent(parent, signal.SIGTERM)
        # The parent's objects are the child's only by accident: keep the collector off
        # them (it would touch, and so copy, every page they live on).
        gc.freeze()
        _only_descriptors(set(keep_fds), stderr_fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        status = main(argv)
    except BaseException:
        try:
            traceback.print_exc()
            sys.stderr.flush()
        except BaseException:
            pass
    finally:
        os._exit(status if isinstance(status, int) else EXIT_CHILD_FAILED)


def _only_descriptors(keep, stderr_fd):
    """In the child: /dev/null on 0 and 1, `stderr_fd` (if any) on 2, and every other
    descriptor closed but `keep` (the daemon's sockets, disk images and other
    backends' files belong to the parent)."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    if stderr_fd is not None:
        os.dup2(stderr_fd, 2)
    keep = keep | {0, 1, 2}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass            # the listing's own descriptor, already gone
