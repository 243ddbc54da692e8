"""INT 11h, 12h and 15h: the memory map (E820, E801, 88h), block move, configuration,
A20, APM and unknown functions."""
import struct

import pytest

from pvboot.emu.memory import CONVENTIONAL_END, XEN_AREA_SIZE
from pvboot.firmware import bda

from tests.firmware.services import EXIT_OK, EXIT_OK_OR_FAIL, MiB, OUT, assert_exit_ok, words


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
    """ + EXIT_OK_OR_FAIL
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
    """ + EXIT_OK_OR_FAIL
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
    """ + EXIT_OK_OR_FAIL
    machine, _bios, stop, _ = boot(source)
    assert_exit_ok(stop)
    assert [w >> 8 for w in words(machine.mem, OUT, 3)] == [0x86] * 3
