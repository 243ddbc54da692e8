"""The bench's processes: run one (wall and CPU time, peak RSS of its process tree),
build the command lines of pvboot, QEMU + SeaBIOS and the bare Unicorn, and check
that each run did what it should.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pvboot.tools.qemu import qemu_command

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20
QEMU = "qemu-system-i386"
QEMU_MEMORY_MB = 64
RSS_POLL_SECONDS = 0.01

# Per-process wall-clock bounds (seconds): pvboot gets its own --timeout a little lower,
# so that it reports a timeout itself; the bench kills the process group at this one.
TIMEOUT_BOOT = 60.0
TIMEOUT_LOOP = 180.0


# -- processes ------------------------------------------------------------------------
class _RssSampler(threading.Thread):
    """Polls /proc for a process and all its descendants every RSS_POLL_SECONDS and
    keeps each process's peak RSS (VmHWM, KiB), so the sum covers pvboot and its
    blkback children even though they are separate processes."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.root = pid
        self.peaks = {}               # pid -> (name, peak KiB)
        self._done = threading.Event()

    def run(self):
        while not self._done.is_set():
            self.sample()
            self._done.wait(RSS_POLL_SECONDS)

    def stop(self):
        self._done.set()
        self.join(timeout=2)

    def sample(self):
        for pid in _process_tree(self.root):
            # A child seen between fork and exec still shares its parent's pages (and
            # shows the parent's RSS): only the program it runs after exec counts, so
            # a peak is kept per (pid, command line) and a new command line restarts it.
            cmdline = read_text(f"/proc/{pid}/cmdline")
            status = read_text(f"/proc/{pid}/status")
            if status is None or cmdline is None:
                continue
            hwm = re.search(r"^VmHWM:\s*(\d+)", status, re.M)
            if hwm:
                name = " ".join(cmdline.split("\0")).strip()[:120]
                old_name, old = self.peaks.get(pid, ("", 0))
                if old_name != name:
                    old = 0
                self.peaks[pid] = (name, max(old, int(hwm.group(1))))

    def total_kib(self):
        return sum(kib for _name, kib in self.peaks.values())


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def live_group_members(pgid):
    """The pids of process group `pgid` that still run (zombies do not count)."""
    members = []
    for entry in os.listdir("/proc"):
        stat = read_text(f"/proc/{entry}/stat") if entry.isdigit() else None
        if stat:
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'.
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] not in "ZX" and int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def _process_tree(root):
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            children = read_text(f"/proc/{pid}/task/{tid}/children")
            if children:
                todo.extend(int(c) for c in children.split())
    return pids


def run_process(argv, timeout, *, cwd=None, env=None, rss=False):
    """Run argv to completion (stdin closed, stdout and stderr captured), in its own
    process group so that a timeout kills it and everything it started.  Returns a
    dict: wall (s, spawn to reaped), cpu (s, user + system), returncode (negative: signal), timed_out, stdout,
    stderr, ru_maxrss_kib (wait4: the process and the children it waited for; a max,
    not a sum), and with rss=True rss_tree_kib (the sum of every process's polled
    peak) and rss_processes."""
    began = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True)
    sampler = _RssSampler(proc.pid) if rss else None
    if sampler:
        sampler.start()
    out, err = bytearray(), bytearray()

    def pump(stream, buf):
        for chunk in iter(lambda: stream.read1(65536), b""):
            buf.extend(chunk)

    readers = [threading.Thread(target=pump, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, err), daemon=True)]
    for reader in readers:
        reader.start()
    reaped = {}

    def waiter():
        _pid, status, usage = os.wait4(proc.pid, 0)
        reaped["end"] = time.perf_counter()
        reaped["status"] = status
        reaped["usage"] = usage

    wait_thread = threading.Thread(target=waiter, daemon=True)
    wait_thread.start()
    wait_thread.join(timeout)
    timed_out = wait_thread.is_alive()
    if timed_out:
        _kill_group(proc.pid)
        wait_thread.join(10)
    else:
        # The process is gone; its children (blkback) end with it or are killed here.
        _kill_group(proc.pid)
    if sampler:
        sampler.stop()
    for reader in readers:
        reader.join(timeout=5)
    proc.stdout.close()
    proc.stderr.close()
    status = reaped.get("status")
    proc.returncode = os.waitstatus_to_exitcode(status) if status is not None else -9
    usage = reaped.get("usage")
    result = {
        "wall": reaped.get("end", time.perf_counter()) - began,
        "returncode": proc.returncode,
        "pgid": proc.pid,             # its own process group (start_new_session)
        "timed_out": timed_out,
        "stdout": bytes(out).decode("latin-1"),
        "stderr": bytes(err).decode("utf-8", "replace"),
        "ru_maxrss_kib": usage.ru_maxrss if usage else None,
        # user + system CPU seconds of the process and the children it waited for
        # (pvboot's blkback): much less sensitive than wall time to a busy machine.
        "cpu": usage.ru_utime + usage.ru_stime if usage else None,
    }
    if sampler:
        result["rss_tree_kib"] = sampler.total_kib()
        result["rss_processes"] = {str(pid): {"name": name, "peak_kib": kib}
                                   for pid, (name, kib) in sorted(sampler.peaks.items())}
    return result


GROUP_EXIT_SECONDS = 5.0


def _kill_group(pgid):
    """SIGKILL the group, then wait (bounded) until none of it runs any more: a killed
    process takes a moment to exit, and the next run must not share the machine."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + GROUP_EXIT_SECONDS
    while live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.005)


# -- the two sides ----------------------------------------------------------------------
def pvboot_env(pycache=None):
    """The environment of pvboot (and its blkback, which inherits it).  With `pycache`,
    bytecode is cached there even where PYTHONDONTWRITEBYTECODE is set (as in this
    project's sandbox): an installed pvboot runs from precompiled .pyc files, and
    compiling every module from source on each start (~0.15 s of CPU) is not part of
    its boot time.  The checkout is left clean (PYTHONPYCACHEPREFIX).  A `pvboot serve`
    of the user's is bypassed: the rows measure a fresh pvboot unless they say "warm"."""
    env = dict(os.environ)
    env["PVBOOT_SERVER"] = "off"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def pvboot_argv(image, options=(), timeout=TIMEOUT_BOOT):
    # The console is echoed to stdout (checked for the markers); no --expect, which
    # would end a boot before its power-off.
    return [sys.executable, "-m", "pvboot.tools", "boot", str(image),
            "--timeout", f"{max(1.0, timeout - 5):g}", *options]


def pvboot_drivers():
    """The --driver choices of this checkout's `pvboot boot` (ata appears once the
    emulated IDE path is in)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pvboot.tools", "boot", "--help"], cwd=REPO,
                              env=pvboot_env(), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    found = re.search(r"--driver\s+\{([^}]*)\}", proc.stdout)
    return tuple(found.group(1).split(",")) if found else ()


def qemu_missing():
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found: install the Debian package qemu-system-x86"
    return None


def _qemu_base():
    """QEMU's command line as tools/qemu.py builds it (-m 64 -nic none added:
    pvboot's machine has 64 MiB and no NIC, and no iPXE ROM is loaded)."""
    return qemu_command


def qemu_argv(image, disk="qemu-ide", snapshot=False):
    """QEMU + SeaBIOS (TCG) booting `image` as its first hard disk, attached as IDE
    (-drive if=ide), virtio-blk (if=virtio) or AHCI (-device ahci + ide-hd)."""
    qemu_command = _qemu_base()
    drive = f"file={str(image).replace(',', ',,')},format=raw"
    if snapshot:
        drive += ",snapshot=on"
    if disk == "qemu-ide":
        args = ["-drive", drive + ",if=ide"]
    elif disk == "qemu-virtio":
        args = ["-drive", drive + ",if=virtio"]
    elif disk == "qemu-ahci":
        args = ["-device", "ahci,id=ahci0", "-drive", drive + ",if=none,id=bd0",
                "-device", "ide-hd,drive=bd0,bus=ahci0.0"]
    else:
        raise ValueError(disk)
    return qemu_command((), None, boot="hd", memory_mb=QEMU_MEMORY_MB, extra_args=args)


def serve_argv(socket_path):
    """A warm server for the boot rows' "warm" runs (tools/serve.py)."""
    return [sys.executable, "-m", "pvboot.tools", "serve", "--socket", str(socket_path),
            "--idle-exit", "3600"]


def floor_argv():
    """The start-up every Python program on Unicorn pays before its first guest
    instruction: the interpreter with its site packages, the Unicorn binding loaded and
    one x86 engine opened.  pvboot's boot rows cannot be below it."""
    return [sys.executable, "-c",
            "import unicorn; unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_16)"]


def interpreter_argv():
    """The start-up under the warm rows: the interpreter alone, with this environment's
    site (its .pth files run at every start).  A command a `pvboot serve` runs pays it
    in its client and nothing else before the server has the request."""
    return [sys.executable, "-c", "pass"]


def rawcpu_argv(image, start, end):
    return [sys.executable, "-m", "pvboot.tools.bench.rawcpu", str(image), hex(start), hex(end)]


# Success checks: None when the run did what it should, else a one-line reason.
def check_pvboot(run, marker=None, poweroff=False):
    if run["timed_out"]:
        return "timed out"
    if run["returncode"] != 0:
        last = (run["stderr"].strip().splitlines() or ["?"])[-1]
        return f"exit status {run['returncode']}: {last}"
    if poweroff and "pvboot: poweroff" not in run["stderr"]:
        return "ended without powering off: " + (run["stderr"].strip().splitlines() or ["?"])[-1]
    if marker and marker not in run["stdout"]:
        return f"{marker!r} not on the console"
    return None


def check_qemu(run, marker=None, poweroff=False):
    """With -no-reboot QEMU exits 0 on a power-off and on a reset alike: the marker
    (printed by the loader just before it powers off) tells a finished boot."""
    if run["timed_out"]:
        return "timed out"
    want = 0 if poweroff else 1          # isa-debug-exit: (0 << 1) | 1
    if run["returncode"] != want:
        last = (run["stderr"].strip().splitlines() or [""])[-1]
        return f"exit status {run['returncode']} (want {want}) {last}".strip()
    if marker and marker not in run["stdout"]:
        return f"{marker!r} not on the console"
    return None


def check_raw(run):
    if run["timed_out"]:
        return "timed out"
    if run["returncode"] != 0:
        return f"exit status {run['returncode']}: {run['stderr'].strip()[-200:]}"
    return None
