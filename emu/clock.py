"""Guest time: a virtual clock that runs with the wall clock and skips ahead while the
guest only waits.

A PC's BIOS tick count advances at 1193182/65536 Hz (~18.2 Hz).  There are no timer
interrupts in Unicorn, so the BIOS derives the count from this clock whenever it runs.
When the guest is idle (polling an empty keyboard, INT 15h AH=86h, `hlt` with interrupts
on) the clock jumps to the next event instead of sleeping, so a boot loader's menu
timeout costs no real time.  With `realtime=True` idle waits really sleep.
"""
import datetime
import time

PIT_HZ = 1193182
TICK_HZ = PIT_HZ / 65536
TICKS_PER_DAY = 0x1800B0


class Clock:
    def __init__(self, realtime=False, start=None):
        self.realtime = realtime
        self._wall0 = time.monotonic()
        self.skipped = 0.0
        start = start or datetime.datetime.now()
        self.start_datetime = start
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
        self._seconds_at_boot = (start - midnight).total_seconds()
        self.idle_waits = 0
        self._undelivered_tick = None   # see idle_undelivered

    def now(self):
        """Seconds of guest time since power-on."""
        return time.monotonic() - self._wall0 + self.skipped

    def ticks_since_boot(self):
        return int(self.now() * TICK_HZ)

    def bios_tick_total(self):
        """Ticks since the midnight before power-on (bios_ticks before the split)."""
        return int((self._seconds_at_boot + time.monotonic() - self._wall0 + self.skipped) * TICK_HZ)

    def bios_ticks(self):
        """(ticks since midnight, days rolled over) as INT 1Ah and the BDA count them."""
        total = self.bios_tick_total()
        return total % TICKS_PER_DAY, total // TICKS_PER_DAY

    def set_bios_ticks(self, ticks):
        """INT 1Ah AH=01h: make today's tick count read `ticks` from now on (the day
        count is kept, so no midnight is crossed)."""
        total = (self._seconds_at_boot + self.now()) * TICK_HZ
        day_start = int(total) // TICKS_PER_DAY * TICKS_PER_DAY
        # A thousandth of a tick above the boundary so that int() lands on `ticks`.
        self._seconds_at_boot = (day_start + ticks + 1e-3) / TICK_HZ - self.now()

    def datetime(self):
        return self.start_datetime + datetime.timedelta(seconds=self.now())

    def wait(self, seconds):
        """Let `seconds` of guest time pass."""
        if seconds <= 0:
            return
        if self.realtime:
            time.sleep(seconds)
        else:
            self.skipped += seconds

    def idle(self):
        """The guest is only waiting for time to pass: move on to the next tick, unless
        the tick it waits for already came and was not delivered (idle_undelivered)."""
        self.idle_waits += 1
        if self._undelivered_tick is not None:
            pending, self._undelivered_tick = self._undelivered_tick, None
            if self.ticks_since_boot() == pending:
                return
        self._to_next_tick()

    def idle_undelivered(self):
        """The guest waits for the next tick where it cannot be delivered (`sti; hlt` in
        protected mode: pvboot has no IDT delivery).  Time moves on to that tick, which
        then stays pending, as an IRQ0 the PIC holds: the next BIOS wait (`idle`) within
        the same tick delivers it instead of waiting for another.  SYSLINUX idles with
        `hlt` in protected mode between INT 16h polls and counts time in its INT 1Ch
        hook; without this each poll cost two ticks of guest time and one counted, and
        its TIMEOUTs took twice as long."""
        self.idle_waits += 1
        self._to_next_tick()
        self._undelivered_tick = self.ticks_since_boot()

    def _to_next_tick(self):
        now = self.now()
        next_tick = (int(now * TICK_HZ) + 1) / TICK_HZ
        self.wait(next_tick - now + 1e-9)
