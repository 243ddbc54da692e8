"""One side of a comparison (a pvboot run or a QEMU + SeaBIOS run): its serial
transcript and how it ended, in the classes both machines can observe, and how
transcripts are shown (control bytes escaped) and diffed.  Shared by both compare
tools (tools/comparepaths.py, tools/withqemu.py); docs/tools.md has the rules.
"""
import dataclasses
import difflib
import re

from pvboot.firmware import kbd
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


def unified_diff(reference, ours, context=3, labels=("qemu+seabios", "pvboot")):
    return "\n".join(difflib.unified_diff(
        transcript_lines(reference), transcript_lines(ours), *labels, n=context, lineterm=""))


def check_inputs(images, floppy, boot_from, cdrom=None):
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


def qemu_keys(keys, keys_after):
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
        drive = qemu.drive_spec(path)
        if interface == "virtio":
            args += ["-drive", f"{drive},if=virtio"]
        else:
            if index == 0:
                args += ["-device", "ahci,id=pvbahci"]
            args += ["-drive", f"{drive},if=none,id=pvbdisk{index}",
                     "-device", f"ide-hd,drive=pvbdisk{index},bus=pvbahci.{index}"]
    return [], args
