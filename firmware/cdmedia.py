"""The firmware's side of CD media changes over xenbus (the PV CD's removable medium).

Three xenstore conversations, as the toolstacks have them:
- a new disc (or none): the backend reopens `params` and rewrites `sectors`; the
  frontend watches `<backend>/sectors` and reports "media changed" once (AH=06h);
- the guest's lock (INT 13h AH=45h): Solaris xVM's `media-req` on the frontend, "lock"
  while the lock count is above zero, "none" after; the backend (media-req-sup=1)
  refuses outside ejects while it says "lock";
- the guest's eject (AH=46h): libxl's `eject` key on the frontend set to "eject"; the
  toolstack (emu/xen/cdmedia.py) empties the drive and acknowledges with "".
The watch is looked at (without blocking) before each CD read only.
"""
from pvboot.emu.xen.xsclient import XenstoreError

EJECT_KEY = "eject"
EJECT_REQUEST = "eject"
MEDIA_REQ_KEY = "media-req"
MEDIA_REQ_LOCK = "lock"
MEDIA_REQ_NONE = "none"
# Bound on waiting for the watch's first (registration) event.
FIRST_EVENT_TIMEOUT = 2.0


def start_watch(xs, path, token):
    """Watch `path`; xenstored fires every new watch once: take that event out of the way."""
    xs.watch(path, token)
    try:
        while xs.read_watch(FIRST_EVENT_TIMEOUT)[1] != token:
            pass
    except XenstoreError:
        pass


class MediaWatch:
    """The media state of one PV CD frontend (`front`: a connected XenBlkFront)."""

    def __init__(self, xs, front):
        self.xs = xs
        self.front = front
        self.token = f"cdmedia-{front.devid}"
        self.sectors_path = front.backend_path + "/sectors"
        self._changed = False
        start_watch(xs, self.sectors_path, self.token)

    def changed(self):
        """True once after the backend swapped the disc (front.sectors is updated)."""
        xs = self.xs
        try:
            event = xs.poll_watch()
            while event is not None:
                if event[1] == self.token:
                    self._changed = True
                event = xs.poll_watch()
            if self._changed:
                self.front.sectors = int(xs.read(self.sectors_path, "0"))
        except (XenstoreError, ValueError) as exc:
            self.front.bios.warn(f"vbd {self.front.devid}: media watch: {exc}")
            self.front.sectors = 0
        changed, self._changed = self._changed, False
        if changed:
            self.front.trace(f"cdmedia: vbd {self.front.devid} media changed, "
                             f"{self.front.sectors} sectors")
        return changed

    def publish_lock(self, locked):
        """The guest's lock, for the toolstack to see (and honour)."""
        self._write(MEDIA_REQ_KEY, MEDIA_REQ_LOCK if locked else MEDIA_REQ_NONE)

    def request_eject(self):
        """Ask the toolstack to eject the disc; True when the request is out."""
        return self._write(EJECT_KEY, EJECT_REQUEST)

    def _write(self, key, value):
        try:
            self.xs.write(f"{self.front.frontend_path}/{key}", value)
        except XenstoreError as exc:
            self.front.bios.warn(f"vbd {self.front.devid}: writing {key}: {exc}")
            return False
        return True
