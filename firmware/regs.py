"""The caller's registers as one BIOS call sees them (SeaBIOS's `struct bregs`): read in
one call into Unicorn and written back in one (`commit`), since one by one they were
most of a call's cost.  CF and ZF live in the FLAGS image of the interrupt frame.
"""
from pvboot.emu.cpu import (
    CALL_REGS, FLAG_CF, FLAG_IF, FLAG_ZF, GPR_COUNT, I_EAX, I_ESP, I_SS, INTERRUPT_FRAME,
)

_MASK32 = 0xFFFFFFFF
_SEGMENTS = ("ds", "es", "fs", "gs")


class Regs:
    """Attribute access to eax..ebp, ax..bp, al..dh, ds, es, fs, gs; plus cf and zf.

    `frame` is where the caller's `int` pushed IP, CS, FLAGS."""

    __slots__ = ("_values", "_dirty", "_mem", "_cpu", "ss", "sp", "_sp_at_entry", "frame")

    def __init__(self, cpu, mem, state, ss, sp):
        self._cpu = cpu
        self._mem = mem
        # All of `state`: the CALL_REGS come first, and the rest is never looked at.
        self._values = list(state)
        self._dirty = 0                 # bit i: CALL_REGS[i] changed
        self.ss = ss
        self.sp = sp                    # the stack the return pops: push_frame lowers it
        self._sp_at_entry = sp
        # Linear address of the caller's IP, CS, FLAGS pushed by the interrupt.
        self.frame = (ss << 4) + sp

    @classmethod
    def at_trap(cls, cpu, mem, state=None):
        """The registers of a call trapped in a ROM stub, whose frame is at SS:SP."""
        if state is None:
            state = cpu.read_state()
        return cls(cpu, mem, state, state[I_SS], state[I_ESP] & 0xFFFF)

    def return_from_interrupt(self, state):
        """For a call served straight from the interrupt (`state`: Cpu.read_state() at
        the `int`): the changed segment registers written, then the stub's `iret` done
        with the general registers as the service left them (Cpu.return_from_interrupt)."""
        if self._dirty & ~_GPR_BITS:
            self.commit_segments()
        self._cpu.return_from_interrupt(self._mem, state, self.ss, self.sp, self._values)

    def commit(self):
        """Write what the service changed back to the CPU (the general registers in one
        call; segment registers and SP, rarely changed, one by one)."""
        dirty = self._dirty
        cpu = self._cpu
        if dirty & _GPR_BITS:
            cpu.write_gprs(self._values[:GPR_COUNT])
        self.commit_segments()
        if self.sp != self._sp_at_entry:
            cpu.set("sp", self.sp)
        self._dirty = 0
        self._sp_at_entry = self.sp

    def commit_segments(self):
        """Write the changed segment registers only (the general registers and SP are
        left to the caller's iret: Cpu.return_from_interrupt)."""
        dirty = self._dirty
        if dirty & ~_GPR_BITS:
            for index in range(GPR_COUNT, len(CALL_REGS)):
                if dirty & (1 << index):
                    self._cpu.set(CALL_REGS[index], self._values[index])
            self._dirty = dirty & _GPR_BITS

    # -- flags and the frame -------------------------------------------------------------
    @property
    def flags(self):
        return self._mem.read_u16(self.frame + 4)

    @property
    def cf(self):
        return bool(self.flags & FLAG_CF)

    @cf.setter
    def cf(self, on):
        self._set_flag(FLAG_CF, on)

    @property
    def zf(self):
        return bool(self.flags & FLAG_ZF)

    @zf.setter
    def zf(self, on):
        self._set_flag(FLAG_ZF, on)

    @property
    def interrupts_enabled(self):
        return bool(self.flags & FLAG_IF)

    def _set_flag(self, bit, on):
        # CF and ZF, the flags services set, are in the low byte of FLAGS.
        buf, where = self._mem.buf, self.frame + 4
        buf[where] = (buf[where] | bit) if on else (buf[where] & ~bit)

    @property
    def return_address(self):
        """(CS, IP) the stub's iret returns to."""
        return self._mem.read_u16(self.frame + 2), self._mem.read_u16(self.frame)

    def set_return_address(self, cs, ip):
        frame = self.frame
        self._mem.buf[frame:frame + 4] = (ip & 0xFFFF).to_bytes(2, "little") + \
            (cs & 0xFFFF).to_bytes(2, "little")

    def set_return_flags(self, flags):
        frame = self.frame
        self._mem.buf[frame + 4:frame + 6] = (flags & 0xFFFF).to_bytes(2, "little")

    def push_frame(self, ip, cs, flags):
        """Push another interrupt frame below the caller's, so that the return goes to
        cs:ip first (and that code's own iret then to the caller)."""
        sp = (self.sp - 6) & 0xFFFF
        self._mem.write((self.ss << 4) + sp, INTERRUPT_FRAME.pack(ip & 0xFFFF, cs & 0xFFFF, flags & 0xFFFF))
        self.sp = sp

    # -- status conventions --------------------------------------------------------------
    def ok(self, ah=0):
        """Success as most BIOS calls report it: CF clear, AH = status."""
        self.set_ah_cf(ah, False)

    def fail(self, ah):
        """Failure as most BIOS calls report it: CF set, AH = status."""
        self.set_ah_cf(ah, True)

    def set_ah_cf(self, ah, cf):
        """AH = `ah` and CF = `cf`: what `self.ah = ah; self.cf = cf` does, without two
        property calls (nearly every BIOS call returns this way; bench: INT round trips)."""
        values = self._values
        values[I_EAX] = (values[I_EAX] & ~0xFF00) | ((ah & 0xFF) << 8)
        self._dirty |= _EAX_BIT
        buf, where = self._mem.buf, self.frame + 4
        buf[where] = (buf[where] | FLAG_CF) if cf else (buf[where] & ~FLAG_CF)


_GPR_BITS = (1 << GPR_COUNT) - 1
_EAX_BIT = 1 << I_EAX


def _full(index, mask):
    def get(self):
        return self._values[index] & mask

    def set_(self, value):
        self._values[index] = value & mask
        self._dirty |= 1 << index
    return property(get, set_)


def _part(index, shift, mask):
    keep = ~(mask << shift) & _MASK32

    def get(self):
        return (self._values[index] >> shift) & mask

    def set_(self, value):
        values = self._values
        values[index] = (values[index] & keep) | ((value & mask) << shift)
        self._dirty |= 1 << index
    return property(get, set_)


for _index, _name in enumerate(CALL_REGS):
    if _name in _SEGMENTS:
        setattr(Regs, _name, _full(_index, 0xFFFF))
        continue
    setattr(Regs, _name, _full(_index, _MASK32))            # eax
    setattr(Regs, _name[1:], _part(_index, 0, 0xFFFF))      # ax
    if _name in ("eax", "ebx", "ecx", "edx"):
        setattr(Regs, _name[1] + "l", _part(_index, 0, 0xFF))   # al
        setattr(Regs, _name[1] + "h", _part(_index, 8, 0xFF))   # ah
del _index, _name
