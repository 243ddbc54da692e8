"""A tiny test kernel that follows the Linux x86 boot protocol, and the header reader
that `pvboot boot --expect-kernel` uses.

The smoke test a loader developer wants is "did my loader load my kernel, byte for
byte, and jump to it?".  `build_kernel()` makes a kernel file for exactly that:

    [boot sector][setup sectors]          real-mode part, 1 + setup_sects sectors
    [protected-mode part]                 loaded at code32_start (0x100000)

Boot sector (offset 0): booted directly by a BIOS it says so on COM1 and writes 1 to
port 0xF4 (a failed test), as Linux's says "Use a boot loader".  The setup header sits
at 0x1F1 as in Documentation/arch/x86/boot.rst; every field is in HEADER_FIELDS below.

Real-mode setup (entered at setup_seg+0x20:0, the 16-bit boot protocol: `linux16` in
GRUB, QEMU's -kernel): prints SETUP_MARKER on COM1, loads its own GDT (selectors 0x10
code and 0x18 data, flat, as __BOOT_CS/__BOOT_DS), enters protected mode and jumps to
code32_start with %esi = the real-mode part (boot_params), %ebx = %ebp = %edi = 0.

Protected-mode part (the 32-bit boot protocol: GRUB's `linux` jumps here directly):
prints ENTRY_MARKER on COM1 (polling 0x3FD), then
    PVBOOT-KERNEL-CHECKSUM OK|BAD   the 32-bit sum of its own dwords is 0 (the last
                                    dword is chosen to make it so)
    PVBOOT-KERNEL-BOOT-PARAMS OK|BAD  %esi points at boot_params ("HdrS" at +0x202, a
                                    loader id at +0x210)
    PVBOOT-KERNEL-CMDLINE: ...      the command line the loader passed (cmd_line_ptr)
    PVBOOT-KERNEL-EXIT n
and writes n to port 0xF4 (0 when both checks pass; bit 0 checksum, bit 1 boot_params).
The rest of the part is a recognisable pattern (16-byte lines "PVK:<offset>/<variant>\\n")
so a byte-for-byte comparison means something; kernels of different `variant` are all
valid and differ only in that pattern.

Building needs GNU as and ld (Debian binutils); the output is deterministic.

    python -m pvboot.tools.kernel OUT [--setup-sects N] [--size BYTES] [--variant N]

KernelCheck (below) is `pvboot boot --stop-at kernel-entry --expect-kernel FILE`: it
watches the entry with a code hook bounded to that one address and compares guest
memory with FILE's protected-mode part when the loader hands over.
"""
import argparse
import dataclasses
import functools
import struct
import sys
from pathlib import Path

from pvboot.tools import gnuas

SECTOR_SIZE = 512
DEFAULT_SETUP_SECTS = 4          # what setup_sects = 0 means (boot.rst note 1)
MAX_SETUP_SECTS = 64             # GRUB refuses more ("too many setup sectors")
LOAD_ADDRESS = 0x100000          # code32_start: the protected-mode part's home
DEFAULT_PM_SIZE = 64 * 1024
PROTOCOL_VERSION = 0x020A        # 2.10: the newest fields used are pref_address, init_size
HEADER_END = 0x264               # 0x202 + the jump's offset byte: end of the 2.10 header
BSS_SIZE = 0x2000                # stack (and nothing else) above the image, inside init_size
LOADED_HIGH = 0x01
BOOT_FLAG = 0xAA55
HDRS = b"HdrS"
BOOT_PARAMS_SIZE = 0x1000

ENTRY_MARKER = "PVBOOT-KERNEL-ENTRY\n"
SETUP_MARKER = "PVBOOT-KERNEL-SETUP\n"
DIRECT_BOOT_MARKER = "PVBOOT-KERNEL: not a boot sector; load this kernel with a boot loader\r\n"
VERSION_STRING = "pvboot test kernel 1"

# The setup header as build_kernel writes it: name -> (offset, struct format, value or
# None when computed).  Why each one matters to a loader (GRUB 2.06's
# grub-core/loader/i386/linux.c is the reference):
HEADER_FIELDS = {
    "setup_sects":       (0x1F1, "<B", None),       # computed; GRUB: <= 64
    "root_flags":        (0x1F2, "<H", 0),
    "syssize":           (0x1F4, "<I", None),       # protected-mode size in 16-byte paragraphs
    "ram_size":          (0x1F8, "<H", 0),
    "vid_mode":          (0x1FA, "<H", 0xFFFF),     # NORMAL_VGA
    "root_dev":          (0x1FC, "<H", 0),
    "boot_flag":         (0x1FE, "<H", BOOT_FLAG),  # GRUB: "invalid magic number" without it
    "jump":              (0x200, "<H", 0xEB | ((HEADER_END - 0x202) << 8)),  # header length
    "header":            (0x202, "<4s", HDRS),
    "version":           (0x206, "<H", PROTOCOL_VERSION),  # GRUB's `linux`: >= 2.03
    "realmode_swtch":    (0x208, "<I", 0),
    "start_sys_seg":     (0x20C, "<H", 0x1000),
    "kernel_version":    (0x20E, "<H", None),       # the version string's offset - 0x200
    "type_of_loader":    (0x210, "<B", 0),          # the loader writes its id here
    "loadflags":         (0x211, "<B", LOADED_HIGH),  # GRUB's `linux`: a bzImage, no zImage
    "setup_move_size":   (0x212, "<H", 0x8000),
    "code32_start":      (0x214, "<I", LOAD_ADDRESS),
    "ramdisk_image":     (0x218, "<I", 0),
    "ramdisk_size":      (0x21C, "<I", 0),
    "bootsect_kludge":   (0x220, "<I", 0),
    "heap_end_ptr":      (0x224, "<H", 0),
    "ext_loader_ver":    (0x226, "<B", 0),
    "ext_loader_type":   (0x227, "<B", 0),
    "cmd_line_ptr":      (0x228, "<I", 0),
    "initrd_addr_max":   (0x22C, "<I", 0x37FFFFFF),
    "kernel_alignment":  (0x230, "<I", LOAD_ADDRESS),
    "relocatable_kernel": (0x234, "<B", 0),         # not relocatable: GRUB loads it at 1 MiB
    "min_alignment":     (0x235, "<B", 20),
    "xloadflags":        (0x236, "<H", 0),
    "cmdline_size":      (0x238, "<I", 255),        # GRUB: buffer for the command line
    "hardware_subarch":  (0x23C, "<I", 0),
    "hardware_subarch_data": (0x240, "<Q", 0),
    "payload_offset":    (0x248, "<I", 0),
    "payload_length":    (0x24C, "<I", 0),
    "setup_data":        (0x250, "<Q", 0),
    "pref_address":      (0x258, "<Q", LOAD_ADDRESS),
    "init_size":         (0x260, "<I", None),       # GRUB (>= 2.10) reserves this much
}

_SETUP_SOURCE = r"""
# Real-mode part, linked at 0: labels are offsets from the start of the kernel file.
# The boot sector and the setup run with different CS bases (0 with IP=0x7C00, and
# seg+0x20 with IP=0 at 0x200), so neither calls into the other: each prints inline.
.code16

# PUTS16: DS:SI -> COM1 up to the NUL (polls the line status register's THR-empty bit)
.macro PUTS16
1:      lodsb
        testb %al, %al
        jz 3f
        movb %al, %bl
        movw $0x3FD, %dx
2:      inb %dx, %al
        testb $0x20, %al
        jz 2b
        movw $0x3F8, %dx
        movb %bl, %al
        outb %al, %dx
        jmp 1b
3:
.endm

.text
.globl _start
_start:
# --- legacy boot sector: a BIOS that boots this file directly runs this at 0x7C00 -----
        cli
        cld
        movw $0x07C0, %ax
        movw %ax, %ds
        movw $direct_msg, %si
        PUTS16
        movb $1, %al
        outb %al, $0xF4
1:      cli
        hlt
        jmp 1b

direct_msg:
        .asciz "PVBOOT-KERNEL: not a boot sector; load this kernel with a boot loader\r\n"

        .org 0x1F1
        .fill HEADER_END - 0x1F1, 1, 0      # the setup header: tools/kernel.py writes it

# --- setup: the loader jumps to seg+0x20:0 (the jump at 0x200 lands here) ---------------
setup_entry:
        cli
        cld
        movw %cs, %ax
        subw $0x20, %ax
        movw %ax, %ds
        movw %ax, %es
        movw $setup_msg, %si
        PUTS16
        xorl %ebx, %ebx
        movw %ds, %bx
        shll $4, %ebx                       # linear address of the real-mode part
        leal gdt(%ebx), %eax
        movl %eax, gdtr + 2
        leal pm32(%ebx), %eax
        movl %eax, pm32_ptr
        lgdtl gdtr
        movl %cr0, %eax
        orb $1, %al
        movl %eax, %cr0
        ljmpl *pm32_ptr

.code32
pm32:
        movl $0x18, %eax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        movl %ebx, %esi                     # boot_params = the real-mode part
        movl 0x214(%esi), %eax              # code32_start (a loader may have changed it)
        xorl %ebx, %ebx
        xorl %ebp, %ebp
        xorl %edi, %edi
        jmp *%eax

        .balign 8
gdt:    .quad 0, 0
        .quad 0x00CF9A000000FFFF            # 0x10: __BOOT_CS, flat 4 GiB code
        .quad 0x00CF92000000FFFF            # 0x18: __BOOT_DS, flat 4 GiB data
gdtr:   .word 4 * 8 - 1
        .long 0
pm32_ptr:
        .long 0
        .word 0x10

setup_msg:
        .asciz "PVBOOT-KERNEL-SETUP\n"
kernel_version_string:
        .asciz "pvboot test kernel 1"
"""

_PM_SOURCE = r"""
# Protected-mode part, linked at LOAD_ADDRESS (it is not relocatable).
.code32
.text
.globl _start
_start:
        cli
        cld
        movl %esi, %ebp                     # boot_params, kept in %ebp
        movl $STACK_TOP, %esp
        xorl %edi, %edi                     # exit value
        movl $entry_msg, %esi
        call puts

        # The image sums to zero in 32-bit dwords (the builder sets the last one).
        movl $_start, %esi
        movl $(PM_SIZE / 4), %ecx
        xorl %eax, %eax
1:      addl (%esi), %eax
        addl $4, %esi
        loop 1b
        movl $sum_ok, %esi
        testl %eax, %eax
        jz 2f
        orl $1, %edi
        movl $sum_bad, %esi
2:      call puts

        # %esi at entry pointed at boot_params: the setup header copy with a loader id.
        movl $params_bad, %esi
        cmpl $0x53726448, 0x202(%ebp)       # "HdrS"
        jne 3f
        cmpb $0, 0x210(%ebp)                # type_of_loader
        je 3f
        movl $params_ok, %esi
        jmp 4f
3:      orl $2, %edi
4:      call puts

        # The command line the loader passed (at most cmdline_size bytes).
        movl $cmdline_msg, %esi
        call puts
        cmpl $0x53726448, 0x202(%ebp)
        jne 6f
        movl 0x228(%ebp), %esi              # cmd_line_ptr
        testl %esi, %esi
        jz 6f
        movl $255, %ecx
5:      lodsb
        testb %al, %al
        jz 6f
        call putc
        loop 5b
6:      movb $10, %al
        call putc

        movl $exit_msg, %esi
        call puts
        movl %edi, %eax
        addb $0x30, %al
        call putc
        movb $10, %al
        call putc
        movl %edi, %eax
        outb %al, $0xF4
7:      cli
        hlt
        jmp 7b

# puts: %esi -> COM1 up to the NUL
puts:
        lodsb
        testb %al, %al
        jz 1f
        call putc
        jmp puts
1:      ret

# putc: %al -> COM1, polling THR-empty in the line status register
putc:
        pushl %edx
        pushl %eax
        movw $0x3FD, %dx
1:      inb %dx, %al
        testb $0x20, %al
        jz 1b
        popl %eax
        movw $0x3F8, %dx
        outb %al, %dx
        popl %edx
        ret

entry_msg:   .asciz "PVBOOT-KERNEL-ENTRY\n"
sum_ok:      .asciz "PVBOOT-KERNEL-CHECKSUM OK\n"
sum_bad:     .asciz "PVBOOT-KERNEL-CHECKSUM BAD\n"
params_ok:   .asciz "PVBOOT-KERNEL-BOOT-PARAMS OK\n"
params_bad:  .asciz "PVBOOT-KERNEL-BOOT-PARAMS BAD\n"
cmdline_msg: .asciz "PVBOOT-KERNEL-CMDLINE: "
exit_msg:    .asciz "PVBOOT-KERNEL-EXIT "
        .balign 16
"""


class KernelError(ValueError):
    """Not a kernel that follows the Linux x86 boot protocol (or one pvboot cannot use)."""


BuildError = gnuas.AssemblerError      # GNU as or ld failed, or is missing


@dataclasses.dataclass(frozen=True)
class KernelHeader:
    """What a loader reads from a kernel file's setup header."""
    setup_sects: int          # as stored (0 means 4)
    version: int              # 0 when there is no "HdrS" (an old zImage)
    loadflags: int
    code32_start: int
    syssize: int
    init_size: int
    file_size: int

    @property
    def real_mode_sectors(self):
        """Boot sector plus setup: where the protected-mode part starts, in sectors."""
        return (self.setup_sects or DEFAULT_SETUP_SECTS) + 1

    @property
    def pm_offset(self):
        """Offset of the protected-mode part in the file."""
        return self.real_mode_sectors * SECTOR_SIZE

    @property
    def pm_size(self):
        return max(0, self.file_size - self.pm_offset)

    @property
    def loaded_high(self):
        return bool(self.loadflags & LOADED_HIGH)


def read_header(data):
    """Parse the setup header of kernel file contents `data`; KernelError if it is not a
    bzImage-style Linux boot protocol kernel (boot_flag, "HdrS", LOADED_HIGH)."""
    if len(data) < 0x206:
        raise KernelError(f"{len(data)} bytes is too short for a Linux setup header")
    boot_flag, = struct.unpack_from("<H", data, 0x1FE)
    if boot_flag != BOOT_FLAG:
        raise KernelError(f"no Linux boot protocol kernel: boot_flag at 0x1FE is "
                          f"{boot_flag:#06x}, not 0xaa55")
    if data[0x202:0x206] != HDRS:
        raise KernelError("no \"HdrS\" signature at 0x202: an old zImage, which loads "
                          "low, not at 1 MiB")
    version, = struct.unpack_from("<H", data, 0x206)
    setup_sects = data[0x1F1]
    loadflags = data[0x211]
    code32_start, = struct.unpack_from("<I", data, 0x214)
    syssize, = struct.unpack_from("<I", data, 0x1F4)
    init_size = struct.unpack_from("<I", data, 0x260)[0] if version >= 0x020A and \
        len(data) >= 0x264 else 0
    header = KernelHeader(setup_sects, version, loadflags, code32_start, syssize, init_size,
                          len(data))
    if not header.loaded_high:
        raise KernelError("loadflags has no LOADED_HIGH bit: a zImage loads at 0x10000, "
                          "not at code32_start")
    if header.pm_size == 0:
        raise KernelError(f"no protected-mode part: the file ends at {len(data)} bytes, "
                          f"before offset {header.pm_offset:#x} "
                          f"(setup_sects {header.setup_sects})")
    return header


def protected_mode_part(data):
    """(header, the bytes a loader puts at code32_start)."""
    header = read_header(data)
    return header, bytes(data[header.pm_offset:])


class KernelCheck:
    """`--stop-at kernel-entry` and `--expect-kernel FILE` for one run.

    Watches the kernel's 32-bit entry (code32_start from FILE's header, else
    LOAD_ADDRESS) with Machine.watch_code, a hook on that one address.  The entry is
    the hand-over of the 32-bit boot protocol: that address about to run in protected
    mode with %esi pointing at boot_params ("HdrS" at +0x202).  Code that runs there
    earlier is counted in other_runs, not taken for the kernel: GRUB's own core is
    decompressed to 0x100000 and starts there.  At the entry the protected-mode part of
    FILE (offset (setup_sects or 4) + 1 sectors to the end) is compared with guest
    memory at the entry (a non-relocatable kernel is loaded at code32_start), and with
    `stop` the run ends there with reason "kernel-entry"; otherwise it goes on.  `result()` is the JSON
    "kernel" object; its "ok" is False when the bytes differ, or when an entry that was
    watched for (a FILE given, or the stop asked for) was never reached."""

    def __init__(self, path=None, stop=False):
        self.path = None if path is None else str(path)
        self.stop = stop
        self.header = self.expected = None
        if path is not None:
            with open(path, "rb") as f:
                self.header, self.expected = protected_mode_part(f.read())
        self.entry = self.header.code32_start if self.header else LOAD_ADDRESS
        self.reached = False
        self.other_runs = 0           # times other code ran at the entry address
        self.entry_state = {}
        self.comparison = None
        self.on_reached = []          # f() after the check, e.g. the runner's deferred stops
        self._machine = self._handle = None

    def attach(self, machine):
        self._machine = machine
        self._handle = machine.watch_code(self.entry, self._at_entry)

    def _at_entry(self):
        if self.reached:
            return
        machine = self._machine
        cpu = machine.cpu
        protected, esi = not cpu.in_real_mode(), cpu.get("esi")
        buf = machine.mem.buf
        if not (protected and esi + 0x206 <= len(buf) and buf[esi + 0x202:esi + 0x206] == HDRS):
            # Not the hand-over (the 32-bit boot protocol passes boot_params in %esi):
            # other code ran at this address first, e.g. GRUB's own decompressed core,
            # which starts at 0x100000 before it moves itself to 0x9000.
            self.other_runs += 1
            return
        self.reached = True
        self.entry_state = {"protected_mode": protected, "esi": esi}
        if self.expected is not None:
            self.comparison = compare_memory(machine.mem.buf, self.entry, self.expected)
        if self.stop:
            mode = "protected mode" if self.entry_state["protected_mode"] else "real mode"
            machine.stop("kernel-entry", f"kernel entry {self.entry:#x} reached ({mode}, "
                                         f"esi={self.entry_state['esi']:#x})")
        machine.unwatch(self._handle)
        for callback in self.on_reached:
            callback()

    @property
    def ok(self):
        if self.expected is not None:
            return bool(self.comparison and self.comparison["verified"])
        return self.reached or not self.stop

    def summary(self):
        name = self.path or "kernel"
        if not self.reached:
            what = f"; nothing to compare with {name}" if self.expected is not None else ""
            if self.other_runs:
                what += (f" (code ran there {self.other_runs} time(s), but never in protected "
                         f"mode with boot_params (\"HdrS\" at +0x202) in %esi)")
            return f"the kernel entry {self.entry:#x} was never reached{what}"
        if self.expected is None:
            return f"kernel entry {self.entry:#x} reached"
        c = self.comparison
        size = len(self.expected)
        if c["verified"]:
            return (f"{name}: all {size} bytes of its protected-mode part (file offset "
                    f"{self.header.pm_offset:#x}) are at {self.entry:#x}, byte for byte")
        at = c["first_mismatch"]
        got = "past the end of RAM" if c["guest_byte"] is None else f"{c['guest_byte']:#04x}"
        return (f"{name}: {c['mismatched_bytes']} of {size} bytes at {self.entry:#x} differ "
                f"from the file's protected-mode part (file offset {self.header.pm_offset:#x}); "
                f"first difference at offset {at:#x} (guest address {self.entry + at:#x}): "
                f"guest {got}, file {c['file_byte']:#04x}")

    def result(self):
        c = self.comparison or {}
        return {
            "entry": self.entry,
            "reached": self.reached,
            "stop_at": self.stop,
            "file": self.path,
            "file_offset": self.header.pm_offset if self.header else None,
            "size": len(self.expected) if self.expected is not None else None,
            "verified": c.get("verified") if self.expected is not None else None,
            "first_mismatch": c.get("first_mismatch"),
            "mismatched_bytes": c.get("mismatched_bytes"),
            "protected_mode": self.entry_state.get("protected_mode"),
            "esi": self.entry_state.get("esi"),
            "other_runs": self.other_runs,
            "ok": self.ok,
            "summary": self.summary(),
        }


def compare_memory(buf, base, expected, chunk=4096):
    """Compare guest memory `buf` at `base` with `expected`: verified, the first
    differing offset with both bytes, and how many bytes differ (bytes past the end of
    RAM count as differing)."""
    size = len(expected)
    avail = max(0, min(size, len(buf) - base))
    got = bytes(buf[base:base + avail])
    first = None
    count = size - avail
    if got != expected[:avail]:
        for off in range(0, avail, chunk):
            a, b = got[off:off + chunk], expected[off:off + chunk]
            if a != b:
                diffs = [i for i in range(len(a)) if a[i] != b[i]]
                if first is None:
                    first = off + diffs[0]
                count += len(diffs)
    if first is None and avail < size:
        first = avail
    return {
        "verified": count == 0,
        "first_mismatch": first,
        "mismatched_bytes": count,
        "guest_byte": got[first] if first is not None and first < avail else None,
        "file_byte": expected[first] if first is not None else None,
    }


def pattern(offset, variant=0):
    """The 16-byte filler line at `offset` of the protected-mode part."""
    return b"PVK:%08x/%02x\n" % (offset, variant & 0xFF)


tools_available = gnuas.available


def _assemble(source, base, defsyms):
    if not tools_available():
        raise BuildError("GNU as and ld are needed to build the test kernel "
                         "(Debian package binutils)")
    return gnuas.assemble(source, base=base, defsyms=defsyms)


def _align(value, alignment):
    return (value + alignment - 1) // alignment * alignment


@functools.lru_cache(maxsize=None)
def build_kernel(setup_sects=DEFAULT_SETUP_SECTS, pm_size=DEFAULT_PM_SIZE, variant=0):
    """The kernel file (bytes): 1 + setup_sects real-mode sectors, then a protected-mode
    part of pm_size bytes (a multiple of 16, at least 1 KiB) meant for LOAD_ADDRESS."""
    if not 1 <= setup_sects <= MAX_SETUP_SECTS:
        raise ValueError(f"setup_sects must be 1..{MAX_SETUP_SECTS} (the header reaches "
                         f"into the second sector)")
    if pm_size % 16 or pm_size < 1024:
        raise ValueError("pm_size must be a multiple of 16 and at least 1024")
    init_size = _align(pm_size + BSS_SIZE, 4096)
    # Real-mode part.
    setup = bytearray(_assemble(_SETUP_SOURCE, 0, {"HEADER_END": HEADER_END}))
    real_size = (1 + setup_sects) * SECTOR_SIZE
    if len(setup) > real_size:
        raise ValueError(f"the setup code needs {len(setup)} bytes: more than "
                         f"{setup_sects} setup sectors")
    version_at = setup.index(VERSION_STRING.encode() + b"\0")
    setup = setup.ljust(real_size, b"\0")
    computed = {"setup_sects": setup_sects, "syssize": pm_size // 16,
                "kernel_version": version_at - 0x200, "init_size": init_size}
    for name, (offset, fmt, value) in HEADER_FIELDS.items():
        struct.pack_into(fmt, setup, offset, computed[name] if value is None else value)
    # Protected-mode part: code, the pattern, and the dword that zeroes the sum.
    code = _assemble(_PM_SOURCE, LOAD_ADDRESS, {"PM_SIZE": pm_size,
                                                "STACK_TOP": LOAD_ADDRESS + init_size})
    pm = bytearray(code)
    while len(pm) < pm_size:
        pm += pattern(len(pm), variant)
    del pm[pm_size:]
    total = sum(struct.unpack_from(f"<{pm_size // 4 - 1}I", pm, 0)) & 0xFFFFFFFF
    struct.pack_into("<I", pm, pm_size - 4, (-total) & 0xFFFFFFFF)
    return bytes(setup) + bytes(pm)


def write_kernel(path, **kwargs):
    """Write build_kernel(**kwargs) to `path`; returns the path."""
    path = Path(path)
    path.write_bytes(build_kernel(**kwargs))
    return path


def expected_console(cmdline="", exit_value=0, setup=False):
    """What the kernel prints on COM1 when a loader boots it correctly."""
    lines = [SETUP_MARKER] if setup else []
    lines += [ENTRY_MARKER, "PVBOOT-KERNEL-CHECKSUM OK\n", "PVBOOT-KERNEL-BOOT-PARAMS OK\n",
              f"PVBOOT-KERNEL-CMDLINE: {cmdline}\n", f"PVBOOT-KERNEL-EXIT {exit_value}\n"]
    return "".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pvboot.tools.kernel",
                                     description="Write pvboot's Linux boot protocol test "
                                     "kernel (needs GNU as/ld).")
    parser.add_argument("out", help="output file")
    parser.add_argument("--setup-sects", type=int, default=DEFAULT_SETUP_SECTS)
    parser.add_argument("--size", type=lambda s: int(s, 0), default=DEFAULT_PM_SIZE,
                        help="size of the protected-mode part in bytes (default 64 KiB)")
    parser.add_argument("--variant", type=lambda s: int(s, 0), default=0,
                        help="0-255: changes only the filler pattern")
    args = parser.parse_args(argv)
    try:
        data = build_kernel(args.setup_sects, args.size, args.variant)
    except (ValueError, BuildError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    Path(args.out).write_bytes(data)
    header = read_header(data)
    print(f"wrote {args.out}: {len(data)} bytes, setup_sects {header.setup_sects}, "
          f"protected-mode part {header.pm_size} bytes at offset {header.pm_offset:#x} "
          f"for {header.code32_start:#x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
