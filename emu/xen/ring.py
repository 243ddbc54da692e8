"""Shared-ring access for the blkif ring page (io/ring.h), for both ends: FrontRing
(requests out, responses in) and BackRing (the reverse).

The index arithmetic is emu/xen/abi.py's, which tests check against the C headers;
here are the loads, stores and full barriers around it (why: docs/pv-block.md).  The
methods a transfer runs per request call those helpers directly, once each, and step
their private index with "& RING_IDX_MASK" (a u32): a Python call costs more than the
arithmetic, and both ends run these for every 4 KiB of a bounce-page read.
"""

import os
import struct
import threading
import time

from .abi import (RING_IDX_MASK, SRING_ENTRIES, SRING_REQ_EVENT, SRING_REQ_PROD,
                  SRING_RSP_EVENT, SRING_RSP_PROD, XEN_PAGE_SIZE, BlkifResponse, get_abi,
                  pack_request,
                  ring_entry_offset, ring_final_check_for_requests,
                  ring_final_check_for_responses, ring_free_requests, ring_idx,
                  ring_push_check_notify, ring_request_prod_overflow,
                  ring_response_prod_overflow, ring_unconsumed_requests,
                  ring_unconsumed_responses)

__all__ = ["FrontRing", "BackRing", "RingOverflow", "RingFull", "full_barrier", "spin_until"]

# u32 indexes into the header (the byte offsets of abi.py, checked against the headers)
_REQ_PROD, _REQ_EVENT = SRING_REQ_PROD // 4, SRING_REQ_EVENT // 4
_RSP_PROD, _RSP_EVENT = SRING_RSP_PROD // 4, SRING_RSP_EVENT // 4

_fence_lock = threading.Lock()
# id and sector_number, adjacent in both blkif layouts: written with one pack_into.
_ID_SECTOR = struct.Struct("<QQ")


def full_barrier():
    """xen_mb(): a locked instruction (the Lock's atomic acquire) orders stores before
    later loads, which plain Python loads and stores do not guarantee on x86."""
    _fence_lock.acquire()
    _fence_lock.release()


def spin_until(poll, seconds, idle=None):
    """Call poll() until it returns something true or `seconds` have passed; its last
    result.  Both ends look at the ring this briefly before sleeping on the event
    channel: an answer usually comes within tens of microseconds (adaptive polling).
    ``idle``, if given, is called between the polls while it returns true (work that
    can be done while waiting, in small steps)."""
    deadline = time.perf_counter() + seconds
    yield_cpu = os.sched_yield
    while time.perf_counter() < deadline:
        got = poll()
        if got:
            return got
        if idle is None:
            # Free at once when this core has nothing else to run; when the peer
            # shares it (a busy machine), the peer runs now instead of when the
            # scheduler's slice ends, which would cost both ends milliseconds.
            yield_cpu()
        elif not idle():
            idle = None
    return poll()


class RingOverflow(Exception):
    """The peer's producer index ran past the ring: the ring must not be served."""


class RingFull(Exception):
    """No free request slot: wait for responses first."""


class _Ring:
    def __init__(self, page, abi):
        if len(page) != XEN_PAGE_SIZE or page.readonly:
            raise ValueError("a shared ring is one writable %d-byte page" % XEN_PAGE_SIZE)
        self.abi = get_abi(abi)
        self.page = page
        self.nr_ents = self.abi.ring_size
        self.entry_size = self.abi.entry_size
        self._request = self.abi.request
        self._response = self.abi.response
        self._idx = page[:16].cast("I")
        offsets = self.abi.request_offsets
        if offsets["sector_number"] != offsets["id"] + 8:
            raise ValueError("blkif layout %s: sector_number does not follow id" % self.abi.name)
        self._id_offset = offsets["id"]

    def entry_offset(self, index):
        """Byte offset in the page of slot ``index`` (free-running, taken modulo the size)."""
        return ring_entry_offset(index, self.entry_size, self.nr_ents)

    def read_entry(self, index, length=None):
        """A private copy of slot ``index`` (``length`` bytes, default one entry)."""
        off = self.entry_offset(index)
        return bytes(self.page[off:off + (length or self.entry_size)])

    def write_entry(self, index, data):
        off = self.entry_offset(index)
        if len(data) > self.entry_size:
            raise ValueError("a %d-byte entry does not fit a %d-byte slot"
                             % (len(data), self.entry_size))
        self.page[off:off + len(data)] = data

    # the shared indexes, for tests and diagnostics
    @property
    def req_prod(self):
        return self._idx[_REQ_PROD]

    @property
    def req_event(self):
        return self._idx[_REQ_EVENT]

    @property
    def rsp_prod(self):
        return self._idx[_RSP_PROD]

    @property
    def rsp_event(self):
        return self._idx[_RSP_EVENT]

    def release(self):
        try:
            self._idx.release()
        except BufferError:
            pass


class FrontRing(_Ring):
    """The frontend's end.  ``init=True`` is SHARED_RING_INIT + FRONT_RING_INIT (a new
    ring); ``init=False`` attaches to a live one (FRONT_RING_ATTACH)."""

    def __init__(self, page, abi, init=True):
        super().__init__(page, abi)
        if init:
            page[:SRING_ENTRIES] = bytes(SRING_ENTRIES)
            self._idx[_REQ_EVENT] = 1
            self._idx[_RSP_EVENT] = 1
            self.req_prod_pvt = 0
            self.rsp_cons = 0
        else:
            self.req_prod_pvt = self._idx[_REQ_PROD]
            self.rsp_cons = self._idx[_RSP_PROD]

    def free_requests(self):
        return ring_free_requests(self.req_prod_pvt, self.rsp_cons, self.nr_ents)

    def full(self):
        return self.free_requests() == 0

    def put_request_bytes(self, raw):
        """Queue a packed request (not yet visible to the backend: see push_requests).
        Tests use it to queue malformed requests; no checks beyond the slot size."""
        self.write_entry(self.req_prod_pvt, raw)
        self.req_prod_pvt = ring_idx(self.req_prod_pvt + 1)

    def put_request(self, id, operation, sector_number, segments, nr_segments=None, handle=0):
        """Queue one blkif request; ``segments`` are (gref, first_sect, last_sect)."""
        if self.full():
            raise RingFull("all %d request slots are in use" % self.nr_ents)
        self.put_request_bytes(pack_request(self.abi, id, operation, nr_segments, handle,
                                            sector_number, segments))

    def put_request_from(self, template, id, sector_number):
        """put_request for a request packed beforehand (abi.pack_request, any id and
        sector): only id and sector_number are filled in here.  A frontend that sends
        the same segments again and again (persistent grants) packs them once."""
        req_prod_pvt = self.req_prod_pvt
        if not ring_free_requests(req_prod_pvt, self.rsp_cons, self.nr_ents):
            raise RingFull("all %d request slots are in use" % self.nr_ents)
        off = ring_entry_offset(req_prod_pvt, self.entry_size, self.nr_ents)
        page = self.page
        page[off:off + len(template)] = template
        _ID_SECTOR.pack_into(page, off + self._id_offset, id, sector_number)
        self.req_prod_pvt = (req_prod_pvt + 1) & RING_IDX_MASK

    def push_requests(self):
        """RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: publish; True if the backend must be
        notified (it armed req_event inside the range just published)."""
        old = self._idx[_REQ_PROD]
        new = self.req_prod_pvt
        self._idx[_REQ_PROD] = new       # entries were written before this store
        full_barrier()
        return ring_push_check_notify(new, old, self._idx[_REQ_EVENT])

    def unconsumed_responses(self):
        """Responses to consume; RingOverflow if the backend's rsp_prod ran past the
        ring (the body of _rsp_prod, written out: this is what a waiting end polls)."""
        rsp_prod = self._idx[_RSP_PROD]
        if ring_response_prod_overflow(rsp_prod, self.rsp_cons, self.nr_ents):
            self._rsp_prod()        # raises
        return ring_unconsumed_responses(rsp_prod, self.rsp_cons)

    def _rsp_prod(self):
        """The backend's rsp_prod; RingOverflow if it ran past the ring."""
        rsp_prod = self._idx[_RSP_PROD]
        if ring_response_prod_overflow(rsp_prod, self.rsp_cons, self.nr_ents):
            raise RingOverflow("backend response producer %d is %d past our consumer %d"
                               % (rsp_prod, ring_idx(rsp_prod - self.rsp_cons), self.rsp_cons))
        return rsp_prod

    def _arm_rsp_event(self, value):
        self._idx[_RSP_EVENT] = value
        full_barrier()

    def get_response(self):
        """Consume the next response: a BlkifResponse (id, operation, status), or None."""
        if not self.unconsumed_responses():
            return None
        rsp_cons = self.rsp_cons
        # One unpack of the slot: the fields are read once (no double fetch).
        resp = BlkifResponse._make(self._response.unpack_from(
            self.page, ring_entry_offset(rsp_cons, self.entry_size, self.nr_ents)))
        self.rsp_cons = (rsp_cons + 1) & RING_IDX_MASK
        return resp

    def final_check_for_responses(self):
        """RING_FINAL_CHECK_FOR_RESPONSES: True if responses are waiting; otherwise arm
        rsp_event so the backend notifies for the next one, then look once more."""
        return ring_final_check_for_responses(self._rsp_prod, self._arm_rsp_event, self.rsp_cons)


class BackRing(_Ring):
    """The backend's end, attached to a ring the frontend initialised (BACK_RING_ATTACH
    at the current rsp_prod, as Linux blkback's xen_blkif_map does).  Raises
    RingOverflow if the frontend already claims more requests than slots."""

    def __init__(self, page, abi):
        super().__init__(page, abi)
        rsp_prod = self._idx[_RSP_PROD]
        req_prod = self._idx[_REQ_PROD]
        if ring_request_prod_overflow(req_prod, rsp_prod, self.nr_ents):
            raise RingOverflow("frontend ring has req_prod %d and rsp_prod %d: more than %d "
                               "requests outstanding" % (req_prod, rsp_prod, self.nr_ents))
        self.req_cons = rsp_prod
        self.rsp_prod_pvt = rsp_prod

    def unconsumed_requests(self):
        """Requests to consume (never more than free response slots).  A producer run
        past the ring raises RingOverflow (RING_REQUEST_PROD_OVERFLOW); the body of
        _req_prod is written out: this is what a waiting backend polls."""
        req_prod = self._idx[_REQ_PROD]
        if ring_request_prod_overflow(req_prod, self.rsp_prod_pvt, self.nr_ents):
            self._req_prod()        # raises
        return ring_unconsumed_requests(req_prod, self.req_cons, self.rsp_prod_pvt,
                                        self.nr_ents)

    def _req_prod(self):
        """The frontend's req_prod; RingOverflow if it ran past the ring."""
        req_prod = self._idx[_REQ_PROD]
        if ring_request_prod_overflow(req_prod, self.rsp_prod_pvt, self.nr_ents):
            raise RingOverflow(
                "Frontend provided bogus ring requests (%d - %d = %d)"
                % (req_prod, self.rsp_prod_pvt, ring_idx(req_prod - self.rsp_prod_pvt)))
        return req_prod

    def _arm_req_event(self, value):
        self._idx[_REQ_EVENT] = value
        full_barrier()

    def get_request(self):
        """Consume the next request slot: a private copy of its bytes (one request)."""
        raw = self.read_entry(self.req_cons, self.abi.request_size)
        self.req_cons = ring_idx(self.req_cons + 1)
        return raw

    def get_requests(self, n):
        """Consume the next ``n`` request slots (unconsumed_requests() of them): each
        request's fields, abi.request unpacked from the slot in one go, i.e. a private
        copy the checks then look at (no double fetch)."""
        unpack_from, page = self._request.unpack_from, self.page
        entry_size, nr_ents, req_cons = self.entry_size, self.nr_ents, self.req_cons
        requests = [unpack_from(page, ring_entry_offset(req_cons + i, entry_size, nr_ents))
                    for i in range(n)]
        self.req_cons = (req_cons + n) & RING_IDX_MASK
        return requests

    def put_response(self, id, operation, status):
        """Queue a response (visible to the frontend after push_responses)."""
        rsp_prod_pvt = self.rsp_prod_pvt
        self._response.pack_into(self.page,
                                 ring_entry_offset(rsp_prod_pvt, self.entry_size, self.nr_ents),
                                 id, operation, status)
        self.rsp_prod_pvt = (rsp_prod_pvt + 1) & RING_IDX_MASK

    def push_responses(self):
        """RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: publish; True if the frontend must be
        notified."""
        old = self._idx[_RSP_PROD]
        new = self.rsp_prod_pvt
        self._idx[_RSP_PROD] = new
        full_barrier()
        return ring_push_check_notify(new, old, self._idx[_RSP_EVENT])

    def final_check_for_requests(self):
        """RING_FINAL_CHECK_FOR_REQUESTS: True if requests are waiting; otherwise arm
        req_event and look again (a request published meanwhile would not notify)."""
        return ring_final_check_for_requests(self._req_prod, self._arm_req_event, self.req_cons,
                                             self.rsp_prod_pvt, self.nr_ents)
