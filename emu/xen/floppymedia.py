"""Floppy media changes, the toolstack's side: the floppy has no Xen PV device (the
firmware's host driver serves it), so the channel is one xenstore node per drive,
`/local/domain/<domid>/pvboot/floppy/<unit>/params`, the image's absolute path ("" =
no diskette).  dom0 owns it; the guest's domain may read and watch it (it inherits
/local/domain/<domid>'s permissions), as qemu-xen-traditional watched a floppy vbd's
`params`.  Who writes it: the run at start, `pvboot cd insert|eject --drive floppy`,
or Debian's xenstore-write.  The rules: docs/floppy.md.
"""
import os

FLOPPY_PARAMS = "/local/domain/%d/pvboot/floppy/%d/params"


class FloppyMediaError(Exception):
    """No such floppy drive or image (one line for the user)."""


def floppy_params_path(domid, unit):
    return FLOPPY_PARAMS % (domid, unit)


def publish_floppy(xs, domid, unit, image_path):
    """The run's start: the drive and the diskette in it, for outside changes."""
    xs.write(floppy_params_path(domid, unit), os.path.abspath(image_path) if image_path else "")


def change_floppy(xs, domid, unit, image_path):
    """Insert `image_path` ("" or None: eject) into floppy drive `unit` of a run."""
    path = floppy_params_path(domid, unit)
    if xs.read(path) is None:
        raise FloppyMediaError("no floppy drive %d (was the run started with --floppy?)" % unit)
    params = os.path.abspath(image_path) if image_path else ""
    if params and not os.path.isfile(params):
        raise FloppyMediaError("%s: no such file" % image_path)
    xs.write(path, params)
