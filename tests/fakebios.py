"""A stand-in for firmware.bios.Bios with just what the block layer and INT 13h use,
on a real machine and memory, so their functions can be called directly."""
from types import SimpleNamespace

from pvboot.emu.machine import Machine
from pvboot.firmware.block import BlockLayer
from pvboot.roms import DATA_AREA_OFFSET, ROM_BASE


class FakeBios:
    """What the block layer and INT 13h use of firmware.bios.Bios."""

    cdemu = None            # no CD drive, so no El Torito emulation

    def __init__(self, disks, trace=(), boot_order=None):
        self.machine = Machine(memory_mib=2)
        self.mem = self.machine.mem
        self.clock = self.machine.clock
        self.counters = self.machine.counters
        self.config = SimpleNamespace(disks=list(disks), boot_order=boot_order, xen=None,
                                      trace=frozenset(trace), trace_out=None)
        self.lines = []
        self._rom_next = ROM_BASE + DATA_AREA_OFFSET
        self.block = BlockLayer(self)
        self.block.setup()

    def rom_alloc(self, data, align=16):
        addr = (self._rom_next + align - 1) & ~(align - 1)
        self.mem.write(addr, bytes(data))
        self._rom_next = addr + len(data)
        return addr

    def trace(self, line):
        self.lines.append(line)
