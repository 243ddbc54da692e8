"""`pvboot compare`: boot the same images through several firmware read paths (emulated
IDE, PV bounce page, PV direct grants, QEMU + SeaBIOS) and check they agree
(compare_paths, `--paths`); `--with-qemu`: QEMU + SeaBIOS against pvboot's default
path, what the guest wrote to COM1 compared byte for byte (compare).

Both transcripts are raw bytes (QEMU's serial on a pipe, pvboot's COM1 device), and
they are compared exactly: no CR/LF folding, no removal of terminal escapes, no
trimming.  The guest runs the same code on both and decides every byte itself (CR LF
line ends, GRUB's VT100 escapes), so any difference is a difference in what the BIOS
gave it: exactly what this command is for.  The diff shows control bytes escaped
(\\r, \\e, \\xNN) so that a CR or an escape sequence that differs is visible.

The way each run ended is compared too, in the classes both machines can observe:
an exit value written to port 0xF4, a power-off, a reset (pvboot's port 92h / keyboard
controller reset or triple fault; QEMU's reset request with -no-reboot), or no end at
all (QEMU still running at the timeout; pvboot halted, waiting for a key, timed out).
pvboot stopping on a guest crash matches nothing QEMU does.

Exit codes: 0 the runs agree, 1 they differ, 2 usage or input error (including QEMU
not installed), 4 pvboot internal error.
"""
import concurrent.futures
import dataclasses
import difflib
import json
import re
import sys
import threading

from pvboot.firmware import kbd
from pvboot.firmware.block import COMMAND_NAMES
from pvboot.tools import qemu, runner

EXIT_AGREE = 0
EXIT_DIFFER = 1

# Outcome classes both machines can observe.
ENDED_EXIT = "exit"
ENDED_POWEROFF = "poweroff"
ENDED_RESET = "reset"
ENDED_STOPPED = "stopped"          # QEMU ended with status 0, reason unknown: off or reset
NO_END = "no-end"
CRASHED = "crash"                  # pvboot only: the guest crashed (its report goes to stderr)

_QEMU_CLASS = {qemu.POWEROFF: ENDED_POWEROFF, qemu.RESET: ENDED_RESET,
               qemu.STOPPED: ENDED_STOPPED, qemu.TIMEOUT: NO_END}
_PVBOOT_NO_END = {"halted", "timeout", "insn-limit", "waiting-for-key", "no-boot"}

# -- pvboot key scripts as QEMU sendkey names ------------------------------------------
# The main block of a US keyboard, unshifted, and QEMU's names for its keys.
_MAIN_BLOCK = "1234567890-=qwertyuiop[]asdfghjkl;'`\\zxcvbnm,./"
_SYMBOL_NAMES = {"-": "minus", "=": "equal", "[": "bracket_left", "]": "bracket_right",
                 ";": "semicolon", "'": "apostrophe", "`": "grave_accent", "\\": "backslash",
                 ",": "comma", ".": "dot", "/": "slash"}
_SCAN_NAMES = {kbd.ASCII_KEYCODES[ch] >> 8: _SYMBOL_NAMES.get(ch, ch) for ch in _MAIN_BLOCK}
_SCAN_NAMES.update({0x1C: "ret", 0x01: "esc", 0x0F: "tab", 0x0E: "backspace", 0x39: "spc",
                    0x47: "home", 0x48: "up", 0x49: "pgup", 0x4B: "left", 0x4D: "right",
                    0x4F: "end", 0x50: "down", 0x51: "pgdn", 0x52: "insert", 0x53: "delete",
                    0x85: "f11", 0x86: "f12"})
_SCAN_NAMES.update({0x3A + n: f"f{n}" for n in range(1, 11)})
# Keys whose own ASCII code is below 20h (no Ctrl involved).
_PLAIN_CONTROL = {kbd.KEY_ENTER, kbd.KEY_ESC, kbd.KEY_TAB, kbd.KEY_BACKSPACE}


def qemu_key_names(script):
    """The QEMU sendkey names that type pvboot key script `script` (ValueError if bad)."""
    names = []
    for code in kbd.parse_keys(script):
        scan, ascii_ = code >> 8, code & 0xFF
        name = _SCAN_NAMES[scan]
        if code in _PLAIN_CONTROL or ascii_ in (0x00, 0xE0) or ascii_ == 0x20:
            names.append(name)
        elif ascii_ < 0x20 or ascii_ == 0x7F:
            names.append(f"ctrl-{name}")
        elif chr(ascii_) in _MAIN_BLOCK:
            names.append(name)
        else:
            names.append(f"shift-{name}")
    return names


# -- one side's result -----------------------------------------------------------------
@dataclasses.dataclass
class Side:
    name: str
    serial: bytes
    ended: str                 # ENDED_*, NO_END or CRASHED
    exit_value: int = None
    detail: str = ""           # how this machine put it
    elapsed: float = 0.0
    reason: str = ""           # pvboot's stop reason

    def describe(self, detail=True):
        if self.ended == ENDED_EXIT:
            return f"exit {self.exit_value} (port 0xF4)"
        text = {ENDED_POWEROFF: "powered off", ENDED_RESET: "reset",
                ENDED_STOPPED: "stopped (powered off or reset)",
                NO_END: "did not end", CRASHED: "crashed"}.get(self.ended, self.ended)
        if detail and self.detail:
            text += f": {self.detail}"
        return text

    def to_json(self):
        return {"ended": self.ended, "exit_value": self.exit_value, "detail": self.detail,
                "elapsed": round(self.elapsed, 3), "serial": self.serial.decode("latin-1")}


def qemu_side(run):
    detail = {qemu.TIMEOUT: "still running at the timeout, killed",
              qemu.POWEROFF: "SHUTDOWN guest-shutdown", qemu.RESET: "SHUTDOWN guest-reset",
              qemu.STOPPED: "QEMU exited with status 0"}.get(run.outcome, "")
    return Side("qemu+seabios", run.serial, _QEMU_CLASS.get(run.outcome, ENDED_EXIT),
                run.exit_value, detail, run.elapsed)


def pvboot_side(result):
    stop = result.stop
    reason = stop.reason
    exit_value = None
    if reason == "exit":
        ended, exit_value = ENDED_EXIT, stop.exit_value
    elif reason == "poweroff":
        ended = ENDED_RESET if stop.detail.startswith("reset") else ENDED_POWEROFF
    elif reason == "triple-fault":
        ended = ENDED_RESET        # a triple fault resets a PC; QEMU reports it as a reset
    elif reason in _PVBOOT_NO_END:
        ended = NO_END
    else:
        ended = CRASHED            # QEMU has no such ending: always a difference
    detail = reason if not stop.detail else f"{reason}: {stop.detail}"
    return Side("pvboot", result.console.encode("latin-1"), ended, exit_value, detail,
                result.elapsed, reason)


def endings_agree(a, b):
    if ENDED_STOPPED in (a.ended, b.ended):
        return {a.ended, b.ended} <= {ENDED_STOPPED, ENDED_POWEROFF, ENDED_RESET}
    return (a.ended, a.exit_value) == (b.ended, b.exit_value)


# -- showing transcripts ---------------------------------------------------------------
def visible(data):
    """Transcript bytes as one line of text: printable ASCII as is, everything else
    escaped (\\n \\r \\t \\e \\xNN, and \\\\ for a backslash), so that what differs is
    seen, a CR or an escape sequence included."""
    out = []
    for byte in data:
        if byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(_ESCAPES.get(byte) or f"\\x{byte:02x}")
    return "".join(out)


_ESCAPES = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x1B: "\\e"}
# Where the shown transcript is cut into lines: after each LF, and before each cursor
# positioning sequence (ESC [ row ; col H), which is how full-screen programs on a
# serial terminal (GRUB's menu) start a new piece of screen without a line feed.
_CUT = re.compile(rb"\n|(?=\x1b\[\d+;\d+H)")


def transcript_lines(data):
    """The transcript as lines for the diff, through visible(); joined and unescaped
    they give back every byte."""
    lines = []
    start = 0
    for match in _CUT.finditer(data):
        if match.end() > start:
            lines.append(visible(data[start:match.end()]))
            start = match.end()
    if start < len(data):
        lines.append(visible(data[start:]))
    return lines


def first_difference(a, b):
    """(byte offset, 1-based line) of the first byte where a and b differ."""
    n = min(len(a), len(b))
    at = next((i for i in range(n) if a[i] != b[i]), n)
    return at, a[:at].count(b"\n") + 1


def unified_diff(reference, ours, context=3):
    return "\n".join(difflib.unified_diff(
        transcript_lines(reference), transcript_lines(ours),
        "qemu+seabios", "pvboot", n=context, lineterm=""))


# -- the comparison --------------------------------------------------------------------
@dataclasses.dataclass
class Comparison:
    images: list
    floppy: str
    qemu: Side
    pvboot: Side
    report: str = ""           # pvboot's crash report, if any

    @property
    def serial_equal(self):
        return self.qemu.serial == self.pvboot.serial

    @property
    def endings_equal(self):
        return endings_agree(self.qemu, self.pvboot)

    @property
    def agree(self):
        return self.serial_equal and self.endings_equal

    @property
    def exit_code(self):
        return EXIT_AGREE if self.agree else EXIT_DIFFER

    def diff(self):
        return "" if self.serial_equal else unified_diff(self.qemu.serial, self.pvboot.serial)

    def verdict(self):
        target = " ".join([*self.images, *([f"--floppy {self.floppy}"] if self.floppy else [])])
        lines = []
        if self.agree:
            both = (f", both {self.qemu.describe(detail=False)}"
                    if self.qemu.ended == self.pvboot.ended else "")
            lines.append(f"pvboot compare: AGREE: {target}: identical serial output "
                         f"({len(self.qemu.serial)} bytes){both}")
        else:
            what = []
            if not self.serial_equal:
                a, b = self.qemu.serial, self.pvboot.serial
                at, line = first_difference(a, b)
                text = f"serial output differs from byte {at} (line {line})"
                if at == min(len(a), len(b)):
                    shorter = "qemu+seabios" if len(a) < len(b) else "pvboot"
                    text += f": {shorter}'s is a prefix of the other"
                    if NO_END in (self.qemu.ended, self.pvboot.ended):
                        text += " (a run that did not end was cut off at its timeout)"
                what.append(text)
            if not self.endings_equal:
                what.append("the runs ended differently")
            lines.append(f"pvboot compare: DIFFER: {target}: {'; '.join(what)}")
        for side in (self.qemu, self.pvboot):
            lines.append(f"  {side.name + ':':14s}{side.describe()}; "
                         f"{len(side.serial)} bytes of serial in {side.elapsed:.2f} s")
        return "\n".join(lines)

    def to_json(self):
        return {"verdict": "agree" if self.agree else "differ", "exit_code": self.exit_code,
                "images": self.images, "floppy": self.floppy,
                "serial_equal": self.serial_equal, "endings_equal": self.endings_equal,
                "qemu": self.qemu.to_json(), "pvboot": self.pvboot.to_json(),
                "diff": self.diff(), "report": self.report}


def _check_inputs(images, floppy, boot_from, cdrom=None):
    """The boot device (hd, floppy or cd); runner.InputError for unusable input."""
    if not images and not floppy and not cdrom:
        raise runner.InputError("nothing to boot: give a disk image, --floppy or --cdrom")
    boot_from = boot_from or ("hd" if images else "floppy" if floppy else "cd")
    if boot_from == "cd" and not cdrom:
        raise runner.InputError("--boot cd needs --cdrom ISO")
    if cdrom:
        runner.check_image(cdrom, bootable=False)
    if boot_from == "floppy" and not floppy:
        raise runner.InputError("--boot floppy needs --floppy IMAGE")
    for i, path in enumerate(images):
        runner.check_image(path, bootable=(boot_from == "hd" and i == 0))
    if floppy:
        runner.check_image(floppy, bootable=(boot_from == "floppy"))
    return boot_from


def _qemu_keys(keys, keys_after):
    """QEMU sendkey names for a pvboot key script (None without keys)."""
    if not keys:
        return None
    try:
        key_names = qemu_key_names(keys)
    except ValueError as exc:
        raise runner.InputError(str(exc)) from None
    if keys_after is None:
        raise runner.InputError(
            "--keys needs --keys-after TEXT: QEMU gets the keys once TEXT appears on "
            "the serial console (keys sent before the guest reads the keyboard are lost)")
    return key_names


QEMU_DISKS = ("ide", "virtio", "ahci")


def qemu_disk_args(images, interface="ide"):
    """(disks, extra_args) for qemu.run: the hard disks on QEMU's default IDE
    controller, on virtio-blk, or on an AHCI controller."""
    if interface == "ide":
        return list(images), []
    if interface not in QEMU_DISKS:
        raise runner.InputError(f"unknown QEMU disk interface {interface!r} (use ide, virtio or ahci)")
    args = []
    for index, path in enumerate(images):
        drive = f"file={str(path).replace(',', ',,')},format=raw"
        if interface == "virtio":
            args += ["-drive", f"{drive},if=virtio"]
        else:
            if index == 0:
                args += ["-device", "ahci,id=pvbahci"]
            args += ["-drive", f"{drive},if=none,id=pvbdisk{index}",
                     "-device", f"ide-hd,drive=pvbdisk{index},bus=pvbahci.{index}"]
    return [], args


def compare(images, floppy=None, boot_from=None, memory_mib=64, timeout=qemu.DEFAULT_TIMEOUT,
            keys="", keys_after=None, driver="xen", qemu_disk="ide"):
    """Boot under both and compare; returns a Comparison.  Raises runner.InputError for
    unusable input and qemu.QemuError when QEMU is missing or refuses to start."""
    boot_from = _check_inputs(images, floppy, boot_from)
    key_names = _qemu_keys(keys, keys_after)
    qemu_disks, qemu_args = qemu_disk_args(images, qemu_disk)
    if not qemu.qemu_available():
        raise qemu.QemuMissing()

    # The two boots are independent (QEMU works on a snapshot of the images, pvboot on
    # its own overlay): run them side by side.
    cancel = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        reference = pool.submit(
            qemu.run, qemu_disks, floppy, boot=boot_from,
            # pvboot's memory is RAM above 1 MiB; QEMU's -m counts from address 0.
            memory_mb=memory_mib + 1, timeout=timeout, keys=key_names, keys_after=keys_after,
            snapshot=True, cancel=cancel, extra_args=qemu_args)
        try:
            result = runner.boot(list(images), floppy=floppy, boot_from=boot_from,
                                 memory_mib=memory_mib, timeout=timeout, keys=keys,
                                 driver=driver)
        except BaseException:
            cancel.set()           # pvboot could not run: do not wait for QEMU's timeout
            raise
        finally:
            qemu_run = reference.result()
    return Comparison(list(images), floppy, qemu_side(qemu_run), pvboot_side(result),
                      result.stop.report)


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
    boot_from = _check_inputs(images, floppy, boot_from, cdrom)
    key_names = None
    qemu_disks, qemu_args = [], []
    if SEABIOS in paths:
        key_names = _qemu_keys(keys, keys_after)
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
            diff = "\n".join(difflib.unified_diff(
                transcript_lines(side.serial), transcript_lines(ref.side.serial),
                "qemu+seabios", f"pvboot {reference}", n=3, lineterm=""))
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
    from pvboot.tools.cli import _positive_float, _positive_int
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
    p.add_argument("--memory", type=_positive_int, default=64, metavar="MIB",
                   help="pvboot's RAM above 1 MiB in MiB (default 64); QEMU gets -m MIB+1")
    p.add_argument("--timeout", type=_positive_float, default=qemu.DEFAULT_TIMEOUT,
                   metavar="SECONDS", help="wall-clock limit of each run (default "
                   f"{qemu.DEFAULT_TIMEOUT:g}); QEMU is killed when it is reached")
    p.add_argument("--keys", default="", metavar="KEYS",
                   help="keystrokes in pvboot's syntax ('abc{enter}', {down}, {f1}); QEMU "
                        "gets them as sendkey names once --keys-after appears")
    p.add_argument("--keys-after", metavar="TEXT",
                   help="type the keys under QEMU once TEXT appears on its serial output")
    p.add_argument("--qemu-disk", choices=QEMU_DISKS, default="ide",
                   help="the controller QEMU puts the hard disks on (default ide, QEMU's "
                        "default; SeaBIOS's 16-bit IDE driver cannot fill buffers above 1 MiB)")
    p.add_argument("--backend-timeout", type=_positive_float, default=5.0, metavar="SECONDS",
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
        if not args.with_qemu:
            if args.driver is not None:
                raise runner.InputError("--driver goes with --with-qemu; with --paths name "
                                        "the paths (ata, pv-bounce, pv-direct, seabios)")
            paths = parse_paths(args.paths if args.paths is not None else ",".join(ALL_PATHS))
            return run_paths(args, paths, out, err)
        comparison = compare(args.images, floppy=args.floppy, boot_from=args.boot,
                             memory_mib=args.memory, timeout=args.timeout, keys=args.keys,
                             keys_after=args.keys_after, driver=args.driver or "xen",
                             qemu_disk=args.qemu_disk)
    except qemu.QemuError as exc:
        print(f"pvboot: error: {exc}", file=err)
        return runner.EXIT_USAGE
    if comparison.pvboot.reason == "firmware-error":
        print(f"pvboot compare: pvboot internal error: {comparison.pvboot.detail}", file=err)
        return runner.EXIT_INTERNAL
    if args.json:
        print(json.dumps(comparison.to_json(), indent=2), file=out)
        return comparison.exit_code
    print(comparison.verdict(), file=out)
    if not comparison.serial_equal:
        print(comparison.diff(), file=out)
    if comparison.report and comparison.pvboot.ended == CRASHED:
        print(comparison.report, file=err)
    return comparison.exit_code
