"""`pvboot compare [--paths]`: boot the same images once per firmware read path
(emulated IDE, PV bounce page, PV direct grants, QEMU + SeaBIOS) and check every
pvboot path made the same disk operations with the same bytes (CRC-32 per operation,
firmware/block.py op_digests) as the reference, and QEMU the same serial transcript.
"""
import dataclasses
import json

from pvboot.firmware.block import COMMAND_NAMES
from pvboot.tools import qemu, runner
from pvboot.tools.sides import (CRASHED, EXIT_AGREE, EXIT_DIFFER, Side, check_inputs,
                                endings_agree, first_difference, pvboot_side, qemu_disk_args,
                                qemu_keys, qemu_side, unified_diff)


# -- firmware paths (pvboot compare --paths) ---------------------------------------------
# pvboot's read paths, as runner.boot options, and the reference they are checked
# against: pvboot's default path.  "seabios" is QEMU + SeaBIOS.
PVBOOT_PATHS = {
    "ata": {"driver": "ata"},
    "pv-bounce": {"driver": "xen", "pv_path": "bounce"},
    "pv-direct": {"driver": "xen", "pv_path": "direct"},
}
SEABIOS = "seabios"
ALL_PATHS = ("ata", "pv-bounce", "pv-direct", SEABIOS)
DEFAULT_PATH = "pv-bounce"

# The table's counters: (column title, JSON key, how to get it from a Result's counters).
PATH_COUNTERS = (
    ("INT 13h calls", "int13_calls", lambda c: c.get("int13_calls", 0)),
    ("sectors", "sectors", lambda c: c.get("sectors_read", 0) + c.get("sectors_written", 0)),
    ("ring requests", "ring_requests", lambda c: c.get("ring_requests", 0)),
    ("notifications", "notifications", lambda c: c.get("notifications", 0)),
    ("grant ops", "grant_ops", lambda c: c.get("grant_ops", 0)),
    ("bytes copied", "bytes_copied", lambda c: c.get("bytes_copied", 0)),
    ("port exits", "port_exits", lambda c: c.get("port_reads", 0) + c.get("port_writes", 0)),
)


def parse_paths(text):
    """The paths of a --paths value, in the order given (duplicates dropped)."""
    paths = []
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        if name not in ALL_PATHS:
            raise runner.InputError(f"--paths: unknown path {name!r} (use {', '.join(ALL_PATHS)})")
        if name not in paths:
            paths.append(name)
    if not paths:
        raise runner.InputError(f"--paths: no path given (use {', '.join(ALL_PATHS)})")
    return paths


@dataclasses.dataclass
class PathRun:
    """One boot of the image through one firmware path."""
    name: str
    side: Side                     # transcript and ending (compare.Side)
    counters: dict = None          # PATH_COUNTERS values (pvboot paths)
    digests: list = None           # firmware.block.OpDigest per disk operation (pvboot paths)
    messages: list = dataclasses.field(default_factory=list)
    report: str = ""
    reference: bool = False
    agree: bool = True
    problems: list = dataclasses.field(default_factory=list)    # why it differs
    first_difference: dict = None  # the first operation that differs

    @property
    def verdict(self):
        if self.reference:
            return "reference"
        return "agree" if self.agree else "DIFFER"

    def to_json(self):
        data = {"path": self.name, "reference": self.reference, "verdict": self.verdict.lower(),
                "agree": self.agree, "problems": self.problems,
                "wall_time": round(self.side.elapsed, 3), **self.side.to_json()}
        if self.counters is not None:
            data["counters"] = self.counters
            data["operations"] = [_digest_json(d) for d in self.digests]
            data["first_difference"] = self.first_difference
            data["messages"] = self.messages
        return data


def _digest_json(d):
    return {"command": COMMAND_NAMES.get(d.command, d.command), "drive": d.drive, "lba": d.lba,
            "requested": d.requested, "done": d.done, "status": d.status,
            "crc32": None if d.digest is None else f"{d.digest:08X}"}


def _digest_key(d):
    # What must be the same on every path: (command, drive, lba, count, status, digest).
    return (d.command, d.drive, d.lba, d.requested, d.done, d.status, d.digest)


def _first_difference(ours, theirs):
    """(index, ours or None, theirs or None) of the first operation that differs, or None."""
    for index in range(max(len(ours), len(theirs))):
        a = ours[index] if index < len(ours) else None
        b = theirs[index] if index < len(theirs) else None
        if a is None or b is None or _digest_key(a) != _digest_key(b):
            return index, a, b
    return None


@dataclasses.dataclass
class PathComparison:
    images: list
    floppy: str
    runs: list                     # PathRun, in --paths order
    diff: str = ""                 # seabios: unified diff of QEMU's transcript vs the reference's
    cdrom: str = None              # the disc in the CD drive, if any

    @property
    def reference(self):
        return next(run for run in self.runs if run.reference)

    @property
    def agree(self):
        return all(run.agree for run in self.runs)

    @property
    def exit_code(self):
        return EXIT_AGREE if self.agree else EXIT_DIFFER

    def verdict(self):
        target = " ".join([*self.images, *([f"--floppy {self.floppy}"] if self.floppy else []),
                           *([f"--cdrom {self.cdrom}"] if self.cdrom else [])])
        ref = self.reference
        pvboot = [run for run in self.runs if run.counters is not None]
        ops = len(ref.digests)
        head = "AGREE" if self.agree else "DIFFER"
        what = [f"{len(pvboot)} pvboot path{'s' if len(pvboot) != 1 else ''} "
                f"({', '.join(run.name for run in pvboot)}), {ops} disk operations"
                + (", identical bytes" if all(r.agree for r in pvboot) else "")]
        if any(run.name == SEABIOS for run in self.runs):
            seabios = next(run for run in self.runs if run.name == SEABIOS)
            what.append("seabios: " + ("identical serial output" if seabios.agree
                                       else "serial output or ending differs"))
        return f"pvboot compare: {head}: {target}: {'; '.join(what)}; reference {ref.name}"

    def table(self):
        titles = ["path"] + [title for title, _key, _get in PATH_COUNTERS] + ["wall time", "verdict"]
        rows = []
        for run in self.runs:
            if run.counters is None:
                cells = ["-"] * len(PATH_COUNTERS)
            else:
                cells = [f"{run.counters[key]:,}" for _title, key, _get in PATH_COUNTERS]
            rows.append([run.name] + cells + [f"{run.side.elapsed:.3f} s", run.verdict])
        widths = [max(len(str(row[i])) for row in [titles] + rows) for i in range(len(titles))]

        def line(cells):
            out = []
            for i, cell in enumerate(cells):
                numeric = 0 < i < len(cells) - 1
                out.append(str(cell).rjust(widths[i]) if numeric else str(cell).ljust(widths[i]))
            return "  ".join(out).rstrip()
        return "\n".join([line(titles), line(["-" * w for w in widths])] + [line(r) for r in rows])

    def details(self):
        """The lines that say why a path differs, and its messages (fallbacks)."""
        lines = []
        for run in self.runs:
            for problem in run.problems:
                lines.append(f"  {run.name}: {problem}")
            for message in run.messages:
                lines.append(f"  {run.name}: warning: {message}")
        return lines

    def to_json(self):
        return {"verdict": "agree" if self.agree else "differ", "exit_code": self.exit_code,
                "images": self.images, "floppy": self.floppy, "cdrom": self.cdrom,
                "reference": self.reference.name,
                "paths": [run.to_json() for run in self.runs], "diff": self.diff}


def _pvboot_run(name, result):
    counters = {key: get(result.counters) for _title, key, get in PATH_COUNTERS}
    side = pvboot_side(result)
    side.name = f"pvboot {name}"
    return PathRun(name, side, counters, list(result.op_digests or []), list(result.messages),
                   result.stop.report)


def compare_paths(images, paths=ALL_PATHS, floppy=None, boot_from=None, memory_mib=64,
                  timeout=qemu.DEFAULT_TIMEOUT, keys="", keys_after=None, qemu_disk="ide",
                  backend_timeout=5.0, cdrom=None):
    """Boot the images once per firmware path and compare; returns a PathComparison.
    `cdrom`: an ISO in the CD drive, read through each path too (ata: the emulated
    ATAPI drive; pv-*: the PV CD; seabios: QEMU's -cdrom).

    Every pvboot path runs with op digests on (firmware/block.py: per disk operation
    the command, drive, LBA, counts, status and the CRC-32 of the bytes moved) and must
    give the reference's sequence exactly, and the same serial transcript and ending.
    The reference is pvboot's default path (pv-bounce) when it is among `paths`, else the
    first pvboot path given; with only seabios, the default path is booted as the
    reference.  seabios (QEMU + SeaBIOS, disks on `qemu_disk`) is judged by its serial
    transcript and ending only, against the reference.  Runs one after the other, so
    their wall times are comparable.  Raises runner.InputError / qemu.QemuError."""
    paths = list(paths)
    boot_from = check_inputs(images, floppy, boot_from, cdrom)
    key_names = None
    qemu_disks, qemu_args = [], []
    if SEABIOS in paths:
        key_names = qemu_keys(keys, keys_after)
        qemu_disks, qemu_args = qemu_disk_args(images, qemu_disk)
        if not qemu.qemu_available():
            raise qemu.QemuMissing()
    if "ata" in paths and len(images) > runner.IDE_UNITS:
        raise runner.InputError(f"--paths ata: the IDE channel holds two disks, not {len(images)}")
    pvboot_paths = [name for name in paths if name in PVBOOT_PATHS]
    if not pvboot_paths:
        pvboot_paths = [DEFAULT_PATH]
        paths = [DEFAULT_PATH] + paths
    reference = DEFAULT_PATH if DEFAULT_PATH in pvboot_paths else pvboot_paths[0]
    runs = {}
    for name in pvboot_paths:
        result = runner.boot(list(images), floppy=floppy, boot_from=boot_from,
                             memory_mib=memory_mib, timeout=timeout, keys=keys,
                             backend_timeout=backend_timeout, op_digests=True, cdrom=cdrom,
                             cdrom_type="ioemu" if name == "ata" else "xenbus",
                             **PVBOOT_PATHS[name])
        runs[name] = _pvboot_run(name, result)
    ref = runs[reference]
    ref.reference = True
    for name in pvboot_paths:
        run = runs[name]
        if run is ref:
            continue
        found = _first_difference(run.digests, ref.digests)
        if found is not None:
            index, ours, theirs = found
            run.first_difference = {"operation": index + 1,
                                    "this": _digest_json(ours) if ours else None,
                                    "reference": _digest_json(theirs) if theirs else None}
            run.problems.append(
                f"disk operation {index + 1} differs: "
                f"{ours.describe() if ours else 'no such operation'} "
                f"(reference {reference}: {theirs.describe() if theirs else 'no such operation'})")
        if run.side.serial != ref.side.serial:
            at, line = first_difference(ref.side.serial, run.side.serial)
            run.problems.append(f"serial output differs from the reference's from byte {at} "
                                f"(line {line})")
        if not endings_agree(run.side, ref.side):
            run.problems.append(f"ended differently: {run.side.describe()} "
                                f"(reference: {ref.side.describe()})")
        run.agree = not run.problems
    diff = ""
    if SEABIOS in paths:
        qemu_run = qemu.run(qemu_disks, floppy, boot=boot_from, memory_mb=memory_mib + 1,
                            timeout=timeout, keys=key_names, keys_after=keys_after,
                            snapshot=True, extra_args=qemu_args, cdrom=cdrom)
        side = qemu_side(qemu_run)
        run = PathRun(SEABIOS, side)
        if side.serial != ref.side.serial:
            at, line = first_difference(ref.side.serial, side.serial)
            run.problems.append(f"serial output differs from {reference}'s from byte {at} "
                                f"(line {line})")
            diff = unified_diff(side.serial, ref.side.serial,
                                labels=("qemu+seabios", f"pvboot {reference}"))
        if not endings_agree(side, ref.side):
            run.problems.append(f"ended differently: {side.describe()} "
                                f"(pvboot {reference}: {ref.side.describe()})")
        run.agree = not run.problems
        runs[SEABIOS] = run
    return PathComparison(list(images), floppy, [runs[name] for name in paths], diff, cdrom)


def run_paths(args, paths, out, err):
    comparison = compare_paths(args.images, paths, floppy=args.floppy, boot_from=args.boot,
                               memory_mib=args.memory, timeout=args.timeout, keys=args.keys,
                               keys_after=args.keys_after, qemu_disk=args.qemu_disk,
                               backend_timeout=args.backend_timeout, cdrom=args.cdrom)
    broken = [run for run in comparison.runs if run.side.reason == "firmware-error"]
    if broken:
        print(f"pvboot compare: pvboot internal error ({broken[0].name}): "
              f"{broken[0].side.detail}", file=err)
        return runner.EXIT_INTERNAL
    if args.json:
        print(json.dumps(comparison.to_json(), indent=2), file=out)
        return comparison.exit_code
    print(comparison.verdict(), file=out)
    print(comparison.table(), file=out)
    for line in comparison.details():
        print(line, file=out)
    if comparison.diff:
        print(comparison.diff, file=out)
    for run in comparison.runs:
        if run.report and run.side.ended == CRASHED:
            print(f"{run.name}:\n{run.report}", file=err)
    return comparison.exit_code
