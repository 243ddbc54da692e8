"""The PC devices driven through the port bus as a guest drives them: PIC, PIT, port 61h,
port 92h, CMOS/RTC, keyboard controller, POST code port and the UART's IIR.

Expected values come from the chips' data sheets and the clock, not from the code under
test; timer tests use a clock the test moves by hand so every count is exact.
"""
import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvboot.emu.clock import NS_PER_S, PIT_HZ, Clock
from pvboot.emu.devices.cmos import Cmos, from_bcd
from pvboot.emu.devices.pic import Pic
from pvboot.emu.devices.pit import PM_ACCESS_WORD, Pit
from pvboot.emu.devices.sysctl import SystemControlB
from pvboot.emu.ioport import PortBus
from pvboot.emu.machine import Machine

MiB = 1 << 20


class ManualClock:
    """A virtual clock that only moves when the test says so."""

    def __init__(self, start=datetime.datetime(2024, 2, 28, 23, 59, 50)):
        self.t = 0.0
        self.start = start

    def now(self):
        return self.t

    @property
    def ns(self):                    # guest nanoseconds, as emu/clock.py keeps them
        return round(self.t * 1e9)

    @ns.setter
    def ns(self, value):
        self.t = value / 1e9

    def datetime(self):
        return self.start + datetime.timedelta(seconds=self.t)

    def wait(self, seconds):
        self.t += seconds

    def advance_clocks(self, pit_clocks):
        # Land in the middle of a PIT clock period so int() rounding is unambiguous.
        self.t += pit_clocks / PIT_HZ
        self.t = (round(self.t * PIT_HZ) + 0.5) / PIT_HZ


@pytest.fixture
def machine():
    m = Machine(memory_mib=16)
    yield m
    m.close()


def bus_with(device):
    bus = PortBus()
    bus.register(device)
    return bus


def inb(bus, port):
    return bus.read(port, 1)


def outb(bus, port, value):
    bus.write(port, 1, value)


# -- 8259 PIC ---------------------------------------------------------------------------
def init_pics(bus, master_base=0x08, slave_base=0x70):
    for cmd, data, base, cascade in ((0x20, 0x21, master_base, 4), (0xA0, 0xA1, slave_base, 2)):
        outb(bus, cmd, 0x11)
        outb(bus, data, base)
        outb(bus, data, cascade)
        outb(bus, data, 0x01)


def test_pic_icw_sequence_then_imr_reads_back():
    pic = Pic()
    bus = bus_with(pic)
    init_pics(bus, 0x20, 0x28)
    # After ICW1 the mask is clear; the ICW2-4 bytes must not have landed in it.
    assert inb(bus, 0x21) == 0x00
    assert inb(bus, 0xA1) == 0x00
    outb(bus, 0x21, 0xB8)
    outb(bus, 0xA1, 0x5A)
    assert inb(bus, 0x21) == 0xB8
    assert inb(bus, 0xA1) == 0x5A
    assert (pic.master.vector_base, pic.slave.vector_base) == (0x20, 0x28)


def test_pic_irr_isr_and_eoi():
    pic = Pic()
    bus = bus_with(pic)
    init_pics(bus)
    outb(bus, 0x21, 0xFE & ~0x04 & 0xFF)      # only IRQ0 and the cascade unmasked
    pic.raise_irq(3)                          # masked: requested but never delivered
    pic.raise_irq(0)
    outb(bus, 0x20, 0x0A)                     # OCW3: read IRR
    assert inb(bus, 0x20) == 0x09
    assert pic.acknowledge() == 0x08
    assert pic.acknowledge() is None          # IRQ3 masked, IRQ0 in service
    outb(bus, 0x20, 0x0B)                     # OCW3: read ISR
    assert inb(bus, 0x20) == 0x01
    outb(bus, 0x20, 0x20)                     # non-specific EOI (what the INT 08h stub sends)
    assert inb(bus, 0x20) == 0x00
    outb(bus, 0x20, 0x0A)
    assert inb(bus, 0x20) == 0x08             # IRQ3 still requested


def test_pic_slave_interrupt_comes_through_the_cascade():
    pic = Pic()
    bus = bus_with(pic)
    init_pics(bus)
    outb(bus, 0x21, 0xFB)
    outb(bus, 0xA1, 0xFE)                     # IRQ8 only
    pic.raise_irq(8)
    assert pic.acknowledge() == 0x70
    outb(bus, 0xA0, 0x60)                     # specific EOI for the slave's line 0
    outb(bus, 0x20, 0x62)                     # specific EOI for the master's line 2
    outb(bus, 0xA0, 0x0B)
    outb(bus, 0x20, 0x0B)
    assert inb(bus, 0xA0) == 0 and inb(bus, 0x20) == 0


# -- 8254 PIT ---------------------------------------------------------------------------
def read_latched(bus, channel):
    outb(bus, 0x43, channel << 6)             # counter latch command
    low = inb(bus, 0x40 + channel)
    return low | (inb(bus, 0x40 + channel) << 8)


def test_pit_mode2_counts_down_from_the_clock():
    clock = ManualClock()
    bus = bus_with(Pit(clock))
    outb(bus, 0x43, 0x34)                     # channel 0, lo/hi, mode 2
    outb(bus, 0x40, 1000 & 0xFF)
    outb(bus, 0x40, 1000 >> 8)
    clock.advance_clocks(0)
    assert read_latched(bus, 0) == 1000
    clock.advance_clocks(250)
    assert read_latched(bus, 0) == 750
    clock.advance_clocks(1000)                # a whole period later: same phase again
    assert read_latched(bus, 0) == 750


def test_pit_latch_freezes_the_value_until_read():
    clock = ManualClock()
    bus = bus_with(Pit(clock))
    outb(bus, 0x43, 0x34)
    outb(bus, 0x40, 0)
    outb(bus, 0x40, 0)                        # 0 means 65536
    clock.advance_clocks(100)
    outb(bus, 0x43, 0x00)                     # latch
    clock.advance_clocks(5000)
    low = inb(bus, 0x40)
    high = inb(bus, 0x40)
    assert (high << 8 | low) == 65536 - 100
    assert read_latched(bus, 0) == 65536 - 5100


def test_pit_lobyte_only_access_and_bcd():
    clock = ManualClock()
    bus = bus_with(Pit(clock))
    outb(bus, 0x43, 0x50 | 0x04)              # channel 1, LSB only, mode 2
    outb(bus, 0x41, 200)
    clock.advance_clocks(50)
    assert inb(bus, 0x41) == 150
    outb(bus, 0x43, 0x70 | 0x04 | 0x01)       # channel 1, lo/hi, mode 2, BCD
    outb(bus, 0x41, 0x34)
    outb(bus, 0x41, 0x12)                     # 1234 decimal
    clock.advance_clocks(34)
    assert read_latched(bus, 1) == 0x1200


def test_pit_channel2_gate_and_output_through_port_61():
    """Channel 2's gate is port 61h bit 0 and its output port 61h bit 5."""
    clock = ManualClock()
    pit = Pit(clock)
    bus = bus_with(pit)
    bus.register(SystemControlB(pit))
    bus.write(0x43, 1, 0xB0)                   # channel 2, lo/hi, mode 0
    bus.write(0x42, 1, 0x00)
    bus.write(0x42, 1, 0x10)                   # 4096 clocks
    assert not bus.read(0x61, 1) & 0x20        # gate low: not counting, output low
    clock.advance_clocks(10000)
    assert not pit.output(2)
    bus.write(0x61, 1, 0x01)                   # gate on
    assert bus.read(0x61, 1) & 0x21 == 0x01
    clock.advance_clocks(4000)
    assert not pit.output(2)
    clock.advance_clocks(200)
    assert bus.read(0x61, 1) & 0x20            # terminal count reached
    # Read-back of channel 2's status: output high, lo/hi access, mode 0, binary.
    bus.write(0x43, 1, 0xC0 | 0x20 | 0x08)     # status only, channel 2
    assert bus.read(0x42, 1) == 0x80 | 0x30


@settings(max_examples=300, deadline=None)
@given(start_ns=st.integers(min_value=0, max_value=10**13),
       reload=st.integers(min_value=1, max_value=0x10000),
       mode=st.sampled_from([0, 1]),
       gone=st.integers(min_value=0, max_value=0x10000))
def test_one_shot_rises_exactly_when_ns_until_high_says(start_ns, reload, mode, gone):
    """Guest time moved on by ns_until_high() makes a one-shot's output rise, one
    nanosecond less does not (so port 61h's idle polls never overshoot the edge)."""
    clock = Clock()
    clock.ns = start_ns
    channel = Pit(clock).channels[2]
    channel.set_mode(PM_ACCESS_WORD, mode, False)
    channel.load(reload & 0xFFFF)
    channel.set_gate(True)                  # mode 1 triggers on the rising edge
    clock.ns += gone * NS_PER_S // PIT_HZ
    wait = channel.ns_until_high()
    if channel.output():
        assert wait is None
        return
    assert wait > 0
    clock.ns += wait - 1
    assert not channel.output()
    clock.ns += 1
    assert channel.output()
    assert channel.ns_until_high() is None


def test_pit_mode0_gate_low_pauses_counting():
    clock = ManualClock()
    pit = Pit(clock)
    bus = bus_with(pit)
    pit.set_gate(2, True)
    outb(bus, 0x43, 0xB0)
    outb(bus, 0x42, 0xE8)
    outb(bus, 0x42, 0x03)                      # 1000
    clock.advance_clocks(300)
    pit.set_gate(2, False)
    clock.advance_clocks(5000)
    assert read_latched(bus, 2) == 700
    pit.set_gate(2, True)
    clock.advance_clocks(100)
    assert read_latched(bus, 2) == 600


def test_port61_refresh_bit_toggles_on_every_read(machine):
    bus = machine.ports
    values = [bus.read(0x61, 1) & 0x10 for _ in range(6)]
    assert all(a != b for a, b in zip(values, values[1:]))
    bus.write(0x61, 1, 0x03)
    assert bus.read(0x61, 1) & 0x0F == 0x03


def test_pit_counter_moves_with_the_machine_clock(machine):
    """The machine's virtual clock drives the counters: 10 ms of guest time is 11931.82
    PIT clocks, whatever the host did meanwhile."""
    bus = machine.ports
    bus.write(0x43, 1, 0x34)
    bus.write(0x40, 1, 0)
    bus.write(0x40, 1, 0)
    first = read_latched(bus, 0)
    machine.clock.wait(0.01)                   # 11932 PIT clocks
    second = read_latched(bus, 0)
    assert 11931 <= (first - second) % 65536 <= 11932


# -- port 92h and A20 -------------------------------------------------------------------
def test_port92_a20_and_fast_reset(machine):
    bus = machine.ports
    bus.write(0x92, 1, 0x00)
    assert bus.read(0x92, 1) & 0x02 == 0
    bus.write(0x92, 1, 0x02)
    assert bus.read(0x92, 1) & 0x03 == 0x02
    assert not machine.stopping
    bus.write(0x92, 1, 0x03)
    assert machine.stopping
    assert machine._stop.reason == "poweroff"
    assert "reset" in machine._stop.detail


# -- CMOS / RTC -------------------------------------------------------------------------
def cmos_read(bus, index):
    outb(bus, 0x70, index | 0x80)              # NMI-disable bit set, as SeaBIOS does
    return inb(bus, 0x71)


def test_cmos_time_and_date_bcd_from_clock():
    clock = ManualClock(datetime.datetime(2024, 2, 28, 23, 59, 50))
    bus = bus_with(Cmos(clock, ram_size=65 * MiB))
    assert cmos_read(bus, 0x0A) & 0x80 == 0    # no update in progress
    assert cmos_read(bus, 0x0B) & 0x06 == 0x02 # 24-hour, BCD
    assert cmos_read(bus, 0x0D) & 0x80
    clock.t = 15.0                             # 2024-02-29 00:00:05 (leap day)
    got = [cmos_read(bus, i) for i in (0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32)]
    assert got == [0x05, 0x00, 0x00, 0x29, 0x02, 0x24, 0x20]
    assert cmos_read(bus, 0x06) == 5           # Thursday (Sunday = 1)


def test_cmos_binary_and_12_hour_modes():
    clock = ManualClock(datetime.datetime(2023, 7, 14, 15, 42, 9))
    bus = bus_with(Cmos(clock))
    outb(bus, 0x70, 0x0B)
    outb(bus, 0x71, 0x04)                      # binary, 12-hour
    assert cmos_read(bus, 0x00) == 9
    assert cmos_read(bus, 0x04) == 0x80 | 3    # 3 PM


def test_cmos_time_write_sets_an_offset_that_keeps_running():
    clock = ManualClock(datetime.datetime(2023, 7, 14, 15, 42, 9))
    bus = bus_with(Cmos(clock))
    outb(bus, 0x70, 0x04)
    outb(bus, 0x71, 0x08)                      # hours := 08
    outb(bus, 0x70, 0x02)
    outb(bus, 0x71, 0x30)                      # minutes := 30
    assert (cmos_read(bus, 0x04), cmos_read(bus, 0x02)) == (0x08, 0x30)
    clock.t += 61
    assert (cmos_read(bus, 0x04), cmos_read(bus, 0x02), from_bcd(cmos_read(bus, 0x00))) == \
        (0x08, 0x31, 10)


def test_cmos_memory_sizes_follow_the_machine(machine):
    bus = machine.ports
    ram = machine.mem.size
    base = cmos_read(bus, 0x15) | cmos_read(bus, 0x16) << 8
    ext_old = cmos_read(bus, 0x17) | cmos_read(bus, 0x18) << 8
    ext = cmos_read(bus, 0x30) | cmos_read(bus, 0x31) << 8
    above16 = cmos_read(bus, 0x34) | cmos_read(bus, 0x35) << 8
    assert base == 640
    assert ext == ext_old == (ram - MiB) // 1024
    assert above16 * 65536 == ram - 16 * MiB
    total = sum(cmos_read(bus, i) for i in range(0x10, 0x2E))
    assert (cmos_read(bus, 0x2E) << 8 | cmos_read(bus, 0x2F)) == total


def test_cmos_status_c_clears_on_read_and_ram_is_kept():
    bus = bus_with(Cmos(ManualClock()))
    outb(bus, 0x70, 0x40)
    outb(bus, 0x71, 0xA5)
    assert cmos_read(bus, 0x40) == 0xA5
    assert cmos_read(bus, 0x0C) == 0


# -- keyboard controller -----------------------------------------------------------------
def kbc_cmd(bus, cmd):
    assert not inb(bus, 0x64) & 0x02          # input buffer empty: the guest may write
    outb(bus, 0x64, cmd)


def kbc_read(bus):
    assert inb(bus, 0x64) & 0x01, "output buffer should be full"
    return inb(bus, 0x60)


def test_kbc_self_test_and_command_byte(machine):
    bus = machine.ports
    assert not inb(bus, 0x64) & 0x01
    kbc_cmd(bus, 0xAA)
    assert kbc_read(bus) == 0x55
    assert not inb(bus, 0x64) & 0x01
    kbc_cmd(bus, 0xAB)
    assert kbc_read(bus) == 0x00
    kbc_cmd(bus, 0x60)
    outb(bus, 0x60, 0x47)
    kbc_cmd(bus, 0x20)
    assert kbc_read(bus) == 0x47
    kbc_cmd(bus, 0xAD)
    kbc_cmd(bus, 0x20)
    assert kbc_read(bus) & 0x10
    kbc_cmd(bus, 0xAE)
    kbc_cmd(bus, 0x20)
    assert not kbc_read(bus) & 0x10


def test_kbc_keyboard_commands_are_acknowledged(machine):
    bus = machine.ports
    outb(bus, 0x60, 0xF2)                      # identify
    assert [kbc_read(bus) for _ in range(3)] == [0xFA, 0xAB, 0x41]
    outb(bus, 0x60, 0xED)                      # LEDs + parameter
    assert kbc_read(bus) == 0xFA
    outb(bus, 0x60, 0x02)
    assert kbc_read(bus) == 0xFA
    outb(bus, 0x60, 0xF4)
    assert kbc_read(bus) == 0xFA
    outb(bus, 0x60, 0xFF)                      # reset: ack then self-test passed
    assert [kbc_read(bus), kbc_read(bus)] == [0xFA, 0xAA]
    outb(bus, 0x60, 0xEE)
    assert kbc_read(bus) == 0xEE


def test_a20_is_one_state_for_kbc_and_port92(machine):
    bus = machine.ports
    kbc_cmd(bus, 0xD1)
    outb(bus, 0x60, 0xDD)                      # output port with A20 off, reset line high
    assert bus.read(0x92, 1) & 0x02 == 0
    kbc_cmd(bus, 0xD0)
    assert kbc_read(bus) & 0x02 == 0
    bus.write(0x92, 1, 0x02)                   # fast A20 on
    kbc_cmd(bus, 0xD0)
    out = kbc_read(bus)
    assert out & 0x02 and out & 0x01
    kbc_cmd(bus, 0xDD)
    assert bus.read(0x92, 1) & 0x02 == 0
    kbc_cmd(bus, 0xDF)
    assert bus.read(0x92, 1) & 0x02
    assert not machine.stopping


def test_kbc_reset_pulse_stops_the_machine(machine):
    kbc_cmd(machine.ports, 0xFF)               # pulse nothing
    assert not machine.stopping
    kbc_cmd(machine.ports, 0xFE)
    assert machine.stopping and machine._stop.reason == "poweroff"


def test_kbc_output_port_reset_bit_low_resets(machine):
    kbc_cmd(machine.ports, 0xD1)
    outb(machine.ports, 0x60, 0xDE)            # bit 0 clear: reset asserted
    assert machine.stopping


# -- POST code port and UART ------------------------------------------------------------
def test_post_codes_keep_the_last_values(machine):
    for value in range(40):
        outb(machine.ports, 0x80, value)
    codes = machine.devices["postcode"].codes
    assert list(codes)[-3:] == [37, 38, 39]
    assert machine.devices["postcode"].last == 39


def test_uart_reports_thr_empty_interrupt_as_seabios_detects_it(machine):
    bus = machine.ports
    bus.write(0x3F9, 1, 0x02)                  # IER: THR empty interrupt
    assert bus.read(0x3F9, 1) == 0x02
    assert bus.read(0x3FA, 1) & 0x3F == 0x02   # IIR: THR empty pending
    assert bus.read(0x3FA, 1) & 0x01           # reading IIR cleared it
    bus.write(0x3F8, 1, ord("x"))
    assert bus.read(0x3FA, 1) & 0x3F == 0x02
    assert bytes(machine.console) == b"x"
