"""Sequential read-ahead for disks behind the NBD export: the sectors after a sequential
read, fetched by the same NBD command, kept for the reads that follow.

Every NBD command costs a round trip through the storage daemon (its main loop, a worker
thread, two socket copies), which for a 64 KiB read costs several times the data;
INT 13h callers read sequentially in small pieces (one AH=42h call, or a loader's 4 KiB
blocks).  A read that starts where the previous one ended asks for up to `size` bytes:
the request's part lands straight in its buffers, the rest in this window, and the
following reads are copied out of it.  The window starts small and doubles with each
sequential refill up to MAX_BYTES (like Linux's block read-ahead), so scattered reads
do not pay for data nobody asked for.  Any write drops the window (the export's only
writer is its owner); so does a failed refill.
"""
from pvboot.emu.diskimage import SECTOR_SIZE

MIN_BYTES = 128 << 10
MAX_BYTES = 1 << 20


class ReadAhead:
    """The window of one image: sectors [start, start + sectors) in ``buffer``."""

    def __init__(self, disk_sectors, min_bytes=MIN_BYTES, max_bytes=MAX_BYTES):
        self.disk_sectors = disk_sectors
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.buffer = None              # allocated on the first sequential read
        self.start = self.sectors = 0
        self.size = min_bytes           # the next refill's size (bytes, request included)
        self.next_lba = None            # where the last read ended
        self.pending = None             # (start, sectors) of a refill in flight
        self.hits = self.refills = 0    # counters (tests, docs/storage.md)

    def hit(self, lba, parts, sectors):
        """Copy the read out of the window if it lies inside (True), else False."""
        offset = lba - self.start
        if offset < 0 or offset + sectors > self.sectors:
            return False
        pos = offset * SECTOR_SIZE
        window = memoryview(self.buffer)
        for part in parts:                  # in order: aliasing parts get the last one
            end = pos + len(part)
            part[:] = window[pos:end]
            pos = end
        window.release()
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
        if self.buffer is None:
            self.buffer = bytearray(self.max_bytes)
        self.sectors = 0
        self.pending = (lba + sectors, extra)
        self.size = min(self.size * 2, self.max_bytes)
        return memoryview(self.buffer)[:extra * SECTOR_SIZE]

    def filled(self, ok):
        """The refill's command came back: the window holds it (ok) or nothing."""
        if ok and self.pending is not None:
            self.start, self.sectors = self.pending
            self.refills += 1
        self.pending = None

    def drop(self):
        """Forget the window (a write went to the disk)."""
        self.sectors = 0
        self.next_lba = None
