"""The toolstack's part of attaching a virtual disk: what `xl block-attach` writes.

Both halves of a vbd are created in one xenstore transaction, as libxl does; detach
follows libxl's generic remove (online=0, Closing, bounded wait for Closed, remove).
The nodes written: docs/xen.md.
"""

from .abi import XenbusStateClosed, XenbusStateClosing, XenbusStateInitialising

__all__ = ["make_domain", "attach_disk", "detach_disk", "vdev_to_devid", "frontend_path", "backend_path",
           "ToolstackError", "DOMID_GUEST", "DOMID_BACKEND"]

DOMID_GUEST = 1
DOMID_BACKEND = 0

XEN_VBD_MAJOR = 202          # xvd*: docs/misc/vbd-interface.txt
_EXTENDED_VBD = 1 << 28      # xvd disks past xvdp use the extended encoding


class ToolstackError(Exception):
    """The device cannot be attached or detached as asked (one-line message)."""


def vdev_to_devid(dev):
    """'xvda' -> 51712 (202<<8), 'xvdb' -> 51728, ...; partitions ('xvda1') add their number."""
    name = dev[3:] if dev.startswith("xvd") else None
    letters = "".join(c for c in (name or "") if c.isalpha())
    digits = (name or "")[len(letters):]
    if not letters or not letters.islower() or (digits and not digits.isdigit()):
        raise ToolstackError("unsupported virtual disk name %r (expected xvdX)" % dev)
    index = 0
    for c in letters:
        index = index * 26 + (ord(c) - ord("a") + 1)
    index -= 1
    part = int(digits) if digits else 0
    if index < 16 and part < 16:
        return (XEN_VBD_MAJOR << 8) | (index << 4) | part
    if part >= 256 or index >= (1 << 20):
        raise ToolstackError("virtual disk name %r out of range" % dev)
    return _EXTENDED_VBD | (index << 8) | part


def frontend_path(frontend_domid, devid):
    return "/local/domain/%d/device/vbd/%d" % (frontend_domid, devid)


def backend_path(backend_domid, frontend_domid, devid):
    return "/local/domain/%d/backend/vbd/%d/%d" % (backend_domid, frontend_domid, devid)


def make_domain(xs, domid):
    """The per-domain directories libxl__domain_make creates before any device:
    /local/domain/<domid> (dom0's, the guest may read) and its device/ and data/
    subdirectories, which the guest owns.  Existing nodes are left alone."""
    home = "/local/domain/%d" % domid

    subs = ["%s/%s" % (home, sub) for sub in ("device", "data")]

    def body(t):
        # Pipelined (XsClient.read_many, update_many): one round trip per step.
        found = t.read_many([home] + subs)
        ops = []
        if found[0] is None:
            ops += [("mkdir", home), ("set_perms", home, ["n0", "r%d" % domid]),
                    ("write", home + "/domid", str(domid))]
        for path, value in zip(subs, found[1:]):
            if value is None:
                ops += [("mkdir", path), ("set_perms", path, ["n%d" % domid])]
        if ops:
            t.update_many(ops)
    xs.transact(body)
    return home


def attach_disk(xs, devid=None, image_path=None, mode="w", *, frontend_domid=DOMID_GUEST,
                backend_domid=DOMID_BACKEND, dev="xvda", device_type="disk",
                backend_type="phy"):
    """Create the vbd's frontend and backend nodes in one transaction; returns
    (frontend path, backend path).  ``xs`` is a dom0 XsClient.  ``devid`` defaults to
    the number of ``dev``; ``mode`` is 'w' or 'r'."""
    if image_path is None or (image_path == "" and device_type != "cdrom"):
        # An empty params is a CD drive without a disc; a disk needs its image.
        raise ToolstackError("no disk image given")
    if mode not in ("w", "r"):
        raise ToolstackError("disk mode must be 'w' or 'r', not %r" % (mode,))
    if devid is None:
        devid = vdev_to_devid(dev)
    fe = frontend_path(frontend_domid, devid)
    be = backend_path(backend_domid, frontend_domid, devid)
    front = [
        ("backend-id", str(backend_domid)),
        ("state", str(int(XenbusStateInitialising))),
        ("virtual-device", str(devid)),
        ("device-type", device_type),
        ("trusted", "1"),
    ]
    back = [
        ("params", str(image_path)),
        ("frontend-id", str(frontend_domid)),
        ("online", "1"),
        ("removable", "1" if device_type == "cdrom" else "0"),
        ("bootable", "1"),
        ("state", str(int(XenbusStateInitialising))),
        ("dev", dev),
        ("type", backend_type),
        ("mode", mode),
        ("device-type", device_type),
        ("discard-enable", "0"),
        ("specification", "xen"),
    ]
    # Owner first (its entry's letter is what everyone else gets: none), then the peer.
    frontend_perms = ["n%d" % frontend_domid, "r%d" % backend_domid]
    backend_perms = ["n%d" % backend_domid, "r%d" % frontend_domid]

    ops = ([("mkdir", fe), ("set_perms", fe, frontend_perms), ("write", fe + "/backend", be)]
           + [("write", "%s/%s" % (fe, key), value) for key, value in front]
           + [("mkdir", be), ("set_perms", be, backend_perms), ("write", be + "/frontend", fe)]
           + [("write", "%s/%s" % (be, key), value) for key, value in back])

    def body(t):
        if any(value is not None for value in t.read_many([fe, be])):
            raise ToolstackError("vbd %d of domain %d already exists in xenstore"
                                 % (devid, frontend_domid))
        t.update_many(ops)      # every node in one round trip

    xs.transact(body)
    return fe, be


def detach_disk(xs, devid, *, frontend_domid=DOMID_GUEST, backend_domid=DOMID_BACKEND,
                timeout=5.0):
    """Ask the backend to close (online=0, state Closing), wait up to ``timeout`` for
    its state to reach Closed (or its directory to vanish), then remove both halves.
    Returns True if the backend closed in time, False if it had to be forced."""
    fe = frontend_path(frontend_domid, devid)
    be = backend_path(backend_domid, frontend_domid, devid)
    if not xs.exists(be) and not xs.exists(fe):
        raise ToolstackError("vbd %d of domain %d does not exist" % (devid, frontend_domid))

    def request_close(t):
        if t.exists(be):
            t.write(be + "/online", "0")
            t.write(be + "/state", str(int(XenbusStateClosing)))

    xs.transact(request_close)
    token = "detach-%d-%d" % (frontend_domid, devid)
    closed = False
    xs.watch(be + "/state", token)
    try:
        def backend_closed():
            state = xs.read(be + "/state")
            return state is None or state.strip() == str(int(XenbusStateClosed))
        try:
            closed = xs.wait_for(backend_closed, timeout, "backend %s to close" % be)
        except TimeoutError:
            closed = False
    finally:
        try:
            xs.unwatch(be + "/state", token)
        except Exception:
            pass     # the connection may be gone; the removal below reports that

    def remove(t):
        for path in (fe, be):
            if t.exists(path):
                t.rm(path)

    xs.transact(remove)
    return bool(closed)
