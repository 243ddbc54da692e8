"""The built-in demo disk: roms/demo.bin in sector 0 followed by the known sector
pattern (tools/diskpattern.py) that the demo program reads back and checks."""
import contextlib
import os
import tempfile

from pvboot.roms import demo_program
from pvboot.tools.diskpattern import demo_disk_image
from pvboot.tools.runner import naming_file


def write_demo_disk(path):
    with naming_file(path), open(path, "wb") as f:
        f.write(demo_disk_image(demo_program()))
    return path


@contextlib.contextmanager
def demo_disk():
    """A demo disk in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="pvboot-demo-") as tmp:
        yield write_demo_disk(os.path.join(tmp, "demo.img"))
