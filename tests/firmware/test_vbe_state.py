"""INT 10h AX=4F04h: a state saved in a VBE mode and restored after a switch to text
mode brings the VBE mode back (mode number, DISPI registers, DAC), as SeaBIOS's
save/restore does; the buffer size is asked first and the save fits in it."""
import struct

from pvboot.tools import runner
from tests.cli import image

SAVE_RESTORE = """
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ax, 0x4F04
    xor dl, dl
    mov cx, 0x000F
    int 0x10
    mov [0x600], ax
    mov [0x602], bx
    mov ax, 0x4F02
    mov bx, 0x4112
    int 0x10
    mov ax, 0x1010
    mov bx, 5
    mov dh, 0x11
    mov cx, 0x2233
    int 0x10
    mov ax, 0x4F04
    mov dl, 1
    mov cx, 0x000F
    mov bx, 0x1000
    int 0x10
    mov [0x604], ax
    mov ax, 0x0003
    int 0x10
    mov ax, 0x4F04
    mov dl, 2
    mov cx, 0x000F
    mov bx, 0x1000
    int 0x10
    mov [0x606], ax
    mov ax, 0x4F03
    int 0x10
    mov [0x608], bx
    mov ax, 0x1015
    mov bx, 5
    int 0x10
    mov [0x60A], dx
    mov [0x60C], cx
    mov si, 0x600
    mov cx, 14
    mov dx, 0x3F8
next:
    lodsb
    out dx, al
    loop next
    cli
    hlt
"""


def test_vbe_state_round_trip(tmp_path):
    result = runner.boot([image(tmp_path, SAVE_RESTORE)], driver="host", timeout=60)
    assert result.stop.reason == "halted", result.stop
    (size_ax, blocks, save_ax, restore_ax, mode, red, green_blue) = struct.unpack(
        "<7H", result.console.encode("latin-1"))
    assert (size_ax, save_ax, restore_ax) == (0x004F, 0x004F, 0x004F)
    assert 1 <= blocks <= 0x1000 // 64               # fits below the code at 0x7C00
    assert mode == 0x4112                            # AX=4F03h after the restore
    assert (red >> 8, green_blue) == (0x11, 0x2233)  # DAC entry 5 as it was saved
    screen = result.display                          # the card scans 640x480x24 out again
    assert (screen.kind, screen.width, screen.height) == ("rgb", 640, 480)


BANKED = """
    mov ax, 0x4F02
    mov bx, 0x0105
    int 0x10
    mov ax, 0x4F05
    xor bx, bx
    mov dx, 1
    int 0x10
    mov ax, 0xA000
    mov es, ax
    mov byte ptr es:[0], 0x2A
    mov ax, 0x4F05
    xor bx, bx
    xor dx, dx
    int 0x10
    mov byte ptr es:[16], 0x2B
    cli
    hlt
"""


def test_banked_vbe_mode_window_follows_4f05(tmp_path):
    """Mode 105h without the linear bit: A000:0000 shows the 64 KiB bank AX=4F05h
    selects, so bank 1's first byte is pixel (0, 64) of the 1024-pixel-wide picture."""
    result = runner.boot([image(tmp_path, BANKED)], driver="host", timeout=60)
    assert result.stop.reason == "halted", result.stop
    screen = result.display
    assert (screen.kind, screen.width, screen.height) == ("indexed", 1024, 768)
    assert screen.pixels[64 * 1024] == 0x2A and screen.pixels[16] == 0x2B
    assert screen.pixels.count(0) == 1024 * 768 - 2      # nothing else was drawn
