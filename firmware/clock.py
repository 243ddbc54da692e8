"""Time services, after SeaBIOS's src/clock.c: the timer tick (INT 08h), the time of day
(INT 1Ah) and the INT 15h waits (AH=83h, AH=86h).  There are no timer interrupts: the
BDA tick count follows the virtual clock, and a guest polling INT 1Ah AH=00h for a
change lets virtual time run to the next tick (the rule and why: docs/bios-services.md).
"""
from pvboot.emu.devices.cmos import (CMOS_CENTURY, CMOS_RTC_DAY_MONTH, CMOS_RTC_HOURS,
                              CMOS_RTC_HOURS_ALARM, CMOS_RTC_MINUTES, CMOS_RTC_MINUTES_ALARM,
                              CMOS_RTC_MONTH, CMOS_RTC_SECONDS, CMOS_RTC_SECONDS_ALARM,
                              CMOS_RTC_YEAR, CMOS_STATUS_A, CMOS_STATUS_B, CMOS_STATUS_C,
                              CMOS_STATUS_D, RTC_B_24HR, RTC_B_AIE, RTC_B_DSE, RTC_B_PIE,
                              RTC_B_SET)

from pvboot.emu.clock import TICKS_PER_DAY
from pvboot.firmware import bda
from pvboot.firmware.hw import pic_irq_masked, rtc_read, rtc_write

PORT_PIT_MODE = 0x43
PORT_PIT_COUNTER0 = 0x40
PM_SEL_TIMER0 = 0 << 6
PM_ACCESS_WORD = 3 << 4
PM_MODE2 = 2 << 1

FLAG_TF = 1 << 8
FLAG_IF = 1 << 9
IRQ0_VECTOR = 0x08

RWS_WAIT_PENDING = 1 << 0
RWS_WAIT_ELAPSED = 1 << 7
RET_EUNSUPPORTED = 0x86


class TimerState:
    """The time-of-day bookkeeping the BDA has no room for."""

    def __init__(self):
        self.last_1a00 = None     # tick count the previous INT 1Ah AH=00h returned
        self.console_at_1a00 = 0  # serial bytes the guest had sent by then


def clock_setup(bios):
    """POST part (SeaBIOS clock_setup): PIT channel 0 at 18.2 Hz, RTC in 24-hour BCD."""
    ports = bios.machine.ports
    ports.write(PORT_PIT_MODE, 1, PM_SEL_TIMER0 | PM_ACCESS_WORD | PM_MODE2)
    ports.write(PORT_PIT_COUNTER0, 1, 0)
    ports.write(PORT_PIT_COUNTER0, 1, 0)
    rtc_write(ports, CMOS_STATUS_A, 0x26)
    rtc_write(ports, CMOS_STATUS_B, (rtc_read(ports, CMOS_STATUS_B) & RTC_B_DSE) | RTC_B_24HR)
    rtc_read(ports, CMOS_STATUS_C)
    rtc_read(ports, CMOS_STATUS_D)
    bios.timer = TimerState()


def _ticks(mem):
    return mem.read_u32(bda.TIMER_COUNTER)


def tick_on_return(bios, regs):
    """Virtual time has just run on to the next timer tick while the caller waited in a
    BIOS call.  On a PC, IRQ0 would have been taken during that wait: SeaBIOS's INT 16h
    and INT 1Ah open an interrupt window (yield: `sti; nop; cli`) whatever the caller's
    IF, and a caller in protected mode (SYSLINUX, GRUB) takes its ticks there.  So make
    it happen as the call returns: a second interrupt frame below the caller's sends the
    ROM stub's `iret` into the INT 08h vector, whose own `iret` then returns to the
    caller.  Guests that count time in an INT 1Ch or INT 08h hook (SYSLINUX does) see
    the tick.  Nothing is delivered while IRQ0 is masked at the PIC."""
    if pic_irq_masked(bios.machine.ports, 0):
        return
    cpu = bios.machine.cpu
    entry = cpu.vector_address(IRQ0_VECTOR)
    if entry is None:
        return
    vector = bios.mem.read_u32(entry)
    regs.push_frame(vector & 0xFFFF, vector >> 16, regs.flags & ~(FLAG_IF | FLAG_TF))


# -- INT 08h ----------------------------------------------------------------------------
def handle_08(bios, regs):
    """IRQ0.  The trap already brought the tick count up to date; what is left of
    SeaBIOS's clock_update is the floppy motor timeout (floppy_tick)."""
    buf = bios.mem.buf
    counter = buf[bda.FLOPPY_MOTOR_STATUS + 1]          # floppy_motor_counter (0x440)
    if counter:
        counter -= 1
        buf[bda.FLOPPY_MOTOR_STATUS + 1] = counter
        if not counter:
            buf[bda.FLOPPY_MOTOR_STATUS] &= 0xF0         # motors off


# -- INT 1Ah ----------------------------------------------------------------------------
def handle_1a00(bios, regs):
    mem = bios.mem
    ticks = _ticks(mem)
    timer = bios.timer
    sent = len(bios.machine.console)
    if ticks == timer.last_1a00 and sent == timer.console_at_1a00:
        bios.clock.idle()
        bios.sync_ticks()
        ticks = _ticks(mem)
        tick_on_return(bios, regs)
    timer.last_1a00 = ticks
    timer.console_at_1a00 = sent
    regs.cx = ticks >> 16
    regs.dx = ticks & 0xFFFF
    regs.al = mem.buf[bda.TIMER_ROLLOVER]
    mem.buf[bda.TIMER_ROLLOVER] = 0
    regs.cf = False


def handle_1a01(bios, regs):
    ticks = ((regs.cx << 16) | regs.dx) % TICKS_PER_DAY
    # The count is derived from the clock on every trap, so the clock carries the change.
    bios.clock.set_bios_ticks(ticks)
    mem = bios.mem
    mem.write_u32(bda.TIMER_COUNTER, ticks)
    mem.buf[bda.TIMER_ROLLOVER] = 0
    bios.timer.last_1a00 = None
    regs.ah = 0
    regs.cf = False


def handle_1a02(bios, regs):
    ports = bios.machine.ports
    regs.dh = rtc_read(ports, CMOS_RTC_SECONDS)
    regs.cl = rtc_read(ports, CMOS_RTC_MINUTES)
    hours = rtc_read(ports, CMOS_RTC_HOURS)
    regs.ch = hours
    regs.dl = rtc_read(ports, CMOS_STATUS_B) & RTC_B_DSE
    regs.ax = hours                      # AH = 0, AL = hours
    regs.cf = False


def handle_1a03(bios, regs):
    ports = bios.machine.ports
    rtc_write(ports, CMOS_RTC_SECONDS, regs.dh)
    rtc_write(ports, CMOS_RTC_MINUTES, regs.cl)
    rtc_write(ports, CMOS_RTC_HOURS, regs.ch)
    value = (rtc_read(ports, CMOS_STATUS_B) & (RTC_B_PIE | RTC_B_AIE)) | RTC_B_24HR | \
        (regs.dl & RTC_B_DSE)
    rtc_write(ports, CMOS_STATUS_B, value)
    regs.ax = value
    regs.cf = False


def handle_1a04(bios, regs):
    ports = bios.machine.ports
    regs.cl = rtc_read(ports, CMOS_RTC_YEAR)
    regs.dh = rtc_read(ports, CMOS_RTC_MONTH)
    regs.dl = rtc_read(ports, CMOS_RTC_DAY_MONTH)
    century = rtc_read(ports, CMOS_CENTURY)
    regs.ch = century
    regs.ax = century
    regs.cf = False


def handle_1a05(bios, regs):
    ports = bios.machine.ports
    rtc_write(ports, CMOS_CENTURY, regs.ch)
    rtc_write(ports, CMOS_RTC_YEAR, regs.cl)
    rtc_write(ports, CMOS_RTC_MONTH, regs.dh)
    rtc_write(ports, CMOS_RTC_DAY_MONTH, regs.dl)
    value = rtc_read(ports, CMOS_STATUS_B) & ~RTC_B_SET
    rtc_write(ports, CMOS_STATUS_B, value)
    regs.ax = value
    regs.cf = False


def handle_1a06(bios, regs):
    """Set the alarm.  The registers are set as SeaBIOS sets them; pvboot raises no
    RTC interrupt, so INT 4Ah never comes."""
    ports = bios.machine.ports
    value = rtc_read(ports, CMOS_STATUS_B)
    regs.ax = 0
    if value & RTC_B_AIE:
        regs.cf = True                   # alarm already set
        return
    rtc_write(ports, CMOS_RTC_SECONDS_ALARM, regs.dh)
    rtc_write(ports, CMOS_RTC_MINUTES_ALARM, regs.cl)
    rtc_write(ports, CMOS_RTC_HOURS_ALARM, regs.ch)
    rtc_write(ports, CMOS_STATUS_B, (value & ~RTC_B_SET) | RTC_B_AIE)
    regs.cf = False


def handle_1a07(bios, regs):
    ports = bios.machine.ports
    value = rtc_read(ports, CMOS_STATUS_B)
    rtc_write(ports, CMOS_STATUS_B, value & ~(RTC_B_SET | RTC_B_AIE))
    regs.ax = value
    regs.cf = False


def handle_1aXX(bios, regs):
    # Unsupported, including AH=BBh (TCG): no TPM.
    regs.cf = True


_FUNCTIONS = {
    0x00: handle_1a00, 0x01: handle_1a01, 0x02: handle_1a02, 0x03: handle_1a03,
    0x04: handle_1a04, 0x05: handle_1a05, 0x06: handle_1a06, 0x07: handle_1a07,
}


def handle_1a(bios, regs):
    """INT 1Ah entry."""
    _FUNCTIONS.get(regs.ah, handle_1aXX)(bios, regs)


# -- INT 15h waits ----------------------------------------------------------------------
def handle_1586(bios, regs):
    """Wait CX:DX microseconds: virtual time simply moves on (sleeps with --realtime)."""
    bios.clock.wait(((regs.cx << 16) | regs.dx) / 1e6)
    regs.cf = False


def handle_1583(bios, regs):
    """Event wait: set bit 7 of the byte at ES:BX after CX:DX microseconds.  With no RTC
    interrupt to end it later, the interval is spent at once (virtual time), so the
    flag is already set when the call returns; AL=01h (cancel) has nothing to cancel."""
    al = regs.al
    if al == 0x00:
        mem = bios.mem
        if mem.buf[bda.RTC_WAIT_FLAG] & RWS_WAIT_PENDING:
            regs.ah = RET_EUNSUPPORTED
            regs.cf = True
            return
        bios.clock.wait(((regs.cx << 16) | regs.dx) / 1e6)
        flag = (regs.es << 4) + regs.bx
        if mem.is_writable_ram(flag, 1):
            mem.write_u8(flag, mem.buf[flag] | RWS_WAIT_ELAPSED)
        regs.cf = False
    elif al == 0x01:
        bios.mem.buf[bda.RTC_WAIT_FLAG] = 0
        regs.cf = False
    else:
        regs.ah = RET_EUNSUPPORTED
        regs.cf = True
        regs.al = (al - 1) & 0xFF        # as SeaBIOS's handle_1583XX
