"""Boot a set of disk images on a fresh machine and collect the result.

This is the one place that assembles a run: platform (emu.Machine), disk images
(emu.diskimage), the BIOS (firmware.bios) and the user's expectations.  The CLI, the
tests and (later) the pytest plugin all go through `boot()`.
"""
import contextlib
import dataclasses
import errno
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
import time

from pvboot.emu.cpu import DEFAULT_CPU_MODEL, cpu_model_id
from pvboot.emu.devices import ide_channel
from pvboot.emu.devices import atapi
from pvboot.emu.diskimage import DiskImage, DiskImageError
from pvboot.emu.machine import Machine, Stop
from pvboot.emu.storage.images import open_image
from pvboot.emu.xen.floppymedia import publish_floppy
from pvboot.emu.xen.platform import XenPlatform, XenPlatformError
from pvboot.firmware.bios import Bios, BiosConfig
from pvboot.firmware.block import ata_drive, host_drive, xen_drive
from pvboot.tools.diskplan import (  # noqa: F401  (re-exported: runner is the tools' door)
    IDE_UNITS, PlannedDisk, check_image, check_input_file, naming_file, open_disks,
    os_error_line, plan_disks, _await_storage, _claim_disks, _disk_layers)
from pvboot.tools.errors import InputError
from pvboot.tools.cd import CdInputError, cd_boot_order, check_xenstore_socket
from pvboot.firmware import bda
from pvboot.firmware import display
from pvboot.firmware.video import screen_cells, screen_text
from pvboot.tools import options
from pvboot.tools.markers import MarkerError, Markers

# Exit codes of `pvboot boot` (documented in the README).
EXIT_SUCCESS = 0
EXIT_TEST_FAILURE = 1
EXIT_USAGE = 2
EXIT_CRASH = 3
EXIT_INTERNAL = 4


SIGNAL_POLL_SECONDS = 1.0       # the signal thread's safety net: it is woken at the run's end


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived during a run: the run was stopped and everything it
    opened closed; the CLI exits with 128 + the signal's number."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals(machine):
    """While the guest runs, SIGINT and SIGTERM stop the machine (after the current
    instruction) instead of raising inside a Unicorn callback, where an exception is
    lost and the run goes on; the list yielded gets the signal's number.  Python runs
    signal handlers only between bytecodes, never inside emu_start: the signal's wakeup
    fd wakes a thread that calls emu_stop, as the watchdog does, so the handler runs
    at once."""
    received = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, _frame):
        if not received:
            received.append(signum)
            machine.stop("timeout", f"interrupted by {signal.Signals(signum).name}")

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    done = threading.Event()

    def kick():
        # Woken by a signal's byte, or by the byte the finally below writes after
        # setting `done`: the run's end is not left waiting for a polling interval.
        while not done.is_set():
            ready, _, _ = select.select([wake_r], [], [], SIGNAL_POLL_SECONDS)
            try:
                woken = ready and os.read(wake_r, 64)
            except BlockingIOError:
                woken = False
            if woken and not done.is_set():
                machine.uc.emu_stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    kicker = threading.Thread(target=kick, name="pvboot-signals", daemon=True)
    kicker.start()
    try:
        yield received
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, old in previous.items():
            signal.signal(sig, old)
        done.set()
        try:
            os.write(wake_w, b"\0")
        except BlockingIOError:
            pass                # the pipe is full: the thread is awake already
        kicker.join()
        os.close(wake_r)
        os.close(wake_w)


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
    display: object = None       # firmware.display.Screen at the end, for --screenshot
    op_digests: list = None      # firmware.block.OpDigest per disk operation (op_digests=True)
    markers: list = None         # tools.markers Hit.to_json() per --expect / --fail match
    stages: list = None          # power-on -> boot sector -> markers -> end (tools.markers)

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
            "markers": self.markers,
            "stages": self.stages,
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
    # Loaded only by the runs that check a kernel (start-up is a bench row).
    from pvboot.tools.kernel import KernelCheck, KernelError
    if expect_kernel is not None:
        try:
            check_input_file(str(expect_kernel), "a kernel")
        except InputError as exc:
            raise InputError(f"--expect-kernel {exc}") from None
    try:
        return KernelCheck(expect_kernel, stop=(stop_at == "kernel-entry"))
    except KernelError as exc:
        raise InputError(f"--expect-kernel {expect_kernel}: {exc}") from None


def _checked_numbers(**keywords):
    """runner.boot's numeric arguments, each within its option's range
    (tools/options.py), else InputError."""
    try:
        return [options.check(name, value) for name, value in keywords.items()]
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _gdb_address(gdb):
    """(host, port) of --gdb, or None without it; the stub's modules load only then."""
    if gdb is None:
        return None
    from pvboot.emu.gdb_remote import GdbAddressError, parse_address
    try:
        return parse_address(gdb)
    except GdbAddressError as exc:
        raise InputError(str(exc)) from None


def _start_gdb_stub(machine, address, wait):
    from pvboot.emu.gdbstub import GdbStub
    host, port = address
    try:
        stub = GdbStub(machine, host, port, wait=wait)
    except OSError as exc:
        raise InputError(f"--gdb {host}:{port}: cannot listen: {exc.strerror}") from None
    host, port = stub.address
    print(f"pvboot: gdb: listening on {host}:{port}"
          + (" (waiting for the debugger)" if wait else ""), file=sys.stderr, flush=True)
    return stub


def boot(images, floppy=None, boot_from=None, memory_mib=64, timeout=30.0, max_insns=None,
         keys="", serial_input=b"", expect=None, realtime=False, cpu=DEFAULT_CPU_MODEL,
         trace=(), trace_out=None,
         read_only=False, persist=False, echo=None, driver=None, backend_timeout=5.0,
         pv_path="bounce", stop_at=None, expect_kernel=None, disks=None, no_backend=False,
         op_digests=False, fail=None, gdb=None, gdb_wait=True, cdrom=None,
         xenstore_socket=None, cdrom_type="xenbus", save_overlay=None, snapshot_on=(),
         xen_host=None, capture_screen=True):
    """Boot `images` (hard disks) and/or `floppy`; returns a Result.

    boot_from: "hd", "floppy" or "cd" (default: the first hard disk if any, else the
    floppy, else the CD).
    cdrom: an ISO for the PV CD drive (E0h; "" for a drive without a disc); see
    tools/cd.py; cdrom_type "ioemu": the emulated ATAPI drive only (firmware/atapi.py).
    xenstore_socket: the path of the xenstore daemon's socket, for
    `pvboot cd` and Debian's xenstore-utils while the guest runs.
    echo: a binary file that receives console bytes as the guest sends them.
    driver: how the `images` are attached: "xen" (the default: Xen PV disks served by
    blkback processes, each with an emulated IDE twin to fall back to while the IDE
    channel has room), "host" (the firmware's plain driver; floppies always use it) or
    "ata" (up to two hard disks on the emulated IDE channel, master and slave, driven
    by the firmware's ATA driver).
    pv_path: how the PV frontend moves data: "bounce" (one granted bounce page) or
    "direct" (the caller's own pages granted, persistently when the backend offers it).
    disks: instead of `images`, --disk specs (emu/diskspec.py; strings or DiskSpecs),
    each with its own type, path, access and writes, mapped in the order given
    (plan_disks says how they combine with the other options).
    no_backend: attach the PV disks but start no blkback: each falls back to its
    emulated twin after backend_timeout (pvboot boot --no-backend).
    op_digests: record a CRC-32 per disk operation (Result.op_digests; compare --paths).
    save_overlay: keep the first hard disk's guest writes in this new qcow2 file, backed
    by the image (emu/storage/nbdimage.py).
    snapshot_on: "REGEX=NAME" strings: a live internal snapshot NAME of the first
    disk's writable qcow2 layer when the console first matches REGEX (tools/image.py).
    xen_host: an emu.xen.host.XenHost whose xenstore daemon and blkback servers the
    PV disks use (a batch worker's, living across its boots); None: this run's own.
    capture_screen: keep the final screen's cells and display state (Result.cells,
    .display: --screenshot's); a batch reports the screen as text only.
    cpu: the CPU model, as QEMU names it (emu/cpu.py CPU_MODELS; default qemu32).
    stop_at: "kernel-entry" ends the run when the guest first executes the kernel's 32-bit
    entry (code32_start of expect_kernel, else 0x100000).
    expect_kernel: a Linux boot protocol kernel file whose protected-mode part must be in
    guest memory at its entry when the guest gets there (tools/kernel.py KernelCheck).
    expect: a regex, or a list of them that must match the console in that order; the
    run succeeds as soon as the last one matches.  fail: a regex or a list: the first
    match ends the run with exit code 1 (tools/markers.py).
    gdb: "[HOST:]PORT" of a GDB remote-protocol stub (emu/gdbstub.py); the run waits
    for the debugger before the first instruction unless gdb_wait is False.
    """
    if timeout is None and gdb is None:
        raise InputError("a run needs a time limit: only a --gdb run may have none")
    memory_mib, backend_timeout = _checked_numbers(memory_mib=memory_mib,
                                                   backend_timeout=backend_timeout)
    if timeout is not None:
        timeout = _checked_numbers(timeout=timeout)[0]
    if max_insns is not None:
        max_insns = _checked_numbers(max_insns=max_insns)[0]
    serial_input = options.serial_bytes(serial_input or b"")
    try:
        options.check_keys(keys or "")
    except ValueError as exc:
        raise InputError(f"--keys: {exc}") from None
    planned = plan_disks(images, disks, driver, pv_path, read_only, persist)
    if not planned and not floppy and cdrom is None:
        raise InputError("nothing to boot: give a disk image, --floppy or --cdrom")
    boot_from = boot_from or ("hd" if planned else "floppy" if floppy else "cd")
    if boot_from == "floppy" and not floppy:
        raise InputError("--boot floppy needs --floppy IMAGE")
    try:
        order = cd_boot_order(boot_from, cdrom, planned, floppy)
        if xenstore_socket is not None:
            check_xenstore_socket(xenstore_socket)
    except CdInputError as exc:
        raise InputError(str(exc)) from None
    if cdrom:
        check_image(cdrom, bootable=False)
    for i, disk in enumerate(planned):
        check_image(disk.image, bootable=(boot_from == "hd" and i == 0))
    if floppy:
        check_image(floppy, bootable=(boot_from == "floppy"))
    snapshots = _disk_layers(planned, save_overlay, snapshot_on)
    try:
        markers = Markers(expect, fail)
    except MarkerError as exc:
        raise InputError(str(exc)) from None

    kernel_check = _kernel_check(stop_at, expect_kernel)
    try:
        cpu_model_id(cpu)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    gdb_address = _gdb_address(gdb)

    # Everything opened here is closed in the finally below, whatever fails.
    locks = _claim_disks(planned, snapshots)    # the image locks (emu/storage/locking.py): last, held
    disks = []                 # floppy and host hard disks (BlockImages)
    ide_images = {}            # IDE unit -> BlockImage: emulated disks and PV twins
    drives = []                # the BIOS's drive plan (firmware.block)
    machine = platform = bios = stub = None
    run_dir = tempfile.mkdtemp(prefix="pvboot-run-")    # storage daemons of in-process disks
    try:
        disks = open_disks([], floppy, read_only=read_only, persist=persist)
        try:
            machine = Machine(memory_mib=memory_mib, realtime=realtime, cpu_model=cpu)
        except OSError as exc:         # the memfd of guest RAM: EFBIG under ulimit -f, ENOMEM
            raise InputError(f"guest RAM ({memory_mib + 1} MiB, a memfd): {exc.strerror}"
                             + (" (the file-size limit, ulimit -f, is below it)"
                                if exc.errno == errno.EFBIG else "")) from None
        for disk in planned:
            # The PV disk's own writes (and --save-overlay) are blkback's; its twin's
            # stay in a throwaway layer.
            own = disk.kind != "xen"
            try:
                if disk.unit is not None:
                    ide_images[disk.unit] = open_image(
                        disk.image, disk.format, read_only=disk.read_only, persist=disk.persist,
                        run_dir=run_dir, save_overlay=disk.save_overlay if own else None)
                if disk.kind == "host":
                    image = open_image(disk.image, disk.format, read_only=disk.read_only,
                                       persist=disk.persist, run_dir=run_dir,
                                       save_overlay=disk.save_overlay)
                    disks.append(image)
                    drives.append(host_drive(image))
            except DiskImageError as exc:
                raise InputError(str(exc)) from None
            if disk.kind == "ata":
                drives.append(ata_drive(disk.unit))
            elif disk.kind == "xen":
                try:
                    if platform is None:
                        platform = XenPlatform(machine.mem, socket_path=xenstore_socket,
                                               host=xen_host)
                    devid = platform.attach_disk(disk.image, read_only=disk.read_only,
                                                 persist=disk.persist,
                                                 start_backend=not no_backend, fmt=disk.format,
                                                 save_overlay=disk.save_overlay,
                                                 image_locked=disk.format == "raw")
                except XenPlatformError as exc:
                    raise InputError(str(exc)) from None
                if (disk.format != "raw" or disk.save_overlay) and not no_backend:
                    _await_storage(platform, devid, snapshots,
                                   max(backend_timeout, 10.0) if timeout is None
                                   else min(timeout, max(backend_timeout, 10.0)))
                drives.append(xen_drive(devid, disk.path, disk.unit))
        cdroms = []
        if cdrom is not None:
            # The emulated ATAPI twin on the secondary channel, as QEMU's device model
            # shows the CD to an HVM guest: type=ioemu uses it, the PV CD falls back to it.
            try:
                disc = DiskImage(cdrom, read_only=True) if cdrom else None
            except DiskImageError as exc:
                raise InputError(str(exc)) from None
            if disc is not None:
                disks.append(disc)
            atapi.install(machine, disc)
            try:
                if cdrom_type == "ioemu":
                    cdroms.append((None, pv_path, True))
                else:
                    if platform is None:
                        platform = XenPlatform(machine.mem, socket_path=xenstore_socket,
                                               host=xen_host)
                    cdroms.append((platform.attach_disk(cdrom, start_backend=not no_backend,
                                                        device_type="cdrom"), pv_path, True))
            except XenPlatformError as exc:
                raise InputError(str(exc)) from None
        if floppy and xenstore_socket is not None:
            # The floppy's media-change node (emu/xen/floppymedia.py): --xenstore-socket
            # is what lets `pvboot cd insert --drive floppy` reach the run.
            if platform is None:
                platform = XenPlatform(machine.mem, socket_path=xenstore_socket)
            publish_floppy(platform.xs, platform.guest_interface().domid, 0, floppy)
        if ide_images:
            ide_channel.install(machine, [ide_images[unit] for unit in sorted(ide_images)])
        # A wait on a backend runs in the firmware, where the watchdog cannot stop it: no
        # single wait may outlast the run's own limit.
        config = BiosConfig(cdroms=cdroms, disks=[d for d in disks if d.kind == "floppy"],
                            keys=keys,
                            boot_order=order, trace=frozenset(trace),
                            trace_out=trace_out if trace_out is not None else sys.stderr,
                            xen=platform.guest_interface() if platform else None,
                            pv_timeout=backend_timeout if timeout is None
                            else min(backend_timeout, timeout), drives=drives,
                            op_digests=op_digests)
        try:
            bios = Bios(machine, config)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if serial_input:
            machine.devices["com1"].feed(serial_input)

        def on_byte(byte):
            echo.write(bytes([byte]))
            if byte == 0x0A:
                echo.flush()

        if echo is not None:
            machine.console_listeners.append(on_byte)
        if snapshots.pending:
            machine.console_listeners.append(
                lambda byte: byte == 0x0A and snapshots.pending
                and snapshots.check(machine.console.decode("latin-1")))
        markers.attach(machine)
        matched = f"console matched {expect!r}" if isinstance(expect, str) else \
            f"console matched all {len(markers.expect)} markers in order"
        expect_met = (lambda: machine.stop("expected", matched)) if markers.expect else None
        if kernel_check is not None:
            kernel_check.attach(machine)
            # A console match before the kernel entry does not end the run: the entry
            # is still to be checked.  It ends it at the entry instead.
            if expect_met is not None:
                kernel_check.on_reached.append(lambda: markers.all_met and expect_met())
        if expect_met is not None:
            markers.on_all_met.append(
                lambda: (kernel_check is None or kernel_check.reached) and expect_met())
        if gdb_address is not None:
            stub = _start_gdb_stub(machine, gdb_address, gdb_wait)
        started = time.monotonic()
        markers.power_on()
        with _stop_on_signals(machine) as received:
            stop = machine.run(timeout=timeout, max_insns=max_insns)
        elapsed = time.monotonic() - started
        if received:
            raise Interrupted(received[0])
        bios.shutdown()
        if snapshots.pending:           # the last line may lack its line end
            snapshots.check(machine.console.decode("latin-1"))
        bios.messages.extend(snapshots.messages)
        if platform is not None:
            bios.messages.extend(platform.backend_errors())
            # The frontends are closed and the snapshots taken: the backends may exit
            # while the result is put together (close() below reaps them).
            platform.stop_backends()
        if echo is not None:
            echo.flush()
        console = machine.console.decode("latin-1")
        screen = screen_text(machine.mem)
        markers.finish(console, screen)
        if markers.failed is not None and stop.reason != "fail-pattern" and not stop.crashed:
            stop = dataclasses.replace(stop, reason="fail-pattern", detail=(
                f"the final {markers.failed.source} matched --fail {markers.failed.pattern!r} "
                f"(the run had ended: {stop.reason})"))
        met = markers.all_met if markers.expect else None
        counters = dict(machine.counters)
        counters["port_reads"] = machine.ports.reads
        counters["port_writes"] = machine.ports.writes
        counters["port61_idle_polls"] = machine.devices["port61"].idle_polls
        if "ata" in machine.devices:
            counters.update(machine.devices["ata"].counters())
        counters["virtual_seconds"] = round(machine.clock.now(), 6)
        counters["skipped_seconds"] = round(machine.clock.skipped, 6)   # idle waits fast-forwarded
        result = Result(stop, console, screen, counters, elapsed, expect, met, list(bios.messages),
                      kernel=kernel_check.result() if kernel_check is not None else None,
                      cells=screen_cells(machine.mem) if capture_screen else None,
                      video_mode=machine.mem.buf[bda.VIDEO_MODE],
                      display=display.capture(machine) if capture_screen else None,
                      op_digests=list(bios.block.op_digests) if op_digests and bios.block else None,
                      markers=markers.markers_json() if markers.active else None,
                      stages=markers.stages(stop.reason))
        if stub is not None:
            counters.update({f"gdb_{k}": v for k, v in stub.counters.items()})
            stub.finish(result.exit_code)
        return result
    finally:
        if stub is not None:
            stub.close()
        if platform is not None:
            platform.close()
        for disk in disks + list(ide_images.values()):
            disk.close()
        if machine is not None:
            machine.close()
        for lock in locks:
            lock.close()
        shutil.rmtree(run_dir, ignore_errors=True)
