"""The bench's measurements: which processes run, in which order (pvboot and its
peer alternating in each round), and the rows made from their records for either
clock.  docs/tools.md says what each group measures.
"""
from pathlib import Path

from pvboot.tools import mkimage
from pvboot.tools.bench import batch, formats, guests
from pvboot.tools.demo import write_demo_disk
from pvboot.tools.bench.processes import (
    TIMEOUT_BOOT, TIMEOUT_LOOP, check_pvboot, check_qemu, check_raw, floor_argv, interpreter_argv,
    pvboot_argv, pvboot_drivers, pvboot_env, qemu_argv, qemu_missing, rawcpu_argv, run_process,
    serve_argv, REPO)
from pvboot.tools.bench.warm import WarmServer
from pvboot.tools.bench.table import (
    pair_delta, make_row, side_from_records, side_from_samples, side_skipped, skipped_row)


GROUPS = ("boot", "bulk", "int", "cpu", "formats", "batch")
PIO_SIDES = ("ata", "qemu-ide")

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
        self.warm_skip = "not run"   # why the boot rows' warm server did not serve

    # one process, recorded
    def _run(self, group, side, size, round_, argv, timeout, check, rss=False, env=None):
        run = run_process(argv, timeout, cwd=REPO, env=env or self.env, rss=rss)
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
        demo = write_demo_disk(self.work / "warmup-demo.img")
        self._run("warmup", "pvboot demo", None, 0, pvboot_argv(demo), TIMEOUT_BOOT,
                  check_pvboot)
        if not self.qemu_skip:
            self._run("warmup", "qemu demo", None, 0, qemu_argv(demo, snapshot=True),
                      TIMEOUT_BOOT, check_qemu)
        if not self.build_skip and "cpu" in self.groups:
            image, symbols = guests.cpuloop_image(self.work / "warmup-cpu.img", 1000)
            self._run("warmup", "unicorn", None, 0,
                      rawcpu_argv(image, symbols["_start"], symbols["loop_done"]),
                      TIMEOUT_BOOT, check_raw)

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
                    write_demo_disk(path)
                else:
                    mkimage.build_image(kind, path)
                images[key] = path
            except Exception as exc:            # MissingTool names the Debian package
                self.boot_skipped[key] = str(exc).strip().splitlines()[0]
        # What each image prints on COM1 near its end: the demo's verdict, and the file
        # both loaders' default configurations print (tools/mkimage.py) just before
        # they power off.
        markers = {"demo": "PASS"}
        markers["grub-fat"] = markers["syslinux"] = mkimage.HELLO_TEXT.strip().splitlines()[0]
        # The "warm" rows: the same command with a `pvboot serve` running (tools/serve.py).
        warm = WarmServer(serve_argv(self.work / "serve.sock"), self.work / "serve.log",
                          cwd=REPO, env=self.env)
        self.warm_skip = warm.start()
        try:
            for round_ in range(self.runs):
                self._run("boot", "floor", None, round_, floor_argv(), TIMEOUT_BOOT, check_raw)
                self._run("boot", "interpreter floor", None, round_, interpreter_argv(), TIMEOUT_BOOT,
                          check_raw)
                for key, path in images.items():
                    marker, poweroff, rss = markers.get(key), key != "demo", key == "grub-fat"

                    def check(r, m=marker, p=poweroff):
                        return check_pvboot(r, m, p)
                    self._run("boot", f"pvboot {key}", None, round_, pvboot_argv(path),
                              TIMEOUT_BOOT, check, rss=rss)
                    if not self.qemu_skip:
                        self._run("boot", f"qemu {key}", None, round_,
                                  qemu_argv(path, snapshot=True), TIMEOUT_BOOT,
                                  lambda r, m=marker, p=poweroff: check_qemu(r, m, p), rss=rss)
                    if not self.warm_skip:
                        record = self._run("boot", f"pvboot {key} warm", None, round_,
                                           pvboot_argv(path), TIMEOUT_BOOT, check,
                                           env=warm.client_env(self.env))
                        warm.add_command_cpu(record)
                        if not self.qemu_skip:    # pvboot and QEMU still alternate
                            self._run("boot", f"qemu {key}", None, round_,
                                      qemu_argv(path, snapshot=True), TIMEOUT_BOOT,
                                      lambda r, m=marker, p=poweroff: check_qemu(r, m, p),
                                      rss=rss)
        finally:
            warm.stop()

    def _peer(self, label, build):
        return side_skipped(label, self.qemu_skip) if self.qemu_skip else build()

    def rows_boot(self, time_key):
        rows = []
        # Each image cold, then each with the warm server; the peer is QEMU's runs of it.
        for suffix, side_suffix, title_suffix in (("", "", ""),
                                                  (".warm", " warm", ", warm (pvboot serve)")):
            for key, title, _kind in BOOT_IMAGES:
                row_id = f"boot.{key}{suffix}"
                measurement = f"boot to power-off: {title}{title_suffix}"
                skipped = self.boot_skipped.get(key) or (suffix and self.warm_skip)
                if skipped:
                    rows.append(skipped_row(row_id, measurement, "s", skipped))
                    continue
                pv = side_from_records(self.records, "boot", f"pvboot {key}{side_suffix}",
                                       "pvboot", lambda r: r[time_key])
                peer = self._peer("QEMU", lambda: side_from_records(
                    self.records, "boot", f"qemu {key}", "QEMU", lambda r: r[time_key]))
                rows.append(make_row(row_id, measurement, "s", pv, peer, "lower"))
        # The floor under the boot rows: Python and Unicorn started, against QEMU's whole
        # demo boot (informational: no target).
        if "demo" not in self.boot_skipped:
            pv = side_from_records(self.records, "boot", "floor", "Python + Unicorn",
                                   lambda r: r[time_key])
            peer = self._peer("QEMU demo", lambda: side_from_records(
                self.records, "boot", "qemu demo", "QEMU demo", lambda r: r[time_key]))
            rows.append(make_row("boot.floor", "start-up floor: Python + import unicorn", "s",
                                 pv, peer, "lower"))
            # The warm rows' floor: what their client pays before the server has the request.
            pv = side_from_records(self.records, "boot", "interpreter floor", "Python alone",
                                   lambda r: r[time_key])
            rows.append(make_row("boot.floor-python", "start-up floor (warm rows): Python alone",
                                 "s", pv, peer, "lower"))
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
                        lambda side: check_qemu if side.startswith("qemu-") else check_pvboot)

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
                pair_delta(self._bulk_sizes(path), 1.0))
            peer = self._peer(QEMU_DISK_LABELS[peer_key], lambda: side_from_samples(
                QEMU_DISK_LABELS[peer_key], self._pair_samples(
                    "bulk", peer_key, self._bulk_sizes(peer_key), 1.0, time_key),
                pair_delta(self._bulk_sizes(peer_key), 1.0)))
            rows.append(make_row(row_id, measurement, "MiB/s", pv, peer, "higher"))
        return rows

    # -- the same bulk read from a qcow2 image (bench/formats.py) ---------------------------
    def run_formats(self):
        formats.run(self)

    def rows_formats(self, time_key):
        return formats.rows(self, time_key)

    # -- many images: pvboot batch against QEMUs side by side (bench/batch.py) --------------
    def run_batch(self):
        batch.run(self)

    def rows_batch(self, time_key):
        return batch.rows(self, time_key)

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
            lambda side: check_pvboot if side == "pvboot" else check_qemu)

    def rows_int(self, time_key):
        measurement = "INT 13h AH=01h round trips"
        if self.build_skip:
            return [skipped_row("int.ah01", measurement, "/s", self.build_skip)]
        sizes = (self.sizes["int_small"], self.sizes["int_big"])
        pv = side_from_samples("pvboot", self._pair_samples("int", "pvboot", sizes, 1.0, time_key),
                               pair_delta(sizes, 1.0))
        peer = self._peer("QEMU", lambda: side_from_samples(
            "QEMU", self._pair_samples("int", "qemu", sizes, 1.0, time_key), pair_delta(sizes, 1.0)))
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
                        lambda side: check_pvboot if side == "pvboot" else check_raw)

    def rows_cpu(self, time_key):
        measurement = "CPU-bound real-mode loop"
        if self.build_skip:
            return [skipped_row("cpu.loop", measurement, "M it/s", self.build_skip)]
        sizes = (self.sizes["cpu_small"], self.sizes["cpu_big"])
        pv = side_from_samples("pvboot", self._pair_samples("cpu", "pvboot", sizes, 1e-6, time_key),
                               pair_delta(sizes, 1e-6))
        peer = side_from_samples("raw Unicorn", self._pair_samples("cpu", "unicorn", sizes, 1e-6,
                                                                   time_key), pair_delta(sizes, 1e-6))
        return [make_row("cpu.loop", measurement, "M it/s", pv, peer, "higher")]
