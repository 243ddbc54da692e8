"""What an image file is, as `qemu-img info --output=json --backing-chain` says.

Never writes: qemu-img runs with -U (no locks taken, nothing opened for writing).  It
also does the checks pvboot relies on before serving an image: a truncated or corrupt
header, a missing backing file and a backing chain that loops all make it fail, and
its message becomes the user's one line.  Since a raw image is what most runs boot,
`format_hint` first looks for the magic of the formats QEMU knows; a file with none of
them is raw for QEMU too (its raw driver is the fallback of probing), and is not worth
starting qemu-img for.
"""
import dataclasses
import json
import os
import shutil
import struct
import subprocess

from pvboot.emu.diskspec import FORMATS
from pvboot.emu.storage.daemon import StorageError, qemu_message

PROBE_TIMEOUT = 10.0
SECTOR_SIZE = 512
# (offset from the start, or negative from the end; bytes): some format's signature.
_MAGICS = ((0, b"QFI\xfb"), (0, b"KDMV"), (0, b"COWD"), (0, b"# Disk DescriptorFile"),
           (0x40, struct.pack("<I", 0xBEDA107F)), (0, b"vhdxfile"), (0, b"conectix"),
           (-512, b"conectix"), (-511, b"conectix"), (0, b"QED\x00"), (0, b"LUKS\xba\xbe"),
           (0, b"WithoutFreeSpace"), (0, b"WithouFreSpacExt"), (0, b"Bochs Virtual HD Image"),
           (0, b"#!/bin/sh\n#V2.0 Format"), (-512, b"koly"))


@dataclasses.dataclass
class ImageInfo:
    path: str
    format: str
    virtual_size: int
    chain: list            # qemu-img's dicts, the image first, then its backing files

    @property
    def sectors(self):
        return self.virtual_size // SECTOR_SIZE


def format_hint(path):
    """'raw' when the file carries no signature of another format, else None (ask
    qemu-img)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - 512))
            tail = f.read(512)
    except OSError:
        return None
    for offset, magic in _MAGICS:
        if offset >= 0:
            if head[offset:offset + len(magic)] == magic:
                return None
        elif size >= -offset and tail[512 + offset:512 + offset + len(magic)] == magic:
            return None
    return "raw"


def qemu_img(args, timeout=PROBE_TIMEOUT, what="qemu-img", ok=(0,)):
    """Run qemu-img with a bounded time; its stdout, or StorageError with its message
    when its exit status is not in ``ok``."""
    program = shutil.which("qemu-img")
    if program is None:
        raise StorageError("qemu-img not found (Debian package qemu-utils): needed for "
                           "non-raw images")
    try:
        proc = subprocess.run([program, *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise StorageError("%s did not answer within %g s" % (what, timeout)) from None
    if proc.returncode not in ok:
        raise StorageError(qemu_message(proc.stderr))
    return proc.stdout


# qemu-img check's exit status: 2 corruptions found, 3 only leaked clusters (harmless),
# 63 the format has no check.
CHECK_CORRUPT = 2
CHECK_OK = (0, 3, 63)


def check_metadata(path, fmt, timeout=PROBE_TIMEOUT):
    """`qemu-img check` of the image's own metadata: QEMU opens a file whose tables lie
    past its end (a truncated copy) without complaint, and would serve zeros or fail
    mid-boot."""
    out = qemu_img(["check", "-U", "--output=json", "-f", fmt, "--", path], timeout,
                   ok=CHECK_OK + (CHECK_CORRUPT,))
    try:
        report = json.loads(out) if out.strip() else {}
    except ValueError:
        report = {}
    corruptions = report.get("corruptions", 0) + report.get("check-errors", 0)
    if corruptions:
        raise StorageError("%s metadata damaged (qemu-img check: %d errors); truncated or "
                           "corrupt image" % (fmt, corruptions))


def image_info(path, fmt=None, timeout=PROBE_TIMEOUT):
    """ImageInfo for ``path`` (its whole backing chain); ``fmt`` None detects it.
    StorageError (one line) for anything qemu-img cannot open."""
    args = ["info", "--output=json", "--backing-chain", "-U"]
    if fmt is not None:
        args += ["-f", fmt]
    out = qemu_img(args + ["--", path], timeout)
    try:
        chain = json.loads(out)
    except ValueError:
        raise StorageError("qemu-img info gave no JSON") from None
    if isinstance(chain, dict):
        chain = [chain]
    top = chain[0]
    return ImageInfo(path, top["format"], int(top["virtual-size"]), chain)


def check_servable(info, wanted=None):
    """Raise StorageError unless pvboot can serve the image ``info`` describes.

    wanted: the format the user named (None: detected)."""
    for depth, layer in enumerate(info.chain):
        # The caller names the image; a backing file is named here.
        name = "backing file %s: " % layer.get("filename") if depth else ""
        if layer.get("encrypted"):
            raise StorageError("%sencrypted images are not supported" % name)
        if layer.get("format") not in FORMATS:
            raise StorageError("%sformat %s is not served (use one of %s)"
                               % (name, layer.get("format"), ", ".join(FORMATS)))
        data = layer.get("format-specific", {}).get("data", {})
        if data.get("corrupt"):
            raise StorageError("%sthe image is marked corrupt (qemu-img check -r all)" % name)
    if wanted is not None and wanted != info.format:
        raise StorageError("format=%s but the file is %s" % (wanted, info.format))
    if info.sectors < 1:
        raise StorageError("virtual size %d is shorter than one %d-byte sector"
                           % (info.virtual_size, SECTOR_SIZE))


def resolve_format(path, fmt=None, timeout=PROBE_TIMEOUT):
    """The format to serve ``path`` with, checked: ``fmt`` if given and it matches the
    file, else what the header says.  Raw files without another format's signature
    cost no qemu-img run.  Returns (format, ImageInfo or None for plain raw)."""
    if fmt in (None, "raw") and format_hint(path) == "raw":
        return "raw", None
    if fmt == "raw":
        # The user says raw but the header carries a signature: ask what it is.
        info = image_info(path, None, timeout)
        if info.format != "raw":
            raise StorageError("format=raw but the file is %s (give format=%s)"
                               % (info.format, info.format))
        return "raw", info
    try:
        info = image_info(path, fmt, timeout)
    except StorageError:
        if fmt is None:
            raise
        # The named driver cannot read it: say what the file is, if QEMU knows.
        try:
            actual = image_info(path, None, timeout).format
        except StorageError:
            actual = fmt
        if actual != fmt:
            raise StorageError("format=%s but the file is %s" % (fmt, actual)) from None
        raise
    check_servable(info, fmt)
    check_metadata(path, info.format, timeout)
    return info.format, info
