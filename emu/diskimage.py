"""A raw disk image as the platform holds it: the one place that opens a raw file.

Details: docs/storage.md.
"""
import bisect
import os
import stat

SECTOR_SIZE = 512
KINDS = ("hd", "floppy")


class DiskImageError(Exception):
    """A disk image that cannot be used as asked; the message is one line for the user."""


def check_file(path):
    """Raise DiskImageError unless ``path`` names a regular file or block device."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DiskImageError(f"disk image {path}: no such file") from None
    except OSError as exc:
        raise DiskImageError(f"disk image {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise DiskImageError(f"disk image {path}: is a directory, not a disk image")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise DiskImageError(f"disk image {path}: not a regular file or block device")


class BlockImage:
    """What the devices and blkback use of a disk: `sectors` 512-byte sectors, read and
    written by LBA.  Subclasses provide read_into_parts, write_from_parts, flush, close."""

    path = name = "<image>"
    kind = "hd"
    read_only = False
    persist = False
    sectors = 0

    def _describe(self, path, read_only, persist, kind):
        """Check and set what every image says about itself."""
        if kind not in KINDS:
            raise DiskImageError(f"disk image {path}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if read_only and persist:
            raise DiskImageError(f"disk image {path}: read-only and persist exclude each other")
        self.path = os.fspath(path)
        self.name = os.path.basename(self.path) or self.path
        self.kind = kind
        self.read_only = read_only
        self.persist = persist
        self.notes = []

    def _check_range(self, lba, count, length):
        if lba < 0 or count < 0 or lba + count > self.sectors:
            raise ValueError(f"{self.name}: sectors {lba}..{lba + count - 1} outside the "
                             f"disk ({self.sectors} sectors)")
        if length != count * SECTOR_SIZE:
            raise ValueError(f"{self.name}: buffer of {length} bytes for {count} sectors")

    def read_into(self, lba, count, dest):
        """Fill `dest` (a writable buffer of count*512 bytes, e.g. a guest memory view)
        with sectors lba..lba+count-1, without an intermediate copy."""
        dest = memoryview(dest).cast("B")
        self._check_range(lba, count, len(dest))
        self.read_into_parts(lba, [dest])

    def read(self, lba, count):
        """Sectors lba..lba+count-1 as bytes (a copy: for setup and tests, not the hot path)."""
        buf = bytearray(count * SECTOR_SIZE)
        self.read_into(lba, count, buf)
        return bytes(buf)

    def read_batch(self, reads):
        """[(lba, parts)] read: one entry per read, None or the error that failed it
        alone (OSError, DiskImageError, ValueError).  One read after the other here;
        an image that can have them all in flight at once (NbdImage) overrides it."""
        errors = []
        for lba, parts in reads:
            try:
                self.read_into_parts(lba, parts)
                errors.append(None)
            except (OSError, DiskImageError, ValueError) as e:
                errors.append(e)
        return errors

    def pump(self):
        """Work the image can do while its user waits for something else (blkback, for
        the next request), a small step a call; True while there is more.  Nothing
        here; NbdImage takes in its read-ahead."""
        return False

    def write_from(self, lba, count, data):
        """Write `data` (count*512 bytes) at `lba`."""
        if self.read_only:
            raise DiskImageError(f"disk image {self.path}: read-only")
        data = memoryview(data).cast("B")
        self._check_range(lba, count, len(data))
        self.write_from_parts(lba, [data])

    def _parts(self, lba, parts):
        """The buffers as byte views, checked to cover whole sectors inside the disk."""
        # A flat byte view (what blkback passes: guest frames) is used as it is; cast
        # makes the same view again, twice the objects per segment.
        parts = [part if part.__class__ is memoryview and part.format == "B"
                 and part.ndim == 1 and part.c_contiguous else memoryview(part).cast("B")
                 for part in parts]
        total = sum(map(len, parts))
        self._check_range(lba, total // SECTOR_SIZE, total)
        return parts, total

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DiskImage(BlockImage):
    """A raw image file (or memory, from_bytes)."""

    def __init__(self, path, read_only=False, persist=False, kind="hd"):
        self._describe(path, read_only, persist, kind)
        self._fd = None
        self._overlay_fd = None
        # Overlay extents in sectors: [start, end) pairs kept sorted, disjoint and
        # non-adjacent (neighbours are merged), as two parallel lists for bisect.
        self._starts = []
        self._ends = []
        self._fd = self._open(self.path, writable=persist)
        self._init_size()

    @classmethod
    def from_bytes(cls, data, name="memory", read_only=False, kind="hd"):
        """An image whose contents live in memory (the built-in demo disk, tests).

        The bytes are copied once into a memfd; writes then go to the overlay as for a
        file, so `data` itself is never changed."""
        fd = os.memfd_create(f"pvboot-disk-{name}", 0)
        try:
            view = memoryview(data)
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:])
        except BaseException:
            os.close(fd)
            raise
        image = cls.__new__(cls)
        image.path = f"<{name}>"
        image.name = name
        if kind not in KINDS:
            os.close(fd)
            raise DiskImageError(f"disk image {image.path}: kind must be one of {', '.join(KINDS)}")
        image.kind = kind
        image.read_only = read_only
        image.persist = False
        image.notes = []
        image._fd = fd
        image._overlay_fd = None
        image._starts = []
        image._ends = []
        image._init_size()
        return image

    # -- opening and validation --------------------------------------------------------
    def _open(self, path, writable):
        check_file(path)
        flags = (os.O_RDWR if writable else os.O_RDONLY) | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(path, flags)
        except PermissionError:
            what = "not writable (needed for persist)" if writable else "not readable"
            raise DiskImageError(f"disk image {path}: {what}") from None
        except OSError as exc:
            raise DiskImageError(f"disk image {path}: {exc.strerror}") from None

    def _init_size(self):
        try:
            size = os.lseek(self._fd, 0, os.SEEK_END)
        except OSError as exc:
            self.close()
            raise DiskImageError(f"disk image {self.path}: {exc.strerror}") from None
        if size == 0:
            self.close()
            raise DiskImageError(f"disk image {self.path}: empty file")
        if size < SECTOR_SIZE:
            self.close()
            raise DiskImageError(f"disk image {self.path}: {size} bytes is shorter than one "
                                 f"{SECTOR_SIZE}-byte sector")
        self.size = size
        self.sectors = size // SECTOR_SIZE
        tail = size % SECTOR_SIZE
        if tail:
            self.notes.append(f"disk image {self.path}: size {size} is not a multiple of "
                              f"{SECTOR_SIZE}; the last {tail} bytes are not part of the disk")

    # -- data path ---------------------------------------------------------------------
    def read_into_parts(self, lba, parts):
        """read_into for consecutive sectors spread over several buffers (the segments of
        one blkif request), filled in order: where two buffers alias the same memory,
        the later one's sectors are what it holds, as if they were read one by one."""
        parts, total = self._parts(lba, parts)
        end = lba + total // SECTOR_SIZE
        if not self._touches_overlay(lba, end):
            self._pread(parts, lba, total)          # one preadv for all of them
            return
        first = lba
        for part in parts:
            # Each buffer gets its file sectors, then its overlay sectors, before the
            # next one is filled: one preadv for all would let an overlay patch of an
            # earlier buffer land after the file data of a later aliasing one.
            last = first + len(part) // SECTOR_SIZE
            self._pread([part], first, len(part))
            self._patch_from_overlay(first, last, part)
            first = last

    def _pread(self, parts, lba, total):
        if os.preadv(self._fd, parts, lba * SECTOR_SIZE) != total:
            raise DiskImageError(f"disk image {self.path}: short read at sector {lba} "
                                 f"(file changed size?)")

    def _touches_overlay(self, first, end):
        i = bisect.bisect_right(self._ends, first)
        return i < len(self._starts) and self._starts[i] < end

    def write_from_parts(self, lba, parts):
        """write_from for consecutive sectors spread over several buffers (the segments
        of one blkif request): one pwritev for all of them."""
        if self.read_only:
            raise DiskImageError(f"disk image {self.path}: read-only")
        parts, total = self._parts(lba, parts)
        count = total // SECTOR_SIZE
        if self.persist:
            fd = self._fd
        else:
            if self._overlay_fd is None:
                self._overlay_fd = os.memfd_create(f"pvboot-overlay-{self.name}", 0)
                os.ftruncate(self._overlay_fd, self.sectors * SECTOR_SIZE)
            fd = self._overlay_fd
        put = os.pwritev(fd, parts, lba * SECTOR_SIZE)
        if put != total:
            raise DiskImageError(f"disk image {self.path}: short write at sector {lba}")
        if not self.persist and count:
            self._add_extent(lba, lba + count)

    def _patch_from_overlay(self, first, end, dest):
        starts, ends = self._starts, self._ends
        i = bisect.bisect_right(ends, first)      # first extent that ends after `first`
        while i < len(starts) and starts[i] < end:
            lo = max(starts[i], first)
            hi = min(ends[i], end)
            part = dest[(lo - first) * SECTOR_SIZE:(hi - first) * SECTOR_SIZE]
            os.preadv(self._overlay_fd, [part], lo * SECTOR_SIZE)
            i += 1

    def _add_extent(self, first, end):
        starts, ends = self._starts, self._ends
        # Extents touching [first, end) (overlapping or adjacent) merge into one.
        i = bisect.bisect_left(ends, first)
        j = bisect.bisect_right(starts, end)
        if i < j:
            first = min(first, starts[i])
            end = max(end, ends[j - 1])
        starts[i:j] = [first]
        ends[i:j] = [end]

    def fileno(self):
        """The descriptor of the image file (e.g. to lock it)."""
        return self._fd

    @property
    def overlay_sectors(self):
        """How many sectors the copy-on-write overlay holds (0 if never written)."""
        return sum(e - s for s, e in zip(self._starts, self._ends))

    def flush(self):
        """Make written data durable (a write-through image only; the overlay is memory)."""
        if self.persist and self._fd is not None:
            os.fsync(self._fd)

    def close(self):
        for name in ("_fd", "_overlay_fd"):
            fd = getattr(self, name, None)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)

    def __repr__(self):
        mode = "read-only" if self.read_only else ("persist" if self.persist else "overlay")
        return f"DiskImage({self.path!r}, {self.kind}, {self.sectors} sectors, {mode})"
