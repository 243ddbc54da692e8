"""The bench's table: medians per side, ratio and target per row, the aligned table
with its notes, the legend and the description of the machine it ran on.
"""
import os
import platform
import re
import shutil
import statistics
import subprocess

import unicorn

from pvboot.tools.bench.processes import QEMU, RSS_POLL_SECONDS, read_text


# Targets: issue 16's goals, each a ratio against the row's peer measured in the same
# run (absolute figures differ 2x between machines), except peak RSS, which is MiB.
TARGETS = {
    "boot.demo": {"kind": "max_ratio", "value": 0.8, "text": "<= 0.8x QEMU"},
    "boot.grub-fat": {"kind": "max_ratio", "value": 0.8, "text": "<= 0.8x QEMU"},
    "boot.syslinux": {"kind": "max_ratio", "value": 0.5, "text": "<= 0.5x QEMU"},
    "boot.demo.warm": {"kind": "max_ratio", "value": 0.8, "text": "<= 0.8x QEMU"},
    "boot.grub-fat.warm": {"kind": "max_ratio", "value": 0.8, "text": "<= 0.8x QEMU"},
    "boot.syslinux.warm": {"kind": "max_ratio", "value": 0.5, "text": "<= 0.5x QEMU"},
    "bulk.pv-bounce": {"kind": "min_ratio", "value": 1.5, "text": ">= 1.5x QEMU virtio"},
    "bulk.pv-direct": {"kind": "min_ratio", "value": 4.0, "text": ">= 4x QEMU AHCI"},
    "bulk.ata": {"kind": "min_ratio", "value": 1.0, "text": ">= 1x QEMU IDE"},
    "int.ah01": {"kind": "min_ratio", "value": 4.0, "text": ">= 4x QEMU"},
    "cpu.loop": {"kind": "min_ratio", "value": 0.8, "text": ">= 0.8x raw Unicorn"},
    "rss.grub-fat": {"kind": "max_value", "value": 60.0, "text": "<= 60 MiB"},
    "formats.qcow2": {"kind": "min_ratio", "value": 0.7, "text": ">= 0.7x raw"},
    "batch.demo": {"kind": "min_ratio", "value": 3.0, "text": ">= 3x QEMU"},
}


# -- rows -------------------------------------------------------------------------------
def pair_delta(sizes, per_unit):
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
    if unit == "images/s":
        return f"{value:.1f} images/s"
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
    info = read_text("/proc/cpuinfo") or ""
    found = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    if found:
        cpu = found.group(1).strip()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    unicorn_version = unicorn.__version__
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
    mem = re.search(r"^MemTotal:\s*(\d+)", read_text("/proc/meminfo") or "", re.M)
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
        "loadavg_start": loadavg(),
    }


def loadavg():
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
        "  floor: spawn to exit of `python -c 'import unicorn; unicorn.Uc(...)'` (no target): the",
        "  start-up under every boot row, as a share of QEMU's whole demo boot; floor (warm rows):",
        "  `python -c pass`, the interpreter with this environment's site, all a warm run's client",
        "  pays before the server has the request.",
        f"42h read: ({big} - {small}) MiB / (t_{big} - t_{small}), t = the median over the "
        "rounds, 127 sectors",
        f"  a call ({pio} MiB for the PIO pair ata / QEMU IDE);",
        "  peers: pv-bounce - QEMU virtio-blk, ata - QEMU IDE, pv-direct and host - QEMU AHCI.",
        f"AH=01h: ({sizes['int_big']} - {sizes['int_small']}) trips; CPU loop: "
        f"({sizes['cpu_big']:,} - {sizes['cpu_small']:,}) iterations, the same subtraction;",
        "  its peer is bench/rawcpu.py, the same bytes on a bare Unicorn.  MB in targets = MiB.",
        f"formats: the 42h read ({big} - {small} MiB) of the same disk as qcow2 (qemu-img convert) "
        "on pv-direct;",
        "  peers: pv-direct on the raw disk, QEMU virtio-blk on the qcow2.",
        f"batch: {sizes['batch_images']} demo disks, each its own file: spawn to exit of `python -m "
        f"pvboot.tools batch MANIFEST -j {sizes['batch_jobs']}`",
        f"  against bench/qemupool.py running QEMU (-snapshot) on the same disks {sizes['batch_jobs']} "
        "at a time, each checked for PASS;",
        f"  images/s = {sizes['batch_images']} / time; -j {sizes['batch_jobs']} = the cores usable "
        "here (CPU time: every worker, blkback and QEMU reaped).",
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
