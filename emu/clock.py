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

    def now(self):
        """Seconds of guest time since power-on."""
        return time.monotonic() - self._wall0 + self.skipped

    def ticks_since_boot(self):
        return int(self.now() * TICK_HZ)

    def bios_ticks(self):
        """(ticks since midnight, days rolled over) as INT 1Ah and the BDA count them."""
        total = int((self._seconds_at_boot + self.now()) * TICK_HZ)
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
        """The guest is only waiting for time to pass: move on to the next tick."""
        self.idle_waits += 1
        now = self.now()
        next_tick = (int(now * TICK_HZ) + 1) / TICK_HZ
        self.wait(next_tick - now + 1e-9)
