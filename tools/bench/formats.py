"""Bench row: INT 13h AH=42h bulk read of a qcow2 image vs the same data raw (goal:
qcow2 >= 0.7x raw), and QEMU+SeaBIOS reading the same qcow2 through virtio-blk.

The same paired-size method as the main bench (bulkread.S reading a small and a big
image; the rate is the difference in data over the difference in time, so start-up
cancels out), on pvboot's PV direct path.  Run it as `python -m
pvboot.tools.bench.formats [--big-mib N] [--runs N]`; it prints one table.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pvboot.tools.bench import guests
from pvboot.tools.bench.processes import (TIMEOUT_LOOP, check_pvboot, check_qemu, pvboot_argv,
                                          qemu_argv, qemu_missing, run_process)

SMALL_MIB = 1
GOAL_RATIO = 0.7


def _images(work, big_mib):
    images = {}
    for mib in (SMALL_MIB, big_mib):
        raw = guests.bulkread_image(work / f"bulk-{mib}.img", mib)
        qcow2 = work / f"bulk-{mib}.qcow2"
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)],
                       check=True, capture_output=True, timeout=120)
        images[("raw", mib)], images[("qcow2", mib)] = raw, qcow2
    return images


def _qemu_qcow2_argv(image):
    # The main bench attaches raw images; the same command with the qcow2 driver.
    return [arg.replace(",format=raw", ",format=qcow2") for arg in qemu_argv(image, "qemu-virtio")]


def _rate(argv_for, check, big_mib, runs):
    """Median MiB/s over `runs` paired runs; 0.0 when every big run was lost in the
    start-up noise; None if a run failed (`check`: the bench's verdict on a run)."""
    rates = []
    for _ in range(runs):
        times = {}
        for mib in (SMALL_MIB, big_mib):
            run = run_process(argv_for(mib), TIMEOUT_LOOP)
            if check(run):
                return None
            times[mib] = run["wall"]
        if times[big_mib] > times[SMALL_MIB]:
            rates.append((big_mib - SMALL_MIB) / (times[big_mib] - times[SMALL_MIB]))
    return statistics.median(rates) if rates else 0.0


def measure(big_mib=32, runs=3, work=None):
    """{"raw": MiB/s, "qcow2": MiB/s, "qemu-virtio-qcow2": MiB/s or None}."""
    with tempfile.TemporaryDirectory(prefix="pvboot-bench-fmt-", dir=work) as tmp:
        images = _images(Path(tmp), big_mib)
        options = ("--driver", "xen", "--pv-path", "direct")
        result = {fmt: _rate(lambda mib, f=fmt: pvboot_argv(images[(f, mib)], options,
                                                            TIMEOUT_LOOP),
                                 check_pvboot, big_mib, runs)
                  for fmt in ("raw", "qcow2")}
        result["qemu-virtio-qcow2"] = None if qemu_missing() else _rate(
            lambda mib: _qemu_qcow2_argv(images[("qcow2", mib)]), check_qemu, big_mib, runs)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pvboot.tools.bench.formats",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--big-mib", type=int, default=32, choices=range(2, 257), metavar="N")
    p.add_argument("--runs", type=int, default=3, choices=range(1, 21), metavar="N")
    args = p.parse_args(argv)
    rates = measure(args.big_mib, args.runs)
    fmt = lambda v: "failed" if v is None else (f"{v:8.1f} MiB/s" if v else "below noise")  # noqa: E731
    print("INT 13h 42h bulk read, PV direct path")
    for key in ("raw", "qcow2", "qemu-virtio-qcow2"):
        print(f"  {key:20s} {fmt(rates[key])}")
    if rates["raw"] and rates["qcow2"]:
        ratio = rates["qcow2"] / rates["raw"]
        print(f"  qcow2/raw            {ratio:8.2f}x  (goal >= {GOAL_RATIO}x: "
              f"{'met' if ratio >= GOAL_RATIO else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
