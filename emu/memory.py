"""Guest physical memory: one shared-memory object (memfd) mapped into Unicorn.

All of guest RAM, the VGA text buffer and the BIOS ROM live in a single memfd so that
another process (the blkback backend) can map the very same frames.  Every write the
firmware makes goes through `GuestMemory.write`, which also drops Unicorn's translated
blocks for the range: Unicorn does not notice host-side writes, and a chainloaded boot
sector would otherwise run the stale code that used to be at 0x7C00.
"""
import ctypes
import mmap
import os
import struct

import unicorn as uc_mod

from pvboot.emu.cpu import translation_remover

# The PC memory map lives in emu/memmap.py; these names stay importable from here.
from pvboot.emu.memmap import (BIOS_ROM_BASE, BIOS_ROM_SIZE, CONVENTIONAL_END,  # noqa: F401
                               EBDA_BASE, EBDA_SIZE, EXTENDED_BASE, OPTION_ROM_BASE, PAGE_SIZE,
                               VGA_BASE, VGA_END, VGA_TEXT_BASE, XEN_AREA_SIZE, MiB,
                               dma_writable_pieces, is_dma_writable)

_PROT_RW = uc_mod.UC_PROT_READ | uc_mod.UC_PROT_WRITE
_PROT_RX = uc_mod.UC_PROT_READ | uc_mod.UC_PROT_EXEC
_PROT_ALL = uc_mod.UC_PROT_ALL


class GuestMemory:
    """The guest's physical address space backed by one memfd."""

    def __init__(self, extended_mib=64):
        if extended_mib < 1:
            raise ValueError("memory above 1 MiB must be at least 1 MiB")
        self.extended_size = extended_mib * MiB
        self.size = EXTENDED_BASE + self.extended_size
        self.xen_area_base = self.size - XEN_AREA_SIZE
        self.fd = os.memfd_create("pvboot-guest-ram", 0)
        os.ftruncate(self.fd, self.size)
        self.mmap = mmap.mmap(self.fd, self.size)
        self.buf = memoryview(self.mmap)
        self._base_ptr = ctypes.addressof(ctypes.c_char.from_buffer(self.mmap))
        self.uc = None

    def attach(self, uc):
        """Map the regions into a Unicorn instance (the layout of a PC below and above 1 MiB)."""
        self.uc = uc
        self._remove_translations = translation_remover(uc)
        regions = [
            (0, CONVENTIONAL_END, _PROT_ALL),
            (VGA_BASE, VGA_END - VGA_BASE, _PROT_ALL),
            (OPTION_ROM_BASE, BIOS_ROM_BASE - OPTION_ROM_BASE, _PROT_RX),
            (BIOS_ROM_BASE, BIOS_ROM_SIZE, _PROT_RX),
            (EXTENDED_BASE, self.extended_size, _PROT_ALL),
        ]
        for base, size, prot in regions:
            uc.mem_map_ptr(base, size, prot, self._base_ptr + base)

    def host_address(self, addr):
        """The host address of guest physical `addr` in RAM (for a device that maps its
        own memory over part of the address space and later puts RAM back)."""
        return self._base_ptr + addr

    @property
    def path_for_other_process(self):
        """A path another process of this user can open to map the same frames."""
        return f"/proc/{os.getpid()}/fd/{self.fd}"

    def is_writable_ram(self, addr, length):
        """True if [addr, addr+length) lies in RAM the firmware may fill (not ROM, not a hole)."""
        return is_dma_writable(addr, length, self.size)

    def ram_pieces(self, start, end):
        """The sub-ranges of [start, end) that are RAM the firmware may fill."""
        return dma_writable_pieces(start, end, self.size)

    def dma_write(self, addr, data):
        """Write as a device's DMA would: the RAM parts get the data (and lose their
        translated code); the parts that hit ROM or nothing are dropped, as on a PC."""
        n = len(data)
        if self.is_writable_ram(addr, n):
            self.write(addr, data)
            return
        for start, end in self.ram_pieces(addr, addr + n):
            self.write(start, data[start - addr:end - addr])

    def dma_read(self, addr, length):
        """Read as a device's DMA would: memory past the end of RAM reads as zeros."""
        if addr + length <= self.size:
            return self.view(addr, length)
        data = bytearray(length)
        present = max(0, self.size - addr)
        data[:present] = self.view(addr, present)
        return data

    # Reads never need invalidation.
    def read(self, addr, length):
        return bytes(self.buf[addr:addr + length])

    def view(self, addr, length):
        """A zero-copy view of guest frames (shared with whoever maps the memfd)."""
        return self.buf[addr:addr + length]

    def read_u8(self, addr):
        return self.buf[addr]

    def read_u16(self, addr):
        return struct.unpack_from("<H", self.buf, addr)[0]

    def read_u32(self, addr):
        return struct.unpack_from("<I", self.buf, addr)[0]

    def read_u64(self, addr):
        return struct.unpack_from("<Q", self.buf, addr)[0]

    def read_cstr(self, addr, limit=256):
        data = self.read(addr, limit)
        return data.split(b"\0", 1)[0]

    # Writes invalidate translated code for the range they touch.
    def write(self, addr, data):
        n = len(data)
        self.buf[addr:addr + n] = data
        self.invalidate(addr, n)

    def fill(self, addr, length, value=0):
        self.buf[addr:addr + length] = bytes([value]) * length
        self.invalidate(addr, length)

    def write_u8(self, addr, value):
        self.buf[addr] = value & 0xFF
        self.invalidate(addr, 1)

    def write_u16(self, addr, value):
        struct.pack_into("<H", self.buf, addr, value & 0xFFFF)
        self.invalidate(addr, 2)

    def write_u32(self, addr, value):
        struct.pack_into("<I", self.buf, addr, value & 0xFFFFFFFF)
        self.invalidate(addr, 4)

    def write_u64(self, addr, value):
        struct.pack_into("<Q", self.buf, addr, value & 0xFFFFFFFFFFFFFFFF)
        self.invalidate(addr, 8)

    def invalidate(self, addr, length):
        """Drop translated blocks covering [addr, addr+length) (~3 us a call)."""
        if self.uc is not None and length:
            self._remove_translations(addr, addr + length)

    def close(self):
        """Unmap and free the frames.  Only call once nothing will run on them again."""
        self.uc = None
        try:
            self.buf.release()
            self.mmap.close()
        except BufferError:
            pass   # a view is still held somewhere; the mapping goes when that view does
        os.close(self.fd)
