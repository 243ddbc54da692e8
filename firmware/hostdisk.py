"""The plain disk driver: serves a drive's DiskOps from an emu.diskimage.DiskImage,
straight between the image and guest memory, behaving as the device SeaBIOS drives on
QEMU's PC (an IDE disk; a floppy in the drive QEMU picks) so INT 13h results match
QEMU + SeaBIOS.  The rules: docs/disk-drivers.md.
"""
from pvboot.emu.diskimage import DiskImage, DiskImageError
from pvboot.emu.hdgeometry import qemu_ide_geometry
from pvboot.firmware.diskop import (
    CMD_FORMAT, CMD_ISREADY, CMD_READ, CMD_RESET, CMD_SEEK, CMD_VERIFY, CMD_WRITE,
    DISK_RET_EBADTRACK, DISK_RET_EBOUNDARY, DISK_RET_ECONTROLLER, DISK_RET_EPARAM,
    DISK_RET_EWRITEPROTECT, DISK_RET_SUCCESS, DISK_SECTOR_SIZE, BlockError,
)
from pvboot.firmware.floppy import FLOPPY_INFO, qemu_floppy_drive_type
from pvboot.emu.hdgeometry import CHS

# An empty floppy drive: every track lies past the medium (QEMU's fd_seek fails).
NO_MEDIUM = CHS(0, 0, 0)

# Commands an ATA disk accepts without doing anything (ata_process_op -> default_process_op).
_ATA_NOOPS = frozenset({CMD_RESET, CMD_ISREADY, CMD_VERIFY, CMD_SEEK, CMD_FORMAT})
# Bytes the floppy controller's DMA moves per sector ID when formatting (floppy_format).
_FORMAT_BYTES_PER_SECTOR = 4


class HostDiskDriver:
    """Driver for one drive backed by a DiskImage (kind 'hd' or 'floppy')."""

    def __init__(self, image, mem):
        self.image = image
        self.mem = mem
        self.media_watch = None          # firmware/floppymedia.py, set by the block layer
        self._opened = None              # an image this driver opened after a change
        self.sectors = image.sectors
        self.read_only = image.read_only
        self.floppy = getattr(image, "kind", "hd") == "floppy"
        if self.floppy:
            self.drive_type, media_type = qemu_floppy_drive_type(
                image.sectors * DISK_SECTOR_SIZE, f"floppy image {image.name}")
            self.media = FLOPPY_INFO[media_type].chs
        # The driver interface's process_op(op): bound once, no per-call dispatch.
        self.process_op = self._floppy_op if self.floppy else self._ata_op

    def geometry(self):
        """(physical CHS, translation) as QEMU's IDE disk reports them; None for floppies."""
        if self.floppy:
            return None
        return qemu_ide_geometry(self.sectors, self.image.read(0, 1))

    def floppy_type(self):
        """The CMOS type of the drive QEMU puts this floppy image in."""
        return self.drive_type

    # -- hard disk (SeaBIOS ata_process_op on QEMU's IDE disk) ---------------------------
    def _ata_op(self, op):
        command = op.command
        if command == CMD_READ:
            return self._ata_transfer(op, write=False)
        if command == CMD_WRITE:
            return self._ata_transfer(op, write=True)
        if command in _ATA_NOOPS:
            return DISK_RET_SUCCESS
        return DISK_RET_EPARAM

    def _ata_transfer(self, op, write):
        if write and self.read_only:
            return DISK_RET_EWRITEPROTECT
        count = op.count
        inside = self._sectors_inside(op.lba, count)
        if inside:
            copy = self._from_guest if write else self._to_guest
            copy(op.lba, inside, op.buf_addr)
        if inside == count:
            return DISK_RET_SUCCESS
        if not write:
            # QEMU fails the first sector past the end; SeaBIOS's PIO loop counts those
            # before.
            op.count = inside
        elif inside + 1 < count:
            # The sector QEMU rejects has already left SeaBIOS's PIO loop, which counts it
            # as sent unless it was the last one (then the loop ends on the error and the
            # count stays as requested, which process_op turns into 0).
            op.count = inside + 1
        return DISK_RET_EBADTRACK

    def _sectors_inside(self, lba, count):
        """How many of the `count` sectors from `lba` lie inside the image."""
        return min(max(self.sectors - lba, 0), count)

    # -- floppy (SeaBIOS floppy_process_op on QEMU's floppy controller) ------------------
    def _floppy_op(self, op):
        if self.media_watch is not None:
            params = self.media_watch.poll()
            if params is not None:
                self._change_medium(params, self.media_watch.warn)
        command = op.command
        if command == CMD_READ or command == CMD_WRITE:
            return self._floppy_transfer(op, command == CMD_WRITE)
        if command == CMD_RESET or command == CMD_VERIFY:
            return DISK_RET_SUCCESS
        if command == CMD_FORMAT:
            if _crosses_dma_page(op.buf_addr, op.count * _FORMAT_BYTES_PER_SECTOR):
                return DISK_RET_EBOUNDARY
            # The track's sector data is not changed (QEMU's controller only checks).
            return DISK_RET_EWRITEPROTECT if self.read_only else DISK_RET_SUCCESS
        return DISK_RET_EPARAM

    def _floppy_transfer(self, op, is_write):
        count, addr = op.count, op.buf_addr
        if _crosses_dma_page(addr, count * DISK_SECTOR_SIZE):
            return DISK_RET_EBOUNDARY
        first = self._media_lba(op)
        if first is None:
            return DISK_RET_ECONTROLLER
        if is_write and self.read_only:
            return DISK_RET_EWRITEPROTECT
        inside = self._sectors_inside(first, count)
        if is_write:
            if inside:
                self._from_guest(first, inside, addr)
            # The floppy driver never reports a partial count: an error means 0 sectors.
            return DISK_RET_SUCCESS if inside == count else DISK_RET_ECONTROLLER
        if inside:
            self._to_guest(first, inside, addr)
        if inside < count:
            self._zero_guest(addr + inside * DISK_SECTOR_SIZE, (count - inside) * DISK_SECTOR_SIZE)
        return DISK_RET_SUCCESS

    def _change_medium(self, path, warn):
        """A diskette swapped from outside: read the new one from now on (the drive,
        hence the geometry INT 13h uses, stays); a file that is no floppy leaves the
        drive empty, with a warning."""
        old = self._opened
        self._opened = None
        self.media, self.sectors = NO_MEDIUM, 0
        if path:
            try:
                image = DiskImage(path, kind="floppy", read_only=self.image.read_only)
            except DiskImageError as exc:
                warn(f"floppy change: {exc}")
            else:
                try:
                    _drive, media_type = qemu_floppy_drive_type(image.sectors * DISK_SECTOR_SIZE,
                                                                f"floppy image {image.name}")
                except BlockError as exc:
                    warn(f"floppy change: {exc}")
                    image.close()
                else:
                    self.image = self._opened = image
                    self.media, self.sectors = FLOPPY_INFO[media_type].chs, image.sectors
        if old is not None:
            old.close()

    def close_media(self):
        """Close an image opened after a change (the run closes the first one)."""
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    def _media_lba(self, op):
        """Where on the medium the controller starts: SeaBIOS's lba2chs with the drive's
        geometry, looked up with the medium's; None if the controller cannot seek there."""
        spt, heads = op.drive.lchs.sectors, op.drive.lchs.heads
        sector = op.lba % spt + 1
        track = op.lba // spt
        head = track % heads
        cylinder = track // heads
        media = self.media
        # QEMU's fd_seek: the track number may equal the track count (reads as zeros).
        if cylinder > media.cylinders or (head and media.heads == 1) or sector > media.sectors:
            return None
        return (cylinder * media.heads + head) * media.sectors + sector - 1

    # -- guest memory ------------------------------------------------------------------
    def _to_guest(self, lba, count, addr):
        """Disk -> guest memory, straight into the guest's frames."""
        mem = self.mem
        nbytes = count * DISK_SECTOR_SIZE
        if mem.is_writable_ram(addr, nbytes):
            self.image.read_into(lba, count, mem.view(addr, nbytes))
            mem.invalidate(addr, nbytes)
            return
        # Partly or wholly outside RAM: the parts that hit ROM or nothing are dropped.
        data = bytearray(nbytes)
        self.image.read_into(lba, count, data)
        mem.dma_write(addr, data)

    def _zero_guest(self, addr, nbytes):
        mem = self.mem
        mem.dma_write(addr, bytes(nbytes))

    def _from_guest(self, lba, count, addr):
        """Guest memory -> disk, straight from the guest's frames."""
        self.image.write_from(lba, count, self.mem.dma_read(addr, count * DISK_SECTOR_SIZE))


def _crosses_dma_page(addr, nbytes):
    """True if an ISA DMA transfer would cross a 64 KiB page (SeaBIOS dma_floppy)."""
    return (addr >> 16) != ((addr + nbytes - 1) >> 16)
