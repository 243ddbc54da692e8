"""The CPU: a Unicorn x86 core started in 16-bit mode, with register access and
real-mode interrupt delivery through the guest's own IVT.

Unicorn never vectors `int n` through the IVT (NOTES 5); `deliver_interrupt` does what
the processor would: push FLAGS, CS and IP, clear IF and TF, and load CS:IP from the
vector, so a guest that replaced a vector and chains to the old one behaves as on
hardware.
"""
import ctypes

import unicorn as uc_mod
from unicorn import x86_const as X

FLAG_CF = 1 << 0
FLAG_ZF = 1 << 6
FLAG_TF = 1 << 8
FLAG_IF = 1 << 9
CR0_PE = 1 << 0

REG = {
    "eax": X.UC_X86_REG_EAX, "ebx": X.UC_X86_REG_EBX, "ecx": X.UC_X86_REG_ECX,
    "edx": X.UC_X86_REG_EDX, "esi": X.UC_X86_REG_ESI, "edi": X.UC_X86_REG_EDI,
    "ebp": X.UC_X86_REG_EBP, "esp": X.UC_X86_REG_ESP, "eip": X.UC_X86_REG_EIP,
    "eflags": X.UC_X86_REG_EFLAGS,
    "ax": X.UC_X86_REG_AX, "bx": X.UC_X86_REG_BX, "cx": X.UC_X86_REG_CX,
    "dx": X.UC_X86_REG_DX, "si": X.UC_X86_REG_SI, "di": X.UC_X86_REG_DI,
    "bp": X.UC_X86_REG_BP, "sp": X.UC_X86_REG_SP, "ip": X.UC_X86_REG_IP,
    "cs": X.UC_X86_REG_CS, "ds": X.UC_X86_REG_DS, "es": X.UC_X86_REG_ES,
    "ss": X.UC_X86_REG_SS, "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS,
    "cr0": X.UC_X86_REG_CR0,
}

REPORT_REGS = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp",
               "cs", "ds", "es", "ss", "fs", "gs", "eip", "eflags", "cr0")

_PERMS_FETCH = uc_mod.UC_PROT_READ | uc_mod.UC_PROT_EXEC
_PERMS_DATA = uc_mod.UC_PROT_READ | uc_mod.UC_PROT_WRITE


def _fill_tlb(_uc, vaddr, access, entry, _user):
    """Virtual TLB refill: identity mapping, as Unicorn's own refill does, but with
    read+write for any data access.  Unicorn's refill caches only the permission of the
    access that missed, so a page that is read and written in turn (a stack, LZMA's
    probability tables) misses on every switch, each miss costing a cpu_restore_state;
    GRUB's core.img decompression took ~1.5 s that way instead of ~0.1 s.  Fetches get
    read+exec but not write: Unicorn never marks a TLB entry that carries exec
    permission dirty, so writes through it would take the slow path forever; a store to
    a code page misses once instead, invalidates the page's translations as it must,
    and continues at full speed.  ROM and unmapped checks are per memory region
    (mem_map_ptr permissions, write-dirty tracking) and do not depend on this."""
    entry.paddr = vaddr
    entry.perms = _PERMS_FETCH if access == uc_mod.UC_MEM_FETCH else _PERMS_DATA
    return True


# CPUID leaf 1 EDX bit 4 (TSC), leaf 80000001h EDX bit 27 (RDTSCP), leaf 80000007h
# EDX bit 8 (invariant TSC).
_TSC_BITS = {0x00000001: 1 << 4, 0x80000001: 1 << 27, 0x80000007: 1 << 8}
_cpuid_results = {}
_cpuid_scratch = []


def _native_cpuid(leaf, subleaf):
    """What Unicorn's CPU model answers, from a scratch core (the hook that replaces the
    answer cannot run the instruction itself).  The model is fixed, so answers are
    cached for the whole process."""
    key = (leaf, subleaf)
    if key not in _cpuid_results:
        if not _cpuid_scratch:
            scratch = uc_mod.Uc(uc_mod.UC_ARCH_X86, uc_mod.UC_MODE_16)
            scratch.mem_map(0x1000, 0x1000)
            scratch.mem_write(0x1000, b"\x0f\xa2")           # cpuid
            _cpuid_scratch.append(scratch)
        scratch = _cpuid_scratch[0]
        scratch.reg_write(X.UC_X86_REG_EAX, leaf)
        scratch.reg_write(X.UC_X86_REG_ECX, subleaf)
        scratch.emu_start(0x1000, 0x1002)
        _cpuid_results[key] = tuple(scratch.reg_read(r) for r in (
            X.UC_X86_REG_EAX, X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX))
    return _cpuid_results[key]


def _cpuid_without_tsc(uc, _user):
    """CPUID as Unicorn's model answers it, minus the time stamp counter.  `rdtsc` reads
    the host's TSC, which knows nothing of the virtual clock's fast-forwarding: GRUB
    calibrates it against the PIT (whose waits jump ahead), gets a rate off by orders
    of magnitude that changes from run to run, and times everything with it.  Without
    the TSC bit GRUB (grub-core/kern/i386/tsc.c) and others fall back to the BIOS tick
    count (INT 1Ah), which runs on the virtual clock: deterministic and fast-forwarded.
    Returns 1: the instruction itself is skipped."""
    leaf = uc.reg_read(X.UC_X86_REG_EAX) & 0xFFFFFFFF
    subleaf = uc.reg_read(X.UC_X86_REG_ECX) & 0xFFFFFFFF
    eax, ebx, ecx, edx = _native_cpuid(leaf, subleaf)
    edx &= ~_TSC_BITS.get(leaf, 0)
    uc.reg_write(X.UC_X86_REG_EAX, eax)
    uc.reg_write(X.UC_X86_REG_EBX, ebx)
    uc.reg_write(X.UC_X86_REG_ECX, ecx)
    uc.reg_write(X.UC_X86_REG_EDX, edx)
    return 1


_U64 = (1 << 64) - 1


def raw_register_access(uc):
    """(read, write) for scalar registers (GPRs, segment selectors, EIP, EFLAGS, CRs)
    calling libunicorn directly: ~0.5 us a call instead of ~1.9 us through the binding's
    per-call type dispatch, and every BIOS call makes a dozen of them (NOTES 5; bench:
    interrupt round trips).  Structured registers (IDTR, GDTR, MSRs) go through the
    binding.  One pair per Unicorn instance."""
    cached = getattr(uc, "_pvboot_raw_access", None)
    if cached is not None:
        return cached
    from unicorn.unicorn_py3.unicorn import uclib
    handle = uc._uch
    c_read, c_write = uclib.uc_reg_read, uclib.uc_reg_write
    rbuf, wbuf = ctypes.c_uint64(0), ctypes.c_uint64(0)
    rref, wref = ctypes.byref(rbuf), ctypes.byref(wbuf)

    def read(regid):
        rbuf.value = 0          # 16-bit registers fill only the low bytes
        status = c_read(handle, regid, rref)
        if status:
            raise uc_mod.UcError(status)
        return rbuf.value

    def write(regid, value):
        wbuf.value = value & _U64
        status = c_write(handle, regid, wref)
        if status:
            raise uc_mod.UcError(status)

    uc._pvboot_raw_access = (read, write)
    return read, write


class _X86Mmr(ctypes.Structure):
    """unicorn's uc_x86_mmr: a descriptor-table register (IDTR, GDTR)."""
    _fields_ = [("selector", ctypes.c_uint16), ("base", ctypes.c_uint64),
                ("limit", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


def raw_idtr_reader(uc):
    """() -> (base, limit) of the IDT register, without the binding's ~5 us dispatch
    (read on every interrupt: a real-mode lidt may have moved the IVT)."""
    from unicorn.unicorn_py3.unicorn import uclib
    handle, c_read = uc._uch, uclib.uc_reg_read
    mmr = _X86Mmr()
    ref = ctypes.byref(mmr)

    def read():
        status = c_read(handle, X.UC_X86_REG_IDTR, ref)
        if status:
            raise uc_mod.UcError(status)
        return mmr.base, mmr.limit
    return read


class Cpu:
    """A Unicorn core plus the few things a PC processor does that Unicorn leaves to us."""

    def __init__(self):
        self.uc = uc_mod.Uc(uc_mod.UC_ARCH_X86, uc_mod.UC_MODE_16)
        # No paging in a BIOS world: the virtual TLB makes guest stores ~10x cheaper (NOTES 5).
        self.uc.ctl_set_tlb_mode(uc_mod.UC_TLB_VIRTUAL)
        self.uc.hook_add(uc_mod.UC_HOOK_TLB_FILL, _fill_tlb)
        self.uc.hook_add(uc_mod.UC_HOOK_INSN, _cpuid_without_tsc, None, 1, 0, X.UC_X86_INS_CPUID)
        self._read, self._write = raw_register_access(self.uc)
        # The processor's reset state: the IVT at 0 with limit 0xFFFF (Unicorn starts at 0).
        self.uc.reg_write(X.UC_X86_REG_IDTR, (0, 0, 0xFFFF, 0))
        self._read_idtr = raw_idtr_reader(self.uc)

    def get(self, name):
        return self._read(REG[name])

    def set(self, name, value):
        self._write(REG[name], value)

    def snapshot(self):
        return {name: self._read(REG[name]) for name in REPORT_REGS}

    def in_real_mode(self):
        return not (self._read(X.UC_X86_REG_CR0) & CR0_PE)

    def linear_pc(self):
        """CS*16 + IP: the linear address of the next instruction in real mode."""
        return (self._read(X.UC_X86_REG_CS) << 4) + self._read(X.UC_X86_REG_IP)

    def push16(self, mem, value):
        sp = (self._read(X.UC_X86_REG_SP) - 2) & 0xFFFF
        self._write(X.UC_X86_REG_SP, sp)
        mem.write_u16((self._read(X.UC_X86_REG_SS) << 4) + sp, value)

    def vector_address(self, vector):
        """Linear address of `vector`'s IVT entry, or None when the IDT register's limit
        excludes it (a real-mode `lidt` moves and sizes the IVT; limit 0 makes any
        interrupt shut the processor down)."""
        base, limit = self._read_idtr()
        entry = vector * 4
        if entry + 3 > limit:
            return None
        return base + entry

    def deliver_interrupt(self, mem, vector, return_ip=None):
        """Enter real-mode interrupt `vector` as the processor does, through the IVT.
        Returns False, delivering nothing, when the vector lies past the IVT's limit."""
        entry = self.vector_address(vector)
        if entry is None:
            return False
        flags = self._read(X.UC_X86_REG_EFLAGS)
        cs = self._read(X.UC_X86_REG_CS)
        ip = self._read(X.UC_X86_REG_IP) if return_ip is None else return_ip
        ss = self._read(X.UC_X86_REG_SS)
        sp = (self._read(X.UC_X86_REG_SP) - 6) & 0xFFFF
        frame = ss * 16 + sp
        # The frame is IP, CS, FLAGS from the lowest address up, as `iret` pops it.
        mem.buf[frame:frame + 6] = (ip & 0xFFFF).to_bytes(2, "little") + cs.to_bytes(2, "little") + \
            (flags & 0xFFFF).to_bytes(2, "little")
        self._write(X.UC_X86_REG_SP, sp)
        self._write(X.UC_X86_REG_EFLAGS, flags & ~(FLAG_IF | FLAG_TF))
        target = mem.read_u32(entry)
        self._write(X.UC_X86_REG_CS, target >> 16)
        self._write(X.UC_X86_REG_EIP, target & 0xFFFF)
        return True
