"""The caller's registers as one BIOS call sees them (SeaBIOS's `struct bregs`).

Registers are read lazily (each Unicorn register access costs ~1-2 us) and written
straight through.  CF and ZF are not the live flags: they live in the FLAGS image of
the interrupt frame at SS:SP+4, which the ROM stub's `iret` restores for the caller.
"""
from unicorn import x86_const as X

from emu.cpu import FLAG_CF, FLAG_IF, FLAG_ZF, raw_register_access

_WORD = {"ax": X.UC_X86_REG_AX, "bx": X.UC_X86_REG_BX, "cx": X.UC_X86_REG_CX,
         "dx": X.UC_X86_REG_DX, "si": X.UC_X86_REG_SI, "di": X.UC_X86_REG_DI,
         "bp": X.UC_X86_REG_BP, "ds": X.UC_X86_REG_DS, "es": X.UC_X86_REG_ES,
         "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS}
_DWORD = {"eax": X.UC_X86_REG_EAX, "ebx": X.UC_X86_REG_EBX, "ecx": X.UC_X86_REG_ECX,
          "edx": X.UC_X86_REG_EDX, "esi": X.UC_X86_REG_ESI, "edi": X.UC_X86_REG_EDI,
          "ebp": X.UC_X86_REG_EBP}
_LOW = {"al": "ax", "bl": "bx", "cl": "cx", "dl": "dx"}
_HIGH = {"ah": "ax", "bh": "bx", "ch": "cx", "dh": "dx"}


class Regs:
    """Attribute access to ax..dx, al..dh, eax..ebp, si, di, bp, ds, es; plus cf and zf."""

    __slots__ = ("_read", "_write", "_mem", "_cache", "frame")

    def __init__(self, uc, mem):
        read, write = raw_register_access(uc)
        object.__setattr__(self, "_read", read)
        object.__setattr__(self, "_write", write)
        object.__setattr__(self, "_mem", mem)
        object.__setattr__(self, "_cache", {})
        ss = read(X.UC_X86_REG_SS)
        sp = read(X.UC_X86_REG_SP)
        # Linear address of the caller's IP, CS, FLAGS pushed by the interrupt.
        object.__setattr__(self, "frame", (ss << 4) + sp)

    def _get32(self, name32):
        cache = self._cache
        value = cache.get(name32)
        if value is None:
            value = cache[name32] = self._read(_DWORD[name32])
        return value

    def __getattr__(self, name):
        if name in _WORD:
            if name in ("ax", "bx", "cx", "dx", "si", "di", "bp"):
                return self._get32("e" + name) & 0xFFFF
            value = self._cache.get(name)
            if value is None:
                value = self._cache[name] = self._read(_WORD[name])
            return value
        if name in _DWORD:
            return self._get32(name)
        if name in _LOW:
            return self._get32("e" + _LOW[name]) & 0xFF
        if name in _HIGH:
            return (self._get32("e" + _HIGH[name]) >> 8) & 0xFF
        if name == "cf":
            return bool(self.flags & FLAG_CF)
        if name == "zf":
            return bool(self.flags & FLAG_ZF)
        if name == "interrupts_enabled":
            return bool(self.flags & FLAG_IF)
        if name == "flags":
            return self._mem.read_u16(self.frame + 4)
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name in _DWORD:
            self._set32(name, value & 0xFFFFFFFF)
        elif name in _WORD:
            if name in ("ax", "bx", "cx", "dx", "si", "di", "bp"):
                old = self._get32("e" + name)
                self._set32("e" + name, (old & 0xFFFF0000) | (value & 0xFFFF))
            else:
                self._cache[name] = value & 0xFFFF
                self._write(_WORD[name], value & 0xFFFF)
        elif name in _LOW:
            old = self._get32("e" + _LOW[name])
            self._set32("e" + _LOW[name], (old & ~0xFF) | (value & 0xFF))
        elif name in _HIGH:
            old = self._get32("e" + _HIGH[name])
            self._set32("e" + _HIGH[name], (old & ~0xFF00) | ((value & 0xFF) << 8))
        elif name == "cf":
            self._set_flag(FLAG_CF, value)
        elif name == "zf":
            self._set_flag(FLAG_ZF, value)
        else:
            raise AttributeError(name)

    def _set32(self, name32, value):
        self._cache[name32] = value
        self._write(_DWORD[name32], value)

    def _set_flag(self, bit, on):
        flags = self._mem.read_u16(self.frame + 4)
        flags = (flags | bit) if on else (flags & ~bit)
        self._mem.buf[self.frame + 4:self.frame + 6] = flags.to_bytes(2, "little")

    @property
    def return_address(self):
        """(CS, IP) the stub's iret returns to."""
        return self._mem.read_u16(self.frame + 2), self._mem.read_u16(self.frame)

    def set_return_address(self, cs, ip):
        self._mem.buf[self.frame:self.frame + 4] = (ip & 0xFFFF).to_bytes(2, "little") + \
            (cs & 0xFFFF).to_bytes(2, "little")

    def set_return_flags(self, flags):
        self._mem.buf[self.frame + 4:self.frame + 6] = (flags & 0xFFFF).to_bytes(2, "little")

    def ok(self, ah=0):
        """Success as most BIOS calls report it: CF clear, AH = status."""
        self.ah = ah
        self.cf = False

    def fail(self, ah):
        """Failure as most BIOS calls report it: CF set, AH = status."""
        self.ah = ah
        self.cf = True
