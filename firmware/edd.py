"""EDD (INT 13h AH=48h) answers and the ATA Device Parameter Table Extension, after
SeaBIOS block.c fill_edd / fill_ata_edd / fill_generic_edd."""
import struct

from pvboot.emu.devices.ata_regs import (ATA_CB_DC, ATA_CB_DH_DEV0, ATA_CB_DH_DEV1, ATA_CB_DH_LBA,
                                         IRQ_ATA1, IRQ_ATA2, PORT_ATA1_CMD_BASE, PORT_ATA1_CTRL_BASE,
                                         PORT_ATA2_CMD_BASE, PORT_ATA2_CTRL_BASE)
from pvboot.emu.hdgeometry import TRANSLATION_HOST, TRANSLATION_LBA, TRANSLATION_NONE, TRANSLATION_RECHS
from pvboot.firmware.diskop import DISK_RET_EPARAM, DISK_RET_SUCCESS, DTYPE_ATA

# Legacy IDE channels a hard disk appears on: disk i is channel i//2, master/slave i%2,
# as QEMU attaches -drive index 0..3.
ATA_CHANNELS = ((PORT_ATA1_CMD_BASE, PORT_ATA1_CTRL_BASE, IRQ_ATA1),
                (PORT_ATA2_CMD_BASE, PORT_ATA2_CTRL_BASE, IRQ_ATA2))
# The PCI function (bus, device, function) SeaBIOS finds those channels on in QEMU's PC:
# the PIIX3 IDE controller, 00:01.1.  EDD 3.0 reports it as the disks' host bus, so
# AH=48h answers byte for byte as on QEMU+SeaBIOS (the DPTE pointer aside).  None would
# make the answer the ISA form (host bus "ISA ", interface path = command port).
ATA_PCI_FUNCTION = (0, 1, 1)

# EDD bus/interface flags (block.c fill_generic_edd).
EDD_ISA = 0x01
EDD_PCI = 0x02
EDD_BUS_MASK = 0x0f
EDD_ATA = 0x10
EDD_SCSI = 0x20
EDD_IFACE_MASK = 0xf0


def ata_dpte(drive):
    """The EDD 2.x Device Parameter Table Extension of an ATA disk (fill_ata_edd)."""
    iobase1, iobase2, irq = ATA_CHANNELS[drive.cntl_id // 2]
    slave = drive.cntl_id % 2
    options = 0
    if drive.translation not in (TRANSLATION_NONE, TRANSLATION_HOST):
        options |= 1 << 3                   # CHS translation
        if drive.translation == TRANSLATION_LBA:
            options |= 1 << 9
        if drive.translation == TRANSLATION_RECHS:
            options |= 3 << 9
    options |= 1 << 4                       # LBA translation
    dpte = bytearray(16)
    struct.pack_into("<HHBBBBBBHHB", dpte, 0, iobase1, iobase2 + ATA_CB_DC,
                     (ATA_CB_DH_DEV1 if slave else ATA_CB_DH_DEV0) | ATA_CB_DH_LBA,
                     0xCB, irq, 1, 0, 0, options, 0, 0x11)
    dpte[15] = (-sum(dpte[:15])) & 0xFF
    return bytes(dpte)



def fill_edd(mem, addr, drive):
    """INT 13h AH=48h: fill the drive parameter buffer at linear `addr`
    (SeaBIOS fill_edd / fill_ata_edd / fill_generic_edd); returns a status.

    An ATA disk answers EDD 3.0 as SeaBIOS's ATA driver does on QEMU: host bus
    "PCI " with the IDE function's bus/device/function and the channel as interface
    path, interface "ATA     ", device path = master 0 / slave 1 (ATA_PCI_FUNCTION).
    Like SeaBIOS, the size field says 30 even when the EDD 3.0 part was filled, and
    the reserved byte before the checksum keeps the caller's value."""
    size = mem.read_u16(addr)
    if size < 26:
        return DISK_RET_EPARAM
    t13 = size == 74
    if drive.dtype == DTYPE_ATA:
        channel = drive.cntl_id // 2
        device_path = drive.cntl_id % 2
        dpte_so = drive.dpte_segoff
        if ATA_PCI_FUNCTION is None:
            bus_iface, iface_path = EDD_ISA | EDD_ATA, ATA_CHANNELS[channel][0]
        else:
            bus, dev, fn = ATA_PCI_FUNCTION
            bus_iface = EDD_PCI | EDD_ATA
            iface_path = bus | (dev << 8) | (fn << 16) | (channel << 24)   # edd_pci_path
    else:
        dpte_so = bus_iface = iface_path = device_path = 0
    # Patch a copy of the caller's buffer: fields SeaBIOS leaves alone keep their bytes
    # (the checksum covers them too).
    length = 26 if size < 30 or not dpte_so else (30 if size < 66 or not bus_iface
                                                  else (74 if t13 else 66))
    buf = bytearray(mem.read(addr, length))
    pchs, sectors = drive.pchs, drive.sectors
    struct.pack_into("<H", buf, 0, 26)
    if sectors == 0xFFFFFFFFFFFFFFFF:
        # Removable, media change, lockable; maximum values.
        struct.pack_into("<HIII", buf, 2, 0x74, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    else:
        if sectors > pchs.sectors * pchs.heads * 0x3FFF:
            struct.pack_into("<HI", buf, 2, 0x00, 0x3FFF)            # geometry invalid
        else:
            struct.pack_into("<HI", buf, 2, 0x02, pchs.cylinders)    # geometry valid
        struct.pack_into("<II", buf, 8, pchs.heads, pchs.sectors)
    struct.pack_into("<QH", buf, 16, sectors, drive.blksize)
    if length >= 30:
        struct.pack_into("<H", buf, 0, 30)
        struct.pack_into("<I", buf, 26, dpte_so)
    if length >= 66:
        struct.pack_into("<HBBH", buf, 30, 0xBEDD, 44 if t13 else 36, 0, 0)
        host_bus = b"ISA "
        if (bus_iface & EDD_BUS_MASK) == EDD_PCI:
            host_bus = b"PCI "
            if not t13:
                # The Phoenix v3 layout (pre T13) has no PCI channel field.
                iface_path &= 0x00FFFFFF
        iface_type = b"SCSI    " if (bus_iface & EDD_IFACE_MASK) == EDD_SCSI else b"ATA     "
        buf[36:40] = host_bus
        buf[40:48] = iface_type
        struct.pack_into("<Q", buf, 48, iface_path)
        if t13:
            struct.pack_into("<QQ", buf, 56, device_path, 0)
            buf[73] = (-sum(buf[30:73])) & 0xFF
        else:
            struct.pack_into("<Q", buf, 56, device_path)
            buf[65] = (-sum(buf[30:65])) & 0xFF
    if mem.is_writable_ram(addr, length):
        mem.write(addr, buf)
    return DISK_RET_SUCCESS
