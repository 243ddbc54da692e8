"""Removable media of a PV CD-ROM, dom0's side: the backend following `params`, and the
toolstack's disc changes (`xl cd-insert` / `xl cd-eject`) and eject watch (libxl).

Details: docs/cdrom.md.
"""
import os
import threading

from ..diskimage import DiskImage, DiskImageError
from .xsclient import XenstoreClosed, XenstoreError, XenstoreTimeout, XsClient

CDROM_SECTOR_SIZE = 2048
MEDIA_REQ_SUP_KEY = "media-req-sup"
MEDIA_REQ_KEY = "media-req"
MEDIA_REQ_LOCK = "lock"
EJECT_KEY = "eject"
EJECT_REQUEST = "eject"
WATCH_POLL_SECONDS = 0.5
STOP_TIMEOUT = 3.0


class MediaLocked(Exception):
    """The guest holds the drive locked: the disc stays."""


class MediaError(Exception):
    """The CD cannot be found or changed (one line for the user)."""


def image_sectors(image):
    """512-byte sectors of a backend's image; 0 for an empty drive."""
    return 0 if image is None else image.sectors


def is_locked(xs, frontend_path):
    return (xs.read(frontend_path + "/" + MEDIA_REQ_KEY, "") or "").strip() == MEDIA_REQ_LOCK


def follow_params(backend):
    """blkback: take up a new `params` (a disc change), unless the guest holds a lock."""
    xs, be = backend.xs, backend.be_path
    params = xs.read(be + "/params", "") or ""
    if params == backend.params:
        return
    if backend.fe_path and is_locked(xs, backend.fe_path):
        backend._write_error("media change refused: the guest has locked the drive")
        xs.write(be + "/params", backend.params)
        backend.log("media change to %r refused: locked" % params)
        return
    old = backend.image
    try:
        backend.image = DiskImage(params, read_only=True) if params else None
    except (DiskImageError, OSError) as e:
        backend._write_error("opening %s: %s" % (params, e))
        backend.image = None
    if old is not None:
        old.close()
    backend.params = params
    xs.write(be + "/sectors", str(image_sectors(backend.image)))
    backend.log("media: %s (%d sectors)" % (params or "none", image_sectors(backend.image)))


def find_cdroms(xs, frontend_domid=1):
    """[(devid, frontend path, backend path)] of the domain's CD vbds, in devid order."""
    base = "/local/domain/%d/device/vbd" % frontend_domid
    try:
        names = xs.directory(base)
    except XenstoreError:
        return []
    found = []
    for name in sorted(names, key=lambda n: int(n) if n.isdigit() else -1):
        fe = "%s/%s" % (base, name)
        if (xs.read(fe + "/device-type", "") or "") != "cdrom":
            continue
        be = xs.read(fe + "/backend")
        if be:
            found.append((int(name), fe, be))
    return found


def change_media(xs, frontend_path, backend_path, image_path, force=False):
    """Insert the disc `image_path` ("" or None: eject) as `xl cd-insert` does: a new
    `params` for the backend.  MediaLocked while the guest holds a lock (unless
    `force`: the guest's own eject request)."""
    params = os.path.abspath(image_path) if image_path else ""
    if params and not os.path.isfile(params):
        raise MediaError("%s: no such file" % image_path)
    if not force and is_locked(xs, frontend_path):
        raise MediaLocked("the guest has locked the drive (%s/%s = lock)"
                          % (frontend_path, MEDIA_REQ_KEY))
    xs.write(backend_path + "/params", params)


class EjectWatcher:
    """libxl's disk eject watch for one domain's CDs, on a thread of its own."""

    def __init__(self, socket_path, frontend_domid=1):
        self.xs = XsClient.connect(socket_path, timeout=5.0)
        self.base = "/local/domain/%d/device/vbd" % frontend_domid
        self.frontend_domid = frontend_domid
        self.ejects = 0
        self._stop = threading.Event()
        self.xs.watch(self.base, "eject-watch")
        self._thread = threading.Thread(target=self._run, name="cd-eject-watch", daemon=True)
        self._thread.start()

    def _run(self):
        xs = self.xs
        while not self._stop.is_set():
            try:
                path, _token = xs.read_watch(WATCH_POLL_SECONDS)
            except XenstoreTimeout:
                continue
            except (XenstoreClosed, XenstoreError):
                return
            if path.endswith("/" + EJECT_KEY):
                try:
                    self._honour(path)
                except XenstoreError:
                    return

    def _honour(self, eject_path):
        xs = self.xs
        if (xs.read(eject_path, "") or "") != EJECT_REQUEST:
            return
        frontend_path = eject_path[:-len(EJECT_KEY) - 1]
        backend_path = xs.read(frontend_path + "/backend")
        if backend_path:
            change_media(xs, frontend_path, backend_path, "", force=True)
            self.ejects += 1
        xs.write(eject_path, "")

    def close(self):
        self._stop.set()
        self._thread.join(STOP_TIMEOUT)
        self.xs.close()
