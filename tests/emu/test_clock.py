"""One virtual clock: PIT channel 2 (gated by port 61h, output on its bit 5), rdtsc and
the BIOS tick count agree with one another, as memtest86+'s CPU clock measurement
needs, and a run's timing is the same on every run."""
import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvboot.emu.clock import (
    BIOS_CALL_NS, NS_PER_S, PIT_HZ, PORT61_IDLE_AFTER, PORT_ACCESS_NS, RDTSC_IDLE_AFTER,
    RDTSC_NS, TICK_HZ, TICKS_PER_DAY, TSC_HZ, Clock,
)
from pvboot.emu.diskimage import DiskImage
from pvboot.emu.machine import Machine
from pvboot.firmware.bios import Bios, BiosConfig
from tests import qemu
from tests.conftest import assemble16

RESULTS = 0x600
PIT_TICKS_50MS = 59659                 # memtest86+'s one-shot: 50 ms of PIT clocks

# memtest86+'s measurement (system/cpuinfo.c): channel 2 in mode 0 with the gate off,
# load 50 ms, gate on, rdtsc, count port 61h polls until OUT goes high, rdtsc.
# Then: INT 1Ah ticks before and after ROUNDS more one-shots.  Results at RESULTS:
# polls (u32), TSC delta (u64), BIOS ticks before (u32), after (u32).
CALIBRATION = f"""
        cli
        xor ax, ax
        mov ds, ax
        call one_shot
        mov [{RESULTS}], ecx
        mov [{RESULTS} + 4], eax
        mov [{RESULTS} + 8], edx
        xor ah, ah
        int 0x1a
        mov [{RESULTS} + 12], dx
        mov [{RESULTS} + 14], cx
        mov si, ROUNDS
    more:
        call one_shot
        dec si
        jnz more
        xor ah, ah
        int 0x1a
        mov [{RESULTS} + 16], dx
        mov [{RESULTS} + 18], cx
        mov al, 0
        out 0xf4, al

    # ecx = polls, edx:eax = TSC cycles of one 50 ms one-shot.
    one_shot:
        in al, 0x61
        and al, 0xfc                    # gate off, speaker off
        out 0x61, al
        mov al, 0xb0                    # channel 2, lo/hi, mode 0, binary
        out 0x43, al
        mov al, {PIT_TICKS_50MS & 0xFF}
        out 0x42, al
        mov al, {PIT_TICKS_50MS >> 8}
        out 0x42, al
        in al, 0x61
        or al, 0x01                     # gate on: counting starts
        out 0x61, al
        rdtsc
        mov ebx, eax
        mov edi, edx
        xor ecx, ecx
    poll:
        POLL_EXTRA
        inc ecx
        in al, 0x61
        test al, 0x20
        jz poll
        rdtsc
        sub eax, ebx
        sbb edx, edi
        ret
"""
ROUNDS = 4
# Linux's fallback PIT calibration (pit_calibrate_tsc) reads the TSC on every poll and
# wants at least 1000 polls in a 10 ms one-shot (CAL_PIT_LOOPS).
TSC_EVERY_POLL = """
        push edx
        push eax
        rdtsc
        pop eax
        pop edx"""


def _calibration_guest(poll_extra=""):
    return assemble16(CALIBRATION.replace("ROUNDS", str(ROUNDS)).replace("POLL_EXTRA", poll_extra)) \
        + bytes(63 * 512)


@pytest.fixture(scope="module")
def calibration_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("clock") / "calibration.img"
    path.write_bytes(_calibration_guest())
    return str(path)


@pytest.fixture(scope="module")
def calibration(calibration_image):
    return _calibrate(calibration_image)


def _calibrate(path, devices=None):
    """Boot the calibration guest: (polls, TSC cycles, ticks before, ticks after,
    guest seconds at the exit).  `devices`, a dict, gets the machine's port 61h."""
    machine = Machine()
    if devices is not None:
        devices["port61"] = machine.ports.device_at(0x61)
    disk = DiskImage(path, kind="hd")
    try:
        Bios(machine, BiosConfig(disks=[disk]))
        stop = machine.run(timeout=60)
        assert (stop.reason, stop.exit_value) == ("exit", 0), stop
        mem = machine.mem
        return (mem.read_u32(RESULTS), mem.read_u64(RESULTS + 4),
                mem.read_u32(RESULTS + 12), mem.read_u32(RESULTS + 16), machine.clock.now())
    finally:
        disk.close()
        machine.close()


def test_channel2_one_shot_polls_and_tsc_agree(calibration):
    polls, cycles, _before, _after, _now = calibration
    one_shot = PIT_TICKS_50MS / PIT_HZ
    # memtest86+ rejects fewer than 4 polls or 50,000 cycles.  Polls with nothing in
    # between wait idly after PORT61_IDLE_AFTER of them, each twice as long (16 more
    # reach 50 ms).
    assert 4 <= polls <= PORT61_IDLE_AFTER + 20
    # The TSC ran for the one-shot's 50 ms, seen by the first poll at or after the
    # output rose, on the grid of 1 us port accesses as without idle polls: within a
    # PIT clock before (counting starts between two) and a poll after.
    assert one_shot * TSC_HZ - TSC_HZ / PIT_HZ <= cycles <= (one_shot + 2e-6) * TSC_HZ
    # What memtest computes from it (kHz = cycles / 50 ms, shown in whole MHz): the
    # TSC rate the CPU reports.
    assert cycles // 50 // 1000 == TSC_HZ // 1_000_000


def test_a_poll_loop_reading_the_tsc_keeps_a_microsecond_a_poll(tmp_path):
    """rdtsc between polls moves guest time: no idle wait, one poll per port access, as
    Linux's PIT calibration needs (>= 1000 polls in 10 ms)."""
    path = tmp_path / "calibration-tsc.img"
    path.write_bytes(_calibration_guest(TSC_EVERY_POLL))
    devices = {}
    polls, cycles, _before, _after, _now = _calibrate(path, devices)
    one_shot = PIT_TICKS_50MS / PIT_HZ
    per_poll = PORT_ACCESS_NS + RDTSC_NS
    assert devices["port61"].idle_polls == 0
    assert abs(polls - one_shot * NS_PER_S / per_poll) <= 2
    assert polls / (one_shot * 1000) * 10 >= 1000
    # Within a PIT clock before (counting starts between two) and a poll after.
    assert one_shot * TSC_HZ - TSC_HZ / PIT_HZ <= cycles \
        <= (one_shot + 2 * per_poll / NS_PER_S) * TSC_HZ


def test_idle_polls_are_counted(calibration_image):
    devices = {}
    polls = _calibrate(calibration_image, devices)[0]
    # Every one-shot of the guest (1 + ROUNDS) idles after the same number of polls.
    assert devices["port61"].idle_polls == (1 + ROUNDS) * (polls - PORT61_IDLE_AFTER - 1)


def test_bios_tick_follows_the_pit(calibration):
    _polls, _cycles, before, after, _now = calibration
    expected_ticks = ROUNDS * PIT_TICKS_50MS / PIT_HZ * TICK_HZ
    assert abs((after - before) - expected_ticks) <= 1.01


def test_timing_is_the_same_on_every_run(calibration, calibration_image):
    again = _calibrate(calibration_image)
    assert again[:2] == calibration[:2]
    assert again[4] == calibration[4]          # guest seconds at the exit


@pytest.mark.skipif(not qemu.qemu_available(), reason="QEMU (Debian qemu-system-x86) not installed")
def test_qemu_runs_the_calibration_guest_to_the_same_exit(calibration_image):
    exit_value, _serial = qemu.run_qemu(calibration_image, timeout=30)
    assert exit_value == 0


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.integers(min_value=0, max_value=120_000_000), min_size=1, max_size=40),
       set_at=st.integers(min_value=0, max_value=39),
       ticks=st.integers(min_value=0, max_value=TICKS_PER_DAY - 1))
def test_bios_tick_count_kept_between_calls_is_always_current(steps, set_at, ticks):
    """bios_tick_total keeps its answer until just before the next tick: whatever the
    steps guest time takes, and after INT 1Ah AH=01h sets the count, it equals the
    count worked out afresh."""
    clock = Clock(start=datetime.datetime(2026, 12, 6, 23, 59, 58))
    for i, step in enumerate(steps):
        if i == set_at:
            clock.set_bios_ticks(ticks)
        clock.ns += step
        fresh = int((clock._seconds_at_boot + clock.ns / NS_PER_S) * TICK_HZ)
        assert clock.bios_tick_total() == fresh


def _rdtsc_costs(clock, pc, count):
    costs = []
    for _ in range(count):
        before = clock.ns
        clock.rdtsc(pc)
        costs.append(clock.ns - before)
    return costs


@pytest.mark.parametrize("event_ns", [PORT_ACCESS_NS, BIOS_CALL_NS])
def test_rdtsc_streak_ends_at_any_event_that_moves_guest_time(event_ns):
    """A run of back-to-back rdtsc at one place costs more and more (it is a wait);
    a port access or BIOS call in between, which the machine's hooks count by adding
    to `ns` without telling the clock, ends the run, as advance() does."""
    clock = Clock()
    costs = _rdtsc_costs(clock, 0x1234, RDTSC_IDLE_AFTER + 4)
    assert costs[:RDTSC_IDLE_AFTER + 1] == [RDTSC_NS] * (RDTSC_IDLE_AFTER + 1)
    assert costs[-1] > costs[-2] > RDTSC_NS
    clock.ns += event_ns
    assert _rdtsc_costs(clock, 0x1234, RDTSC_IDLE_AFTER + 1) == [RDTSC_NS] * (RDTSC_IDLE_AFTER + 1)
    clock.advance(1)
    assert _rdtsc_costs(clock, 0x1234, 1) == [RDTSC_NS]
    # Another place ends it too; nothing else does.
    _rdtsc_costs(clock, 0x1234, RDTSC_IDLE_AFTER + 1)
    assert _rdtsc_costs(clock, 0x1234, 1)[0] > RDTSC_NS
    assert _rdtsc_costs(clock, 0x5678, 1) == [RDTSC_NS]
