"""What a disk driver and the block layer share (SeaBIOS block.h / disk.h): the
operation (`DiskOp`), its commands, the INT 13h status codes, and the `DiskDriver`
protocol every driver (firmware/xenblk.py, ata.py, hostdisk.py) implements.  Drivers
import this, never firmware/block.py, so the block layer can import the drivers."""
from typing import Protocol, runtime_checkable

# Disk commands (SeaBIOS block.h, struct disk_op_s.command).
CMD_RESET = 0x00
CMD_READ = 0x02
CMD_WRITE = 0x03
CMD_VERIFY = 0x04
CMD_FORMAT = 0x05
CMD_SEEK = 0x07
CMD_ISREADY = 0x10

COMMAND_NAMES = {CMD_RESET: "reset", CMD_READ: "read", CMD_WRITE: "write", CMD_VERIFY: "verify",
                 CMD_FORMAT: "format", CMD_SEEK: "seek", CMD_ISREADY: "isready"}

# INT 13h status codes (SeaBIOS std/disk.h).
DISK_RET_SUCCESS = 0x00
DISK_RET_EPARAM = 0x01
DISK_RET_EADDRNOTFOUND = 0x02
DISK_RET_EWRITEPROTECT = 0x03
# The standard "sector not found" (SeaBIOS's list has no name for it): what a refused
# blkif request becomes.
DISK_RET_ESECTORNOTFOUND = 0x04
DISK_RET_ECHANGED = 0x06
DISK_RET_EBOUNDARY = 0x09
DISK_RET_EBADTRACK = 0x0c
DISK_RET_ECONTROLLER = 0x20
DISK_RET_ETIMEOUT = 0x80
DISK_RET_ENOTLOCKED = 0xb0
DISK_RET_ELOCKED = 0xb1
DISK_RET_ENOTREMOVABLE = 0xb2
DISK_RET_ETOOMANYLOCKS = 0xb4
DISK_RET_EMEDIA = 0xC0
DISK_RET_ENOTREADY = 0xAA

DISK_SECTOR_SIZE = 512

# Drive types (SeaBIOS block.h DTYPE_*): what fill_edd dispatches on.
DTYPE_NONE = 0x00           # any other driver: EDD 1.x answer only (fill_generic_edd)
DTYPE_FLOPPY = 0x10
DTYPE_ATA = 0x20


class BlockError(ValueError):
    """A configured disk the BIOS cannot map (one line for the user)."""


class DiskOp:
    """One disk operation (SeaBIOS struct disk_op_s).  `drive` is the block layer's
    Drive; `buf_addr` is a linear guest address; the driver sets `count` to the sectors
    it did."""

    __slots__ = ("command", "drive", "lba", "count", "buf_addr")

    def __init__(self, command, drive, lba=0, count=0, buf_addr=0):
        self.command = command
        self.drive = drive
        self.lba = lba
        self.count = count
        self.buf_addr = buf_addr

    def __repr__(self):
        return (f"DiskOp({COMMAND_NAMES.get(self.command, self.command)}, drive {self.drive.number:02x}h, "
                f"lba {self.lba}, count {self.count}, buf {self.buf_addr:#x})")


@runtime_checkable
class DiskDriver(Protocol):
    """A driver the block layer routes operations to.  Optional extras: `geometry()`
    (hard disks: physical CHS and translation hint as the device reports them) and
    `floppy_type()` (floppies: the CMOS drive type)."""

    sectors: int            # number of 512-byte sectors
    read_only: bool         # True if writes must fail

    def process_op(self, op: DiskOp) -> int:
        """Carry out `op`, set op.count to the sectors done, return a DISK_RET_* status."""
