"""An int served in place (its vector still the BIOS stub) leaves the same state as one
that goes through the ROM stub."""
import datetime
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from pvboot.emu.clock import NS_PER_S, TICK_HZ, TICKS_PER_DAY, Clock
from pvboot.emu.machine import Machine
from pvboot.firmware import bda
from pvboot.firmware.bios import Bios, BiosConfig
from pvboot.firmware.clock import clock_setup
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


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.integers(min_value=0, max_value=120_000_000), min_size=1, max_size=12),
       set_at=st.integers(min_value=0, max_value=11),
       ticks=st.integers(min_value=0, max_value=TICKS_PER_DAY - 1),
       peeks=st.lists(st.booleans(), min_size=12, max_size=12))
def test_bda_tick_count_is_current_at_every_call_served_in_place(steps, set_at, ticks, peeks):
    """Bios.serve_in_place skips sync_ticks while the clock's kept tick count is still
    good and already in the BDA; whatever time passes between calls, and after an
    INT 1Ah AH=01h (served in place too) sets the count, the BDA holds the count
    worked out afresh when the next service runs, also when something else asked
    the clock first (which renews its kept count but not the BDA)."""
    machine = Machine(memory_mib=1)
    try:
        # Two seconds before midnight, so that some runs cross it.
        machine.clock = Clock(start=datetime.datetime(2026, 12, 6, 23, 59, 58))
        bios = Bios(machine, BiosConfig())
        clock_setup(bios)           # POST's part that INT 1Ah needs
        cpu, clock, symbols = machine.cpu, machine.clock, bios.rom.symbols
        cpu.set("ss", 0)
        cpu.set("esp", 0x7000)
        for i, step in enumerate(steps):
            clock.ns += step
            if peeks[i]:
                clock.bios_tick_total()
            if i == set_at:
                cpu.set("eax", 0x0100)
                cpu.set("ecx", ticks >> 16)
                cpu.set("edx", ticks & 0xFFFF)
                bios.serve_in_place(symbols["int1a_entry"], cpu.read_state())
            bios.serve_in_place(symbols["int11_entry"], cpu.read_state())      # equipment list
            fresh = int((clock._seconds_at_boot + clock.ns / NS_PER_S) * TICK_HZ)
            assert machine.mem.read_u32(bda.TIMER_COUNTER) == fresh % TICKS_PER_DAY
    finally:
        machine.close()
