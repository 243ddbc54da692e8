"""The display adapter: a VGA DAC (ports 0x3C6-0x3C9) and a Bochs/QEMU "stdvga" VBE
DISPI interface (index 0x1CE, data 0x1CF) with its video memory as a linear frame
buffer.

This is the hardware half of VBE: the firmware (pvboot.firmware.vbe) programs it
through the same registers SeaBIOS's VGA BIOS uses on QEMU -vga std, and a guest may
program it directly (Linux's bochs driver, GRUB's video_bochs do).  The frame buffer is
16 MiB of memory mapped at LFB_BASE, where SeaBIOS puts the stdvga PCI BAR on QEMU's
i440fx machine; it lies above RAM, in the PCI hole that the E820 map leaves out.

Every register a guest writes is checked before it is trusted: resolution, depth and
offsets are clamped so that the visible picture always lies inside video memory
(`scanout` can be used without further checks), whatever the guest wrote.
"""
import ctypes
import mmap

import unicorn as uc_mod

from pvboot.emu.ioport import PortDevice

# Ports (QEMU hw/display/vga.h, SeaBIOS vgasrc/bochsvga.h).
VBE_DISPI_IOPORT_INDEX = 0x1CE
VBE_DISPI_IOPORT_DATA = 0x1CF
VGAREG_PEL_MASK = 0x3C6
VGAREG_DAC_READ_ADDRESS = 0x3C7      # write: read index; read: DAC state
VGAREG_DAC_WRITE_ADDRESS = 0x3C8
VGAREG_DAC_DATA = 0x3C9

# DISPI register indices.
VBE_DISPI_INDEX_ID = 0x0
VBE_DISPI_INDEX_XRES = 0x1
VBE_DISPI_INDEX_YRES = 0x2
VBE_DISPI_INDEX_BPP = 0x3
VBE_DISPI_INDEX_ENABLE = 0x4
VBE_DISPI_INDEX_BANK = 0x5
VBE_DISPI_INDEX_VIRT_WIDTH = 0x6
VBE_DISPI_INDEX_VIRT_HEIGHT = 0x7
VBE_DISPI_INDEX_X_OFFSET = 0x8
VBE_DISPI_INDEX_Y_OFFSET = 0x9
VBE_DISPI_INDEX_VIDEO_MEMORY_64K = 0xA
VBE_DISPI_INDEX_NB = 0xB

VBE_DISPI_ID0 = 0xB0C0
VBE_DISPI_ID5 = 0xB0C5
VBE_DISPI_DISABLED = 0x00
VBE_DISPI_ENABLED = 0x01
VBE_DISPI_GETCAPS = 0x02
VBE_DISPI_8BIT_DAC = 0x20
VBE_DISPI_LFB_ENABLED = 0x40
VBE_DISPI_NOCLEARMEM = 0x80

# QEMU's limits, read by SeaBIOS through GETCAPS to decide which modes it offers.
VBE_DISPI_MAX_XRES = 16000
VBE_DISPI_MAX_YRES = 12000
VBE_DISPI_MAX_BPP = 32
VALID_BPP = (4, 8, 15, 16, 24, 32)

VRAM_SIZE = 16 << 20                 # QEMU's default vgamem_mb
VGA_WINDOW_BASE = 0xA0000            # the 64 KiB bank window of a VBE mode
BANK_SIZE = 0x10000
LFB_BASE = 0xFD000000                # SeaBIOS's BAR 0 for stdvga on QEMU -M pc
DAC_ENTRIES = 256


def bytes_per_pixel(bpp):
    """Bytes a pixel of `bpp` bits takes in video memory (15-bit pixels take 2)."""
    return (bpp + 7) // 8


class Vga(PortDevice):
    """DAC palette, DISPI registers and video memory."""

    ports = (VBE_DISPI_IOPORT_INDEX, VBE_DISPI_IOPORT_DATA, VGAREG_PEL_MASK,
             VGAREG_DAC_READ_ADDRESS, VGAREG_DAC_WRITE_ADDRESS, VGAREG_DAC_DATA)

    def __init__(self, uc=None, ram_end=0, vga_window=None):
        """uc: the Unicorn to map video memory into (none: registers only); ram_end:
        where RAM ends (the LFB is left out if RAM reaches it); vga_window: the host
        address of the RAM that 0xA0000-0xAFFFF shows while DISPI is off."""
        self.vram = mmap.mmap(-1, VRAM_SIZE)
        self.vram_view = memoryview(self.vram)
        self._vram_address = ctypes.addressof(ctypes.c_char.from_buffer(self.vram))
        self._uc = uc
        self._vga_window = vga_window
        self._window_bank = None                  # the bank 0xA0000 shows, None: VGA RAM
        self.lfb_base = None
        if uc is not None and ram_end <= LFB_BASE:
            # A zero-copy mapping: the guest's stores land in `vram` itself.
            uc.mem_map_ptr(LFB_BASE, VRAM_SIZE, uc_mod.UC_PROT_READ | uc_mod.UC_PROT_WRITE,
                           self._vram_address)
            self.lfb_base = LFB_BASE
        self.palette = bytearray(DAC_ENTRIES * 3)     # 6-bit (or 8-bit) R, G, B
        self.pel_mask = 0xFF
        self._dac_read_index = 0
        self._dac_write_index = 0
        self._dac_component = 0
        self._dac_state = 0                           # 0: last set the write index, 3: read
        self._dac_latch = bytearray(3)
        self._index = 0
        self.regs = [0] * VBE_DISPI_INDEX_NB
        self.regs[VBE_DISPI_INDEX_ID] = VBE_DISPI_ID0
        self.regs[VBE_DISPI_INDEX_VIDEO_MEMORY_64K] = VRAM_SIZE >> 16

    def mapped_regions(self):
        """(base, size) of the memory this device maps above RAM: the LFB, if mapped."""
        return [(self.lfb_base, VRAM_SIZE)] if self.lfb_base is not None else []

    # -- ports -------------------------------------------------------------------------
    def read(self, port, size):
        if port == VBE_DISPI_IOPORT_INDEX:
            return self._index
        if port == VBE_DISPI_IOPORT_DATA:
            return self.dispi_read(self._index)
        if port == VGAREG_PEL_MASK:
            return self.pel_mask
        if port == VGAREG_DAC_READ_ADDRESS:
            return self._dac_state
        if port == VGAREG_DAC_WRITE_ADDRESS:
            return self._dac_write_index
        if port == VGAREG_DAC_DATA:
            return self._dac_data_read()
        return 0xFF

    def write(self, port, size, value):
        if port == VBE_DISPI_IOPORT_INDEX:
            self._index = value & 0xFFFF
        elif port == VBE_DISPI_IOPORT_DATA:
            self.dispi_write(self._index, value & 0xFFFF)
        elif port == VGAREG_PEL_MASK:
            self.pel_mask = value & 0xFF
        elif port == VGAREG_DAC_READ_ADDRESS:
            self._dac_read_index = value & 0xFF
            self._dac_component = 0
            self._dac_state = 3
        elif port == VGAREG_DAC_WRITE_ADDRESS:
            self._dac_write_index = value & 0xFF
            self._dac_component = 0
            self._dac_state = 0
        elif port == VGAREG_DAC_DATA:
            self._dac_data_write(value & 0xFF)

    # -- DAC ---------------------------------------------------------------------------
    def dac_8bit(self):
        """Whether the DAC uses all 8 bits of each primary (DISPI 8BIT_DAC) or 6."""
        return bool(self.regs[VBE_DISPI_INDEX_ENABLE] & VBE_DISPI_8BIT_DAC)

    def _dac_data_write(self, value):
        # Kept as written, all 8 bits, as QEMU does: a 6-bit DAC drops bits 6-7 when it
        # shows the colour (palette_rgb8), and reads give back what was written.
        self._dac_latch[self._dac_component] = value
        self._dac_component += 1
        if self._dac_component == 3:
            start = self._dac_write_index * 3
            self.palette[start:start + 3] = self._dac_latch
            self._dac_component = 0
            self._dac_write_index = (self._dac_write_index + 1) & 0xFF

    def _dac_data_read(self):
        value = self.palette[self._dac_read_index * 3 + self._dac_component]
        self._dac_component += 1
        if self._dac_component == 3:
            self._dac_component = 0
            self._dac_read_index = (self._dac_read_index + 1) & 0xFF
        return value

    def set_palette(self, start, rgb):
        """Load consecutive DAC entries from `start` with R, G, B bytes, wrapping after
        entry 255 as the auto-incrementing index does; as written through port 0x3C9."""
        for i in range(len(rgb) // 3):
            index = (start + i) & 0xFF
            self.palette[index * 3:index * 3 + 3] = rgb[i * 3:i * 3 + 3]

    def get_palette(self, start, count):
        """R, G, B bytes of `count` DAC entries from `start` (wrapping after 255)."""
        out = bytearray()
        for i in range(count):
            index = (start + i) & 0xFF
            out += self.palette[index * 3:index * 3 + 3]
        return bytes(out)

    def palette_rgb8(self):
        """The 256 palette entries as 8-bit R, G, B (a 6-bit DAC value scaled as QEMU's
        display does), masked by the PEL mask as the DAC looks them up."""
        if self.dac_8bit():
            full = bytes(self.palette)
        else:
            full = bytes((((v & 0x3F) << 2) | ((v & 1) * 3)) for v in self.palette)
        if self.pel_mask == 0xFF:
            return full
        return b"".join(full[(i & self.pel_mask) * 3:(i & self.pel_mask) * 3 + 3]
                        for i in range(DAC_ENTRIES))

    # -- DISPI -------------------------------------------------------------------------
    def enabled(self):
        return bool(self.regs[VBE_DISPI_INDEX_ENABLE] & VBE_DISPI_ENABLED)

    def dispi_read(self, index):
        if index >= VBE_DISPI_INDEX_NB:
            return 0
        if self.regs[VBE_DISPI_INDEX_ENABLE] & VBE_DISPI_GETCAPS:
            caps = {VBE_DISPI_INDEX_XRES: VBE_DISPI_MAX_XRES,
                    VBE_DISPI_INDEX_YRES: VBE_DISPI_MAX_YRES,
                    VBE_DISPI_INDEX_BPP: VBE_DISPI_MAX_BPP}
            if index in caps:
                return caps[index]
        return self.regs[index]

    def dispi_write(self, index, value):
        regs = self.regs
        if index == VBE_DISPI_INDEX_ID:
            if VBE_DISPI_ID0 <= value <= VBE_DISPI_ID5:
                regs[index] = value
        elif index in (VBE_DISPI_INDEX_XRES, VBE_DISPI_INDEX_YRES, VBE_DISPI_INDEX_BPP,
                       VBE_DISPI_INDEX_VIRT_WIDTH, VBE_DISPI_INDEX_X_OFFSET,
                       VBE_DISPI_INDEX_Y_OFFSET):
            regs[index] = value
            self._fixup()
        elif index == VBE_DISPI_INDEX_BANK:
            regs[index] = value & (VRAM_SIZE // BANK_SIZE - 1)
            self._map_window()
        elif index == VBE_DISPI_INDEX_ENABLE:
            was_enabled = self.enabled()
            regs[index] = value & (VBE_DISPI_ENABLED | VBE_DISPI_GETCAPS | VBE_DISPI_8BIT_DAC |
                                   VBE_DISPI_LFB_ENABLED | VBE_DISPI_NOCLEARMEM)
            if value & VBE_DISPI_ENABLED and not was_enabled:
                regs[VBE_DISPI_INDEX_VIRT_WIDTH] = regs[VBE_DISPI_INDEX_XRES]
                regs[VBE_DISPI_INDEX_X_OFFSET] = 0
                regs[VBE_DISPI_INDEX_Y_OFFSET] = 0
                regs[VBE_DISPI_INDEX_BANK] = 0
                self._fixup()
                if not value & VBE_DISPI_NOCLEARMEM:
                    self.clear(regs[VBE_DISPI_INDEX_VIRT_HEIGHT] * self.line_length())
            self._map_window()

    def _map_window(self):
        """Show video memory's current bank at 0xA0000 while DISPI is on, as the card
        decodes the VGA window then; VGA memory (guest RAM) again once it is off."""
        if self._uc is None or self._vga_window is None:
            return
        bank = self.regs[VBE_DISPI_INDEX_BANK] if self.enabled() else None
        if bank == self._window_bank:
            return
        host = self._vga_window if bank is None else self._vram_address + bank * BANK_SIZE
        self._uc.mem_unmap(VGA_WINDOW_BASE, BANK_SIZE)
        self._uc.mem_map_ptr(VGA_WINDOW_BASE, BANK_SIZE, uc_mod.UC_PROT_ALL, host)
        self._window_bank = bank

    def _fixup(self):
        """Bring the mode registers back inside what the card can show: a depth it
        has, resolutions within its limits, a virtual screen and offsets inside VRAM."""
        regs = self.regs
        if regs[VBE_DISPI_INDEX_BPP] not in VALID_BPP:
            regs[VBE_DISPI_INDEX_BPP] = 8
        bpp = regs[VBE_DISPI_INDEX_BPP]
        xres = min(max(regs[VBE_DISPI_INDEX_XRES], 8) & ~7, VBE_DISPI_MAX_XRES)
        regs[VBE_DISPI_INDEX_XRES] = xres
        regs[VBE_DISPI_INDEX_YRES] = min(max(regs[VBE_DISPI_INDEX_YRES], 1), VBE_DISPI_MAX_YRES)
        bytes_pp = bytes_per_pixel(bpp)
        max_width = VRAM_SIZE // bytes_pp // regs[VBE_DISPI_INDEX_YRES]
        virt_width = min(max(regs[VBE_DISPI_INDEX_VIRT_WIDTH], xres), 0xFFFF, max_width)
        if virt_width < xres:                     # the resolution itself does not fit
            regs[VBE_DISPI_INDEX_YRES] = max(1, VRAM_SIZE // (xres * bytes_pp))
            virt_width = xres
        regs[VBE_DISPI_INDEX_VIRT_WIDTH] = virt_width
        line = self.line_length()
        virt_height = min(VRAM_SIZE // line, 0xFFFF)
        regs[VBE_DISPI_INDEX_VIRT_HEIGHT] = virt_height
        regs[VBE_DISPI_INDEX_X_OFFSET] = min(regs[VBE_DISPI_INDEX_X_OFFSET], virt_width - xres)
        regs[VBE_DISPI_INDEX_Y_OFFSET] = min(regs[VBE_DISPI_INDEX_Y_OFFSET],
                                             virt_height - regs[VBE_DISPI_INDEX_YRES])

    def line_length(self):
        """Bytes per scan line of the virtual screen."""
        return self.regs[VBE_DISPI_INDEX_VIRT_WIDTH] * bytes_per_pixel(self.regs[VBE_DISPI_INDEX_BPP])

    def clear(self, length=VRAM_SIZE):
        length = min(max(length, 0), VRAM_SIZE)
        self.vram[:length] = bytes(length)

    def scanout(self):
        """(width, height, bpp, line length, start offset) of the picture the card
        shows while DISPI is enabled, or None in VGA mode.  The picture lies inside
        VRAM by construction (_fixup)."""
        if not self.enabled():
            return None
        regs = self.regs
        bpp = regs[VBE_DISPI_INDEX_BPP]
        line = self.line_length()
        start = regs[VBE_DISPI_INDEX_Y_OFFSET] * line + \
            regs[VBE_DISPI_INDEX_X_OFFSET] * bytes_per_pixel(bpp)
        return regs[VBE_DISPI_INDEX_XRES], regs[VBE_DISPI_INDEX_YRES], bpp, line, start
