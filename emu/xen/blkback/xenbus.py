"""blkback's xenbus side (Linux xen-blkback's xenbus.c): the device's state machine.

* startup: read ``params`` (the image) and ``mode``, open the storage (copy-on-write
  overlay by default, ``--persist`` writes through, ``--read-only`` or mode "r" refuses
  writes), publish features, go InitWait (2);
* when the frontend is Initialised (3) or Connected (4) (GRUB never writes Connected):
  read ring-ref, event-channel and protocol (absent = the native x86_64 ABI, unknown =
  fatal, as Linux), map the ring grant, bind the event channel, write sectors (512-byte
  units always), sector-size and info, go Connected (4); the ring is then served by
  blkio.BlkifRing;
* frontend Closing/Closed: unmap the ring, close the port, go Closing then Closed (and
  stop if the toolstack set online=0); frontend back to Initialising: InitWait again,
  ready for the next frontend (the next boot stage).
"""

import os
import select
import shutil
import tempfile

from .. import cdmedia
from ..abi import (BLKIF_ABIS, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_NATIVE_ABI,
                   BLKIF_SECTOR_SIZE, GNTST_okay, VDISK_CDROM, VDISK_REMOVABLE,
                   VDISK_READONLY, XenbusStateClosed, XenbusStateClosing,
                   XenbusStateConnected, XenbusStateInitialised, XenbusStateInitialising,
                   XenbusStateInitWait, XenbusStateUnknown)
from ..evtchn import EvtchnError
from ..ring import BackRing, RingOverflow
from ..xsclient import XenstoreClosed, XenstoreError
from ...diskimage import DiskImage, DiskImageError
from ...diskspec import split_prefix
from ...storage.images import open_image
from ...storage.locking import ImageLock, ImageLockError
from .blkio import BlkifRing, err as _err

# Longest sleep between looks at the ring when no event arrives (a safety net only:
# notifications and watch events wake the loop right away).
IDLE_POLL_SECONDS = 1.0
# Backend node naming the QMP socket of the image's qemu-storage-daemon (non-raw only).
STORAGE_QMP_NODE = "qemu-storage-qmp"
# The backend nodes only the backend itself writes (the toolstack asks for a close with
# online=0, and changes a CD with params): a watch event for one of them is the echo of
# our own write, and reconcile() is not run for it (a xenstore round trip each).
OWN_NODES = ("state", "sectors", "sector-size", "info", "error", "feature-flush-cache",
             "feature-barrier", "feature-persistent", STORAGE_QMP_NODE,
             cdmedia.MEDIA_REQ_SUP_KEY)


def _int_or(text, default):
    """A node's number as XsClient.read_int reads it: `default` when absent or not one."""
    try:
        return default if text is None else int(text.strip(), 0)
    except ValueError:
        return default


class SetupError(Exception):
    """A resource blkback needs cannot be used; exit EXIT_SETUP with this message."""


class StopServing(Exception):
    """Leave the main loop cleanly (exit 0) for the reason given."""


class Blkback:
    """One backend device: its xenstore nodes, its disk image and (when connected) its ring.

    ``xs`` is a dom0 XsClient, ``grants`` a GrantTable attached to the guest's table,
    ``evtchn`` an EventChannels holding the eventfds of both domains.
    """

    def __init__(self, xs, grants, evtchn, devid, *, frontend_domid=1, backend_domid=0,
                 read_only=False, persist=False, verbose=False, run_dir=None,
                 save_overlay=None, lock=True):
        self.xs = xs
        self.grants = grants
        self.evtchn = evtchn
        self.devid = devid
        self.frontend_domid = frontend_domid
        self.backend_domid = backend_domid
        self.force_read_only = read_only
        self.persist = persist
        self.verbose = verbose
        self.run_dir = run_dir
        self.own_run_dir = None         # made here when none was given; removed at shutdown
        self.save_overlay = save_overlay
        self.lock = lock
        self.image_lock = None
        self.be_path = "/local/domain/%d/backend/vbd/%d/%d" % (backend_domid, frontend_domid, devid)
        self.fe_path = None
        self.image = None
        self.read_only = read_only
        self.info = 0
        self.cdrom = False
        self.params = None
        self.state = XenbusStateInitialising
        # The connected ring (None while not Connected)
        self.blkif = None

    def log(self, msg):
        if self.verbose:
            _err("vbd %d: %s" % (self.devid, msg))

    # ------------------------------------------------------------------ setup

    def setup(self):
        """Read the backend nodes, open the image, publish features, go InitWait."""
        xs, be = self.xs, self.be_path
        try:
            # One round trip for all of them (XsClient.read_many): InitWait is what the
            # firmware waits for at POST.
            fe, fe_id, params, mode, device_type, removable, backend_type = xs.read_many(
                [be + "/" + key for key in ("frontend", "frontend-id", "params", "mode",
                                            "device-type", "removable", "type")])
        except XenstoreError as e:
            raise SetupError("reading %s: %s" % (be, e)) from None
        fe_id, removable = _int_or(fe_id, None), _int_or(removable, 0)
        mode = "w" if mode is None else mode
        device_type = "disk" if device_type is None else device_type
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
            self.image = None if self.cdrom and not params else self._open_image(
                params, "phy" if backend_type is None else backend_type.strip())
        except (DiskImageError, ImageLockError, OSError) as e:
            self._write_error(str(e))
            raise SetupError(str(e)) from None
        self.info = ((VDISK_READONLY if self.read_only else 0)
                     | (VDISK_CDROM if device_type == "cdrom" else 0)
                     | (VDISK_REMOVABLE if removable or self.cdrom else 0))

        daemon = getattr(self.image, "daemon", None)

        # Only what is honoured: flushes on a writable disk and persistent grants;
        # no barriers, no indirect segments, no multi-page rings, no discard.
        nodes = [("feature-flush-cache", "0" if self.read_only else "1"),
                 ("feature-barrier", "0"), ("feature-persistent", "1")]
        if self.cdrom:
            nodes.append((cdmedia.MEDIA_REQ_SUP_KEY, "1"))
        if daemon is not None and daemon.qmp_path is not None:
            # Where the toolstack reaches the storage daemon (live snapshots).
            nodes.append((STORAGE_QMP_NODE, daemon.qmp_path))
        nodes.append(("state", str(int(XenbusStateInitWait))))
        xs.transact(lambda t: t.update_many([("write", be + "/" + key, value)
                                             for key, value in nodes]))
        self.state = XenbusStateInitWait
        xs.watch(be, "backend")
        xs.watch(fe + "/state", "frontend")
        self.log("InitWait: %s (%d sectors%s)" % (params, cdmedia.image_sectors(self.image),
                                                  ", read-only" if self.read_only else ""))

    def _open_image(self, params, backend_type):
        """The storage behind ``params`` (libxl: a path for "phy", "format:path" for
        "qdisk"); a raw file is locked as QEMU locks it unless the caller holds that."""
        fmt, path = split_prefix(params)
        if fmt is None and backend_type == "phy":
            fmt = "raw"
        if self.run_dir is None:
            self.run_dir = self.own_run_dir = tempfile.mkdtemp(prefix="blkback-")
        persist = self.persist and not self.read_only
        image = open_image(path, fmt, read_only=self.read_only, persist=persist,
                           run_dir=self.run_dir, save_overlay=self.save_overlay)
        if self.lock and isinstance(image, DiskImage):
            try:
                self.image_lock = ImageLock(image.fileno(), path, write=persist)
            except BaseException:
                image.close()
                raise
        return image

    def _write_error(self, msg):
        # xenbus_dev_error's place for it: a human-readable node next to the device.
        try:
            self.xs.write(self.be_path + "/error", msg[:200])
        except Exception:
            pass

    def _switch_state(self, state):
        def write(t):
            if not t.exists(self.be_path):
                raise StopServing("backend directory %s removed" % self.be_path)
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
        # One round trip, read in this order: our state, the frontend's, online, our
        # state again (see the Closing branch).
        be_state, fe_state, online, be_state_after = xs.read_many(
            [self.be_path + "/state", self.fe_path + "/state", self.be_path + "/online",
             self.be_path + "/state"])
        if be_state is None:
            raise StopServing("backend directory %s removed" % self.be_path)
        if self.cdrom:
            cdmedia.follow_params(self)
            if self.blkif is not None:
                self.blkif.image = self.image      # the disc in the drive now (or none)
        fe_state = _int_or(fe_state, XenbusStateUnknown)
        if fe_state in (XenbusStateInitialised, XenbusStateConnected):
            # Only from InitWait: after a failed connect the frontend must close first.
            if self.state == XenbusStateInitWait:
                self.connect()
        elif fe_state in (XenbusStateClosing, XenbusStateClosed):
            # online before state: the toolstack changes both in one transaction, so
            # seeing online=0 guarantees the state read after it is its Closing too.
            detached = (online or "1").strip() == "0"
            if self.state != XenbusStateClosed:
                self.disconnect()
                if self.state != XenbusStateClosing:
                    self._switch_state(XenbusStateClosing)
                self._switch_state(XenbusStateClosed)
                self.log("Closed")
            elif _int_or(be_state_after, None) != XenbusStateClosed:
                # The toolstack wrote Closing to ask for a close (xl block-detach) and
                # waits for Closed: we are there already, say so again.
                self._switch_state(XenbusStateClosed)
            if detached:
                raise StopServing("device detached")
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
            raise StopServing("frontend %s removed" % self.fe_path)

    def connect(self):
        """Map the frontend's ring and bind its event channel (Linux connect_ring)."""
        xs, fe = self.xs, self.fe_path
        ring_ref, remote_port, protocol, order, persistent = xs.read_many(
            [fe + "/" + key for key in ("ring-ref", "event-channel", "protocol",
                                        "ring-page-order", "feature-persistent")])
        ring_ref, remote_port, order, persistent = (
            _int_or(ring_ref, None), _int_or(remote_port, None), _int_or(order, 0),
            _int_or(persistent, 0))
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
        # blkif.h: map persistently only if the frontend reuses its grants; keep at most
        # RING_SIZE * BLKIF_MAX_SEGMENTS_PER_REQUEST of them (more are mapped per request).
        limit = ring.nr_ents * BLKIF_MAX_SEGMENTS_PER_REQUEST if persistent == 1 else None
        self.blkif = BlkifRing(self.devid, ring, ring_ref, page, port, grants=self.grants,
                               evtchn=self.evtchn, image=self.image,
                               backend_domid=self.backend_domid, read_only=self.read_only,
                               persistent_limit=limit)
        be = self.be_path
        sectors = cdmedia.image_sectors(self.image)

        def publish(t):
            if not t.exists(be):
                raise StopServing("backend directory %s removed" % be)
            t.update_many([
                ("write", be + "/sectors", str(sectors)),
                ("write", be + "/sector-size", str(cdmedia.CDROM_SECTOR_SIZE if self.cdrom
                                                   else BLKIF_SECTOR_SIZE)),
                ("write", be + "/info", str(self.info)),
                ("write", be + "/state", str(int(XenbusStateConnected)))])
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
        if self.blkif is not None:
            self.blkif.release()
            self.blkif = None

    # ------------------------------------------------------------------ main loop

    def run(self, wake_fd=None, should_stop=lambda: None, control_fd=None, on_control=None):
        """Serve until told to stop; returns the reason (a string).  wake_fd: a pipe
        whose bytes only wake the loop (drained here); control_fd: a socket whose
        messages on_control() reads (server.py's toolstack channel)."""
        xs = self.xs
        xs_fd = xs.fileno()
        event_fd = self.evtchn.wait_fd(self.backend_domid)
        dom = self.backend_domid
        own = {self.be_path + "/" + key for key in OWN_NODES}
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
                    changed = False
                    while (event := xs.poll_watch()) is not None:
                        changed = changed or event[0] not in own
                    if changed:
                        self.reconcile()
                blkif = self.blkif
                serving = blkif is not None and not blkif.halted
                if serving:
                    # Drain the eventfd before looking at the ring: a notification
                    # sent after this point leaves it readable for the select below.
                    self.evtchn.poll_pending(dom, (blkif.port,))
                    blkif.serve()
                if xs.pending_events():
                    xs_ready = True
                    continue
                fds = [xs_fd]
                if wake_fd is not None:
                    fds.append(wake_fd)
                if control_fd is not None:
                    fds.append(control_fd)
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
                if control_fd is not None and control_fd in ready:
                    on_control()
        except StopServing as e:
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
        self.close_storage()

    def close_storage(self):
        """Close the image (stopping its storage daemon), drop its lock, remove the
        private directory made for it (idempotent)."""
        if self.image_lock is not None:         # before the image closes the locked fd
            self.image_lock.close()
            self.image_lock = None
        if self.image is not None:
            self.image.close()
            self.image = None
        if self.own_run_dir is not None:
            shutil.rmtree(self.own_run_dir, ignore_errors=True)
            self.own_run_dir = None
