"""Shared helpers for the disk format tests: images made by qemu-img, never by hand."""
import hashlib
import json
import os
import shutil
import subprocess

import pytest

FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc")
# vpc rounds a size up to its CHS geometry unless told to keep it.
CONVERT_OPTIONS = {"vpc": ["-o", "force_size=on"]}


def need_qemu_tools():
    for tool in ("qemu-img", "qemu-storage-daemon"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian qemu-utils, qemu-system-common)")


def qemu_img(*args):
    return subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True,
                          text=True, timeout=60).stdout


def convert(raw, fmt, dest):
    """``raw`` converted to ``fmt`` at ``dest`` (returned)."""
    qemu_img("convert", "-f", "raw", "-O", fmt, *CONVERT_OPTIONS.get(fmt, []), raw, dest)
    return dest


def overlay(base, fmt, dest):
    """A qcow2 overlay on ``base`` (format ``fmt``) at ``dest``."""
    qemu_img("create", "-q", "-f", "qcow2", "-b", os.path.abspath(base), "-F", fmt, dest)
    return dest


def raw_contents(image, tmp_path, name="contents.raw"):
    """The guest-visible bytes of ``image`` (any format, whole chain), via qemu-img."""
    out = tmp_path / name
    if out.exists():
        out.unlink()
    qemu_img("convert", "-U", "-O", "raw", image, out)
    return out.read_bytes()


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def patterned(path, sectors=256):
    """A raw image whose every sector says its own number (no format signature)."""
    data = bytearray()
    for lba in range(sectors):
        data += (b"LBA %08d " % lba).ljust(512, bytes([lba & 0xFF]))
    path.write_bytes(bytes(data))
    return path


def patterned_qcow2(tmp_path, sectors):
    """A qcow2 whose every sector says its own number, and its raw bytes (the test
    is skipped without QEMU's tools)."""
    need_qemu_tools()
    raw = patterned(tmp_path / "base.img", sectors)
    return convert(raw, "qcow2", tmp_path / "disk.qcow2"), raw.read_bytes()


def failing_qcow2(tmp_path, sectors, bad_sector):
    """A qcow2 on a patterned raw backing file behind blkdebug: reads touching
    ``bad_sector`` fail with EIO.  Returns it and the raw bytes."""
    need_qemu_tools()
    raw = patterned(tmp_path / "base.img", sectors)
    backing = {"driver": "raw", "file": {
        "driver": "blkdebug", "image": {"driver": "file", "filename": str(raw)},
        "inject-error": [{"event": "read_aio", "sector": bad_sector, "errno": 5}]}}
    top = tmp_path / "top.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", "json:" + json.dumps(backing), "-F", "raw",
             top)
    return top, raw.read_bytes()
