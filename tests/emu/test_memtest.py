"""memtest86+ from Debian (package memtest86+: /boot/memtest86+{ia32,x64}.bin, Linux
boot protocol images) loaded by GRUB's `linux` from a grub-mkrescue disk with its
serial console on: it measures the CPU clock (PIT channel 2 one-shot polled through
port 61h against rdtsc, with CPUID's TSC flag) and starts testing.  QEMU's figure
depends on the host, so the clock line is checked against the virtual TSC rate.
The x64 build needs long mode: it runs with --cpu qemu64, as under QEMU."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pvboot.emu.clock import TSC_HZ
from pvboot.tools import runner

MEMTEST = {"ia32": (Path("/boot/memtest86+ia32.bin"), "qemu32"),
           "x64": (Path("/boot/memtest86+x64.bin"), "qemu64")}
# memtest86+ draws its screen on the serial line with cursor movements in between.
TESTING = r"Status: (?:\x1b\[[0-9;?]*[A-Za-z])*Testing"
GRUB_CFG = """serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
linux /boot/memtest.bin console=ttyS0,115200
boot
"""


def _memtest_disk(tmp_path, binary):
    tree = tmp_path / "tree"
    (tree / "boot" / "grub").mkdir(parents=True)
    (tree / "boot" / "grub" / "grub.cfg").write_text(GRUB_CFG)
    shutil.copyfile(binary, tree / "boot" / "memtest.bin")
    image = tmp_path / "memtest.iso"
    proc = subprocess.run(["grub-mkrescue", "-o", str(image), str(tree)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return str(image)


@pytest.mark.skipif(not (shutil.which("grub-mkrescue") and shutil.which("xorriso")),
                    reason="grub-mkrescue/xorriso (Debian grub-common, grub-pc-bin, xorriso) "
                           "not installed")
@pytest.mark.parametrize("build", sorted(MEMTEST))
def test_memtest_measures_the_clock_and_starts_testing(tmp_path, build):
    binary, cpu = MEMTEST[build]
    if not binary.exists():
        pytest.skip(f"{binary} missing (Debian package memtest86+)")
    # The timeout only bounds a broken run; the run ends when the status line appears.
    result = runner.boot([_memtest_disk(tmp_path, binary)], cpu=cpu, expect=TESTING,
                         timeout=600)
    assert result.stop.reason == "expected", (result.stop, result.console[-2000:])
    clock = re.search(r"CLK/Temp: +(\S+)", result.console)
    assert clock and clock.group(1) == f"{TSC_HZ // 1_000_000}MHz", result.console[-2000:]
