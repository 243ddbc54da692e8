"""Builds bootable hard disk images with real boot loaders (GRUB 2, SYSLINUX) from
Debian's packaged binaries, without root or loop devices.

File systems are written straight into the file at the partition's offset and the
boot code is put in place by hand, because grub-bios-setup refuses plain files. The
layout and default configurations: docs/images.md.

    python -m pvboot.tools.mkimage grub-fat out.img          # or: pvboot mkimage grub-fat out.img
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pvboot.tools import options

SECTOR = 512
PART_START_LBA = 2048               # 1 MiB: the usual alignment, and room for core.img
PART_OFFSET = PART_START_LBA * SECTOR

HELLO_TEXT = "Hello from a file on the pvboot test disk.\n"
HELLO_NAME = "hello.txt"

GRUB_DIR = Path("/usr/lib/grub/i386-pc")
SYSLINUX_MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
SYSLINUX_MODULES = Path("/usr/lib/syslinux/modules/bios")

# Markers the default configurations print, by where they must show up.  GRUB echoes
# to every terminal.  SYSLINUX's SAY reaches only the screen (ldlinux parses the whole
# configuration before it hands the serial port to its console code), so its
# serial markers are files printed by cat.c32, which go to both.
SERIAL_MARKERS = {
    "grub": ("PVBOOT-GRUB-START", "PVBOOT-GRUB-END"),
    "syslinux": ("PVBOOT-SYSLINUX-START", "PVBOOT-SYSLINUX-END"),
}
SCREEN_MARKERS = {
    "grub": SERIAL_MARKERS["grub"],
    # In screen order: SAY1 while syslinux.cfg is parsed, SAY2 while finish.cfg is.
    "syslinux": ("PVBOOT-SYSLINUX-SAY1", "PVBOOT-SYSLINUX-START", "PVBOOT-SYSLINUX-SAY2",
                 "PVBOOT-SYSLINUX-END"),
}

# The Debian package that provides each program or data file this module uses.
PACKAGES = {
    "sfdisk": "fdisk",
    "mkfs.fat": "dosfstools",
    "mmd": "mtools",
    "mcopy": "mtools",
    "mattrib": "mtools",
    "mke2fs": "e2fsprogs",
    "grub-mkimage": "grub-common",
    "syslinux": "syslinux",
    "install-mbr": "mbr",
    str(GRUB_DIR): "grub-pc-bin",
    str(SYSLINUX_MBR): "syslinux-common",
    str(SYSLINUX_MODULES): "syslinux-common",
}

# GRUB modules linked into core.img: with everything built in, GRUB never needs to
# load a module from the file system, so the image works whatever the prefix holds.
GRUB_MODULES = ("biosdisk", "part_msdos", "fat", "ext2", "normal", "configfile", "echo",
                "cat", "ls", "serial", "terminal", "halt", "test", "sleep")

# SYSLINUX COM32 modules copied next to ldlinux.sys.  cat.c32 and poweroff.c32 resolve
# their library calls against libcom32 and libutil at load time.
SYSLINUX_C32 = ("cat.c32", "poweroff.c32", "libcom32.c32", "libutil.c32")

# The SYSLINUX default configuration runs several commands, but ldlinux runs one per
# pass: when a COM32 module returns, ldlinux is back at its prompt, whose TIMEOUT fires
# ONTIMEOUT.  So syslinux.cfg cats the start marker and hello.txt, then (ONTIMEOUT)
# loads this second configuration, which cats the end marker and then (ONTIMEOUT
# again) runs poweroff.c32.  8.3 names: no long-name lookups needed.
SYSLINUX_FINISH_CFG = "finish.cfg"
SYSLINUX_START_FILE = "pvbstart.txt"
SYSLINUX_END_FILE = "pvbend.txt"


class MissingTool(Exception):
    """A program or data file from a Debian package is not installed."""

    def __init__(self, tool, package):
        self.tool = tool
        self.package = package
        super().__init__(f"{tool} not found: install the Debian package {package} "
                         f"(apt-get install {package})")


def _require(*tools):
    """Check every program (on PATH) and data path before anything is run."""
    for tool in tools:
        found = os.path.exists(tool) if tool.startswith("/") else shutil.which(tool)
        if not found:
            raise MissingTool(tool, PACKAGES[tool])


def _run(cmd, *, env=None, stdin=None):
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([str(c) for c in cmd], input=stdin, capture_output=True, text=True,
                          env=full_env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(str(c) for c in cmd)} failed ({proc.returncode}):\n"
                           f"{proc.stdout}{proc.stderr}")
    return proc.stdout


# -- configurations -------------------------------------------------------------------
def default_config(kind):
    """The configuration text an image of `kind` ("grub" or "syslinux") boots with when
    none is given."""
    if kind == "grub":
        start, end = SERIAL_MARKERS["grub"]
        return (
            "serial --unit=0 --speed=115200\n"
            "terminal_output serial console\n"
            "terminal_input serial console\n"
            f"echo {start}\n"
            f"cat /{HELLO_NAME}\n"
            f"echo {end}\n"
            "halt\n"
        )
    if kind == "syslinux":
        # SAY shows on the screen while the file is parsed; TIMEOUT (tenths of a
        # second) only ends the prompt ldlinux shows once cat.c32 has returned.
        return (
            "SERIAL 0 115200\n"
            f"SAY {SCREEN_MARKERS['syslinux'][0]}\n"
            "PROMPT 0\n"
            "TIMEOUT 1\n"
            "DEFAULT hello\n"
            "ONTIMEOUT finish\n"
            "LABEL hello\n"
            "  COM32 cat.c32\n"
            f"  APPEND {SYSLINUX_START_FILE} {HELLO_NAME}\n"
            "LABEL finish\n"
            f"  CONFIG {SYSLINUX_FINISH_CFG}\n"
        )
    raise ValueError(f"unknown configuration kind {kind!r} (use grub or syslinux)")


def _syslinux_finish_config():
    return (
        "SERIAL 0 115200\n"
        f"SAY {SCREEN_MARKERS['syslinux'][2]}\n"
        "PROMPT 0\n"
        "TIMEOUT 1\n"
        "DEFAULT end\n"
        "ONTIMEOUT off\n"
        "LABEL end\n"
        "  COM32 cat.c32\n"
        f"  APPEND {SYSLINUX_END_FILE}\n"
        "LABEL off\n"
        "  COM32 poweroff.c32\n"
    )


def _default_files(kind):
    files = {HELLO_NAME: HELLO_TEXT.encode()}
    if kind == "syslinux":
        start, end = SERIAL_MARKERS["syslinux"]
        files[SYSLINUX_START_FILE] = f"{start}\n".encode()
        files[SYSLINUX_END_FILE] = f"{end}\n".encode()
        files[SYSLINUX_FINISH_CFG] = _syslinux_finish_config().encode()
    return files


def _as_bytes(value):
    return value.encode() if isinstance(value, str) else bytes(value)


def _merge_files(kind, files):
    # The default files are always there (a caller's config may still print hello.txt);
    # the caller's files win on a name clash.
    merged = _default_files(kind)
    for name, data in (files or {}).items():
        name = str(name).lstrip("/")
        if not name or ".." in Path(name).parts:
            raise ValueError(f"bad file name {name!r}")
        merged[name] = _as_bytes(data)
    return merged


# -- disk layout ----------------------------------------------------------------------
def _blank_disk(path, size_mib, part_type):
    """A sparse file of size_mib with one active partition from 1 MiB to the end."""
    if size_mib < 8:
        raise ValueError("size_mib must be at least 8 (FAT16 needs ~4100 clusters)")
    path = Path(path)
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
    # Fixed identifiers here and in the file systems: two builds differ only in file
    # timestamps.
    script = (f"label: dos\nlabel-id: 0x70766274\nunit: sectors\n"
              f"start={PART_START_LBA}, type={part_type}, bootable\n")
    _run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", path], stdin=script)
    return ((size_mib << 20) - PART_OFFSET) // 1024       # partition size in KiB


def _mtools_env():
    # mtools refuses images whose FAT geometry does not match its idea of the drive.
    return {"MTOOLS_SKIP_CHECK": "1"}


def _make_fat16(path, part_kib, files):
    _run(["mkfs.fat", "-F", "16", "-n", "PVBOOT", "--invariant",
          "-h", str(PART_START_LBA), f"--offset={PART_START_LBA}", path, str(part_kib)])
    target = f"{path}@@{PART_OFFSET}"
    made = set()
    with tempfile.TemporaryDirectory(prefix="pvboot-mkimage-") as tmp:
        for name in sorted(files):
            parts = Path(name).parts
            for i in range(1, len(parts)):
                folder = "/".join(parts[:i])
                if folder not in made:
                    _run(["mmd", "-i", target, f"::/{folder}"], env=_mtools_env())
                    made.add(folder)
            src = Path(tmp) / "data"
            src.write_bytes(files[name])
            _run(["mcopy", "-o", "-i", target, src, f"::/{name}"], env=_mtools_env())


EXT2_UUID = "70766274-0000-4000-8000-000000000001"
EXT2_HASH_SEED = "70766274-0000-4000-8000-000000000002"


def _make_ext2(path, part_kib, files):
    with tempfile.TemporaryDirectory(prefix="pvboot-mkimage-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        for name, data in files.items():
            dest = root / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        # nodiscard: on a plain file "discard" punches holes, and an offset file system
        # must not touch what lies before it.
        extended = f"offset={PART_OFFSET},nodiscard,hash_seed={EXT2_HASH_SEED}"
        _run(["mke2fs", "-q", "-F", "-t", "ext2", "-L", "PVBOOT", "-b", "1024",
              "-U", EXT2_UUID, "-E", extended, "-d", root, path, f"{part_kib}k"],
             env={"E2FSPROGS_FAKE_TIME": "1700000000"})


def _write_at(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _read_at(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


# -- GRUB -----------------------------------------------------------------------------
# boot.img fields (grub-core/boot/i386/pc/boot.S, include/grub/offsets.h).
BOOT_KERNEL_SECTOR = 0x5C           # u64: LBA of core.img's first sector
BOOT_DRIVE = 0x64                   # u8: 0xFF = use the drive in DL
BOOT_DRIVE_CHECK = 0x66             # a `jmp` grub-bios-setup turns into NOPs for hard disks
MBR_CODE_END = 0x1B8                # boot code stops where the disk signature starts
# diskboot.img's blocklist: the last 12 bytes of core.img's first sector.
BLOCKLIST_START = 0x1F4             # u64 LBA of the rest of core.img
BLOCKLIST_LEN = 0x1FC               # u16 sectors


def _install_grub(path, core):
    """What grub-bios-setup would do for an MBR install with core.img at LBA 1."""
    sectors = -(-len(core) // SECTOR)
    if 1 + sectors > PART_START_LBA:
        raise RuntimeError(f"core.img is {len(core)} bytes: does not fit before the partition")
    # grub-mkimage fills the blocklist for a core.img at LBA 1 (the rest from LBA 2);
    # check rather than assume, because the MBR only knows where sector one is.
    start = int.from_bytes(core[BLOCKLIST_START:BLOCKLIST_START + 8], "little")
    count = int.from_bytes(core[BLOCKLIST_LEN:BLOCKLIST_LEN + 2], "little")
    if start != 2 or count != sectors - 1:
        raise RuntimeError(f"core.img blocklist says {count} sectors at LBA {start}, "
                           f"expected {sectors - 1} at LBA 2")
    boot = bytearray((GRUB_DIR / "boot.img").read_bytes())
    boot[BOOT_KERNEL_SECTOR:BOOT_KERNEL_SECTOR + 8] = (1).to_bytes(8, "little")
    boot[BOOT_DRIVE] = 0xFF
    boot[BOOT_DRIVE_CHECK:BOOT_DRIVE_CHECK + 2] = b"\x90\x90"
    mbr = bytearray(_read_at(path, 0, SECTOR))
    mbr[:MBR_CODE_END] = boot[:MBR_CODE_END]         # keep signature and partition table
    mbr[510:512] = b"\x55\xAA"
    _write_at(path, 0, bytes(mbr))
    _write_at(path, SECTOR, core)


def build_grub_image(out_path, *, fs="fat16", config=None, files=None, size_mib=32):
    """A disk whose MBR and core.img are GRUB 2 (i386-pc) and whose partition holds
    /boot/grub/grub.cfg (`config`, default: default_config("grub")) and `files`.
    fs: "fat16" or "ext2".  Returns the image's Path."""
    if fs not in ("fat16", "ext2"):
        raise ValueError(f"unknown file system {fs!r} (use fat16 or ext2)")
    fs_tools = ("mkfs.fat", "mmd", "mcopy") if fs == "fat16" else ("mke2fs",)
    _require("sfdisk", "grub-mkimage", str(GRUB_DIR), *fs_tools)
    out_path = Path(out_path)
    all_files = _merge_files("grub", files)
    all_files["boot/grub/grub.cfg"] = _as_bytes(default_config("grub") if config is None
                                                else config)
    part_kib = _blank_disk(out_path, size_mib, "06" if fs == "fat16" else "83")
    with tempfile.TemporaryDirectory(prefix="pvboot-mkimage-") as tmp:
        early = Path(tmp) / "early.cfg"
        # The prefix would name the partition already; root must be set for `cat /x`.
        early.write_text("set root=(hd0,msdos1)\nset prefix=($root)/boot/grub\n")
        core_path = Path(tmp) / "core.img"
        _run(["grub-mkimage", "-O", "i386-pc", "-d", GRUB_DIR, "-o", core_path, "-c", early,
              "-p", "(hd0,msdos1)/boot/grub", *GRUB_MODULES])
        core = core_path.read_bytes()
    if fs == "fat16":
        _make_fat16(out_path, part_kib, all_files)
    else:
        _make_ext2(out_path, part_kib, all_files)
    _install_grub(out_path, core)
    return out_path


# -- SYSLINUX -------------------------------------------------------------------------
MBR_CHOICES = ("syslinux", "install-mbr")


def build_syslinux_image(out_path, *, mbr="syslinux", config=None, files=None, size_mib=32):
    """A disk whose FAT16 partition holds SYSLINUX (ldlinux.sys in its boot sector),
    syslinux.cfg (`config`, default: default_config("syslinux")), the COM32 modules
    the default configuration uses, and `files`.  mbr: "syslinux" (mbr.bin from
    syslinux-common) or "install-mbr" (package mbr's MBR, set to boot the active
    partition without waiting).  Returns the image's Path."""
    if mbr not in MBR_CHOICES:
        raise ValueError(f"unknown MBR {mbr!r} (use {' or '.join(MBR_CHOICES)})")
    _require("sfdisk", "mkfs.fat", "mmd", "mcopy", "mattrib", "syslinux", str(SYSLINUX_MODULES),
             *(("install-mbr",) if mbr == "install-mbr" else (str(SYSLINUX_MBR),)))
    out_path = Path(out_path)
    all_files = _merge_files("syslinux", files)
    for module in SYSLINUX_C32:
        all_files.setdefault(module, (SYSLINUX_MODULES / module).read_bytes())
    all_files["syslinux.cfg"] = _as_bytes(default_config("syslinux") if config is None
                                          else config)
    part_kib = _blank_disk(out_path, size_mib, "06")
    _make_fat16(out_path, part_kib, all_files)
    _run(["syslinux", "--install", "--offset", str(PART_OFFSET), out_path], env=_mtools_env())
    if mbr == "syslinux":
        code = SYSLINUX_MBR.read_bytes()[:MBR_CODE_END]
        _write_at(out_path, 0, code)
    else:
        # Its default ("D") boots the active partition; --timeout 0 skips the 1 s wait
        # for a key and --interrupt n keeps a held shift key from opening its menu.
        # It keeps the partition table and the disk signature.
        _run(["install-mbr", "--timeout", "0", "--interrupt", "n", out_path])
    return out_path


# -- kinds and command line -----------------------------------------------------------
IMAGE_KINDS = {
    "grub-fat": (build_grub_image, {"fs": "fat16"}),
    "grub-ext2": (build_grub_image, {"fs": "ext2"}),
    "syslinux": (build_syslinux_image, {"mbr": "syslinux"}),
    "syslinux-mbr": (build_syslinux_image, {"mbr": "install-mbr"}),
}


def build_image(kind, out_path, **kw):
    """Build an image of `kind` (a key of IMAGE_KINDS); keyword arguments go to the
    builder (config, files, size_mib)."""
    try:
        builder, fixed = IMAGE_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown image kind {kind!r} (use {', '.join(IMAGE_KINDS)})") from None
    return builder(out_path, **fixed, **kw)


DESCRIPTION = """\
Build a hard disk image that boots a real boot loader, without root:

  grub-fat      GRUB 2 (boot.img + core.img at LBA 1), FAT16 partition
  grub-ext2     GRUB 2 (boot.img + core.img at LBA 1), ext2 partition
  syslinux      SYSLINUX's mbr.bin, FAT16 partition with SYSLINUX in its boot sector
  syslinux-mbr  package mbr's install-mbr MBR, FAT16 partition with SYSLINUX

One active partition from 1 MiB to the end.  The default configuration prints
markers and hello.txt on the serial console and the screen, then powers off;
--config replaces grub.cfg / syslinux.cfg.  Needs the Debian packages fdisk,
dosfstools, mtools, e2fsprogs, grub-common, grub-pc-bin, syslinux,
syslinux-common and mbr.
"""


def add_arguments(parser):
    """The `mkimage` options, shared by `pvboot mkimage` and `python -m pvboot.tools.mkimage`."""
    parser.add_argument("kind", choices=tuple(IMAGE_KINDS), help="what to build")
    parser.add_argument("out", metavar="OUT", help="image file to write")
    parser.add_argument("--config", metavar="FILE",
                        help="grub.cfg / syslinux.cfg to use instead of the default one")
    parser.add_argument("--file", action="append", default=[], metavar="NAME=PATH",
                        help="put the file PATH into the file system as NAME (repeatable)")
    parser.add_argument("--size", type=options.MKIMAGE_SIZE_MIB, default=32, metavar="MIB",
                        help="image size in MiB (default 32, 8 to 2048)")


def run(args):
    """Build what `args` (from add_arguments) asks for; returns an exit code.  A missing
    tool or bad input is one line on stderr and exit code 2; a tool that fails (a bug
    here, most likely) prints its output and gives 4, as pvboot's internal errors do."""
    try:
        config = Path(args.config).read_text() if args.config else None
        files = {}
        for spec in args.file:
            name, sep, src = spec.partition("=")
            if not sep or not name or not src:
                raise ValueError(f"--file {spec!r}: expected NAME=PATH")
            files[name] = Path(src).read_bytes()
        path = build_image(args.kind, args.out, config=config, files=files, size_mib=args.size)
    except (MissingTool, ValueError) as exc:
        print(f"pvboot: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pvboot: error: {exc.filename or args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"pvboot: error: {exc}".rstrip(), file=sys.stderr)
        return 4
    print(f"wrote {path} ({args.kind}, {path.stat().st_size >> 20} MiB)")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pvboot.tools.mkimage", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
