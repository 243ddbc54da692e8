"""The bench's batch group (tools/bench/batch.py): `pvboot batch` of many demo disks
beside QEMU+SeaBIOS booting the same disks with the same parallelism, run end to end
with --quick (speed itself is the bench's business, not the tests')."""
import json
import os
import shutil
import statistics
import subprocess
import sys

import pytest

from pvboot.tools.batch import default_workers
from pvboot.tools.bench import cli as bench_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    r = subprocess.run([sys.executable, "-m", "pvboot.tools", "bench", "--quick", "-q",
                        "--only", "batch", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return r.stdout, json.loads(out.read_text())


def test_both_sides_boot_every_image(report):
    _table, data = report
    count = bench_cli.QUICK_SIZES["batch_images"]
    assert data["config"]["sizes"]["batch_images"] == count
    assert data["config"]["sizes"]["batch_jobs"] == default_workers()
    records = [rec for rec in data["runs"] if rec["group"] == "batch"]
    sides = {rec["side"] for rec in records}
    assert "pvboot batch" in sides and all(rec["ok"] for rec in records), records
    if shutil.which("qemu-system-i386"):
        assert "qemu batch" in sides
    # pvboot and QEMU alternate within the round; each run is the whole set of images.
    assert [rec["side"] for rec in records][:2] == (
        ["pvboot batch", "qemu batch"] if "qemu batch" in sides else ["pvboot batch"])
    assert {rec["size"] for rec in records} == {count}
    warmup = [rec for rec in data["runs"] if rec["group"] == "warmup"
              and rec["side"] == "pvboot batch"]
    assert len(warmup) == 1 and warmup[0]["ok"] and warmup[0]["size"] == 1


def test_row_is_images_per_second_of_the_recorded_runs(report):
    table, data = report
    count = bench_cli.QUICK_SIZES["batch_images"]
    for rows, key in ((data["rows"], "wall_s"), (data["rows_cpu"], "cpu_s")):
        (row,) = rows
        assert row["id"] == "batch.demo" and row["unit"] == "images/s"
        assert row["target"] == {"kind": "min_ratio", "value": 3.0, "text": ">= 3x QEMU"}
        assert row["measurement"] in table
        for side, name in ((row["pvboot"], "pvboot batch"), (row["peer"], "qemu batch")):
            times = [rec[key] for rec in data["runs"]
                     if rec["group"] == "batch" and rec["side"] == name]
            if not times:
                assert side["status"].startswith("skipped")
                continue
            assert side["figure"] == pytest.approx(statistics.median(count / t for t in times))
        if row["peer"]["figure"]:
            assert row["ratio"] == pytest.approx(row["pvboot"]["figure"] / row["peer"]["figure"])
    assert f"-j {default_workers()}" in table
