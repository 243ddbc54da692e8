"""`pvboot image`: the qemu-img steps a boot test uses daily, with pvboot's error contract.

info, create (optionally as an overlay on --backing), convert, and qcow2 internal
snapshots (create, list, apply, delete) so a test can pin a disk state and return to
it.  Everything runs qemu-img (bounded in time); a failure is one line and exit 2.
ConsoleSnapshots is `pvboot boot --snapshot-on`: the same snapshots, live, in a run.
"""
import argparse
import os
import re
import sys

from pvboot.emu.diskspec import normalize_format
from pvboot.emu.storage.daemon import StorageError, qmp_call
from pvboot.emu.storage.probe import qemu_img, resolve_format

DESCRIPTION = __doc__.split("\n\n")[0]
EXIT_OK = 0
EXIT_USAGE = 2
# Long operations (convert, commit of big images) get longer than a probe.
WORK_TIMEOUT = 600.0
_SIZE = re.compile(r"^[1-9][0-9]{0,15}[kKMGT]?$")
MAX_SIZE = 1 << 46          # 64 TiB: beyond any disk a BIOS can address


def _size(text):
    if not _SIZE.match(text):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64M, 2G, 1048576)")
    value = int(text.rstrip("kKMGT"))
    value <<= {"k": 10, "K": 10, "M": 20, "G": 30, "T": 40}.get(text[-1], 0)
    if value % 512 or value > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"size {text}: must be whole 512-byte sectors, at "
                                         f"most {MAX_SIZE >> 40} TiB")
    return value


def _format(text):
    try:
        return normalize_format(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(parser):
    sub = parser.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    p = sub.add_parser("info", help="what the image is, with its backing chain")
    p.add_argument("image")
    p.add_argument("--json", action="store_true", help="qemu-img's JSON")
    p = sub.add_parser("create", help="a new image, or an overlay on --backing")
    p.add_argument("image")
    p.add_argument("size", nargs="?", type=_size, help="e.g. 64M (default: the backing's)")
    p.add_argument("--format", type=_format, default="qcow2", help="default qcow2")
    p.add_argument("--backing", metavar="IMAGE", help="copy-on-write on this image")
    p.add_argument("--backing-format", type=_format, metavar="FMT",
                   help="the backing image's format (default: read from its header)")
    p = sub.add_parser("convert", help="copy an image into another format")
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("--format", type=_format, default="qcow2", help="output format (qcow2)")
    p.add_argument("--source-format", type=_format, metavar="FMT",
                   help="default: read from the header")
    p = sub.add_parser("snapshot", help="qcow2 internal snapshots")
    p.add_argument("action", choices=("create", "list", "apply", "delete"))
    p.add_argument("image")
    p.add_argument("name", nargs="?")


def run(args):
    """Carry out `pvboot image ...`; returns the exit status."""
    try:
        out = ACTIONS[args.image_command](args)
    except StorageError as e:
        print(f"pvboot image: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if out:
        sys.stdout.write(out)
    return EXIT_OK


def info(args):
    return qemu_img(["info", "--backing-chain", "-U"]
                    + (["--output=json"] if args.json else []) + ["--", args.image])


def create(args):
    argv = ["create", "-q", "-f", args.format]
    if args.backing is not None:
        fmt, _info = resolve_format(args.backing, args.backing_format)
        argv += ["-b", os.path.abspath(args.backing), "-F", fmt]
    elif args.size is None:
        raise StorageError("create: give a SIZE or --backing")
    argv += ["--", args.image]
    if args.size is not None:
        argv.append(str(args.size))
    return qemu_img(argv, WORK_TIMEOUT)


def convert(args):
    fmt, _info = resolve_format(args.source, args.source_format)
    return qemu_img(["convert", "-f", fmt, "-O", args.format, "--", args.source, args.dest],
                    WORK_TIMEOUT)


SNAPSHOT_FLAGS = {"create": "-c", "apply": "-a", "delete": "-d"}


def snapshot(args):
    fmt, _info = resolve_format(args.image)
    if fmt != "qcow2":
        raise StorageError(f"{args.image}: internal snapshots need a qcow2 image, not {fmt}")
    if args.action == "list":
        if args.name is not None:
            raise StorageError("snapshot list takes no NAME")
        return qemu_img(["snapshot", "-U", "-l", "--", args.image])
    if not args.name:
        raise StorageError(f"snapshot {args.action} needs a NAME")
    return qemu_img(["snapshot", SNAPSHOT_FLAGS[args.action], args.name, "--", args.image],
                    WORK_TIMEOUT)


ACTIONS = {"info": info, "create": create, "convert": convert, "snapshot": snapshot}


# -- live snapshots during a boot (pvboot boot --snapshot-on REGEX=NAME) --------------------
_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")


class ConsoleSnapshots:
    """Take an internal snapshot NAME of a run's writable qcow2 layer the first time the
    console matches REGEX, over QMP to the storage daemon serving it.  The guest is
    stopped while the console listener runs, and the firmware waits for every disk
    request it sends, so no request is in flight: the snapshot is what the guest had
    written by then."""

    def __init__(self, specs):
        self.pending = []
        self.messages = []
        self.qmp_path = None
        for spec in specs:
            regex, sep, name = spec.rpartition("=")
            if not sep or not regex:
                raise ValueError(f"--snapshot-on {spec!r}: give REGEX=NAME")
            if not _SNAPSHOT_NAME.match(name):
                raise ValueError(f"--snapshot-on {spec!r}: NAME must be 1-64 of A-Z a-z 0-9 _ . + -")
            try:
                self.pending.append((re.compile(regex), name))
            except re.error as e:
                raise ValueError(f"--snapshot-on {spec!r}: bad regular expression: {e}") from None
        names = [name for _regex, name in self.pending]
        if len(set(names)) != len(names):
            raise ValueError("--snapshot-on: each NAME once")

    def check(self, console):
        """Snapshot for every pending REGEX that ``console`` (the text so far) matches."""
        for item in list(self.pending):
            regex, name = item
            if not regex.search(console):
                continue
            self.pending.remove(item)
            if self.qmp_path is None:
                self.messages.append(f"snapshot {name!r} failed: the image's NBD server has "
                                     "no QMP monitor (needs qemu-storage-daemon)")
                continue
            try:
                qmp_call(self.qmp_path, "blockdev-snapshot-internal-sync",
                         {"device": "disk", "name": name})
                self.messages.append(f"snapshot {name!r} taken when the console matched "
                                     f"{regex.pattern!r}")
            except StorageError as e:
                self.messages.append(f"snapshot {name!r} failed: {e}")
