"""The CPU: a Unicorn x86 core started in 16-bit mode, with register access and
real-mode interrupt delivery through the guest's own IVT.

Unicorn never vectors `int n` through the IVT (NOTES 5); `deliver_interrupt` does what
the processor would: push FLAGS, CS and IP, clear IF and TF, and load CS:IP from the
vector, so a guest that replaced a vector and chains to the old one behaves as on
hardware.
"""
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


class Cpu:
    """A Unicorn core plus the few things a PC processor does that Unicorn leaves to us."""

    def __init__(self):
        self.uc = uc_mod.Uc(uc_mod.UC_ARCH_X86, uc_mod.UC_MODE_16)
        # No paging in a BIOS world: the virtual TLB makes guest stores ~10x cheaper (NOTES 5).
        self.uc.ctl_set_tlb_mode(uc_mod.UC_TLB_VIRTUAL)
        self._read = self.uc.reg_read
        self._write = self.uc.reg_write

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

    def deliver_interrupt(self, mem, vector, return_ip=None):
        """Enter real-mode interrupt `vector` as the processor does, through the IVT."""
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
        target = mem.read_u32(vector * 4)
        self._write(X.UC_X86_REG_CS, target >> 16)
        self._write(X.UC_X86_REG_EIP, target & 0xFFFF)
