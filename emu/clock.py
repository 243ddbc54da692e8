"""Guest time: one virtual clock for the PIT, rdtsc, the RTC and the BIOS tick count,
advanced by what the guest does, never by the host's wall clock.

Details: docs/cpu-and-clock.md.
"""
import datetime
import time

PIT_HZ = 1193182
TICK_HZ = PIT_HZ / 65536
TICKS_PER_DAY = 0x1800B0
NS_PER_S = 1_000_000_000

# The TSC rate the virtual CPU reports through rdtsc (cycles per second).
TSC_HZ = 1_000_000_000
PORT_ACCESS_NS = 1000
BIOS_CALL_NS = 1000
RDTSC_NS = 20
RDTSC_IDLE_AFTER = 64            # consecutive rdtsc from one place before it counts as idle
RDTSC_IDLE_MAX_NS = 1_000_000
# Back-to-back reads of port 61h while PIT channel 2's one-shot runs (devices/sysctl.py).
PORT61_IDLE_AFTER = 64


class Clock:
    def __init__(self, realtime=False, start=None):
        self.realtime = realtime
        self.ns = 0                    # guest time since power-on, in nanoseconds
        self.skipped = 0.0             # seconds of it spent in idle waits (fast-forwarded)
        start = start or datetime.datetime.now()
        self.start_datetime = start
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
        self._seconds_at_boot = (start - midnight).total_seconds()
        self.idle_waits = 0
        self._undelivered_tick = None   # see idle_undelivered
        # The current run of back-to-back rdtsc: where it is, and guest time after its
        # last one.  Every other event moves guest time on, so a run ends as soon as
        # `ns` differs: the hot paths (port I/O, BIOS calls) only add to `ns`.
        self._rdtsc_pc = None
        self._rdtsc_end = None
        self._rdtsc_streak = 0

    def now(self):
        """Seconds of guest time since power-on."""
        return self.ns / NS_PER_S

    def advance(self, ns):
        """Guest time moves on by `ns` (> 0) for something the guest did (not an idle
        wait).  Any event but rdtsc ends a run of back-to-back rdtsc.  Port accesses and
        BIOS calls, thousands a boot, add PORT_ACCESS_NS / BIOS_CALL_NS to `ns` in place
        (emu/machine.py): a Python call less each."""
        self.ns += ns
        self._rdtsc_pc = None

    def rdtsc(self, pc):
        """The time stamp counter for an rdtsc at linear address `pc` (it then costs its
        share of guest time, see the module docstring)."""
        ns = self.ns
        value = ns * TSC_HZ // NS_PER_S
        if pc == self._rdtsc_pc and ns == self._rdtsc_end:
            self._rdtsc_streak += 1
        else:
            self._rdtsc_pc, self._rdtsc_streak = pc, 0
        cost = RDTSC_NS
        if self._rdtsc_streak > RDTSC_IDLE_AFTER:
            cost = min(RDTSC_NS << min(self._rdtsc_streak - RDTSC_IDLE_AFTER, 40), RDTSC_IDLE_MAX_NS)
        self.ns += cost
        self._rdtsc_end = self.ns
        return value

    def ticks_since_boot(self):
        return int(self.now() * TICK_HZ)

    def bios_tick_total(self):
        """Ticks since the midnight before power-on (bios_ticks before the split).
        Every BIOS call asks (the BDA count follows it), and most come within the
        tick of the call before: the answer is kept, as `tick_total`, until guest
        time reaches `tick_total_until`, a point safely before the next tick.  While
        `ns` is below it, `tick_total` is the answer (the BIOS checks that itself on
        its hot path, a Python call less per BIOS call); both are read-only outside."""
        if self.ns < self.tick_total_until:
            return self.tick_total
        total = int((self._seconds_at_boot + self.ns / NS_PER_S) * TICK_HZ)
        self.tick_total = total
        # A microsecond early: float rounding must never keep a stale count.
        self.tick_total_until = int(((total + 1) / TICK_HZ - self._seconds_at_boot)
                                    * NS_PER_S) - 1000
        return total

    tick_total = 0
    tick_total_until = 0

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
        self.tick_total_until = 0

    def datetime(self):
        return self.start_datetime + datetime.timedelta(microseconds=self.ns // 1000)

    def wait(self, seconds):
        """Let `seconds` of guest time pass (an idle wait)."""
        if not seconds > 0:
            return
        if self.realtime:
            time.sleep(seconds)
        else:
            self.skipped += seconds
        self.advance(max(1, round(seconds * NS_PER_S)))

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
