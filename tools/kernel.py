"""A tiny test kernel that follows the Linux x86 boot protocol (build_kernel: the
sources are roms/kernel_setup.S and roms/kernel_pm.S, GNU as), its header reader, and
KernelCheck, the watch behind `pvboot boot --stop-at kernel-entry --expect-kernel`.
docs/tools.md describes the kernel's parts and what it prints.
"""
import dataclasses
import functools
import importlib.resources
import struct
import sys
from pathlib import Path

from pvboot.tools import gnuas, options

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

# The kernel's two parts, assembled from roms/ (data: pvboot ships the sources).
SETUP_SOURCE = "kernel_setup.S"
PM_SOURCE = "kernel_pm.S"


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
    with importlib.resources.as_file(importlib.resources.files("pvboot.roms") / source) as path:
        return gnuas.assemble(path, base=base, defsyms=defsyms)


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
    setup = bytearray(_assemble(SETUP_SOURCE, 0, {"HEADER_END": HEADER_END}))
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
    code = _assemble(PM_SOURCE, LOAD_ADDRESS, {"PM_SIZE": pm_size,
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
    parser = options.OneLineParser(prog="python -m pvboot.tools.kernel",
                                     description="Write pvboot's Linux boot protocol test "
                                     "kernel (needs GNU as/ld).")
    parser.add_argument("out", help="output file")
    parser.add_argument("--setup-sects", type=options.KERNEL_SETUP_SECTS,
                        default=DEFAULT_SETUP_SECTS, help="1 to 64 (default 4)")
    parser.add_argument("--size", type=options.KERNEL_PM_SIZE, default=DEFAULT_PM_SIZE,
                        help="size of the protected-mode part in bytes, a multiple of 16 "
                             "(default 64 KiB, 1 KiB to 16 MiB)")
    parser.add_argument("--variant", type=options.KERNEL_VARIANT, default=0,
                        help="0-255: changes only the filler pattern")
    args = parser.parse_args(argv)
    try:
        data = build_kernel(args.setup_sects, args.size, args.variant)
    except (ValueError, BuildError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        Path(args.out).write_bytes(data)
    except OSError as exc:
        print(f"{parser.prog}: error: {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    header = read_header(data)
    print(f"wrote {args.out}: {len(data)} bytes, setup_sects {header.setup_sects}, "
          f"protected-mode part {header.pm_size} bytes at offset {header.pm_offset:#x} "
          f"for {header.code32_start:#x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
