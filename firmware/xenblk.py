"""The BIOS's Xen PV block frontend: SeaBIOS's 2011 prototype (`xen_process_op`), working.

Design, as the prototype sketched it: at POST each PV disk gets one granted ring page
and ONE granted 4 KiB bounce page; every INT 13h transfer is cut into chunks of at most
8 sectors (one page), each chunk is one blkif request with one segment (the bounce
page's grant ref, first_sect 0, last_sect n-1), pushed with the ring's notify check,
signalled on the event channel, and its response awaited (bounded) and checked (id,
operation, status).  Reads are then copied from the bounce page to the caller's buffer,
which may be anywhere in guest memory (also above 1 MiB); writes are copied in first
and the page is cleared afterwards.  The grants live as long as the connection; the
shutdown the prototype lacked (Closing -> Closed -> end grants -> close the channel ->
Initialising) runs at the end of a run.

This is where the firmware meets the platform: it sees xenstore (as domain 1), its
grant table, event channels and a frame allocator (emu.xen.platform.GuestXen), and
never the disk image.
"""
import time

from emu.xen.abi import (BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_OKAY, BLKIF_SECTORS_PER_PAGE,
                         VDISK_READONLY, XEN_PAGE_SIZE, XenbusStateClosed, XenbusStateClosing,
                         XenbusStateConnected, XenbusStateInitialised, XenbusStateInitialising,
                         XenbusStateInitWait)
from emu.xen.ring import FrontRing
from emu.xen.xsclient import XenstoreError
from firmware.block import (CMD_FORMAT, CMD_ISREADY, CMD_READ, CMD_RESET, CMD_SEEK, CMD_VERIFY,
                            CMD_WRITE, DISK_RET_ECONTROLLER, DISK_RET_EPARAM, DISK_RET_ETIMEOUT,
                            DISK_RET_EWRITEPROTECT, DISK_RET_SUCCESS,
                            DISK_SECTOR_SIZE, qemu_ide_geometry)

# The BIOS is 32-bit firmware, as SeaBIOS is: announce the 32-bit blkif layout on purpose.
PROTOCOL = "x86_32-abi"
SECTORS_PER_CHUNK = BLKIF_SECTORS_PER_PAGE      # one bounce page: 8 sectors
# The standard INT 13h "sector not found" status (SeaBIOS's list has no name for it):
# what a refused blkif request becomes.
DISK_RET_ESECTORNOTFOUND = 0x04

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


class XenBlkFront:
    """One PV disk: ring, bounce page, event channel, and the INT 13h driver interface
    (`sectors`, `read_only`, `geometry()`, `process_op(op)`)."""

    def __init__(self, bios, xen, devid, timeout):
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
            self.backend_path = xs.read(self.frontend_path + "/backend")
            backend_id = int(xs.read(self.frontend_path + "/backend-id", "0"))
        except (XenstoreError, ValueError) as exc:
            raise XenBlkError(f"vbd {self.devid}: no usable backend entry ({exc})") from None
        if not self.backend_path:
            raise XenBlkError(f"vbd {self.devid}: no backend in xenstore")
        token = f"xenblk-{self.devid}"
        xs.watch(self.backend_path + "/state", token)
        try:
            self._wait_backend(XenbusStateInitWait, "InitWait")
            self._offer_ring(backend_id)
            self._wait_backend(XenbusStateConnected, "Connected")
            self.sectors = int(xs.read(self.backend_path + "/sectors"))
            sector_size = int(xs.read(self.backend_path + "/sector-size", "512"))
            info = int(xs.read(self.backend_path + "/info", "0"))
            if sector_size != DISK_SECTOR_SIZE:
                raise XenBlkError(f"vbd {self.devid}: sector-size {sector_size} is not supported")
            self.read_only = bool(info & VDISK_READONLY)
            xs.write(self.frontend_path + "/state", str(XenbusStateConnected))
        finally:
            xs.unwatch(self.backend_path + "/state", token)
        self.trace(f"xenblk: vbd {self.devid} connected: {self.sectors} sectors, "
                   f"ring-ref {self.ring_ref}, bounce gref {self.bounce_ref}, port {self.port}, "
                   f"{PROTOCOL}{', read-only' if self.read_only else ''}")

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
        self._segments = {n: [(self.bounce_ref, 0, n - 1)] for n in range(1, SECTORS_PER_CHUNK + 1)}
        for t in xen.xs.transactions():
            with t:
                t.write(self.frontend_path + "/ring-ref", str(self.ring_ref))
                t.write(self.frontend_path + "/event-channel", str(self.port))
                t.write(self.frontend_path + "/protocol", PROTOCOL)
                t.write(self.frontend_path + "/state", str(XenbusStateInitialised))

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
        for name, ref in (("ring", self.ring_ref), ("bounce page", self.bounce_ref)):
            if xen.gnttab.end_and_release(ref):
                self.counters["grant_ops"] += 1
            else:
                problems.append(f"vbd {self.devid}: backend still maps the {name} (gref {ref})")
        xen.evtchn.close(xen.domid, self.port)
        try:
            for key in ("ring-ref", "event-channel", "protocol"):
                xs.rm(self.frontend_path + "/" + key)
            xs.write(self.frontend_path + "/state", str(XenbusStateInitialising))
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
            return self._read(op)
        if command == CMD_WRITE:
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
        bounce_page, done = self.bounce_page, 0
        for lba, addr, n in self._chunks(op):
            status = self._transfer(BLKIF_OP_READ, lba, n)
            if status:
                op.count = done
                return status
            nbytes = n * DISK_SECTOR_SIZE
            self.mem.dma_write(addr, bounce_page[:nbytes])
            self.counters["bytes_copied"] += nbytes
            done += n
        return DISK_RET_SUCCESS

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
        """One request (the bounce page, sectors 0..count-1) and its response."""
        self._next_id = request_id = (self._next_id + 1) & 0xFFFFFFFF
        ring = self.ring
        started = time.monotonic()
        ring.put_request(request_id, operation, sector, self._segments[count])
        self.counters["ring_requests"] += 1
        if ring.push_requests():
            self.xen.evtchn.send(self.xen.domid, self.port)
            self.counters["notifications"] += 1
        if self._trace_on:
            self.trace(f"ring: req id {request_id} op {_OP_NAMES[operation]} sector {sector} "
                       f"segs 1 grefs [{self.bounce_ref}] sects 0-{count - 1}")
        response = self._await_response(request_id, started)
        if response is None:
            self._abandoned.add(request_id)
            if self._trace_on:
                self.trace(f"ring: rsp id {request_id} TIMEOUT after {self.timeout:g} s")
            return DISK_RET_ETIMEOUT
        self.counters["ring_responses"] += 1
        if self._trace_on:
            self.trace(f"ring: rsp id {response.id} op {_OP_NAMES.get(response.operation, response.operation)} "
                       f"status {response.status} ({(time.monotonic() - started) * 1e6:.0f} us)")
        if response.id != request_id or response.operation != operation:
            return DISK_RET_ECONTROLLER
        if response.status != BLKIF_RSP_OKAY:
            return DISK_RET_EWRITEPROTECT if (operation == BLKIF_OP_WRITE and self.read_only) \
                else DISK_RET_ESECTORNOTFOUND
        return DISK_RET_SUCCESS

    def _await_response(self, request_id, started):
        """The response to `request_id`, or None after self.timeout.  Responses to
        earlier requests that timed out are stale and skipped."""
        ring, evtchn, domid, port = self.ring, self.xen.evtchn, self.xen.domid, self.port
        deadline = started + self.timeout
        while True:
            response = ring.get_response()
            if response is not None:
                if response.id in self._abandoned:
                    self._abandoned.discard(response.id)   # a late answer we gave up on
                    continue
                return response
            if ring.final_check_for_responses():
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            evtchn.wait(domid, remaining, ports=(port,))

    def trace(self, line):
        if self._trace_on:
            self.bios.trace(f"[{self.bios.clock.now():10.6f}] {line}")


_OP_NAMES = {BLKIF_OP_READ: "read", BLKIF_OP_WRITE: "write"}
