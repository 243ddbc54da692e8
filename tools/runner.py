"""Boot a set of disk images on a fresh machine and collect the result.

This is the one place that assembles a run: platform (emu.Machine), disk images
(emu.diskimage), the BIOS (firmware.bios) and the user's expectations.  The CLI, the
tests and (later) the pytest plugin all go through `boot()`.
"""
import dataclasses
import os
import re
import sys
import time

from emu.diskimage import DiskImage, DiskImageError
from emu.machine import Machine, Stop
from emu.xen.platform import XenPlatform, XenPlatformError
from firmware.bios import Bios, BiosConfig
from firmware import bda
from firmware.video import screen_cells, screen_text

# Exit codes of `pvboot boot` (documented in the README).
EXIT_SUCCESS = 0
EXIT_TEST_FAILURE = 1
EXIT_USAGE = 2
EXIT_CRASH = 3
EXIT_INTERNAL = 4


class InputError(Exception):
    """Bad user input: reported as one line on stderr, exit code 2."""


@dataclasses.dataclass
class Result:
    stop: Stop
    console: str
    screen: str
    counters: dict
    elapsed: float
    expect: str = None
    expect_met: bool = None
    messages: list = dataclasses.field(default_factory=list)
    kernel: dict = None          # --stop-at kernel-entry / --expect-kernel (tools/kernel.py)
    cells: list = None           # the final screen as rows of (char, attr), for --screenshot
    video_mode: int = 0x03       # the BIOS video mode at the end (7: monochrome)

    @property
    def exit_code(self):
        return exit_code_for(self.stop, self.expect, self.expect_met, self.kernel)

    def to_json(self):
        return {
            "reason": self.stop.reason,
            "detail": self.stop.detail,
            "exit_value": self.stop.exit_value,
            "exit_code": self.exit_code,
            "expect": self.expect,
            "expect_met": self.expect_met,
            "console": self.console,
            "screen": self.screen,
            "counters": self.counters,
            "elapsed": round(self.elapsed, 6),
            "report": self.stop.report,
            "messages": self.messages,
            "kernel": self.kernel,
        }


def exit_code_for(stop, expect=None, expect_met=None, kernel=None):
    reason = stop.reason
    if reason == "firmware-error":
        return EXIT_INTERNAL
    if stop.crashed:
        return EXIT_CRASH
    if kernel is not None and not kernel["ok"]:
        return EXIT_TEST_FAILURE     # kernel bytes differ, or its entry was never reached
    if reason == "expected":
        return EXIT_SUCCESS
    if expect is not None and not expect_met:
        return EXIT_TEST_FAILURE
    if reason == "exit":
        return EXIT_SUCCESS if stop.exit_value == 0 else EXIT_TEST_FAILURE
    if reason in ("halted", "poweroff", "kernel-entry"):
        return EXIT_SUCCESS
    return EXIT_TEST_FAILURE


def _kernel_check(stop_at, expect_kernel):
    """The KernelCheck for --stop-at / --expect-kernel (None when neither is given)."""
    if stop_at not in (None, "kernel-entry"):
        raise InputError(f"--stop-at: unknown event {stop_at!r} (use kernel-entry)")
    if stop_at is None and expect_kernel is None:
        return None
    from tools.kernel import KernelCheck, KernelError
    if expect_kernel is not None:
        path = str(expect_kernel)
        if not os.path.exists(path):
            raise InputError(f"--expect-kernel {path}: no such file")
        if os.path.isdir(path):
            raise InputError(f"--expect-kernel {path}: is a directory, not a kernel")
        if not os.access(path, os.R_OK):
            raise InputError(f"--expect-kernel {path}: not readable")
    try:
        return KernelCheck(expect_kernel, stop=(stop_at == "kernel-entry"))
    except KernelError as exc:
        raise InputError(f"--expect-kernel {expect_kernel}: {exc}") from None


def check_image(path, bootable):
    """Raise InputError with one clear line if `path` cannot be used as a disk image."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a disk image")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: not readable")
    size = os.path.getsize(path)
    if size < 512:
        raise InputError(f"{path}: {size} bytes is shorter than one 512-byte sector")
    if bootable:
        with open(path, "rb") as f:
            f.seek(510)
            if f.read(2) != b"\x55\xAA":
                raise InputError(f"{path}: no boot signature (55 AA) at the end of sector 0")


def open_disks(images, floppy=None, read_only=False, persist=False):
    """DiskImages the firmware's plain driver serves: hard disks first (80h, 81h, ...),
    then the floppy."""
    disks = []
    try:
        for path in images:
            disks.append(DiskImage(path, kind="hd", read_only=read_only, persist=persist))
        if floppy:
            disks.append(DiskImage(floppy, kind="floppy", read_only=read_only, persist=persist))
    except DiskImageError as exc:
        for disk in disks:
            disk.close()
        raise InputError(str(exc)) from None
    return disks


def boot(images, floppy=None, boot_from=None, memory_mib=64, timeout=30.0, max_insns=None,
         keys="", serial_input=b"", expect=None, realtime=False, trace=(), trace_out=None,
         read_only=False, persist=False, echo=None, driver="xen", backend_timeout=5.0,
         pv_path="bounce", stop_at=None, expect_kernel=None):
    """Boot `images` (hard disks) and/or `floppy`; returns a Result.

    boot_from: "hd" or "floppy" (default: the first hard disk if any).
    echo: a binary file that receives console bytes as the guest sends them.
    driver: "xen" (hard disks are Xen PV disks served by blkback processes), "host"
    (the firmware's plain driver; floppies always use it) or "ata" (up to two hard disks
    on the emulated IDE channel, master and slave, driven by the firmware's ATA driver).
    pv_path: how the PV frontend moves data: "bounce" (one granted bounce page) or
    "direct" (the caller's pages granted per request).
    stop_at: "kernel-entry" ends the run when the guest first executes the kernel's 32-bit
    entry (code32_start of expect_kernel, else 0x100000).
    expect_kernel: a Linux boot protocol kernel file whose protected-mode part must be in
    guest memory at its entry when the guest gets there (tools/kernel.py KernelCheck).
    """
    if not images and not floppy:
        raise InputError("nothing to boot: give a disk image or --floppy")
    boot_from = boot_from or ("hd" if images else "floppy")
    if boot_from == "floppy" and not floppy:
        raise InputError("--boot floppy needs --floppy IMAGE")
    for i, path in enumerate(images):
        check_image(path, bootable=(boot_from == "hd" and i == 0))
    if floppy:
        check_image(floppy, bootable=(boot_from == "floppy"))
    try:
        expect_re = re.compile(expect) if expect is not None else None
    except re.error as exc:
        raise InputError(f"--expect: bad regular expression: {exc}") from None

    kernel_check = _kernel_check(stop_at, expect_kernel)

    if driver not in ("xen", "host", "ata"):
        raise InputError(f"unknown disk driver {driver!r} (use xen, host or ata)")
    if driver == "ata" and len(images) > 2:
        raise InputError(f"--driver ata: the IDE channel holds two disks, not {len(images)}")
    host_images = images if driver == "host" else []
    disks = open_disks(host_images, floppy, read_only=read_only, persist=persist)
    ata_disks = []
    if driver == "ata":
        try:
            ata_disks = open_disks(images, read_only=read_only, persist=persist)
        except InputError:
            for disk in disks:
                disk.close()
            raise
    machine = Machine(memory_mib=memory_mib, realtime=realtime)
    platform = bios = None
    try:
        if ata_disks:
            from emu.devices import ata
            ata.install(machine, ata_disks)
        if driver == "xen" and images:
            try:
                platform = XenPlatform(machine.mem)
                pv_paths = {platform.attach_disk(path, read_only=read_only, persist=persist): pv_path
                            for path in images}
            except XenPlatformError as exc:
                raise InputError(str(exc)) from None
        order = (0x00,) if boot_from == "floppy" else None
        config = BiosConfig(disks=disks, keys=keys, boot_order=order, trace=frozenset(trace),
                            trace_out=trace_out if trace_out is not None else sys.stderr,
                            xen=platform.guest_interface() if platform else None,
                            pv_timeout=backend_timeout,
                            pv_paths=pv_paths if platform else {},
                            ata=bool(ata_disks))
        try:
            bios = Bios(machine, config)
        except ValueError as exc:      # e.g. an unknown key name in --keys
            raise InputError(str(exc)) from None
        if serial_input:
            machine.devices["com1"].feed(serial_input)
        state = {"met": False, "searched": 0}

        def on_byte(byte):
            if echo is not None:
                echo.write(bytes([byte]))
                if byte == 0x0A:
                    echo.flush()
            if expect_re is not None and not state["met"]:
                # Search on line ends and every 64 bytes: a full search per byte is quadratic.
                if byte == 0x0A or len(machine.console) - state["searched"] >= 64:
                    state["searched"] = len(machine.console)
                    if expect_re.search(machine.console.decode("latin-1")):
                        state["met"] = True
                        if kernel_check is None or kernel_check.reached:
                            machine.stop("expected", f"console matched {expect!r}")

        machine.console_listeners.append(on_byte)
        if kernel_check is not None:
            kernel_check.attach(machine)
            # A console match before the kernel entry does not end the run: the entry
            # is still to be checked.  It ends it at the entry instead.
            kernel_check.on_reached.append(
                lambda: state["met"] and machine.stop("expected", f"console matched {expect!r}"))
        started = time.monotonic()
        stop = machine.run(timeout=timeout, max_insns=max_insns)
        elapsed = time.monotonic() - started
        bios.shutdown()
        if platform is not None:
            bios.messages.extend(platform.backend_errors())
        if echo is not None:
            echo.flush()
        console = machine.console.decode("latin-1")
        screen = screen_text(machine.mem)
        met = None
        if expect_re is not None:
            met = state["met"] or bool(expect_re.search(console)) or bool(expect_re.search(screen))
        counters = dict(machine.counters)
        counters["port_reads"] = machine.ports.reads
        counters["port_writes"] = machine.ports.writes
        if "ata" in machine.devices:
            counters.update(machine.devices["ata"].counters())
        counters["virtual_seconds"] = round(machine.clock.now(), 6)
        return Result(stop, console, screen, counters, elapsed, expect, met, list(bios.messages),
                      kernel=kernel_check.result() if kernel_check is not None else None,
                      cells=screen_cells(machine.mem), video_mode=machine.mem.buf[bda.VIDEO_MODE])
    finally:
        if platform is not None:
            platform.close()
        for disk in disks + ata_disks:
            disk.close()
        machine.close()
