"""qemu-storage-daemon (or qemu-nbd) as a child: one image exported over NBD on a
private Unix socket.

The daemon is the QEMU block layer (formats, backing chains, copy-on-write, its own
image locks) in a process of its own.  Whoever opens a non-raw image starts one (in a
run, the blkback process) and is its parent; the child asks the kernel for SIGKILL when
that parent dies (PR_SET_PDEATHSIG), so a killed run leaves no daemon, and a normal
stop terminates and reaps it.  Every wait on it is bounded.
"""
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time

PR_SET_PDEATHSIG = 1
START_TIMEOUT = 10.0
STOP_TIMEOUT = 3.0
EXPORT_NAME = "disk"
# QEMU's NBD server allocates a buffer per read and frees it after the reply; glibc
# serves a 1 MiB one (a read-ahead refill, emu/storage/readahead.py) with a fresh
# mmap, and a freed heap top is trimmed, so every read page-faulted its buffer in again
# (half the daemon's CPU time).  Thresholds above any read keep the buffers in the heap.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=%d:glibc.malloc.trim_threshold=%d" % (
    32 << 20, 64 << 20)
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl          # resolved here: the child only calls it


class StorageError(Exception):
    """An image the QEMU block layer refuses, or a daemon that did not start (one line)."""


def die_with_parent(parent_pid, signum=signal.SIGKILL):
    """In a new child: have the kernel send ``signum`` when the process that started it
    (``parent_pid``; strictly, its thread that forked) exits."""
    _prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    if os.getppid() != parent_pid:        # the parent died before prctl took effect
        os._exit(1)


def daemon_env():
    """The environment of an NBD server: ours, with MALLOC_TUNABLES added."""
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = ":".join(filter(None, (env.get("GLIBC_TUNABLES"),
                                                   MALLOC_TUNABLES)))
    return env


def spawn_child(argv, **popen_kw):
    """subprocess.Popen(argv) that dies with this process (PR_SET_PDEATHSIG)."""
    parent = os.getpid()
    return subprocess.Popen(argv, preexec_fn=lambda: die_with_parent(parent),
                            stdin=subprocess.DEVNULL, close_fds=True, **popen_kw)


def qemu_message(text):
    """The error line of a QEMU tool's stderr (the first one naming the program; a hint
    may follow it), without the program name."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no message"
    progs = ("qemu-storage-daemon: ", "qemu-img: ", "qemu-nbd: ")
    line = next((line for line in lines if line.startswith(progs)), lines[-1])
    for prog in progs:
        if line.startswith(prog):
            line = line[len(prog):]
    # QEMU prefixes the option it was parsing (ours are JSON); the reason follows it.
    for option in ("--blockdev ", "--export "):
        if line.startswith(option):
            try:
                _value, end = json.JSONDecoder().raw_decode(line, len(option))
            except ValueError:
                break
            line = line[end:].lstrip(": ")
    return line


def file_node(path, read_only):
    return {"driver": "file", "filename": path, "read-only": read_only}


# The NBD servers of the QEMU block layer, preferred first: qemu-storage-daemon also
# has a QMP monitor (live snapshots); qemu-nbd (qemu-utils) serves without one.
SERVERS = ("qemu-storage-daemon", "qemu-nbd")


class StorageDaemon:
    """An NBD server of the QEMU block layer serving ``blockdev`` (a QMP
    BlockdevOptions dict) as the export "disk" on ``run_dir``/nbd.sock; with
    qemu-storage-daemon also a QMP monitor on qmp.sock (qmp_path None otherwise).
    ``servers``: the programs to try, in order."""

    def __init__(self, blockdev, run_dir, writable, servers=SERVERS):
        self.run_dir = run_dir
        self.nbd_path = os.path.join(run_dir, "nbd.sock")
        self.qmp_path = None
        self.log_path = os.path.join(run_dir, "daemon.log")
        self.proc = None
        found = [(name, shutil.which(name)) for name in servers]
        found = [(name, path) for name, path in found if path]
        if not found:
            raise StorageError("neither qemu-storage-daemon (Debian qemu-system-common) nor "
                               "qemu-nbd (qemu-utils) found: needed for non-raw images")
        name, program = found[0]
        if name == "qemu-storage-daemon":
            self.qmp_path = os.path.join(run_dir, "qmp.sock")
            argv = self._qsd_argv(program, blockdev, writable)
        else:
            # -t: keep serving when a client leaves (the readiness probe is one).
            argv = [program, "-t", "-k", self.nbd_path, "-x", EXPORT_NAME, "--shared=4",
                    *([] if writable else ["-r"]), "json:" + json.dumps(blockdev)]
        with open(self.log_path, "w") as log:
            self.proc = spawn_child(argv, stdout=subprocess.DEVNULL, stderr=log,
                                    env=daemon_env())
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _qsd_argv(self, program, blockdev, writable):
        blockdev = dict(blockdev, **{"node-name": "disk"})
        export = {"type": "nbd", "id": "export0", "node-name": "disk", "name": EXPORT_NAME,
                  "writable": writable}
        return [program,
                "--blockdev", json.dumps(blockdev),
                "--nbd-server", "addr.type=unix,addr.path=" + self.nbd_path,
                "--export", json.dumps(export),
                "--chardev", "socket,id=qmp,path=%s,server=on,wait=off" % self.qmp_path,
                "--monitor", "chardev=qmp"]

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.002
        while True:
            if self.proc.poll() is not None:
                with open(self.log_path) as log:
                    raise StorageError(qemu_message(log.read()))
            if os.path.exists(self.nbd_path):
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                try:
                    probe.connect(self.nbd_path)
                    return
                except OSError:
                    pass
                finally:
                    probe.close()
            if time.monotonic() > deadline:
                raise StorageError("the NBD server did not listen within %g s" % START_TIMEOUT)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def qmp(self, command, arguments=None, timeout=10.0):
        """Run one QMP command on this daemon (see qmp_call)."""
        if self.qmp_path is None:
            raise StorageError("QMP %s: qemu-nbd has no monitor (needs qemu-storage-daemon)"
                               % command)
        return qmp_call(self.qmp_path, command, arguments, timeout)

    def stop(self):
        """Terminate and reap the daemon (bounded; SIGKILL after STOP_TIMEOUT)."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def qmp_call(path, command, arguments=None, timeout=10.0):
    """Run one QMP command on the monitor socket ``path``; returns its "return" value
    or raises StorageError with QEMU's description."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        stream = sock.makefile("rwb")
        _qmp_read(stream)                                        # the greeting
        for name, args in (("qmp_capabilities", None), (command, arguments)):
            msg = {"execute": name}
            if args:
                msg["arguments"] = args
            stream.write(json.dumps(msg).encode() + b"\n")
            stream.flush()
            reply = _qmp_read(stream)
            if "error" in reply:
                raise StorageError("%s: %s" % (name, reply["error"].get("desc")))
        return reply.get("return")
    except (OSError, ValueError) as e:
        raise StorageError("QMP %s: %s" % (command, e)) from None
    finally:
        sock.close()


def _qmp_read(stream):
    """The next QMP reply or greeting (events are skipped)."""
    while True:
        line = stream.readline()
        if not line:
            raise ValueError("the daemon closed the QMP connection")
        msg = json.loads(line)
        if "event" not in msg:
            return msg
