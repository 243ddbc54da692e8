"""The display's linear frame buffer is memory above RAM: guest stores there reach video
memory, and addresses past it are still unmapped (a crash report, not a silent write)."""
import pytest

from pvboot.emu.devices import vga as vga_device
from pvboot.tools import runner
from pvboot.tools.diskpattern import disk_image
from tests.guests import build

needs_binutils = pytest.mark.skipif(not build.tools_available(), reason="GNU as/ld not installed")

# With DISPI_ON: 320x200x32 through the DISPI ports first.  Then one 32-bit store to
# ADDRESS from protected mode (roms/pm_call.inc).
PROGRAM = """
        .include "lib.inc"
.macro DISPI index, value
        movw $0x1CE, %dx
        movw $\\index, %ax
        outw %ax, %dx
        incw %dx
        movw $\\value, %ax
        outw %ax, %dx
.endm
main:
.ifdef DISPI_ON
        DISPI 3, 32
        DISPI 1, 320
        DISPI 2, 200
        DISPI 4, 0x41
.endif
        movl $store, %ebx
        call pm_call
        cli
        hlt
        .include "pm_call.inc"
        .code32
store:  movl $0x11223344, ADDRESS
        ret
"""


def boot(tmp_path, address, dispi_on=False):
    defsyms = {"DISK_SECTORS": build.DEFAULT_DISK_SECTORS, "ADDRESS": address}
    if dispi_on:
        defsyms["DISPI_ON"] = 1
    program = build.assemble(PROGRAM, defsyms, include_dirs=(build.GUEST_DIR,))
    path = tmp_path / "lfb.img"
    path.write_bytes(bytes(disk_image(program, build.DEFAULT_DISK_SECTORS, {})))
    return runner.boot([str(path)], driver="host", timeout=60)


@needs_binutils
def test_store_to_the_frame_buffer_reaches_video_memory(tmp_path):
    result = boot(tmp_path, vga_device.LFB_BASE + 4 * 321, dispi_on=True)
    assert result.stop.reason == "halted", result.stop
    screen = result.display
    assert (screen.kind, screen.width, screen.height) == ("rgb", 320, 200)
    pixel = 321                                    # x 1, y 1: blue 44, green 33, red 22
    assert screen.pixels[3 * pixel:3 * pixel + 3] == bytes((0x22, 0x33, 0x44))
    assert screen.pixels.count(0) == 320 * 200 * 3 - 3


@needs_binutils
@pytest.mark.parametrize("address", [vga_device.LFB_BASE + vga_device.VRAM_SIZE, vga_device.LFB_BASE - 4])
def test_addresses_around_the_frame_buffer_are_unmapped(tmp_path, address):
    result = boot(tmp_path, address)
    assert result.stop.reason == "unmapped-access", result.stop
    assert f"{address:#x}" in result.stop.detail
