"""The disks of a run: checking the user's files, planning which drive each image
becomes and on which path, and the storage steps around blkback (format probing,
copy-on-write layers, QEMU's image locks)."""
import contextlib
import dataclasses
import errno
import os
import stat

from pvboot.emu.diskimage import DiskImageError
from pvboot.emu.diskspec import DiskSpec, DiskSpecError, parse_disk_spec
from pvboot.emu.storage.images import claim_image, open_image
from pvboot.emu.storage.locking import ImageLockError
from pvboot.emu.storage.probe import format_hint
from pvboot.emu.xen import toolstack
from pvboot.emu.xen.blkback.xenbus import STORAGE_QMP_NODE
from pvboot.tools.errors import InputError
from pvboot.tools.image import ConsoleSnapshots


@contextlib.contextmanager
def naming_file(path):
    """An OSError raised while writing `path` names it (a write past the file-size limit,
    EFBIG, carries no file name of its own)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise


def os_error_line(exc):
    """One line for an OSError: the file and the reason."""
    return f"{exc.filename or 'pvboot'}: {exc.strerror or exc}"


def _file_problem(exc):
    """What an OSError from stat() or open() means for a file the user named."""
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (too many levels of symbolic links)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "not readable (permission denied)"
    return (exc.strerror or str(exc)).lower()


def check_input_file(path, what="a disk image"):
    """os.stat_result of a regular file the user named that pvboot can read, else
    InputError with one line (no such file, a symlink loop, a directory, unreadable)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:       # ValueError: a NUL byte in the path
        raise InputError(f"{path}: {_file_problem(exc) if isinstance(exc, OSError) else exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a directory, not {what}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: not readable")
    return st


def check_image(path, bootable):
    """Raise InputError with one clear line if `path` cannot be used as a disk image.
    The boot signature is looked for in raw files only: in another format sector 0 is
    not at offset 0 (the firmware then says whether it is bootable)."""
    size = check_input_file(path).st_size
    if size < 512:
        raise InputError(f"{path}: {size} bytes is shorter than one 512-byte sector")
    if bootable and format_hint(path) == "raw":
        try:
            with open(path, "rb") as f:
                f.seek(510)
                signature = f.read(2)
        except OSError as exc:
            raise InputError(f"{path}: {_file_problem(exc)}") from None
        if signature != b"\x55\xAA":
            raise InputError(f"{path}: no boot signature (55 AA) at the end of sector 0")


def open_disks(images, floppy=None, read_only=False, persist=False):
    """DiskImages the firmware's plain driver serves: hard disks first (80h, 81h, ...),
    then the floppy."""
    disks = []
    try:
        for path in images:
            disks.append(open_image(path, kind="hd", read_only=read_only, persist=persist))
        if floppy:
            disks.append(open_image(floppy, kind="floppy", read_only=read_only, persist=persist))
    except DiskImageError as exc:
        for disk in disks:
            disk.close()
        raise InputError(str(exc)) from None
    return disks


@dataclasses.dataclass
class PlannedDisk:
    """One hard disk of a run, as the user gave it (an IMAGE or a --disk spec)."""
    image: str
    kind: str                 # "xen" (type=xenbus), "ata" (type=ioemu) or "host"
    path: str = "bounce"      # PV data path (xen)
    read_only: bool = False
    persist: bool = False
    source: str = ""          # how the user said it, for error messages
    unit: int = None          # IDE unit: the disk's own (ata) or its emulated twin's (xen)
    format: str = None        # QEMU format name; None: read from the image's header
    devtype: str = "disk"     # "disk" or "cdrom" (emu/diskspec.py)
    save_overlay: str = None  # keep this disk's writes in a new qcow2 file


_DRIVER_KINDS = {"xen": "xen", "ata": "ata", "host": "host"}
IDE_UNITS = 2                 # the primary channel: master and slave


def plan_disks(images=(), disks=(), driver=None, pv_path="bounce", read_only=False,
               persist=False):
    """The run's hard disks in BIOS order (80h first), each with its IDE unit.

    Hard disks come either as `images` (positional IMAGEs: all attached as `driver`
    says, default xen, with `pv_path`) or as `disks` (--disk specs, strings or
    emu.diskspec.DiskSpec: each says its own type; --pv-path, --read-only and
    --persist are the defaults of path=, access= and writes=), not both, and `driver`
    only goes with `images`.  IDE units: the emulated disks (ata) take the primary
    channel's master and slave in order, a third is an error; then each PV disk takes a
    free one, in order, for its emulated twin (its fallback); PV disks beyond that have
    none.  Raises InputError with one line."""
    images, disks = list(images or ()), list(disks or ())
    if images and disks:
        raise InputError("give the hard disks either as IMAGEs or as --disk specs, not both "
                         "(the drive order would be ambiguous)")
    if disks and driver is not None:
        raise InputError(f"--driver {driver} applies to positional IMAGEs; with --disk give "
                         "each disk's type=xenbus|ioemu in its spec")
    driver = driver or "xen"
    if driver not in _DRIVER_KINDS:
        raise InputError(f"unknown disk driver {driver!r} (use xen, host or ata)")
    if driver == "ata" and len(images) > IDE_UNITS:
        raise InputError(f"--driver ata: the IDE channel holds two disks, not {len(images)}")
    planned = [PlannedDisk(path, _DRIVER_KINDS[driver], pv_path, read_only, persist, path)
               for path in images]
    defaults = {"path": pv_path, "access": "ro" if read_only else "rw",
                "writes": "persist" if persist else "overlay"}
    for item in disks:
        if isinstance(item, DiskSpec):
            spec, text = item, item.describe()
        else:
            text = str(item)
            try:
                spec = parse_disk_spec(text, defaults)
            except DiskSpecError as exc:
                raise InputError(str(exc)) from None
        if spec.read_only and spec.persist:
            raise InputError(f"--disk {text!r}: access=ro and writes=persist exclude each "
                             "other (a read-only disk is never written)")
        planned.append(PlannedDisk(spec.image, "xen" if spec.type == "xenbus" else "ata",
                                   spec.path, spec.read_only, spec.persist, f"--disk {text!r}",
                                   format=spec.format, devtype=spec.devtype))
    free = list(range(IDE_UNITS))
    for disk in planned:
        if disk.kind == "ata":
            if not free:
                raise InputError(f"{disk.source}: type=ioemu: the primary IDE channel holds "
                                 "two disks (master and slave); this is a third")
            disk.unit = free.pop(0)
    for disk in planned:
        if disk.kind == "xen" and free:
            disk.unit = free.pop(0)
    return planned


def _disk_layers(planned, save_overlay, snapshot_on):
    """Check --save-overlay and --snapshot-on against the planned disks; the first disk
    gets the overlay file.  Returns the run's ConsoleSnapshots."""
    if save_overlay is not None:
        if not planned or planned[0].persist:
            raise InputError("--save-overlay needs a first hard disk whose writes are not "
                             "persisted")
        if os.path.lexists(save_overlay):
            raise InputError(f"--save-overlay {save_overlay}: exists already (not overwriting it)")
        planned[0].save_overlay = save_overlay
    try:
        return ConsoleSnapshots(snapshot_on or ())
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _claim_disks(planned, snapshots):
    """Each disk's format, checked (emu/storage/probe.py), and the image locks of the run
    (held until closed); InputError in one line, with nothing left locked.  --snapshot-on
    needs a writable qcow2 layer that outlives the run on the first (PV) disk."""
    locks = []
    try:
        for disk in planned:
            disk.format, lock = claim_image(disk.image, disk.format, write=disk.persist)
            if lock is not None:
                locks.append(lock)
            if disk.format != "raw" and disk.persist and disk.kind == "xen":
                disk.unit = None          # its storage daemon holds the image for writing
        first = planned[0] if planned else None
        if snapshots.pending and (first is None or first.kind != "xen" or not (
                first.save_overlay or (first.persist and first.format == "qcow2"))):
            raise InputError("--snapshot-on needs a writable qcow2 layer that outlives the "
                             "run on the first PV disk: --save-overlay FILE, or --persist "
                             "on a qcow2 image")
    except (DiskImageError, ImageLockError, InputError) as exc:
        for lock in locks:
            lock.close()
        raise InputError(str(exc)) from None
    return locks


def _await_storage(platform, devid, snapshots, timeout):
    """Wait (bounded) for the blkback of a disk behind a storage daemon: its refusal (a
    lock, a bad chain) is the user's input error, not a disk to fall back from.  Then
    note where --snapshot-on reaches the daemon."""
    problem = platform.wait_backend(devid, timeout)
    if problem:
        raise InputError(problem)
    if snapshots.pending and snapshots.qmp_path is None:
        snapshots.qmp_path = platform.xs.read(
            toolstack.backend_path(0, 1, devid) + "/" + STORAGE_QMP_NODE)
