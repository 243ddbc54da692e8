"""Fixtures of the firmware tests: `boot` runs a boot-sector program on the whole machine."""
import time

import pytest

from pvboot.emu.diskimage import DiskImage
from pvboot.emu.machine import Machine
from pvboot.firmware.bios import Bios, BiosConfig


@pytest.fixture
def boot(boot_program):
    """boot(source, keys=..., memory_mib=..., serial=...) -> (machine, bios, stop, wall)."""
    opened = []

    def run(source, keys="", memory_mib=64, serial=b"", timeout=20):
        disk = DiskImage(boot_program(source))
        machine = Machine(memory_mib=memory_mib)
        opened.append((disk, machine))
        bios = Bios(machine, BiosConfig(disks=[disk], keys=keys))
        if serial:
            machine.devices["com1"].feed(serial)
        started = time.monotonic()
        stop = machine.run(timeout=timeout)
        return machine, bios, stop, time.monotonic() - started

    yield run
    for disk, machine in opened:
        disk.close()
        machine.close()
