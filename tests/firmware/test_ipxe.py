"""Debian's iPXE CD (package ipxe: ISOLINUX loads ipxe.krn through the Linux boot
protocol; iPXE then drives the BIOS console, its timers and PCI BIOS calls, finds no
network device and gives the boot back with INT 18h) on the PV CD and on the ATAPI
drive, side by side with QEMU+SeaBIOS (-nic none): the same lines, in the same order,
from ISOLINUX's banner to iPXE's last word.  iPXE writes only to the screen, so QEMU's
screen is read from its text buffer."""
from pathlib import Path

import pytest

from pvboot.tools import qemu, runner

IPXE_ISO = Path("/usr/lib/ipxe/ipxe.iso")
FIRST_LINE = "ISOLINUX"
LAST_LINE = "No more network devices"

needs_ipxe = pytest.mark.skipif(not IPXE_ISO.is_file(),
                                reason="Debian package ipxe not installed")


def guest_lines(screen):
    """The screen's lines from ISOLINUX's banner to iPXE's last line (the BIOS's own
    banner above differs: pvboot prints none)."""
    lines = screen.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(FIRST_LINE))
    last = next(i for i, line in enumerate(lines) if line.startswith(LAST_LINE))
    return lines[first:last + 1]


@pytest.fixture(scope="module")
def qemu_lines():
    if not qemu.qemu_available():
        pytest.skip("QEMU (Debian qemu-system-x86) not installed")
    if not IPXE_ISO.is_file():
        pytest.skip("Debian package ipxe not installed")
    # SeaBIOS goes on to the next boot device after iPXE's INT 18h; its message
    # marks that iPXE is done.
    result = qemu.run((), None, boot="cd", cdrom=str(IPXE_ISO), timeout=90,
                      screen_until=r"Booting from Floppy|No bootable device")
    assert result.outcome == qemu.SCREEN, result
    return guest_lines(result.screen)


@needs_ipxe
@pytest.mark.parametrize("cdrom_type", ["xenbus", "ioemu"])
def test_ipxe_cd_runs_as_under_qemu(qemu_lines, cdrom_type):
    result = runner.boot([], cdrom=str(IPXE_ISO), boot_from="cd", cdrom_type=cdrom_type,
                         timeout=60)
    assert (result.stop.reason, result.stop.detail) == ("no-boot", "boot code called INT 18h")
    lines = guest_lines(result.screen)
    assert "iPXE initialising devices...ok" in lines
    assert lines == qemu_lines
