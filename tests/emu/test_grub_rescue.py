"""A GRUB rescue image (grub-mkrescue, Debian grub-common + grub-pc-bin + xorriso)
booted as a hard disk, as a rescue USB stick is: GRUB's real-mode BIOS-call helper
patches its own segment immediates for every call, so with stale code INT 13h AH=48h
got the wrong DS and GRUB stopped with "attempt to read or write outside of disk".
The image carries a 100 MiB file (holes on the host) before a marker file that GRUB
must read past the disk's CHS range; QEMU + SeaBIOS boots the same image to the same
serial lines."""
import shutil
import subprocess

import pytest

from pvboot.tools import runner
from tests import qemu

MARKER = "PVBOOT-RESCUE-MARKER"
TAIL = "PVBOOT-TAIL-FILE"
GRUB_CFG = f"""serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
echo {MARKER}
cat /zz_tail.txt
halt
"""

needs_grub_mkrescue = pytest.mark.skipif(
    not (shutil.which("grub-mkrescue") and shutil.which("xorriso")),
    reason="grub-mkrescue/xorriso (Debian grub-common, grub-pc-bin, xorriso) not installed")


@pytest.fixture(scope="module")
def rescue_image(tmp_path_factory):
    root = tmp_path_factory.mktemp("rescue")
    tree = root / "tree"
    (tree / "boot" / "grub").mkdir(parents=True)
    (tree / "boot" / "grub" / "grub.cfg").write_text(GRUB_CFG)
    with open(tree / "big.bin", "wb") as big:
        big.truncate(100 << 20)
    (tree / "zz_tail.txt").write_text(TAIL + "\n")
    image = root / "rescue.iso"
    proc = subprocess.run(["grub-mkrescue", "-o", str(image), str(tree)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # The zeros of big.bin need no disk space on the host.
    subprocess.run(["fallocate", "--dig-holes", str(image)], check=False, timeout=60)
    return str(image)


def _serial_lines(text):
    return [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]


@needs_grub_mkrescue
def test_grub_rescue_image_as_a_hard_disk_reads_past_the_chs_range(rescue_image):
    result = runner.boot([rescue_image], timeout=120)
    assert result.stop.reason == "poweroff", result.stop
    lines = _serial_lines(result.console)
    assert lines[-2].endswith(MARKER) and lines[-1] == TAIL, lines


@needs_grub_mkrescue
@pytest.mark.skipif(not qemu.qemu_available(), reason="QEMU (Debian qemu-system-x86) not installed")
def test_grub_rescue_image_gives_qemus_serial_output(rescue_image):
    _exit, qemu_serial = qemu.run_qemu(rescue_image, timeout=60)
    result = runner.boot([rescue_image], timeout=120)
    assert TAIL in qemu_serial
    assert _serial_lines(result.console) == _serial_lines(qemu_serial)
