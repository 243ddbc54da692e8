"""Bootable ISO images for CD-ROM tests, built with Debian's xorriso (`-as mkisofs`) and
grub-mkrescue; nothing here parses or writes ISO 9660 itself.

- `eltorito_iso`: a boot image as no-emulation (loaded whole: boot-load-size in 512-byte
  units), floppy-emulation (a 1.2/1.44/2.88 MB image: xorriso picks the media type from
  its size) or hard-disk-emulation (`-hard-disk-boot`: an MBR image) boot entry;
- `isolinux_iso`: ISOLINUX printing a marker file on COM1 with cat.c32;
- `grub_rescue_iso`: grub-mkrescue's hybrid ISO (boots as a CD and as a hard disk)
  whose grub.cfg echoes a marker on COM1 and halts.
"""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ISOLINUX_DIR = Path("/usr/lib/ISOLINUX")
SYSLINUX_MODULES = Path("/usr/lib/syslinux/modules/bios")
ISOLINUX_MODULES = ("ldlinux.c32", "cat.c32", "libcom32.c32", "libutil.c32")
FLOPPY_EMULATION_SIZES = (1228800, 1474560, 2949120)
MODES = ("noemul", "floppy", "hd")


class IsoError(Exception):
    """The ISO cannot be built (one line)."""


def _run(cmd):
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise IsoError(f"{cmd[0]} not found (Debian packages xorriso, grub-common, "
                       "grub-pc-bin, isolinux, syslinux-common)") from None
    if proc.returncode:
        raise IsoError(f"{' '.join(cmd)}: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")


def eltorito_iso(out, boot_image, mode="noemul", volume_id="PVBOOT", load_size=None, files=None):
    """Write an ISO at `out` whose El Torito default entry boots `boot_image` (bytes)."""
    if mode not in MODES:
        raise IsoError(f"unknown El Torito mode {mode!r} (use {', '.join(MODES)})")
    if mode == "floppy" and len(boot_image) not in FLOPPY_EMULATION_SIZES:
        raise IsoError(f"a floppy emulation image is 1.2, 1.44 or 2.88 MB, not {len(boot_image)} bytes")
    with tempfile.TemporaryDirectory(prefix="pvboot-iso-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        (root / "boot.img").write_bytes(boot_image)
        for name, data in (files or {}).items():
            (root / name).write_bytes(data)
        cmd = ["xorriso", "-as", "mkisofs", "-quiet", "-V", volume_id, "-o", str(out),
               "-b", "boot.img", "-c", "boot.cat"]
        if mode == "noemul":
            sectors = load_size or -(-len(boot_image) // 512)
            cmd += ["-no-emul-boot", "-boot-load-size", str(sectors)]
        elif mode == "hd":
            cmd += ["-hard-disk-boot"]
        _run(cmd + [str(root)])
    return Path(out)


def isolinux_iso(out, marker, volume_id="ISOLINUX"):
    """ISOLINUX (Debian's isolinux.bin, -boot-info-table) that cats a marker file."""
    with tempfile.TemporaryDirectory(prefix="pvboot-iso-") as tmp:
        root = Path(tmp) / "root"
        (root / "isolinux").mkdir(parents=True)
        shutil.copy(ISOLINUX_DIR / "isolinux.bin", root / "isolinux")
        for module in ISOLINUX_MODULES:
            shutil.copy(SYSLINUX_MODULES / module, root / "isolinux")
        (root / "marker.txt").write_text(marker + "\n")
        (root / "isolinux" / "isolinux.cfg").write_text(
            "SERIAL 0 115200\nDEFAULT show\nPROMPT 0\nTIMEOUT 0\n"
            "LABEL show\n  COM32 cat.c32\n  APPEND /marker.txt\n")
        _run(["xorriso", "-as", "mkisofs", "-quiet", "-V", volume_id, "-o", str(out),
              "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot",
              "-boot-load-size", "4", "-boot-info-table", str(root)])
    return Path(out)


def grub_rescue_iso(out, marker):
    """grub-mkrescue's i386-pc ISO (hybrid) whose menu echoes `marker` and halts."""
    with tempfile.TemporaryDirectory(prefix="pvboot-iso-") as tmp:
        grub = Path(tmp) / "root" / "boot" / "grub"
        grub.mkdir(parents=True)
        (grub / "grub.cfg").write_text(
            "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n"
            f"echo {marker}\nhalt\n")
        _run(["grub-mkrescue", "-o", str(out), str(Path(tmp) / "root")])
    return Path(os.fspath(out))
