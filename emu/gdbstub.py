"""A GDB remote-protocol stub for the Machine (`pvboot boot --gdb [HOST:]PORT`).

It serves GDB between two emu_starts of the run loop (Machine.before_start), so the
debugger may change registers, memory and hooks while no translated code runs; the
guest pays for nothing but what is armed: a software breakpoint is a Unicorn code
hook bounded to its one address, a watchpoint a memory hook bounded to its bytes,
and only a single-step carries a hook over every instruction (until the next one).
Addresses are linear, as the processor sees them with paging off.  In real mode the
stub reports EIP as the linear address CS*16+IP (GDB's i8086 architecture uses $eip
as the address for `x/i $pc` and breakpoints), and a written EIP is made back into
CS:IP; in protected mode EIP is the offset in a flat (base 0) code segment.
docs/gdb.md has the session and the details.  No function here is a
per-instruction path of the default run.
"""
import socket
import struct
import threading
import time

import unicorn as uc_mod

from pvboot.emu.cpu import CR0_PE
from pvboot.emu.gdb_remote import Connection

# The i386 'g' packet: GDB's register numbers 0..15 (gdb/features/i386/32bit-core.xml).
GDB_REGS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi",
            "eip", "eflags", "cs", "ss", "ds", "es", "fs", "gs")
EIP_REGNO = GDB_REGS.index("eip")
SEGMENTS = frozenset(("cs", "ss", "ds", "es", "fs", "gs"))
SIGINT, SIGILL, SIGTRAP, SIGKILL, SIGSEGV = 2, 4, 5, 9, 11
PACKET_SIZE = 0x4000            # what qSupported offers; m/M lengths are clamped to it
ATTACH_TIMEOUT = 300.0          # seconds a waiting run gives a debugger to attach
INTERRUPT_REPEAT = 0.01         # emu_stop may land between two starts: repeat it
ACCEPT_POLL = 0.5               # the accept loop's check for the end of the run
_WATCH_HOOKS = {2: uc_mod.UC_HOOK_MEM_WRITE, 3: uc_mod.UC_HOOK_MEM_READ,
                4: uc_mod.UC_HOOK_MEM_READ | uc_mod.UC_HOOK_MEM_WRITE}
_WATCH_NAMES = {2: "watch", 3: "rwatch", 4: "awatch"}


def _flush_tlb(uc):
    """Drop Unicorn's cached page translations: an entry cached before a memory hook
    was added lets accesses to its page skip the hook (the binding has no wrapper)."""
    uc.ctl(uc_mod.UC_CTL_TLB_FLUSH, uc_mod.UC_CTL_IO_WRITE)


class GdbStub:
    """Serves one debugger at a time on a listening socket for `machine`'s run.

    wait=True: the run stops before its first instruction until a debugger attaches
    (bounded by attach_timeout); wait=False: it runs, and stops when one attaches."""

    def __init__(self, machine, host="127.0.0.1", port=1234, wait=True,
                 attach_timeout=ATTACH_TIMEOUT):
        self.machine = machine
        self.uc = machine.uc
        self.cpu = machine.cpu
        self.listener = socket.create_server((host, port))
        self.address = self.listener.getsockname()[:2]
        self.wait = wait
        self.attach_timeout = attach_timeout
        self.connection = None
        self.breakpoints = {}        # linear address -> hook handle
        self.watchpoints = {}        # (type, address, length) -> hook handle
        self.counters = {"stops": 0, "breakpoint_hits": 0, "watch_hits": 0, "steps": 0}
        self._pending = None         # why the guest stopped: (signal, extra stop-reply text)
        self._watch_hit = None       # (type, address): a watched access, instruction unfinished
        self._step = None            # the _Step under way
        self._resume_pc = None       # the breakpoint at this address lets the resume pass once
        self._reply_due = False      # a debugger waits for a stop reply (after c or s)
        self._interrupt = threading.Event()
        self._attach_lock = threading.Lock()
        self._first = True
        self._closing = threading.Event()
        self._accepter = None
        machine.before_start = self._before_start

    # -- attaching -----------------------------------------------------------------------
    def _accept_loop(self):
        """--gdb-wait=no: accept debuggers while the guest runs; each one stops it."""
        self.listener.settimeout(ACCEPT_POLL)
        while not self._closing.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._attach_lock:
                if self.connection is not None:
                    sock.close()           # one debugger at a time
                    continue
                self.connection = Connection(sock, self._request_interrupt)
                self._pending = (SIGTRAP, "")
            self._request_interrupt()

    def _wait_for_debugger(self):
        self.listener.settimeout(self.attach_timeout)
        try:
            sock, _ = self.listener.accept()
        except socket.timeout:
            self.machine.stop("timeout", f"no debugger attached to the GDB stub within "
                                         f"{self.attach_timeout:g} s")
            return False
        self.connection = Connection(sock, self._request_interrupt)
        return True

    def _request_interrupt(self):
        """From another thread: stop the guest at the next boundary (Ctrl-C, attach,
        hang-up).  emu_stop is lost when it falls between two starts, so it is
        repeated until the run loop has taken the request."""
        self._interrupt.set()
        threading.Thread(target=self._keep_stopping, daemon=True).start()

    def _keep_stopping(self):
        while self._interrupt.is_set() and not self._closing.is_set():
            self.uc.emu_stop()
            time.sleep(INTERRUPT_REPEAT)

    # -- the run loop's stop point ----------------------------------------------------------
    def _before_start(self):
        if self._first:
            self._first = False
            if self.wait:
                if not self._wait_for_debugger():
                    return
                self._pending = (SIGTRAP, "")
            # Later debuggers (after a detach, or the first with --gdb-wait=no) attach
            # while the guest runs.
            self._accepter = threading.Thread(target=self._accept_loop,
                                              name="pvboot-gdb-accept", daemon=True)
            self._accepter.start()
        if self._interrupt.is_set():
            self._interrupt.clear()
            if self._pending is None:
                self._pending = (SIGINT, "")
        if self._step is not None and self._pending is not None:
            self.uc.hook_del(self._step.handle)
            if self._step.rearm_watch:
                self._rearm_watchpoints()
            self._step = None
        if self._watch_hit is not None:
            self._finish_watched_instruction()
            return
        if self._pending is None:
            return
        connection = self.connection
        if connection is None or connection.closed.is_set():
            self._detach()
            return
        signal, extra = self._pending
        self._pending = None
        self.counters["stops"] += 1
        self._serve(connection, f"T{signal:02x}{extra}")

    def _finish_watched_instruction(self):
        """A watched access stopped the guest before its instruction finished: run that
        one instruction with the watchpoints lifted, then report (GDB compares the
        watched value before and after)."""
        kind, address = self._watch_hit
        self._watch_hit = None
        for key in list(self.watchpoints):
            self.uc.hook_del(self.watchpoints[key])
            self.watchpoints[key] = None
        self._arm_step(f"{_WATCH_NAMES[kind]}:{address:x};", rearm_watch=True)

    # -- serving the debugger -------------------------------------------------------------
    def _serve(self, connection, stop_reply):
        """Answer packets until the debugger resumes, detaches or kills the run."""
        self._last_stop = stop_reply
        if self._reply_due:               # the debugger waits for this stop (c, s)
            connection.send(stop_reply)
        self._reply_due = False
        while True:
            packet = connection.next_packet()
            if packet is None:
                self._detach()
                break
            action, reply = self._dispatch(packet)
            if reply is not None:
                connection.send(reply)
            if action is not None:
                self._resume(action)
                break
        # Guest time stands still while the debugger holds the machine: the virtual
        # clock only moves with what the guest does.

    def _dispatch(self, packet):
        """(resume action or None, reply or None) for one packet."""
        head = packet[:1]
        try:
            if packet == "?":
                return None, self._last_stop
            if head == "q" or head == "Q" or head == "v":
                return self._query(packet)
            if head == "H" or head == "T":
                return None, "OK"
            if head == "g":
                return None, self._read_registers()
            if head == "G":
                return None, self._write_registers(packet[1:])
            if head == "p":
                return None, self._read_register(int(packet[1:], 16))
            if head == "P":
                number, value = packet[1:].split("=")
                return None, self._write_register(int(number, 16), value)
            if head == "m":
                address, length = (int(x, 16) for x in packet[1:].split(","))
                return None, self._read_memory(address, length)
            if head == "M":
                where, data = packet[1:].split(":")
                address, length = (int(x, 16) for x in where.split(","))
                return None, self._write_memory(address, length, data)
            if head in ("Z", "z"):
                kind, address, length = (int(x, 16) for x in packet[1:].split(";")[0].split(","))
                return None, self._set_point(head == "Z", kind, address, length)
            if head in ("c", "s"):
                if len(packet) > 1:
                    self._set_pc(int(packet[1:], 16))
                return ("step" if head == "s" else "continue"), None
            if head == "D":
                return "detach", "OK"
            if head == "k":
                return "kill", None
        except (ValueError, IndexError, uc_mod.UcError):
            return None, "E01"
        return None, ""                    # not supported: GDB falls back or says so

    _last_stop = f"T{SIGTRAP:02x}"
    def _query(self, packet):
        if packet.startswith("qSupported"):
            return None, f"PacketSize={PACKET_SIZE:x}"
        if packet == "qAttached":
            return None, "1"
        if packet == "qC":
            return None, "QC1"
        if packet == "qfThreadInfo":
            return None, "m1"
        if packet == "qsThreadInfo":
            return None, "l"
        if packet.startswith("vKill"):
            return "kill", "OK"
        return None, ""

    def _resume(self, action):
        if action == "kill":
            self.machine.stop("killed", "killed by the debugger")
            self._close_connection()
            return
        if action == "detach":
            self._detach()
            return
        self._reply_due = True
        pc = self.linear_pc()
        self._resume_pc = pc if pc in self.breakpoints else None
        if action == "step":
            self.counters["steps"] += 1
            self._arm_step("", rearm_watch=False)

    def _arm_step(self, extra, rearm_watch):
        """Stop before the instruction after the next one: an unbounded code hook, only
        until then.  `extra`: the stop reply's reason text."""
        self._step = _Step(self, self.linear_pc(), extra, rearm_watch)

    # -- registers --------------------------------------------------------------------------
    def in_real_mode(self):
        return not (self.cpu.get("cr0") & CR0_PE)

    def linear_pc(self):
        if self.in_real_mode():
            return (self.cpu.get("cs") << 4) + (self.cpu.get("eip") & 0xFFFF)
        return self.cpu.get("eip")

    def _set_pc(self, linear):
        """EIP as GDB writes it: linear; in real mode kept in CS's 64 KiB if it can be,
        else CS:IP = linear>>4 : linear&15."""
        if not self.in_real_mode():
            self.cpu.set("eip", linear & 0xFFFFFFFF)
            return
        base = self.cpu.get("cs") << 4
        if base <= linear <= base + 0xFFFF:
            self.cpu.set("eip", linear - base)
        else:
            if linear > 0x10FFEF:
                raise ValueError("beyond real mode's reach")
            self.cpu.set("cs", (linear >> 4) & 0xFFFF)
            self.cpu.set("eip", linear & 0xF)

    def register_value(self, number):
        name = GDB_REGS[number]
        if number == EIP_REGNO:
            return self.linear_pc()
        return self.cpu.get(name) & 0xFFFFFFFF

    def _read_registers(self):
        return b"".join(struct.pack("<I", self.register_value(n))
                        for n in range(len(GDB_REGS))).hex()

    def _read_register(self, number):
        if not 0 <= number < len(GDB_REGS):
            return ""        # no FPU/SSE state: GDB falls back to `g` and shows them unavailable
        return struct.pack("<I", self.register_value(number)).hex()

    def _write_register(self, number, hex_value):
        if not 0 <= number < len(GDB_REGS):
            return "E01"
        value = struct.unpack("<I", bytes.fromhex(hex_value)[:4].ljust(4, b"\0"))[0]
        if value == self.register_value(number):
            return "OK"                   # a segment write would reload its base: only changes
        if number == EIP_REGNO:
            self._set_pc(value)
        elif GDB_REGS[number] in SEGMENTS:
            self.cpu.set(GDB_REGS[number], value & 0xFFFF)
        else:
            self.cpu.set(GDB_REGS[number], value)
        return "OK"

    def _write_registers(self, hex_values):
        data = bytes.fromhex(hex_values)
        for number in range(min(len(GDB_REGS), len(data) // 4)):
            self._write_register(number, data[number * 4:number * 4 + 4].hex())
        return "OK"

    # -- memory ------------------------------------------------------------------------------
    def _read_memory(self, address, length):
        length = min(length, PACKET_SIZE // 2)
        try:
            return bytes(self.uc.mem_read(address, length)).hex()
        except uc_mod.UcError:
            return "E14"                  # EFAULT: unmapped

    def _write_memory(self, address, length, hex_data):
        data = bytes.fromhex(hex_data)
        if len(data) != length or length > PACKET_SIZE:
            return "E01"
        try:
            self.uc.mem_write(address, data)
        except uc_mod.UcError:
            return "E14"
        # Unicorn keeps running old translations of code written from outside.
        self.uc.ctl_remove_cache(address, address + max(length, 1))
        return "OK"

    # -- breakpoints and watchpoints ---------------------------------------------------------
    def _set_point(self, insert, kind, address, length):
        if kind in (0, 1):                 # software and "hardware" breakpoints alike
            if insert and address not in self.breakpoints:
                self.breakpoints[address] = self.uc.hook_add(
                    uc_mod.UC_HOOK_CODE, self._on_breakpoint, None, address, address)
                # Blocks translated before carry no call to the new hook.
                self.uc.ctl_remove_cache(address, address + 1)
            elif not insert and address in self.breakpoints:
                self.uc.hook_del(self.breakpoints.pop(address))
            return "OK"
        if kind in _WATCH_HOOKS:
            if not 1 <= length <= PACKET_SIZE:
                return "E01"
            key = (kind, address, length)
            if insert and key not in self.watchpoints:
                self.watchpoints[key] = self._watch_hook(key)
                # Cached TLB entries would let accesses to the page skip the hook.
                _flush_tlb(self.uc)
            elif not insert and key in self.watchpoints:
                handle = self.watchpoints.pop(key)
                if handle is not None:
                    self.uc.hook_del(handle)
            return "OK"
        return ""

    def _watch_hook(self, key):
        kind, address, length = key

        def on_access(_uc, _access, _address, _size, _value, _user):
            if self._watch_hit is None:
                self.counters["watch_hits"] += 1
                self._watch_hit = (kind, address)
                self.uc.emu_stop()
        return self.uc.hook_add(_WATCH_HOOKS[kind], on_access, None, address,
                                address + length - 1)

    def _rearm_watchpoints(self):
        for key, handle in self.watchpoints.items():
            if handle is None:
                self.watchpoints[key] = self._watch_hook(key)
        _flush_tlb(self.uc)

    def _on_breakpoint(self, _uc, address, _size, _user):
        if address == self._resume_pc:
            self._resume_pc = None         # the instruction the debugger resumed at
            return
        self.counters["breakpoint_hits"] += 1
        self._pending = (SIGTRAP, "")
        self._reply_due = True
        self.uc.emu_stop()

    # -- the end -----------------------------------------------------------------------------
    def _remove_points(self):
        for handle in self.breakpoints.values():
            self.uc.hook_del(handle)
        for handle in self.watchpoints.values():
            if handle is not None:
                self.uc.hook_del(handle)
        if self._step is not None:
            self.uc.hook_del(self._step.handle)
        self.breakpoints, self.watchpoints, self._step = {}, {}, None
        self._watch_hit = self._pending = None

    def _detach(self):
        """The debugger left (D, or it hung up): the run goes on without it."""
        self._remove_points()
        self._close_connection()

    def _close_connection(self):
        with self._attach_lock:
            connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()

    def finish(self, exit_code=None, signal=None):
        """The run is over: tell a debugger that waits for the guest how it ended
        (W: exited with `exit_code`, X: killed by `signal`), then close everything."""
        connection = self.connection
        if connection is not None and self._reply_due and not connection.closed.is_set():
            connection.send(f"X{signal:02x}" if signal is not None else f"W{exit_code & 0xFF:02x}")
            # GDB closes its end after the exit report; give it a moment to do so.
            connection.closed.wait(timeout=2)
        self.close()

    def close(self):
        self._closing.set()
        self._interrupt.clear()
        self._close_connection()
        self.listener.close()
        if self._accepter is not None:
            self._accepter.join(timeout=5)
        if self.machine.before_start == self._before_start:
            self.machine.before_start = None


class _Step:
    """One single-step: the code hook's first call is the stepped instruction (at
    `start`), the next one is where the guest stops."""

    def __init__(self, stub, start, extra, rearm_watch):
        self.stub, self.start, self.extra, self.rearm_watch = stub, start, extra, rearm_watch
        self.calls = 0
        self.handle = stub.uc.hook_add(uc_mod.UC_HOOK_CODE, self._on_code)
        # Translated blocks carry no call to a hook added after them (a loop that
        # jumps to itself would never reach it): translate everything again.
        stub.uc.ctl_flush_tb()

    def _on_code(self, uc, address, _size, _user):
        self.calls += 1
        if self.calls == 1 and address == self.start:
            return
        stub = self.stub
        stub._pending = (SIGTRAP, self.extra)
        stub._reply_due = True
        uc.emu_stop()
