"""The `pvboot` command line.

Exit codes: 0 success, 1 test failure (guest exit value non-zero, expectation unmet,
timeout), 2 usage or input error, 3 the guest crashed, 4 pvboot internal error.
"""
import argparse
import importlib
import json
import os
import sys

from pvboot.emu.cpu import CPU_MODELS, DEFAULT_CPU_MODEL, cpu_model_id
from pvboot.tools import cd, options, runner

EPILOG = """exit codes:
  0  success: --expect matched, the guest wrote 0 to port 0xF4, or it halted or powered
     off cleanly with nothing expected
  1  test failure: the guest wrote a non-zero value, the expectation was not met, a
     --fail pattern matched, the run timed out or used up its instruction budget
  2  usage or input error (bad option, missing or unusable image)
  3  the guest crashed (invalid opcode, triple fault, fetch from unmapped memory, ...)
  4  pvboot internal error (a bug in pvboot: please report it)
"""


def _cpu_model(text):
    try:
        cpu_model_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip().lower().replace("_", "-")


def _trace_set(text):
    kinds = {k.strip() for k in text.split(",") if k.strip()}
    unknown = kinds - {"int", "disk"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown trace kind {sorted(unknown)[0]!r} (use int, disk)")
    return kinds


_Parser = options.OneLineParser


def _add_boot_options(p):
    p.add_argument("--floppy", metavar="IMAGE", help="floppy image for drive 00h")
    p.add_argument("--boot", choices=("hd", "floppy", "cd"),
                   help="boot device (default: hd if given, else floppy, else cd)")
    p.add_argument("--cdrom", metavar="ISO",
                   help="the PV CD-ROM drive's disc (drive E0h; '' for an empty drive)")
    p.add_argument("--xenstore-socket", metavar="PATH",
                   help="put the run's xenstore socket here (for pvboot cd and xenstore-utils)")
    p.add_argument("--memory", type=options.MEMORY_MIB, default=64, metavar="MIB",
                   help="RAM above 1 MiB in MiB (default 64, 1 to 3071)")
    p.add_argument("--timeout", type=options.TIMEOUT, default=None, metavar="SECONDS",
                   help="wall-clock limit for the run (default 30, none with --gdb; at most 86400)")
    p.add_argument("--max-insns", type=options.MAX_INSNS, metavar="N",
                   help="stop after N guest instructions (slows the run down; 1 to 2**63-1)")
    p.add_argument("--expect", metavar="REGEX", action="append",
                   help="succeed as soon as the serial console matches REGEX; repeat it for "
                        "markers that must all appear in that order")
    p.add_argument("--fail", metavar="REGEX", action="append",
                   help="fail (exit 1) as soon as the console matches REGEX, e.g. "
                        "'error:|Boot failed'; repeatable")
    p.add_argument("--keys", type=options.key_script, default="", metavar="KEYS",
                   help="scripted keystrokes for INT 16h, e.g. 'abc{enter}', {down}, {f1} "
                        "(what a US PC keyboard types: printable ASCII and named keys)")
    p.add_argument("--serial-input", default="", metavar="TEXT",
                   help="bytes that arrive on COM1's receive line (the argument's bytes: "
                        "UTF-8 for non-ASCII text, as a terminal sends it)")
    p.add_argument("--serial", metavar="FILE", help="also write the serial console to FILE")
    p.add_argument("--screen", action="store_true", help="print the final 80x25 text screen")
    p.add_argument("--json", action="store_true", help="print one JSON object with the result")
    p.add_argument("--junit", metavar="FILE",
                   help="write the result to FILE as JUnit XML (one test case) for CI")
    p.add_argument("--screenshot", metavar="FILE.png",
                   help="save the final text screen as a PNG (8x16 VGA font: 640x400 for 80x25)")
    p.add_argument("--trace", type=_trace_set, default=set(), metavar="KINDS",
                   help="comma list: int (one line per interrupt), disk (per disk operation)")
    p.add_argument("--cpu", type=_cpu_model, default=DEFAULT_CPU_MODEL, metavar="MODEL",
                   help=f"CPU model as QEMU names it (default {DEFAULT_CPU_MODEL}, as "
                        f"qemu-system-i386): {', '.join(sorted(CPU_MODELS))}")
    p.add_argument("--realtime", action="store_true",
                   help="let idle waits take real time instead of fast-forwarding")
    p.add_argument("--read-only", action="store_true",
                   help="attach the disks read-only (the default of a --disk's access=)")
    p.add_argument("--persist", action="store_true",
                   help="write guest writes through to the image files (default: discard; "
                        "the default of a --disk's writes=)")
    p.add_argument("--disk", action="append", default=[], metavar="SPEC",
                   help="a hard disk as xl's disk= line: IMAGE[,type=xenbus|ioemu]"
                        "[,path=bounce|direct][,access=rw|ro][,writes=overlay|persist]"
                        "[,format=raw|qcow2|vmdk|vdi|vhdx|vpc][,devtype=disk|cdrom]; a comma "
                        "in IMAGE is written ,, ; repeat it: 80h, 81h, ... in the order given "
                        "(instead of IMAGEs)")
    p.add_argument("--save-overlay", metavar="FILE",
                   help="keep the first hard disk's guest writes in FILE, a new qcow2 overlay "
                        "backed by the image (qemu-img commit folds it back)")
    p.add_argument("--snapshot-on", action="append", default=[], metavar="REGEX=NAME",
                   help="when the console first matches REGEX, take the internal snapshot NAME "
                        "of the first PV disk's writable qcow2 layer (--save-overlay FILE or "
                        "--persist on a qcow2); repeatable")
    p.add_argument("--driver", choices=("xen", "host", "ata"), default=None,
                   help="how the positional IMAGEs are attached: Xen PV disks served by "
                        "blkback (xen, the default), the firmware's plain driver (host), or "
                        "the emulated IDE channel driven by PIO (ata: at most two disks); "
                        "not with --disk")
    p.add_argument("--pv-path", choices=("bounce", "direct"), default="bounce",
                   help="PV data path: one granted bounce page (default), or the caller's "
                        "own pages granted, persistently when the backend offers it (the default of "
                        "a --disk's path=)")
    p.add_argument("--backend-timeout", type=options.BACKEND_TIMEOUT, default=5.0,
                   metavar="SECONDS",
                   help="bound of every wait on a PV backend (default 5, at most 3600); a PV disk whose "
                        "backend does not connect in time falls back to emulated IDE")
    p.add_argument("--no-backend", action="store_true",
                   help="attach the PV disks but start no blkback: each falls back to its "
                        "emulated IDE twin after --backend-timeout (tests the fallback)")
    p.add_argument("--gdb", metavar="[HOST:]PORT",
                   help="serve the GDB remote protocol on HOST:PORT (default host 127.0.0.1; "
                        "port 0: any free one, printed on stderr); see 'Debugging a loader'")
    p.add_argument("--gdb-wait", choices=("yes", "no"), default="yes",
                   help="yes: stop before the first instruction until GDB attaches "
                        "(default); no: run, and stop when it attaches")
    p.add_argument("--quiet", "-q", action="store_true", help="do not echo the console")
    p.add_argument("--stop-at", choices=("kernel-entry",), metavar="EVENT",
                   help="kernel-entry: stop when the loader hands over to the kernel's 32-bit "
                        "entry (code32_start of --expect-kernel, else 0x100000, in protected "
                        "mode with boot_params in %%esi); never reaching it fails the run")
    p.add_argument("--expect-kernel", metavar="FILE",
                   help="at the kernel entry, guest memory must hold FILE's protected-mode "
                        "part byte for byte (a Linux boot protocol kernel); a difference, or "
                        "no entry at all, fails the run")


SUBCOMMANDS = ("boot", "demo", "blkback", "bench", "compare", "mkimage", "fuzz", "batch", "cd",
               "image", "serve")


def build_parser(command=None):
    """The whole command line; with `command` (the subcommand about to be parsed) only
    that subcommand's parser, so a boot neither imports compare's and mkimage's modules
    nor builds the other subcommands' parsers (~40 options for demo alone)."""
    parser = _Parser(prog="pvboot", description="Boot, trace and test x86 BIOS boot code on an "
                     "emulated PC whose BIOS reaches its disks through a Xen PV block frontend.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    if command in (None, "boot"):
        p_boot = sub.add_parser("boot", help="boot disk images (the demo disk when none is "
                                "given)", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        p_boot.add_argument("images", nargs="*", metavar="IMAGE",
                            help="hard disk images: 80h, 81h, ...")
        _add_boot_options(p_boot)
    if command in (None, "demo"):
        _add_boot_options(sub.add_parser("demo", help="build the built-in demo disk and boot it"))
    if command is None:
        sub.add_parser("blkback", help="run a Xen PV block backend process (see pvboot "
                       "blkback --help)", add_help=False)
        sub.add_parser("bench", help="measure pvboot against QEMU+SeaBIOS (see pvboot bench "
                       "--help)", add_help=False)
        sub.add_parser("fuzz", help="boot random boot sectors, each bounded, and report any "
                       "that breaks a promise (see pvboot fuzz --help)", add_help=False)
        sub.add_parser("serve", help="serve this user's pvboot commands from a warm process "
                       "(see pvboot serve --help)", add_help=False)
    # Subcommands whose options live with their code, imported only when needed.
    for name, module_name, help_text in (
            ("compare", "pvboot.tools.compare", "boot images through each firmware read path (IDE, PV "
                                         "bounce, PV direct, QEMU+SeaBIOS) and check they "
                                         "return the same bytes"),
            ("mkimage", "pvboot.tools.mkimage", "build a disk image with a real boot loader (GRUB 2, "
                                         "SYSLINUX)"),
            ("batch", "pvboot.tools.batch", "boot every entry of a manifest on local workers or a "
                                     "Dask cluster, with a summary, --json and --junit"),
            ("cd", "pvboot.tools.cd", "eject or insert the CD of a running guest (xl cd-eject / "
                                      "cd-insert)"),
            ("image", "pvboot.tools.image", "inspect, create, convert and snapshot disk images "
                                     "(qemu-img)")):
        if command not in (None, name):
            continue
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(
            name, help=help_text, description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


_PARSERS = {}


def parser_for(command):
    """build_parser(command), built once per process: `pvboot serve` builds the common
    ones before it forks its commands, which then start parsing at once."""
    if command not in _PARSERS:
        _PARSERS[command] = build_parser(command)
    return _PARSERS[command]


def _case_name(args, images):
    """The JUnit test case's name: the images booted."""
    floppy = getattr(args, "floppy", None)
    specs = getattr(args, "disk", None) or []
    if args.command == "demo" or (not getattr(args, "images", None) and not floppy and not specs):
        return "demo"
    return " ".join(list(images) + [f"--disk {spec}" for spec in specs]
                    + ([floppy] if floppy else []))


def _screenshot_font(args):
    """The font --screenshot needs, loaded before the boot so a missing one fails fast."""
    if not args.screenshot:
        return None
    from pvboot.tools import screenshot
    try:
        return screenshot.load_font()
    except screenshot.FontError as exc:
        raise runner.InputError(f"--screenshot: {exc}") from None


def _write_ci_outputs(args, images, result, font):
    """--screenshot and --junit."""
    if args.screenshot:
        from pvboot.tools import screenshot
        with runner.naming_file(args.screenshot):
            screenshot.save(args.screenshot, result.display, font)
        if not screenshot.is_drawn(result.display):
            print(f"pvboot: warning: --screenshot: the guest left graphics mode "
                  f"{result.video_mode:02x}h, which pvboot does not draw; the picture "
                  "shows the text buffer", file=sys.stderr)
    if args.junit:
        from pvboot.tools import junit
        with runner.naming_file(args.junit):
            junit.write_results(args.junit, [(_case_name(args, images), result)])


def run_boot(args, images):
    font = _screenshot_font(args)
    out = sys.stdout.buffer
    echo = None if (args.json or args.quiet) else out
    try:
        disk_specs, cd_spec, cd_type = cd.split_cdrom_specs(args.disk)
    except cd.CdInputError as exc:
        raise runner.InputError(str(exc)) from None
    if cd_spec is not None and args.cdrom is not None:
        raise runner.InputError("give the CD-ROM either as --cdrom or as a --disk ...,devtype=cdrom")
    result = runner.boot(
        images, floppy=args.floppy, boot_from=args.boot, memory_mib=args.memory,
        timeout=args.timeout if args.timeout is not None else (None if args.gdb else 30.0),
        gdb=args.gdb, gdb_wait=args.gdb_wait == "yes", max_insns=args.max_insns, keys=args.keys,
        serial_input=options.serial_bytes(args.serial_input),
        expect=args.expect[0] if args.expect and len(args.expect) == 1 else args.expect,
        fail=args.fail,
        realtime=args.realtime, cpu=args.cpu, trace=args.trace, read_only=args.read_only,
        persist=args.persist, echo=echo, driver=args.driver,
        backend_timeout=args.backend_timeout, pv_path=args.pv_path,
        stop_at=args.stop_at, expect_kernel=args.expect_kernel,
        disks=disk_specs, no_backend=args.no_backend,
        cdrom=args.cdrom if cd_spec is None else cd_spec, xenstore_socket=args.xenstore_socket,
        cdrom_type=cd_type, save_overlay=args.save_overlay, snapshot_on=args.snapshot_on)
    if args.serial:
        with runner.naming_file(args.serial), open(args.serial, "wb") as f:
            f.write(result.console.encode("latin-1"))
    _write_ci_outputs(args, images, result, font)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return result.exit_code
    if echo is not None and result.console and not result.console.endswith("\n"):
        print()
    if args.screen:
        print(result.screen)
    stop = result.stop
    summary = f"pvboot: {stop.reason}"
    if stop.detail:
        summary += f": {stop.detail}"
    if args.expect is not None:
        summary += f" (expectation {'met' if result.expect_met else 'NOT met'})"
    print(summary, file=sys.stderr)
    if stop.report:
        print(stop.report, file=sys.stderr)
    if result.kernel is not None:
        print(f"pvboot: kernel: {result.kernel['summary']}", file=sys.stderr)
    for message in result.messages:
        print(f"pvboot: warning: {message}", file=sys.stderr)
    return result.exit_code


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["blkback"]:
        # The backend has its own command line (it also runs as python -m pvboot.emu.xen.blkback).
        from pvboot.emu.xen import blkback
        return blkback.main(argv[1:], prog="pvboot blkback")
    if argv[:1] == ["bench"]:
        # The benchmark has its own command line (also python -m pvboot.tools.bench); imported only here.
        from pvboot.tools.bench.cli import main as bench_main
        return bench_main(argv[1:], prog="pvboot bench")
    if argv[:1] == ["serve"]:
        # The server runs this module's run() in each fork; it gets it from here rather
        # than importing this module back.
        from pvboot.tools import serve
        return serve.main(argv[1:], prog="pvboot serve", command=run,
                          warm_up=lambda: [parser_for(c) for c in ("boot", "demo")])
    if argv[:1] == ["fuzz"]:
        from pvboot.tools.fuzz import main as fuzz_main
        return fuzz_main(argv[1:], prog="pvboot fuzz")
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    args = parser_for(command).parse_args(argv)
    if args.command is None:
        parser = build_parser()
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: a subcommand is required ({', '.join(SUBCOMMANDS)}); "
              "see pvboot --help", file=sys.stderr)
        return runner.EXIT_USAGE
    try:
        if args.command == "compare":
            from pvboot.tools import compare
            return compare.run_compare(args)
        if args.command == "mkimage":
            from pvboot.tools import mkimage
            return mkimage.run(args)
        if args.command == "batch":
            from pvboot.tools import batch
            return batch.run(args)
        if args.command == "cd":
            return cd.run(args)
        if args.command == "image":
            from pvboot.tools import image
            return image.run(args)
        if args.command == "demo" or (args.command == "boot" and not args.images
                                      and not args.floppy and not args.disk
                                      and args.cdrom is None):
            from pvboot.tools import demo
            with demo.demo_disk() as path:
                return run_boot(args, [path])
        return run_boot(args, args.images)
    except runner.InputError as exc:
        print(f"pvboot: error: {exc}", file=sys.stderr)
        if getattr(args, "junit", None):
            from pvboot.tools import junit     # CI still gets a result file: the boot's <error>
            junit.write(args.junit, [junit.error_case(_case_name(args, getattr(args, "images", [])), str(exc))])
        return runner.EXIT_USAGE
    except OSError as exc:
        print(f"pvboot: error: {runner.os_error_line(exc)}", file=sys.stderr)
        return runner.EXIT_USAGE
    except runner.Interrupted as exc:
        print(f"pvboot: interrupted by {exc}: the run was stopped and cleaned up",
              file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("pvboot: interrupted", file=sys.stderr)
        return 130


def run(argv=None):
    """main(), with a bug in pvboot turned into one line and exit code 4."""
    try:
        return main(argv)
    except Exception as exc:
        print(f"pvboot: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return runner.EXIT_INTERNAL


def console_main():
    code = run()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    # Everything pvboot opened (files, the backend process, the xenstore socket
    # directory) is closed or removed by now: skip the interpreter's teardown of
    # modules and objects, ~15 ms of a ~0.2 s boot (bench: boot to power-off).
    os._exit(code)


if __name__ == "__main__":
    console_main()
