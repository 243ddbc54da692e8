"""CD-ROM drives on the command line: `--cdrom ISO`, xl's `--disk ISO,devtype=cdrom`,
`--boot cd`, and `pvboot cd eject|insert RUNDIR [ISO]`, which changes the disc of a
running guest as `xl cd-eject` / `xl cd-insert` do: a new `params` on the CD's backend
in the run's xenstore (RUNDIR: the socket `--xenstore-socket` named, or its directory).

`--drive floppy` changes the diskette of floppy drive 00h the same way (a run started
with --floppy and --xenstore-socket; emu/xen/floppymedia.py, docs/floppy.md).

Exit status of `pvboot cd`: 0 done, 1 refused (the guest holds the drive locked), 2 bad
input (no such run, no CD in it, no such ISO).
"""
import os
import stat
import sys

from pvboot.emu.diskspec import DiskSpecError, parse_disk_spec
from pvboot.emu.xen.cdmedia import MediaError, MediaLocked, change_media, find_cdroms
from pvboot.emu.xen.floppymedia import FloppyMediaError, change_floppy
from pvboot.emu.xen.xsclient import XenstoreError, XsClient

DESCRIPTION = __doc__
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
SOCKET_NAME = "xenstored"
EXTSTART_CD = 0xE0
MAX_SOCKET_PATH = 107
FLOPPY_DOMID = 1          # the guest's domain, as find_cdroms assumes


def cd_boot_order(boot_from, cdrom, planned, floppy):
    """The BIOS boot order (drive numbers) for `boot_from`; None: the BIOS's default.
    --boot cd tries the CD, then the first hard disk, then the floppy, as SeaBIOS goes
    on to the next device when the CD does not boot."""
    if boot_from == "floppy":
        return (0x00,)
    if boot_from != "cd":
        return None
    if cdrom is None:
        raise CdInputError("--boot cd needs --cdrom ISO (or a --disk ...,devtype=cdrom)")
    return (EXTSTART_CD,) + ((0x80,) if planned else ()) + ((0x00,) if floppy else ())


class CdInputError(ValueError):
    """Bad CD-ROM input (one line)."""


def split_cdrom_specs(specs):
    """(the --disk specs that are not CDs, the CD's ISO or None, its type "xenbus" or
    "ioemu"): xl's `devtype=cdrom`, `cdrom` and `VDEV:cdrom` forms (emu/diskspec.py),
    with `type=ioemu` for the emulated ATAPI drive only.  A spec that does not parse is
    left with the disks: the disk plan reports it."""
    disks, cdroms, cd_type = [], [], "xenbus"
    for spec in specs or ():
        try:
            parsed = parse_disk_spec(str(spec))
        except DiskSpecError:
            parsed = None
        if parsed is None or not parsed.cdrom:
            disks.append(spec)
            continue
        cdroms.append(parsed.image)
        cd_type = parsed.type
    if len(cdroms) > 1:
        raise CdInputError("one CD-ROM drive only (two --disk ...,devtype=cdrom given)")
    return disks, (cdroms[0] if cdroms else None), cd_type


def check_xenstore_socket(path):
    """--xenstore-socket PATH: a new unix socket in an existing directory."""
    full = os.path.abspath(path)
    if not os.path.isdir(os.path.dirname(full)):
        raise CdInputError(f"--xenstore-socket {path}: no directory {os.path.dirname(full)}")
    if os.path.lexists(full):
        raise CdInputError(f"--xenstore-socket {path}: already exists (another run's socket?)")
    if len(os.fsencode(full)) > MAX_SOCKET_PATH:
        raise CdInputError(f"--xenstore-socket {path}: longer than a unix socket path may be "
                           f"({MAX_SOCKET_PATH} bytes)")


def socket_of(rundir):
    """The xenstore socket of a run: RUNDIR itself or RUNDIR/xenstored."""
    path = os.path.join(rundir, SOCKET_NAME) if os.path.isdir(rundir) else rundir
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise CdInputError(f"{rundir}: no pvboot run there (no xenstore socket)") from None
    if not stat.S_ISSOCK(mode):
        raise CdInputError(f"{path}: not a xenstore socket")
    return path


def add_arguments(parser):
    parser.add_argument("action", choices=("eject", "insert"))
    parser.add_argument("rundir", metavar="RUNDIR",
                        help="the run's --xenstore-socket, or the directory holding it")
    parser.add_argument("iso", nargs="?", metavar="ISO", help="the disc (or diskette image) to insert")
    parser.add_argument("--devid", type=int, metavar="N",
                        help="the CD's vbd device id (default: the first CD)")
    parser.add_argument("--drive", choices=("cd", "floppy"), default="cd",
                        help="the CD (default) or floppy drive 00h")


def run(args):
    try:
        if args.action == "insert" and not args.iso:
            raise CdInputError("insert needs " + ("a floppy image" if args.drive == "floppy"
                                                  else "an ISO"))
        if args.action == "eject" and args.iso:
            raise CdInputError("eject takes no ISO")
        path = socket_of(args.rundir)
        try:
            xs = XsClient.connect(path, timeout=5.0)
        except XenstoreError as exc:
            raise CdInputError(f"{path}: {exc}") from None
        with xs:
            if args.drive == "floppy":
                change_floppy(xs, FLOPPY_DOMID, 0, args.iso or "")
                return EXIT_OK
            cds = [cd for cd in find_cdroms(xs) if args.devid in (None, cd[0])]
            if not cds:
                raise CdInputError(f"{args.rundir}: no CD-ROM drive"
                                   + (f" with devid {args.devid}" if args.devid is not None else ""))
            devid, frontend_path, backend_path = cds[0]
            change_media(xs, frontend_path, backend_path, args.iso or "")
    except (CdInputError, MediaError, FloppyMediaError) as exc:
        print(f"pvboot cd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MediaLocked as exc:
        print(f"pvboot cd: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except XenstoreError as exc:
        print(f"pvboot cd: error: xenstore: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
