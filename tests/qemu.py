"""Boots a raw image under real QEMU + SeaBIOS, the reference pvboot is measured against.

run_qemu() returns (exit_value, serial_text): exit_value is what the guest wrote
to the isa-debug-exit port 0xF4 (QEMU exits with (value << 1) | 1), or None when
the guest never wrote it (QEMU was killed at the timeout, or it stopped on its
own, e.g. -no-reboot after a triple fault). serial_text is everything the guest
wrote to COM1, decoded as Latin-1 so no byte is lost.

Keys can be typed into the guest through the human monitor's `sendkey`, once
the serial output shows a marker (the guest is then polling INT 16h).
"""
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

QEMU = "qemu-system-i386"
DEFAULT_TIMEOUT = 10.0


class QemuError(RuntimeError):
    """QEMU itself failed (bad arguments, missing image), as opposed to the guest."""


def qemu_available():
    """True when qemu-system-i386 is on PATH."""
    return shutil.which(QEMU) is not None


def qemu_command(image, floppy=False, memory_mb=64, extra_args=()):
    """The QEMU command line for booting `image` (a disk, or a floppy with floppy=True)."""
    image = Path(image)
    if floppy:
        drive = ["-drive", f"file={image},if=floppy,format=raw", "-boot", "a"]
    else:
        drive = ["-drive", f"file={image},format=raw", "-boot", "c"]
    return [QEMU, "-display", "none", "-serial", "stdio", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-m", str(memory_mb),
            # No NIC: no iPXE option ROM to load, and no network boot to fall into.
            "-nic", "none",
            *drive, *extra_args]


def decode_exit(returncode):
    """The guest's exit value from QEMU's exit status, or None if it did not exit by port."""
    if returncode is not None and returncode > 0 and returncode & 1:
        return returncode >> 1
    return None


def run_qemu(image, *, floppy=False, timeout=DEFAULT_TIMEOUT, memory_mb=64, extra_args=(),
             keys=None, keys_after=None, key_gap=0.15):
    """Boot `image`; return (exit_value, serial_text).

    keys: QEMU sendkey names typed, key_gap seconds apart, once `keys_after`
    (a string) appears on the serial port, or right after start if it is None.
    QEMU is killed after `timeout` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="pvboot-qemu-") as tmp:
        args = list(extra_args)
        monitor = None
        if keys:
            monitor = os.path.join(tmp, "monitor.sock")
            args += ["-monitor", f"unix:{monitor},server=on,wait=off"]
        cmd = qemu_command(image, floppy, memory_mb, args)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        out = bytearray()
        err = bytearray()
        seen = threading.Event()
        marker = keys_after.encode("latin-1") if keys_after else None

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
        deadline = time.monotonic() + timeout
        try:
            if keys:
                if marker is None:
                    seen.set()
                # Stop waiting for the marker as soon as QEMU is gone.
                while not seen.wait(0.02):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        break
                if seen.is_set() and proc.poll() is None:
                    _send_keys(monitor, keys, key_gap, deadline)
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for reader in readers:
                reader.join(timeout=2)
        timed_out = proc.returncode < 0
        if proc.returncode == 1 and not out and err.strip():
            raise QemuError(f"{' '.join(cmd)}: {err.decode(errors='replace').strip()}")
        exit_value = None if timed_out else decode_exit(proc.returncode)
        return exit_value, bytes(out).decode("latin-1")


def _send_keys(path, keys, gap, deadline):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    while True:
        try:
            sock.connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise QemuError("QEMU monitor socket never appeared") from None
            time.sleep(0.02)
    with sock:
        sock.settimeout(1.0)
        try:
            for key in keys:
                sock.sendall(f"sendkey {key}\n".encode())
                time.sleep(gap)
        except (BrokenPipeError, ConnectionResetError):
            return      # QEMU already quit: the guest's exit value tells the rest
        _drain(sock)


def _drain(sock):
    # The monitor echoes; reading keeps it from blocking on a full socket buffer.
    sock.settimeout(0.05)
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass
