"""Boots images under real QEMU + SeaBIOS, the reference pvboot is measured against:
QEMU starts paused, QMP lets it run, types keys (sendkey) and reports SHUTDOWN; the
run ends on an isa-debug-exit write, a power-off or reset, or the timeout (QEMU is
killed).  COM1 is a pipe read as raw bytes.  docs/tools.md has the command line.
"""
import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from pvboot.emu.storage.daemon import StorageError
from pvboot.emu.storage.probe import resolve_format
from pvboot.tools import options

QEMU = "qemu-system-i386"
# The Debian package that provides QEMU (it pulls in seabios, the BIOS it boots).
QEMU_PACKAGE = "qemu-system-x86"
DEFAULT_TIMEOUT = 10.0
DEFAULT_KEY_GAP = 0.15

# Outcomes of a run (QemuRun.outcome).
EXIT = "exit"             # the guest wrote to port 0xF4 (exit_value)
POWEROFF = "poweroff"     # APM/ACPI power-off
RESET = "reset"           # reset request or triple fault (-no-reboot ends QEMU)
STOPPED = "stopped"       # QEMU ended with status 0 and no SHUTDOWN event seen
TIMEOUT = "timeout"       # still running at the timeout: killed
SCREEN = "screen"         # the text screen matched screen_until: stopped then


class QemuError(RuntimeError):
    """QEMU itself failed (bad arguments, missing image or BIOS), as opposed to the guest."""


class QemuMissing(QemuError):
    """qemu-system-i386 is not installed."""

    def __init__(self):
        super().__init__(f"{QEMU} not found: install the Debian package {QEMU_PACKAGE}")


@dataclasses.dataclass
class QemuRun:
    serial: bytes             # everything the guest wrote to COM1
    outcome: str              # EXIT, POWEROFF, RESET, STOPPED or TIMEOUT
    exit_value: int = None    # with EXIT: the value written to port 0xF4
    returncode: int = None
    elapsed: float = 0.0
    stderr: str = ""
    command: list = dataclasses.field(default_factory=list)
    screen: str = None        # with SCREEN: the text screen that matched screen_until

    @property
    def serial_text(self):
        """The transcript decoded as Latin-1, so no byte is lost."""
        return self.serial.decode("latin-1")


def qemu_available():
    """True when qemu-system-i386 is on PATH."""
    return shutil.which(QEMU) is not None


def qemu_command(disks=(), floppy=None, boot=None, memory_mb=64, snapshot=False, extra_args=(),
                 cdrom=None):
    """The QEMU command line: `disks` are hard disks (80h, 81h, ...), `floppy` drive A.

    cdrom: the secondary IDE master's disc (QEMU's -cdrom; "" for an empty drive).
    boot: "hd", "floppy" or "cd" (default: the first hard disk if any).  memory_mb is QEMU's
    -m, all RAM from address 0.  snapshot: guest writes go to a temporary overlay, the
    image files are left as they were (pvboot's default)."""
    boot = boot or ("hd" if disks else "floppy" if floppy is not None else "cd")
    drives = []
    for path in disks:
        drives += ["-drive", drive_spec(path)]
    if floppy is not None:
        drives += ["-drive", drive_spec(floppy) + ",if=floppy"]
    if cdrom is not None:
        drives += ["-drive", (drive_spec(cdrom) + "," if cdrom else "")
                   + "if=ide,index=2,media=cdrom"]
    drives += ["-boot", {"floppy": "a", "cd": "d"}.get(boot, "c")]
    return [QEMU, "-display", "none", "-serial", "stdio", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-m", str(memory_mb),
            # No NIC: no iPXE option ROM to load, and no network boot to fall into.
            "-nic", "none",
            *(["-snapshot"] if snapshot else []),
            *drives, *extra_args]


def drive_spec(path):
    """-drive's file= and format= for an image: its format as pvboot reads it (the
    same qcow2, vmdk, ... on both sides of a comparison)."""
    try:
        fmt, _info = resolve_format(str(path))
    except StorageError:
        fmt = "raw"           # QEMU then says what is wrong with it, in its own words
    # -drive splits its argument on commas; a comma in a file name is written twice.
    return f"file={str(Path(path)).replace(',', ',,')},format={fmt}"


def decode_exit(returncode):
    """The guest's exit value from QEMU's exit status, or None if it did not exit by port."""
    if returncode is not None and returncode > 0 and returncode & 1:
        return returncode >> 1
    return None


def run(disks=(), floppy=None, *, boot=None, memory_mb=64, timeout=DEFAULT_TIMEOUT,
        keys=None, keys_after=None, key_gap=DEFAULT_KEY_GAP, snapshot=False, extra_args=(),
        cancel=None, screendump=None, cdrom=None, monitor=(), screen_until=None):
    """Boot under QEMU + SeaBIOS; returns a QemuRun.  Raises QemuMissing when QEMU is not
    installed and QemuError when QEMU fails before the guest runs.

    keys: QEMU sendkey names ("a", "shift-a", "ret", "f1"), typed key_gap seconds apart
    once `keys_after` (a string) appears on the serial port, or as soon as the guest
    runs if it is None.  QEMU is killed after `timeout` seconds, or as soon as the
    threading.Event `cancel` is set (outcome TIMEOUT).  screendump: a path where QEMU
    saves the display (QMP screendump, a PPM) when `keys_after` appears, before the
    keys are typed.  monitor: human monitor commands (e.g. `change floppy0 FILE raw
    read-only`, a diskette swap) run when `keys_after` appears, before the keys."""
    if not qemu_available():
        raise QemuMissing()
    with tempfile.TemporaryDirectory(prefix="pvboot-qemu-") as tmp:
        qmp_path = os.path.join(tmp, "qmp.sock")
        args = [*extra_args, "-S", "-qmp", f"unix:{qmp_path},server=on,wait=off"]
        cmd = qemu_command(disks, floppy, boot, memory_mb, snapshot, args, cdrom)
        started = time.monotonic()
        deadline = started + timeout
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise QemuMissing() from None
        out = bytearray()
        err = bytearray()
        seen = threading.Event()
        marker = options.serial_bytes(keys_after) if keys_after else None

        def pump_stdout():
            while True:
                chunk = proc.stdout.read1(4096)
                if not chunk:
                    return
                out.extend(chunk)
                if marker is None or marker in out:
                    seen.set()

        def pump_stderr():
            err.extend(proc.stderr.read())

        readers = [threading.Thread(target=pump_stdout, daemon=True),
                   threading.Thread(target=pump_stderr, daemon=True)]
        for reader in readers:
            reader.start()
        qmp = None
        screen = None
        try:
            qmp = _Qmp.connect(qmp_path, proc, deadline)
            if qmp is not None:
                qmp.execute("cont")
                if screen_until is not None:
                    screen = _wait_for_screen(qmp, proc, re.compile(screen_until), deadline, cancel)
                if keys or screendump or monitor:
                    if marker is None:
                        seen.set()
                    # Stop waiting for the marker as soon as QEMU is gone.
                    while not seen.wait(0.02):
                        if proc.poll() is not None or time.monotonic() > deadline or \
                                (cancel is not None and cancel.is_set()):
                            break
                    if seen.is_set() and proc.poll() is None:
                        if screendump:
                            qmp.execute("screendump", {"filename": str(screendump)}, timeout=10)
                        for command in monitor:
                            qmp.execute("human-monitor-command", {"command-line": command},
                                        timeout=10)
                        for key in keys or ():
                            if time.monotonic() > deadline:
                                break
                            if not qmp.execute("human-monitor-command",
                                               {"command-line": f"sendkey {key}"}):
                                break       # QEMU already quit: its exit status tells the rest
                            time.sleep(key_gap)
            if screen is not None:
                pass                # seen what was asked for: QEMU is stopped below
            elif cancel is None:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            else:
                while proc.poll() is None and not cancel.wait(0.02):
                    if time.monotonic() > deadline:
                        break
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            elapsed = time.monotonic() - started
            for reader in readers:
                reader.join(timeout=10)     # QEMU is gone: its pipes are at EOF
            if qmp is not None:
                qmp.close()
        stderr = err.decode(errors="replace").strip()
        if qmp is None and proc.returncode >= 0:
            # QEMU ended before the guest was let run: it refused its command line.
            raise QemuError(f"{' '.join(cmd)}: {stderr or f'exit status {proc.returncode}'}")
        code = proc.returncode
        exit_value = None
        if screen is not None:
            return QemuRun(bytes(out), SCREEN, None, code, elapsed, stderr, cmd, screen)
        if code < 0:
            outcome = TIMEOUT
        elif decode_exit(code) is not None:
            outcome, exit_value = EXIT, decode_exit(code)
        elif code == 0:
            reason = qmp.shutdown_reason if qmp is not None else None
            outcome = {"guest-shutdown": POWEROFF, "guest-reset": RESET}.get(reason, STOPPED)
        else:
            raise QemuError(f"{' '.join(cmd)}: exit status {code}: {stderr}")
        return QemuRun(bytes(out), outcome, exit_value, code, elapsed, stderr, cmd)


# VGA text mode: 80x25 cells of (character, attribute) at B8000h.
TEXT_BUFFER = 0xB8000
TEXT_COLUMNS, TEXT_ROWS = 80, 25
SCREEN_POLL_SECONDS = 0.1
_XP_WORD = re.compile(r"0x([0-9a-fA-F]{4})")


def _read_text_screen(qmp):
    """QEMU's 80x25 text screen as 25 lines (code page 437, trailing blanks dropped),
    or None when QEMU has gone."""
    reply = qmp.execute("human-monitor-command", {
        "command-line": f"xp /{TEXT_COLUMNS * TEXT_ROWS}hx {TEXT_BUFFER:#x}"}, timeout=10)
    if not isinstance(reply, str):
        return None
    chars = bytes(int(word, 16) & 0xFF for line in reply.splitlines()
                  for word in _XP_WORD.findall(line.split(":", 1)[-1]))
    rows = [chars[i:i + TEXT_COLUMNS] for i in range(0, len(chars), TEXT_COLUMNS)]
    return "\n".join(row.decode("cp437").rstrip() for row in rows[:TEXT_ROWS])


def _wait_for_screen(qmp, proc, pattern, deadline, cancel):
    """Poll the text screen until `pattern` matches it; the screen, or None when QEMU
    ended, the deadline passed or `cancel` was set first."""
    while proc.poll() is None and time.monotonic() < deadline and \
            not (cancel is not None and cancel.is_set()):
        screen = _read_text_screen(qmp)
        if screen is not None and pattern.search(screen):
            return screen
        time.sleep(SCREEN_POLL_SECONDS)
    return None


def run_qemu(image, *, floppy=False, timeout=DEFAULT_TIMEOUT, memory_mb=64, extra_args=(),
             keys=None, keys_after=None, key_gap=DEFAULT_KEY_GAP, snapshot=False):
    """Boot one image (a hard disk, or a floppy with floppy=True); return
    (exit_value, serial_text).  exit_value is what the guest wrote to port 0xF4, or
    None when it never did (killed at the timeout, or it powered off / reset)."""
    if floppy:
        result = run((), image, boot="floppy", memory_mb=memory_mb, timeout=timeout, keys=keys,
                     keys_after=keys_after, key_gap=key_gap, snapshot=snapshot,
                     extra_args=extra_args)
    else:
        result = run((image,), None, memory_mb=memory_mb, timeout=timeout, keys=keys,
                     keys_after=keys_after, key_gap=key_gap, snapshot=snapshot,
                     extra_args=extra_args)
    return result.exit_value, result.serial_text


class _Qmp:
    """A QMP client on QEMU's unix socket: commands in order, and the SHUTDOWN event."""

    def __init__(self, sock):
        self.sock = sock
        self.shutdown_reason = None
        self._buf = b""
        self._closed = False
        self._reader = None
        self._lock = threading.Lock()
        self._replies = []
        self._reply = threading.Condition(self._lock)

    @classmethod
    def connect(cls, path, proc, deadline):
        """Connect and negotiate; None if QEMU ended (or the deadline passed) first."""
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                return None
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                time.sleep(0.01)
        sock.settimeout(max(0.5, deadline - time.monotonic()))
        qmp = cls(sock)
        try:
            qmp._read_message()                         # the greeting
            sock.sendall(b'{"execute": "qmp_capabilities"}\n')
            while "return" not in (qmp._read_message() or {"return": None}):
                pass
        except (OSError, ValueError):
            sock.close()
            return None
        sock.settimeout(None)
        qmp._reader = threading.Thread(target=qmp._read_loop, daemon=True)
        qmp._reader.start()
        return qmp

    def _read_message(self):
        while b"\n" not in self._buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _read_loop(self):
        try:
            while True:
                message = self._read_message()
                if message is None:
                    break
                if message.get("event") == "SHUTDOWN":
                    self.shutdown_reason = message.get("data", {}).get("reason")
                elif "return" in message or "error" in message:
                    with self._lock:
                        self._replies.append(message)
                        self._reply.notify_all()
        except (OSError, ValueError):
            pass
        with self._lock:
            self._closed = True
            self._reply.notify_all()

    def execute(self, command, arguments=None, timeout=2.0):
        """Send a command and wait for its reply: what it returned (True when that is
        empty), or False on an error or when QEMU has gone."""
        message = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            return False
        end = time.monotonic() + timeout
        with self._lock:
            while not self._replies and not self._closed:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._reply.wait(left)
            if self._replies:
                reply = self._replies.pop(0)
                if "return" not in reply:
                    return False
                # An empty answer ("" from sendkey, {} from most commands) is success.
                return reply["return"] or True
            return False

    def close(self):
        # QEMU is gone by now: the reader sees end of file and finishes.
        if self._reader is not None:
            self._reader.join(timeout=2)
        self.sock.close()
