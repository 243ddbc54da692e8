"""El Torito floppy and hard-disk emulation and INT 13h AH=4Bh, after SeaBIOS's cdemu
(cdrom.c cdemu_read/cdrom_boot, disk.c handle_13/cdemu_134b/disk_1308).

After an emulation boot the boot image on the disc answers as drive 00h (a 1.2/1.44/
2.88 MB floppy) or 80h (a hard disk, geometry from its first partition's end CHS) with
512-byte sectors; the real drives of that class move up one number (a real floppy to
01h, real hard disks to 81h, ...), as SeaBIOS's handle_13 shifts them.  Only the old
functions (AH <= 16h) reach the emulated drive.  `CdEmu.handle_13` is that routing,
called by firmware/int13.py, before it looks a drive up, while `media` is set (and
for AH=4Bh).

The state is SeaBIOS's `struct eltorito_s` (the 13h-byte specification packet AH=4Bh
copies out) plus the emulated Drive.
"""
import struct

from pvboot.firmware import bda, int13
from pvboot.emu.hdgeometry import CHS
from pvboot.firmware.block import EXTSTART_CD, EXTSTART_HD, Drive
from pvboot.firmware.diskop import CMD_FORMAT, CMD_READ, CMD_WRITE, DISK_RET_EWRITEPROTECT, DISK_RET_SUCCESS, DISK_SECTOR_SIZE, DiskOp

SPECIFICATION_PACKET = struct.Struct("<BBBBIHHHHBBB")     # struct eltorito_s, 13h bytes
# Floppy media types -> sectors per track (80 cylinders, 2 heads; SeaBIOS's table).
FLOPPY_EMULATION_SPT = {1: 15, 2: 18, 3: 36}
MEDIA_HARD_DISK = 4
LAST_OLD_FUNCTION = 0x16
PARTITION0_END_CHS = 0x1BE + 5
EQUIPMENT_TWO_FLOPPIES = 0x41
MAX_FLOPPY_COUNT = 2
VIRTUAL_PER_CD_SECTOR = 4


class CdEmuDriver:
    """The emulated drive's driver (SeaBIOS cdemu_process_op): 512-byte sectors of the
    boot image, read from the CD in whole 2048-byte sectors, the partial first and last
    ones through a bounce buffer."""

    read_only = True
    sectors = (1 << 64) - 1

    def __init__(self, bios, emu):
        self.bios = bios
        self.emu = emu

    def process_op(self, op):
        if op.command in (CMD_WRITE, CMD_FORMAT):
            return DISK_RET_EWRITEPROTECT
        if op.command != CMD_READ:
            return DISK_RET_SUCCESS
        return self._read(op)

    def _cd_read(self, lba, count, addr):
        dop = DiskOp(CMD_READ, self.emu.cd_drive, lba, count, addr)
        status = self.bios.block.process_op(dop)
        return status, dop.count

    def _read(self, op):
        mem, bounce = self.bios.mem, self.emu.bounce_addr
        lba = self.emu.ilba + op.lba // VIRTUAL_PER_CD_SECTOR
        count, addr, first = op.count, op.buf_addr, op.lba % VIRTUAL_PER_CD_SECTOR
        op.count = 0
        if first:
            status, _done = self._cd_read(lba, 1, bounce)
            if status:
                return status
            n = min(VIRTUAL_PER_CD_SECTOR - first, count)
            mem.write(addr, mem.read(bounce + first * DISK_SECTOR_SIZE, n * DISK_SECTOR_SIZE))
            count -= n
            addr += n * DISK_SECTOR_SIZE
            op.count += n
            lba += 1
        if count >= VIRTUAL_PER_CD_SECTOR:
            whole = count // VIRTUAL_PER_CD_SECTOR
            status, done = self._cd_read(lba, whole, addr)
            op.count += done * VIRTUAL_PER_CD_SECTOR
            if status:
                return status
            count -= whole * VIRTUAL_PER_CD_SECTOR
            addr += whole * VIRTUAL_PER_CD_SECTOR * DISK_SECTOR_SIZE
            lba += whole
        if count:
            status, _done = self._cd_read(lba, 1, bounce)
            if status:
                return status
            mem.write(addr, mem.read(bounce, count * DISK_SECTOR_SIZE))
            op.count += count
        return DISK_RET_SUCCESS


class CdEmu:
    """SeaBIOS's CDEmu (struct eltorito_s) and emulated_drive_gf."""

    def __init__(self, bounce_addr=None):
        self.media = 0
        self.emulated_drive = 0
        self.controller_index = 0
        self.ilba = 0
        self.device_spec = 0
        self.buffer_segment = 0
        self.load_segment = 0
        self.sector_count = 0
        self.chs = (0, 0, 0)            # heads, sptcyl, cyllow (struct packed_chs_s)
        self.cd_drive = None            # the CD the boot image is on
        self.drive = None               # the emulated Drive (while media != 0)
        self.bounce_addr = bounce_addr  # 2 KiB of RAM for partial CD sectors

    # -- El Torito boot (called by cdrom.cdrom_boot) -------------------------------------
    def begin(self, cd_drive, load_segment, sector_count, ilba):
        self.cd_drive = cd_drive
        self.load_segment = load_segment
        self.buffer_segment = 0
        self.sector_count = sector_count
        self.ilba = ilba
        self.controller_index = cd_drive.cntl_id // 2
        self.device_spec = cd_drive.cntl_id % 2

    def activate(self, bios, media, load_segment):
        """Start floppy (media 1-3) or hard disk (4+) emulation of the loaded image;
        returns 0, or SeaBIOS's 13 when emulation is impossible here."""
        if self.bounce_addr is None:
            return 13
        mem = bios.mem
        if media < MEDIA_HARD_DISK:
            self.emulated_drive = 0x00
            flags = mem.read_u16(bda.EQUIPMENT_LIST_FLAGS)
            mem.write_u16(bda.EQUIPMENT_LIST_FLAGS, flags | EQUIPMENT_TWO_FLOPPIES)
            self.chs = (1, FLOPPY_EMULATION_SPT.get(media, 0), 79)
        else:
            self.emulated_drive = EXTSTART_HD
            mem.write_u8(bda.HDCOUNT, mem.read_u8(bda.HDCOUNT) + 1)
            self.chs = tuple(mem.read((load_segment << 4) + PARTITION0_END_CHS, 3))
        heads, sptcyl, cyllow = self.chs
        lchs = CHS(cyllow + ((sptcyl << 2) & 0x300) + 1, heads + 1, sptcyl & 0x3F)
        kind = "floppy" if media < MEDIA_HARD_DISK else "hd"
        self.drive = Drive(self.emulated_drive, kind, CdEmuDriver.sectors, CdEmuDriver(bios, self),
                           lchs, lchs, read_only=True, name=f"El Torito {kind} emulation")
        self.drive.int13_functions = EMULATED_FUNCTIONS
        self.media = media
        bios.trace(f"cdemu: media {media} as drive {self.emulated_drive:02x}h, LCHS {lchs}")
        return 0

    # -- INT 13h --------------------------------------------------------------------------
    def handle_13(self, bios, regs, function):
        """SeaBIOS handle_13's El Torito part, for INT 13h function `function` (the
        caller's AH), which int13.handle_13 sends here when it is 4Bh or a disc is
        emulated (self.media): AH=4Bh, the emulated drive, or a real drive renumbered
        round it."""
        if function == 0x4B:
            self.disk_134b(bios, regs)
            return
        emudrive, extdrive = self.emulated_drive, regs.dl
        if extdrive == emudrive:
            if function > LAST_OLD_FUNCTION:
                int13.disk_13XX(bios, regs, self.drive)
            else:
                int13.disk_13(bios, regs, self.drive, function)
            return
        same_class = extdrive < EXTSTART_CD and ((emudrive ^ extdrive) & 0x80) == 0
        int13.handle_legacy_disk(bios, regs, extdrive - 1 if same_class else extdrive, function)
        if function == 0x08 and same_class and not regs.cf:
            regs.dl = self._count_with_emulated(extdrive, regs.dl)

    def _count_with_emulated(self, extdrive, count):
        """AH=08h's drive count, with the emulated drive (SeaBIOS disk_1308)."""
        count += 1
        if extdrive < EXTSTART_HD:
            count = min(count, MAX_FLOPPY_COUNT)
        return count

    def disk_134b(self, bios, regs):
        """AH=4Bh: copy the specification packet to DS:SI; AL=00h also ends emulation."""
        heads, sptcyl, cyllow = self.chs
        packet = SPECIFICATION_PACKET.pack(
            SPECIFICATION_PACKET.size, self.media, self.emulated_drive, self.controller_index,
            self.ilba, self.device_spec, self.buffer_segment, self.load_segment,
            self.sector_count, heads, sptcyl, cyllow)
        addr = (regs.ds << 4) + regs.si
        if bios.mem.is_writable_ram(addr, len(packet)):
            bios.mem.write(addr, packet)
        if regs.al == 0x00:
            self.media = 0
        int13.disk_ret(bios, regs, DISK_RET_SUCCESS)


# -- the emulated drive's functions (SeaBIOS disk_13 on drive 00h or 80h) ---------------------
def cdemu_1308(bios, regs, drive):
    """Get drive parameters of the emulated drive: a floppy answers BX = media * 2 and
    the diskette parameter table; both count themselves in DL (disk_1308)."""
    emu = bios.cdemu
    if regs.dl < EXTSTART_HD:
        int13.floppy_1308(bios, regs, drive)
        regs.bx = emu.media * 2
    else:
        int13.disk_1308(bios, regs, drive)
    regs.dl = emu._count_with_emulated(drive.number, regs.dl)


def cdemu_1315(bios, regs, drive):
    """Get disk type: AH=1 for an emulated floppy, the hard-disk answer for 80h."""
    (int13.floppy_1315 if regs.dl < EXTSTART_HD else int13.disk_1315)(bios, regs, drive)


def cdemu_1316(bios, regs, drive):
    """Detect media change: "changed" for a floppy, AH=01h for a hard disk."""
    (int13.floppy_1316 if regs.dl < EXTSTART_HD else int13.disk_1316)(bios, regs, drive)


EMULATED_FUNCTIONS = {ah: function for ah, function in int13.DISK_FUNCTIONS.items()
                      if ah <= LAST_OLD_FUNCTION}
EMULATED_FUNCTIONS.update({0x08: cdemu_1308, 0x15: cdemu_1315, 0x16: cdemu_1316})
