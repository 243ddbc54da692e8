"""The block layer, after SeaBIOS's src/block.c: the drives the BIOS knows and the one
door every disk operation goes through.

INT 13h (firmware/int13.py) turns registers into one `DiskOp` and hands it to
`BlockLayer.process_op`; that routes it to the drive's driver (`Drive.driver`), which
moves the data between the disk and guest memory.  Nothing above this layer touches a
disk image, and nothing here knows how a driver reaches its disk.

At POST `setup()` maps one drive per configured disk image (hard disks 80h, 81h, ...;
floppies 00h, 01h), works out each hard disk's logical geometry the way SeaBIOS does
(get_translation / setup_translation), writes the BDA's disk fields and installs the
INT 41h/46h fixed disk parameter tables and the INT 1Eh diskette parameter table.

Which hard disks, in which order, is the drive plan, `BiosConfig.drives`: a list of
    ("xen", devid, path, fallback_unit)   xen_drive(): a PV disk (firmware/xenblk.py);
                                          if it does not connect, the emulated IDE twin
                                          at fallback_unit (or nothing, if None)
    ("ata", unit)                         ata_drive(): the emulated IDE disk at unit
                                          0 (master) or 1 (slave) (firmware/ata.py)
    ("host", DiskImage)                   host_drive(): the plain driver (hostdisk.py)
mapped in that order whatever the mix: drive 80h is the first entry that could be
reached, 81h the next, and so on.  The IDE channel is probed once, when the first
entry needs it (an "ata" entry, or a PV disk falling back), so a plan without IDE
disks costs no port I/O.  Without a plan (drives None) the order is the old one: the
IDE channel's disks (config.ata), every vbd in xenstore, then config.disks.

config.op_digests records an OpDigest (CRC-32 of the data) per operation in
`op_digests` for `pvboot compare --paths`; off, process_op carries no extra cost.

A driver is any object with:
    sectors         number of 512-byte sectors
    read_only       True if writes must fail
    process_op(op)  carry out the DiskOp, set op.count to the sectors done, return a
                    DISK_RET_* status
    geometry()      optional, hard disks: (physical CHS, translation hint or None) as
                    the device reports them (for an IDE disk: IDENTIFY words 1/3/6 and
                    the CMOS translation byte QEMU writes)
    floppy_type()   optional, floppies: the CMOS drive type (default: the type whose
                    geometry matches the medium's size)
"""
import collections
import struct
import time
import zlib
from typing import NamedTuple

from pvboot.firmware import bda
from pvboot.firmware.boot import BOOT_ADDR

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
# SeaBIOS's process_op refuses any transfer over 64 KiB, whatever the caller.
MAX_TRANSFER_BYTES = 64 * 1024

# Drive number ranges (SeaBIOS block.h) and table size (config.h BUILD_MAX_EXTDRIVE).
EXTSTART_HD = 0x80
EXTSTART_CD = 0xE0
BUILD_MAX_EXTDRIVE = 16
MAX_FLOPPIES = 2            # the CMOS floppy byte has room for two drives

# Drive types (SeaBIOS block.h DTYPE_*): what fill_edd dispatches on.
DTYPE_FLOPPY = 0x10
DTYPE_ATA = 0x20
DTYPE_NONE = 0x00           # any other driver: EDD 1.x answer only (fill_generic_edd)

# Geometry translations (SeaBIOS block.h); the values are also QEMU's CMOS encoding.
TRANSLATION_NONE = 0
TRANSLATION_LBA = 1
TRANSLATION_LARGE = 2
TRANSLATION_RECHS = 3
TRANSLATION_HOST = 4
TRANSLATION_NAMES = {TRANSLATION_NONE: "none", TRANSLATION_LBA: "lba", TRANSLATION_LARGE: "large",
                     TRANSLATION_RECHS: "r-echs", TRANSLATION_HOST: "host-supplied"}

SEG_BIOS = 0xF000
BIOS_BASE = SEG_BIOS << 4

# Legacy IDE channels a hard disk appears on (SeaBIOS hw/ata.h PORT_ATA*, IRQ_ATA*):
# disk i is channel i//2, master/slave i%2, as QEMU attaches -drive index 0..3.
ATA_CHANNELS = ((0x1F0, 0x3F4, 14), (0x170, 0x374, 15))
# The PCI function (bus, device, function) SeaBIOS finds those channels on in QEMU's PC:
# the PIIX3 IDE controller, 00:01.1.  EDD 3.0 reports it as the disks' host bus, so
# AH=48h answers byte for byte as on QEMU+SeaBIOS (the DPTE pointer aside).  None would
# make the answer the ISA form (host bus "ISA ", interface path = command port).
ATA_PCI_FUNCTION = (0, 1, 1)
ATA_CB_DC = 2
ATA_CB_DH_DEV0 = 0xA0
ATA_CB_DH_DEV1 = 0xB0
ATA_CB_DH_LBA = 0x40

# EDD bus/interface flags (block.c fill_generic_edd).
EDD_ISA = 0x01
EDD_PCI = 0x02
EDD_BUS_MASK = 0x0f
EDD_ATA = 0x10
EDD_SCSI = 0x20
EDD_IFACE_MASK = 0xf0

# How many recent operations bios.disk_trace keeps for crash reports.
DISK_TRACE_LENGTH = 32


class BlockError(Exception):
    """A configured disk the BIOS cannot map (one line for the user)."""


class CHS(NamedTuple):
    cylinders: int
    heads: int
    sectors: int

    def __str__(self):
        return f"{self.cylinders}/{self.heads}/{self.sectors}"


# -- floppies (SeaBIOS hw/floppy.c FloppyInfo) ----------------------------------------------
FLOPPY_SIZE_525 = 0x01
FLOPPY_SIZE_350 = 0x02
FLOPPY_RATE_500K = 0x00
FLOPPY_RATE_300K = 0x01
FLOPPY_RATE_250K = 0x02
FLOPPY_RATE_1M = 0x03


class FloppyInfo(NamedTuple):
    chs: CHS
    floppy_size: int
    data_rate: int
    name: str


# Indexed by the CMOS floppy drive type, as SeaBIOS's table is.
FLOPPY_INFO = {
    1: FloppyInfo(CHS(40, 2, 9), FLOPPY_SIZE_525, FLOPPY_RATE_300K, "360K"),
    2: FloppyInfo(CHS(80, 2, 15), FLOPPY_SIZE_525, FLOPPY_RATE_500K, "1.2M"),
    3: FloppyInfo(CHS(80, 2, 9), FLOPPY_SIZE_350, FLOPPY_RATE_250K, "720K"),
    4: FloppyInfo(CHS(80, 2, 18), FLOPPY_SIZE_350, FLOPPY_RATE_500K, "1.44M"),
    5: FloppyInfo(CHS(80, 2, 36), FLOPPY_SIZE_350, FLOPPY_RATE_1M, "2.88M"),
    6: FloppyInfo(CHS(40, 1, 8), FLOPPY_SIZE_525, FLOPPY_RATE_250K, "160K"),
    7: FloppyInfo(CHS(40, 1, 9), FLOPPY_SIZE_525, FLOPPY_RATE_300K, "180K"),
    8: FloppyInfo(CHS(40, 2, 8), FLOPPY_SIZE_525, FLOPPY_RATE_250K, "320K"),
}

# The 11-byte diskette parameter table plus IBM's 3 extra bytes (floppy.c
# diskette_param_table2): INT 1Eh and floppy AH=08h ES:DI point at it.  As in SeaBIOS it
# describes a 1.44M drive whatever is attached.
FLOPPY_SPECIFY1 = 0xAF
FLOPPY_SPECIFY2 = 0x02
FLOPPY_MOTOR_TICKS = 37
FLOPPY_SIZE_CODE = 0x02
FLOPPY_GAPLEN = 0x1B
FLOPPY_DATALEN = 0xff
FLOPPY_FORMAT_GAPLEN = 0x6c
FLOPPY_FILLBYTE = 0xf6
FLOPPY_STARTUP_TIME = 8
DISKETTE_PARAM_TABLE2 = bytes([
    FLOPPY_SPECIFY1, FLOPPY_SPECIFY2, FLOPPY_MOTOR_TICKS, FLOPPY_SIZE_CODE, 18,
    FLOPPY_GAPLEN, FLOPPY_DATALEN, FLOPPY_FORMAT_GAPLEN, FLOPPY_FILLBYTE, 0x0F,
    FLOPPY_STARTUP_TIME,
    79, 0, 4,                 # max track, data rate, CMOS drive type
])


def find_floppy_type(size):
    """The SeaBIOS floppy type whose geometry holds exactly `size` bytes, or -1."""
    for ftype, info in FLOPPY_INFO.items():
        c = info.chs
        if c.cylinders * c.heads * c.sectors * DISK_SECTOR_SIZE == size:
            return ftype
    return -1


def floppy_type_for_size(size, name="floppy image"):
    """Like find_floppy_type, but a size that is no standard floppy is a BlockError."""
    ftype = find_floppy_type(size)
    if ftype < 0:
        sizes = ", ".join(f"{i.name} ({i.chs.cylinders * i.chs.heads * i.chs.sectors * 512})"
                          for i in FLOPPY_INFO.values())
        raise BlockError(f"{name}: {size} bytes is not a standard floppy size ({sizes})")
    return ftype


# The drive QEMU's floppy controller puts a medium in (hw/block/fdc.c pick_geometry: the
# first format of its table that matches the image size), as the CMOS drive type SeaBIOS
# reads.  A 720K diskette sits in a 1.44M drive and 5.25" media in a 1.2M drive, so the
# drive's geometry (what INT 13h checks and AH=08h reports) can exceed the medium's.
QEMU_FLOPPY_DRIVE_FOR_MEDIA = {1: 2, 2: 2, 3: 4, 4: 4, 5: 5, 6: 2, 7: 2, 8: 2}


def qemu_floppy_drive_type(size, name="floppy image"):
    """(drive type, medium type) of a floppy image of `size` bytes on QEMU's PC."""
    media = floppy_type_for_size(size, name)
    return QEMU_FLOPPY_DRIVE_FOR_MEDIA[media], media


# -- hard disk geometry ------------------------------------------------------------------------
def qemu_ide_geometry(sectors, boot_sector=None):
    """(physical CHS, translation) an IDE disk of `sectors` reports on QEMU's PC: the
    IDENTIFY geometry and the CMOS translation byte SeaBIOS reads (QEMU's
    hw/block/hd-geometry.c hd_geometry_guess for a raw image).

    QEMU first tries to read a logical geometry off the MBR partition table; without
    one the disk gets 16 heads, 63 sectors and as many cylinders as fit (2..16383), and
    LBA translation once that exceeds 1024 cylinders."""
    guess = _guess_lchs_from_mbr(sectors, boot_sector)

    def standard():
        return CHS(min(max(sectors // (16 * 63), 2), 16383), 16, 63)

    if guess is None:
        pchs = standard()
        small = pchs.cylinders <= 1024 and pchs.heads <= 16 and pchs.sectors <= 63
        return pchs, (TRANSLATION_NONE if small else TRANSLATION_LBA)
    if guess.heads > 16:
        # The partition table was written under a BIOS translation: plain physical geometry.
        pchs = standard()
        large = pchs.cylinders * pchs.heads <= 131072
        return pchs, (TRANSLATION_LARGE if large else TRANSLATION_LBA)
    # A partition table with <= 16 heads becomes the physical geometry, untranslated.
    return guess, TRANSLATION_NONE


def _guess_lchs_from_mbr(sectors, boot_sector):
    if boot_sector is None or len(boot_sector) < 512 or boot_sector[510:512] != b"\x55\xAA":
        return None
    for i in range(4):
        entry = boot_sector[0x1BE + 16 * i:0x1BE + 16 * (i + 1)]
        end_head, end_sector = entry[5], entry[6]
        nr_sects = int.from_bytes(entry[12:16], "little")
        if nr_sects and end_head:
            heads = end_head + 1
            spt = end_sector & 63
            if spt == 0:
                continue
            cylinders = sectors // (heads * spt)
            if cylinders < 1 or cylinders > 16383:
                continue
            return CHS(cylinders, heads, spt)
    return None


def get_translation(pchs, sectors, hint=None, host_lchs=None):
    """SeaBIOS get_translation: host-supplied LCHS first, then the device's hint (QEMU's
    CMOS byte for ATA disks), else a heuristic on the physical geometry."""
    if host_lchs is not None and host_lchs.heads <= 255 and 0 < host_lchs.sectors <= 63:
        return TRANSLATION_HOST
    if hint is not None:
        return hint
    heads, cylinders, spt = pchs.heads, pchs.cylinders, pchs.sectors
    if not heads or not cylinders or not spt or heads * cylinders * spt > sectors:
        # The physical geometry does not look valid: use LBA.
        return TRANSLATION_LBA
    if cylinders <= 1024 and heads <= 16 and spt <= 63:
        return TRANSLATION_NONE
    if cylinders * heads <= 131072:
        return TRANSLATION_LARGE
    return TRANSLATION_LBA


def setup_translation(pchs, sectors, translation, host_lchs=None):
    """SeaBIOS setup_translation: the logical CHS INT 13h's CHS calls use."""
    heads, cylinders, spt = pchs.heads, pchs.cylinders, pchs.sectors
    if translation == TRANSLATION_LBA:
        spt = 63
        if sectors > 63 * 255 * 1024:
            heads, cylinders = 255, 1024
        else:
            sect = (sectors & 0xFFFFFFFF) // 63
            heads = sect // 1024
            if heads > 128:
                heads = 255
            elif heads > 64:
                heads = 128
            elif heads > 32:
                heads = 64
            elif heads > 16:
                heads = 32
            else:
                heads = 16
            cylinders = sect // heads
    elif translation in (TRANSLATION_RECHS, TRANSLATION_LARGE):
        if translation == TRANSLATION_RECHS and heads == 16:
            # 16 heads become 15 so that the doubling below can reach 240 (r-echs).
            cylinders = min(cylinders, 61439)
            heads = 15
            cylinders = (cylinders * 16 // 15) & 0xFFFF
        while cylinders > 1024:
            cylinders >>= 1
            heads = (heads << 1) & 0xFFFF
            if heads > 127:
                break
    elif translation == TRANSLATION_HOST:
        cylinders, heads, spt = host_lchs.cylinders, host_lchs.heads, host_lchs.sectors
    cylinders = min(cylinders, 1024)
    return CHS(cylinders, heads, spt)


# -- drives and operations ---------------------------------------------------------------------
class DiskOp:
    """One disk operation (SeaBIOS struct disk_op_s).  `drive` is the Drive; `buf_addr` is
    a linear guest address; the driver sets `count` to the sectors it did."""

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


class Drive:
    """A drive as INT 13h sees it (SeaBIOS struct drive_s plus its BIOS number)."""

    def __init__(self, number, kind, sectors, driver, pchs, lchs, translation=TRANSLATION_NONE,
                 dtype=DTYPE_NONE, floppy_type=0, read_only=False, name="", cntl_id=0):
        self.number = number
        self.kind = kind                    # "hd" or "floppy"
        self.is_floppy = kind == "floppy"
        self.dtype = dtype
        self.sectors = sectors
        self.blksize = DISK_SECTOR_SIZE
        self.pchs = pchs
        self.lchs = lchs
        self.translation = translation
        self.floppy_type = floppy_type
        self.read_only = read_only
        self.driver = driver
        self.name = name
        self.cntl_id = cntl_id              # ATA: channel*2 + slave; floppy: unit
        self.dpte_segoff = 0                # EDD 2.x DPTE pointer (seg << 16 | off), 0 if none

    @classmethod
    def hard_disk(cls, number, driver, name="", index=0):
        """Map a hard disk: physical geometry from the device, logical by SeaBIOS's rules.
        `index` is the disk's legacy IDE position (channel * 2 + slave, 0-3) that EDD
        reports, or None for a disk on none of them."""
        sectors = driver.sectors
        reported = driver.geometry() if hasattr(driver, "geometry") else None
        if reported is not None:
            pchs, hint = reported
        else:
            pchs, hint = CHS(0, 0, 0), None
        translation = get_translation(pchs, sectors, hint)
        lchs = setup_translation(pchs, sectors, translation)
        # Disks on the four legacy IDE positions answer EDD as SeaBIOS's ATA driver does.
        on_ide = index is not None and index < 2 * len(ATA_CHANNELS)
        dtype = DTYPE_ATA if on_ide else DTYPE_NONE
        return cls(number, "hd", sectors, driver, pchs, lchs, translation, dtype,
                   read_only=driver.read_only, name=name, cntl_id=index if on_ide else 0)

    @classmethod
    def floppy(cls, number, driver, name=""):
        """Map a floppy drive: the drive type (CMOS code, SeaBIOS FloppyInfo index) gives
        the geometry INT 13h uses (init_floppy); the driver may report a drive type other
        than its medium's (driver.floppy_type())."""
        if hasattr(driver, "floppy_type"):
            ftype = driver.floppy_type()
        else:
            ftype = floppy_type_for_size(driver.sectors * DISK_SECTOR_SIZE, name or "floppy image")
        chs = FLOPPY_INFO[ftype].chs
        return cls(number, "floppy", driver.sectors, driver, chs, chs, dtype=DTYPE_FLOPPY,
                   floppy_type=ftype, read_only=driver.read_only, name=name,
                   cntl_id=number)

    def describe(self):
        if self.is_floppy:
            return (f"drive {self.number:02x}h: {self.name} in a {FLOPPY_INFO[self.floppy_type].name} "
                    f"floppy drive (type {self.floppy_type}) CHS={self.lchs} s={self.sectors}")
        return (f"drive {self.number:02x}h: {self.name} PCHS={self.pchs} "
                f"translation={TRANSLATION_NAMES[self.translation]} LCHS={self.lchs} s={self.sectors}")

    def __repr__(self):
        return f"Drive({self.describe()})"


class DiskTraceEntry(NamedTuple):
    """One finished operation, as kept in bios.disk_trace and printed by --trace disk."""
    time: float
    command: int
    drive: int
    lba: int
    requested: int
    done: int
    buf_addr: int
    status: int

    def __str__(self):
        name = COMMAND_NAMES.get(self.command, f"cmd{self.command:02x}")
        return (f"[{self.time:10.6f}] disk {name} drive {self.drive:02x}h lba {self.lba} "
                f"count {self.done}/{self.requested} buf {self.buf_addr:#x} status {self.status:02x}")


class OpDigest(NamedTuple):
    """One disk operation as `pvboot compare --paths` compares it across firmware paths
    (config.op_digests): command, BIOS drive, LBA, sectors asked and done, status, and
    the CRC-32 (zlib.crc32) of the bytes transferred (reads and writes; None otherwise)."""
    command: int
    drive: int
    lba: int
    requested: int
    done: int
    status: int
    digest: int

    def describe(self):
        name = COMMAND_NAMES.get(self.command, f"cmd{self.command:02x}")
        digest = "-" if self.digest is None else f"{self.digest:08X}"
        return (f"{name} drive {self.drive:02x}h lba {self.lba} count {self.done}/{self.requested} "
                f"status {self.status:02x} crc32 {digest}")


# The drive plan (BiosConfig.drives): the hard disks to map, in BIOS order (80h, 81h, ...).
def xen_drive(devid, path="bounce", fallback_unit=None):
    """A Xen PV disk: vbd `devid` through the frontend's `path` ("bounce" or "direct");
    `fallback_unit`: the IDE unit (0 master, 1 slave) of the same image's emulated twin,
    used only when the PV disk does not connect (None: no fallback)."""
    return ("xen", devid, path, fallback_unit)


def ata_drive(unit):
    """The emulated IDE disk at `unit` on the primary channel (None: every disk found)."""
    return ("ata", unit)


def host_drive(image):
    """A DiskImage served by the firmware's plain driver (firmware/hostdisk.py)."""
    return ("host", image)


class BlockLayer:
    """The BIOS's drives and the routing of disk operations to their drivers."""

    def __init__(self, bios):
        self.bios = bios
        self.mem = bios.mem
        self.drives = {}                # BIOS drive number -> Drive
        self.hard_disks = []
        self.floppies = []
        self.pv_fronts = []             # firmware.xenblk.XenBlkFront of each PV disk
        self.floppy_table_addr = 0      # linear address of the diskette parameter table
        self._trace_on = "disk" in bios.config.trace
        self._positions_claimed = set()     # IDE positions of emulated disks and twins
        self._positions_used = set()        # IDE positions of the drives mapped so far
        self._history = collections.deque(maxlen=DISK_TRACE_LENGTH)
        # config.op_digests: one OpDigest per operation (`pvboot compare --paths`).  Off,
        # process_op is the plain method and pays nothing for it.
        self.op_digests = None
        if getattr(bios.config, "op_digests", False):
            self.op_digests = []
            self.process_op = self._process_op_with_digest
        bios.disk_trace = self._history
        counters = bios.counters
        for key in ("disk_ops", "sectors_read", "sectors_written"):
            counters.setdefault(key, 0)
        self._counters = counters

    # -- POST --------------------------------------------------------------------------
    def setup(self):
        """Map every configured disk (SeaBIOS block_setup + map_hd_drive/map_floppy_drive):
        the hard disks in the order of the drive plan (80h, 81h, ... as they come; a
        disk that cannot be reached is left out and the next one takes its number),
        then the floppies of config.disks."""
        mem = self.mem
        config = self.bios.config
        # The diskette parameter table and INT 1Eh exist with or without a floppy (floppy_setup).
        self.floppy_table_addr = self.bios.rom_alloc(DISKETTE_PARAM_TABLE2)
        mem.write_u32(0x1E * 4, self._segoff(self.floppy_table_addr))
        mem.write_u8(bda.HDCOUNT, 0)
        # Set by SeaBIOS's ata_setup whether or not any disk is found.
        mem.write_u8(bda.DISK_CONTROL_BYTE, 0xC0)
        plan = self.drive_plan()
        # IDE positions (EDD's channel/device) the emulated disks and the PV disks'
        # emulated twins hold; the other hard disks take the free ones in order.
        for entry in plan:
            if entry[0] == "ata":
                self._positions_claimed |= {0, 1} if entry[1] is None else {entry[1]}
            elif entry[0] == "xen" and entry[3] is not None:
                self._positions_claimed.add(entry[3])
        for entry in plan:
            kind = entry[0]
            if kind == "ata":
                self._setup_ata(entry[1])
            elif kind == "xen":
                self._setup_xen_disk(*entry[1:])
            elif kind == "host":
                image = entry[1]
                self._map_hd(self.make_driver(image), getattr(image, "name", ""))
            else:
                raise BlockError(f"unknown planned drive {entry!r}")
        for image in config.disks:
            if getattr(image, "kind", "hd") == "floppy":
                self._map_floppy(self.make_driver(image), getattr(image, "name", ""))
            elif getattr(config, "drives", None) is not None:
                raise BlockError(f"{getattr(image, 'name', image)}: with config.drives, hard "
                                 "disks belong in the plan (host_drive), not in config.disks")

    def drive_plan(self):
        """The hard disks to map, in BIOS order: config.drives, or (when it is None) the
        order of old: every disk on the IDE channel (config.ata), every vbd xenstore
        lists, then the hard-disk images of config.disks."""
        config = self.bios.config
        drives = getattr(config, "drives", None)
        if drives is not None:
            return list(drives)
        plan = []
        if getattr(config, "ata", False):
            plan.append(ata_drive(None))
        if config.xen is not None:
            from pvboot.firmware.xenblk import discover_vbds
            paths = getattr(config, "pv_paths", {})
            plan += [xen_drive(devid, paths.get(devid, "bounce")) for devid in discover_vbds(config.xen)]
        plan += [host_drive(image) for image in config.disks
                 if getattr(image, "kind", "hd") != "floppy"]
        return plan

    def _ata_probe(self):
        """{unit: AtaDriver} of the disks answering on the primary IDE channel, probed
        once, when the first drive needs it (firmware/ata.py, SeaBIOS's ata_setup)."""
        if self._ata_found is None:
            from pvboot.firmware.ata import ata_setup
            self._ata_found = {driver.slave: driver for driver in ata_setup(self.bios)}
        return self._ata_found

    _ata_found = None

    def _setup_ata(self, unit):
        """An emulated IDE disk (unit 0 master, 1 slave; None: every disk found), driven
        by PIO."""
        found = self._ata_probe()
        if unit is None:
            if not found:
                self.bios.warn("no ATA disk answered on the primary IDE channel")
            for slave in sorted(found):
                self._map_hd(found[slave], found[slave].name, found[slave].cntl_id)
            return
        driver = found.get(unit)
        if driver is None:
            self.bios.warn(f"ata0-{unit}: no disk answered on the primary IDE channel")
            return
        self._map_hd(driver, driver.name, driver.cntl_id)

    def _setup_xen_disk(self, devid, path="bounce", fallback_unit=None):
        """A PV disk (found through xenstore, as a PV frontend finds its devices).  When
        it does not connect, its emulated IDE twin at `fallback_unit` (the same image on
        the IDE channel, as QEMU's device model shows it to an HVM guest) takes its
        place, with a warning; without a twin the disk is left out."""
        from pvboot.firmware.xenblk import XenBlkError, XenBlkFront
        xen = self.bios.config.xen
        if xen is None:
            problem = f"vbd {devid}: no Xen platform"
        else:
            front = XenBlkFront(self.bios, xen, devid, self.bios.config.pv_timeout, path)
            try:
                front.connect()
            except XenBlkError as exc:
                front.abandon()
                problem = str(exc)
            else:
                self.pv_fronts.append(front)
                self._map_hd(front, f"vbd {devid}", fallback_unit)
                return
        if fallback_unit is None:
            self.bios.warn(problem)
            return
        driver = self._ata_probe().get(fallback_unit)
        if driver is None:
            self.bios.warn(f"{problem}; its emulated IDE twin ata0-{fallback_unit} did not "
                           "answer either: the disk is left out")
            return
        self.bios.warn(f"{problem}: falling back to emulated IDE (ata0-{fallback_unit})")
        self._map_hd(driver, driver.name, driver.cntl_id)

    def shutdown(self):
        """Disconnect the PV disks; returns the problems seen (empty when clean)."""
        problems = []
        for front in self.pv_fronts:
            problems.extend(front.disconnect())
        self.pv_fronts = []
        return problems

    def make_driver(self, image):
        """The driver serving one configured image (the plain host-file driver for now)."""
        from pvboot.firmware.hostdisk import HostDiskDriver
        return HostDiskDriver(image, self.mem)

    def _map_hd(self, driver, name, position=-1):
        """Give `driver` the next hard disk number.  `position`: its IDE position
        (0-3, for EDD), None for none, -1 for the next one no other disk holds."""
        index = len(self.hard_disks)
        if index >= BUILD_MAX_EXTDRIVE:
            raise BlockError(f"{name}: more than {BUILD_MAX_EXTDRIVE} hard disks")
        used = self._positions_used
        if position == -1:
            taken = used | self._positions_claimed
            position = next((p for p in range(2 * len(ATA_CHANNELS)) if p not in taken), None)
        if position is not None:
            used.add(position)
        drive = Drive.hard_disk(EXTSTART_HD + index, driver, name, position)
        self.hard_disks.append(drive)
        self.drives[drive.number] = drive
        self.mem.write_u8(bda.HDCOUNT, len(self.hard_disks))
        self._fill_fdpt(drive, index)
        if drive.dtype == DTYPE_ATA:
            drive.dpte_segoff = self._segoff(self.bios.rom_alloc(self._ata_dpte(drive)))
        if self._trace_on:
            self.bios.trace(drive.describe())

    def _map_floppy(self, driver, name):
        if len(self.floppies) >= MAX_FLOPPIES:
            raise BlockError(f"{name}: more than {MAX_FLOPPIES} floppy drives")
        drive = Drive.floppy(len(self.floppies), driver, name)
        self.floppies.append(drive)
        self.drives[drive.number] = drive
        # Equipment word: bit 0 = diskettes present, bits 6-7 = drives - 1.
        eqf = self.mem.read_u16(bda.EQUIPMENT_LIST_FLAGS) & ~0x41
        if len(self.floppies) == 1:
            eqf |= 0x01
            harddisk_info = 0x07
        else:
            eqf |= 0x41
            harddisk_info = 0x77
        self.mem.write_u16(bda.EQUIPMENT_LIST_FLAGS, eqf)
        self.mem.write_u8(bda.FLOPPY_HARDDISK_INFO, harddisk_info)
        if self._trace_on:
            self.bios.trace(drive.describe())

    def _fill_fdpt(self, drive, hdid):
        """The fixed disk parameter table of the first two hard disks (block.c fill_fdpt),
        Phoenix's translated form when logical and physical geometry differ."""
        if hdid > 1:
            return
        lchs, pchs = drive.lchs, drive.pchs
        fdpt = bytearray(16)
        struct.pack_into("<HB", fdpt, 0, lchs.cylinders & 0xFFFF, lchs.heads & 0xFF)
        struct.pack_into("<H", fdpt, 5, 0xFFFF)                      # precompensation
        fdpt[8] = 0xC0 | ((pchs.heads > 8) << 3)                     # drive control byte
        struct.pack_into("<H", fdpt, 12, pchs.cylinders & 0xFFFF)    # landing zone
        fdpt[14] = lchs.sectors & 0xFF
        if lchs != pchs:
            fdpt[3] = 0xA0
            fdpt[4] = pchs.sectors & 0xFF
            struct.pack_into("<HB", fdpt, 9, pchs.cylinders & 0xFFFF, pchs.heads & 0xFF)
            fdpt[15] = (-sum(fdpt)) & 0xFF
        addr = self.bios.rom_alloc(bytes(fdpt))
        self.mem.write_u32((0x41 if hdid == 0 else 0x46) * 4, self._segoff(addr))

    def _ata_dpte(self, drive):
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

    @staticmethod
    def _segoff(linear):
        """A far pointer (seg << 16 | off) to a table in the BIOS segment."""
        return (SEG_BIOS << 16) | (linear - BIOS_BASE)

    # -- lookups -----------------------------------------------------------------------
    def get_drive(self, number):
        """The Drive with BIOS number `number`, or None."""
        return self.drives.get(number)

    @property
    def hd_count(self):
        return len(self.hard_disks)

    @property
    def floppy_count(self):
        return len(self.floppies)

    def boot_order(self):
        """Drive numbers INT 19h tries.  Without a configured order: the first hard disk
        (SeaBIOS boots only one hard disk, as 80h), then the first floppy."""
        order = self.bios.config.boot_order
        if order is not None:
            return tuple(order)
        default = []
        if self.hard_disks:
            default.append(self.hard_disks[0].number)
        if self.floppies:
            default.append(self.floppies[0].number)
        return tuple(default)

    def read_boot_sector(self, number):
        """Load sector 0 of drive `number` to 0:7C00 as SeaBIOS's boot_disk does (one
        CMD_READ operation); returns its 512 bytes, or None if there is no such drive
        or the read failed."""
        drive = self.drives.get(number)
        if drive is None:
            return None
        op = DiskOp(CMD_READ, drive, 0, 1, BOOT_ADDR)
        if self.process_op(op) != DISK_RET_SUCCESS:
            return None
        return self.mem.read(BOOT_ADDR, DISK_SECTOR_SIZE)

    # -- the one door ------------------------------------------------------------------
    def process_op(self, op):
        """Run one disk operation (SeaBIOS process_op); returns a DISK_RET_* status and
        leaves in op.count the sectors transferred."""
        requested = op.count
        drive = op.drive
        started = time.perf_counter() if self._trace_on else 0.0
        if requested * drive.blksize > MAX_TRANSFER_BYTES:
            op.count = 0
            status = DISK_RET_EBOUNDARY
        else:
            status = drive.driver.process_op(op)
            if status and op.count == requested:
                # The count has not changed on error: assume no data was transferred.
                op.count = 0
        counters = self._counters
        counters["disk_ops"] += 1
        if op.command == CMD_READ:
            counters["sectors_read"] += op.count
        elif op.command == CMD_WRITE:
            counters["sectors_written"] += op.count
        entry = DiskTraceEntry(self.bios.clock.now(), op.command, drive.number, op.lba,
                               requested, op.count, op.buf_addr, status)
        self._history.append(entry)
        if self._trace_on:
            self.bios.trace(f"{entry} ({(time.perf_counter() - started) * 1e6:.0f} us)")
        return status

    def _process_op_with_digest(self, op):
        """process_op, then an OpDigest of it: for a read the CRC-32 of the bytes in guest
        memory after it (the sectors done), for a write of the bytes it took."""
        command, number, lba, requested, buf_addr = op.command, op.drive.number, op.lba, op.count, op.buf_addr
        status = BlockLayer.process_op(self, op)
        digest = None
        if command in (CMD_READ, CMD_WRITE):
            digest = zlib.crc32(self.mem.view(buf_addr, op.count * op.drive.blksize))
        self.op_digests.append(OpDigest(command, number, lba, requested, op.count, status, digest))
        return status

    # -- EDD -----------------------------------------------------------------------------
    def fill_edd(self, addr, drive):
        """INT 13h AH=48h: fill the drive parameter buffer at linear `addr`
        (SeaBIOS fill_edd / fill_ata_edd / fill_generic_edd); returns a status.

        An ATA disk answers EDD 3.0 as SeaBIOS's ATA driver does on QEMU: host bus
        "PCI " with the IDE function's bus/device/function and the channel as interface
        path, interface "ATA     ", device path = master 0 / slave 1 (ATA_PCI_FUNCTION).
        Like SeaBIOS, the size field says 30 even when the EDD 3.0 part was filled, and
        the reserved byte before the checksum keeps the caller's value."""
        mem = self.mem
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
