"""A tool-side blkif frontend: plays the guest (domain 1) against a real blkback process.

The tests (tests/emu/test_blkback*.py) and `pvboot fuzz blkif` drive blkback with it.

It builds the whole platform the firmware frontend will see — guest RAM in a memfd
(emu.memory.GuestMemory), a grant table and the event channel page in the Xen area,
an in-process xenstored thread on a unix socket — runs the toolstack step
(toolstack.attach_disk), starts blkback as a subprocess on a disk image and then
does what a PV block frontend does: grant the ring and data pages, write ring-ref /
event-channel / protocol, switch to Initialised, push requests (also malformed ones,
as raw bytes) and wait, always bounded, for responses.

Layout of the Xen area used here (frame numbers from xen_area_base):
  0 grant table, 1 event channel page, 2 ring, 3.. data pages.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from pvboot.emu.memory import GuestMemory
from pvboot.emu.xen import toolstack
from pvboot.emu.xen.abi import (BLKIF_OP_READ, BLKIF_OP_WRITE, XEN_PAGE_SIZE, XenbusStateClosed,
                         XenbusStateClosing, XenbusStateConnected, XenbusStateInitialised,
                         XenbusStateInitialising, XenbusStateInitWait)
from pvboot.emu.xen.blkback import start_blkback
from pvboot.emu.xen.evtchn import EventChannels
from pvboot.emu.xen.grant_table import GrantTable
from pvboot.emu.xen.ring import FrontRing
from pvboot.emu.xen.xenstored import XenstoreDaemon
from pvboot.emu.xen.xsclient import XsClient

DOMID_GUEST = 1
DOMID_BACKEND = 0
XVDA = 51712

GRANT_TABLE_FRAME = 0
EVTCHN_FRAME = 1
RING_FRAME = 2
FIRST_DATA_FRAME = 3
NR_DATA_PAGES = 24

WAIT = 5.0          # seconds: the bound of every wait here


class FrontendError(AssertionError):
    """The backend broke a promise (no answer, wrong id, a grant still mapped); an
    AssertionError so a test using this frontend fails rather than errors."""


class BlkifFrontend:
    """One guest + xenstored + blkback.  Use as a context manager or call close()."""

    def __init__(self, tmp_path, image_path, *, abi="x86_64-abi", mode="w", devid=XVDA,
                 read_only=False, persist=False, use_memory_path=False, verbose=False,
                 device_type="disk"):
        # Own directory: several frontends (each with its xenstored) may share tmp_path.
        self.tmp_path = tempfile.mkdtemp(prefix="xenfe-", dir=str(tmp_path))
        self.image_path = str(image_path)
        self.abi = abi
        self.devid = devid
        self.device_type = device_type
        self.mem = GuestMemory(1)
        self.daemon = self.xs = self.toolstack_xs = self.proc = None
        self.ring = self.ring_ref = self.port = None
        self._next_id = 1
        try:
            self._build(mode, read_only, persist, use_memory_path, verbose)
        except BaseException:
            self.close()
            raise

    def _build(self, mode, read_only, persist, use_memory_path, verbose):
        devid = self.devid
        base = self.mem.xen_area_base
        self.base_frame = base // XEN_PAGE_SIZE
        self.gnttab = GrantTable(self.mem, base + GRANT_TABLE_FRAME * XEN_PAGE_SIZE, 1)
        self.evtchn = EventChannels.create(self.mem, base + EVTCHN_FRAME * XEN_PAGE_SIZE)
        # Unix socket paths are limited to 107 bytes: keep it short, out of tmp_path.
        self.socket_dir = tempfile.mkdtemp(prefix="pvxs-")
        self.socket_path = os.path.join(self.socket_dir, "xs")
        self.daemon = XenstoreDaemon(self.socket_path).start()
        self.toolstack_xs = XsClient.from_socket(self.daemon.connect(), timeout=WAIT)
        self.xs = XsClient.from_socket(self.daemon.connect_domain(DOMID_GUEST), timeout=WAIT)
        toolstack.make_domain(self.toolstack_xs, DOMID_GUEST)
        self.fe_path, self.be_path = toolstack.attach_disk(
            self.toolstack_xs, devid, self.image_path, mode, device_type=self.device_type)
        self.stderr_path = os.path.join(self.tmp_path, "blkback-%d.err" % devid)
        self.xs.watch(self.be_path + "/state", "be-state")
        with open(self.stderr_path, "w") as err:
            if use_memory_path:
                self.proc = self._start_by_path(err, read_only, persist, verbose)
            else:
                self.proc = start_blkback(self.mem, self.gnttab, self.evtchn, self.socket_path,
                                          devid, read_only=read_only, persist=persist,
                                          verbose=verbose, stderr=err)

    def _start_by_path(self, err, read_only, persist, verbose):
        # The same backend, reaching guest memory through /proc/<pid>/fd/<n>.
        fds = (self.evtchn.eventfd(DOMID_BACKEND), self.evtchn.eventfd(DOMID_GUEST))
        argv = [sys.executable, "-m", "pvboot.emu.xen.blkback", "--xenstore", self.socket_path,
                "--guest-memory", self.mem.path_for_other_process,
                "--grant-table-address", hex(self.gnttab.base),
                "--evtchn-page-address", hex(self.evtchn.address),
                "--evtchn-fd", str(fds[0]), "--frontend-evtchn-fd", str(fds[1]),
                "--devid", str(self.devid)]
        argv += ["--read-only"] if read_only else []
        argv += ["--persist"] if persist else []
        argv += ["--verbose"] if verbose else []
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, pass_fds=fds)

    # ------------------------------------------------------------------ xenbus

    def backend_state(self):
        return self.toolstack_xs.read_int(self.be_path + "/state")

    def wait_backend_state(self, *states, timeout=WAIT):
        """Wait (bounded) until the backend's state is one of ``states``; returns it."""
        want = {int(s) for s in states}

        def check():
            if self.proc.poll() is not None:
                raise FrontendError("blkback exited with %s: %s" % (self.proc.returncode,
                                                                    self.stderr()))
            st = self.xs.read_int(self.be_path + "/state")
            return st if st in want else None
        try:
            return self.xs.wait_for(check, timeout, "backend state in %s" % sorted(want))
        except TimeoutError:
            raise FrontendError("backend state stayed %s (wanted %s); blkback says: %s"
                                % (self.backend_state(), sorted(want), self.stderr())) from None

    def switch_state(self, state):
        self.xs.write(self.fe_path + "/state", str(int(state)))

    def backend_node(self, key):
        return self.xs.read(self.be_path + "/" + key)

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    # ------------------------------------------------------------------ grants and pages

    def data_frame(self, index):
        """Guest frame number of data page ``index`` (in the Xen area)."""
        if not 0 <= index < NR_DATA_PAGES:
            raise IndexError(index)
        return self.base_frame + FIRST_DATA_FRAME + index

    def data_view(self, index):
        return self.mem.view(self.data_frame(index) * XEN_PAGE_SIZE, XEN_PAGE_SIZE)

    def grant_data_page(self, index, readonly=False):
        """A fresh grant of data page ``index`` to the backend."""
        return self.gnttab.grant(DOMID_BACKEND, self.data_frame(index), readonly)

    def connect(self, protocol="default", state=XenbusStateInitialised, persistent=False):
        """Grant and initialise the ring, offer an event channel, publish them and switch
        to ``state`` (GRUB stops at Initialised); waits for the backend to connect.
        ``persistent``: say feature-persistent=1 (this frontend reuses its grants)."""
        abi = self.abi if protocol == "default" else (protocol or "x86_64-abi")
        ring_frame = self.base_frame + RING_FRAME
        page = self.mem.view(ring_frame * XEN_PAGE_SIZE, XEN_PAGE_SIZE)
        self.ring = FrontRing(page, abi)
        self.ring_ref = self.gnttab.grant(DOMID_BACKEND, ring_frame, False)
        self.port = self.evtchn.alloc_unbound(DOMID_GUEST, DOMID_BACKEND)
        for t in self.xs.transactions():
            with t:
                t.write(self.fe_path + "/ring-ref", str(self.ring_ref))
                t.write(self.fe_path + "/event-channel", str(self.port))
                if protocol is not None:
                    t.write(self.fe_path + "/protocol", abi)
                if persistent:
                    t.write(self.fe_path + "/feature-persistent", "1")
                t.write(self.fe_path + "/state", str(int(state)))
        self.wait_backend_state(XenbusStateConnected)

    def disconnect(self, final_state=XenbusStateClosing):
        """Frontend Closing: wait for the backend to be Closed, then free ring and port."""
        self.switch_state(final_state)
        self.wait_backend_state(XenbusStateClosed)
        self._release_connection()

    def _release_connection(self):
        if self.ring_ref is not None:
            if not self.gnttab.end_and_release(self.ring_ref):
                raise FrontendError("backend still maps the ring after Closed")
            self.ring_ref = None
        if self.port is not None:
            self.evtchn.close(DOMID_GUEST, self.port)
            self.port = None
        self.ring = None

    def reinitialise(self):
        """Back to Initialising (the next boot stage's frontend); backend -> InitWait."""
        for key in ("ring-ref", "event-channel", "protocol"):
            try:
                self.xs.rm(self.fe_path + "/" + key)
            except Exception:
                pass
        self.switch_state(XenbusStateInitialising)
        self.wait_backend_state(XenbusStateInitWait)

    # ------------------------------------------------------------------ requests

    def new_id(self):
        self._next_id += 1
        return 0x1000_0000_0000_0000 | self._next_id

    def push(self):
        if self.ring.push_requests():
            self.evtchn.send(DOMID_GUEST, self.port)

    def submit(self, operation, sector, segments, nr_segments=None, req_id=None):
        """Queue and push one request; returns its id."""
        req_id = self.new_id() if req_id is None else req_id
        self.ring.put_request(req_id, operation, sector, segments, nr_segments=nr_segments)
        self.push()
        return req_id

    def submit_raw(self, raw):
        self.ring.put_request_bytes(raw)
        self.push()

    def wait_response(self, timeout=WAIT):
        """The next response, or None if none arrives within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            resp = self.ring.get_response()
            if resp is not None:
                return resp
            if self.ring.final_check_for_responses():
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.evtchn.wait(DOMID_GUEST, remaining, ports=(self.port,))

    def request(self, operation, sector, segments, nr_segments=None, timeout=WAIT):
        """Submit one request and return its response status (checks id and op)."""
        req_id = self.submit(operation, sector, segments, nr_segments)
        resp = self.wait_response(timeout)
        if resp is None:
            raise FrontendError("no response to op %d within %ss; blkback says: %s"
                                % (operation, timeout, self.stderr()))
        if resp.id != req_id or resp.operation != operation:
            raise FrontendError("response %r does not match request id %#x op %d"
                                % (resp, req_id, operation))
        return resp.status

    def rw(self, operation, sector, layout, readonly_grants=None):
        """One READ/WRITE with segments on data pages: ``layout`` is a list of
        (page index, first_sect, last_sect).  Grants are made fresh and ended after."""
        if readonly_grants is None:
            readonly_grants = operation != BLKIF_OP_READ
        refs = [self.grant_data_page(page, readonly_grants) for page, _, _ in layout]
        try:
            return self.request(operation, sector,
                                [(ref, first, last) for ref, (_, first, last) in zip(refs, layout)])
        finally:
            for ref in refs:
                if not self.gnttab.end_and_release(ref):
                    raise FrontendError("grant %d still mapped after the response" % ref)

    def read(self, sector, count, page=0):
        """Read ``count`` (<= 8 * pages) sectors into data pages from ``page`` on;
        returns (status, bytes)."""
        layout = []
        left = count
        while left:
            n = min(left, 8)
            layout.append((page + len(layout), 0, n - 1))
            left -= n
        status = self.rw(BLKIF_OP_READ, sector, layout)
        data = b"".join(bytes(self.data_view(p)[first * 512:(last + 1) * 512])
                        for p, first, last in layout)
        return status, data

    def write(self, sector, data, page=0):
        """Write ``data`` (a multiple of 512 bytes, <= 11 pages) at ``sector``."""
        count = len(data) // 512
        layout = []
        for i in range(0, count, 8):
            n = min(8, count - i)
            self.data_view(page + len(layout))[:n * 512] = data[i * 512:(i + n) * 512]
            layout.append((page + len(layout), 0, n - 1))
        return self.rw(BLKIF_OP_WRITE, sector, layout)

    # ------------------------------------------------------------------ teardown

    def stop_backend(self, timeout=WAIT):
        """SIGTERM blkback and wait for it (bounded); returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
                raise FrontendError("blkback ignored SIGTERM")
        return self.proc.returncode

    def close(self):
        try:
            self.stop_backend()
        finally:
            for client in (self.xs, self.toolstack_xs):
                if client is not None:
                    client.close()
            if self.daemon is not None:
                self.daemon.stop()
            if getattr(self, "socket_dir", None):
                shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.ring = None
            if getattr(self, "evtchn", None) is not None:
                self.evtchn.release()
            if getattr(self, "gnttab", None) is not None:
                self.gnttab.close()
            self.mem.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
