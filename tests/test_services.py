"""BIOS services (INT 10h, 11h, 12h, 14h, 15h, 16h, 17h, 1Ah) as boot sectors see them:
each test boots a small program on the full machine (Machine + Bios + a disk), lets it
call the BIOS and store what it got at 0000:0600, then checks that against the PC's
documented behaviour (SeaBIOS, Ralf Brown's list) and against the machine itself
(memory layout, virtual clock, devices).
"""
import datetime
import struct
import time

import pytest

from pvboot.emu.clock import TICK_HZ, TICKS_PER_DAY
from pvboot.emu.diskimage import DiskImage
from pvboot.emu.machine import Machine
from pvboot.emu.memory import CONVENTIONAL_END, XEN_AREA_SIZE
from pvboot.firmware import bda
from pvboot.firmware.bios import Bios, BiosConfig
from pvboot.firmware.kbd import WAITING_POLL_LIMIT, Keyboard
from pvboot.firmware.video import screen_cells, screen_text

MiB = 1 << 20
OUT = 0x600                     # where the guest programs store their results
EXIT_OK = "mov al, 0\nout 0xf4, al\n"


@pytest.fixture
def boot(boot_program):
    """boot(source, keys=..., memory_mib=..., serial=...) -> (machine, bios, stop, wall)."""
    opened = []

    def run(source, keys="", memory_mib=64, serial=b"", timeout=20):
        disk = DiskImage(boot_program(source))
        machine = Machine(memory_mib=memory_mib)
        opened.append((disk, machine))
        bios = Bios(machine, BiosConfig(disks=[disk], keys=keys))
        if serial:
            machine.devices["com1"].feed(serial)
        started = time.monotonic()
        stop = machine.run(timeout=timeout)
        return machine, bios, stop, time.monotonic() - started

    yield run
    for disk, machine in opened:
        disk.close()
        machine.close()


def words(mem, addr, count):
    return list(struct.unpack_from(f"<{count}H", mem.buf, addr))


def assert_exit_ok(stop):
    assert (stop.reason, stop.exit_value) == ("exit", 0), stop


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


# -- INT 16h ----------------------------------------------------------------------------
# INT 16h results per PC/AT BIOS convention: AH=00h/01h strip the E0h marker of the grey
# cursor keys, AH=10h/11h keep it.
EXPECTED_KEYS = [
    (0x00, 0x1E61),    # a
    (0x10, 0x48E0),    # {up}, extended read
    (0x00, 0x4800),    # {up}, standard read
    (0x10, 0x3B00),    # {f1}
    (0x00, 0x1C0D),    # \n = Enter
    (0x10, 0x011B),    # {esc}
    (0x00, 0x1A7B),    # {{ = '{'
]
KEY_SCRIPT = "a{up}{up}{f1}\n{esc}{{"


def test_scripted_keys_through_int16_after_a_flush(boot):
    funcs = ", ".join(str(f) for f, _ in EXPECTED_KEYS)
    source = f"""
        xor ax, ax
        mov ds, ax
    flush:                      # boot code often drains the keyboard first
        mov ah, 1
        int 0x16
        jz flushed
        mov ah, 0
        int 0x16
        jmp flush
    flushed:
        mov di, {OUT}
        mov si, offset funcs
        mov cx, {len(EXPECTED_KEYS)}
    next:
        mov ah, [si]
        inc ah
        int 0x16                # peek (AH=01h/11h) until a key is there
        jz next
        mov [di], ax
        mov ah, [si]
        int 0x16                # read (AH=00h/10h)
        mov [di+2], ax
        add di, 4
        inc si
        loop next
        mov ah, 0
        int 0x16                # nothing left to type: the run ends here
        mov al, 1
        out 0xf4, al
    funcs: .byte {funcs}
    """
    machine, bios, stop, _ = boot(source, keys=KEY_SCRIPT)
    assert stop.reason == "waiting-for-key", stop
    got = words(machine.mem, OUT, 2 * len(EXPECTED_KEYS))
    assert got[0::2] == [code for _, code in EXPECTED_KEYS]        # what the peek saw
    assert got[1::2] == [code for _, code in EXPECTED_KEYS]        # what the read took
    assert bios.keyboard.typed == len(EXPECTED_KEYS)


def test_keys_live_in_the_bda_ring_buffer(boot):
    source = f"""
        xor ax, ax
        mov ds, ax
        mov ah, 5
        mov cx, 0x3042          # store 'B'
        int 0x16
        mov [{OUT}], al
        mov bx, [0x41c]         # the guest appends one key itself, as some code does
        mov word ptr [0x400+bx], 0x2e63
        add bx, 2
        mov [0x41c], bx
        mov ah, 0
        int 0x16
        mov [{OUT + 2}], ax
        mov ah, 1
        int 0x16
        mov [{OUT + 4}], ax
        mov ah, 0
        int 0x16
        mov ax, [0x41a]
        mov [{OUT + 6}], ax
        mov ax, [0x41c]
        mov [{OUT + 8}], ax
        mov ax, [0x480]
        mov [{OUT + 10}], ax
        mov ax, [0x482]
        mov [{OUT + 12}], ax
    """ + EXIT_OK
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    mem = machine.mem
    stored, first, peeked, head, tail, start, end = words(mem, OUT, 7)
    assert stored & 0xFF == 0
    assert (first, peeked) == (0x3042, 0x2E63)
    assert (start, end) == (0x1E, 0x3E)
    assert head == tail == 0x1E + 4


def test_empty_keyboard_polls_fast_forward_time(boot):
    # Poll AH=01h until the BDA tick count has moved on by 3 seconds' worth.
    ticks = int(3 * TICK_HZ) + 1
    source = f"""
        xor ax, ax
        mov ds, ax
        mov ebx, [0x46c]
    poll:
        mov ah, 1
        int 0x16
        mov eax, [0x46c]
        sub eax, ebx
        cmp eax, {ticks}
        jb poll
    """ + EXIT_OK
    machine, _bios, stop, wall = boot(source)
    assert_exit_ok(stop)
    assert machine.clock.now() >= 3.0
    assert machine.clock.skipped > 0 and machine.clock.idle_waits > 0   # ran ahead of the wall clock


def test_waiting_in_int16_delivers_timer_ticks_to_int1c_hooks(boot):
    """Time that passes while the guest polls reaches its INT 1Ch hook, even with IF
    clear at the call (SeaBIOS opens an interrupt window inside INT 16h), but not
    while IRQ0 is masked at the PIC."""
    source = f"""
        cli
        xor ax, ax
        mov ds, ax
        mov word ptr [0x1c*4], offset hook
        mov word ptr [0x1c*4+2], 0
        mov dword ptr [{OUT}], 0
        mov ebx, [0x46c]
    poll:
        mov ah, 1
        int 0x16
        mov eax, [0x46c]
        sub eax, ebx
        cmp eax, 20
        jb poll
        mov [{OUT + 4}], eax
        in al, 0x21
        or al, 1                # mask IRQ0
        out 0x21, al
        mov ecx, [{OUT}]
        mov [{OUT + 8}], ecx
        mov ebx, [0x46c]
    poll2:
        mov ah, 1
        int 0x16
        mov eax, [0x46c]
        sub eax, ebx
        cmp eax, 20
        jb poll2
        mov ecx, [{OUT}]
        sub ecx, [{OUT + 8}]
        mov [{OUT + 12}], ecx
    """ + EXIT_OK + f"""
    hook:
        inc dword ptr cs:[{OUT}]
        iret
    """
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    hooked, waited, _before_mask, while_masked = struct.unpack_from("<4I", machine.mem.buf, OUT)
    assert waited >= 20
    # One INT 1Ch per tick the wait skipped (the first poll of a run may not skip one);
    # ticks that real time adds on a loaded machine come without an IRQ0, so hooked may
    # fall short of waited by those, never exceed it.
    assert 19 <= hooked <= waited
    assert while_masked == 0


def test_polling_forever_with_no_keys_left_ends_waiting_for_key(boot):
    source = """
        mov al, 'x'             # the script's only key is taken first
    take:
        mov ah, 1
        int 0x16
        jz take
        mov ah, 0
        int 0x16
    poll:                       # then a menu without timeout: poll for ever
        mov ah, 1
        int 0x16
        jmp poll
    """
    machine, bios, stop, wall = boot(source, keys="x")
    assert stop.reason == "waiting-for-key", stop
    assert bios.keyboard.typed == 1
    assert machine.clock.now() >= WAITING_POLL_LIMIT
    assert machine.clock.skipped > 0            # the polls were fast-forwarded, not slept


def test_bad_key_names_are_rejected_clearly():
    with pytest.raises(ValueError, match="bogus"):
        Keyboard("ab{bogus}")
    with pytest.raises(ValueError, match="not closed"):
        Keyboard("{f1")
    script = list(Keyboard("{F12}{pgdn}{{}").script)     # names ignore case; '}' is plain
    assert [code >> 8 for code in script[:2]] == [0x86, 0x51]
    assert [code & 0xFF for code in script[2:]] == [ord("{"), ord("}")]


# -- INT 15h: memory --------------------------------------------------------------------
def test_e820_map_describes_the_machine(boot):
    source = f"""
        xor ebx, ebx
        mov di, 0x1000
        xor bp, bp
    next:
        mov eax, 0xe820
        mov edx, 0x534d4150
        mov ecx, 24
        int 0x15
        jc fail
        cmp eax, 0x534d4150
        jne fail
        cmp ecx, 20
        jne fail
        add di, 20
        inc bp
        test ebx, ebx
        jnz next
        mov [{OUT}], bp
        mov ebx, 100            # past the end: refused
        mov eax, 0xe820
        mov edx, 0x534d4150
        mov ecx, 20
        int 0x15
        jnc fail
        mov ebx, 0              # wrong signature: refused
        mov eax, 0xe820
        mov edx, 0x12345678
        mov ecx, 20
        int 0x15
        jnc fail
    """ + EXIT_OK + """
    fail:
        mov al, 1
        out 0xf4, al
    """
    machine, _bios, stop, _ = boot(source, memory_mib=32)
    assert_exit_ok(stop)
    mem = machine.mem
    count = mem.read_u16(OUT)
    entries = [struct.unpack_from("<QQI", mem.buf, 0x1000 + 20 * i) for i in range(count)]
    assert all(length > 0 for _base, length, _t in entries)
    for (b1, l1, _), (b2, _l2, _) in zip(entries, entries[1:]):
        assert b1 + l1 <= b2, "entries must be sorted and disjoint"
    ram = [(b, b + length) for b, length, t in entries if t == 1]
    base_kib = mem.read_u16(bda.MEM_SIZE_KB)
    assert ram == [(0, base_kib * 1024), (MiB, mem.xen_area_base)]
    reserved = [(b, b + length) for b, length, t in entries if t == 2]
    assert (mem.xen_area_base, mem.size) in reserved, "the Xen area (PV ring and grants)"
    assert any(lo <= 0xF0000 and hi >= 0x100000 for lo, hi in reserved), "BIOS ROM"
    ebda = mem.read_u16(bda.EBDA_SEG) << 4
    assert any(lo <= ebda and hi >= CONVENTIONAL_END for lo, hi in reserved), "EBDA"


@pytest.mark.parametrize("memory_mib", [8, 64, 100])
def test_e801_and_88_agree_with_memory_size(boot, memory_mib):
    source = f"""
        mov ah, 0x88
        int 0x15
        mov [{OUT}], ax
        mov ax, 0xe801
        int 0x15
        jc fail
        mov [{OUT + 2}], ax
        mov [{OUT + 4}], bx
        mov [{OUT + 6}], cx
        mov [{OUT + 8}], dx
        int 0x12
        mov [{OUT + 10}], ax
    """ + EXIT_OK + "fail: mov al, 1\nout 0xf4, al\n"
    machine, _bios, stop, _ = boot(source, memory_mib=memory_mib)
    assert_exit_ok(stop)
    ext88, ax, bx, cx, dx, base = words(machine.mem, OUT, 6)
    extended_kib = memory_mib * 1024 - XEN_AREA_SIZE // 1024    # the Xen area is reserved
    assert (ax, bx) == (cx, dx)
    assert cx <= 15 * 1024
    assert cx * 1024 + dx * 65536 == extended_kib * 1024          # all of it, 1 MiB up
    assert ext88 == min(extended_kib, 63 * 1024)                  # 16-bit, capped at 63 MiB
    assert base == machine.mem.read_u16(bda.MEM_SIZE_KB) < 640


def test_block_move_copies_above_1mib_and_back(boot):
    def descriptor(base):
        return (f".word 0xffff, {base & 0xFFFF}\n"
                f".byte {(base >> 16) & 0xFF}, 0x93, 0, {base >> 24}\n")

    source = f"""
        xor ax, ax
        mov es, ax
        mov ds, ax
        mov di, 0x8000
        mov cx, 256
        mov ax, 0x1234
    fill:
        stosw
        add ax, 0x0305
        loop fill
        mov si, offset table_up
        mov ah, 0x87
        mov cx, 256
        int 0x15
        jc fail
        mov [{OUT}], ax
        mov si, offset table_down
        mov ah, 0x87
        mov cx, 256
        int 0x15
        jc fail
    """ + EXIT_OK + f"""
    fail:
        mov al, 1
        out 0xf4, al
    .balign 8
    table_up:
        .quad 0, 0
        {descriptor(0x8000)}
        {descriptor(0x00345678)}
        .quad 0, 0
    table_down:
        .quad 0, 0
        {descriptor(0x00345678)}
        {descriptor(0x9000)}
        .quad 0, 0
    """
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    mem = machine.mem
    pattern = [(0x1234 + 0x0305 * i) & 0xFFFF for i in range(256)]
    assert words(mem, 0x345678, 256) == pattern
    assert words(mem, 0x9000, 256) == pattern
    assert mem.buf[OUT + 1] == 0                                   # AH = 0


def test_config_table_equipment_and_ebda(boot):
    source = f"""
        int 0x11
        mov [{OUT}], ax
        int 0x12
        mov [{OUT + 2}], ax
        mov ah, 0xc0
        int 0x15
        jc fail
        mov [{OUT + 4}], bx
        mov [{OUT + 6}], es
        mov ah, 0xc1
        int 0x15
        jc fail
        mov [{OUT + 8}], es
    """ + EXIT_OK + "fail: mov al, 1\nout 0xf4, al\n"
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    mem = machine.mem
    equipment, base_kib, bx, es, ebda_seg = words(mem, OUT, 5)
    assert equipment == mem.read_u16(bda.EQUIPMENT_LIST_FLAGS)
    assert (equipment >> 4) & 3 == 0b10                          # 80x25 colour
    assert base_kib == mem.read_u16(bda.MEM_SIZE_KB)
    table = (es << 4) + bx
    assert 0xF0000 <= table < 0x100000
    size, model = mem.read_u16(table), mem.buf[table + 2]
    assert size >= 8 and model == 0xFC                          # AT-class machine
    assert mem.buf[table + 5] & (1 << 6)                         # second PIC present
    assert ebda_seg == mem.read_u16(bda.EBDA_SEG)
    assert mem.buf[ebda_seg << 4] == (CONVENTIONAL_END - (ebda_seg << 4)) // 1024


def test_a20_int15_port92_and_kbc_agree(boot):
    source = f"""
        mov ax, 0x2403
        int 0x15
        jc fail
        mov [{OUT}], bx
        mov ax, 0x2400
        int 0x15
        jc fail
        in al, 0x92
        mov [{OUT + 2}], al
        call kbc_outport
        mov [{OUT + 3}], al
        mov ax, 0x2402
        int 0x15
        mov [{OUT + 4}], al
        in al, 0x92             # fast A20 on through port 92h...
        or al, 2
        and al, 0xfe
        out 0x92, al
        mov ax, 0x2402          # ...is what INT 15h reports
        int 0x15
        mov [{OUT + 5}], al
        call kbc_outport
        mov [{OUT + 6}], al
        mov al, 0xd1            # A20 off through the keyboard controller's output port
        out 0x64, al
        mov al, 0xdd
        out 0x60, al
        mov ax, 0x2402
        int 0x15
        mov [{OUT + 7}], al
        mov ax, 0x2401
        int 0x15
        jc fail
        in al, 0x92
        mov [{OUT + 8}], al
    """ + EXIT_OK + """
    fail:
        mov al, 1
        out 0xf4, al
    kbc_outport:
        mov al, 0xd0
        out 0x64, al
    1:  in al, 0x64
        test al, 1
        jz 1b
        in al, 0x60
        ret
    """
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    b = machine.mem.buf
    assert machine.mem.read_u16(OUT) == 3                         # KBC and port 92h
    assert b[OUT + 2] & 2 == 0 and b[OUT + 3] & 2 == 0 and b[OUT + 4] == 0
    assert b[OUT + 5] == 1 and b[OUT + 6] & 2
    assert b[OUT + 7] == 0
    assert b[OUT + 8] & 2


# -- INT 15h: everything else -----------------------------------------------------------
def test_apm_power_off_stops_with_poweroff(boot):
    source = f"""
        mov ax, 0x5300
        xor bx, bx
        int 0x15
        jc fail
        mov [{OUT}], ax
        mov [{OUT + 2}], bx
        mov ax, 0x5304
        xor bx, bx
        int 0x15
        mov ax, 0x5301
        xor bx, bx
        int 0x15
        jc fail
        mov ax, 0x530e
        xor bx, bx
        mov cx, 0x0101
        int 0x15
        jc fail
        mov ax, 0x5307
        mov bx, 1
        mov cx, 3
        int 0x15
    fail:
        mov al, 1
        out 0xf4, al
    """
    machine, _bios, stop, _ = boot(source)
    assert stop.reason == "poweroff", stop
    version, signature = words(machine.mem, OUT, 2)
    assert version >= 0x0101 and signature == 0x504D             # 'PM'


def test_unknown_int15_functions_fail_with_86h(boot):
    source = f"""
        mov ax, 0x4200
        clc
        int 0x15
        jnc fail
        mov [{OUT}], ax
        mov ax, 0xe8ff
        clc
        int 0x15
        jnc fail
        mov [{OUT + 2}], ax
        mov ax, 0x2405
        clc
        int 0x15
        jnc fail
        mov [{OUT + 4}], ax
    """ + EXIT_OK + "fail: mov al, 1\nout 0xf4, al\n"
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    assert [w >> 8 for w in words(machine.mem, OUT, 3)] == [0x86] * 3


def test_int15_wait_advances_virtual_time(boot):
    source = """
        mov ah, 0x86
        mov cx, 0x004c          # 0x004c4b40 us = 5 s
        mov dx, 0x4b40
        int 0x15
        jc fail
    """ + EXIT_OK + "fail: mov al, 1\nout 0xf4, al\n"
    machine, _bios, stop, wall = boot(source)
    assert_exit_ok(stop)
    assert machine.clock.now() >= 5.0
    assert machine.clock.skipped >= 5.0         # the whole wait on the virtual clock


# -- INT 1Ah ----------------------------------------------------------------------------
def test_tick_wait_fast_forwards_and_midnight_sets_the_rollover_flag(boot):
    wait_ticks = int(2 * TICK_HZ) + 2           # a little over 2 seconds
    start = TICKS_PER_DAY - 3
    source = f"""
        call now
        mov ebx, eax
    wait:
        call now
        sub eax, ebx
        cmp eax, {wait_ticks}
        jb wait
        mov ah, 1
        mov cx, {start >> 16}
        mov dx, {start & 0xFFFF}
        int 0x1a
    spin:                           # until the count wraps past midnight
        call now
        cmp eax, 0x100
        jae spin
        mov [{OUT}], eax
        mov [{OUT + 4}], si         # AL of that call
        call now
        mov [{OUT + 6}], si
    """ + EXIT_OK + """
    now:                            # EAX = ticks since midnight, SI = AX returned
        mov ah, 0
        int 0x1a
        mov si, ax
        movzx eax, cx
        shl eax, 16
        mov ax, dx
        ret
    """
    machine, _bios, stop, wall = boot(source)
    assert_exit_ok(stop)
    mem = machine.mem
    assert machine.clock.now() >= wait_ticks / TICK_HZ
    assert machine.clock.skipped > 0, "waiting on INT 1Ah must not take wall-clock time"
    assert mem.read_u32(OUT) < 0x100
    assert (mem.buf[OUT + 4], mem.buf[OUT + 6]) == (1, 0)


def test_rtc_time_and_date_read_and_set(boot):
    source = f"""
        mov ah, 4
        int 0x1a
        jc fail
        mov [{OUT}], cx
        mov [{OUT + 2}], dx
        mov ah, 2
        int 0x1a
        jc fail
        mov [{OUT + 4}], cx
        mov [{OUT + 6}], dx
        mov ah, 3
        mov cx, 0x1234
        mov dx, 0x5600
        int 0x1a
        mov ah, 2
        int 0x1a
        mov [{OUT + 8}], cx
        mov [{OUT + 10}], dx
    """ + EXIT_OK + "fail: mov al, 1\nout 0xf4, al\n"
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)

    def bcd(v):
        return (v >> 4) * 10 + (v & 15)

    century_year, month_day, hour_min, sec_dst, set_hm, set_s = words(machine.mem, OUT, 6)
    read = datetime.datetime(bcd(century_year >> 8) * 100 + bcd(century_year & 0xFF),
                             bcd(month_day >> 8), bcd(month_day & 0xFF), bcd(hour_min >> 8),
                             bcd(hour_min & 0xFF), bcd(sec_dst >> 8))
    assert machine.clock.start_datetime.replace(microsecond=0) <= read <= machine.clock.datetime()
    assert set_hm == 0x1234
    assert bcd(set_s >> 8) - 56 in (0, 1)


# -- INT 14h, INT 17h -------------------------------------------------------------------
def test_serial_send_receive_and_printer_absent(boot):
    source = f"""
        mov ax, 0x00e3              # 9600 8N1
        xor dx, dx
        int 0x14
        mov ax, 0x015a              # send 'Z'
        xor dx, dx
        int 0x14
        mov [{OUT}], ax
        mov ah, 2
        xor dx, dx
        int 0x14
        mov [{OUT + 2}], ax         # 'Q' from the line
        mov ah, 2
        xor dx, dx
        int 0x14
        mov [{OUT + 4}], ax         # nothing more: time-out
        mov ah, 3
        mov dx, 4
        clc
        int 0x14
        jnc fail                    # no COM5
        mov ax, 0x0141
        xor dx, dx
        clc
        int 0x17
        jnc fail
        mov [{OUT + 6}], ax
    """ + EXIT_OK + "fail: mov al, 1\nout 0xf4, al\n"
    machine, _bios, stop, _ = boot(source, serial=b"Q")
    assert_exit_ok(stop)
    sent, received, timeout, printer = words(machine.mem, OUT, 4)
    assert bytes(machine.console) == b"Z"
    assert sent >> 8 & 0x80 == 0
    assert received & 0xFF == ord("Q") and not received & 0x8000
    assert timeout & 0x8000
    assert printer >> 8 & 0x01 and not printer >> 8 & 0x10      # timed out, not selected


# -- how a call reaches the service ------------------------------------------------------
def test_int_served_in_place_matches_a_call_through_the_rom_stub(boot):
    """An `int` whose vector still points at the ROM stub is served straight from the
    interrupt (no stub, no trap); a far call into the same stub runs it.  Both must leave
    the same registers and flags, and the stack below SP must hold the frame each pushed
    (IP after the instruction, CS, the FLAGS the iret restored), as on a real processor."""
    regs = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp")
    save = "".join(f"    mov [\\base + {4 * i}], {r}\n" for i, r in enumerate(regs))
    source = f"""
    .macro LOAD drive
        mov eax, 0x12340800
        mov ebx, 0x11111111
        mov ecx, 0x22222222
        mov edx, 0x33330000 + \\drive
        mov esi, 0x44444444
        mov edi, 0x55555555
        mov ebp, 0x66666666
        sti
        stc
    .endm
    .macro SAVE base
    {save}
        mov ax, es
        mov [\\base + 28], ax
        mov eax, [0x6ffa]
        mov [\\base + 30], eax
        mov ax, [0x6ffe]
        mov [\\base + 34], ax
        pushf
        pop ax
        mov [\\base + 36], ax
    .endm
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7000
        LOAD 0x80
        int 0x13
    after_int_ok:
        SAVE {OUT}
        LOAD 0x80
        pushf
        .byte 0xff, 0x1e
        .word 0x13 * 4                  # call far [0000:004C]
    after_call_ok:
        SAVE {OUT + 0x40}
        LOAD 0x85
        int 0x13
    after_int_bad:
        SAVE {OUT + 0x80}
        LOAD 0x85
        pushf
        .byte 0xff, 0x1e
        .word 0x13 * 4
    after_call_bad:
        SAVE {OUT + 0xC0}
        mov word ptr [{OUT + 0x100}], offset after_int_ok
        mov word ptr [{OUT + 0x102}], offset after_call_ok
        mov word ptr [{OUT + 0x104}], offset after_int_bad
        mov word ptr [{OUT + 0x106}], offset after_call_bad
    """ + EXIT_OK
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    mem = machine.mem
    returns = struct.unpack_from("<4H", mem.buf, OUT + 0x100)
    results = []
    for n, at in enumerate(returns):
        base = OUT + 0x40 * n
        *gprs, es, frame_ip, frame_cs, frame_flags, flags = struct.unpack_from("<7I5H", mem.buf, base)
        assert (frame_ip, frame_cs) == (at, 0), f"return address in frame {n}"
        # The service leaves its CF in the frame's FLAGS image, which the iret restored.
        assert frame_flags & 0x200 and frame_flags & 0x8D5 == flags & 0x8D5, f"frame {n}"
        results.append((gprs, es, flags & 0x8D5))
    ok_in_place, ok_stub, bad_in_place, bad_stub = results
    assert ok_in_place == ok_stub and bad_in_place == bad_stub
    assert ok_in_place[0][0] & 0xFF00 == 0 and not ok_in_place[2] & 1      # AH=0, CF=0
    assert bad_in_place[0][0] & 0xFF00 == 0x0100 and bad_in_place[2] & 1   # AH=1, CF=1
    assert ok_in_place[0][4:] == [0x44444444, 0x55555555, 0x66666666]      # untouched
