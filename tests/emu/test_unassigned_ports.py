"""Port I/O nobody decodes: as on a PC, reads give all ones in the access's width and
writes vanish, whatever the port and size, and the run goes on (no internal error).
The firmware's private trap port counts as unassigned for code outside the ROM."""
import random

import pytest

from pvboot.emu.machine import TRAP_PORT, Machine
from pvboot.tools import runner

# What a PC (and pvboot) decodes, kept clear of: motherboard 0x00-0xFF (except the
# trap port, tried on purpose), IDE 0x170-0x177/0x1F0-0x1F7/0x376/0x3F6, COM1/COM2,
# VGA 0x3B0-0x3DF, PCI configuration 0xCF8-0xCFF.
DECODED = [(0x00, 0xFF), (0x170, 0x177), (0x1F0, 0x1F7), (0x2F8, 0x2FF), (0x376, 0x376),
           (0x3B0, 0x3DF), (0x3F6, 0x3F6), (0x3F8, 0x3FF), (0xCF8, 0xCFF)]
PORTS_PER_RUN = 40


def _unassigned(port):
    return not any(lo <= port <= hi for lo, hi in DECODED)


def _random_ports(seed):
    rng = random.Random(seed)
    ports = [TRAP_PORT]
    while len(ports) < PORTS_PER_RUN:
        port = rng.randrange(0x100, 0x10000)
        if _unassigned(port) and _unassigned(port + 3):
            ports.append(port)
    return ports


def _guest(ports):
    # For each port: three reads (8, 16, 32 bits) that must be all ones, and three
    # writes of the bits just read, inverted.  Exit 0 when all reads matched.
    table = "".join(f"        .word {port:#x}\n" for port in ports)
    return """
        cli
        xor ax, ax
        mov ds, ax
        mov si, offset ports
    next_port:
        mov dx, [si]
        in al, dx
        cmp al, 0xff
        jne bad
        not al
        out dx, al
        in ax, dx
        cmp ax, 0xffff
        jne bad
        out dx, ax
        in eax, dx
        cmp eax, 0xffffffff
        jne bad
        mov eax, 0x12345678
        out dx, eax
        add si, 2
        cmp si, offset ports_end
        jne next_port
        mov al, 0
        out 0xf4, al
    bad:
        mov [0x600], dx
        mov al, 1
        out 0xf4, al
    ports:
""" + table + """
    ports_end:
"""


@pytest.mark.parametrize("seed", range(3))
def test_unassigned_ports_read_all_ones_and_swallow_writes(boot_program, seed):
    result = runner.boot([boot_program(_guest(_random_ports(seed)))], timeout=20)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.stop
    assert result.exit_code == runner.EXIT_SUCCESS


def test_every_unowned_port_and_size_on_the_bus():
    machine = Machine(memory_mib=16)
    try:
        bus = machine.ports
        for port in range(0x10000):
            if bus.device_at(port) is not None:
                continue
            for size in (1, 2, 4):
                bus.write(port, size, 0)
                assert bus.read(port, size) == (1 << (8 * size)) - 1, (port, size)
        assert not machine.stopping
    finally:
        machine.close()
