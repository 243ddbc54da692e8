"""The BIOS's Xen PV block frontend: SeaBIOS's 2011 prototype (`xen_process_op`), working.

Each transfer goes through one granted 4 KiB bounce page in requests of at most 8
sectors, or (path "direct") through grants of the caller's own RAM pages, persistent
when the backend offers it.  The firmware sees only GuestXen (xenstore, grants, event
channels, frames), never the image.  Design and reasons: docs/pv-block.md.
"""
import time

from pvboot.emu.xen.abi import (BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_READ, BLKIF_OP_WRITE,
                         BLKIF_RSP_OKAY, BLKIF_SECTORS_PER_PAGE, pack_request,
                         VDISK_READONLY, XEN_PAGE_SIZE, XenbusStateClosed, XenbusStateClosing,
                         XenbusStateConnected, XenbusStateInitialised, XenbusStateInitialising,
                         XenbusStateInitWait)
from pvboot.emu.xen.ring import FrontRing, spin_until
from pvboot.emu.xen.xsclient import XenstoreError
from pvboot.emu.hdgeometry import qemu_ide_geometry
from pvboot.firmware.xenblk_direct import OP_NAMES, DirectGrants
from pvboot.firmware.diskop import (CMD_FORMAT, CMD_ISREADY, CMD_READ, CMD_RESET, CMD_SEEK,
                                    CMD_VERIFY, CMD_WRITE, DISK_RET_ECONTROLLER, DISK_RET_EPARAM,
                                    DISK_RET_ESECTORNOTFOUND, DISK_RET_ETIMEOUT,
                                    DISK_RET_EWRITEPROTECT, DISK_RET_SUCCESS, DISK_SECTOR_SIZE)

# The BIOS is 32-bit firmware, as SeaBIOS is: announce the 32-bit blkif layout on purpose.
PROTOCOL = "x86_32-abi"
SECTORS_PER_CHUNK = BLKIF_SECTORS_PER_PAGE      # one bounce page: 8 sectors
CDROM_SECTOR_SIZE = 2048
PATHS = ("bounce", "direct")
# How long the frontend watches the ring for a response before it sleeps.
SPIN_SECONDS = 200e-6

# Commands a PV disk has nothing to do for (SeaBIOS default_process_op).
_NO_OP_COMMANDS = frozenset({CMD_RESET, CMD_ISREADY, CMD_VERIFY, CMD_SEEK, CMD_FORMAT})


class XenBlkError(Exception):
    """A PV disk could not be connected (one line for the user)."""


def discover_vbds(xen):
    """The vbd device ids the toolstack gave this guest, in order (xvda first)."""
    try:
        names = xen.xs.directory(f"/local/domain/{xen.domid}/device/vbd")
    except XenstoreError:
        return []
    return sorted(int(name) for name in names if name.isdigit())


class XenBlkFront(DirectGrants):
    """One PV disk: ring, bounce page, event channel, and the INT 13h driver interface
    (`sectors`, `read_only`, `geometry()`, `process_op(op)`)."""

    protocol = PROTOCOL

    def __init__(self, bios, xen, devid, timeout, path="bounce"):
        if path not in PATHS:
            raise ValueError(f"unknown PV read path {path!r} (use {' or '.join(PATHS)})")
        self.path = path
        self.bios = bios
        self.mem = bios.mem
        self.xen = xen
        self.devid = devid
        self.timeout = timeout
        self.frontend_path = f"/local/domain/{xen.domid}/device/vbd/{devid}"
        self.backend_path = None
        self.ring = self.ring_ref = self.bounce_ref = self.port = None
        self.sectors = 0
        self.read_only = False
        self._next_id = 0
        self._abandoned = set()      # ids of requests whose response never came in time
        self.persistent = None       # guest frame -> gref, when grants are persistent
        self.max_persistent = 0
        self._layouts = {}           # (address, sectors, op) -> packed requests (_direct_layout)
        self._trace_on = "disk" in bios.config.trace
        self.counters = bios.counters
        for key in ("ring_requests", "ring_responses", "notifications", "grant_ops",
                    "bytes_copied"):
            self.counters.setdefault(key, 0)

    # -- xenbus handshake ----------------------------------------------------------------
    def connect(self):
        """Initialising -> (backend InitWait) -> Initialised -> (backend Connected) ->
        Connected, all waits bounded by self.timeout."""
        xs = self.xen.xs
        try:
            self.backend_path, backend_id = xs.read_many(
                [self.frontend_path + "/backend", self.frontend_path + "/backend-id"])
            backend_id = int("0" if backend_id is None else backend_id)
        except (XenstoreError, ValueError) as exc:
            raise XenBlkError(f"vbd {self.devid}: no usable backend entry ({exc})") from None
        if not self.backend_path:
            raise XenBlkError(f"vbd {self.devid}: no backend in xenstore")
        token = f"xenblk-{self.devid}"
        xs.watch(self.backend_path + "/state", token)
        try:
            self._wait_backend(XenbusStateInitWait, "InitWait")
            # Both paths reuse their grants (the bounce page is one for all requests),
            # so both can let the backend keep them mapped.
            if xs.read(self.backend_path + "/feature-persistent", "0") == "1":
                self.persistent = {}
            self._offer_ring(backend_id)
            self._wait_backend(XenbusStateConnected, "Connected")
            sectors, sector_size, info, device_type = xs.read_many(
                [self.backend_path + "/sectors", self.backend_path + "/sector-size",
                 self.backend_path + "/info", self.frontend_path + "/device-type"])
            self.sectors = int(sectors)
            sector_size = int("512" if sector_size is None else sector_size)
            info = int("0" if info is None else info)
            # A CD says 2048 (blkif.h); its ring sectors are 512-byte units all the same.
            self.device_type = "disk" if device_type is None else device_type
            if sector_size != DISK_SECTOR_SIZE and not (
                    self.device_type == "cdrom" and sector_size == CDROM_SECTOR_SIZE):
                raise XenBlkError(f"vbd {self.devid}: sector-size {sector_size} is not supported")
            self.info = info
            self.read_only = bool(info & VDISK_READONLY)
            xs.write(self.frontend_path + "/state", str(XenbusStateConnected))
        finally:
            xs.unwatch(self.backend_path + "/state", token)
        self.backend_id = backend_id
        self.trace(f"xenblk: vbd {self.devid} connected ({self.path}): {self.sectors} sectors, "
                   f"ring-ref {self.ring_ref}, bounce gref {self.bounce_ref}, port {self.port}, "
                   f"{PROTOCOL}{', read-only' if self.read_only else ''}"
                   f"{', persistent grants' if self.persistent is not None else ''}")

    def _backend_state(self):
        try:
            return int(self.xen.xs.read(self.backend_path + "/state", "0"))
        except (XenstoreError, ValueError):
            return 0

    def _wait_backend(self, state, name):
        try:
            self.xen.xs.wait_for(lambda: self._backend_state() == state, self.timeout,
                                 f"backend {name}")
        except TimeoutError:
            raise XenBlkError(f"vbd {self.devid}: backend did not reach {name} within "
                              f"{self.timeout:g} s (state {self._backend_state()})") from None

    def _offer_ring(self, backend_id):
        xen = self.xen
        ring_frame = xen.alloc_frame()
        bounce_frame = xen.alloc_frame()
        self.ring = FrontRing(self.mem.view(ring_frame * XEN_PAGE_SIZE, XEN_PAGE_SIZE), PROTOCOL)
        self.bounce_page = self.mem.view(bounce_frame * XEN_PAGE_SIZE, XEN_PAGE_SIZE)
        self.bounce_page[:] = bytes(XEN_PAGE_SIZE)
        self.ring_ref = xen.gnttab.grant(backend_id, ring_frame, False)
        # Writable: the backend writes read data into it.
        self.bounce_ref = xen.gnttab.grant(backend_id, bounce_frame, False)
        self.counters["grant_ops"] += 2
        self.port = xen.evtchn.alloc_unbound(xen.domid, backend_id)
        # Every bounce request is one segment, sectors 0..n-1 of the bounce page: packed
        # once per (operation, n), id and sector filled in per request (put_request_from).
        self._bounce_requests = {
            (operation, n): pack_request(PROTOCOL, 0, operation, None, 0, 0,
                                         [(self.bounce_ref, 0, n - 1)])
            for operation in (BLKIF_OP_READ, BLKIF_OP_WRITE)
            for n in range(1, SECTORS_PER_CHUNK + 1)}
        self.max_persistent = self.ring.nr_ents * BLKIF_MAX_SEGMENTS_PER_REQUEST
        nodes = [("ring-ref", str(self.ring_ref)), ("event-channel", str(self.port)),
                 ("protocol", PROTOCOL)]
        if self.persistent is not None:
            nodes.append(("feature-persistent", "1"))
        nodes.append(("state", str(XenbusStateInitialised)))
        for t in xen.xs.transactions():
            with t:
                t.update_many([("write", self.frontend_path + "/" + key, value)
                               for key, value in nodes])

    def abandon(self):
        """After a failed connect(): take back whatever was offered (grants, channel) and
        say Closed, so that a backend coming up late closes too instead of serving a
        ring the firmware no longer uses."""
        xen = self.xen
        if self.ring is not None:
            for ref in (self.ring_ref, self.bounce_ref, *(self.persistent or {}).values()):
                if ref is not None and xen.gnttab.end_and_release(ref):
                    self.counters["grant_ops"] += 1
            self.persistent = None
            self._layouts.clear()
            if self.port is not None:
                xen.evtchn.close(xen.domid, self.port)
            self.ring.release()
            self.ring = None
        try:
            xen.xs.write(self.frontend_path + "/state", str(XenbusStateClosed))
        except XenstoreError:
            pass

    def disconnect(self):
        """The shutdown SeaBIOS's prototype lacked: Closing, wait for Closed, end the
        grants (the backend must have unmapped them), close the channel, Initialising.
        Returns a list of problems (empty when clean)."""
        if self.ring is None:
            return []
        xs, xen = self.xen.xs, self.xen
        problems = []
        token = f"xenblk-close-{self.devid}"
        try:
            xs.watch(self.backend_path + "/state", token)
            xs.write(self.frontend_path + "/state", str(XenbusStateClosing))
            try:
                self._wait_backend(XenbusStateClosed, "Closed")
            except XenBlkError as exc:
                problems.append(str(exc))
            xs.unwatch(self.backend_path + "/state", token)
        except XenstoreError as exc:
            problems.append(f"vbd {self.devid}: xenstore: {exc}")
        grants = [("ring", self.ring_ref), ("bounce page", self.bounce_ref)]
        grants += [(f"page {frame:#x}", ref) for frame, ref in (self.persistent or {}).items()]
        for name, ref in grants:
            if xen.gnttab.end_and_release(ref):
                self.counters["grant_ops"] += 1
            else:
                problems.append(f"vbd {self.devid}: backend still maps the {name} (gref {ref})")
        self.persistent = None
        self._layouts.clear()
        xen.evtchn.close(xen.domid, self.port)
        try:
            xs.update_many([("rm", self.frontend_path + "/" + key) for key in
                            ("ring-ref", "event-channel", "protocol", "feature-persistent")]
                           + [("write", self.frontend_path + "/state",
                               str(XenbusStateInitialising))])
        except XenstoreError as exc:
            problems.append(f"vbd {self.devid}: xenstore: {exc}")
        self.ring.release()
        self.ring = None
        return problems

    # -- the driver interface ------------------------------------------------------------
    def geometry(self):
        """Physical CHS as an IDE disk of this size would report it, so CHS calls see the
        same geometry on every read path (the MBR's partition table can hint it)."""
        boot_sector = None
        if self._transfer(BLKIF_OP_READ, 0, 1) == DISK_RET_SUCCESS:
            boot_sector = bytes(self.bounce_page[:DISK_SECTOR_SIZE])
        return qemu_ide_geometry(self.sectors, boot_sector)

    def process_op(self, op):
        """xen_process_op: one DiskOp; returns a DISK_RET_* status, op.count = sectors done."""
        command = op.command
        if command == CMD_READ:
            if self.path == "direct" and self._can_grant_directly(op):
                return self._direct(op, BLKIF_OP_READ)
            return self._read(op)
        if command == CMD_WRITE:
            if self.path == "direct" and self._can_grant_directly(op):
                return self._direct(op, BLKIF_OP_WRITE)
            return self._write(op)
        if command in _NO_OP_COMMANDS:
            return DISK_RET_SUCCESS
        return DISK_RET_EPARAM

    def _chunks(self, op):
        """(lba, guest address, sectors) of each bounce-page-sized piece of `op`."""
        lba, addr, remaining = op.lba, op.buf_addr, op.count
        while remaining:
            n = min(remaining, SECTORS_PER_CHUNK)
            yield lba, addr, n
            lba += n
            addr += n * DISK_SECTOR_SIZE
            remaining -= n

    def _read(self, op):
        mem, bounce_page = self.mem, self.bounce_page
        lba, addr, count = op.lba, op.buf_addr, op.count
        # A buffer all in RAM (the usual case) gets each chunk copied straight in, and
        # its translated code dropped once for the whole call: the guest runs no code
        # until the call returns, and one invalidation costs as much as a chunk's copy.
        in_ram = mem.is_writable_ram(addr, count * DISK_SECTOR_SIZE)
        buf, done, status = mem.buf, 0, DISK_RET_SUCCESS
        while done < count:
            n = min(count - done, SECTORS_PER_CHUNK)
            status = self._transfer(BLKIF_OP_READ, lba + done, n)
            if status:
                break
            nbytes = n * DISK_SECTOR_SIZE
            data = bounce_page if nbytes == XEN_PAGE_SIZE else bounce_page[:nbytes]
            if in_ram:
                buf[addr:addr + nbytes] = data
            else:
                mem.dma_write(addr, data)
            addr += nbytes
            done += n
        copied = done * DISK_SECTOR_SIZE
        if in_ram and copied:
            mem.invalidate(op.buf_addr, copied)
        self.counters["bytes_copied"] += copied
        if status:
            op.count = done
        return status

    def _write(self, op):
        if self.read_only:
            op.count = 0
            return DISK_RET_EWRITEPROTECT
        bounce_page, done = self.bounce_page, 0
        for lba, addr, n in self._chunks(op):
            nbytes = n * DISK_SECTOR_SIZE
            bounce_page[:nbytes] = self.mem.dma_read(addr, nbytes)
            self.counters["bytes_copied"] += nbytes
            status = self._transfer(BLKIF_OP_WRITE, lba, n)
            # The page is shared with the backend: leave no guest data in it.
            bounce_page[:nbytes] = bytes(nbytes)
            if status:
                op.count = done
                return status
            done += n
        return DISK_RET_SUCCESS

    # -- the ring ------------------------------------------------------------------------
    def _transfer(self, operation, sector, count):
        """One request through the bounce page (sectors 0..count-1) and its response."""
        self._next_id = request_id = (self._next_id + 1) & 0xFFFFFFFF
        ring, counters = self.ring, self.counters
        started = time.monotonic()
        ring.put_request_from(self._bounce_requests[operation, count], request_id, sector)
        counters["ring_requests"] += 1
        if ring.push_requests():
            self.xen.evtchn.send(self.xen.domid, self.port)
            counters["notifications"] += 1
        if self._trace_on:
            self.trace(f"ring: req id {request_id} op {OP_NAMES[operation]} sector {sector} "
                       f"segs 1 grefs [{self.bounce_ref}] sects 0-{count - 1}")
        # _await_responses for one request, without its set and dict.
        while True:
            response = ring.get_response()
            if response is None:
                if self._wait_for_responses(started, (request_id,)):
                    continue
                return DISK_RET_ETIMEOUT
            if response.id == request_id:
                counters["ring_responses"] += 1
                if self._trace_on:
                    self._trace_response(response, started)
                return self._check_response(response, request_id, operation)
            self._abandoned.discard(response.id)

    def _check_response(self, response, request_id, operation):
        """The INT 13h status for one request's response (None: it never came)."""
        if response is None:
            return DISK_RET_ETIMEOUT
        if response.operation != operation:
            return DISK_RET_ECONTROLLER
        if response.status != BLKIF_RSP_OKAY:
            return DISK_RET_EWRITEPROTECT if (operation == BLKIF_OP_WRITE and self.read_only) \
                else DISK_RET_ESECTORNOTFOUND
        return DISK_RET_SUCCESS

    def _await_responses(self, request_ids, started):
        """{id: response} for the requests in `request_ids`, waiting at most
        self.timeout from `started`; those missing are given up on (a late answer to
        one of them is skipped when it comes)."""
        ring = self.ring
        pending, responses = set(request_ids), {}
        while pending:
            response = ring.get_response()
            if response is not None:
                if response.id in pending:
                    pending.discard(response.id)
                    responses[response.id] = response
                    self.counters["ring_responses"] += 1
                    if self._trace_on:
                        self._trace_response(response, started)
                else:
                    self._abandoned.discard(response.id)
                continue
            if not self._wait_for_responses(started, pending):
                break
        return responses

    def _wait_for_responses(self, started, pending):
        """Wait until the ring may hold a response: False (the ids in `pending` given
        up on) once self.timeout from `started` has passed."""
        ring = self.ring
        # A response usually comes within tens of microseconds: look at the ring a
        # little before sleeping on the event channel (adaptive polling).
        if spin_until(ring.unconsumed_responses, SPIN_SECONDS):
            return True
        if ring.final_check_for_responses():
            return True
        remaining = started + self.timeout - time.monotonic()
        if remaining <= 0:
            self._abandoned.update(pending)
            if self._trace_on:
                self.trace(f"ring: ids {sorted(pending)} TIMEOUT after {self.timeout:g} s")
            return False
        self.xen.evtchn.wait(self.xen.domid, remaining, ports=(self.port,))
        return True

    def _trace_response(self, response, started):
        self.trace(f"ring: rsp id {response.id} op "
                   f"{OP_NAMES.get(response.operation, response.operation)} "
                   f"status {response.status} ({(time.monotonic() - started) * 1e6:.0f} us)")

    def trace(self, line):
        if self._trace_on:
            self.bios.trace(f"[{self.bios.clock.now():10.6f}] {line}")


