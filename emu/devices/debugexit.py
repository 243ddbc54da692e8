"""QEMU's isa-debug-exit at port 0xF4: a guest write ends the run with that value."""
from pvboot.emu.ioport import PortDevice


class DebugExit(PortDevice):
    ports = (0xF4, 0xF5, 0xF6, 0xF7)   # QEMU decodes iosize=4 from 0xF4

    def __init__(self, machine):
        self.machine = machine

    def write(self, port, size, value):
        value &= (1 << (8 * size)) - 1
        self.machine.stop("exit", f"guest wrote {value:#x} to port {port:#x}", exit_value=value)
