"""`pvboot bench`: pvboot against QEMU + SeaBIOS (and a bare Unicorn), in one run on
one machine.

Every figure comes from whole processes started here, alternating pvboot and its peer
(pvboot, QEMU, pvboot, QEMU, ... within each round), and is reported as the median over
the rounds beside the peer's and the target.  Each process's wall time and CPU time
(user + system, with the children it reaped) are both recorded; the table uses wall time
and is printed again by CPU time, which a busy machine disturbs far less:

  boot     wall time from spawning `python -m pvboot.tools boot IMAGE` / `qemu-system-i386 ...`
           to the process's exit, for the demo disk, a GRUB 2 FAT image and a SYSLINUX
           image (tools/mkimage.py); peak RSS of the GRUB boot.
  bulk     INT 13h AH=42h reads in 127-sector calls (bench/bulkread.S): MiB/s =
           (big - small MiB) / (t_big - t_small), t the median time over the rounds, the
           small run cancelling start-up; per pvboot data path against QEMU's IDE,
           virtio-blk and AHCI.
  int      INT 13h AH=01h round trips (bench/intloop.S), the same subtraction.
  cpu      a register-only real-mode loop (bench/cpuloop.S) under pvboot against the
           same bytes on a bare Unicorn with no hooks (bench/rawcpu.py).

Nothing is optimised here and no timing is asserted anywhere: this only measures.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pvboot.tools.bench import guests

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20
QEMU = "qemu-system-i386"
QEMU_MEMORY_MB = 64
RSS_POLL_SECONDS = 0.01

GROUPS = ("boot", "bulk", "int", "cpu")

# Sizes of the runs: the small run of a pair only cancels start-up.
# The IDE pair (pvboot's ata, QEMU's IDE) moves data by PIO at a few MiB/s: its big
# run is bulk_pio_mib, so that five rounds of it take seconds, not minutes.
FULL_SIZES = {"bulk_small_mib": 1, "bulk_big_mib": 64, "bulk_pio_mib": 8,
              "int_small": 1000, "int_big": 30000,
              "cpu_small": 1_000_000, "cpu_big": 1_000_000_000}
QUICK_SIZES = {"bulk_small_mib": 1, "bulk_big_mib": 3, "bulk_pio_mib": 2,
               "int_small": 100, "int_big": 3000,
               "cpu_small": 1_000_000, "cpu_big": 100_000_000}
PIO_SIDES = ("ata", "qemu-ide")

# Per-process wall-clock bounds (seconds): pvboot gets its own --timeout a little lower,
# so that it reports a timeout itself; the bench kills the process group at this one.
TIMEOUT_BOOT = 60.0
TIMEOUT_LOOP = 180.0

# Boot images: (key, title, image kind for tools/mkimage.build_image or "demo").
BOOT_IMAGES = (("demo", "demo disk", "demo"),
               ("grub-fat", "GRUB 2 (FAT16)", "grub-fat"),
               ("syslinux", "SYSLINUX", "syslinux"))

# INT 13h bulk-read sides.  pvboot: CLI options; QEMU: how the disk is attached.
PV_PATHS = (("pv-bounce", ("--driver", "xen", "--pv-path", "bounce")),
            ("pv-direct", ("--driver", "xen", "--pv-path", "direct")),
            ("ata", ("--driver", "ata")),
            ("host", ("--driver", "host")))
QEMU_DISKS = ("qemu-ide", "qemu-virtio", "qemu-ahci")
QEMU_DISK_LABELS = {"qemu-ide": "QEMU IDE", "qemu-virtio": "QEMU virtio",
                    "qemu-ahci": "QEMU AHCI"}
# Run order inside a bulk round: pvboot and QEMU alternate.
BULK_ORDER = ("pv-bounce", "qemu-virtio", "pv-direct", "qemu-ahci", "ata", "qemu-ide", "host")
# Rows: pvboot path -> the QEMU disk it is set beside (its nearest counterpart: the PV
# bounce path beside QEMU's paravirtual disk, IDE beside IDE, the others beside the
# fastest peer).
BULK_PEER = {"pv-bounce": "qemu-virtio", "pv-direct": "qemu-ahci", "ata": "qemu-ide",
             "host": "qemu-ahci"}

# Targets.  "MB" in the targets is read as MiB, as the brief's own formula
# (MB/s = 63 MiB / (t64 - t1)) reads it.
TARGETS = {
    "boot.grub-fat": {"kind": "max_ratio", "value": 0.5, "text": "<= 0.5x QEMU"},
    "boot.syslinux": {"kind": "max_ratio", "value": 0.5, "text": "<= 0.5x QEMU"},
    "bulk.pv-bounce": {"kind": "min_value", "value": 150.0, "text": ">= 150 MiB/s"},
    "bulk.pv-direct": {"kind": "min_value", "value": 1024.0, "text": ">= 1024 MiB/s"},
    "int.ah01": {"kind": "min_value", "value": 150000.0, "text": ">= 150000 /s"},
    "cpu.loop": {"kind": "min_ratio", "value": 0.8, "text": ">= 0.8x raw Unicorn"},
    "rss.grub-fat": {"kind": "max_value", "value": 150.0, "text": "<= 150 MiB"},
}


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
            cmdline = _read_text(f"/proc/{pid}/cmdline")
            status = _read_text(f"/proc/{pid}/status")
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


def _read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


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
            children = _read_text(f"/proc/{pid}/task/{tid}/children")
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


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# -- the two sides ----------------------------------------------------------------------
def pvboot_env(pycache=None):
    """The environment of pvboot (and its blkback, which inherits it).  With `pycache`,
    bytecode is cached there even where PYTHONDONTWRITEBYTECODE is set (as in this
    project's sandbox): an installed pvboot runs from precompiled .pyc files, and
    compiling every module from source on each start (~0.15 s of CPU) is not part of
    its boot time.  The checkout is left clean (PYTHONPYCACHEPREFIX)."""
    env = dict(os.environ)
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
    """NOTES 8's command line, as tools/qemu.py builds it (-m 64 -nic none added:
    pvboot's machine has 64 MiB and no NIC, and no iPXE ROM is loaded)."""
    from pvboot.tools.qemu import qemu_command
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


def rawcpu_argv(image, start, end):
    return [sys.executable, "-m", "pvboot.tools.bench.rawcpu", str(image), hex(start), hex(end)]


# Success checks: None when the run did what it should, else a one-line reason.
def _check_pvboot(run, marker=None, poweroff=False):
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


def _check_qemu(run, marker=None, poweroff=False):
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


def _check_raw(run):
    if run["timed_out"]:
        return "timed out"
    if run["returncode"] != 0:
        return f"exit status {run['returncode']}: {run['stderr'].strip()[-200:]}"
    return None


# -- the bench --------------------------------------------------------------------------
class Bench:
    """Runs the processes (run()), then builds the rows from their records (rows());
    rows can be built for either clock from the same runs."""

    def __init__(self, runs, sizes, workdir, log=None, groups=GROUPS):
        self.runs = runs
        self.sizes = sizes
        self.work = Path(workdir)
        self.log = log or (lambda line: None)
        self.groups = groups
        self.records = []            # every process run, in order
        self.qemu_skip = qemu_missing()
        self.build_skip = guests.tools_missing()
        self.env = pvboot_env(self.work / "pycache")
        self.boot_skipped = {}       # image key -> why it was not built
        self.bulk_unavailable = {}   # pvboot path -> why it cannot run

    # one process, recorded
    def _run(self, group, side, size, round_, argv, timeout, check, rss=False):
        run = run_process(argv, timeout, cwd=REPO, env=self.env, rss=rss)
        error = check(run)
        record = {"group": group, "side": side, "size": size, "round": round_,
                  "argv": argv, "wall_s": run["wall"], "cpu_s": run["cpu"],
                  "returncode": run["returncode"], "ok": error is None, "error": error,
                  "ru_maxrss_kib": run["ru_maxrss_kib"]}
        if rss:
            record["rss_tree_kib"] = run["rss_tree_kib"]
            record["rss_processes"] = run["rss_processes"]
        if error:
            record["stderr_tail"] = run["stderr"][-2000:]
        self.records.append(record)
        size_text = "" if size is None else f" {size}"
        self.log(f"[{group} {round_ + 1}/{self.runs}] {side}{size_text}: {run['wall']:.3f} s "
                 f"(cpu {run['cpu'] or 0:.3f} s)" + (f"  FAILED: {error}" if error else ""))
        return record

    def warm_up(self):
        """One unmeasured run of each program: bytecode compiled and cached, QEMU, its
        BIOS and Python's libraries in the page cache."""
        from pvboot.tools.demo import write_demo_disk
        demo = write_demo_disk(self.work / "warmup-demo.img")
        self._run("warmup", "pvboot demo", None, 0, pvboot_argv(demo), TIMEOUT_BOOT,
                  _check_pvboot)
        if not self.qemu_skip:
            self._run("warmup", "qemu demo", None, 0, qemu_argv(demo, snapshot=True),
                      TIMEOUT_BOOT, _check_qemu)
        if not self.build_skip and "cpu" in self.groups:
            image, symbols = guests.cpuloop_image(self.work / "warmup-cpu.img", 1000)
            self._run("warmup", "unicorn", None, 0,
                      rawcpu_argv(image, symbols["_start"], symbols["loop_done"]),
                      TIMEOUT_BOOT, _check_raw)

    def run(self):
        self.warm_up()
        for group in GROUPS:
            if group in self.groups:
                getattr(self, f"run_{group}")()

    def rows(self, clock="wall"):
        """The table's rows from the recorded runs, timed by `clock` ("wall" or "cpu")."""
        time_key = "wall_s" if clock == "wall" else "cpu_s"
        rows = []
        for group in GROUPS:
            if group in self.groups:
                rows += getattr(self, f"rows_{group}")(time_key)
        return rows

    # -- boot to power-off, and the GRUB boot's peak RSS --------------------------------
    def run_boot(self):
        images = {}
        for key, _title, kind in BOOT_IMAGES:
            path = self.work / f"boot-{key}.img"
            try:
                if kind == "demo":
                    from pvboot.tools.demo import write_demo_disk
                    write_demo_disk(path)
                else:
                    from pvboot.tools import mkimage
                    mkimage.build_image(kind, path)
                images[key] = path
            except ImportError as exc:
                self.boot_skipped[key] = f"tools/mkimage.py not available ({exc})"
            except Exception as exc:            # MissingTool names the Debian package
                self.boot_skipped[key] = str(exc).strip().splitlines()[0]
        # What each image prints on COM1 near its end: the demo's verdict, and the file
        # both loaders' default configurations print (tools/mkimage.py) just before
        # they power off.
        markers = {"demo": "PASS"}
        try:
            from pvboot.tools.mkimage import HELLO_TEXT
            markers["grub-fat"] = markers["syslinux"] = HELLO_TEXT.strip().splitlines()[0]
        except ImportError:
            pass
        for round_ in range(self.runs):
            for key, path in images.items():
                marker, poweroff, rss = markers.get(key), key != "demo", key == "grub-fat"
                self._run("boot", f"pvboot {key}", None, round_, pvboot_argv(path),
                          TIMEOUT_BOOT, lambda r, m=marker, p=poweroff: _check_pvboot(r, m, p),
                          rss=rss)
                if not self.qemu_skip:
                    self._run("boot", f"qemu {key}", None, round_,
                              qemu_argv(path, snapshot=True), TIMEOUT_BOOT,
                              lambda r, m=marker, p=poweroff: _check_qemu(r, m, p), rss=rss)

    def _peer(self, label, build):
        return side_skipped(label, self.qemu_skip) if self.qemu_skip else build()

    def rows_boot(self, time_key):
        rows = []
        for key, title, _kind in BOOT_IMAGES:
            row_id, measurement = f"boot.{key}", f"boot to power-off: {title}"
            if key in self.boot_skipped:
                rows.append(skipped_row(row_id, measurement, "s", self.boot_skipped[key]))
                continue
            pv = side_from_records(self.records, "boot", f"pvboot {key}", "pvboot",
                                   lambda r: r[time_key])
            peer = self._peer("QEMU", lambda: side_from_records(
                self.records, "boot", f"qemu {key}", "QEMU", lambda r: r[time_key]))
            rows.append(make_row(row_id, measurement, "s", pv, peer, "lower"))
        # Peak RSS of the GRUB boot: the same runs, sampled while they ran.
        measurement = "peak RSS: GRUB boot"
        if "grub-fat" in self.boot_skipped:
            rows.append(skipped_row("rss.grub-fat", measurement, "MiB",
                                    self.boot_skipped["grub-fat"]))
            return rows

        def rss_mib(record):
            return max(record["rss_tree_kib"], record["ru_maxrss_kib"] or 0) / 1024.0

        pv = side_from_records(self.records, "boot", "pvboot grub-fat", "pvboot + blkback",
                               rss_mib)
        peer = self._peer("QEMU", lambda: side_from_records(
            self.records, "boot", "qemu grub-fat", "QEMU", rss_mib))
        rows.append(make_row("rss.grub-fat", measurement, "MiB", pv, peer, "lower"))
        return rows

    # -- paired runs: a small and a big size, the difference per round ------------------
    def _run_pairs(self, group, order, argv_for, sizes_of, check_for):
        """For each round and each side in `order` (pvboot and its peers alternating):
        the small size, then the big one."""
        for round_ in range(self.runs):
            for side in order:
                for size in sizes_of(side):
                    self._run(group, side, size, round_, argv_for(side, size), TIMEOUT_LOOP,
                              check_for(side))

    def _pair_samples(self, group, side, sizes, per_unit, time_key):
        """One sample per round: per_unit * (big - small) / (t_big - t_small), or None
        (with why) when a run failed or the difference is not positive (lost in the
        noise of start-up)."""
        small, big = sizes
        samples = []
        for round_ in range(self.runs):
            # (the rounds' samples are kept for the record; the figure is made from the
            # median times, see side_from_samples)
            times = {}
            for rec in self.records:
                if rec["group"] == group and rec["side"] == side and rec["round"] == round_:
                    times[rec["size"]] = rec[time_key] if rec["ok"] else None
            t_small, t_big = times.get(small), times.get(big)
            if t_small is None or t_big is None:
                samples.append({"value": None, "why": "a run failed"})
            elif t_big <= t_small:
                samples.append({"value": None, "why": "big run not slower than the small "
                                "one: below the noise", "t_small": t_small, "t_big": t_big})
            else:
                samples.append({"value": per_unit * (big - small) / (t_big - t_small),
                                "t_small": t_small, "t_big": t_big})
        return samples

    def _bulk_sizes(self, side):
        big = self.sizes["bulk_pio_mib"] if side in PIO_SIDES else self.sizes["bulk_big_mib"]
        return self.sizes["bulk_small_mib"], big

    def run_bulk(self):
        if self.build_skip:
            return
        sizes = {self.sizes[k] for k in ("bulk_small_mib", "bulk_big_mib", "bulk_pio_mib")}
        images = {size: guests.bulkread_image(self.work / f"bulk-{size}.img", size)
                  for size in sizes}
        drivers = pvboot_drivers()
        pv_options = dict(PV_PATHS)
        for path, options in PV_PATHS:
            driver = options[options.index("--driver") + 1]
            if drivers and driver not in drivers:
                self.bulk_unavailable[path] = f"pvboot has no --driver {driver} yet"
        order = [side for side in BULK_ORDER if side not in self.bulk_unavailable and
                 not (self.qemu_skip and side.startswith("qemu-"))]

        def argv_for(side, size):
            if side.startswith("qemu-"):
                return qemu_argv(images[size], side)
            return pvboot_argv(images[size], pv_options[side], TIMEOUT_LOOP)

        self._run_pairs("bulk", order, argv_for, self._bulk_sizes,
                        lambda side: _check_qemu if side.startswith("qemu-") else _check_pvboot)

    def rows_bulk(self, time_key):
        rows = []
        for path, _ in PV_PATHS:
            row_id, measurement = f"bulk.{path}", f"INT 13h 42h read: {path}"
            reason = self.build_skip or self.bulk_unavailable.get(path)
            if reason:
                rows.append(skipped_row(row_id, measurement, "MiB/s", reason))
                continue
            peer_key = BULK_PEER[path]
            pv = side_from_samples(f"pvboot {path}", self._pair_samples(
                "bulk", path, self._bulk_sizes(path), 1.0, time_key),
                _delta(self._bulk_sizes(path), 1.0))
            peer = self._peer(QEMU_DISK_LABELS[peer_key], lambda: side_from_samples(
                QEMU_DISK_LABELS[peer_key], self._pair_samples(
                    "bulk", peer_key, self._bulk_sizes(peer_key), 1.0, time_key),
                _delta(self._bulk_sizes(peer_key), 1.0)))
            rows.append(make_row(row_id, measurement, "MiB/s", pv, peer, "higher"))
        return rows

    # -- INT 13h AH=01h round trips ---------------------------------------------------------
    def run_int(self):
        if self.build_skip:
            return
        sizes = (self.sizes["int_small"], self.sizes["int_big"])
        images = {n: guests.intloop_image(self.work / f"int-{n}.img", n) for n in sizes}
        order = ["pvboot"] + ([] if self.qemu_skip else ["qemu"])
        self._run_pairs(
            "int", order,
            lambda side, n: pvboot_argv(images[n], (), TIMEOUT_LOOP) if side == "pvboot"
            else qemu_argv(images[n]),
            lambda side: sizes,
            lambda side: _check_pvboot if side == "pvboot" else _check_qemu)

    def rows_int(self, time_key):
        measurement = "INT 13h AH=01h round trips"
        if self.build_skip:
            return [skipped_row("int.ah01", measurement, "/s", self.build_skip)]
        sizes = (self.sizes["int_small"], self.sizes["int_big"])
        pv = side_from_samples("pvboot", self._pair_samples("int", "pvboot", sizes, 1.0, time_key),
                               _delta(sizes, 1.0))
        peer = self._peer("QEMU", lambda: side_from_samples(
            "QEMU", self._pair_samples("int", "qemu", sizes, 1.0, time_key), _delta(sizes, 1.0)))
        return [make_row("int.ah01", measurement, "/s", pv, peer, "higher")]

    # -- CPU-bound loop ---------------------------------------------------------------------
    def run_cpu(self):
        if self.build_skip:
            return
        sizes = (self.sizes["cpu_small"], self.sizes["cpu_big"])
        images, symbols = {}, {}
        for n in sizes:
            images[n], symbols[n] = guests.cpuloop_image(self.work / f"cpu-{n}.img", n)

        def argv_for(side, n):
            if side == "pvboot":
                return pvboot_argv(images[n], (), TIMEOUT_LOOP)
            return rawcpu_argv(images[n], symbols[n]["_start"], symbols[n]["loop_done"])

        self._run_pairs("cpu", ["pvboot", "unicorn"], argv_for, lambda side: sizes,
                        lambda side: _check_pvboot if side == "pvboot" else _check_raw)

    def rows_cpu(self, time_key):
        measurement = "CPU-bound real-mode loop"
        if self.build_skip:
            return [skipped_row("cpu.loop", measurement, "M it/s", self.build_skip)]
        sizes = (self.sizes["cpu_small"], self.sizes["cpu_big"])
        pv = side_from_samples("pvboot", self._pair_samples("cpu", "pvboot", sizes, 1e-6, time_key),
                               _delta(sizes, 1e-6))
        peer = side_from_samples("raw Unicorn", self._pair_samples("cpu", "unicorn", sizes, 1e-6,
                                                                   time_key), _delta(sizes, 1e-6))
        return [make_row("cpu.loop", measurement, "M it/s", pv, peer, "higher")]


# -- rows -------------------------------------------------------------------------------
def _delta(sizes, per_unit):
    small, big = sizes
    return per_unit * (big - small)


def side_from_records(records, group, side, label, value_of):
    samples, errors = [], []
    for rec in records:
        if rec["group"] == group and rec["side"] == side:
            if rec["ok"]:
                samples.append(value_of(rec))
            else:
                errors.append(rec["error"])
    return _side(label, samples, errors)


def side_from_samples(label, samples, delta):
    """A side measured by pairs of runs.  Its figure is delta / (median(t_big) -
    median(t_small)) over the rounds whose two runs both succeeded: one slow start-up
    in one round moves a median little, where it can wreck that round's own pair.
    `samples` keeps each round's own rate (None when lost in the noise) for the
    record; `median` is their median."""
    values = [s["value"] for s in samples if s["value"] is not None]
    errors = [s["why"] for s in samples if s["value"] is None]
    side = _side(label, values, errors)
    side["pairs"] = samples
    timed = [s for s in samples if "t_small" in s]
    side["figure"] = None
    if timed:
        t_small = statistics.median(s["t_small"] for s in timed)
        t_big = statistics.median(s["t_big"] for s in timed)
        side["t_small_median"], side["t_big_median"] = t_small, t_big
        if t_big > t_small:
            side["figure"] = delta / (t_big - t_small)
            side.pop("status", None)
        else:
            side["status"] = "failed: median big run not slower than the small one: below the noise"
    return side


def _side(label, samples, errors):
    median = statistics.median(samples) if samples else None
    side = {"label": label, "samples": samples, "median": median, "figure": median,
            "invalid": len(errors)}
    if errors:
        side["errors"] = errors
    if not samples:
        side["status"] = "failed: " + (errors[0] if errors else "no runs")
    return side


def side_skipped(label, reason):
    return {"label": label, "samples": [], "median": None, "figure": None,
            "status": f"skipped: {reason}"}


def skipped_row(row_id, measurement, unit, reason):
    return {"id": row_id, "measurement": measurement, "unit": unit, "status": f"skipped: {reason}",
            "pvboot": None, "peer": None, "ratio": None, "target": TARGETS.get(row_id),
            "met": None, "missed_by": None}


def make_row(row_id, measurement, unit, pv, peer, better):
    """ratio = pvboot's figure / the peer's figure; `better` says which way is good
    for this unit ("lower" for times and memory, "higher" for rates)."""
    ratio = None
    if pv["figure"] is not None and peer["figure"] is not None and peer["figure"] > 0:
        ratio = pv["figure"] / peer["figure"]
    target = TARGETS.get(row_id)
    met, missed_by = judge(target, pv["figure"], ratio)
    return {"id": row_id, "measurement": measurement, "unit": unit, "better": better,
            "status": pv.get("status", "ok"), "pvboot": pv, "peer": peer, "ratio": ratio,
            "target": target, "met": met, "missed_by": missed_by}


def judge(target, value, ratio):
    """(met, missed_by): missed_by is the factor by which the figure must improve to
    meet the target (> 1) when it is missed."""
    if target is None:
        return None, None
    kind, goal = target["kind"], target["value"]
    got = ratio if kind.endswith("_ratio") else value
    if got is None or got <= 0:
        return None, None
    if kind.startswith("min"):
        return got >= goal, (None if got >= goal else goal / got)
    return got <= goal, (None if got <= goal else got / goal)


# -- output -----------------------------------------------------------------------------
def fmt_value(value, unit):
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MiB/s":
        return f"{value:.1f} MiB/s"
    if unit == "/s":
        return f"{value:,.0f} /s"
    if unit == "M it/s":
        return f"{value:.1f} M it/s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:g} {unit}"


def table_lines(rows):
    """The aligned table, then numbered notes for every cell that has no figure."""
    header = ("measurement", "pvboot", "peer", "ratio", "target", "met", "missed by")
    notes = []

    def note(text):
        if text not in notes:
            notes.append(text)
        return notes.index(text) + 1

    def cell(row, which):
        side = row[which]
        if side is None:
            return f"n/a [{note(row['status'])}]" if which == "pvboot" else "-"
        if side["figure"] is None:
            return f"n/a [{note(side['label'] + ': ' + side.get('status', 'no figure'))}]"
        text = fmt_value(side["figure"], row["unit"])
        if which == "peer":
            text += f" {side['label']}"
        if side.get("invalid"):
            text += f" ({side['invalid']} bad [{note(side['label'] + ': ' + side['errors'][0])}])"
        return text

    lines = []
    for row in rows:
        lines.append((
            row["measurement"],
            cell(row, "pvboot"),
            cell(row, "peer"),
            "-" if row["ratio"] is None else f"{row['ratio']:.3f}x",
            row["target"]["text"] if row["target"] else "-",
            {True: "yes", False: "NO", None: "-"}[row["met"]],
            "-" if row["missed_by"] is None else f"{row['missed_by']:.2f}x",
        ))
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    out += [f"[{i}] {text}" for i, text in enumerate(notes, 1)]
    return out


def machine_description():
    cpu = "?"
    info = _read_text("/proc/cpuinfo") or ""
    found = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    if found:
        cpu = found.group(1).strip()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        import unicorn
        unicorn_version = unicorn.__version__
    except ImportError:
        unicorn_version = None
    qemu_version = None
    if shutil.which(QEMU):
        try:
            qemu_version = subprocess.run([QEMU, "--version"], capture_output=True, text=True,
                                          timeout=30).stdout.splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            pass
    seabios = None
    if shutil.which("dpkg-query"):
        try:
            seabios = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "seabios"],
                                     capture_output=True, text=True, timeout=30).stdout or None
        except (OSError, subprocess.TimeoutExpired):
            pass
    mem = re.search(r"^MemTotal:\s*(\d+)", _read_text("/proc/meminfo") or "", re.M)
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "memory_mib": int(mem.group(1)) // 1024 if mem else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "unicorn": unicorn_version,
        "qemu": qemu_version,
        "seabios": seabios,
        "loadavg_start": _loadavg(),
    }


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


CLOCK_TEXT = {"wall": "wall time", "cpu": "CPU time (user + system of the process and "
               "the children it reaped: pvboot's blkback; QEMU's threads)"}


def legend_lines(sizes):
    small, big, pio = sizes["bulk_small_mib"], sizes["bulk_big_mib"], sizes["bulk_pio_mib"]
    return [
        "boot: spawn to exit of `python -m pvboot.tools boot IMG` / qemu-system-i386 (-nic none, -m 64,",
        "  -snapshot); ratio = pvboot / QEMU.  RSS: pvboot + blkback, the sum of each process's",
        f"  peak (VmHWM, /proc polled every {RSS_POLL_SECONDS * 1000:g} ms); QEMU's one process.",
        f"42h read: ({big} - {small}) MiB / (t_{big} - t_{small}), t = the median over the "
        "rounds, 127 sectors",
        f"  a call ({pio} MiB for the PIO pair ata / QEMU IDE);",
        "  peers: pv-bounce - QEMU virtio-blk, ata - QEMU IDE, pv-direct and host - QEMU AHCI.",
        f"AH=01h: ({sizes['int_big']} - {sizes['int_small']}) trips; CPU loop: "
        f"({sizes['cpu_big']:,} - {sizes['cpu_small']:,}) iterations, the same subtraction;",
        "  its peer is bench/rawcpu.py, the same bytes on a bare Unicorn.  MB in targets = MiB.",
    ]


def machine_lines(machine):
    return [
        f"machine: {machine['cpu_model']}, {machine['cores']} cores "
        f"({machine['cores_usable']} usable), {machine['memory_mib']} MiB, Linux {machine['kernel']}",
        f"software: Python {machine['python']}, Unicorn {machine['unicorn']}, "
        f"{machine['qemu'] or 'QEMU not installed'}"
        + (f", SeaBIOS {machine['seabios']}" if machine.get("seabios") else ""),
        f"load average: start {machine['loadavg_start']}, end {machine.get('loadavg_end')}",
    ]


# -- command line -----------------------------------------------------------------------
def build_parser(prog="pvboot bench"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--runs", type=int, default=5, metavar="N",
                        help="rounds of each measurement; medians over them (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and one round: proves the benchmark works in seconds "
                             "(the figures mean nothing)")
    parser.add_argument("--json", metavar="FILE", help="write every raw sample, the medians and "
                        "the machine description to FILE")
    parser.add_argument("--only", metavar="GROUPS", default=",".join(GROUPS),
                        help=f"comma list of groups to run (default: all of {','.join(GROUPS)})")
    parser.add_argument("--bulk-mib", type=int, metavar="MIB",
                        help="size of the big bulk-read run (default 64; quick: 3; the PIO "
                             "pair ata / QEMU IDE: 8)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time the figures use: wall (default) or the processes' user + "
                             "system CPU time (steadier on a busy machine; both are in the JSON)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv=None, prog="pvboot bench"):
    args = build_parser(prog).parse_args(argv)
    groups = tuple(g.strip() for g in args.only.split(",") if g.strip())
    unknown = set(groups) - set(GROUPS)
    if unknown or not groups:
        print(f"{prog}: error: unknown group {sorted(unknown)[0] if unknown else '(none)'!r} "
              f"(use {', '.join(GROUPS)})", file=sys.stderr)
        return 2
    runs = 1 if args.quick else args.runs
    if runs < 1:
        print(f"{prog}: error: --runs must be at least 1", file=sys.stderr)
        return 2
    sizes = dict(QUICK_SIZES if args.quick else FULL_SIZES)
    if args.bulk_mib:
        if args.bulk_mib <= sizes["bulk_small_mib"]:
            print(f"{prog}: error: --bulk-mib must be above {sizes['bulk_small_mib']}",
                  file=sys.stderr)
            return 2
        sizes["bulk_big_mib"] = args.bulk_mib

    def log(line):
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    machine = machine_description()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="pvboot-bench-") as tmp:
        bench = Bench(runs, sizes, tmp, log=log, groups=groups)
        bench.run()
    machine["loadavg_end"] = _loadavg()
    duration = time.time() - started
    other = "cpu" if args.clock == "wall" else "wall"
    rows = bench.rows(args.clock)
    rows_other = bench.rows(other)
    lines = table_lines(rows)
    lines_other = table_lines(rows_other)
    print(f"pvboot bench: {runs} round(s), pvboot and its peer alternating; medians of "
          f"{args.clock} time" + (" (--quick: sizes too small to mean anything)" if args.quick else ""))
    for line in machine_lines(machine):
        print(line)
    print()
    for line in lines:
        print(line)
    print()
    for line in legend_lines(sizes):
        print(line)
    print()
    print(f"The same runs timed by {CLOCK_TEXT[other]}:")
    for line in lines_other:
        print(line)
    if args.json:
        report = {
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(duration, 1),
            "machine": machine,
            "config": {"runs": runs, "quick": args.quick, "groups": list(groups),
                       "clock": args.clock, "pvboot_bytecode": "cached (PYTHONPYCACHEPREFIX, "
                       "warmed up by one unmeasured run)",
                       "sizes": sizes, "qemu_memory_mb": QEMU_MEMORY_MB,
                       "rss_poll_s": RSS_POLL_SECONDS},
            "rows": rows,
            "table": lines,
            f"rows_{other}": rows_other,
            f"table_{other}": lines_other,
            "runs": bench.records,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
