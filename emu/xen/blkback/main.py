"""blkback's process entry point: the command line, the resources it maps, the exit status.

It exits 0 on SIGTERM/SIGINT, when xenstore closes the connection, or when its backend
directory is removed or the device is detached; 2 on a usage error; 3 when its
resources cannot be used (guest memory, event channel page, xenstore, backend nodes,
disk image); 1 on an internal error.  Every failure is one line on stderr; nothing on
stdout.
"""

import argparse
import os
import signal
import sys

from ..evtchn import EventChannels
from ..grant_table import GrantTable, GuestFrames
from ..toolstack import ToolstackError, vdev_to_devid
from ..xsclient import XenstoreClosed, XenstoreError, XsClient
from .blkio import err as _err
from .xenbus import Blkback, SetupError, StopServing

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_SETUP = 3


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
                    "ring from a disk image (raw, or qcow2, vmdk, vdi, vhdx, vpc through qemu-storage-daemon).  Exit status: 0 stopped cleanly (signal, "
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
    p.add_argument("--run-dir", metavar="DIR",
                   help="private directory for the storage daemon's sockets and the "
                        "throwaway overlay of a non-raw image (default: a new one in $TMPDIR)")
    p.add_argument("--save-overlay", metavar="FILE",
                   help="keep guest writes in the qcow2 overlay FILE (backed by the image) "
                        "instead of a throwaway one")
    p.add_argument("--no-lock", action="store_true",
                   help="do not lock a raw image (the process that started this backend "
                        "holds the lock for the run)")
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
    return serve(args)


def serve(args):
    """The backend for parsed options (main's, or spawn.py's for a forked child, which
    skips building the parser on its way to InitWait); returns the exit status."""
    stop = []
    wake_r, wake_w = install_stop_signals(stop)
    return serve_device(args, wake_r, lambda: stop[0] if stop else None)


def install_stop_signals(stop):
    """SIGTERM and SIGINT append their name to `stop` and make the returned pipe's
    read end readable (the main loop waits on it); SIGPIPE is ignored."""
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
    return wake_r, wake_w


def serve_device(args, wake_fd, should_stop, control_fd=None, on_control=None):
    """Serve the one vbd `args` names until should_stop() says why, or it is removed;
    returns the exit status.  Everything it opened (the guest memory mapping, the
    event channel fds, the xenstore connection, the image) is closed on return, which
    is what lets a long-lived backend (server.py) serve guest after guest."""
    frames = grants = evtchn = xs = backend = None
    try:
        try:
            frames, grants, evtchn, xs = _open_resources(args)
        except SetupError as e:
            _err(str(e))
            return EXIT_SETUP
        backend = Blkback(xs, grants, evtchn, args.devid, frontend_domid=args.frontend_domid,
                          backend_domid=args.backend_domid, read_only=args.read_only,
                          persist=args.persist, verbose=args.verbose, run_dir=args.run_dir,
                          save_overlay=args.save_overlay, lock=not args.no_lock)
        try:
            backend.setup()
        except SetupError as e:
            _err("vbd %d: %s" % (args.devid, e))
            return EXIT_SETUP
        except StopServing as e:
            _err("vbd %d: %s" % (args.devid, e))
            return EXIT_SETUP
        reason = backend.run(wake_fd, should_stop, control_fd=control_fd, on_control=on_control)
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
        if backend is not None:
            backend.close_storage()
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
