"""The block layer, after SeaBIOS's src/block.c: the drives the BIOS knows and the one
door every disk operation goes through (`BlockLayer.process_op`), which routes it to
the drive's driver (firmware/diskop.py DiskDriver).  Nothing above this layer touches a
disk image, and nothing here knows how a driver reaches its disk.  The drive plan and
the POST mapping rules are in docs/disk-drivers.md.
"""
import collections
import functools
import struct
import time

from pvboot.emu.hdgeometry import CHS, TRANSLATION_NAMES, TRANSLATION_NONE
from pvboot.emu.xen.floppymedia import floppy_params_path
from pvboot.firmware import bda
from pvboot.firmware.ata import ata_setup
from pvboot.firmware.boot import BOOT_ADDR
from pvboot.firmware.diskop import (DISK_RET_EBOUNDARY, DISK_RET_SUCCESS, DISK_SECTOR_SIZE,
                                    DTYPE_ATA, DTYPE_FLOPPY, DTYPE_NONE, BlockError, CMD_READ,
                                    CMD_WRITE, DiskOp)
from pvboot.firmware.disktrace import DISK_TRACE_LENGTH, DiskTraceEntry, process_op_with_digest
from pvboot.firmware.edd import ATA_CHANNELS, ata_dpte
from pvboot.firmware.floppy import DISKETTE_PARAM_TABLE2, FLOPPY_INFO, MAX_FLOPPIES, floppy_type_for_size
from pvboot.firmware.geometry import get_translation, setup_translation
from pvboot.firmware.hostdisk import HostDiskDriver
from pvboot.firmware.floppymedia import FloppyMediaWatch
from pvboot.firmware.xenblk import XenBlkError, XenBlkFront, discover_vbds

# Names the rest of the tree (tools/, tests/) imports from the block layer.
from pvboot.emu.hdgeometry import (TRANSLATION_LARGE, TRANSLATION_LBA,  # noqa: F401,E402
                                   TRANSLATION_RECHS, qemu_ide_geometry)
from pvboot.firmware.diskop import (CMD_FORMAT, CMD_ISREADY, CMD_RESET,  # noqa: F401,E402
                                    CMD_SEEK, CMD_VERIFY, COMMAND_NAMES, DISK_RET_EBADTRACK,
                                    DISK_RET_ECHANGED, DISK_RET_ENOTREMOVABLE, DISK_RET_EPARAM,
                                    DISK_RET_EWRITEPROTECT)
from pvboot.firmware.disktrace import OpDigest  # noqa: F401,E402
from pvboot.firmware.floppy import find_floppy_type  # noqa: F401,E402

# SeaBIOS's process_op refuses any transfer over 64 KiB, whatever the caller.
MAX_TRANSFER_BYTES = 64 * 1024

# Drive number ranges (SeaBIOS block.h) and table size (config.h BUILD_MAX_EXTDRIVE).
EXTSTART_HD = 0x80
EXTSTART_CD = 0xE0
BUILD_MAX_EXTDRIVE = 16

SEG_BIOS = 0xF000
BIOS_BASE = SEG_BIOS << 4


class Drive:
    """A drive as INT 13h sees it (SeaBIOS struct drive_s plus its BIOS number)."""

    int13_functions = None      # a CD's or an emulated drive's own table (firmware/cdrom.py)

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
            self.process_op = functools.partial(process_op_with_digest, BlockLayer.process_op, self)
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
        mem.write_u32(0x1E * 4, self.rom_segoff(self.floppy_table_addr))
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
            paths = getattr(config, "pv_paths", {})
            plan += [xen_drive(devid, paths.get(devid, "bounce")) for devid in discover_vbds(config.xen)]
        plan += [host_drive(image) for image in config.disks
                 if getattr(image, "kind", "hd") != "floppy"]
        return plan

    def _ata_probe(self):
        """{unit: AtaDriver} of the disks answering on the primary IDE channel, probed
        once, when the first drive needs it (firmware/ata.py, SeaBIOS's ata_setup)."""
        if self._ata_found is None:
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
        for drive in self.floppies:
            if hasattr(drive.driver, "close_media"):
                drive.driver.close_media()
        for front in self.pv_fronts:
            problems.extend(front.disconnect())
        self.pv_fronts = []
        return problems

    def make_driver(self, image):
        """The driver serving one configured image (the plain host-file driver for now)."""
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
            drive.dpte_segoff = self.rom_segoff(self.bios.rom_alloc(ata_dpte(drive)))
        if self._trace_on:
            self.bios.trace(drive.describe())

    def _map_floppy(self, driver, name):
        if len(self.floppies) >= MAX_FLOPPIES:
            raise BlockError(f"{name}: more than {MAX_FLOPPIES} floppy drives")
        drive = Drive.floppy(len(self.floppies), driver, name)
        xen = self.bios.config.xen
        if xen is not None and hasattr(driver, "media_watch") and \
                xen.xs.read(floppy_params_path(xen.domid, drive.number)) is not None:
            driver.media_watch = FloppyMediaWatch(xen.xs, xen.domid, drive.number, self.bios.warn)
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
        self.mem.write_u32((0x41 if hdid == 0 else 0x46) * 4, self.rom_segoff(addr))

    @staticmethod
    def rom_segoff(linear):
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
