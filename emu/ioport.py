"""The port I/O bus: routes guest IN/OUT to the device that owns the port.

Ports nobody owns read as 0xFF (a floating ISA bus) and swallow writes, as on a PC.
"""


class PortDevice:
    """Base class of a port I/O device: `ports` lists what it decodes."""

    ports = ()

    def read(self, port, size):
        return 0xFF

    def write(self, port, size, value):
        pass


class PortBus:
    """Port number -> device, plus counters of how often the guest touched the bus."""

    def __init__(self):
        self._devices = {}
        self.reads = 0
        self.writes = 0

    def register(self, device):
        for port in device.ports:
            if port in self._devices:
                raise ValueError(f"port {port:#x} already owned by {self._devices[port]!r}")
            self._devices[port] = device
        return device

    def device_at(self, port):
        return self._devices.get(port)

    def read(self, port, size):
        self.reads += 1
        device = self._devices.get(port)
        if device is None:
            return (1 << (8 * size)) - 1
        return device.read(port, size)

    def write(self, port, size, value):
        self.writes += 1
        device = self._devices.get(port)
        if device is not None:
            device.write(port, size, value)
