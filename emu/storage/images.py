"""Opening a disk image in any format: the one entry point for the backends and devices.

Raw images without a kept overlay are files (emu/diskimage.py: preadv/pwritev, the
memory copy-on-write overlay); every other case goes through the QEMU block layer
(nbdimage.NbdImage).  Either way the caller gets a BlockImage.
"""
import os

from pvboot.emu.diskimage import DiskImage, DiskImageError, check_file
from pvboot.emu.storage.daemon import StorageError
from pvboot.emu.storage.locking import ImageLock, ImageLockError, conflict
from pvboot.emu.storage.nbdimage import NbdImage
from pvboot.emu.storage.probe import resolve_format


def open_image(path, fmt=None, *, read_only=False, persist=False, run_dir=None,
               save_overlay=None, kind="hd"):
    """A BlockImage for ``path``; ``fmt`` None reads the format from the header.
    DiskImageError (one line) when the image cannot be served as asked."""
    check_file(path)
    try:
        fmt, _info = resolve_format(path, fmt)
    except StorageError as e:
        raise DiskImageError(f"disk image {path}: {e}") from None
    if fmt == "raw" and save_overlay is None:
        return DiskImage(path, read_only=read_only, persist=persist, kind=kind)
    return NbdImage(path, fmt, read_only=read_only, persist=persist, run_dir=run_dir,
                    save_overlay=save_overlay, kind=kind)


def claim_image(path, fmt=None, write=False):
    """Check ``path`` for a run and lock it: returns (format, lock).

    A raw file gets QEMU's lock bytes, held on the returned ImageLock until the run
    closes it (the backends then take none).  For other formats the storage daemon
    takes them itself when it opens the image; here they are only tested, so a
    conflict is one line before anything starts (lock None).  DiskImageError or
    ImageLockError (one line) when the image cannot be served or is in use."""
    check_file(path)
    try:
        fmt, _info = resolve_format(path, fmt)
    except StorageError as e:
        raise DiskImageError(f"disk image {path}: {e}") from None
    if fmt == "raw":
        return fmt, ImageLock.acquire(path, write)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise DiskImageError(f"disk image {path}: {e.strerror}") from None
    try:
        message = conflict(fd, write)
    finally:
        os.close(fd)
    if message:
        raise ImageLockError(f"{path}: {message} (is another process using the image?)")
    return fmt, None
