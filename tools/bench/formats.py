"""The bench's `formats` group: INT 13h AH=42h bulk read of a qcow2 image vs the same
data raw (goal: qcow2 >= 0.7x raw), and vs QEMU+SeaBIOS reading the same qcow2 through
virtio-blk.

The bulk group's paired sizes and method (bulkread.S on a small and a big image; the
rate is the difference in data over the difference in the median times, so start-up
cancels out), on pvboot's PV direct path, where the storage costs show most.  The qcow2
images are made from the raw ones by qemu-img.
"""
import shutil
import subprocess

from pvboot.tools.bench import guests
from pvboot.tools.bench.processes import TIMEOUT_LOOP, check_pvboot, check_qemu, pvboot_argv, qemu_argv
from pvboot.tools.bench.table import make_row, pair_delta, side_from_samples, skipped_row

PV_OPTIONS = ("--driver", "xen", "--pv-path", "direct")
# Sides, pvboot and QEMU alternating as in every group.
ORDER = ("pv-qcow2", "qemu-virtio-qcow2", "pv-raw")
LABELS = {"pv-qcow2": "pvboot qcow2", "pv-raw": "pvboot raw",
          "qemu-virtio-qcow2": "QEMU virtio qcow2"}


def sizes(bench):
    return bench.sizes["bulk_small_mib"], bench.sizes["bulk_big_mib"]


def _qcow2(raw):
    out = raw.with_suffix(".qcow2")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)],
                   check=True, capture_output=True, timeout=TIMEOUT_LOOP)
    return out


def _qemu_qcow2_argv(image):
    # qemu_argv attaches raw images; the same command with the qcow2 driver.
    return [arg.replace(",format=raw", ",format=qcow2") for arg in qemu_argv(image, "qemu-virtio")]


def skip_reason(bench):
    return bench.build_skip or (None if shutil.which("qemu-img") else
                                "qemu-img not installed (Debian qemu-utils)")


def run(bench):
    """The group's runs, recorded by ``bench`` (a measure.Bench)."""
    if skip_reason(bench):
        return
    images = {}
    for size in sizes(bench):
        raw = guests.bulkread_image(bench.work / f"formats-{size}.img", size)
        images[("raw", size)], images[("qcow2", size)] = raw, _qcow2(raw)

    def argv_for(side, size):
        if side == "qemu-virtio-qcow2":
            return _qemu_qcow2_argv(images[("qcow2", size)])
        return pvboot_argv(images[(side[3:], size)], PV_OPTIONS, TIMEOUT_LOOP)

    order = [side for side in ORDER if not (bench.qemu_skip and side.startswith("qemu-"))]
    bench._run_pairs("formats", order, argv_for, lambda side: sizes(bench),
                     lambda side: check_qemu if side.startswith("qemu-") else check_pvboot)


def rows(bench, time_key):
    """Two rows: pvboot's qcow2 beside its raw, and beside QEMU on the same qcow2."""
    measurement = "INT 13h 42h read, qcow2 (pv-direct)"
    reason = skip_reason(bench)
    if reason:
        return [skipped_row("formats.qcow2", measurement + " vs raw", "MiB/s", reason),
                skipped_row("formats.qcow2-qemu", measurement + " vs QEMU", "MiB/s", reason)]
    pair = sizes(bench)

    def side(key):
        return side_from_samples(LABELS[key], bench._pair_samples("formats", key, pair, 1.0,
                                                                  time_key),
                                 pair_delta(pair, 1.0))
    qcow2 = side("pv-qcow2")
    return [make_row("formats.qcow2", measurement + " vs raw", "MiB/s", qcow2, side("pv-raw"),
                     "higher"),
            make_row("formats.qcow2-qemu", measurement + " vs QEMU", "MiB/s", qcow2,
                     bench._peer(LABELS["qemu-virtio-qcow2"], lambda: side("qemu-virtio-qcow2")),
                     "higher")]
