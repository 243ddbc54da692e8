"""INT 13h disk services, after SeaBIOS's src/disk.c: one function per INT 13h function,
named as in disk.c (floppy_13xx where disk.c branches on floppy).  Each decodes and checks
the caller's registers and hands at most one DiskOp to bios.block.process_op.  Where it
follows SeaBIOS on purpose and where not: docs/disk-drivers.md.
CD drives (E0h+) and El Torito are firmware/cdrom.py and firmware/cdemu.py.
"""
import struct

from pvboot.firmware import bda
from pvboot.firmware.edd import fill_edd
from pvboot.firmware.block import (
    CMD_FORMAT, CMD_ISREADY, CMD_READ, CMD_RESET, CMD_SEEK, CMD_VERIFY, CMD_WRITE,
    DISK_RET_ECHANGED, DISK_RET_ENOTREMOVABLE, DISK_RET_EPARAM, DISK_RET_SUCCESS,
    EXTSTART_HD, SEG_BIOS, BIOS_BASE, DiskOp,
)

# BDA byte SeaBIOS clears on every hard disk call (the IRQ 14 completion flag).
DISK_INTERRUPT_FLAG = 0x48E

# Disk address packet (SeaBIOS struct int13ext_s): size u8, reserved u8, count u16,
# buffer offset u16, buffer segment u16, lba u64.
_DAP_FIELDS = struct.Struct("<HHHQ")     # from offset 2
_DAP_COUNT = 2


def handle_13(bios, regs):
    """INT 13h entry (SeaBIOS handle_13): El Torito's AH=4Bh, and every call while a
    disc is emulated, go to firmware/cdemu.py (set up at POST); the rest to
    handle_legacy_disk.  The function (AH) is read here once and handed down: each
    read of a register is a property call."""
    function = regs.ah
    cdemu = bios.cdemu
    if cdemu is not None and (function == 0x4B or cdemu.media):
        cdemu.handle_13(bios, regs, function)
        return
    handle_legacy_disk(bios, regs, regs.dl, function)


def handle_legacy_disk(bios, regs, extdrive, function):
    """The drive `extdrive` (after El Torito's renumbering) serves INT 13h function
    `function` (the caller's AH)."""
    drive = bios.block.get_drive(extdrive)
    if drive is None:
        # No such floppy, hard disk or CD: even AH=01h/08h/15h fail (as in SeaBIOS).
        disk_ret(bios, regs, DISK_RET_EPARAM)
        return
    if extdrive < EXTSTART_HD:
        floppy_13(bios, regs, drive, function)
    else:
        disk_13(bios, regs, drive, function)


def disk_13(bios, regs, drive, function):
    # Writes to the BDA go to the buffer directly: it never holds code to invalidate.
    bios.mem.buf[DISK_INTERRUPT_FLAG] = 0
    # CD and El Torito drives bring their own table (firmware/cdrom.py, cdemu.py).
    functions = drive.int13_functions or DISK_FUNCTIONS
    functions.get(function, disk_13XX)(bios, regs, drive)


def floppy_13(bios, regs, drive, function):
    service = FLOPPY_FUNCTIONS.get(function)
    if service is None:
        disk_13XX(bios, regs, drive)
        return
    bios.mem.buf[DISK_INTERRUPT_FLAG] = 0
    service(bios, regs, drive)


# -- return status -----------------------------------------------------------------------
def disk_ret(bios, regs, code):
    """Record the status as the drive's last status and return it (SeaBIOS __disk_ret):
    0 -> AH=0, CF=0; anything else -> AH=code, CF=1."""
    if regs.dl < EXTSTART_HD:
        bios.mem.buf[bda.FLOPPY_LAST_STATUS] = code
    else:
        bios.mem.buf[bda.DISK_LAST_STATUS] = code
    regs.set_ah_cf(code, code != 0)


# -- helpers -----------------------------------------------------------------------------
def basic_access(bios, regs, drive, command):
    """AH=02h/03h/04h: CHS in CX/DH, count in AL, buffer ES:BX."""
    count = regs.al
    cl = regs.cl
    cylinder = regs.ch | ((cl << 2) & 0x300)
    sector = cl & 0x3F
    head = regs.dh
    if count > 128 or count == 0 or sector == 0:
        disk_ret(bios, regs, DISK_RET_EPARAM)
        return
    nlc, nlh, nls = drive.lchs
    if cylinder >= nlc or head >= nlh or sector > nls:
        disk_ret(bios, regs, DISK_RET_EPARAM)
        return
    lba = (cylinder * nlh + head) * nls + sector - 1
    op = DiskOp(command, drive, lba, count, (regs.es << 4) + regs.bx)
    status = bios.block.process_op(op)
    regs.al = op.count
    disk_ret(bios, regs, status)


def extended_access(bios, regs, drive, command):
    """AH=42h/43h/44h/47h: the disk address packet at DS:SI."""
    mem = bios.mem
    dap = (regs.ds << 4) + regs.si
    count, offset, segment, lba = _DAP_FIELDS.unpack_from(mem.buf, dap + _DAP_COUNT)
    if lba >= drive.sectors:
        disk_ret(bios, regs, DISK_RET_EPARAM)
        return
    if not count:
        disk_ret(bios, regs, DISK_RET_SUCCESS)
        return
    op = DiskOp(command, drive, lba, count, (segment << 4) + offset)
    status = bios.block.process_op(op)
    # The packet may sit next to code: write through mem so stale translations go.
    if mem.is_writable_ram(dap + _DAP_COUNT, 2):
        mem.write_u16(dap + _DAP_COUNT, op.count)
    disk_ret(bios, regs, status)


def _simple_op(bios, regs, drive, command):
    op = DiskOp(command, drive)
    disk_ret(bios, regs, bios.block.process_op(op))


def disk_stub(bios, regs, drive):
    """Functions SeaBIOS accepts and does nothing for (DISK_STUB)."""
    disk_ret(bios, regs, DISK_RET_SUCCESS)


# -- hard disk functions -----------------------------------------------------------------
def disk_1300(bios, regs, drive):
    """Reset disk system."""
    _simple_op(bios, regs, drive, CMD_RESET)


def disk_1301(bios, regs, drive):
    """Read status of the last operation: AH = status, CF = status != 0 (not cleared)."""
    status = bios.mem.buf[bda.DISK_LAST_STATUS]
    regs.set_ah_cf(status, status != 0)


def disk_1302(bios, regs, drive):
    """Read sectors (CHS)."""
    basic_access(bios, regs, drive, CMD_READ)


def disk_1303(bios, regs, drive):
    """Write sectors (CHS)."""
    basic_access(bios, regs, drive, CMD_WRITE)


def disk_1304(bios, regs, drive):
    """Verify sectors (CHS)."""
    basic_access(bios, regs, drive, CMD_VERIFY)


def disk_1305(bios, regs, drive):
    """Format track: CH = cylinder (8 bits only, as SeaBIOS), DH = head, AL = sectors."""
    nlc, nlh, nls = drive.lchs
    count = regs.al
    cylinder = regs.ch
    head = regs.dh
    if cylinder >= nlc or head >= nlh or count == 0 or count > nls:
        disk_ret(bios, regs, DISK_RET_EPARAM)
        return
    op = DiskOp(CMD_FORMAT, drive, (cylinder * nlh + head) * nls, count, (regs.es << 4) + regs.bx)
    disk_ret(bios, regs, bios.block.process_op(op))


def disk_1308(bios, regs, drive):
    """Get drive parameters: CH/CL = last cylinder and sectors per track, DH = last head,
    DL = number of hard disks.  SeaBIOS reports logical cylinders - 2: one for
    0-based numbering and one "reserved" last cylinder."""
    nlc, nlh, nls = drive.lchs
    nlc = (nlc - 2) & 0xFFFF
    nlh = (nlh - 1) & 0xFFFF
    count = bios.mem.buf[bda.HDCOUNT]
    _report_geometry(regs, nlc, nlh, nls)
    disk_ret(bios, regs, DISK_RET_SUCCESS)
    regs.dl = count


def _report_geometry(regs, last_cylinder, last_head, spt):
    regs.al = 0
    regs.ch = last_cylinder & 0xFF
    regs.cl = ((last_cylinder >> 2) & 0xC0) | (spt & 0x3F)
    regs.dh = last_head


disk_1309 = disk_stub      # initialize drive parameters
disk_130c = disk_stub      # seek to cylinder
disk_130d = disk_stub      # alternate disk reset


def disk_1310(bios, regs, drive):
    """Check drive ready."""
    _simple_op(bios, regs, drive, CMD_ISREADY)


disk_1311 = disk_stub      # recalibrate
disk_1314 = disk_stub      # controller internal diagnostic


def disk_1315(bios, regs, drive):
    """Get disk type: AH=3 (fixed disk), CX:DX = sectors the CHS calls can reach,
    counted as SeaBIOS does: (logical cylinders - 1) * heads * sectors."""
    disk_ret(bios, regs, DISK_RET_SUCCESS)
    nlc, nlh, nls = drive.lchs
    lba = ((nlc - 1) * nlh * nls) & 0xFFFFFFFF
    regs.cx = lba >> 16
    regs.dx = lba & 0xFFFF
    regs.ah = 3


def disk_1316(bios, regs, drive):
    """Detect media change: not a hard disk function."""
    disk_ret(bios, regs, DISK_RET_EPARAM)


def disk_1341(bios, regs, drive):
    """Extensions installation check: BX=AA55h, CX=7 (packet access, locking/ejecting,
    EDD), AH=30h (EDD 3.0)."""
    regs.bx = 0xAA55
    regs.cx = 0x0007
    disk_ret(bios, regs, DISK_RET_SUCCESS)
    regs.ah = 0x30


def disk_1342(bios, regs, drive):
    """Extended read."""
    extended_access(bios, regs, drive, CMD_READ)


def disk_1343(bios, regs, drive):
    """Extended write."""
    extended_access(bios, regs, drive, CMD_WRITE)


def disk_1344(bios, regs, drive):
    """Extended verify."""
    extended_access(bios, regs, drive, CMD_VERIFY)


def disk_1345(bios, regs, drive):
    """Lock/unlock media: always succeeds for a hard disk."""
    disk_ret(bios, regs, DISK_RET_SUCCESS)


def disk_1346(bios, regs, drive):
    """Eject media: a hard disk is not removable."""
    disk_ret(bios, regs, DISK_RET_ENOTREMOVABLE)


def disk_1347(bios, regs, drive):
    """Extended seek."""
    extended_access(bios, regs, drive, CMD_SEEK)


def disk_1348(bios, regs, drive):
    """Get drive parameters (EDD): the buffer at DS:SI, its size in its first word."""
    disk_ret(bios, regs, fill_edd(bios.mem, (regs.ds << 4) + regs.si, drive))


def disk_1349(bios, regs, drive):
    """Extended media change: never for a hard disk."""
    disk_ret(bios, regs, DISK_RET_SUCCESS)


def disk_134e(bios, regs, drive):
    """Set hardware configuration: AL=01h/03h/04h/06h accepted, others AH=01."""
    if regs.al in (0x01, 0x03, 0x04, 0x06):
        disk_ret(bios, regs, DISK_RET_SUCCESS)
    else:
        disk_ret(bios, regs, DISK_RET_EPARAM)


def disk_13XX(bios, regs, drive):
    """Any other function: AH=01h, CF=1."""
    disk_ret(bios, regs, DISK_RET_EPARAM)


# -- floppy functions ----------------------------------------------------------------------
floppy_1300 = disk_1300
floppy_1302 = disk_1302
floppy_1303 = disk_1303
floppy_1304 = disk_1304
floppy_1305 = disk_1305


def floppy_1301(bios, regs, drive):
    """Read status of the last floppy operation."""
    status = bios.mem.buf[bda.FLOPPY_LAST_STATUS]
    regs.set_ah_cf(status, status != 0)


def floppy_1308(bios, regs, drive):
    """Get drive parameters: geometry of the drive type, BX = CMOS drive type,
    ES:DI = the diskette parameter table, DL = number of floppy drives."""
    nlc, nlh, nls = drive.lchs
    block = bios.block
    regs.bx = drive.floppy_type
    regs.es = SEG_BIOS
    regs.di = block.floppy_table_addr - BIOS_BASE
    _report_geometry(regs, (nlc - 1) & 0xFFFF, (nlh - 1) & 0xFFFF, nls)
    disk_ret(bios, regs, DISK_RET_SUCCESS)
    regs.dl = block.floppy_count


def floppy_1315(bios, regs, drive):
    """Get disk type: AH=1 for a floppy drive (SeaBIOS does not report change-line)."""
    disk_ret(bios, regs, DISK_RET_SUCCESS)
    regs.ah = 1


def floppy_1316(bios, regs, drive):
    """Detect media change: SeaBIOS always answers "changed"."""
    disk_ret(bios, regs, DISK_RET_ECHANGED)


DISK_FUNCTIONS = {
    0x00: disk_1300, 0x01: disk_1301, 0x02: disk_1302, 0x03: disk_1303, 0x04: disk_1304,
    0x05: disk_1305, 0x08: disk_1308, 0x09: disk_1309, 0x0C: disk_130c, 0x0D: disk_130d,
    0x10: disk_1310, 0x11: disk_1311, 0x14: disk_1314, 0x15: disk_1315, 0x16: disk_1316,
    0x41: disk_1341, 0x42: disk_1342, 0x43: disk_1343, 0x44: disk_1344, 0x45: disk_1345,
    0x46: disk_1346, 0x47: disk_1347, 0x48: disk_1348, 0x49: disk_1349, 0x4E: disk_134e,
}

FLOPPY_FUNCTIONS = {
    0x00: floppy_1300, 0x01: floppy_1301, 0x02: floppy_1302, 0x03: floppy_1303,
    0x04: floppy_1304, 0x05: floppy_1305, 0x08: floppy_1308, 0x15: floppy_1315,
    0x16: floppy_1316,
}
