"""The bench's formats group (tools/bench/formats.py): a qcow2 bulk read beside the same
data raw and beside QEMU on the same qcow2, run end to end with --quick (speed itself is
the bench's business, not the tests')."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.guests import build

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_formats_group_measures_every_side(tmp_path):
    if not build.tools_available() or shutil.which("qemu-img") is None:
        pytest.skip("GNU as/ld or qemu-img not installed")
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "pvboot.tools", "bench", "--quick", "-q",
                        "--only", "formats", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr
    rows = {row["id"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"formats.qcow2", "formats.qcow2-qemu"}
    records = [rec for rec in json.loads(out.read_text())["runs"] if rec["group"] == "formats"]
    sides = {rec["side"] for rec in records}
    assert {"pv-qcow2", "pv-raw"} <= sides and all(rec["ok"] for rec in records), records
    if shutil.which("qemu-system-i386"):
        assert "qemu-virtio-qcow2" in sides
    assert rows["formats.qcow2"]["target"]["value"] == 0.7
