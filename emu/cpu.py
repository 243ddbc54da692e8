"""The CPU: a Unicorn x86 core started in 16-bit mode, with register access and
real-mode interrupt delivery through the guest's own IVT.  Its CPUID is a QEMU CPU
model's (qemu32 by default, as qemu-system-i386), and its virtual TLB keeps stores
into translated code exact (CodeAwareTlb).

Unicorn never vectors `int n` through the IVT; `deliver_interrupt` does what
the processor would: push FLAGS, CS and IP, clear IF and TF, and load CS:IP from the
vector, so a guest that replaced a vector and chains to the old one behaves as on
hardware.
"""
import ctypes
import struct

import unicorn as uc_mod
from unicorn import x86_const as X
# The binding's library handle and hook handle type: the raw calls below skip its
# per-call marshalling.
from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

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

_PERMS_DATA = uc_mod.UC_PROT_READ | uc_mod.UC_PROT_WRITE
_PERMS_CODE = uc_mod.UC_PROT_READ | uc_mod.UC_PROT_EXEC
_PERMS_MIXED = uc_mod.UC_PROT_ALL
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT


class _TlbEntry(ctypes.Structure):
    """unicorn's uc_tlb_entry."""
    _fields_ = [("paddr", ctypes.c_uint64), ("perms", ctypes.c_uint32)]


# The entry comes as a plain address (c_void_p: an int), not POINTER(_TlbEntry): ctypes
# would build a pointer object per refill, and .contents a structure object.  Unicorn
# passes a variable on its stack, so a handful of addresses recur; each gets its
# _TlbEntry view once (CodeAwareTlb._entries).
_TLB_FILL_CFUNC = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                                   ctypes.c_void_p, ctypes.c_void_p)
_MAX_ENTRY_VIEWS = 64


def _ctl_write(uc, ctl_type, nargs):
    """f(*uint64 args): uc_ctl(UC_CTL_WRITE(ctl_type, nargs), ...) without the binding's
    generic marshalling (these run from hot paths: firmware writes, TLB refills)."""
    ctl = _bare_function(uclib.uc_ctl)
    handle = uc._uch
    code = ctypes.c_int((uc_mod.UC_CTL_IO_WRITE << 30) | (nargs << 26) | ctl_type)
    u64 = ctypes.c_uint64

    def call(*args):
        status = ctl(handle, code, *(u64(a) for a in args))
        if status:
            raise uc_mod.UcError(status)
    return call


class CodeAwareTlb:
    """Virtual TLB refill (identity mapping: no paging in a BIOS world) that keeps
    stores into translated code exact while stores stay on Unicorn's fast path.

    Unicorn drops translated blocks on a store only while the entry it goes through is
    "not dirty", and marks an entry without exec permission dirty after its first
    store, even when other blocks remain on the page: a guest patching two blocks of
    one page got only the first patch.  So a page is code or data, and writable and
    executable only while it changes from one to the other:

    * code (its first fetch refill makes it so; the TLB is flushed then, since a
      writable entry for it may sit in the main or the victim table): entries carry
      read+exec, so a store misses;
    * that write refill gives read+write+exec: Unicorn never marks such an entry
      dirty, so this store and any before the next refill check for code precisely
      (a block patching its own next instruction restarts with the new bytes, as on
      a Pentium).  The next refill of another page drops every block of the page and
      flushes the TLB: the page is data, and its stores take the fast path, because
      no block is left to go stale; its next fetch makes it code again;
    * a page that flips more than MAX_FLIPS times (code and data mixed on a page that
      runs and is written in turn, where each flip costs a retranslation) stays
      read+write+exec for good, every store checked for code, as QEMU does.
    Data refills get read+write whatever access missed: a page read and written in
    turn would miss on every mode switch, each miss costing a cpu_restore_state.
    Figures: docs/cpu-and-clock.md."""

    MAX_FLIPS = 3

    def __init__(self, uc):
        self.code_pages = set()      # pages executed since they were last made data
        self.leaving = set()         # code pages written since the last refill
        self.flips = {}              # page -> times it went from code to data
        self.mixed_pages = set()     # pages past MAX_FLIPS: read+write+exec for good
        self.flushes = 0
        self._entries = {}           # entry address -> its _TlbEntry view
        self._flush_tlb = _ctl_write(uc, uc_mod.UC_CTL_TLB_FLUSH, 0)
        self._remove_translations = translation_remover(uc)
        # Raw (add_raw_hook): GRUB and SYSLINUX refill ~10k entries a boot, after each
        # switch between real and protected mode flushes the TLB.
        add_raw_hook(uc, uc_mod.UC_HOOK_TLB_FILL, _TLB_FILL_CFUNC, self._fill)

    def _fill(self, _uch, vaddr, access, entry_address, _user):
        page = vaddr >> PAGE_SHIFT
        fill = self._entries.get(entry_address)
        if fill is None:
            if len(self._entries) >= _MAX_ENTRY_VIEWS:
                self._entries.clear()
            fill = self._entries[entry_address] = _TlbEntry.from_address(entry_address)
        fill.paddr = vaddr
        if self.leaving and page not in self.leaving:
            self._make_data()
        code_pages = self.code_pages
        if page in self.mixed_pages or page in self.leaving:
            fill.perms = _PERMS_MIXED
        elif access == uc_mod.UC_MEM_FETCH:
            if page not in code_pages:
                code_pages.add(page)
                self._flush()
            fill.perms = _PERMS_CODE
        elif page not in code_pages:
            fill.perms = _PERMS_DATA
        elif access != uc_mod.UC_MEM_WRITE:
            fill.perms = _PERMS_CODE
        else:
            flips = self.flips.get(page, 0) + 1
            self.flips[page] = flips
            if flips > self.MAX_FLIPS:
                code_pages.discard(page)
                self.mixed_pages.add(page)
            else:
                self.leaving.add(page)
            fill.perms = _PERMS_MIXED
        return True

    def _make_data(self):
        """The pages written since the last refill become data: their blocks are
        dropped, and the TLB flushed (their read+exec entries may remain in the victim
        table or for another MMU index, and a fetch through one would translate a
        block that a data entry's dirty mark then hides)."""
        for page in self.leaving:
            base = page << PAGE_SHIFT
            self._remove_translations(base, base + PAGE_SIZE)
            self.code_pages.discard(page)
        self.leaving.clear()
        self._flush()

    def _flush(self):
        self.flushes += 1
        self._flush_tlb()


# CPU models Unicorn offers, by QEMU's -cpu name in lower case ("qemu32", "haswell",
# "skylake-client", "opteron-g5", ...).
CPU_MODELS = {name[len("UC_CPU_X86_"):].lower().replace("_", "-"): getattr(X, name)
              for name in dir(X)
              if name.startswith("UC_CPU_X86_") and name != "UC_CPU_X86_ENDING"}
# qemu-system-i386's default: family 6 model 6, PAE and TSC, no long mode.
DEFAULT_CPU_MODEL = "qemu32"


def cpu_model_id(name):
    """The UC_CPU_X86_* value for a model name (QEMU's spelling, any case, - or _);
    ValueError naming the choices for an unknown one."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in CPU_MODELS:
        raise ValueError(f"unknown CPU model {name!r}; choose one of: {', '.join(sorted(CPU_MODELS))}")
    return CPU_MODELS[key]


_U64 = (1 << 64) - 1
INTERRUPT_FRAME = struct.Struct("<HHH")     # an interrupt frame: IP, CS, FLAGS


class _HoldingGil(ctypes._CFuncPtr):
    """A C function called without releasing the GIL (what ctypes.pythonapi's functions
    do): the calls below return within microseconds and never call back into Python,
    and giving the GIL up and taking it back cost more than most of them."""
    _flags_ = ctypes._FUNCFLAG_CDECL | ctypes._FUNCFLAG_PYTHONAPI
    _restype_ = ctypes.c_int


def _handle_arg(uc):
    """The engine handle as the raw calls pass it: a pointer object, which ctypes
    passes on as it is, where a c_void_p costs a search of ctypes' format table per
    call (two per BIOS call: bench, INT round trips)."""
    return ctypes.cast(uc._uch, ctypes.POINTER(ctypes.c_char))


def _bare_function(function):
    """The libunicorn function behind a binding prototype, without its argtypes: with
    them ctypes checks and converts every argument on every call (type checks cost more
    than the call itself); the callers here pass ready-made ctypes objects.  Not for
    uc_emu_start, which runs the guest: hooks and other threads need the GIL then."""
    return _HoldingGil.from_address(ctypes.addressof(function))


def raw_register_access(uc):
    """(read, write) for scalar registers (GPRs, segment selectors, EIP, EFLAGS, CRs)
    calling libunicorn directly: ~0.3 us a call instead of ~1.9 us through the binding's
    per-call type dispatch.  Structured registers (IDTR, GDTR, MSRs) go through the
    binding.  One pair per Unicorn instance."""
    cached = getattr(uc, "_pvboot_raw_access", None)
    if cached is not None:
        return cached
    handle = _handle_arg(uc)
    c_read, c_write = _bare_function(uclib.uc_reg_read), _bare_function(uclib.uc_reg_write)
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


def add_raw_hook(uc, htype, functype, callback, begin=1, end=0, *aux):
    """uc.hook_add without the binding's two Python frames per call (its exception
    wrapper and its argument adapter): `callback` takes the C arguments as they come,
    engine handle and user data included, and must not raise (see hook_failed).  One
    `int` costs one such call and the BIOS serves thousands (bench: INT round trips).
    Returns the hook handle; uc.hook_del works on it."""
    fptr = functype(callback)
    handle = uc_hook_h()
    status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), htype, fptr, None,
                               ctypes.c_uint64(begin), ctypes.c_uint64(end),
                               *(ctypes.c_int(a) for a in aux))
    if status:
        raise uc_mod.UcError(status)
    uc._callbacks[handle.value] = fptr      # keeps the C function pointer alive
    return handle.value


def translation_remover(uc):
    """f(begin, end): drop Unicorn's translated blocks for [begin, end), what
    uc.ctl_remove_cache does (the firmware calls it after every write to guest memory:
    ~600 times a SYSLINUX boot)."""
    return _ctl_write(uc, uc_mod.UC_CTL_TB_REMOVE_CACHE, 2)


def hook_failed(uc, exc):
    """What the binding does when a hook raises: stop, and let emu_start raise it."""
    if uc._hook_exception is None:
        uc._hook_exception = exc
    uc.emu_stop()


class _X86Mmr(ctypes.Structure):
    """unicorn's uc_x86_mmr: a descriptor-table register (IDTR, GDTR)."""
    _fields_ = [("selector", ctypes.c_uint16), ("base", ctypes.c_uint64),
                ("limit", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


# What one BIOS call can read and change (SeaBIOS's struct bregs), in this order; then
# what entering or leaving an interrupt needs.  `Cpu.read_state` returns all of them,
# indexed by the I_* constants, in one call into libunicorn.
CALL_REGS = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "ds", "es", "fs", "gs")
STATE_REGS = CALL_REGS + ("cs", "eip", "ss", "esp", "eflags", "cr0")
I_EAX, I_EBX, I_ECX, I_EDX, I_ESI, I_EDI, I_EBP, I_DS, I_ES, I_FS, I_GS, \
    I_CS, I_EIP, I_SS, I_ESP, I_EFLAGS, I_CR0 = range(len(STATE_REGS))
GPR_COUNT = 7                     # eax..ebp: the first entries of CALL_REGS


def _register_batch(uc, names, mmr=None):
    """(read, write) for a fixed list of registers, each one call into libunicorn
    (uc_reg_read_batch / uc_reg_write_batch) whatever the count: a round trip through
    the BIOS needs ~20 register accesses, which one by one cost ~0.5 us each.

    read() -> tuple of values (and fills `mmr`, a descriptor-table register, when
    given); write(values) sets them all.  Every slot is always filled with the same
    width, so bytes above a 16-bit selector stay zero."""
    count = len(names)
    ids = [REG[name] for name in names] + ([X.UC_X86_REG_IDTR] if mmr is not None else [])
    values = (ctypes.c_uint64 * count)()
    layout = struct.Struct(f"<{count}Q")
    pointers = [ctypes.addressof(values) + 8 * i for i in range(count)]
    if mmr is not None:
        pointers.append(ctypes.addressof(mmr))
    # The count as a plain int: ctypes passes a Python int as a C int without a lookup.
    args = (_handle_arg(uc), (ctypes.c_int * len(ids))(*ids),
            (ctypes.c_void_p * len(ids))(*pointers), len(ids))
    c_read = _bare_function(uclib.uc_reg_read_batch)
    c_write = _bare_function(uclib.uc_reg_write_batch)
    unpack, pack = layout.unpack_from, layout.pack
    # Writes go through a byte view: packing to bytes and copying them in costs less
    # than pack_into, which parses its offset argument each call.
    view = memoryview(values).cast("B")

    def read():
        status = c_read(*args)
        if status:
            raise uc_mod.UcError(status)
        return unpack(values)

    def write(new_values):
        view[:] = pack(*new_values)
        status = c_write(*args)
        if status:
            raise uc_mod.UcError(status)
    return read, write


class Cpu:
    """A Unicorn core plus the few things a PC processor does that Unicorn leaves to us."""

    def __init__(self, model=DEFAULT_CPU_MODEL):
        self.uc = uc_mod.Uc(uc_mod.UC_ARCH_X86, uc_mod.UC_MODE_16)
        # CPUID answers as the model does; rdtsc reads the virtual clock (machine.py),
        # so the TSC flag the model has is true.
        self.model = model
        self.uc.ctl_set_cpu_model(cpu_model_id(model))
        # No paging in a BIOS world: the virtual TLB makes guest stores ~10x cheaper.
        self.uc.ctl_set_tlb_mode(uc_mod.UC_TLB_VIRTUAL)
        self.tlb = CodeAwareTlb(self.uc)
        self._read, self._write = raw_register_access(self.uc)
        # The processor's reset state: the IVT at 0 with limit 0xFFFF (Unicorn starts at 0).
        self.uc.reg_write(X.UC_X86_REG_IDTR, (0, 0, 0xFFFF, 0))
        # The IDT register (base, limit) as of the last read_state(); read-only.
        self.idtr = _X86Mmr()
        self.read_state, _ = _register_batch(self.uc, STATE_REGS, self.idtr)
        _, self.write_gprs = _register_batch(self.uc, CALL_REGS[:GPR_COUNT])
        _, self.write_gprs_and_flags = _register_batch(self.uc, CALL_REGS[:GPR_COUNT] + ("eflags",))
        _, self._write_entry = _register_batch(self.uc, ("sp", "eflags", "cs", "eip"))

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

    def vector_address(self, vector):
        """Linear address of `vector`'s IVT entry, or None when the IDT register's limit
        excludes it (a real-mode `lidt` moves and sizes the IVT; limit 0 makes any
        interrupt shut the processor down).  The IDT register is the one read with the
        last read_state(): every way from the guest into Python takes one first."""
        idtr = self.idtr
        entry = vector * 4
        if entry + 3 > idtr.limit:
            return None
        return idtr.base + entry

    def push_interrupt_frame(self, mem, state):
        """Write the frame `int` pushes below the stack of `state` (IP, CS, FLAGS from
        the lowest address up, as `iret` pops them); returns the new SP.  SP itself is
        not written."""
        sp = (state[I_ESP] - 6) & 0xFFFF
        INTERRUPT_FRAME.pack_into(mem.buf, (state[I_SS] << 4) + sp,
                                  state[I_EIP] & 0xFFFF, state[I_CS], state[I_EFLAGS] & 0xFFFF)
        return sp

    def deliver_interrupt(self, mem, vector, state=None):
        """Enter real-mode interrupt `vector` as the processor does, through the IVT.
        Returns False, delivering nothing, when the vector lies past the IVT's limit.
        `state`: a read_state() taken since the guest last ran."""
        if state is None:
            state = self.read_state()
        entry = self.vector_address(vector)
        if entry is None:
            return False
        sp = self.push_interrupt_frame(mem, state)
        target = mem.read_u32(entry)
        self._write_entry((sp, state[I_EFLAGS] & ~(FLAG_IF | FLAG_TF), target >> 16, target & 0xFFFF))
        return True

    def return_from_interrupt(self, mem, state, ss, sp, values):
        """`iret` from the frame at ss:sp, setting the general registers to the first
        GPR_COUNT of `values` (eax..ebp, CALL_REGS order) on the way: what a ROM stub's
        iret does after its trap, for a call served straight from the interrupt
        (`state`: read_state() at the `int`).  The common return, to the caller's CS:IP
        with its stack, writes neither CS nor EIP, so Unicorn stays in its translated
        code: one call into libunicorn in all."""
        ip, cs, flags = INTERRUPT_FRAME.unpack_from(mem.buf, (ss << 4) + sp)
        eflags = (state[I_EFLAGS] & ~0xFFFF) | flags
        gprs = values[:GPR_COUNT]
        new_sp = (sp + 6) & 0xFFFF
        if cs == state[I_CS] and ip == state[I_EIP] & 0xFFFF and new_sp == state[I_ESP] & 0xFFFF:
            gprs.append(eflags)
            self.write_gprs_and_flags(gprs)
            return
        self.write_gprs(gprs)
        self._write_entry((new_sp, eflags, cs, ip))
