"""SYSLINUX's MEMDISK (Debian syslinux-common) loading a floppy image into RAM and
booting it: MEMDISK hooks INT 13h and INT 15h E820, moves itself to high conventional
memory and patches its own code on the way, so with stale translated code its
protected-mode part faulted right after the last INT 13h read.  The floppy's boot
sector prints a marker and exits; QEMU + SeaBIOS boots the same disk to the same
serial lines and exit."""
from pathlib import Path

import pytest

from pvboot.tools import mkimage, runner
from tests import qemu
from tests.conftest import assemble16

MEMDISK = Path("/usr/lib/syslinux/memdisk")
MARKER = "MEMDISK-FLOPPY-MARKER"
FLOPPY_SIZE = 1474560
CONFIG = """SERIAL 0 115200
PROMPT 0
TIMEOUT 1
DEFAULT memdisk
LABEL memdisk
  KERNEL memdisk
  INITRD floppy.img
  APPEND floppy
"""
FLOPPY_BOOT = f"""
        cli
        xor ax, ax
        mov ds, ax
        mov si, offset message
    next:
        lodsb
        test al, al
        jz done
        mov dx, 0x3f8
        out dx, al
        jmp next
    done:
        mov al, 0
        out 0xf4, al
        hlt
    message:
        .asciz "{MARKER}\\r\\n"
"""


@pytest.fixture(scope="module")
def memdisk_image(tmp_path_factory):
    if not MEMDISK.exists():
        pytest.skip(f"{MEMDISK} missing (Debian package syslinux-common)")
    floppy = assemble16(FLOPPY_BOOT).ljust(FLOPPY_SIZE, b"\0")
    path = tmp_path_factory.mktemp("memdisk") / "memdisk.img"
    try:
        mkimage.build_syslinux_image(path, config=CONFIG,
                                     files={"memdisk": MEMDISK.read_bytes(), "floppy.img": floppy})
    except mkimage.MissingTool as exc:
        pytest.skip(str(exc))
    return str(path)


def _lines(text):
    return [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]


def test_memdisk_boots_the_floppy_image_from_ram(memdisk_image):
    result = runner.boot([memdisk_image], timeout=60)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), (result.stop, result.console)
    assert _lines(result.console)[-1] == MARKER


@pytest.mark.skipif(not qemu.qemu_available(), reason="QEMU (Debian qemu-system-x86) not installed")
def test_memdisk_gives_qemus_serial_output(memdisk_image):
    exit_value, serial = qemu.run_qemu(memdisk_image, timeout=60)
    result = runner.boot([memdisk_image], timeout=60)
    assert exit_value == result.stop.exit_value == 0
    assert _lines(result.console) == _lines(serial)
