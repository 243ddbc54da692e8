"""blkback: the Xen PV block backend, as its own OS process (dom0's side of a vbd).

pvboot plays hypervisor and toolstack; this process plays the driver domain's
kernel backend (after Linux drivers/block/xen-blkback).  It maps the guest's RAM
memfd, finds its device through a real xenstore (its backend directory
/local/domain/<be>/backend/vbd/<fe>/<devid>, written by emu/xen/toolstack.py),
and serves one shared ring:

* startup: read ``params`` (the raw image path) and ``mode``, open the image
  (copy-on-write overlay by default, ``--persist`` writes through, ``--read-only``
  or mode "r" refuses writes), publish features, go InitWait (2);
* when the frontend is Initialised (3) or Connected (4) (GRUB never writes
  Connected): read ring-ref, event-channel and protocol (absent = the native
  x86_64 ABI, unknown = fatal, as Linux), map the ring grant, bind the event
  channel, write sectors (512-byte units always), sector-size and info, go
  Connected (4);
* serve READ, WRITE and FLUSH_DISKCACHE; WRITE_BARRIER, DISCARD, INDIRECT and
  unknown operations get BLKIF_RSP_EOPNOTSUPP (none is advertised).  Each request is
  copied out of the ring before it is checked (no double fetch) and checked like
  Linux's dispatch_rw_block_io: 1..11 segments (0 only for a flush), first_sect <=
  last_sect <= 7, the range inside the disk without u64 overflow, no writes to a
  read-only disk, every grant mappable (read-only for writes: the backend only
  reads those pages; writable for reads).  A failed check answers BLKIF_RSP_ERROR
  for that request only.  Data moves between the granted guest frames and the image
  with one preadv/pwritev per segment, no copy in Python.  Grants are unmapped
  before the response is pushed;
* a frontend whose request producer runs past the ring gets its ring halted: one
  line on stderr, nothing answered any more until it reconnects;
* frontend Closing/Closed: unmap the ring, close the port, go Closing then Closed
  (and exit if the toolstack set online=0); frontend back to Initialising: InitWait
  again, ready for the next frontend (the next boot stage).

It exits 0 on SIGTERM/SIGINT, when xenstore closes the connection, or when its
backend directory is removed or the device is detached; 2 on a usage error; 3 when
its resources cannot be used (guest memory, event channel page, xenstore, backend
nodes, disk image); 1 on an internal error.  Every failure is one line on stderr;
nothing on stdout.

Start it from the pvboot process with ``start_blkback`` (a forked child keeping the
memfd and the eventfds) or by hand::

    python -m pvboot.emu.xen.blkback --xenstore SOCK --guest-memory /proc/PID/fd/N \\
        --grant-table-address 0x40C0000 --evtchn-page-address 0x40C1000 \\
        --evtchn-fd 5 --frontend-evtchn-fd 6 --devid 51712
"""

import os
import select
import signal
import sys

from .abi import (BLKIF_ABIS, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_NATIVE_ABI,
                  BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_EOPNOTSUPP,
                  BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BLKIF_SECTOR_SIZE, BLKIF_SECTORS_PER_PAGE,
                  GNTST_okay, VDISK_CDROM, VDISK_REMOVABLE, VDISK_READONLY, XenbusStateClosed,
                  XenbusStateClosing, XenbusStateConnected, XenbusStateInitialised,
                  XenbusStateInitialising, XenbusStateInitWait, XenbusStateUnknown)
from .evtchn import EventChannels, EvtchnError
from .grant_table import GrantTable, GuestFrames
from .ring import BackRing, RingOverflow, spin_until
from . import cdmedia
from .toolstack import ToolstackError, vdev_to_devid
from .xsclient import XenstoreClosed, XenstoreError, XsClient
from ..diskimage import DiskImage, DiskImageError

__all__ = ["main", "Blkback", "start_blkback", "blkback_args", "EXIT_OK", "EXIT_INTERNAL",
           "EXIT_USAGE", "EXIT_SETUP"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_SETUP = 3

PROG = "blkback"
# Longest sleep between looks at the ring when no event arrives (a safety net only:
# notifications and watch events wake the loop right away).
IDLE_POLL_SECONDS = 1.0
# How long the backend keeps looking at an empty ring before it sleeps on the event
# channel (adaptive polling: the next request of a transfer arrives within this).
SPIN_SECONDS = 200e-6
U64_MAX = (1 << 64) - 1
_SEG_BASE = 5          # index of the first segment field in an unpacked blkif_request


class SetupError(Exception):
    """A resource blkback needs cannot be used; exit EXIT_SETUP with this message."""


class _Stop(Exception):
    """Leave the main loop cleanly (exit 0) for the reason given."""


def _err(msg):
    sys.stderr.write("%s: %s\n" % (PROG, msg))
    sys.stderr.flush()


class Blkback:
    """One backend device: its xenstore nodes, its disk image and (when connected) its ring.

    ``xs`` is a dom0 XsClient, ``grants`` a GrantTable attached to the guest's table,
    ``evtchn`` an EventChannels holding the eventfds of both domains.
    """

    def __init__(self, xs, grants, evtchn, devid, *, frontend_domid=1, backend_domid=0,
                 read_only=False, persist=False, verbose=False):
        self.xs = xs
        self.grants = grants
        self.evtchn = evtchn
        self.devid = devid
        self.frontend_domid = frontend_domid
        self.backend_domid = backend_domid
        self.force_read_only = read_only
        self.persist = persist
        self.verbose = verbose
        self.be_path = "/local/domain/%d/backend/vbd/%d/%d" % (backend_domid, frontend_domid, devid)
        self.fe_path = None
        self.image = None
        self.read_only = read_only
        self.info = 0
        self.cdrom = False
        self.params = None
        self.state = XenbusStateInitialising
        # Connection (None while not Connected)
        self.ring = None
        self.ring_ref = None
        self.ring_page = None
        self.port = None
        self.halted = False
        self.notify_failed = False
        self.served = 0
        # Persistent grants (feature-persistent, when the frontend says it reuses its
        # grants): gref -> writable view of its frame, mapped until disconnect.
        self.persistent = None

    def log(self, msg):
        if self.verbose:
            _err("vbd %d: %s" % (self.devid, msg))

    # ------------------------------------------------------------------ setup

    def setup(self):
        """Read the backend nodes, open the image, publish features, go InitWait."""
        xs, be = self.xs, self.be_path
        try:
            fe = xs.read(be + "/frontend")
            fe_id = xs.read_int(be + "/frontend-id")
            params = xs.read(be + "/params")
            mode = xs.read(be + "/mode", "w")
            device_type = xs.read(be + "/device-type", "disk")
            removable = xs.read_int(be + "/removable", 0)
        except XenstoreError as e:
            raise SetupError("reading %s: %s" % (be, e)) from None
        if fe is None or params is None:
            raise SetupError("no vbd at %s (frontend or params missing)" % be)
        # A CD (emu/xen/cdmedia.py): read-only and removable; empty params = no disc.
        self.cdrom = device_type == "cdrom"
        self.params = params
        if fe_id is not None and fe_id != self.frontend_domid:
            raise SetupError("%s/frontend-id is %d, not %d" % (be, fe_id, self.frontend_domid))
        self.fe_path = fe
        self.read_only = self.force_read_only or mode.strip() == "r" or self.cdrom
        try:
            self.image = None if self.cdrom and not params else DiskImage(
                params, read_only=self.read_only, persist=self.persist and not self.read_only)
        except (DiskImageError, OSError) as e:
            self._write_error("opening %s: %s" % (params, e))
            raise SetupError(str(e)) from None
        self.info = ((VDISK_READONLY if self.read_only else 0)
                     | (VDISK_CDROM if device_type == "cdrom" else 0)
                     | (VDISK_REMOVABLE if removable or self.cdrom else 0))

        def publish(t):
            # Only what is honoured: flushes on a writable disk and persistent grants;
            # no barriers, no indirect segments, no multi-page rings, no discard.
            t.write(be + "/feature-flush-cache", "0" if self.read_only else "1")
            t.write(be + "/feature-barrier", "0")
            t.write(be + "/feature-persistent", "1")
            if self.cdrom:
                t.write(be + "/" + cdmedia.MEDIA_REQ_SUP_KEY, "1")
            t.write(be + "/state", str(int(XenbusStateInitWait)))
        xs.transact(publish)
        self.state = XenbusStateInitWait
        xs.watch(be, "backend")
        xs.watch(fe + "/state", "frontend")
        self.log("InitWait: %s (%d sectors%s)" % (params, cdmedia.image_sectors(self.image),
                                                  ", read-only" if self.read_only else ""))

    def _write_error(self, msg):
        # xenbus_dev_error's place for it: a human-readable node next to the device.
        try:
            self.xs.write(self.be_path + "/error", msg[:200])
        except Exception:
            pass

    def _switch_state(self, state):
        def write(t):
            if not t.exists(self.be_path):
                raise _Stop("backend directory %s removed" % self.be_path)
            t.write(self.be_path + "/state", str(int(state)))
        try:
            self.xs.transact(write)
        except XenstoreError as e:
            _err("vbd %d: writing state %d: %s" % (self.devid, state, e))
        self.state = state

    # ------------------------------------------------------------------ xenbus

    def reconcile(self):
        """Bring the backend state in line with the frontend's current state (called on
        every watch event; reads current values, so missed intermediate states are fine)."""
        xs = self.xs
        if not xs.exists(self.be_path + "/state"):
            raise _Stop("backend directory %s removed" % self.be_path)
        if self.cdrom:
            cdmedia.follow_params(self)
        fe_state = xs.read_int(self.fe_path + "/state", XenbusStateUnknown)
        if fe_state in (XenbusStateInitialised, XenbusStateConnected):
            # Only from InitWait: after a failed connect the frontend must close first.
            if self.state == XenbusStateInitWait:
                self.connect()
        elif fe_state in (XenbusStateClosing, XenbusStateClosed):
            # online before state: the toolstack changes both in one transaction, so
            # seeing online=0 guarantees the state read below is its Closing too.
            detached = xs.read(self.be_path + "/online", "1").strip() == "0"
            if self.state != XenbusStateClosed:
                self.disconnect()
                if self.state != XenbusStateClosing:
                    self._switch_state(XenbusStateClosing)
                self._switch_state(XenbusStateClosed)
                self.log("Closed")
            elif xs.read_int(self.be_path + "/state") != XenbusStateClosed:
                # The toolstack wrote Closing to ask for a close (xl block-detach) and
                # waits for Closed: we are there already, say so again.
                self._switch_state(XenbusStateClosed)
            if detached:
                raise _Stop("device detached")
        elif fe_state == XenbusStateInitialising:
            if self.state not in (XenbusStateInitWait, XenbusStateInitialising):
                self.disconnect()
                self._switch_state(XenbusStateInitWait)
                self.log("InitWait again: ready for a new frontend")
        elif fe_state == XenbusStateUnknown:
            # The frontend directory went away: the toolstack is removing the device.
            self.disconnect()
            if self.state != XenbusStateClosed:
                self._switch_state(XenbusStateClosed)
            raise _Stop("frontend %s removed" % self.fe_path)

    def connect(self):
        """Map the frontend's ring and bind its event channel (Linux connect_ring)."""
        xs, fe = self.xs, self.fe_path
        ring_ref = xs.read_int(fe + "/ring-ref")
        remote_port = xs.read_int(fe + "/event-channel")
        protocol = xs.read(fe + "/protocol")
        order = xs.read_int(fe + "/ring-page-order", 0)
        if ring_ref is None or remote_port is None:
            return self._fail("reading %s/ring-ref and event-channel" % fe)
        if order:
            return self._fail("ring-page-order %d requested; only single-page rings" % order)
        abi = BLKIF_NATIVE_ABI if protocol is None else BLKIF_ABIS.get(protocol.strip())
        if abi is None:
            return self._fail("unknown fe protocol %s" % protocol)
        status, page = self.grants.map_grant(ring_ref, self.backend_domid, writable=True)
        if status != GNTST_okay:
            return self._fail("mapping ring-ref %d: grant status %d" % (ring_ref, status))
        try:
            ring = BackRing(page, abi)
        except RingOverflow as e:
            self.grants.unmap_grant(ring_ref, writable=True)
            return self._fail(str(e))
        try:
            port = self.evtchn.bind_interdomain(self.backend_domid, self.frontend_domid,
                                                remote_port)
        except EvtchnError as e:
            self.grants.unmap_grant(ring_ref, writable=True)
            return self._fail("binding event channel %d: %s" % (remote_port, e.strerror))
        self.ring, self.ring_ref, self.ring_page, self.port = ring, ring_ref, page, port
        self.halted = False
        self.notify_failed = False
        # blkif.h: map persistently only if the frontend reuses its grants; keep at most
        # RING_SIZE * BLKIF_MAX_SEGMENTS_PER_REQUEST of them (more are mapped per request).
        if xs.read_int(fe + "/feature-persistent", 0) == 1:
            self.persistent = {}
            self.max_persistent = ring.nr_ents * BLKIF_MAX_SEGMENTS_PER_REQUEST
        be = self.be_path
        sectors = cdmedia.image_sectors(self.image)

        def publish(t):
            if not t.exists(be):
                raise _Stop("backend directory %s removed" % be)
            t.write(be + "/sectors", str(sectors))
            t.write(be + "/sector-size", str(cdmedia.CDROM_SECTOR_SIZE if self.cdrom
                                             else BLKIF_SECTOR_SIZE))
            t.write(be + "/info", str(self.info))
            t.write(be + "/state", str(int(XenbusStateConnected)))
        self.xs.transact(publish)
        self.state = XenbusStateConnected
        self.log("Connected: ring-ref %d, port %d -> %d, %s" % (ring_ref, remote_port, port,
                                                               abi.name))

    def _fail(self, msg):
        # xenbus_dev_fatal: report, then Closing; the frontend has to start over.
        _err("vbd %d: %s" % (self.devid, msg))
        self._write_error(msg)
        self._switch_state(XenbusStateClosing)

    def disconnect(self):
        """Unmap the ring and close our port (idempotent)."""
        if self.ring is None:
            return
        self.ring.release()
        self.ring = None
        try:
            self.ring_page.release()
        except BufferError:
            pass
        self.ring_page = None
        self.grants.unmap_grant(self.ring_ref, writable=True)
        self.ring_ref = None
        self._unmap_persistent()
        try:
            self.evtchn.close(self.backend_domid, self.port)
        except OSError:
            pass      # the guest may have scribbled over the page; nothing to undo
        self.port = None
        self.halted = False

    def _unmap_persistent(self):
        """Drop every persistent mapping: the frontend can end those grants once we are
        Closed."""
        if self.persistent is None:
            return
        for gref, view in self.persistent.items():
            view.release()
            self.grants.unmap_grant(gref, writable=True)
        self.persistent = None

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
                    n = spin_until(ring.unconsumed_requests, SPIN_SECONDS)
                if not n:
                    if ring.final_check_for_requests():
                        continue
                    return
                for _ in range(n):
                    raw = ring.get_request()
                    req_id, op, status = self.dispatch(raw, ring.abi)
                    ring.put_response(req_id, op, status)
                    self.served += 1
                    if ring.push_responses():
                        self._notify()
        except RingOverflow as e:
            self.halted = True
            _err("vbd %d: %s. Halting ring processing" % (self.devid, e))

    def _notify(self):
        try:
            self.evtchn.send(self.backend_domid, self.port)
        except OSError as e:
            # The guest broke its own event channel state (it is guest RAM); the
            # responses are on the ring for a frontend that polls.
            if not self.notify_failed:
                self.notify_failed = True
                _err("vbd %d: cannot notify the frontend: %s" % (self.devid, e))

    def dispatch(self, raw, abi):
        """Check and carry out one request (``raw`` is our private copy): (id, op, status)."""
        fields = abi.request.unpack_from(raw)
        op = fields[0]
        req_id = fields[3]
        if op == BLKIF_OP_READ or op == BLKIF_OP_WRITE or op == BLKIF_OP_FLUSH_DISKCACHE:
            if op == BLKIF_OP_FLUSH_DISKCACHE and self.read_only:
                return req_id, op, BLKIF_RSP_EOPNOTSUPP      # not advertised on this disk
            return req_id, op, self._rw(op, fields)
        return req_id, op, BLKIF_RSP_EOPNOTSUPP

    def _rw(self, op, fields):
        nseg = fields[1]
        if nseg == 0:
            if op != BLKIF_OP_FLUSH_DISKCACHE:
                return BLKIF_RSP_ERROR
            return self._flush()
        if nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST:
            return BLKIF_RSP_ERROR
        writing = op != BLKIF_OP_READ
        if writing and self.read_only:
            return BLKIF_RSP_ERROR
        sector = fields[4]
        segs = []
        nr_sects = 0
        for i in range(nseg):
            base = _SEG_BASE + 3 * i
            gref, first, last = fields[base], fields[base + 1], fields[base + 2]
            if last >= BLKIF_SECTORS_PER_PAGE or last < first:
                return BLKIF_RSP_ERROR
            segs.append((gref, first, last))
            nr_sects += last - first + 1
        end = sector + nr_sects
        if end > U64_MAX or end > cdmedia.image_sectors(self.image):
            return BLKIF_RSP_ERROR
        grants = self.grants
        domid = self.backend_domid
        persistent = self.persistent
        mapped = []             # (gref, frame, writable) mapped for this request only
        parts = []
        status = BLKIF_RSP_OKAY
        try:
            for gref, first, last in segs:
                frame = persistent.get(gref) if persistent is not None else None
                if frame is None:
                    if persistent is not None and len(persistent) < self.max_persistent:
                        # A persistent grant is mapped writable whatever the operation:
                        # the frontend reuses it for reads and writes (blkif.h).
                        st, frame = grants.map_grant(gref, domid, writable=True)
                        if st == GNTST_okay:
                            persistent[gref] = frame
                    if frame is None:
                        # Reads fill guest pages (writable mappings); writes only read them.
                        st, frame = grants.map_grant(gref, domid, writable=not writing)
                        if st != GNTST_okay:
                            return BLKIF_RSP_ERROR
                        mapped.append((gref, frame, not writing))
                parts.append(frame[first * BLKIF_SECTOR_SIZE:(last + 1) * BLKIF_SECTOR_SIZE])
            # The request's sectors are consecutive: one vectored call for all segments.
            if writing:
                self.image.write_from_parts(sector, parts)
            else:
                self.image.read_into_parts(sector, parts)
            if op == BLKIF_OP_FLUSH_DISKCACHE:
                status = self._flush()
        except Exception as e:     # OSError, DiskImageError, ValueError from the image
            _err("vbd %d: I/O error at sector %d: %s" % (self.devid, sector, e))
            status = BLKIF_RSP_ERROR
        finally:
            for part in parts:
                part.release()
            for gref, frame, writable in mapped:
                frame.release()
                grants.unmap_grant(gref, writable=writable)
        return status

    def _flush(self):
        try:
            self.image.flush()
        except OSError as e:
            _err("vbd %d: flush failed: %s" % (self.devid, e))
            return BLKIF_RSP_ERROR
        return BLKIF_RSP_OKAY

    # ------------------------------------------------------------------ main loop

    def run(self, wake_fd=None, should_stop=lambda: None):
        """Serve until told to stop; returns the reason (a string)."""
        xs = self.xs
        xs_fd = xs.fileno()
        event_fd = self.evtchn.wait_fd(self.backend_domid)
        dom = self.backend_domid
        try:
            self.reconcile()
            xs_ready = True
            while True:
                reason = should_stop()
                if reason:
                    return reason
                # Watch events arrive on the socket, or were queued by the client while
                # it waited for a reply; only look when there can be some.
                if xs_ready or xs.pending_events():
                    had_event = False
                    while xs.poll_watch() is not None:
                        had_event = True
                    if had_event:
                        self.reconcile()
                serving = self.ring is not None and not self.halted
                if serving:
                    # Drain the eventfd before looking at the ring: a notification
                    # sent after this point leaves it readable for the select below.
                    self.evtchn.poll_pending(dom, (self.port,))
                    self.serve()
                if xs.pending_events():
                    xs_ready = True
                    continue
                fds = [xs_fd]
                if wake_fd is not None:
                    fds.append(wake_fd)
                if serving:
                    fds.append(event_fd)
                ready, _, _ = select.select(fds, [], [], IDLE_POLL_SECONDS)
                # A timeout re-checks everything: the safety net of a bounded wait.
                xs_ready = not ready or xs_fd in ready
                if wake_fd is not None and wake_fd in ready:
                    try:
                        os.read(wake_fd, 512)
                    except BlockingIOError:
                        pass
        except _Stop as e:
            return str(e)
        except XenstoreClosed:
            return "xenstore closed the connection"

    def shutdown(self, say_closed=True):
        """Release the ring, the port and the image; optionally tell xenstore Closed."""
        self.disconnect()
        if say_closed and self.state not in (XenbusStateClosed, XenbusStateInitialising):
            try:
                self.xs.timeout = 1.0
                self._switch_state(XenbusStateClosed)
            except Exception:
                pass      # xenstore is going away too; nothing to tell
        if self.image is not None:
            self.image.close()
            self.image = None


# ---------------------------------------------------------------------- command line

def _int(text):
    """Integers on the command line: decimal or 0x hex."""
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError("not a number: %r" % text) from None
    if value < 0:
        raise ValueError("must not be negative: %r" % text)
    return value


def _parser(prog=None):
    import argparse

    class OneLineParser(argparse.ArgumentParser):
        def error(self, message):
            _err("error: %s (see --help)" % message)
            sys.exit(EXIT_USAGE)

    def number(text):
        try:
            return _int(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    def devid(text):
        try:
            return _int(text)
        except ValueError:
            try:
                return vdev_to_devid(text)
            except ToolstackError as e:
                raise argparse.ArgumentTypeError(str(e)) from None

    p = OneLineParser(
        prog=prog or "python -m pvboot.emu.xen.blkback",
        description="Xen PV block backend (dom0 side of one vbd) serving a guest's shared "
                    "ring from a raw disk image.  Exit status: 0 stopped cleanly (signal, "
                    "xenstore closed, device removed), 1 internal error, 2 usage error, "
                    "3 a resource cannot be used.")
    p.add_argument("--xenstore", required=True, metavar="SOCKET",
                   help="xenstored's unix socket (blkback connects as dom0)")
    mem = p.add_mutually_exclusive_group(required=True)
    mem.add_argument("--guest-memory", metavar="PATH",
                     help="path of the guest RAM memfd, e.g. /proc/PID/fd/N")
    mem.add_argument("--guest-memory-fd", type=number, metavar="N",
                     help="inherited file descriptor of the guest RAM memfd")
    p.add_argument("--guest-memory-size", type=number, metavar="BYTES",
                   help="bytes of guest memory to map (default: the memfd's size)")
    p.add_argument("--grant-table-address", type=number, required=True, metavar="ADDR",
                   help="guest-physical address of the grant table's first frame")
    p.add_argument("--grant-table-frames", type=number, default=1, metavar="N",
                   help="frames in the grant table (default 1)")
    p.add_argument("--evtchn-page-address", type=number, required=True, metavar="ADDR",
                   help="guest-physical address of the event channel page")
    p.add_argument("--evtchn-fd", type=number, required=True, metavar="N",
                   help="inherited eventfd that wakes the backend domain")
    p.add_argument("--frontend-evtchn-fd", type=number, required=True, metavar="N",
                   help="inherited eventfd that wakes the frontend domain")
    p.add_argument("--evtchn-waker", type=number, default=0, metavar="N",
                   help="the waker number --evtchn-fd belongs to, when the hypervisor gave "
                        "this backend its own (several backends in one domain); 0: the "
                        "backend domain's eventfd")
    p.add_argument("--frontend-domid", type=number, default=1, metavar="ID")
    p.add_argument("--backend-domid", type=number, default=0, metavar="ID")
    p.add_argument("--devid", type=devid, required=True, metavar="N",
                   help="vbd device id (51712 = xvda) or a name like xvda")
    ro = p.add_mutually_exclusive_group()
    ro.add_argument("--read-only", action="store_true",
                    help="publish VDISK_READONLY and refuse writes")
    ro.add_argument("--persist", action="store_true",
                    help="write through to the image (default: a copy-on-write overlay)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log state changes to stderr")
    return p


def _check_args(p, args):
    if args.grant_table_frames < 1:
        p.error("--grant-table-frames must be at least 1")
    for name in ("grant_table_address", "evtchn_page_address"):
        if getattr(args, name) % 4096:
            p.error("--%s must be page aligned" % name.replace("_", "-"))
    if args.guest_memory_size is not None and (args.guest_memory_size <= 0
                                               or args.guest_memory_size % 4096):
        p.error("--guest-memory-size must be a positive multiple of 4096")
    gt_end = args.grant_table_address + args.grant_table_frames * 4096
    if args.grant_table_address <= args.evtchn_page_address < gt_end:
        p.error("the event channel page overlaps the grant table")
    for name in ("frontend_domid", "backend_domid"):
        if getattr(args, name) > 3:
            p.error("--%s must be 0..3" % name.replace("_", "-"))
    if args.frontend_domid == args.backend_domid:
        p.error("frontend and backend must be different domains")


def main(argv=None, prog=None):
    """Run the backend; returns the exit status.  ``prog`` names it in usage messages
    (e.g. "pvboot blkback" when the CLI forwards to it)."""
    p = _parser(prog)
    args = p.parse_args(argv)
    _check_args(p, args)

    stop = []
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def on_signal(signum, frame):
        stop.append(signal.Signals(signum).name)
        try:
            os.write(wake_w, b"x")
        except OSError:
            pass
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A broken pipe on stderr must not kill the backend mid-request.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    frames = grants = evtchn = xs = backend = None
    try:
        try:
            frames, grants, evtchn, xs = _open_resources(args)
        except SetupError as e:
            _err(str(e))
            return EXIT_SETUP
        backend = Blkback(xs, grants, evtchn, args.devid, frontend_domid=args.frontend_domid,
                          backend_domid=args.backend_domid, read_only=args.read_only,
                          persist=args.persist, verbose=args.verbose)
        try:
            backend.setup()
        except SetupError as e:
            _err("vbd %d: %s" % (args.devid, e))
            return EXIT_SETUP
        except _Stop as e:
            _err("vbd %d: %s" % (args.devid, e))
            return EXIT_SETUP
        reason = backend.run(wake_r, lambda: stop[0] if stop else None)
        backend.log("stopping: %s" % reason)
        backend.shutdown(say_closed=not reason.startswith("xenstore"))
        return EXIT_OK
    except Exception as e:
        if isinstance(e, XenstoreClosed):
            return EXIT_OK
        if isinstance(e, XenstoreError):
            _err("xenstore: %s" % e)
            return EXIT_SETUP if backend is None or backend.fe_path is None else EXIT_INTERNAL
        _err("internal error: %s: %s" % (type(e).__name__, e))
        return EXIT_INTERNAL
    finally:
        if backend is not None and backend.image is not None:
            backend.image.close()
        if xs is not None:
            xs.close()
        if evtchn is not None:
            evtchn.release()
        if grants is not None:
            grants.close()
        if frames is not None:
            frames.close()


def _open_resources(args):
    source = args.guest_memory if args.guest_memory is not None else args.guest_memory_fd
    try:
        frames = GuestFrames(source, args.guest_memory_size)
    except (OSError, ValueError) as e:
        raise SetupError("guest memory %s: %s" % (source, getattr(e, "strerror", None) or e)) \
            from None
    try:
        gt_len = args.grant_table_frames * 4096
        if args.grant_table_address + gt_len > frames.size:
            raise SetupError("grant table at %#x lies outside guest memory (%d bytes)"
                             % (args.grant_table_address, frames.size))
        evt_page = args.evtchn_page_address // 4096
        grants = GrantTable.attach(frames, args.grant_table_address, args.grant_table_frames,
                                   hypervisor_frames=(evt_page,))
        for fd in (args.evtchn_fd, args.frontend_evtchn_fd):
            try:
                os.fstat(fd)
            except OSError:
                raise SetupError("event channel fd %d is not open" % fd) from None
        try:
            if args.evtchn_waker:
                evtchn = EventChannels.attach(frames, args.evtchn_page_address,
                                              {args.frontend_domid: args.frontend_evtchn_fd},
                                              wakers={args.evtchn_waker: args.evtchn_fd},
                                              own_waker=args.evtchn_waker)
            else:
                evtchn = EventChannels.attach(frames, args.evtchn_page_address,
                                              {args.backend_domid: args.evtchn_fd,
                                               args.frontend_domid: args.frontend_evtchn_fd})
        except ValueError as e:
            raise SetupError("event channel page: %s" % e) from None
        try:
            xs = XsClient.connect(args.xenstore, timeout=5.0)
        except XenstoreError as e:
            evtchn.release()
            raise SetupError("xenstore %s: %s" % (args.xenstore, e)) from None
    except BaseException:
        frames.close()
        raise
    return frames, grants, evtchn, xs


# ---------------------------------------------------------------------- starting it

def blkback_args(*, xenstore, guest_memory_fd, guest_memory_size, grant_table_address,
                 grant_table_frames, evtchn_page_address, evtchn_fd, frontend_evtchn_fd,
                 devid, evtchn_waker=0, frontend_domid=1, backend_domid=0, read_only=False,
                 persist=False, verbose=False):
    """The command line of main() for a backend with inherited descriptors."""
    args = ["--xenstore", str(xenstore),
            "--guest-memory-fd", str(guest_memory_fd),
            "--guest-memory-size", str(guest_memory_size),
            "--grant-table-address", hex(grant_table_address),
            "--grant-table-frames", str(grant_table_frames),
            "--evtchn-page-address", hex(evtchn_page_address),
            "--evtchn-fd", str(evtchn_fd),
            "--frontend-evtchn-fd", str(frontend_evtchn_fd),
            "--evtchn-waker", str(evtchn_waker),
            "--frontend-domid", str(frontend_domid),
            "--backend-domid", str(backend_domid),
            "--devid", str(devid)]
    if read_only:
        args.append("--read-only")
    if persist:
        args.append("--persist")
    if verbose:
        args.append("--verbose")
    return args


def start_blkback(mem, grant_table, evtchn, xenstore, devid, *, frontend_domid=1,
                  backend_domid=0, read_only=False, persist=False, verbose=False,
                  stderr=None):
    """Start blkback for vbd ``devid`` as a child process of the pvboot process.

    ``mem`` is the GuestMemory, ``grant_table`` the guest's GrantTable, ``evtchn`` the
    hypervisor's EventChannels (holding both domains' eventfds), ``xenstore`` the
    daemon's socket path.  Each backend gets its own waker eventfd (several backends
    share dom0).  The child keeps the memfd and the eventfds and nothing else.

    The child is forked from this process and runs main() (backend_process.fork_main:
    no interpreter start-up before InitWait).  Returns it as a ForkedProcess; the
    backend is ready once its xenstore state is InitWait.  Stop it with terminate()
    (SIGTERM) and wait()."""
    waker, backend_fd = evtchn.new_waker()
    fds = (mem.fd, backend_fd, evtchn.eventfd(frontend_domid))
    options = dict(
        xenstore=xenstore, guest_memory_fd=mem.fd, guest_memory_size=mem.size,
        grant_table_address=grant_table.base, grant_table_frames=grant_table.nr_frames,
        evtchn_page_address=evtchn.address, evtchn_fd=fds[1], frontend_evtchn_fd=fds[2],
        evtchn_waker=waker, devid=devid, frontend_domid=frontend_domid, backend_domid=backend_domid,
        read_only=read_only, persist=persist, verbose=verbose)
    from .backend_process import fork_main
    return fork_main(main, blkback_args(**options), fds, stderr)


if __name__ == "__main__":
    sys.exit(main())
