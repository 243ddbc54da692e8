"""The ISA devices of a PC that boot code touches, installed on the machine's port bus."""
from pvboot.emu.devices.cmos import Cmos
from pvboot.emu.devices.debugexit import DebugExit
from pvboot.emu.devices.kbc import KeyboardController
from pvboot.emu.devices.pic import Pic
from pvboot.emu.devices.pit import Pit
from pvboot.emu.devices.postcode import PostCode
from pvboot.emu.devices.sysctl import SystemControlA, SystemControlB
from pvboot.emu.devices.uart import Uart16550
from pvboot.emu.devices.vga import VGA_WINDOW_BASE, Vga


def install_pc_devices(machine):
    """Create the standard devices and register them on `machine.ports`; returns them by name."""
    pit = Pit(machine.clock)
    port92 = SystemControlA(machine)
    devices = {
        "com1": Uart16550(0x3F8, machine.transmit),
        "debug-exit": DebugExit(machine),
        "pic": Pic(),
        "pit": pit,
        "port61": SystemControlB(pit),
        "port92": port92,
        "kbc": KeyboardController(machine, port92),
        "cmos": Cmos(machine.clock, ram_size=machine.mem.size),
        "postcode": PostCode(),
        # Maps its frame buffer above RAM, where the PCI hole is.
        "vga": Vga(machine.uc, ram_end=machine.mem.size,
                   vga_window=machine.mem.host_address(VGA_WINDOW_BASE)),
    }
    for device in devices.values():
        machine.ports.register(device)
    return devices
