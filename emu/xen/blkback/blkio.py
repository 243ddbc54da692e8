"""blkback's request side (Linux xen-blkback's blkback.c): one connected shared ring.

Each request is copied out of the ring before it is checked (no double fetch) and
checked like Linux's dispatch_rw_block_io: 1..11 segments (0 only for a flush),
first_sect <= last_sect <= 7, the range inside the disk without u64 overflow, no writes
to a read-only disk, every grant mappable (read-only for writes: the backend only reads
those pages; writable for reads).  A failed check answers BLKIF_RSP_ERROR for that
request only; WRITE_BARRIER, DISCARD, INDIRECT and unknown operations get
BLKIF_RSP_EOPNOTSUPP (none is advertised).  The segments of one request are
consecutive sectors, so they move in one vectored call of the storage (preadv/pwritev
for raw files, one NBD command for the other formats), straight between the granted
frames and the storage.  The requests found on the ring together are served as a
batch: reads of consecutive sectors (the requests of one INT 13h call) are merged
into one storage read, and an image that can (NbdImage.read_batch) has all the batch's
reads in flight at once; a write or flush waits for the reads before it, so the
storage sees them in ring order.  Grants are unmapped before the responses are pushed.
"""

import sys

from ..abi import (BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_READ,
                   BLKIF_OP_WRITE, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
                   BLKIF_SECTOR_SIZE, BLKIF_SECTORS_PER_PAGE, GNTST_okay)
from ..cdmedia import image_sectors
from ..ring import RingOverflow, spin_until

PROG = "blkback"
# How long the backend keeps looking at an empty ring before it sleeps on the event
# channel (adaptive polling: the next request of a transfer arrives within this).
SPIN_SECONDS = 200e-6
U64_MAX = (1 << 64) - 1
# Most bytes merged into one storage read (under NbdClient's MAX_REQUEST).
MAX_MERGED_BYTES = 4 << 20
_SEG_BASE = 5          # index of the first segment field in an unpacked blkif_request
# Most segment layouts of persistent grants kept checked and sliced (_prepare).
MAX_LAYOUTS = 256


def err(msg):
    """One line on stderr, the backend's only output channel."""
    sys.stderr.write("%s: %s\n" % (PROG, msg))
    sys.stderr.flush()


class _Transfer:
    """A checked read or write: its sectors, the views of its segments, the grants
    mapped for it alone, and (reads) the result entry its status goes into.

    A segment of a whole page is the frame's view itself (a persistent grant's stays
    mapped after the request); a segment of part of a page is a slice of it, made for
    this request and kept in ``slices`` to be released with it (or, once its layout
    is kept, BlkifRing's until release())."""

    __slots__ = ("sector", "sectors", "parts", "slices", "mapped", "result")

    def __init__(self, sector, sectors):
        self.sector = sector
        self.sectors = sectors
        self.parts = []
        self.slices = []
        self.mapped = []        # (gref, frame, writable)
        self.result = None

    def release(self, grants):
        """Drop the views and unmap this request's grants (idempotent)."""
        self.parts = []
        for view in self.slices:
            view.release()
        self.slices = []
        for gref, frame, writable in self.mapped:
            frame.release()
            grants.unmap_grant(gref, writable=writable)
        self.mapped = []


class BlkifRing:
    """A mapped ring, its bound event channel port and the grants it keeps mapped.

    ``image`` is the storage (sectors, read_into_parts, write_from_parts, flush), None
    for a CD drive without a disc;
    ``persistent_limit`` is None when the frontend does not reuse its grants, else the
    most grants kept mapped (more are mapped per request)."""

    def __init__(self, devid, ring, ring_ref, ring_page, port, *, grants, evtchn, image,
                 backend_domid, read_only, persistent_limit=None):
        self.devid = devid
        self.ring = ring
        self.ring_ref = ring_ref
        self.ring_page = ring_page
        self.port = port
        self.grants = grants
        self.evtchn = evtchn
        self.image = image
        self.backend_domid = backend_domid
        self.read_only = read_only
        self.halted = False
        self.notify_failed = False
        self.served = 0
        # Persistent grants: gref -> writable view of its frame, mapped until release().
        self.persistent = {} if persistent_limit is not None else None
        self.max_persistent = persistent_limit or 0
        # Segments (the request's gref, first, last fields) all on persistent grants ->
        # (their views, sectors): a frontend sends the same few layouts again and again
        # (its bounce page, a loader's buffer).  Their slices live until release().
        self._layouts = {}

    # ------------------------------------------------------------------ the ring

    def serve(self):
        """Answer every request on the ring, then arm req_event (final check)."""
        ring = self.ring
        if ring is None or self.halted:
            return
        try:
            while True:
                n = ring.unconsumed_requests()
                if not n:
                    # The frontend usually sends its next request within tens of
                    # microseconds: look at the ring a little longer before arming
                    # req_event and sleeping, which saves both of them a wake-up.
                    # Meanwhile the storage takes in what it has asked for ahead.
                    n = spin_until(ring.unconsumed_requests, SPIN_SECONDS,
                                   getattr(self.image, "pump", None))
                if not n:
                    if ring.final_check_for_requests():
                        continue
                    return
                results = self.dispatch_batch(ring.get_requests(n))
                for req_id, op, status in results:
                    ring.put_response(req_id, op, status)
                self.served += len(results)
                if ring.push_responses():
                    self._notify()
        except RingOverflow as e:
            self.halted = True
            err("vbd %d: %s. Halting ring processing" % (self.devid, e))

    def _notify(self):
        try:
            self.evtchn.send(self.backend_domid, self.port)
        except OSError as e:
            # The guest broke its own event channel state (it is guest RAM); the
            # responses are on the ring for a frontend that polls.
            if not self.notify_failed:
                self.notify_failed = True
                err("vbd %d: cannot notify the frontend: %s" % (self.devid, e))

    # ------------------------------------------------------------------ requests

    def dispatch_batch(self, requests):
        """Check and carry out ``requests`` (each one's fields, abi.request unpacked
        from its slot: a private copy; in ring order): an [id, op, status] for each, in
        the same order."""
        results = []
        reads = []              # _Transfer of checked, mapped reads not yet carried out
        try:
            for fields in requests:
                op = fields[0]
                req_id = fields[3]
                results.append([req_id, op, BLKIF_RSP_EOPNOTSUPP])
                if op == BLKIF_OP_READ or op == BLKIF_OP_WRITE or op == BLKIF_OP_FLUSH_DISKCACHE:
                    if op == BLKIF_OP_FLUSH_DISKCACHE and self.read_only:
                        continue                     # not advertised on this disk
                    status, transfer = self._prepare(op, fields)
                    if transfer is None:
                        results[-1][2] = status
                    elif op == BLKIF_OP_READ:
                        transfer.result = results[-1]
                        reads.append(transfer)
                    else:
                        self._read(reads)            # the storage sees ring order
                        reads = []
                        results[-1][2] = self._write(op, transfer)
            pending, reads = reads, []
            self._read(pending)                      # releases them
        finally:
            for transfer in reads:
                transfer.release(self.grants)
        return results

    def _prepare(self, op, fields):
        """The checks, then the grants mapped: (status, None) when the request ends here
        (an error, or a flush without data), else (None, its _Transfer)."""
        nseg = fields[1]
        if nseg == 0:
            if op != BLKIF_OP_FLUSH_DISKCACHE:
                return BLKIF_RSP_ERROR, None
            return self._flush(), None
        if nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST:
            return BLKIF_RSP_ERROR, None
        writing = op != BLKIF_OP_READ
        if writing and self.read_only:
            return BLKIF_RSP_ERROR, None
        sector = fields[4]
        layout_key = fields[_SEG_BASE:_SEG_BASE + 3 * nseg]
        layout = self._layouts.get(layout_key)
        if layout is not None:
            parts, nr_sects = layout
            end = sector + nr_sects
            if end > U64_MAX or end > image_sectors(self.image):
                return BLKIF_RSP_ERROR, None
            transfer = _Transfer(sector, nr_sects)
            transfer.parts = parts
            return None, transfer
        bases = range(_SEG_BASE, _SEG_BASE + 3 * nseg, 3)   # (gref, first, last) of each
        nr_sects = 0
        for base in bases:
            first, last = fields[base + 1], fields[base + 2]
            if last >= BLKIF_SECTORS_PER_PAGE or last < first:
                return BLKIF_RSP_ERROR, None
            nr_sects += last - first + 1
        end = sector + nr_sects
        if end > U64_MAX or end > image_sectors(self.image):
            return BLKIF_RSP_ERROR, None
        # Every segment checked: map the grants.
        transfer = _Transfer(sector, nr_sects)
        parts, persistent = transfer.parts, self.persistent
        for base in bases:
            gref, first, last = fields[base], fields[base + 1], fields[base + 2]
            frame = persistent.get(gref) if persistent is not None else None
            if frame is None:
                frame = self._map(gref, writing, transfer.mapped)
                if frame is None:
                    transfer.release(self.grants)
                    return BLKIF_RSP_ERROR, None
            if first == 0 and last == BLKIF_SECTORS_PER_PAGE - 1:
                parts.append(frame)
            else:
                view = frame[first * BLKIF_SECTOR_SIZE:(last + 1) * BLKIF_SECTOR_SIZE]
                transfer.slices.append(view)
                parts.append(view)
        if not transfer.mapped and persistent is not None and len(self._layouts) < MAX_LAYOUTS:
            # All persistent: keep the layout (its slices are the layout's from now on;
            # nothing changes the views a persistent grant gives until release()).
            self._layouts[layout_key] = (parts, nr_sects)
            transfer.slices = []
        return None, transfer

    def _write(self, op, transfer):
        """Carry out a checked write (or flush with data) and release its grants."""
        status = BLKIF_RSP_OKAY
        try:
            self.image.write_from_parts(transfer.sector, transfer.parts)
            if op == BLKIF_OP_FLUSH_DISKCACHE:
                status = self._flush()
        except Exception as e:     # OSError, DiskImageError, NbdError, ValueError
            self._io_error(transfer.sector, e)
            status = BLKIF_RSP_ERROR
        finally:
            transfer.release(self.grants)
        return status

    def _read(self, transfers):
        """Carry out checked reads: runs of consecutive sectors merged into one storage
        read each, all of them at once where the image pipelines.  A merged read that
        fails is redone request by request, so only a failing request answers
        BLKIF_RSP_ERROR.  Sets each transfer's status and releases its grants."""
        runs = []
        for transfer in transfers:
            last = runs[-1] if runs else None
            if last is not None and last[-1].sector + last[-1].sectors == transfer.sector \
                    and (transfer.sector + transfer.sectors - last[0].sector) \
                    * BLKIF_SECTOR_SIZE <= MAX_MERGED_BYTES:
                last.append(transfer)
            else:
                runs.append([transfer])
        try:
            failed = []
            errors = self._read_batch([(run[0].sector, run[0].parts if len(run) == 1
                                        else [p for t in run for p in t.parts])
                                       for run in runs])
            for run, error in zip(runs, errors):
                if error is None:
                    for transfer in run:
                        transfer.result[2] = BLKIF_RSP_OKAY
                elif len(run) == 1:
                    self._io_error(run[0].sector, error)
                    run[0].result[2] = BLKIF_RSP_ERROR
                else:
                    failed.extend(run)
            if failed:
                errors = self._read_batch([(t.sector, t.parts) for t in failed])
                for transfer, error in zip(failed, errors):
                    if error is not None:
                        self._io_error(transfer.sector, error)
                    transfer.result[2] = BLKIF_RSP_OKAY if error is None else BLKIF_RSP_ERROR
        finally:
            for transfer in transfers:
                transfer.release(self.grants)

    def _read_batch(self, reads):
        """[(lba, parts)] read: one error (or None) per read; never raises for I/O."""
        try:
            return self.image.read_batch(reads)
        except Exception as e:             # NbdImage: the connection broke, every read failed
            return [e] * len(reads)

    def _io_error(self, sector, e):
        err("vbd %d: I/O error at sector %d: %s" % (self.devid, sector, e))

    def _map(self, gref, writing, mapped):
        """The frame behind ``gref``, which has no persistent mapping (_prepare looks
        those up): a new persistent mapping while there is room, else one for this
        request only (appended to ``mapped``); None if the grant cannot be mapped."""
        grants, domid, persistent = self.grants, self.backend_domid, self.persistent
        if persistent is not None and len(persistent) < self.max_persistent:
            # A persistent grant is mapped writable whatever the operation: the
            # frontend reuses it for reads and writes (blkif.h).
            st, frame = grants.map_grant(gref, domid, writable=True)
            if st == GNTST_okay:
                persistent[gref] = frame
                return frame
        # Reads fill guest pages (writable mappings); writes only read them.
        st, frame = grants.map_grant(gref, domid, writable=not writing)
        if st != GNTST_okay:
            return None
        mapped.append((gref, frame, not writing))
        return frame

    def _flush(self):
        try:
            self.image.flush()
        except OSError as e:
            err("vbd %d: flush failed: %s" % (self.devid, e))
            return BLKIF_RSP_ERROR
        return BLKIF_RSP_OKAY

    # ------------------------------------------------------------------ teardown

    def release(self):
        """Unmap the ring and every persistent grant, close our port (Linux
        xen_blkif_disconnect); the frontend can end those grants once we are Closed."""
        self.ring.release()
        self.ring = None
        try:
            self.ring_page.release()
        except BufferError:
            pass
        self.ring_page = None
        self.grants.unmap_grant(self.ring_ref, writable=True)
        for parts, _sectors in self._layouts.values():
            for view in parts:
                view.release()         # a persistent frame's own view too: released below
        self._layouts = {}
        if self.persistent is not None:
            for gref, view in self.persistent.items():
                view.release()
                self.grants.unmap_grant(gref, writable=True)
            self.persistent = None
        try:
            self.evtchn.close(self.backend_domid, self.port)
        except OSError:
            pass      # the guest may have scribbled over the page; nothing to undo
