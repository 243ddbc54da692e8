"""The machine: CPU, guest memory, clock and port bus wired together, and the run loop.

The run loop has no per-instruction hooks on the default path: Unicorn runs the guest
freely and only interrupts, port I/O and faults call into Python.  Every way a run can
end is a `Stop` with a reason; crashes and runs that got nowhere (timeout, instruction
budget) carry a report (registers, CS:IP, disassembly, the last interrupts, and what
`report_sections` add: the BIOS's last disk operations).
"""
import collections
import dataclasses
import struct
import threading
import time

import unicorn as uc_mod
from unicorn import x86_const as X
from unicorn.unicorn_py3.arch.intel import HOOK_INSN_CPUID_CFUNC, HOOK_INSN_IN_CFUNC, HOOK_INSN_OUT_CFUNC
from unicorn.unicorn_py3.unicorn import HOOK_INTR_CFUNC

from pvboot.emu.clock import BIOS_CALL_NS, PORT_ACCESS_NS, Clock
from pvboot.emu.cpu import CR0_PE, DEFAULT_CPU_MODEL, Cpu, FLAG_IF, I_CR0, I_CS, I_EIP, add_raw_hook, hook_failed
from pvboot.emu.devices import install_pc_devices
from pvboot.emu.faults import fault_report
from pvboot.emu.ioport import PortBus
from pvboot.emu.memory import EXTENDED_BASE, OPTION_ROM_BASE, GuestMemory

# Port the ROM stubs write to when they want the Python firmware (pvboot-private; no PC
# device decodes it, and for code outside the ROM it is unassigned).
TRAP_PORT = 0xEE

# Reasons a run ends.  Those in CRASH_REASONS mean the guest crashed.
CRASH_REASONS = frozenset({
    "invalid-opcode", "triple-fault", "cpu-exception", "unmapped-fetch",
    "unmapped-access", "rom-write",
})
STOP_REASONS = CRASH_REASONS | {
    "exit", "halted", "poweroff", "expected", "timeout", "insn-limit", "no-boot",
    "waiting-for-key", "firmware-error",
    "kernel-entry",        # --stop-at kernel-entry: the guest reached a watched entry point
    "fail-pattern",        # --fail: the console matched a failure message
    "killed",              # the debugger killed the run (gdb `kill`)
}
# Stops that carry a report: crashes, and runs that got nowhere.
REPORT_REASONS = CRASH_REASONS | {"timeout", "insn-limit"}

# Recent interrupts kept in Machine.interrupt_history for reports.  Always on: it keeps
# the register state every interrupt reads anyway, a deque append.
INTERRUPT_HISTORY_LENGTH = 32
_IVT_ENTRY = struct.Struct("<HH")   # offset, segment

_UNMAPPED_KIND = {
    uc_mod.UC_MEM_FETCH_UNMAPPED: "unmapped-fetch",
    uc_mod.UC_MEM_READ_UNMAPPED: "unmapped-access",
    uc_mod.UC_MEM_WRITE_UNMAPPED: "unmapped-access",
    uc_mod.UC_MEM_WRITE_PROT: "rom-write",
    uc_mod.UC_MEM_FETCH_PROT: "unmapped-fetch",
}


@dataclasses.dataclass
class Stop:
    reason: str
    detail: str = ""
    exit_value: int = None
    report: str = ""

    @property
    def crashed(self):
        return self.reason in CRASH_REASONS


class Machine:
    """A PC: 16-bit Unicorn core, memfd-backed RAM, ISA devices, and a virtual clock."""

    RESET_VECTOR = 0xFFFF0

    def __init__(self, memory_mib=64, realtime=False, cpu_model=DEFAULT_CPU_MODEL):
        self.cpu = Cpu(cpu_model)
        self.uc = self.cpu.uc
        self.mem = GuestMemory(memory_mib)
        self.mem.attach(self.uc)
        self.clock = Clock(realtime=realtime)
        self.ports = PortBus()
        self.console = bytearray()       # bytes the guest sent out of COM1
        self.console_listeners = []      # called with each transmitted byte
        self.devices = install_pc_devices(self)
        self.trap_handler = None         # firmware entry: f(linear_ip, Cpu.read_state())
        # Firmware stubs that are just `out TRAP_PORT; iret`: an `int` whose vector points
        # at one is served straight from the interrupt, in_place_handler(stub, state).
        self.in_place_stubs = frozenset()
        self.in_place_handler = None
        self.idle_handler = None         # firmware: `hlt` with IF=1 (deliver the timer tick)
        self.interrupt_tracer = None     # f(vector, kind) when --trace int is on
        self.default_vector = None       # linear address of the ROM's "unused vector" stub
        self.counters = {"interrupts": 0, "exceptions": 0, "traps": 0, "idle": 0}
        # (number, vector, kind, Cpu.read_state()) of the last interrupts, for reports.
        self.interrupt_history = collections.deque(maxlen=INTERRUPT_HISTORY_LENGTH)
        self.report_sections = []        # f() -> lines appended to every report
        self.before_start = None         # f() before every emu_start: the GDB stub's stop point
        self._stop = None
        self._insns = 0
        self._max_insns = None
        self._hooks()

    # -- hooks -------------------------------------------------------------------------
    def _hooks(self):
        uc = self.uc
        # Interrupts and port I/O are the firmware's and devices' way in: hooked without
        # the binding's wrappers (add_raw_hook), so the callbacks take the C arguments.
        add_raw_hook(uc, uc_mod.UC_HOOK_INTR, HOOK_INTR_CFUNC, self._on_interrupt)
        add_raw_hook(uc, uc_mod.UC_HOOK_INSN, HOOK_INSN_OUT_CFUNC, self._on_out, 1, 0, X.UC_X86_INS_OUT)
        add_raw_hook(uc, uc_mod.UC_HOOK_INSN, HOOK_INSN_IN_CFUNC, self._on_in, 1, 0, X.UC_X86_INS_IN)
        # rdtsc reads the virtual clock (Unicorn's own reads the host's TSC).
        add_raw_hook(uc, uc_mod.UC_HOOK_INSN, HOOK_INSN_CPUID_CFUNC, self._on_rdtsc, 1, 0,
                     X.UC_X86_INS_RDTSC)
        # Bounded to where they can fire (above RAM; the read-only ROM window): Unicorn
        # never marks a page dirty while any memory hook covers it, so an unbounded
        # hook sent every guest store down the slow path (several times slower).
        # The display's frame buffer is mapped above RAM and left out as well.
        start = self.mem.size
        for base, size in self.devices["vga"].mapped_regions():
            if start < base:
                uc.hook_add(uc_mod.UC_HOOK_MEM_UNMAPPED, self._on_bad_access, None, start, base - 1)
            start = max(start, base + size)
        uc.hook_add(uc_mod.UC_HOOK_MEM_UNMAPPED, self._on_bad_access, None, start, (1 << 64) - 1)
        uc.hook_add(uc_mod.UC_HOOK_MEM_PROT, self._on_bad_access, None,
                    OPTION_ROM_BASE, EXTENDED_BASE - 1)
        uc.hook_add(uc_mod.UC_HOOK_INSN_INVALID, self._on_invalid_insn)

    def _on_out(self, _uch, port, size, value, _user):
        try:
            if port == TRAP_PORT:
                state = self.cpu.read_state()
                linear_ip = (state[I_CS] << 4) + (state[I_EIP] & 0xFFFF)
                # Only the read-only ROM's stubs trap; the guest's own `out 0xEE` is an
                # access to an unassigned port like any other.
                if not state[I_CR0] & CR0_PE and OPTION_ROM_BASE <= linear_ip < EXTENDED_BASE:
                    self.counters["traps"] += 1
                    self.clock.ns += BIOS_CALL_NS
                    try:
                        self.trap_handler(linear_ip, state)
                    except Exception as exc:  # a firmware bug must end the run, not kill Unicorn's loop
                        self._firmware_failed(exc)
                    return
            self.clock.ns += PORT_ACCESS_NS
            self.ports.write(port, size, value)
        except BaseException as exc:
            hook_failed(self.uc, exc)

    def _firmware_failed(self, exc):
        self.stop("firmware-error", f"{type(exc).__name__}: {exc}")
        self._firmware_exception = exc

    def _on_in(self, _uch, port, size, _user):
        try:
            self.clock.ns += PORT_ACCESS_NS
            return self.ports.read(port, size)
        except BaseException as exc:
            hook_failed(self.uc, exc)
            return 0

    def _on_rdtsc(self, _uch, _user):
        try:
            cpu = self.cpu
            value = self.clock.rdtsc(cpu.linear_pc() if cpu.in_real_mode() else cpu.get("eip"))
            cpu.set("eax", value & 0xFFFFFFFF)
            cpu.set("edx", value >> 32)
        except BaseException as exc:
            hook_failed(self.uc, exc)
        return 1                  # the instruction itself is skipped

    def _record_interrupt(self, vector, kind, state):
        number = self.counters["interrupts"] + self.counters["exceptions"]
        self.interrupt_history.append((number, vector, kind, state))

    def _on_interrupt(self, _uch, vector, _user):
        # One read of every register this needs, the service's included (one by one
        # they were most of a BIOS call's cost).  A BIOS call costs one Python call per
        # step, so the small steps are written out here, in the hook itself (bench: INT
        # round trips).
        try:
            state = self.cpu.read_state()
            if state[I_CR0] & CR0_PE:
                self._record_interrupt(vector, "exception", state)
                # pvboot has no protected-mode IDT: an exception there is fatal, as a triple fault is.
                self.stop("triple-fault", f"exception {vector} in protected mode")
                return
            # `int n`, `int3` and `into` leave IP after themselves; faults leave it on the culprit.
            pc = (state[I_CS] << 4) + (state[I_EIP] & 0xFFFF)
            buf = self.mem.buf
            software = ((pc >= 2 and buf[pc - 2] == 0xCD and buf[pc - 1] == vector)
                        or (vector == 3 and buf[pc - 1] == 0xCC)
                        or (vector == 4 and buf[pc - 1] == 0xCE))
            kind = "int" if software else "exception"
            counters = self.counters
            self.interrupt_history.append(
                (counters["interrupts"] + counters["exceptions"], vector, kind, state))
            entry = self.cpu.vector_address(vector)
            stub = None
            if entry is not None:
                ip, cs = _IVT_ENTRY.unpack_from(buf, entry)
                stub = (cs << 4) + ip
            if software:
                counters["interrupts"] += 1
            else:
                counters["exceptions"] += 1
                if stub is not None and stub == self.default_vector:
                    # Nobody handles this exception: on a PC the BIOS would spin forever.
                    self.stop("cpu-exception", f"CPU exception {vector} ({_EXCEPTION_NAMES.get(vector, '?')})")
                    return
            if self.interrupt_tracer is not None:
                self.interrupt_tracer(vector, kind)
            if entry is None:
                # No IVT entry for it: the processor shuts down, as after a triple fault.
                self.stop("triple-fault", f"interrupt {vector:#x} beyond the IVT limit (lidt)")
                return
            if software and stub in self.in_place_stubs:
                counters["traps"] += 1
                self.clock.ns += BIOS_CALL_NS
                try:
                    self.in_place_handler(stub, state)
                except Exception as exc:  # as in _on_out
                    self._firmware_failed(exc)
                return
            self.cpu.deliver_interrupt(self.mem, vector, state)
        except BaseException as exc:
            hook_failed(self.uc, exc)

    def _on_bad_access(self, uc, access, address, size, value, _user):
        kind = _UNMAPPED_KIND.get(access, "unmapped-access")
        self.stop(kind, f"{kind} at {address:#x} (size {size})", fault_address=address)
        return False

    def _on_invalid_insn(self, uc, _user):
        self.stop("invalid-opcode", "invalid opcode")
        return False

    def _count_insn(self, uc, address, size, _user):
        self._insns += 1
        if self._insns >= self._max_insns:
            self.stop("insn-limit", f"instruction budget of {self._max_insns} used up")

    # -- control -----------------------------------------------------------------------
    def stop(self, reason, detail="", exit_value=None, fault_address=None):
        """End the run after the current instruction; the first reason given wins."""
        assert reason in STOP_REASONS, reason
        if self._stop is None:
            report = fault_report(self) if reason in REPORT_REASONS else ""
            self._stop = Stop(reason, detail, exit_value, report)
        self.uc.emu_stop()

    @property
    def stopping(self):
        return self._stop is not None

    def watch_code(self, address, callback):
        """Call callback() whenever the guest is about to execute the instruction at linear
        address `address` (before it runs: a stop() from the callback leaves EIP on it).

        A Unicorn code hook bounded to that single address: the bound is checked when a
        block is translated, so only the instruction at that address carries the call and
        the rest of the guest runs at full speed.
        Watch before the guest first runs the address: blocks translated earlier keep no
        call.
        Returns a handle for unwatch()."""
        def hook(_uc, _address, _size, _user):
            callback()
        return self.uc.hook_add(uc_mod.UC_HOOK_CODE, hook, None, address, address)

    def unwatch(self, handle):
        self.uc.hook_del(handle)

    def transmit(self, byte):
        """A byte left COM1: it is console output."""
        self.console.append(byte)
        for listener in self.console_listeners:
            listener(byte)

    def run(self, timeout=None, max_insns=None):
        """Run from the current CS:IP until something stops the machine; returns a Stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if max_insns is not None:
            self._max_insns = max_insns
            self.uc.hook_add(uc_mod.UC_HOOK_CODE, self._count_insn)
        # One watchdog thread for the whole run rather than emu_start(timeout=...): that
        # makes Unicorn run a thread polling with usleep(2) for every start, which cost
        # about a third of the guest's speed on 2 cores (bench: CPU loop, GRUB boot).
        watchdog = _Watchdog(self.uc, deadline) if deadline is not None else None
        try:
            while self._stop is None:
                if watchdog is not None and watchdog.expired():
                    self._stop = Stop("timeout", f"no result within {timeout:g} s",
                                      report=fault_report(self))
                    break
                if self.before_start is not None:
                    self.before_start()      # may serve a debugger, change registers, stop
                    if self._stop is not None:
                        break
                # emu_start's begin is made into IP = begin - CS*16, in any mode.
                begin = (self.cpu.get("cs") << 4) + self.cpu.get("eip")
                if not self.cpu.in_real_mode():
                    self._keep_eip_above_64k()
                try:
                    self.uc.emu_start(begin, 0xFFFFFFFFFFFF)
                except uc_mod.UcError as exc:
                    if self._stop is None:
                        self._stop = Stop(*_classify_uc_error(exc), report=fault_report(self))
                    break
                if self._stop is not None:
                    break
                if watchdog is not None and watchdog.expired():
                    continue          # reported at the top of the loop
                if self._stopped_on_hlt():
                    if not (self.cpu.get("eflags") & FLAG_IF):
                        self._stop = Stop("halted", "hlt with interrupts disabled")
                        break
                    self.counters["idle"] += 1
                    if not self.cpu.in_real_mode():
                        # No IDT delivery in protected mode: let time pass and resume after
                        # hlt; the tick is delivered by the guest's next BIOS wait.
                        self.clock.idle_undelivered()
                        continue
                    if self.idle_handler is None:
                        self._stop = Stop("halted", "hlt with no timer to wake it")
                        break
                    self.idle_handler()
        finally:
            if watchdog is not None:
                watchdog.cancel()
        return self._stop

    def _keep_eip_above_64k(self):
        """emu_start in 16-bit mode keeps only the low 16 bits of the start IP, so
        protected-mode code above 64 KiB (SYSLINUX resuming after its idle `hlt`) would
        restart in the wrong place: a one-shot code hook puts the full EIP back before
        the first instruction runs."""
        eip = self.cpu.get("eip")
        if eip <= 0xFFFF:
            return
        handle = []

        def restore(uc, _address, _size, _user):
            uc.reg_write(X.UC_X86_REG_EIP, eip)
            uc.hook_del(handle[0])

        handle.append(self.uc.hook_add(uc_mod.UC_HOOK_CODE, restore))

    def _stopped_on_hlt(self):
        if self.cpu.in_real_mode():
            pc = self.cpu.linear_pc()
        else:
            # Boot loaders run protected mode with flat (base 0) code segments.
            pc = self.cpu.get("eip")
        return 0 < pc <= self.mem.size and self.mem.buf[pc - 1] == 0xF4

    def close(self):
        self.mem.close()


class _Watchdog:
    """Stops the emulation once the wall-clock deadline has passed.  emu_stop only
    affects a running emu_start, so it is repeated until the run loop notices (the
    loop checks expired() before every start)."""

    REPEAT = 0.01

    def __init__(self, uc, deadline):
        self._uc = uc
        self._deadline = deadline
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pvboot-watchdog", daemon=True)
        self._thread.start()

    def expired(self):
        return time.monotonic() >= self._deadline

    def _watch(self):
        if self._done.wait(max(0.0, self._deadline - time.monotonic())):
            return
        while not self._done.is_set():
            self._uc.emu_stop()
            self._done.wait(self.REPEAT)

    def cancel(self):
        self._done.set()
        self._thread.join()


_EXCEPTION_NAMES = {0: "divide error", 1: "debug", 3: "breakpoint", 4: "overflow",
                    5: "bound range", 6: "invalid opcode", 7: "no FPU", 8: "double fault",
                    12: "stack fault", 13: "general protection"}


def _classify_uc_error(exc):
    errno = exc.errno
    if errno == uc_mod.UC_ERR_INSN_INVALID:
        return "invalid-opcode", "invalid opcode"
    if errno in (uc_mod.UC_ERR_FETCH_UNMAPPED, uc_mod.UC_ERR_FETCH_PROT):
        return "unmapped-fetch", str(exc)
    if errno == uc_mod.UC_ERR_WRITE_PROT:
        return "rom-write", str(exc)
    if errno in (uc_mod.UC_ERR_READ_UNMAPPED, uc_mod.UC_ERR_WRITE_UNMAPPED):
        return "unmapped-access", str(exc)
    return "cpu-exception", str(exc)
