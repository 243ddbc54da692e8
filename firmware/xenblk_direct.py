"""The PV block frontend's direct path (`--pv-path direct`): the caller's own RAM pages
granted to the backend, persistent grants when it offers them, one segment per page
touched and up to 11 a request, a ring's worth of requests in flight at once.

A part of XenBlkFront (firmware/xenblk.py), kept apart because it is the one data path
that bypasses the bounce page: it uses the frontend's ring, grant table, response wait
and counters.  Design and reasons: docs/pv-block.md.
"""
import time

from pvboot.emu.memmap import is_ram
from pvboot.emu.xen.abi import (BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_READ, BLKIF_OP_WRITE,
                                XEN_PAGE_SIZE, pack_request)
from pvboot.firmware.diskop import DISK_RET_EWRITEPROTECT, DISK_RET_SUCCESS, DISK_SECTOR_SIZE

# Transfer layouts kept for the direct path with persistent grants (_direct_layout).
MAX_LAYOUTS = 64
OP_NAMES = {BLKIF_OP_READ: "read", BLKIF_OP_WRITE: "write"}


class DirectGrants:
    """XenBlkFront's direct-grant methods (state: persistent, max_persistent, _layouts,
    set up by the frontend's connect)."""

    def _can_grant_directly(self, op):
        """The caller's pages can be granted if the buffer is sector aligned and all RAM
        (the VGA window is device memory, not RAM: it goes through the bounce page)."""
        return op.buf_addr % DISK_SECTOR_SIZE == 0 and \
            is_ram(op.buf_addr, op.count * DISK_SECTOR_SIZE, self.mem.size)

    @staticmethod
    def _direct_requests(lba, addr, count):
        """(sector, [(frame, first_sect, last_sect)], sectors) for each request of a
        transfer: one segment per guest page touched, at most 11 segments a request."""
        end = addr + count * DISK_SECTOR_SIZE
        sector, segments, sectors = lba, [], 0
        while addr < end:
            frame = addr // XEN_PAGE_SIZE
            page_end = min((frame + 1) * XEN_PAGE_SIZE, end)
            first = (addr % XEN_PAGE_SIZE) // DISK_SECTOR_SIZE
            last = ((page_end - 1) % XEN_PAGE_SIZE) // DISK_SECTOR_SIZE
            segments.append((frame, first, last))
            sectors += last - first + 1
            if len(segments) == BLKIF_MAX_SEGMENTS_PER_REQUEST:
                yield sector, segments, sectors
                sector, segments, sectors = sector + sectors, [], 0
            addr = page_end
        if segments:
            yield sector, segments, sectors

    def _direct(self, op, operation):
        """Grant the caller's pages and put every request of the call on the ring at once."""
        if operation == BLKIF_OP_WRITE and self.read_only:
            op.count = 0
            return DISK_RET_EWRITEPROTECT
        requests, grants = self._direct_layout(op.buf_addr, op.count, operation)
        done, status = 0, DISK_RET_SUCCESS
        for start in range(0, len(requests), self.ring.nr_ents):
            batch_done, status = self._direct_batch(requests[start:start + self.ring.nr_ents],
                                                    op.lba, operation)
            done += batch_done
            if status:
                break
        gnttab = self.xen.gnttab
        for ref in grants:
            if gnttab.end_and_release(ref):
                self.counters["grant_ops"] += 1
            else:
                # Still mapped (a request that timed out): the ref stays out of circulation.
                self.bios.warn(f"vbd {self.devid}: backend still maps gref {ref}")
        if operation == BLKIF_OP_READ:
            # The backend wrote guest frames behind Unicorn's back.
            self.mem.invalidate(op.buf_addr, op.count * DISK_SECTOR_SIZE)
        op.count = done
        return status

    def _direct_layout(self, addr, count, operation):
        """([(sector offset, sectors, packed request, segments)], grants to end after)
        for a transfer of `count` sectors at guest address `addr`.  Packed with id and
        sector 0 (FrontRing.put_request_from fills them in).  When every page has a
        persistent grant the layout is kept: a loader reading into the same buffer
        again and again packs its requests once."""
        key = (addr, count, operation)
        layout = self._layouts.get(key)
        if layout is not None:
            return layout, ()
        readonly = operation == BLKIF_OP_WRITE     # the backend only reads a write's pages
        requests, grants = [], []
        for offset, pieces, sectors in self._direct_requests(0, addr, count):
            segments = [(self._grant_frame(frame, readonly, grants), first, last)
                        for frame, first, last in pieces]
            requests.append((offset, sectors, pack_request(self.protocol, 0, operation, None, 0, 0, segments),
                             segments))
        if not grants:
            if len(self._layouts) >= MAX_LAYOUTS:
                self._layouts.clear()
            self._layouts[key] = requests
        return requests, grants

    def _direct_batch(self, batch, lba, operation):
        """One batch (at most a ring's worth): (sectors done in order, status)."""
        ring, order = self.ring, []
        started = time.monotonic()
        for offset, sectors, packed, segments in batch:
            self._next_id = request_id = (self._next_id + 1) & 0xFFFFFFFF
            ring.put_request_from(packed, request_id, lba + offset)
            order.append((request_id, sectors))
            if self._trace_on:
                self.trace(f"ring: req id {request_id} op {OP_NAMES[operation]} sector {lba + offset} "
                           f"segs {len(segments)} grefs {[r for r, _f, _l in segments]} "
                           f"sects {' '.join(f'{f}-{l}' for _r, f, l in segments)}")
        self.counters["ring_requests"] += len(batch)
        if ring.push_requests():
            self.xen.evtchn.send(self.xen.domid, self.port)
            self.counters["notifications"] += 1
        responses = self._await_responses({request_id for request_id, _n in order}, started)
        done = 0
        for request_id, sectors in order:
            status = self._check_response(responses.get(request_id), request_id, operation)
            if status:
                return done, status
            done += sectors
        return done, DISK_RET_SUCCESS

    def _grant_frame(self, frame, readonly, per_request):
        """The gref for guest `frame` in a request: its persistent grant (made on first
        use, while there is room), else a fresh one appended to `per_request`, to be
        ended when the responses are in."""
        persistent = self.persistent
        if persistent is not None:
            ref = persistent.get(frame)
            if ref is not None:
                return ref
            if len(persistent) < self.max_persistent:
                # Writable even for a write: the backend maps it once for everything.
                ref = persistent[frame] = self.xen.gnttab.grant(self.backend_id, frame, False)
                self.counters["grant_ops"] += 1
                return ref
        ref = self.xen.gnttab.grant(self.backend_id, frame, readonly)
        self.counters["grant_ops"] += 1
        per_request.append(ref)
        return ref
