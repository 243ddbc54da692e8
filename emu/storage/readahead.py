"""Sequential read-ahead for disks behind the NBD export: a window of the sectors after a
sequential read, and the read of the next window already out while this one is used.

Every NBD command costs a round trip through the storage daemon (its main loop, a worker
thread, two socket copies), which for a 64 KiB read costs several times the data;
INT 13h callers read sequentially in small pieces (one AH=42h call, or a loader's 4 KiB
blocks).  A read that starts where the previous one ended and misses the window asks for
up to `size` bytes in one command: the request's part lands straight in its buffers, the
rest in the window, and the following reads are copied out of it.

Once a sequential read has filled the window, the read of the next window is due: it
goes out (NbdClient.send_read) without waiting for its reply, into the other half of the
buffer, as soon as blkback has answered that read (NbdImage.pump, or the next call),
so that the daemon reads it while the guest runs.  Its reply is taken in by pump()
between requests, in steps, because the daemon can only send as much as its socket
buffer holds (about 200 KiB) before someone reads.  The read that reaches past the
window takes what is left of that reply and the halves swap; a read that straddles the
two is copied from both.  No thread (one was slower: the GIL): blkback stays
single-threaded and the daemon is the one working ahead.  At most one read-ahead is out
at a time; before another goes out, the earlier one's reply is taken in.  Both halves
are one memfd, mapped for the socket to receive into, so that a read copied out of the
window is a single preadv() into all its buffers (the guest's pages), as a raw image's
read is.

The window starts small and doubles with each sequential window up to MAX_BYTES (like
Linux's block read-ahead), so scattered reads do not pay for data nobody asked for;
512 KiB measured better than 1 MiB once windows are read ahead (docs/storage.md).
Any write drops the window and makes a read-ahead in flight stale: its reply is still
received into its buffer (the stream stays in step) but never used, whether the server
ran it before or after the write (the export's only writer is its owner).  A failed
refill or read-ahead just drops it: the read is then done by itself, which alone
decides its result.  What is left of the cost is the daemon's own work (about 25 us of
CPU per 127-sector read: reading the file and sending it), which on two cores competes
with the guest and blkback.
"""
import mmap
import os

from pvboot.emu.diskimage import SECTOR_SIZE

MIN_BYTES = 128 << 10
MAX_BYTES = 512 << 10


def _split(parts, nbytes):
    """``parts`` cut after their first ``nbytes`` bytes: (head, tail, the views made)."""
    head, tail, made = [], [], []
    for part in parts:
        if nbytes >= len(part):
            head.append(part)
            nbytes -= len(part)
        elif nbytes:
            made += (part[:nbytes], part[nbytes:])
            head.append(made[-2])
            tail.append(made[-1])
            nbytes = 0
        else:
            tail.append(part)
    return head, tail, made


class ReadAhead:
    """The window of one image, sectors [start, start + sectors) at ``base`` in its
    memfd, and the read-ahead in flight into the other half:
    [ahead_start, ahead_start + ahead_sectors), NBD handle ``handle`` (None when none
    is out).  The halves live in a memfd, mapped for the socket to receive into, so
    that a read copied out of the window is one preadv() into all of its buffers
    (the guest's pages), as a raw image's read is."""

    def __init__(self, disk_sectors, min_bytes=MIN_BYTES, max_bytes=MAX_BYTES):
        self.disk_sectors = disk_sectors
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self._fd = self._map = None     # made on the first sequential read
        self.base, self.spare = 0, max_bytes
        self.start = self.sectors = 0
        self.size = min_bytes           # the next window's size (bytes)
        self.next_lba = None            # where the last read ended
        self.pending = None             # (start, sectors) of a refill in flight
        self.handle = None
        self.ahead_start = self.ahead_sectors = 0
        self.stale = False              # a write came after the read-ahead went out
        # Counters (tests, docs/storage.md): reads copied out of the window or the
        # read-ahead, windows read together with a request, read-aheads sent, used
        # (a read was served from it) and dropped (failed, stale or never reached).
        self.hits = self.refills = 0
        self.sent = self.used = self.dropped = 0

    def _half(self, base, nbytes):
        """A writable view of ``nbytes`` at ``base`` in the memfd (made if need be)."""
        if self._fd is None:
            self._fd = os.memfd_create("pvboot-readahead", os.MFD_CLOEXEC)
            os.ftruncate(self._fd, 2 * self.max_bytes)
            self._map = mmap.mmap(self._fd, 2 * self.max_bytes)
        return memoryview(self._map)[base:base + nbytes]

    def _copy(self, pos, parts):
        """Bytes from ``pos`` in the memfd into ``parts``, in order (aliasing parts get
        the last ones)."""
        os.preadv(self._fd, parts, pos)

    def close(self):
        """Free the memfd (a read-ahead still in flight is the caller's to forget)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            try:
                self._map.close()
            except BufferError:         # a view is still out: the collector frees it
                pass
            self._map = None

    def hit(self, lba, parts, sectors):
        """Copy the read out of the window if it lies inside (True), else False."""
        offset = lba - self.start
        if offset < 0 or offset + sectors > self.sectors:
            return False
        self._copy(self.base + offset * SECTOR_SIZE, parts)
        self.hits += 1
        return True

    def sequential(self, lba, sectors):
        """Note a read; True if it starts where the previous one ended."""
        follows = lba == self.next_lba
        self.next_lba = lba + sectors
        if not follows:
            self.size = self.min_bytes
        return follows

    def refill(self, lba, sectors):
        """The buffer to read after sectors [lba, lba + sectors) in the same command (None
        when there is nothing to add); the window is empty until filled() is called."""
        extra = min(self.size // SECTOR_SIZE - sectors, self.disk_sectors - lba - sectors)
        if extra <= 0:
            return None
        self.sectors = 0
        self.pending = (lba + sectors, extra)
        self._grow()
        return self._half(self.base, extra * SECTOR_SIZE)

    def filled(self, ok):
        """The refill's command came back: the window holds it (ok) or nothing."""
        if ok and self.pending is not None:
            self.start, self.sectors = self.pending
            self.refills += 1
        self.pending = None

    # -- the read-ahead in flight ---------------------------------------------------
    def next_window(self):
        """(lba, buffer) of the read-ahead to send now: the sectors after the window, into
        the spare buffer; None when the window is empty, ends at the end of the disk,
        or a read-ahead is still out.  Call sent() with its handle."""
        start = self.start + self.sectors
        count = min(self.size // SECTOR_SIZE, self.disk_sectors - start)
        if not self.sectors or count <= 0 or self.handle is not None:
            return None
        self.ahead_start, self.ahead_sectors = start, count
        self._grow()
        return start, self._half(self.spare, count * SECTOR_SIZE)

    def went_out(self, handle):
        """The read-ahead next_window() described is in flight as ``handle``."""
        self.handle = handle
        self.stale = False
        self.sent += 1

    def holds(self, lba, sectors):
        """True if the read ends in the read-ahead in flight and starts in it or in the
        window right before it: take() serves it."""
        end = lba + sectors
        ahead_start = self.ahead_start
        if self.handle is None or self.stale or end <= ahead_start \
                or end > ahead_start + self.ahead_sectors:
            return False
        return lba >= (self.start if self.start + self.sectors == ahead_start else ahead_start)

    def take(self, lba, parts, sectors, ok):
        """The read-ahead's reply is in (``ok``: without error): copy the read (holds()
        was True) out of it and the window before it, and make it the window.  False,
        the read-ahead dropped, when it failed or went stale meanwhile."""
        self.handle = None
        if not ok or self.stale:
            self.dropped += 1
            return False
        head = (self.ahead_start - lba) * SECTOR_SIZE
        made = ()
        if head > 0:                     # the read begins in the current window
            first, parts, made = _split(parts, head)
            self._copy(self.base + (lba - self.start) * SECTOR_SIZE, first)
        self.base, self.spare = self.spare, self.base
        self.start, self.sectors = self.ahead_start, self.ahead_sectors
        self._copy(self.base + max(0, -head), parts)
        for view in made:
            view.release()
        self.hits += 1
        self.used += 1
        return True

    def settled(self):
        """The read-ahead's reply was taken in without being used."""
        self.handle = None
        self.dropped += 1

    def drop(self):
        """Forget the window and the read-ahead's data (a write went to the disk)."""
        self.sectors = 0
        self.next_lba = None
        self.stale = True

    def _grow(self):
        self.size = min(self.size * 2, self.max_bytes)
