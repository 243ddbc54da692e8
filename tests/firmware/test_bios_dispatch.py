"""An int served in place (its vector still the BIOS stub) leaves the same state as one
that goes through the ROM stub."""
import struct

from tests.emu.test_machine import REAL_MODE_START
from tests.firmware.services import EXIT_OK, OUT, assert_exit_ok


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
    {REAL_MODE_START}
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
