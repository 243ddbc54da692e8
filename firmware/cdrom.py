"""CD-ROM drives: INT 13h on drives E0h+ and El Torito boot, after SeaBIOS's cdrom.c and
the CD branches of its disk.c.

Details: docs/cdrom.md.
"""
import struct

from pvboot.firmware import int13
from pvboot.emu.hdgeometry import CHS
from pvboot.firmware.block import EXTSTART_CD, MAX_TRANSFER_BYTES, Drive
from pvboot.firmware.diskop import CMD_FORMAT, CMD_READ, CMD_WRITE, DISK_RET_EBADTRACK, DISK_RET_ECHANGED, DISK_RET_ELOCKED, DISK_RET_ENOTLOCKED, DISK_RET_EPARAM, DISK_RET_ETOOMANYLOCKS, DISK_RET_EWRITEPROTECT, DISK_RET_SUCCESS, DISK_SECTOR_SIZE, DTYPE_ATA, DiskOp
from pvboot.emu.xen.abi import XEN_PAGE_SIZE
from pvboot.firmware.boot import BOOT_ADDR
from pvboot.firmware.edd import ata_dpte
from pvboot.firmware import cdemu
from pvboot.firmware.atapi import atapi_setup
from pvboot.firmware.cdmedia import MediaWatch
from pvboot.firmware.xenblk import XenBlkError, XenBlkFront

CDROM_SECTOR_SIZE = 2048
VIRTUAL_PER_CD_SECTOR = CDROM_SECTOR_SIZE // DISK_SECTOR_SIZE
UNKNOWN_SECTORS = (1 << 64) - 1       # SeaBIOS's ATAPI drives: size unknown to INT 13h

# El Torito (ISO 9660 + "El Torito" Bootable CD-ROM Format Specification 1.0).
BOOT_RECORD_LBA = 0x11
BOOT_RECORD_ID = b"\x00CD001\x01EL TORITO SPECIFICATION"
CATALOG_LBA_OFFSET = 0x47
BOOTABLE = 0x88
DEFAULT_LOAD_SEGMENT = 0x07C0
# The secondary IDE channel's master: where QEMU's -cdrom sits (EDD's channel 1, device 0).
CD_IDE_POSITION = 2
# DPTE option bits of an ATAPI device (SeaBIOS fill_ata_edd): removable, ATAPI.
DPTE_OPTIONS_OFFSET = 10
DPTE_REMOVABLE_ATAPI = (1 << 5) | (1 << 6)
MAX_LOCKS = 0xFF



class CdDrive(Drive):
    """A CD drive as INT 13h sees it (SeaBIOS drive_s of an ATAPI drive + its lock count)."""

    def __init__(self, number, driver, name, position=CD_IDE_POSITION):
        super().__init__(number, "cd", UNKNOWN_SECTORS, driver, CHS(0, 0, 0), CHS(0, 0, 0),
                         dtype=DTYPE_ATA, read_only=True, name=name, cntl_id=position)
        self.blksize = CDROM_SECTOR_SIZE
        self.locks = 0

    int13_functions = None      # CDROM_FUNCTIONS, set below

    def describe(self):
        return f"drive {self.number:02x}h: {self.name} (CD-ROM, {CDROM_SECTOR_SIZE}-byte sectors)"

    def boot(self, bios, regs):
        """INT 19h on this drive: El Torito boot; returns None once the boot image is
        loaded and the registers are set, else the failure line."""
        status = cdrom_boot(bios, self)
        if status:
            return f"drive {self.number:02x}h: Boot failed: Could not read from CDROM (code {status:04x})"
        emu = bios.cdemu
        segment = emu.load_segment
        # Canonical seg:ip as SeaBIOS's boot_cdrom jumps: 07C0 -> 0000:7C00.
        regs.edx = emu.emulated_drive
        regs.ds = 0
        regs.es = 0
        regs.set_return_address(segment & 0xF000, (segment & 0x0FFF) << 4)
        regs.set_return_flags(0x0202)
        bios.boot_drive = emu.emulated_drive
        bios.trace(f"boot: CD drive {self.number:02x}h as {emu.emulated_drive:02x}h, "
                   f"media {emu.media}, load segment {segment:04x}")
        return None


def _read_cd(bios, drive, lba, count, addr):
    return bios.block.process_op(DiskOp(CMD_READ, drive, lba, count, addr))


def cdrom_boot(bios, drive):
    """SeaBIOS cdrom_boot: 0 when booted, else its failure code."""
    mem = bios.mem
    # The catalog and descriptor go where the boot image is about to land anyway.
    scratch = BOOT_ADDR
    if _read_cd(bios, drive, BOOT_RECORD_LBA, 1, scratch):
        return 3
    record = mem.read(scratch, CDROM_SECTOR_SIZE)
    if record[0]:
        return 4
    if record[:len(BOOT_RECORD_ID)] != BOOT_RECORD_ID or record[len(BOOT_RECORD_ID)] != 0:
        return 5
    catalog_lba = struct.unpack_from("<I", record, CATALOG_LBA_OFFSET)[0]
    if _read_cd(bios, drive, catalog_lba, 1, scratch):
        return 7
    catalog = mem.read(scratch, CDROM_SECTOR_SIZE)
    if catalog[0x00] != 0x01:
        return 8            # validation entry header
    if catalog[0x01] != 0x00:
        return 9            # platform: 80x86
    if catalog[0x1E] != 0x55 or catalog[0x1F] != 0xAA:
        return 10           # key bytes
    if catalog[0x20] != BOOTABLE:
        return 11
    media = catalog[0x21]
    load_segment, _system, _unused, sector_count, image_lba = struct.unpack_from(
        "<HBBHI", catalog, 0x22)
    load_segment = load_segment or DEFAULT_LOAD_SEGMENT
    emu = bios.cdemu
    emu.begin(drive, load_segment, sector_count, image_lba)
    remaining = -(-sector_count // VIRTUAL_PER_CD_SECTOR)
    lba, addr = image_lba, load_segment << 4
    per_op = MAX_TRANSFER_BYTES // CDROM_SECTOR_SIZE
    while remaining:
        count = min(remaining, per_op)
        if _read_cd(bios, drive, lba, count, addr):
            return 12
        remaining -= count
        lba += count
        addr += count * CDROM_SECTOR_SIZE
    # The loaded code must run as loaded, not as translated before.
    mem.invalidate(load_segment << 4, -(-sector_count // VIRTUAL_PER_CD_SECTOR) * CDROM_SECTOR_SIZE)
    if media == 0:
        emu.emulated_drive = drive.number
        return 0
    return emu.activate(bios, media, load_segment)


# -- the driver: a PV disc in 2048-byte sectors ------------------------------------------------
class PvCdDriver:
    """firmware/xenblk.py's XenBlkFront (512-byte ring sectors) as a 2048-byte CD drive,
    with the media watch of firmware/cdmedia.py (`media`)."""

    def __init__(self, front, media):
        self.front = front
        self.media = media
        self.read_only = True

    @property
    def sectors(self):
        """Disc size in 2048-byte sectors (0: no disc)."""
        return self.front.sectors // VIRTUAL_PER_CD_SECTOR

    def process_op(self, op):
        command = op.command
        if command in (CMD_WRITE, CMD_FORMAT):
            op.count = 0
            return DISK_RET_EWRITEPROTECT
        if command != CMD_READ:
            return DISK_RET_SUCCESS          # reset, verify, seek, ready: nothing to do
        if self.media.changed():
            op.count = 0
            return DISK_RET_ECHANGED
        if op.lba + op.count > self.sectors:
            op.count = 0
            return DISK_RET_EBADTRACK
        inner = DiskOp(CMD_READ, op.drive, op.lba * VIRTUAL_PER_CD_SECTOR,
                       op.count * VIRTUAL_PER_CD_SECTOR, op.buf_addr)
        status = self.front.process_op(inner)
        op.count = inner.count // VIRTUAL_PER_CD_SECTOR
        return DISK_RET_EBADTRACK if status else DISK_RET_SUCCESS

    def lock_changed(self, locked):
        self.media.publish_lock(locked)

    def eject(self):
        return self.media.request_eject()


# -- INT 13h on a CD drive ------------------------------------------------------------------------
def cdrom_1308(bios, regs, drive):
    """Get drive parameters: not on a CD."""
    int13.disk_ret(bios, regs, DISK_RET_EPARAM)


def cdrom_134500(bios, regs, drive):
    """Lock: one more lock, at most 255."""
    regs.al = 1
    if drive.locks == MAX_LOCKS:
        int13.disk_ret(bios, regs, DISK_RET_ETOOMANYLOCKS)
        return
    drive.locks += 1
    if drive.locks == 1:
        drive.driver.lock_changed(True)
    int13.disk_ret(bios, regs, DISK_RET_SUCCESS)


def cdrom_134501(bios, regs, drive):
    """Unlock: one lock less; AL = still locked."""
    if drive.locks == 0:
        regs.al = 0
        int13.disk_ret(bios, regs, DISK_RET_ENOTLOCKED)
        return
    drive.locks -= 1
    if drive.locks == 0:
        drive.driver.lock_changed(False)
    regs.al = 1 if drive.locks else 0
    int13.disk_ret(bios, regs, DISK_RET_SUCCESS)


def cdrom_134502(bios, regs, drive):
    """Lock status: AL = locked."""
    regs.al = 1 if drive.locks else 0
    int13.disk_ret(bios, regs, DISK_RET_SUCCESS)


_LOCK_FUNCTIONS = {0x00: cdrom_134500, 0x01: cdrom_134501, 0x02: cdrom_134502}


def cdrom_1345(bios, regs, drive):
    """Lock/unlock media (AL=00h lock, 01h unlock, 02h status; others AH=01h)."""
    _LOCK_FUNCTIONS.get(regs.al, int13.disk_13XX)(bios, regs, drive)


def cdrom_1346(bios, regs, drive):
    """Eject media: refused while locked (B1h); otherwise the eject is asked of the
    toolstack (SeaBIOS asks INT 15h AH=52h, which always agrees)."""
    if drive.locks:
        int13.disk_ret(bios, regs, DISK_RET_ELOCKED)
        return
    int13.disk_ret(bios, regs, DISK_RET_SUCCESS if drive.driver.eject() else DISK_RET_ELOCKED)


def cdrom_1349(bios, regs, drive):
    """Extended media change: SeaBIOS always says changed (AH=06h, CF=1, status kept)."""
    regs.ah = DISK_RET_ECHANGED
    regs.cf = True


CDROM_FUNCTIONS = dict(int13.DISK_FUNCTIONS)
CDROM_FUNCTIONS.update({
    0x08: cdrom_1308, 0x15: int13.floppy_1315, 0x45: cdrom_1345, 0x46: cdrom_1346,
    0x49: cdrom_1349,
})
CdDrive.int13_functions = CDROM_FUNCTIONS


# -- POST -----------------------------------------------------------------------------------------
def map_cd_drive(bios, driver, name):
    """Give `driver` the next CD drive number (E0h, E1h, ...), with the DPTE of an
    ATAPI device on the secondary channel's master (SeaBIOS map_cd_drive)."""
    block = bios.block
    number = EXTSTART_CD + len(bios.cd_drives)
    drive = CdDrive(number, driver, name, CD_IDE_POSITION + len(bios.cd_drives))
    dpte = bytearray(ata_dpte(drive))
    struct.pack_into("<H", dpte, DPTE_OPTIONS_OFFSET,
                     struct.unpack_from("<H", dpte, DPTE_OPTIONS_OFFSET)[0] | DPTE_REMOVABLE_ATAPI)
    dpte[15] = (-sum(dpte[:15])) & 0xFF
    drive.dpte_segoff = block.rom_segoff(bios.rom_alloc(bytes(dpte)))
    block.drives[number] = drive
    bios.cd_drives.append(drive)
    bios.trace(drive.describe())
    return drive


def connect_pv_cd(bios, devid, path):
    """The PvCdDriver of vbd `devid` (a device-type cdrom vbd), or None with a warning."""
    xen = bios.config.xen
    if xen is None:
        bios.warn(f"vbd {devid}: no Xen platform for the CD-ROM")
        return None
    front = XenBlkFront(bios, xen, devid, bios.config.pv_timeout, path)
    try:
        front.connect()
    except XenBlkError as exc:
        front.abandon()
        bios.warn(str(exc))
        return None
    bios.block.pv_fronts.append(front)
    return PvCdDriver(front, MediaWatch(xen.xs, front))


def cdrom_setup(bios):
    """POST: the El Torito state, then a CD drive per config.cdroms entry (vbd devid,
    PV path, emulated twin): the PV CD, or the ATAPI drive on the secondary channel
    (devid None: type=ioemu; or a PV CD that does not connect and has its twin)."""
    # El Torito emulation's bounce buffer for partial CD sectors: a frame of the Xen
    # area (the PV frontend's DMA reaches only RAM), else a ROM table (the ATAPI
    # driver's PIO copies into it from Python).
    xen = bios.config.xen
    bios.cdemu = cdemu.CdEmu(xen.alloc_frame() * XEN_PAGE_SIZE if xen is not None
                             else bios.rom_alloc(bytes(CDROM_SECTOR_SIZE)))
    bios.cd_drives = []
    for devid, path, twin in getattr(bios.config, "cdroms", ()) or ():
        if devid is not None:
            driver = connect_pv_cd(bios, devid, path)
            if driver is not None:
                map_cd_drive(bios, driver, f"vbd {devid} (cdrom)")
                continue
            if not twin:
                continue
            bios.warn(f"vbd {devid} (cdrom): falling back to its emulated ATAPI twin (ata1-0)")
        driver = atapi_setup(bios)
        if driver is None:
            bios.warn("ata1-0: no ATAPI CD answered on the secondary IDE channel")
            continue
        map_cd_drive(bios, driver, driver.name)
