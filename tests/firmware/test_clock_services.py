"""INT 15h AH=86h and INT 1Ah: the virtual clock's waits, the tick count and midnight,
the RTC."""
import datetime


from pvboot.emu.clock import TICK_HZ, TICKS_PER_DAY

from tests.firmware.services import EXIT_OK, EXIT_OK_OR_FAIL, OUT, assert_exit_ok, words


def test_int15_wait_advances_virtual_time(boot):
    source = """
        mov ah, 0x86
        mov cx, 0x004c          # 0x004c4b40 us = 5 s
        mov dx, 0x4b40
        int 0x15
        jc fail
    """ + EXIT_OK_OR_FAIL
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
    """ + EXIT_OK_OR_FAIL
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
