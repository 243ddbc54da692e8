"""The qcow2-vs-raw bulk-read bench row (tools/bench/formats.py) runs end to end and
measures every side it can (speed itself is the bench's business, not the tests')."""
import shutil

import pytest

from pvboot.tools.bench import formats
from tests.guests import build


def test_every_side_is_measured(tmp_path):
    if not build.tools_available() or shutil.which("qemu-img") is None:
        pytest.skip("GNU as/ld or qemu-img not installed")
    rates = formats.measure(big_mib=2, runs=1, work=tmp_path)
    assert rates["raw"] is not None and rates["qcow2"] is not None
    if shutil.which("qemu-system-i386"):
        assert rates["qemu-virtio-qcow2"] is not None
