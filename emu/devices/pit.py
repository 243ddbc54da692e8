"""The 8254 programmable interval timer (ports 0x40-0x43).

Counters are not stepped: each channel remembers when it started counting and works
out its count and output from the machine's virtual clock on every read, at
1.193182 MHz.  Every port access moves the virtual clock on, so a guest's delay
calibration loop (latch and read channel 0, or poll channel 2's output through port
0x61) sees the counter move and terminates; when the BIOS skips idle time ahead the
counters jump with it.

Channel 0's interrupt is not raised here: the machine delivers IRQ0 itself when the
guest halts (there are no asynchronous interrupts in Unicorn).  Channel 2's gate is
port 0x61 bit 0 and its output port 0x61 bit 5 (see sysctl.py).
"""
from pvboot.emu.clock import NS_PER_S, PIT_HZ
from pvboot.emu.ioport import PortDevice

PORT_PIT_COUNTER0 = 0x40
PORT_PIT_COUNTER1 = 0x41
PORT_PIT_COUNTER2 = 0x42
PORT_PIT_MODE = 0x43

# Control word fields, named as SeaBIOS's hw/timer.c.
PM_SEL_READBACK = 3 << 6
PM_ACCESS_LATCH = 0
PM_ACCESS_LOBYTE = 1
PM_ACCESS_HIBYTE = 2
PM_ACCESS_WORD = 3
PM_CNT_BCD = 1
# Read-back command: the count/status bits are active low.
PM_READBACK_NO_COUNT = 1 << 5
PM_READBACK_NO_STATUS = 1 << 4


def _bcd_to_bin(value):
    return (value & 0xF) + ((value >> 4) & 0xF) * 10 + ((value >> 8) & 0xF) * 100 + \
        ((value >> 12) & 0xF) * 1000


def _bin_to_bcd(value):
    return (value % 10) | ((value // 10 % 10) << 4) | ((value // 100 % 10) << 8) | \
        ((value // 1000 % 10) << 12)


class PitChannel:
    """One counter.  `elapsed` is in PIT clocks counted since the count (re)started;
    it only grows while the channel runs (gate high, count loaded)."""

    def __init__(self, clock, gate=True):
        self.clock = clock
        self.mode = 0
        self.access = PM_ACCESS_WORD
        self.bcd = False
        self.reload = 0x10000
        self.gate = gate
        self.loaded = False       # a count has been written since the mode was set
        self.triggered = False    # modes 1 and 5: the gate has started the count
        self.running = False
        self._base = 0            # clocks counted before `_since`
        self._since = 0           # PIT clock number (since power-on) when counting resumed
        self._write_low = None    # first byte of a low/high write
        self._read_high = False   # next live read of a word returns the high byte
        self._latched = None      # latched count, still to be read
        self._latch_high = False
        self._status = None       # latched status byte

    # -- time --------------------------------------------------------------------------
    def _clocks(self):
        return int(self.clock.now() * PIT_HZ)

    def _start(self):
        self._base = 0
        self._since = self._clocks()
        self.running = True

    def elapsed(self):
        # Counting clock edges (not rounding a time difference) keeps pauses exact.
        if not self.running:
            return self._base
        return self._base + int(self.clock.now() * PIT_HZ) - self._since

    def count(self):
        """The current value of the counting element (as the guest would read it)."""
        n = self.reload
        mode = self.mode
        wrap = 10000 if self.bcd else 0x10000
        if not self.loaded:
            value = n
        elif mode in (1, 5) and not self.triggered:
            value = n
        elif mode == 2:
            value = n - self.elapsed() % n
        elif mode == 3:
            # Square wave: the count drops by two per clock and reloads every half period.
            value = n - (2 * self.elapsed()) % n
        else:
            value = n - self.elapsed()
        value %= wrap
        return _bin_to_bcd(value) if self.bcd else value

    def output(self):
        mode = self.mode
        if not self.loaded:
            return mode != 0
        n = self.reload
        if mode == 0:
            return self.elapsed() >= n
        if mode == 1:
            return not self.triggered or self.elapsed() >= n
        if mode == 2:
            return not self.gate or self.elapsed() % n != n - 1
        if mode == 3:
            return not self.gate or self.elapsed() % n < (n + 1) // 2
        if mode == 4:
            return self.elapsed() != n
        return not self.triggered or self.elapsed() != n        # mode 5

    def ns_until_high(self):
        """Guest nanoseconds until a counting one-shot's output (modes 0 and 1) goes
        high, or None when it is high already or is not counting towards it."""
        if not (self.running and self.loaded) or self.mode not in (0, 1):
            return None
        if self.mode == 1 and not self.triggered:
            return None
        # The output rises at PIT clock number `edge` since power-on (see elapsed()).
        edge = self._since + self.reload - self._base
        if self._clocks() >= edge:
            return None
        target = -(-edge * NS_PER_S // PIT_HZ)
        while int(target / NS_PER_S * PIT_HZ) < edge:    # as _clocks() rounds guest time
            target += 1
        return target - self.clock.ns

    # -- programming -------------------------------------------------------------------
    def set_mode(self, access, mode, bcd):
        self.access = access
        self.mode = mode - 4 if mode >= 6 else mode   # modes 6 and 7 are 2 and 3
        self.bcd = bcd
        self.loaded = False
        self.triggered = False
        self.running = False
        self._base = 0
        self._write_low = None
        self._read_high = False
        self._latched = None

    def load(self, value):
        if self.bcd:
            value = _bcd_to_bin(value)
        self.reload = value or (10000 if self.bcd else 0x10000)
        self.loaded = True
        if self.mode in (1, 5):
            self.triggered = False
            self.running = False
            self._base = 0
        elif self.gate:
            self._start()
        else:
            self.running = False
            self._base = 0

    def set_gate(self, level):
        if level == self.gate:
            return
        self.gate = level
        mode = self.mode
        if level:
            if not self.loaded:
                return
            if mode in (1, 5):
                self.triggered = True
                self._start()
            elif mode in (2, 3):
                self._start()
            else:                                   # modes 0 and 4 resume
                self._since = self._clocks()
                self.running = True
        elif mode not in (1, 5) and self.running:
            self._base = self.elapsed()
            self.running = False

    def latch_count(self):
        if self._latched is None:
            self._latched = self.count()
            self._latch_high = False

    def latch_status(self):
        if self._status is None:
            self._status = ((0x80 if self.output() else 0) | (0 if self.loaded else 0x40) |
                            (self.access << 4) | (self.mode << 1) | (1 if self.bcd else 0))

    # -- port access -------------------------------------------------------------------
    def read(self):
        if self._status is not None:
            value, self._status = self._status, None
            return value
        access = self.access
        if self._latched is not None:
            value = self._latched
            if access == PM_ACCESS_WORD and not self._latch_high:
                self._latch_high = True
                return value & 0xFF
            self._latched = None
            return (value >> 8) & 0xFF if access != PM_ACCESS_LOBYTE else value & 0xFF
        value = self.count()
        if access == PM_ACCESS_LOBYTE:
            return value & 0xFF
        if access == PM_ACCESS_HIBYTE:
            return (value >> 8) & 0xFF
        self._read_high = not self._read_high
        return value & 0xFF if self._read_high else (value >> 8) & 0xFF

    def write(self, byte):
        access = self.access
        if access == PM_ACCESS_LOBYTE:
            self.load(byte)
        elif access == PM_ACCESS_HIBYTE:
            self.load(byte << 8)
        elif self._write_low is None:
            self._write_low = byte
            if self.mode == 0:
                # Writing the first byte of a new count stops a mode 0 count.
                self._base = self.elapsed()
                self.running = False
        else:
            low, self._write_low = self._write_low, None
            self.load(low | (byte << 8))


class Pit(PortDevice):
    ports = (PORT_PIT_COUNTER0, PORT_PIT_COUNTER1, PORT_PIT_COUNTER2, PORT_PIT_MODE)

    def __init__(self, clock):
        self.channels = [PitChannel(clock), PitChannel(clock), PitChannel(clock, gate=False)]

    def read(self, port, size):
        if port == PORT_PIT_MODE:
            return 0xFF          # the control register is write-only
        return self.channels[port - PORT_PIT_COUNTER0].read()

    def write(self, port, size, value):
        value &= 0xFF
        if port != PORT_PIT_MODE:
            self.channels[port - PORT_PIT_COUNTER0].write(value)
            return
        select = value >> 6
        if value & 0xC0 == PM_SEL_READBACK:
            for index in range(3):
                if value & (2 << index):
                    channel = self.channels[index]
                    if not value & PM_READBACK_NO_COUNT:
                        channel.latch_count()
                    if not value & PM_READBACK_NO_STATUS:
                        channel.latch_status()
            return
        channel = self.channels[select]
        access = (value >> 4) & 3
        if access == PM_ACCESS_LATCH:
            channel.latch_count()
        else:
            channel.set_mode(access, (value >> 1) & 7, bool(value & PM_CNT_BCD))

    # For port 0x61 and reports.
    def output(self, index):
        return self.channels[index].output()

    def set_gate(self, index, level):
        self.channels[index].set_gate(level)
