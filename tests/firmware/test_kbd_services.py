"""INT 16h keyboard services: scripted keys through the BDA ring buffer, idle polls on
the virtual clock, timer ticks while waiting."""
import struct

import pytest

from pvboot.emu.clock import TICK_HZ
from pvboot.firmware.kbd import WAITING_POLL_LIMIT, Keyboard

from tests.firmware.services import EXIT_OK, OUT, assert_exit_ok, words


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
