"""The firmware's side of floppy media changes: a xenstore watch on the drive's
`params` node (emu/xen/floppymedia.py), looked at without blocking before each floppy
operation only (no polling between calls).  A new path is opened by the host driver
(firmware/hostdisk.py) and read from the next operation on.  INT 13h answers as
SeaBIOS does whatever happened (AH=15h: no change line; AH=16h: always "changed"):
docs/floppy.md.
"""
from pvboot.emu.xen.floppymedia import floppy_params_path
from pvboot.emu.xen.xsclient import XenstoreError
from pvboot.firmware.cdmedia import start_watch


class FloppyMediaWatch:
    """Watches floppy drive `unit`'s params; `poll()` -> the new path ("" = empty) or None."""

    def __init__(self, xs, domid, unit, warn):
        self.xs = xs
        self.warn = warn
        self.path = floppy_params_path(domid, unit)
        self.token = f"floppymedia-{unit}"
        self.params = xs.read(self.path, "")
        start_watch(xs, self.path, self.token)

    def poll(self):
        xs = self.xs
        fired = False
        try:
            event = xs.poll_watch()
            while event is not None:
                fired = fired or event[1] == self.token
                event = xs.poll_watch()
            if not fired:
                return None
            params = xs.read(self.path, "") or ""
        except XenstoreError as exc:
            self.warn(f"floppy media watch: {exc}")
            return None
        if params == self.params:
            return None
        self.params = params
        return params
