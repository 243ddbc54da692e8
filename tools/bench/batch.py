"""The bench's `batch` group: many demo-sized images, each its own file, booted by
`pvboot batch MANIFEST -j J` and by QEMU + SeaBIOS (bench/qemupool.py, J processes at a
time, -snapshot), both timed spawn to exit in the same round, alternating.  Figure:
images per second = images / time, the median over the rounds (goal: >= 3x QEMU).

J is the cores this process may use (tools/batch.py default_workers, `pvboot batch`'s
own default), the same on both sides.
"""
import json
import sys

from pvboot.tools.batch import default_workers
from pvboot.tools.bench.processes import qemu_argv
from pvboot.tools.bench.table import make_row, side_from_records
from pvboot.tools.demo import write_demo_disk

MARKER = "PASS"                    # the demo's verdict on COM1
QEMU_EXIT = 1                      # isa-debug-exit: (value 0 << 1) | 1
ENTRY_TIMEOUT = 20.0               # each manifest entry's own --timeout
TIMEOUT_BATCH = 900.0              # the bench's bound on one whole batch process


def jobs():
    return default_workers()


def _images(bench):
    folder = bench.work / "batch"
    folder.mkdir(exist_ok=True)
    return [write_demo_disk(folder / f"demo-{i:03d}.img")
            for i in range(bench.sizes["batch_images"])]


def _manifest(bench, images, name="pvboot-batch.toml"):
    path = bench.work / "batch" / name
    entries = [f'[[boot]]\nname = "{image.stem}"\nimage = "{image.name}"\n'
               f'expect = "{MARKER}"\ntimeout = {ENTRY_TIMEOUT:g}\n' for image in images]
    path.write_text("\n".join(entries))
    return path


def _pvboot_argv(manifest):
    return [sys.executable, "-m", "pvboot.tools", "batch", str(manifest), "-j", str(jobs()),
            "--no-progress"]


def _qemu_plan(bench, images):
    path = bench.work / "batch" / "qemu-plan.json"
    path.write_text(json.dumps({"jobs": jobs(), "marker": MARKER, "returncode": QEMU_EXIT,
                                "argvs": [qemu_argv(image, snapshot=True) for image in images]}))
    return path


def check_batch(run, count):
    """`pvboot batch` exits 0 when every entry passed; its summary line says how many."""
    if run["timed_out"]:
        return "timed out"
    summary = next((line for line in run["stderr"].splitlines()
                    if line.startswith("pvboot batch: ")), "")
    if run["returncode"] != 0 or f"{count} pass" not in summary:
        last = (run["stderr"].strip().splitlines() or ["?"])[-1]
        return f"exit status {run['returncode']}: {summary or last}"
    return None


def check_pool(run):
    if run["timed_out"]:
        return "timed out"
    if run["returncode"] != 0:
        return (run["stderr"].strip().splitlines() or ["?"])[-1]
    return None


def run(bench):
    """The group's runs, recorded by `bench` (a measure.Bench)."""
    images = _images(bench)
    count = len(images)
    # Unmeasured: a one-image batch compiles and caches the bytecode of what `pvboot
    # batch` imports beyond `pvboot boot` (the bench's warm-up runs only the latter).
    bench._run("warmup", "pvboot batch", 1, 0, _pvboot_argv(_manifest(bench, images[:1], "one.toml")),
               TIMEOUT_BATCH, lambda r: check_batch(r, 1))
    pvboot = _pvboot_argv(_manifest(bench, images))
    qemu = [sys.executable, "-m", "pvboot.tools.bench.qemupool", str(_qemu_plan(bench, images))]
    for round_ in range(bench.runs):
        bench._run("batch", "pvboot batch", count, round_, pvboot, TIMEOUT_BATCH,
                   lambda r: check_batch(r, count))
        if not bench.qemu_skip:
            bench._run("batch", "qemu batch", count, round_, qemu, TIMEOUT_BATCH, check_pool)


def rows(bench, time_key):
    count = bench.sizes["batch_images"]
    measurement = f"pvboot batch: {count} demo images, -j {jobs()}"

    def rate(record):
        return count / record[time_key]

    pv = side_from_records(bench.records, "batch", "pvboot batch", "pvboot", rate)
    peer = bench._peer("QEMU", lambda: side_from_records(bench.records, "batch", "qemu batch",
                                                         "QEMU", rate))
    return [make_row("batch.demo", measurement, "images/s", pv, peer, "higher")]

