"""Image locks as QEMU's file-posix driver takes them, so pvboot and QEMU exclude each other.

Details: docs/storage.md.
"""
import fcntl
import os
import struct

PERM_CONSISTENT_READ = 0
PERM_WRITE = 1
PERM_WRITE_UNCHANGED = 2
PERM_RESIZE = 3
PERM_NAMES = ("consistent read", "write", "write unchanged", "resize")
RAW_LOCK_PERM_BASE = 100
RAW_LOCK_SHARED_BASE = 200
F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_FLOCK = struct.Struct("@hhqqixxxx")       # struct flock on Linux x86_64 (32 bytes)


class ImageLockError(Exception):
    """Another process uses the image in a way this use excludes (one line)."""


def _flock(fd, cmd, lock_type, start):
    packed = fcntl.fcntl(fd, cmd, _FLOCK.pack(lock_type, os.SEEK_SET, start, 1, 0))
    return _FLOCK.unpack(packed)[0]


def _held_by_other(fd, byte):
    """True if another open file description holds a lock on ``byte``."""
    return _flock(fd, F_OFD_GETLK, fcntl.F_WRLCK, byte) != fcntl.F_UNLCK


def permissions(write):
    """(permissions used, permissions shared with others) for a reader or a writer."""
    used = {PERM_CONSISTENT_READ} | ({PERM_WRITE} if write else set())
    shared = {PERM_CONSISTENT_READ, PERM_WRITE_UNCHANGED}
    return used, shared


def conflict(fd, write):
    """The message naming the first conflicting lock another process holds on the file
    behind ``fd``, or None (a test only: takes nothing)."""
    used, shared = permissions(write)
    for perm in sorted(used):
        if _held_by_other(fd, RAW_LOCK_SHARED_BASE + perm):
            return 'Failed to get "%s" lock' % PERM_NAMES[perm]
    for perm in range(len(PERM_NAMES)):
        if perm not in shared and _held_by_other(fd, RAW_LOCK_PERM_BASE + perm):
            return 'Failed to get shared "%s" lock' % PERM_NAMES[perm]
    return None


class ImageLock:
    """The lock bytes of one use of an image, held on ``fd`` until release() or close()
    (which closes ``fd`` only if acquire() opened it)."""

    def __init__(self, fd, path, write, owns_fd=False):
        self.fd = fd
        self.owns_fd = owns_fd
        self.path = path
        self.write = write
        used, shared = permissions(write)
        self._bytes = ([RAW_LOCK_PERM_BASE + p for p in sorted(used)]
                       + [RAW_LOCK_SHARED_BASE + p for p in range(len(PERM_NAMES))
                          if p not in shared])
        # Lock first, then test, as QEMU does: of two racing users at least one sees
        # the other.
        try:
            for byte in self._bytes:
                _flock(fd, F_OFD_SETLK, fcntl.F_RDLCK, byte)
            message = conflict(fd, write)
        except OSError as e:
            self.release()
            raise ImageLockError("%s: cannot lock: %s" % (path, e.strerror)) from None
        if message:
            self.release()
            raise ImageLockError("%s: %s (is another process using the image%s?)"
                                 % (path, message, "" if write else " read-write"))

    @classmethod
    def acquire(cls, path, write):
        """Open ``path`` (read-only: F_RDLCK needs no write access) and lock it."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise ImageLockError("%s: %s" % (path, e.strerror)) from None
        try:
            return cls(fd, path, write, owns_fd=True)
        except BaseException:
            os.close(fd)
            raise

    def release(self):
        """Drop the lock bytes (closing the descriptor drops them too)."""
        for byte in self._bytes:
            try:
                _flock(self.fd, F_OFD_SETLK, fcntl.F_UNLCK, byte)
            except OSError:
                pass

    def close(self):
        if self.fd is None:
            return
        if self.owns_fd:
            os.close(self.fd)
        else:
            self.release()
        self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
