"""The POST diagnostic port 0x80.

Firmware and boot code write progress codes here (and Linux-style code writes it just
for a short I/O delay).  The last few values are kept for run reports.
"""
import collections

from pvboot.emu.ioport import PortDevice

PORT_POST = 0x80
KEEP = 16


class PostCode(PortDevice):
    ports = (PORT_POST,)

    def __init__(self):
        self.codes = collections.deque(maxlen=KEEP)

    @property
    def last(self):
        return self.codes[-1] if self.codes else None

    def read(self, port, size):
        # Reading 0x80 decodes nothing on a PC (QEMU answers 0xFF too).
        return (1 << (8 * size)) - 1

    def write(self, port, size, value):
        self.codes.append(value & ((1 << (8 * size)) - 1))
