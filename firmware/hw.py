"""The firmware's drivers for the PC platform, after SeaBIOS's hw/ (rtc.c, pic.c, the
A20 gate of x86.h): every access is an IN or OUT on the machine's port bus, as the
BIOS's would be on a PC, so the firmware never holds a device object.  What else the
firmware takes from the machine is the `Platform` below."""
from typing import Protocol

from pvboot.emu.devices.cmos import NMI_DISABLE_BIT, PORT_CMOS_DATA, PORT_CMOS_INDEX
from pvboot.emu.devices.pic import PORT_PIC1_DATA, PORT_PIC2_DATA
from pvboot.emu.devices.sysctl import A20_ENABLE_BIT, PORT_A20


class Platform(Protocol):
    """What the BIOS uses of the machine it runs on (emu/machine.py Machine), and all
    it uses: devices only through `ports`."""

    ports: object           # the port bus: read(port, size), write(port, size, value)
    mem: object             # emu/memory.py GuestMemory
    clock: object           # emu/clock.py: virtual time
    cpu: object             # emu/cpu.py Cpu: registers, interrupt frames
    console: bytearray      # every byte the guest sent to COM1
    counters: dict          # run statistics the firmware adds to
    # Hooks the BIOS installs (Bios.__init__): ROM stub traps, in-place service of
    # plain stubs, `hlt` with IF set, the IVT default, crash report sections, --trace int.
    trap_handler: object
    in_place_handler: object
    in_place_stubs: frozenset
    idle_handler: object
    default_vector: int
    report_sections: list
    interrupt_tracer: object

    def stop(self, reason: str, detail: str = "") -> None: ...


def inb(ports, port):
    return ports.read(port, 1)


def outb(ports, value, port):
    ports.write(port, 1, value & 0xFF)


def rtc_read(ports, index):
    """CMOS register `index`, with NMI kept off (SeaBIOS rtc_read)."""
    outb(ports, index | NMI_DISABLE_BIT, PORT_CMOS_INDEX)
    return inb(ports, PORT_CMOS_DATA)


def rtc_write(ports, index, value):
    outb(ports, index | NMI_DISABLE_BIT, PORT_CMOS_INDEX)
    outb(ports, value, PORT_CMOS_DATA)


def pic_irq_masked(ports, irq):
    """True if `irq` (0-15) is masked in its 8259's interrupt mask register."""
    port = PORT_PIC1_DATA if irq < 8 else PORT_PIC2_DATA
    return bool(inb(ports, port) & (1 << (irq & 7)))


def get_a20(ports):
    return bool(inb(ports, PORT_A20) & A20_ENABLE_BIT)


def set_a20(ports, enabled):
    """Gate A20 through port 92h (SeaBIOS set_a20); returns the old state."""
    value = inb(ports, PORT_A20)
    outb(ports, (value & ~A20_ENABLE_BIT & ~1) | (A20_ENABLE_BIT if enabled else 0), PORT_A20)
    return bool(value & A20_ENABLE_BIT)
