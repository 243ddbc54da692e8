"""The BIOS: loads the ROM, owns the per-vector handlers, and dispatches each trap from
a ROM stub to the Python service for that interrupt.

Which service runs is decided by which stub trapped (its address), not by a vector
number passed in a register: a guest that chains from its own hook into the ROM stub
reaches the same service as a plain `int`.
"""
import dataclasses

from pvboot.emu.clock import TICKS_PER_DAY
from pvboot.firmware import bda, boot, clock, int13, kbd, post, serial, system, video
from pvboot.emu.cpu import I_SS
from pvboot.firmware.diskop import DISK_SECTOR_SIZE
from pvboot.firmware.floppy import qemu_floppy_drive_type
from pvboot.firmware.regs import Regs
from pvboot.roms import DATA_AREA_OFFSET, ROM_BASE, ROM_SIZE, build_rom

# (vector, ROM stub label, service): the vectors the BIOS implements in Python.
SERVICES = (
    (0x08, "int08_entry", clock.handle_08),
    (0x10, "int10_entry", video.handle_10),
    (0x11, "int11_entry", system.handle_11),
    (0x12, "int12_entry", system.handle_12),
    (0x13, "int13_entry", int13.handle_13),
    (0x14, "int14_entry", serial.handle_14),
    (0x15, "int15_entry", system.handle_15),
    (0x16, "int16_entry", kbd.handle_16),
    (0x17, "int17_entry", serial.handle_17),
    (0x18, "int18_entry", boot.handle_18),
    (0x19, "int19_entry", boot.handle_19),
    (0x1A, "int1a_entry", clock.handle_1a),
)


@dataclasses.dataclass
class BiosConfig:
    """What the user configured: disks (in boot order), scripted keys, tracing."""
    disks: list = dataclasses.field(default_factory=list)     # emu.diskimage.DiskImage
    keys: str = ""
    boot_order: tuple = None                                  # BIOS drive numbers, or None
    trace: frozenset = frozenset()                            # {"int", "disk"}
    trace_out: object = None                                  # file for trace lines
    xen: object = None            # emu.xen.platform.GuestXen: PV disks are found through it
    pv_timeout: float = 5.0       # bound of every wait on a PV backend (seconds)
    ata: bool = False             # probe the emulated IDE channel for hard disks (firmware/ata.py)
    pv_paths: dict = dataclasses.field(default_factory=dict)  # vbd devid -> "bounce"|"direct"
    # The hard disks in BIOS order (80h, 81h, ...): firmware.block xen_drive / ata_drive /
    # host_drive entries.  None: the old order (ata, then every vbd, then disks).
    drives: list = None
    op_digests: bool = False      # record a CRC-32 per disk operation (pvboot compare --paths)
    cdroms: list = dataclasses.field(default_factory=list)    # (vbd devid, PV path) per CD: E0h, E1h, ...


class Bios:
    SERVICES = SERVICES         # what POST puts in the IVT
    cdemu = None                # firmware/cdemu.CdEmu once POST finds a CD drive

    def __init__(self, machine, config):
        self.machine = machine
        self.cpu = machine.cpu
        self.mem = machine.mem
        self.clock = machine.clock
        self.config = config
        for image in config.disks:
            if getattr(image, "kind", "hd") == "floppy":
                # A floppy image no drive can hold is bad input, refused before the run.
                qemu_floppy_drive_type(image.sectors * DISK_SECTOR_SIZE, f"floppy image {image.name}")
        self.rom = build_rom()
        self.mem.write(ROM_BASE, self.rom.image)
        self._rom_data_next = ROM_BASE + DATA_AREA_OFFSET
        self._handlers = {}
        for _vector, label, service in SERVICES:
            self._handlers[self.rom.symbols[label]] = service
        if config.op_digests:
            # Counted only when asked (pvboot compare --paths): the plain path pays nothing.
            self._count_calls("int13_entry", "int13_calls")
        self._post_trap = self.rom.symbols["post_entry"] + self._post_trap_offset()
        machine.trap_handler = self.trap
        # Every service stub but INT 08h's (which also acknowledges the PIC) is plain.
        machine.in_place_handler = self.serve_in_place
        machine.in_place_stubs = frozenset(
            self.rom.symbols[label] for vector, label, _ in SERVICES if vector != 0x08)
        machine.idle_handler = self.timer_interrupt
        machine.default_vector = self.rom.symbols["unused_vector"]
        self.counters = machine.counters
        self.block = None       # firmware.block.BlockLayer, created at POST
        self.video = video.VideoState()
        self.keyboard = kbd.Keyboard(config.keys)
        self.disk_trace = []    # recent disk operations, for crash reports
        machine.report_sections.append(self.disk_report)
        self.messages = []      # things the user should hear about (a disk that did not connect)
        self.int_trace_enabled = "int" in config.trace
        if self.int_trace_enabled:
            machine.interrupt_tracer = self.trace_interrupt
        cs, ip = self.rom.segoff("reset_vector")
        machine.cpu.set("cs", cs)
        machine.cpu.set("eip", ip)

    def _count_calls(self, label, counter):
        """Count the calls of the service behind ROM stub `label` in counters[counter]."""
        address = self.rom.symbols[label]
        service = self._handlers[address]
        counters = self.machine.counters
        counters.setdefault(counter, 0)

        def counted(bios, regs):
            counters[counter] += 1
            service(bios, regs)
        self._handlers[address] = counted

    def _post_trap_offset(self):
        # The POST stub traps at its `outb` instruction; find it in the assembled bytes.
        start = self.rom.symbols["post_entry"] - ROM_BASE
        return self.rom.image.index(b"\xE6\xEE", start) - start

    def rom_alloc(self, data, align=16):
        """Place a read-only table (disk parameters, config table, DPTE) in the ROM's data
        area; returns its linear address."""
        addr = (self._rom_data_next + align - 1) & ~(align - 1)
        if addr + len(data) > ROM_BASE + ROM_SIZE - 16:
            raise RuntimeError("ROM data area full")
        self.mem.write(addr, bytes(data))
        self._rom_data_next = addr + len(data)
        return addr

    def trap(self, linear_ip, state):
        """A ROM stub executed `out` to the trap port at `linear_ip`; `state` is
        Cpu.read_state() at that moment."""
        regs = Regs.at_trap(self.machine.cpu, self.mem, state)
        self.sync_ticks()
        if linear_ip == self._post_trap:
            post.post(self, regs)
        else:
            handler = self._handlers.get(linear_ip)
            if handler is None:
                raise RuntimeError(f"trap from unknown ROM address {linear_ip:#x}")
            handler(self, regs)
        regs.commit()

    def serve_in_place(self, stub, state):
        """The guest's `int` reached a vector that still points at the plain ROM stub
        `stub` (`out` to the trap port, `iret`): do what the processor and the stub
        would, without running them.  The frame goes on the caller's stack as `int`
        would push it, the service runs on it exactly as from the trap, and the stub's
        iret is done here.  Per call that is one register read and one write into
        Unicorn instead of an IVT jump, a trap and an iret (bench: INT round trips)."""
        cpu, mem = self.cpu, self.mem
        ss = state[I_SS]
        regs = Regs(cpu, mem, state, ss, cpu.push_interrupt_frame(mem, state))
        # sync_ticks' own first test, written out: nearly every call finds the count
        # in place (the clock's kept answer still good, and already in the BDA).
        clock = self.clock
        if clock.ns >= clock.tick_total_until or clock.tick_total != self._synced_total:
            self.sync_ticks()
        self._handlers[stub](self, regs)
        regs.return_from_interrupt(state)

    def sync_ticks(self, force=False):
        """Bring the BDA tick count up to the virtual clock (there are no timer
        interrupts).  Within one tick there is nothing to do, and most calls come within
        the tick of the call before; `force` after the count was cleared (POST)."""
        total = self.clock.bios_tick_total()
        if total == self._synced_total and not force:
            return
        self._synced_total = total
        ticks, days = total % TICKS_PER_DAY, total // TICKS_PER_DAY
        buf = self.mem.buf
        old = int.from_bytes(buf[bda.TIMER_COUNTER:bda.TIMER_COUNTER + 4], "little")
        buf[bda.TIMER_COUNTER:bda.TIMER_COUNTER + 4] = ticks.to_bytes(4, "little")
        if ticks < old or days > self._days_seen:
            buf[bda.TIMER_ROLLOVER] = 1
        self._days_seen = days

    _days_seen = 0
    _synced_total = None

    def timer_interrupt(self):
        """The guest executed `hlt` with interrupts on: let time pass to the next tick and
        deliver IRQ0 (INT 08h) as the PIT would."""
        self.clock.idle()
        cpu = self.machine.cpu
        cpu.deliver_interrupt(self.mem, 0x08)

    def trace_interrupt(self, vector, kind):
        c = self.machine.cpu
        line = (f"[{self.clock.now():10.6f}] {kind} {vector:02x} ax={c.get('ax'):04x} bx={c.get('bx'):04x} "
                f"cx={c.get('cx'):04x} dx={c.get('dx'):04x} si={c.get('si'):04x} di={c.get('di'):04x} "
                f"ds={c.get('ds'):04x} es={c.get('es'):04x} from {c.get('cs'):04x}:{c.get('ip'):04x}")
        self.trace(line)

    def trace(self, line):
        out = self.config.trace_out
        if self.config.trace and out is not None:
            print(line, file=out)

    def warn(self, message):
        self.messages.append(message)
        self.trace(f"warning: {message}")

    def disk_report(self):
        """The last disk operations, for crash and timeout reports (Machine.report_sections)."""
        entries = list(self.disk_trace)
        if not entries:
            return ["disk operations: none"]
        return [f"last {len(entries)} disk operations (oldest first):"] + [f"  {e}" for e in entries]

    def shutdown(self):
        """End of the run: disconnect the PV disks as an OS-bound loader would."""
        if self.block is not None:
            for problem in self.block.shutdown():
                self.warn(problem)

    def stop(self, reason, detail=""):
        self.machine.stop(reason, detail)
