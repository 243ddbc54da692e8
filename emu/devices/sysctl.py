"""The two system control ports of a PC: port 0x92 (System Control Port A: fast A20 gate
and fast reset) and port 0x61 (System Control Port B: PIT channel 2 gate, speaker,
refresh toggle and channel 2 output).

Unicorn always runs with A20 enabled, so the A20 "gate" here is state only.
It lives in `SystemControlA.a20` and is the one place the keyboard controller's output
port and INT 15h AH=24h read and write, so all three ways of asking agree.
"""
from pvboot.emu.clock import PORT61_IDLE_AFTER, PORT_ACCESS_NS
from pvboot.emu.ioport import PortDevice

PORT_A20 = 0x92
PORT_PS2_CTRLB = 0x61
A20_ENABLE_BIT = 0x02
FAST_RESET_BIT = 0x01

# Port 0x61 bits.
PPCB_T2GATE = 0x01       # PIT channel 2 gate
PPCB_SPKR = 0x02         # speaker data enable
PPCB_RW_MASK = 0x0F      # bits 0-3 are read/write; 4-7 are status
PPCB_REFRESH = 0x10      # toggles with every DRAM refresh cycle
PPCB_T2OUT = 0x20        # PIT channel 2 output


def reset_machine(machine, how):
    """A reset request from the guest ends the run: pvboot boots once."""
    machine.stop("poweroff", f"reset via {how}")


class SystemControlA(PortDevice):
    """Port 0x92: bit 1 gates A20, writing bit 0 set resets the machine."""

    ports = (PORT_A20,)

    def __init__(self, machine):
        self.machine = machine
        # QEMU's CPU comes out of reset with A20 on, and Unicorn cannot turn it off.
        self.a20 = True
        self._other_bits = 0      # bits 2-7 read back as written (password lock, LEDs)

    def read(self, port, size):
        return (self._other_bits & ~(A20_ENABLE_BIT | FAST_RESET_BIT)) | \
            (A20_ENABLE_BIT if self.a20 else 0)

    def write(self, port, size, value):
        value &= 0xFF
        self.a20 = bool(value & A20_ENABLE_BIT)
        self._other_bits = value
        if value & FAST_RESET_BIT:
            reset_machine(self.machine, "port 92h fast reset")


class SystemControlB(PortDevice):
    """Port 0x61.  The refresh bit flips on every read so that delay loops counting
    refresh cycles always make progress.  Channel 2's output is read from the PIT as
    the virtual clock stands: a guest polling for a one-shot to expire (a delay, or
    clock calibration as memtest86+, GRUB, iPXE and Linux do it) sees as many polls as
    the port accesses fit into the one-shot's duration.

    Polls with nothing else in between (no other port access, BIOS call or rdtsc moved
    guest time since the last read) wait idly: after PORT61_IDLE_AFTER of them each
    read costs twice the one before, as back-to-back rdtsc do (emu/clock.py), in whole
    port accesses and never past the first one that sees the output high: the guest
    sees it rise at the same guest time as without idling, so a TSC measured around
    the one-shot is unchanged.  A poll loop that reads the TSC on every pass (Linux's
    PIT calibration) keeps a microsecond a poll."""

    ports = (PORT_PS2_CTRLB,)

    def __init__(self, pit):
        self.pit = pit
        self._channel2 = pit.channels[2]     # polled in tight loops: one lookup less
        self._clock = self._channel2.clock
        self.value = 0
        self._refresh = 0
        self._read_end = None                # guest time after the last read
        self._streak = 0                     # reads in a row with nothing in between
        self.idle_polls = 0                  # reads that waited (counter)

    def read(self, port, size):
        clock = self._clock
        # The machine has added this access's own PORT_ACCESS_NS already.
        if clock.ns - PORT_ACCESS_NS == self._read_end:
            self._streak += 1
            if self._streak > PORT61_IDLE_AFTER:
                wait = self._channel2.ns_until_high()
                if wait:
                    # Whole port accesses: the poll that sees the output high comes at the
                    # guest time it would have without idling (a TSC around it is the same).
                    wait = -(-wait // PORT_ACCESS_NS) * PORT_ACCESS_NS
                    clock.ns += min(PORT_ACCESS_NS << min(self._streak - PORT61_IDLE_AFTER, 40),
                                    wait)
                    self.idle_polls += 1
        else:
            self._streak = 0
        self._read_end = clock.ns
        self._refresh ^= PPCB_REFRESH
        out = self._channel2.output()
        return (self.value & PPCB_RW_MASK) | self._refresh | (PPCB_T2OUT if out else 0)

    def write(self, port, size, value):
        value &= PPCB_RW_MASK
        if (value ^ self.value) & PPCB_T2GATE:
            self.pit.set_gate(2, bool(value & PPCB_T2GATE))
        self.value = value
