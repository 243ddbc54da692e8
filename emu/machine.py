"""The machine: CPU, guest memory, clock and port bus wired together, and the run loop.

The run loop has no per-instruction hooks on the default path: Unicorn runs the guest
freely and only interrupts, port I/O and faults call into Python.  Every way a run can
end is a `Stop` with a reason; crashes carry a report (registers, CS:IP, disassembly).
"""
import dataclasses
import time

import unicorn as uc_mod
from unicorn import x86_const as X

from emu.clock import Clock
from emu.cpu import Cpu, FLAG_IF
from emu.devices import install_pc_devices
from emu.faults import fault_report
from emu.ioport import PortBus
from emu.memory import GuestMemory

# Port the ROM stubs write to when they want the Python firmware (pvboot-private; no PC
# device decodes it).
TRAP_PORT = 0xEE

# Reasons a run ends.  Those in CRASH_REASONS mean the guest crashed.
CRASH_REASONS = frozenset({
    "invalid-opcode", "triple-fault", "cpu-exception", "unmapped-fetch",
    "unmapped-access", "rom-write",
})
STOP_REASONS = CRASH_REASONS | {
    "exit", "halted", "poweroff", "expected", "timeout", "insn-limit", "no-boot",
    "waiting-for-key", "firmware-error",
}

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

    def __init__(self, memory_mib=64, realtime=False):
        self.cpu = Cpu()
        self.uc = self.cpu.uc
        self.mem = GuestMemory(memory_mib)
        self.mem.attach(self.uc)
        self.clock = Clock(realtime=realtime)
        self.ports = PortBus()
        self.console = bytearray()       # bytes the guest sent out of COM1
        self.console_listeners = []      # called with each transmitted byte
        self.devices = install_pc_devices(self)
        self.trap_handler = None         # firmware entry: f(linear_ip)
        self.idle_handler = None         # firmware: `hlt` with IF=1 (deliver the timer tick)
        self.interrupt_tracer = None     # f(vector, kind) when --trace int is on
        self.default_vector = None       # linear address of the ROM's "unused vector" stub
        self.counters = {"interrupts": 0, "exceptions": 0, "traps": 0, "idle": 0}
        self._stop = None
        self._insns = 0
        self._max_insns = None
        self._hooks()

    # -- hooks -------------------------------------------------------------------------
    def _hooks(self):
        uc = self.uc
        uc.hook_add(uc_mod.UC_HOOK_INTR, self._on_interrupt)
        uc.hook_add(uc_mod.UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)
        uc.hook_add(uc_mod.UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(uc_mod.UC_HOOK_MEM_UNMAPPED | uc_mod.UC_HOOK_MEM_PROT, self._on_bad_access)
        uc.hook_add(uc_mod.UC_HOOK_INSN_INVALID, self._on_invalid_insn)

    def _on_out(self, uc, port, size, value, _user):
        if port == TRAP_PORT:
            self.counters["traps"] += 1
            try:
                self.trap_handler(self.cpu.linear_pc())
            except Exception as exc:  # a firmware bug must end the run, not kill Unicorn's loop
                self.stop("firmware-error", f"{type(exc).__name__}: {exc}")
                self._firmware_exception = exc
            return
        self.ports.write(port, size, value)

    def _on_in(self, uc, port, size, _user):
        return self.ports.read(port, size)

    def _is_software_interrupt(self, vector):
        """`int n`, `int3` and `into` leave IP after themselves; faults leave it on the culprit."""
        pc = self.cpu.linear_pc()
        buf = self.mem.buf
        if pc >= 2 and buf[pc - 2] == 0xCD and buf[pc - 1] == vector:
            return True
        return (vector == 3 and buf[pc - 1] == 0xCC) or (vector == 4 and buf[pc - 1] == 0xCE)

    def _on_interrupt(self, uc, vector, _user):
        if not self.cpu.in_real_mode():
            # pvboot has no protected-mode IDT: an exception there is fatal, as a triple fault is.
            self.stop("triple-fault", f"exception {vector} in protected mode")
            return
        software = self._is_software_interrupt(vector)
        if software:
            self.counters["interrupts"] += 1
        else:
            self.counters["exceptions"] += 1
            handler = self.mem.read_u32(vector * 4)
            if self.default_vector is not None and \
                    ((handler >> 16) << 4) + (handler & 0xFFFF) == self.default_vector:
                # Nobody handles this exception: on a PC the BIOS would spin forever.
                self.stop("cpu-exception", f"CPU exception {vector} ({_EXCEPTION_NAMES.get(vector, '?')})")
                return
        if self.interrupt_tracer is not None:
            self.interrupt_tracer(vector, "int" if software else "exception")
        self.cpu.deliver_interrupt(self.mem, vector)

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
            report = fault_report(self) if reason in CRASH_REASONS else ""
            self._stop = Stop(reason, detail, exit_value, report)
        self.uc.emu_stop()

    @property
    def stopping(self):
        return self._stop is not None

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
        while self._stop is None:
            remaining_us = 0
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._stop = Stop("timeout", f"no result within {timeout:g} s")
                    break
                remaining_us = max(1, int(remaining * 1e6))
            # emu_start's begin is made into IP = begin - CS*16, in any mode (NOTES 5).
            begin = (self.cpu.get("cs") << 4) + self.cpu.get("eip")
            if not self.cpu.in_real_mode():
                self._keep_eip_above_64k()
            try:
                self.uc.emu_start(begin, 0xFFFFFFFFFFFF, timeout=remaining_us)
            except uc_mod.UcError as exc:
                if self._stop is None:
                    self._stop = Stop(*_classify_uc_error(exc), report=fault_report(self))
                break
            if self._stop is not None:
                break
            if deadline is not None and time.monotonic() >= deadline:
                self._stop = Stop("timeout", f"no result within {timeout:g} s")
                break
            if self._stopped_on_hlt():
                if not (self.cpu.get("eflags") & FLAG_IF):
                    self._stop = Stop("halted", "hlt with interrupts disabled")
                    break
                self.counters["idle"] += 1
                if not self.cpu.in_real_mode():
                    # No IDT delivery in protected mode: let time pass and resume after hlt.
                    self.clock.idle()
                    continue
                if self.idle_handler is None:
                    self._stop = Stop("halted", "hlt with no timer to wake it")
                    break
                self.idle_handler()
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
