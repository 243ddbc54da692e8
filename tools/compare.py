"""The `pvboot compare` command line: the firmware paths comparison
(tools/comparepaths.py) or, with --with-qemu, QEMU + SeaBIOS against pvboot
(tools/withqemu.py).
"""
import sys

from pvboot.tools import comparepaths, options, qemu, runner, withqemu
from pvboot.tools.comparepaths import ALL_PATHS
from pvboot.tools.sides import QEMU_DISKS


DESCRIPTION = """\
Boot the same images through several firmware read paths and check that every path
returned the same bytes for the same INT 13h calls:

  ata        the emulated IDE disk, driven by the BIOS's ATA driver (PIO)
  pv-bounce  the Xen PV frontend with one granted bounce page (pvboot's default path)
  pv-direct  the Xen PV frontend granting the caller's own pages (persistent grants)
  seabios    QEMU + SeaBIOS (qemu-system-i386, Debian package qemu-system-x86)

Each pvboot path records, per disk operation, the command, drive, LBA, sector
counts, status and a CRC-32 of the bytes transferred; every path must give the
reference's sequence (pv-bounce when it runs, else the first path given) exactly, and
the same serial output and ending.  seabios is judged by its serial output and ending
only (byte for byte, against the reference).  A table shows per path: INT 13h calls,
sectors, ring requests, notifications, grant operations, bytes copied by the firmware,
port exits, wall time and the verdict.  No run changes the images.

--with-qemu is the two-sided form of --paths seabios: QEMU + SeaBIOS against pvboot's
default path (or --driver), with a verdict and a unified diff of the transcripts.

exit codes:
  0  every path agrees
  1  a path differs (the first differing operation, or the transcript diff, is printed)
  2  usage or input error, or QEMU is not installed or refuses to start (seabios)
  4  pvboot internal error
"""


def add_arguments(p):
    p.add_argument("images", nargs="*", metavar="IMAGE", help="hard disk images: 80h, 81h, ...")
    p.add_argument("--paths", metavar="PATHS",
                   help=f"comma list of firmware paths to compare (default: all: {','.join(ALL_PATHS)})")
    p.add_argument("--with-qemu", action="store_true",
                   help="only QEMU + SeaBIOS against pvboot's default path, as a verdict and a "
                        "unified diff of the transcripts (the two-sided form of --paths seabios)")
    p.add_argument("--floppy", metavar="IMAGE", help="floppy image for drive 00h")
    p.add_argument("--cdrom", metavar="ISO",
                   help="--paths: a disc in the CD drive (E0h), read through each path")
    p.add_argument("--boot", choices=("hd", "floppy", "cd"),
                   help="boot device (default: hd if given, else floppy, else cd)")
    p.add_argument("--memory", type=options.MEMORY_MIB, default=64, metavar="MIB",
                   help="pvboot's RAM above 1 MiB in MiB (default 64); QEMU gets -m MIB+1")
    p.add_argument("--timeout", type=options.TIMEOUT, default=qemu.DEFAULT_TIMEOUT,
                   metavar="SECONDS", help="wall-clock limit of each run (default "
                   f"{qemu.DEFAULT_TIMEOUT:g}); QEMU is killed when it is reached")
    p.add_argument("--keys", type=options.key_script, default="", metavar="KEYS",
                   help="keystrokes in pvboot's syntax ('abc{enter}', {down}, {f1}); QEMU "
                        "gets them as sendkey names once --keys-after appears")
    p.add_argument("--keys-after", metavar="TEXT",
                   help="type the keys under QEMU once TEXT appears on its serial output")
    p.add_argument("--qemu-disk", choices=QEMU_DISKS, default="ide",
                   help="the controller QEMU puts the hard disks on (default ide, QEMU's "
                        "default; SeaBIOS's 16-bit IDE driver cannot fill buffers above 1 MiB)")
    p.add_argument("--backend-timeout", type=options.BACKEND_TIMEOUT, default=5.0, metavar="SECONDS",
                   help="bound of every wait on a PV backend (default 5)")
    p.add_argument("--driver", choices=("xen", "host"), default=None,
                   help="with --with-qemu: pvboot's hard disk path (default xen: the PV "
                        "frontend and blkback)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: verdict, every path's counters, operations, "
                        "transcript and ending (--with-qemu: both transcripts and the diff)")


def run_compare(args, out=None, err=None):
    """The `pvboot compare` command (args from tools.cli); returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    if args.with_qemu and args.paths is not None:
        raise runner.InputError("--with-qemu and --paths exclude each other (--with-qemu is "
                                "the two-sided form of --paths seabios)")
    try:
        if args.with_qemu:
            return withqemu.run_with_qemu(args, out, err)
        if args.driver is not None:
            raise runner.InputError("--driver goes with --with-qemu; with --paths name "
                                    "the paths (ata, pv-bounce, pv-direct, seabios)")
        paths = comparepaths.parse_paths(args.paths if args.paths is not None
                                         else ",".join(ALL_PATHS))
        return comparepaths.run_paths(args, paths, out, err)
    except qemu.QemuError as exc:
        print(f"pvboot: error: {exc}", file=err)
        return runner.EXIT_USAGE
