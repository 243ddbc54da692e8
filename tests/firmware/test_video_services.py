"""INT 10h video services as boot sectors see them: teletype, cursor, scrolling, write
string, VBE presence."""


from pvboot.firmware import bda
from pvboot.firmware.video import screen_cells, screen_text

from tests.firmware.services import EXIT_OK, OUT, assert_exit_ok, words


# -- INT 10h ----------------------------------------------------------------------------
PUTC = """
putc:
    push bx
    mov ah, 0x0e
    mov bx, 0x0007
    int 0x10
    pop bx
    ret
puts:
    lodsb
    test al, al
    jz 1f
    call putc
    jmp puts
1:  ret
"""


def test_teletype_scrolls_and_reads_back_through_screen_text(boot):
    source = """
        xor ax, ax
        mov ds, ax
        xor bx, bx
        mov cx, 30
    line:
        mov si, offset text
        call puts
        mov ax, bx
        mov dl, 10
        div dl
        push ax
        add al, '0'
        call putc
        pop ax
        mov al, ah
        add al, '0'
        call putc
        mov al, 13
        call putc
        mov al, 10
        call putc
        inc bx
        loop line
    """ + EXIT_OK + PUTC + 'text: .asciz "Line "\n'
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    rows = screen_text(machine.mem).split("\n")
    # 30 lines on a 25-row screen: the first six scrolled off, the cursor's row is empty.
    assert rows == [f"Line {i:02d}" for i in range(6, 30)] + [""]
    assert machine.mem.read_u16(bda.CURSOR_POS) == (24 << 8) | 0
    cells = screen_cells(machine.mem)
    assert {attr for row in cells for _ch, attr in row} == {0x07}


def test_teletype_backspace_bell_and_carriage_return(boot):
    source = """
        xor ax, ax
        mov ds, ax
        mov si, offset text
        call puts
    """ + EXIT_OK + PUTC + 'text: .asciz "xy\\bz\\007!\\rA"\n'
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    assert screen_text(machine.mem).split("\n")[0] == "Az!"
    assert machine.mem.read_u16(bda.CURSOR_POS) == 1


def test_direct_text_buffer_writes_show_in_screen_and_ah08(boot):
    row, col = 5, 10
    source = f"""
        mov ax, 0xb800
        mov es, ax
        mov word ptr es:[{(row * 80 + col) * 2}], 0x1f41
        mov ah, 2
        mov bh, 0
        mov dx, {(row << 8) | col}
        int 0x10
        mov ah, 8
        mov bh, 0
        int 0x10
        mov [{OUT}], ax
    """ + EXIT_OK
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    assert machine.mem.read_u16(OUT) == 0x1F41
    assert screen_text(machine.mem).split("\n")[row] == " " * col + "A"
    assert screen_cells(machine.mem)[row][col] == (0x41, 0x1F)


def test_write_string_all_four_subfunctions(boot):
    source = f"""
        xor ax, ax
        mov es, ax
        mov ax, 0x1300
        mov bx, 0x0017
        mov cx, 3
        mov dx, 0x0200
        mov bp, offset s1
        int 0x10
        mov ah, 3
        mov bh, 0
        int 0x10
        mov [{OUT}], dx
        mov ax, 0x1301
        mov bx, 0x0027
        mov cx, 3
        mov dx, 0x0300
        mov bp, offset s1
        int 0x10
        mov ah, 3
        mov bh, 0
        int 0x10
        mov [{OUT + 2}], dx
        mov ax, 0x1302
        xor bx, bx
        mov cx, 2
        mov dx, 0x0400
        mov bp, offset s2
        int 0x10
        mov ah, 3
        mov bh, 0
        int 0x10
        mov [{OUT + 4}], dx
        mov ax, 0x1303
        xor bx, bx
        mov cx, 2
        mov dx, 0x0505
        mov bp, offset s2
        int 0x10
        mov ah, 3
        mov bh, 0
        int 0x10
        mov [{OUT + 6}], dx
    """ + EXIT_OK + """
    s1: .ascii "abc"
    s2: .byte 'X', 0x4e, 'Y', 0x1f
    """
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    # AL bit 0 clear: cursor stays (home after POST); set: it ends after the string.
    assert words(machine.mem, OUT, 4) == [0x0000, 0x0303, 0x0303, 0x0507]
    cells = screen_cells(machine.mem)
    assert cells[2][:3] == [(ord(c), 0x17) for c in "abc"]
    assert cells[3][:3] == [(ord(c), 0x27) for c in "abc"]
    assert cells[4][:2] == [(ord("X"), 0x4E), (ord("Y"), 0x1F)]
    assert cells[5][5:7] == [(ord("X"), 0x4E), (ord("Y"), 0x1F)]


def test_cursor_position_shape_and_teletype_at_cursor(boot):
    source = f"""
        mov ah, 3
        mov bh, 0
        int 0x10
        mov [{OUT}], cx
        mov ah, 2
        mov bh, 0
        mov dx, 0x0721
        int 0x10
        mov ax, 0x0e51
        int 0x10
        mov ah, 3
        mov bh, 0
        int 0x10
        mov [{OUT + 2}], dx
        mov ah, 1
        mov cx, 0x2000
        int 0x10
        mov ah, 3
        mov bh, 0
        int 0x10
        mov [{OUT + 4}], cx
        mov ah, 0x0f
        int 0x10
        mov [{OUT + 6}], ax
        mov [{OUT + 8}], bh
    """ + EXIT_OK
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    mem = machine.mem
    cursor_shape, pos, hidden, mode = words(mem, OUT, 4)
    assert cursor_shape == 0x0607            # underline cursor of the 8x16 text font
    assert pos == 0x0722                     # one right of where 'Q' went
    assert screen_text(mem).split("\n")[7] == " " * 0x21 + "Q"
    assert hidden == 0x2000
    assert mode == (80 << 8) | 0x03 and mem.buf[OUT + 8] == 0


def test_scroll_window_up_and_down(boot):
    source = """
        xor ax, ax
        mov ds, ax
        mov si, offset text
        call puts
        mov ax, 0x0601
        mov bh, 0x1e
        mov cx, 0x0100
        mov dx, 0x034f
        int 0x10
        mov ax, 0x0701
        mov bh, 0x07
        mov cx, 0x0000
        mov dx, 0x014f
        int 0x10
        mov ax, 0x0600
        mov bh, 0x70
        mov cx, 0x0400
        mov dx, 0x0400
        int 0x10
    """ + EXIT_OK + PUTC + 'text: .asciz "r0\\r\\nr1\\r\\nr2\\r\\nr3\\r\\nr4\\r\\nr5"\n'
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    # The same operations on a list of rows: up 1 in rows 1-3, down 1 in rows 0-1,
    # clear the single cell at row 4 column 0.
    model = ["r0", "r1", "r2", "r3", "r4", "r5"]
    model[1:4] = model[2:4] + [""]
    model[0:2] = [""] + model[0:1]
    model[4] = " " + model[4][1:]
    rows = screen_text(machine.mem).split("\n")
    assert rows[:6] == [r.rstrip() for r in model]
    cells = screen_cells(machine.mem)
    assert cells[3][0] == (0x20, 0x1E) and cells[3][79] == (0x20, 0x1E)
    assert cells[4][0] == (0x20, 0x70) and cells[4][1] == (ord("4"), 0x07)


def test_vbe_is_present_and_dcc_is_vga_colour(boot):
    source = f"""
        xor ax, ax
        mov es, ax
        mov di, 0x1000
        mov ax, 0x4f00
        int 0x10
        mov [{OUT}], ax
        mov ax, 0x1a00
        int 0x10
        mov [{OUT + 2}], ax
        mov [{OUT + 4}], bx
        mov ah, 0x12
        mov bl, 0x10
        int 0x10
        mov [{OUT + 6}], bx
    """ + EXIT_OK
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    vbe, dcc_ax, dcc_bx, ega_bx = words(machine.mem, OUT, 4)
    assert vbe == 0x004F and machine.mem.read(0x1000, 4) == b"VESA"   # tests/firmware/test_vbe.py
    assert dcc_ax & 0xFF == 0x1A and dcc_bx & 0xFF == 0x08     # VGA, colour analog display
    assert ega_bx >> 8 == 0                                    # colour (not mono)
