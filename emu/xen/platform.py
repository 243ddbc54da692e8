"""The Xen platform under one machine: pvboot playing hypervisor and dom0 toolstack
(Xen area at the top of RAM, a xenstore daemon, `xl block-attach`, one blkback process
per disk).  The firmware sees only `GuestXen`: what hypercalls would give an HVM guest.

A platform starts its own daemon and blkback processes and stops them at close(); on a
XenHost (host.py: a batch worker's dom0 that lives across guests) it is instead one
domain of that host's, with the next domain id, and close() destroys that domain.
"""
import os
import shutil
import subprocess
import tempfile
import time

from pvboot.emu.memmap import XEN_AREA_SIZE
from pvboot.emu.xen import cdmedia, toolstack
from pvboot.emu.xen.abi import XEN_PAGE_SIZE, XenbusStateInitWait
from pvboot.emu.xen.blkback import start_blkback
from pvboot.emu.xen.evtchn import EventChannels
from pvboot.emu.xen.grant_table import GrantTable
from pvboot.emu.xen.xenstored import XenstoreDaemon
from pvboot.emu.xen.xsclient import XsClient

DOMID_BACKEND = 0
DOMID_GUEST = 1
GRANT_TABLE_FRAME = 0
EVTCHN_FRAME = 1
FIRST_FREE_FRAME = 2
XENSTORE_TIMEOUT = 5.0
BACKEND_STOP_TIMEOUT = 3.0
VDEVS = tuple(f"xvd{letter}" for letter in "abcdefgh")


class XenPlatformError(Exception):
    """The platform could not be set up (one line, for the user)."""


class GuestXen:
    """What the guest's firmware may use: its xenstore connection, grant table, event
    channels (as domain 1) and frames of the Xen area for rings and bounce pages."""

    backend_domid = DOMID_BACKEND

    def __init__(self, platform):
        self._platform = platform
        self.domid = platform.domid
        self.mem = platform.mem
        self.gnttab = platform.gnttab
        self.evtchn = platform.evtchn
        self.xs = XsClient.from_socket(platform.daemon.connect_domain(self.domid),
                                       timeout=XENSTORE_TIMEOUT)

    def alloc_frame(self):
        """A free 4 KiB frame of the reserved Xen area (guest frame number)."""
        return self._platform.alloc_frame()

    def close(self):
        self.xs.close()


class XenPlatform:
    def __init__(self, mem, backend_stderr=None, socket_path=None, host=None):
        """host: a XenHost whose daemon and blkback servers to use (not with
        socket_path, which asks for a daemon of this run's own)."""
        self.mem = mem
        self.host = host if socket_path is None else None
        self.domid = DOMID_GUEST if self.host is None else self.host.new_domid()
        base = mem.xen_area_base
        self._first_frame = base // XEN_PAGE_SIZE
        self._next_frame = self._first_frame + FIRST_FREE_FRAME
        self._end_frame = self._first_frame + XEN_AREA_SIZE // XEN_PAGE_SIZE
        self.gnttab = GrantTable(mem, base + GRANT_TABLE_FRAME * XEN_PAGE_SIZE, 1)
        self.evtchn = EventChannels.create(mem, base + EVTCHN_FRAME * XEN_PAGE_SIZE,
                                           domids=(DOMID_BACKEND, self.domid))
        self.eject_watcher = None
        if self.host is not None:
            self.socket_dir = None       # the host's; each backend makes its own run dir
            self.socket_path = self.host.socket_path
            self.daemon, self.xs = self.host.daemon, self.host.xs
            # The toolstack's transactions go to the daemon in this process directly.
            self.toolstack_xs = self.daemon
        else:
            # Unix socket paths are limited to 107 bytes: keep the directory short.
            # socket_path: where the user asked for it (--xenstore-socket), for
            # xenstore-utils and `pvboot cd` from outside the run.
            self.socket_dir = tempfile.mkdtemp(prefix="pvboot-xs-")
            self.socket_path = socket_path or os.path.join(self.socket_dir, "xenstored")
            self.daemon = XenstoreDaemon(self.socket_path).start()
            self.xs = XsClient.from_socket(self.daemon.connect(), timeout=XENSTORE_TIMEOUT)
            self.toolstack_xs = self.xs
        toolstack.make_domain(self.toolstack_xs, self.domid)
        self.backends = []               # (devid, Popen, stderr file)
        self.backend_stderr = backend_stderr
        self.guest = None

    def alloc_frame(self):
        if self._next_frame >= self._end_frame:
            raise XenPlatformError("Xen area exhausted (too many PV disks)")
        frame = self._next_frame
        self._next_frame += 1
        return frame

    def attach_disk(self, image_path, read_only=False, persist=False, start_backend=True,
                    device_type="disk", fmt=None, save_overlay=None, image_locked=False):
        """`xl block-attach` for the next xvdX and start its blkback; returns the devid.

        fmt: the image's QEMU format; a raw file (None or "raw") is a "phy" vbd whose
        params is the path, any other a "qdisk" vbd whose params is "format:path", as
        libxl writes them.  save_overlay: keep the guest's writes in this qcow2 file.
        image_locked: the caller holds the image's lock for the run (blkback takes none).
        start_backend=False writes the xenstore entries but starts no blkback (pvboot
        boot --no-backend): the vbd is there and nobody serves it, the case of a driver
        domain that never came up; the frontend then waits for InitWait in vain."""
        index = len(self.backends)
        if index >= len(VDEVS):
            raise XenPlatformError(f"at most {len(VDEVS)} PV disks")
        vdev = VDEVS[index]
        devid = toolstack.vdev_to_devid(vdev)
        # A CD (device_type "cdrom") may be empty: params "" (emu/xen/cdmedia.py).
        params, backend_type = (os.path.abspath(image_path) if image_path else ""), "phy"
        if fmt not in (None, "raw"):
            params, backend_type = f"{fmt}:{params}", "qdisk"
        toolstack.attach_disk(self.toolstack_xs, devid, params, "r" if read_only or device_type == "cdrom"
                              else "w", dev=vdev, device_type=device_type,
                              backend_type=backend_type, frontend_domid=self.domid)
        if device_type == "cdrom" and self.eject_watcher is None:
            self.eject_watcher = cdmedia.EjectWatcher(self.socket_path, self.domid)
        if not start_backend:
            self.backends.append((devid, None, None))
            return devid
        err = self.backend_stderr or tempfile.TemporaryFile(mode="w+")
        start = start_blkback if self.host is None else self.host.start_blkback
        proc = start(self.mem, self.gnttab, self.evtchn, self.socket_path, devid,
                     frontend_domid=self.domid, read_only=read_only, persist=persist,
                     stderr=err, run_dir=self.socket_dir, save_overlay=save_overlay,
                     lock=not image_locked)
        self.backends.append((devid, proc, err))
        return devid

    def wait_backend(self, devid, timeout):
        """Wait (bounded) until blkback of ``devid`` is in InitWait; returns None, or the
        reason it will not get there (its error node, or how it ended)."""
        be = toolstack.backend_path(DOMID_BACKEND, self.domid, devid)
        proc = next(p for d, p, _e in self.backends if d == devid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.xs.read_int(be + "/state", 0) >= XenbusStateInitWait:
                return None
            if proc is None or proc.poll() is not None:
                break
            time.sleep(0.005)
        error = self.xs.read(be + "/error")
        if error:
            return error.strip()
        if proc is not None and proc.poll() is not None:
            return f"blkback {devid} exited with status {proc.returncode}"
        return f"blkback {devid} did not reach InitWait within {timeout:g} s"

    def backend_errors(self):
        """What the backends wrote on stderr (for error reports)."""
        lines = []
        for devid, _proc, err in self.backends:
            if err is None or err is self.backend_stderr or not hasattr(err, "seek"):
                continue
            err.seek(0)
            text = err.read().strip()
            if text:
                lines.append(f"blkback {devid}: {text}")
        return lines

    def guest_interface(self):
        if self.guest is None:
            self.guest = GuestXen(self)
        return self.guest

    def stop_backends(self):
        """Ask every backend to stop (SIGTERM) without waiting: they wind down while the
        caller does other work, and close() reaps them."""
        for _devid, proc, _err in self.backends:
            if proc is not None and proc.poll() is None:
                proc.terminate()

    def close(self):
        """Stop the backends (bounded), the daemon, and free the event channels."""
        if self.eject_watcher is not None:
            self.eject_watcher.close()
            self.eject_watcher = None
        self.stop_backends()
        for _devid, proc, err in self.backends:
            if proc is None:
                continue
            try:
                proc.wait(BACKEND_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if self.host is not None:
                self.host.give_back(proc)
            if err is not self.backend_stderr:
                err.close()
        if self.guest is not None:
            self.guest.close()
        if self.host is not None:
            self.host.destroy_domain(self.domid)
            self.host.expect_disks(sum(proc is not None for _d, proc, _e in self.backends))
        else:
            self.xs.close()
            self.daemon.stop()
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        self.evtchn.release()
