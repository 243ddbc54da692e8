"""System services, after SeaBIOS's src/system.c, misc.c and apm.c: INT 11h, INT 12h and
INT 15h (A20, APM, block move, memory size and map, configuration table, waits), plus
the platform part of POST.  Memory answers come from emu/memmap.py; A20 goes out on
port 92h (firmware/hw.py).
"""
import struct

from pvboot.emu.memmap import BIOS_ROM_BASE, BIOS_ROM_SIZE, CONVENTIONAL_END, EBDA_BASE, EXTENDED_BASE
from pvboot.firmware import bda, clock, serial
from pvboot.firmware.hw import get_a20, set_a20

RET_EUNSUPPORTED = 0x86
SMAP_SIGNATURE = 0x534D4150          # 'SMAP'
E820_RAM = 1
E820_RESERVED = 2
E820_ENTRY_SIZE = 20

# INT 15h C0h configuration table (SeaBIOS config.h / misc.c).
BUILD_MODEL_ID = 0xFC
BUILD_SUBMODEL_ID = 0x00
BUILD_BIOS_REVISION = 0x01
CBT_F1_2NDPIC = 1 << 6
CBT_F1_RTC = 1 << 5
CBT_F1_EBDA = 1 << 2
CBT_F2_INT1609 = 1 << 6
# SeaBIOS also claims CBT_F1_INT154F; pvboot has no IRQ1 handler calling INT 15h AH=4Fh.

# Interrupt controller setup (SeaBIOS hw/pic.c).
PORT_PIC1_CMD, PORT_PIC1_DATA, PORT_PIC2_CMD, PORT_PIC2_DATA = 0x20, 0x21, 0xA0, 0xA1
BIOS_HWIRQ0_VECTOR = 0x08
BIOS_HWIRQ8_VECTOR = 0x70
PIC_IRQ_TIMER, PIC_IRQ_KEYBOARD, PIC_IRQ_CASCADE = 1 << 0, 1 << 1, 1 << 2

# APM (SeaBIOS apm.c; error codes from the APM 1.2 specification).
APM_VERSION = 0x0102
APM_SIGNATURE = 0x504D               # BH='P', BL='M'
APM_ALL_DEVICES = 0x0001
APM_STATE_OFF = 0x0003
APM_ERR_NO_16BIT_PM = 0x06
APM_ERR_NO_32BIT_PM = 0x08
APM_RET_ENOEVENT = 0x80

KiB = 1024
MiB = 1024 * KiB


class SystemState:
    """Tables POST builds for INT 15h."""

    def __init__(self, config_table, e820):
        self.config_table = config_table        # linear address in the ROM
        self.e820 = e820                        # [(base, length, type)], sorted
        self.e820_records = [struct.pack("<QQI", *entry) for entry in e820]


def e820_map(mem, ebda_base):
    """The memory map as SeaBIOS builds it for a PC without ACPI tables.  The Xen area
    at the top of RAM (ring, grant and bounce pages) is reserved, as SeaBIOS reserves
    its high zone: a loader that puts its heap there (GRUB does) would overwrite the
    PV disk's ring."""
    return [
        (0, ebda_base, E820_RAM),
        (ebda_base, CONVENTIONAL_END - ebda_base, E820_RESERVED),
        (BIOS_ROM_BASE, BIOS_ROM_SIZE, E820_RESERVED),
        (EXTENDED_BASE, mem.xen_area_base - EXTENDED_BASE, E820_RAM),
        (mem.xen_area_base, mem.size - mem.xen_area_base, E820_RESERVED),
    ]


def pic_setup(bios):
    """ICW1-4 for both controllers (vectors 08h and 70h, cascade on IRQ2), then mask
    everything but the timer, the keyboard and the cascade."""
    ports = bios.machine.ports
    for cmd, data, vector, cascade in ((PORT_PIC1_CMD, PORT_PIC1_DATA, BIOS_HWIRQ0_VECTOR, 0x04),
                                       (PORT_PIC2_CMD, PORT_PIC2_DATA, BIOS_HWIRQ8_VECTOR, 0x02)):
        ports.write(cmd, 1, 0x11)
        ports.write(data, 1, vector)
        ports.write(data, 1, cascade)
        ports.write(data, 1, 0x01)
    ports.write(PORT_PIC1_DATA, 1, ~(PIC_IRQ_TIMER | PIC_IRQ_KEYBOARD | PIC_IRQ_CASCADE) & 0xFF)
    ports.write(PORT_PIC2_DATA, 1, 0xFF)


def system_init(bios):
    """The platform part of POST: devices as SeaBIOS leaves them, the C0h configuration
    table in the ROM, the E820 map."""
    pic_setup(bios)
    clock.clock_setup(bios)
    serial.serial_setup(bios)
    mem = bios.mem
    table = struct.pack("<HBBBBBBBB", 8, BUILD_MODEL_ID, BUILD_SUBMODEL_ID, BUILD_BIOS_REVISION,
                        CBT_F1_2NDPIC | CBT_F1_RTC | CBT_F1_EBDA, CBT_F2_INT1609, 0, 0, 0)
    ebda_base = (mem.read_u16(bda.EBDA_SEG) << 4) or EBDA_BASE
    bios.system = SystemState(bios.rom_alloc(table), e820_map(mem, ebda_base))


def _ram_size(bios):
    """SeaBIOS's LegacyRamSize: RAM below 4 GiB, counted from address 0, up to the
    reserved Xen area (E801 and AH=88h agree with E820)."""
    return bios.mem.xen_area_base


# -- INT 11h, INT 12h -------------------------------------------------------------------
def handle_11(bios, regs):
    regs.ax = bios.mem.read_u16(bda.EQUIPMENT_LIST_FLAGS)


def handle_12(bios, regs):
    regs.ax = bios.mem.read_u16(bda.MEM_SIZE_KB)


# -- INT 15h ----------------------------------------------------------------------------
def _success(regs):
    regs.ah = 0
    regs.cf = False


def _unsupported(regs):
    regs.ah = RET_EUNSUPPORTED
    regs.cf = True


def handle_1524(bios, regs):
    ports = bios.machine.ports
    al = regs.al
    if al == 0x00:
        set_a20(ports, False)
    elif al == 0x01:
        set_a20(ports, True)
    elif al == 0x02:
        regs.al = 1 if get_a20(ports) else 0
    elif al == 0x03:
        regs.bx = 3                 # keyboard controller and port 92h
    else:
        _unsupported(regs)
        return
    _success(regs)


def handle_154f(bios, regs):
    regs.cf = True                  # keyboard intercept: the scan code is processed as is


def handle_1552(bios, regs):
    _success(regs)


def handle_1553(bios, regs):
    """APM.  Only the real-mode interface exists (no protected-mode entry points are
    offered: the installation check's flags say so)."""
    handler = _APM_FUNCTIONS.get(regs.al)
    if handler is None:
        regs.cf = True
        return
    handler(bios, regs)


def handle_155300(bios, regs):
    regs.ax = APM_VERSION
    regs.bx = APM_SIGNATURE
    regs.cx = 0                     # neither 16- nor 32-bit protected-mode interface
    regs.cf = False


def handle_155301(bios, regs):
    regs.cf = False


def handle_155302(bios, regs):
    regs.ah = APM_ERR_NO_16BIT_PM
    regs.cf = True


def handle_155303(bios, regs):
    regs.ah = APM_ERR_NO_32BIT_PM
    regs.cf = True


def handle_155304(bios, regs):
    regs.cf = False


def handle_155305(bios, regs):
    # CPU idle: nothing happens until the next tick, which the guest then takes.
    bios.clock.idle()
    clock.tick_on_return(bios, regs)
    regs.cf = False


def handle_155306(bios, regs):
    regs.cf = False


def handle_155307(bios, regs):
    if regs.bx == APM_ALL_DEVICES and regs.cx == APM_STATE_OFF:
        bios.stop("poweroff", "APM power off (INT 15h AX=5307h)")
    # Standby and suspend of all devices: there is nothing to suspend.
    regs.cf = False


def handle_155308(bios, regs):
    regs.cf = False


def handle_15530a(bios, regs):
    regs.bx = 0x01FF                # on line, battery status unknown
    regs.cx = 0x80FF                # no system battery, remaining time unknown
    regs.dx = 0xFFFF
    regs.si = 0
    regs.cf = False


def handle_15530b(bios, regs):
    regs.ah = APM_RET_ENOEVENT
    regs.cf = True


def handle_15530e(bios, regs):
    regs.ax = APM_VERSION
    regs.cf = False


def handle_15530f(bios, regs):
    regs.cf = False


def handle_155310(bios, regs):
    regs.bl = 0
    regs.cx = 0
    regs.cf = False


_APM_FUNCTIONS = {
    0x00: handle_155300, 0x01: handle_155301, 0x02: handle_155302, 0x03: handle_155303,
    0x04: handle_155304, 0x05: handle_155305, 0x06: handle_155306, 0x07: handle_155307,
    0x08: handle_155308, 0x0A: handle_15530a, 0x0B: handle_15530b, 0x0E: handle_15530e,
    0x0F: handle_15530f, 0x10: handle_155310,
}


def _descriptor_base(mem, addr):
    raw = mem.read(addr, 8)
    return raw[2] | (raw[3] << 8) | (raw[4] << 16) | (raw[7] << 24)


def handle_1587(bios, regs):
    """Block move: CX words from the source to the destination descriptor of the GDT at
    ES:SI (entries 2 and 3), the way loaders reach memory above 1 MiB from real mode.
    The copy is done directly; a range outside RAM (or a destination in ROM) fails with
    AH=02h instead of faulting as the processor would."""
    mem = bios.mem
    gdt = (regs.es << 4) + regs.si
    if gdt + 0x30 > mem.size:
        regs.ah = 0x02
        regs.cf = True
        return
    src = _descriptor_base(mem, gdt + 0x10)
    dst = _descriptor_base(mem, gdt + 0x18)
    length = regs.cx * 2
    if src + length > mem.size or not mem.is_writable_ram(dst, length):
        regs.ah = 0x02
        regs.cf = True
        return
    if length:
        mem.write(dst, mem.read(src, length))
    _success(regs)


def handle_1588(bios, regs):
    size = _ram_size(bios)
    # Ralf Brown says 15 MiB at most; real machines mostly stop at 63 MiB (SeaBIOS).
    regs.ax = 63 * 1024 if size > 64 * MiB else (size - MiB) // KiB
    regs.cf = False


def handle_1590(bios, regs):
    _success(regs)


def handle_1591(bios, regs):
    _success(regs)


def handle_15c0(bios, regs):
    addr = bios.system.config_table
    regs.es = BIOS_ROM_BASE >> 4
    regs.bx = addr - BIOS_ROM_BASE
    _success(regs)


def handle_15c1(bios, regs):
    regs.es = bios.mem.read_u16(bda.EBDA_SEG)
    regs.cf = False


def handle_15e801(bios, regs):
    size = _ram_size(bios)
    if size > 16 * MiB:
        cx = 15 * 1024
        dx = (size - 16 * MiB) // (64 * KiB)
    else:
        cx = (size - MiB) // KiB
        dx = 0
    # AX/BX "configured" equal CX/DX "extended"; some SYSLINUX versions misbehave with 0.
    regs.ax = regs.cx = cx
    regs.bx = regs.dx = min(dx, 0xFFFF)
    regs.cf = False


def handle_15e820(bios, regs):
    records = bios.system.e820_records
    index = regs.ebx
    if regs.edx != SMAP_SIGNATURE or index >= len(records) or regs.ecx < E820_ENTRY_SIZE:
        _unsupported(regs)
        return
    dest = (regs.es << 4) + regs.di
    if not bios.mem.is_writable_ram(dest, E820_ENTRY_SIZE):
        _unsupported(regs)
        return
    bios.mem.write(dest, records[index])
    regs.ebx = 0 if index == len(records) - 1 else index + 1
    regs.eax = SMAP_SIGNATURE
    regs.ecx = E820_ENTRY_SIZE
    regs.cf = False


def handle_15e8(bios, regs):
    al = regs.al
    if al == 0x01:
        handle_15e801(bios, regs)
    elif al == 0x20:
        handle_15e820(bios, regs)
    else:
        _unsupported(regs)


def handle_15XX(bios, regs):
    _unsupported(regs)


_FUNCTIONS = {
    0x24: handle_1524, 0x4F: handle_154f, 0x52: handle_1552, 0x53: handle_1553,
    0x83: clock.handle_1583, 0x86: clock.handle_1586, 0x87: handle_1587, 0x88: handle_1588,
    0x90: handle_1590, 0x91: handle_1591, 0xC0: handle_15c0, 0xC1: handle_15c1,
    0xE8: handle_15e8,
}


def handle_15(bios, regs):
    """INT 15h entry."""
    _FUNCTIONS.get(regs.ah, handle_15XX)(bios, regs)
