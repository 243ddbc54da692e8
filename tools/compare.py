"""`pvboot compare --with-qemu`: boot the same images under QEMU + SeaBIOS and under
pvboot (its Xen PV disk path) and compare what the guest wrote to COM1.

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

from firmware import kbd
from tools import qemu, runner

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


def compare(images, floppy=None, boot_from=None, memory_mib=64, timeout=qemu.DEFAULT_TIMEOUT,
            keys="", keys_after=None, driver="xen"):
    """Boot under both and compare; returns a Comparison.  Raises runner.InputError for
    unusable input and qemu.QemuError when QEMU is missing or refuses to start."""
    if not images and not floppy:
        raise runner.InputError("nothing to boot: give a disk image or --floppy")
    boot_from = boot_from or ("hd" if images else "floppy")
    if boot_from == "floppy" and not floppy:
        raise runner.InputError("--boot floppy needs --floppy IMAGE")
    for i, path in enumerate(images):
        runner.check_image(path, bootable=(boot_from == "hd" and i == 0))
    if floppy:
        runner.check_image(floppy, bootable=(boot_from == "floppy"))
    key_names = None
    if keys:
        try:
            key_names = qemu_key_names(keys)
        except ValueError as exc:
            raise runner.InputError(str(exc)) from None
        if keys_after is None:
            raise runner.InputError(
                "--keys needs --keys-after TEXT: QEMU gets the keys once TEXT appears on "
                "the serial console (keys sent before the guest reads the keyboard are lost)")
    if not qemu.qemu_available():
        raise qemu.QemuMissing()

    # The two boots are independent (QEMU works on a snapshot of the images, pvboot on
    # its own overlay): run them side by side.
    cancel = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        reference = pool.submit(
            qemu.run, list(images), floppy, boot=boot_from,
            # pvboot's memory is RAM above 1 MiB; QEMU's -m counts from address 0.
            memory_mb=memory_mib + 1, timeout=timeout, keys=key_names, keys_after=keys_after,
            snapshot=True, cancel=cancel)
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


DESCRIPTION = """\
Boot the same images under QEMU + SeaBIOS (qemu-system-i386, Debian package
qemu-system-x86) and under pvboot (hard disks through the Xen PV path), and compare
what the guest wrote to COM1, byte for byte, and how each run ended (exit value on
port 0xF4, power-off, reset, or no end before the timeout).  Neither run changes the
images (QEMU runs with -snapshot, pvboot on its overlay).

exit codes:
  0  the runs agree
  1  they differ (a verdict and a unified diff of the transcripts are printed)
  2  usage or input error, or QEMU is not installed or refuses to start
  4  pvboot internal error
"""


def add_arguments(p):
    from tools.cli import _positive_float, _positive_int
    p.add_argument("images", nargs="*", metavar="IMAGE", help="hard disk images: 80h, 81h, ...")
    p.add_argument("--with-qemu", action="store_true", required=True,
                   help="compare with QEMU + SeaBIOS (the only reference so far)")
    p.add_argument("--floppy", metavar="IMAGE", help="floppy image for drive 00h")
    p.add_argument("--boot", choices=("hd", "floppy"), help="boot device (default: hd if given)")
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
    p.add_argument("--driver", choices=("xen", "host"), default="xen",
                   help="pvboot's hard disk path (default xen: the PV frontend and blkback)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: verdict, both transcripts and endings, diff")


def run_compare(args, out=None, err=None):
    """The `pvboot compare` command (args from tools.cli); returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        comparison = compare(args.images, floppy=args.floppy, boot_from=args.boot,
                             memory_mib=args.memory, timeout=args.timeout, keys=args.keys,
                             keys_after=args.keys_after, driver=args.driver)
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
