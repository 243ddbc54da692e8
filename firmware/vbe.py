"""VESA BIOS Extensions (INT 10h AH=4Fh), after SeaBIOS's vgasrc/vbe.c on QEMU's stdvga.

The functions answer as SeaBIOS's VGA BIOS does (version 3.0, the same mode numbers and
mode information, a linear frame buffer at the display device's BAR), so a guest sees
the adapter it sees under QEMU -vga std.  Where SeaBIOS releases differ, pvboot follows
the current one: AX=4F00h fills 256 bytes for a "VESA" caller and 512 for a "VBE2"
one, 4F05h in a linear mode fails with AX=034Fh, and 4F09h sets and gets the palette
in 8-bit modes.  4F0Ah (protected-mode interface) is not offered: AX=0100h, as
SeaBIOS answers.  The mode info's window function pointer is 0000:0000 (pvboot has no
far-callable bank switch; callers use AX=4F05h).

A buffer the guest names (ES:DI) is written only where it is RAM: one that points into
ROM or past the end of memory loses those bytes, as a DMA would.
"""
import struct

from pvboot.emu.devices import vga as vga_device
from pvboot.firmware import modeset, vgamodes
from pvboot.firmware.vgamodes import MM_CGA, MM_DIRECT, MM_PLANAR, MM_TEXT, SEG_MTEXT

VESA_SIGNATURE = b"VESA"
VBE2_SIGNATURE = b"VBE2"
VBE_VERSION = 0x0300
VBE_INFO_SIZE = 256               # "VESA" callers' buffer
VBE2_INFO_SIZE = 512              # "VBE2" callers': room for OemData
VBE_MODE_INFO_SIZE = 256
MODE_LIST_OFFSET = 34             # the list lives in the info block's reserved area
MODE_LIST_ENTRIES = (VBE_INFO_SIZE - MODE_LIST_OFFSET) // 2 - 1

VBE_OEM_STRING = b"pvboot VBE adapter\0"
VBE_VENDOR_STRING = b"pvboot\0"
VBE_PRODUCT_STRING = b"pvboot stdvga\0"
VBE_REVISION_STRING = b"Rev. 1\0"

VBE_CAPABILITY_8BIT_DAC = 0x0001
VBE_MODE_ATTRIBUTE_SUPPORTED = 0x0001
VBE_MODE_ATTRIBUTE_EXTENDED_INFORMATION_AVAILABLE = 0x0002
VBE_MODE_ATTRIBUTE_TTY_BIOS_SUPPORT = 0x0004
VBE_MODE_ATTRIBUTE_COLOR_MODE = 0x0008
VBE_MODE_ATTRIBUTE_GRAPHICS_MODE = 0x0010
VBE_MODE_ATTRIBUTE_NOT_VGA_COMPATIBLE = 0x0020
VBE_MODE_ATTRIBUTE_LINEAR_FRAME_BUFFER_MODE = 0x0080
VBE_WINDOW_ATTRIBUTE_RELOCATABLE = 0x01
VBE_WINDOW_ATTRIBUTE_READABLE = 0x02
VBE_WINDOW_ATTRIBUTE_WRITEABLE = 0x04
VBE_DIRECTCOLOR_RESERVED_BITS_AVAILABLE = 0x02
WIN_GRANULARITY_KB = 64
WIN_SIZE_KB = 64

AX_OK = 0x004F
AX_FAILED = 0x014F
AX_INVALID_IN_MODE = 0x034F
AX_UNSUPPORTED = 0x0100

# depth -> (red size, pos, green size, pos, blue size, pos, reserved size, pos)
COLOUR_LAYOUT = {
    15: (5, 10, 5, 5, 5, 0, 1, 15),
    16: (5, 11, 6, 5, 5, 0, 0, 0),
    24: (8, 16, 8, 8, 8, 0, 0, 0),
    32: (8, 16, 8, 8, 8, 0, 8, 24),
}


def _device(bios):
    return bios.machine.devices["vga"]


def _far(bios, seg, off, data):
    bios.mem.dma_write((seg << 4) + off, bytes(data))


def _strings(bios):
    """Far pointers to the OEM strings, placed in the ROM's data area once."""
    state = bios.video
    if state.vbe_strings is None:
        pointers = []
        for text in (VBE_OEM_STRING, VBE_VENDOR_STRING, VBE_PRODUCT_STRING, VBE_REVISION_STRING):
            address = bios.rom_alloc(text, align=1)
            pointers.append(((address >> 4) << 16) | (address & 0xF))
        state.vbe_strings = pointers
    return state.vbe_strings


def handle_104f00(bios, regs):
    """Controller information: signature, version, OEM strings, mode list, memory."""
    seg, off = regs.es, regs.di
    signature = bios.mem.read(((seg << 4) + off) & 0xFFFFF, 4)
    size = VBE2_INFO_SIZE if signature == VBE2_SIGNATURE else VBE_INFO_SIZE
    oem, vendor, product, revision = _strings(bios)
    info = bytearray(size)
    struct.pack_into("<4sHIIIHHIII", info, 0, VESA_SIGNATURE, VBE_VERSION, oem,
                     VBE_CAPABILITY_8BIT_DAC, (seg << 16) | ((off + MODE_LIST_OFFSET) & 0xFFFF),
                     vga_device.VRAM_SIZE >> 16, 0, vendor, product, revision)
    modes = vgamodes.mode_list()[:MODE_LIST_ENTRIES] + (0xFFFF,)
    struct.pack_into(f"<{len(modes)}H", info, MODE_LIST_OFFSET, *modes)
    _far(bios, seg, off, info)
    regs.ax = AX_OK


def mode_info(number, lfb_base):
    """The 256-byte ModeInfoBlock of `number` (SeaBIOS vbe_104f01), or None."""
    mode = vgamodes.find_mode(number)
    if mode is None:
        return None
    info = bytearray(VBE_MODE_INFO_SIZE)
    linesize = vgamodes.line_size(mode)
    attributes = (VBE_MODE_ATTRIBUTE_SUPPORTED | VBE_MODE_ATTRIBUTE_EXTENDED_INFORMATION_AVAILABLE |
                  VBE_MODE_ATTRIBUTE_COLOR_MODE | VBE_MODE_ATTRIBUTE_GRAPHICS_MODE |
                  VBE_MODE_ATTRIBUTE_NOT_VGA_COMPATIBLE)
    framebuffer = 0
    planes = banks = 1
    bank_size = 0
    pages = vga_device.VRAM_SIZE // ((mode.height * linesize + 0xFFFF) & ~0xFFFF)
    if mode.memmodel == MM_TEXT:
        attributes &= ~VBE_MODE_ATTRIBUTE_GRAPHICS_MODE
        attributes |= VBE_MODE_ATTRIBUTE_TTY_BIOS_SUPPORT
        if mode.segment == SEG_MTEXT:
            attributes &= ~VBE_MODE_ATTRIBUTE_COLOR_MODE
        pages = 1
    elif mode.memmodel == MM_CGA:
        pages, banks, bank_size = 1, 2, 8
    elif mode.memmodel == MM_PLANAR:
        planes = 4
        pages //= 4
    elif lfb_base is not None:
        framebuffer = lfb_base
        attributes |= VBE_MODE_ATTRIBUTE_LINEAR_FRAME_BUFFER_MODE
    pages = min(pages, 128)
    if pages < 2:
        pages += 1
    colours = COLOUR_LAYOUT.get(mode.depth, (0,) * 8)
    direct_info = VBE_DIRECTCOLOR_RESERVED_BITS_AVAILABLE if mode.depth == 32 else 0
    window = VBE_WINDOW_ATTRIBUTE_RELOCATABLE | VBE_WINDOW_ATTRIBUTE_READABLE | \
        VBE_WINDOW_ATTRIBUTE_WRITEABLE
    struct.pack_into("<HBBHHHHIHHHBBBBBBBBB", info, 0, attributes, window, 0, WIN_GRANULARITY_KB,
                     WIN_SIZE_KB, mode.segment, 0, 0, linesize, mode.width, mode.height,
                     mode.cwidth, mode.cheight, planes, mode.depth, banks, mode.memmodel,
                     bank_size, pages - 1, 1)
    struct.pack_into("<8BB", info, 31, *colours, direct_info)
    if framebuffer:
        struct.pack_into("<IIHHBB8B", info, 40, framebuffer, 0, 0, linesize, 0, 0, *colours)
    return bytes(info)


def handle_104f01(bios, regs):
    info = mode_info(regs.cx & ~modeset.MF_VBEFLAGS, _device(bios).lfb_base)
    if info is None:
        regs.ax = AX_FAILED
        return
    _far(bios, regs.es, regs.di, info)
    regs.ax = AX_OK


def handle_104f02(bios, regs):
    bx = regs.bx
    status = modeset.set_mode(bios, bx & ~modeset.MF_VBEFLAGS, bx & modeset.MF_VBEFLAGS)
    regs.ax = (status << 8) | 0x4F


def handle_104f03(bios, regs):
    regs.bx = bios.video.vbe_mode
    regs.ax = AX_OK


# -- AX=4F04h: save/restore state ------------------------------------------------------
SR_HARDWARE, SR_BDA, SR_DAC, SR_REGISTERS = 0x01, 0x02, 0x04, 0x08
BDA_VIDEO_AREAS = ((0x449, 0x467), (0x484, 0x48B))       # what a mode set writes
DISPI_SAVED = range(vga_device.VBE_DISPI_INDEX_XRES, vga_device.VBE_DISPI_INDEX_Y_OFFSET + 1)
SAVE_BLOCK = 64


def _state_parts(bios, states):
    """(length, save(), restore(data)) of each part `states` asks for, in order."""
    device, mem = _device(bios), bios.mem
    parts = []
    if states & SR_BDA:
        for start, end in BDA_VIDEO_AREAS:
            parts.append((end - start, lambda s=start, e=end: mem.read(s, e - s),
                          lambda data, s=start: mem.write(s, data)))
        # The VBE mode goes with the BDA, as SeaBIOS keeps it in its BDA extension.
        parts.append((2, lambda: struct.pack("<H", bios.video.vbe_mode),
                      lambda data: setattr(bios.video, "vbe_mode", struct.unpack("<H", data)[0])))
    if states & SR_DAC:
        parts.append((1 + 768, lambda: bytes((device.pel_mask,)) + bytes(device.palette),
                      lambda data: _restore_dac(device, data)))
    if states & (SR_HARDWARE | SR_REGISTERS):
        parts.append((2 * (len(DISPI_SAVED) + 1), lambda: _save_dispi(device),
                      lambda data: _restore_dispi(device, data)))
    return parts


def _restore_dac(device, data):
    device.pel_mask = data[0]
    device.palette[:] = data[1:769]


def _save_dispi(device):
    values = [device.regs[vga_device.VBE_DISPI_INDEX_ENABLE]] + [device.regs[i] for i in DISPI_SAVED]
    return struct.pack(f"<{len(values)}H", *values)


def _restore_dispi(device, data):
    values = struct.unpack(f"<{len(DISPI_SAVED) + 1}H", data)
    enable = values[0]
    device.dispi_write(vga_device.VBE_DISPI_INDEX_ENABLE, vga_device.VBE_DISPI_DISABLED)
    for index, value in zip(DISPI_SAVED, values[1:]):
        if index != vga_device.VBE_DISPI_INDEX_ENABLE:
            device.dispi_write(index, value)
    device.dispi_write(vga_device.VBE_DISPI_INDEX_ENABLE, enable | vga_device.VBE_DISPI_NOCLEARMEM)
    device.regs[vga_device.VBE_DISPI_INDEX_ENABLE] = enable


def handle_104f04(bios, regs):
    """DL=00h: buffer size for the CX states in 64-byte blocks; 01h save; 02h restore."""
    states, command = regs.cx, regs.dl
    if states & ~0x0F or command > 2:
        regs.ax = AX_FAILED
        return
    parts = _state_parts(bios, states)
    address = (regs.es << 4) + regs.bx
    if command == 0:
        total = sum(length for length, _, _ in parts)
        regs.bx = (total + SAVE_BLOCK - 1) // SAVE_BLOCK
    elif command == 1:
        bios.mem.dma_write(address, b"".join(save() for _, save, _ in parts))
    else:
        for length, _, restore in parts:
            restore(bytes(bios.mem.dma_read(address, length)))
            address += length
    regs.ax = AX_OK


# -- AX=4F05h..4F0Ah -------------------------------------------------------------------
def handle_104f05(bios, regs):
    """Window (bank) control: BH=00h set window BL to DX, 01h get it."""
    if regs.bh > 1 or regs.bl > 1:
        regs.ax = AX_FAILED
        return
    if bios.video.vbe_mode & modeset.MF_LINEARFB:
        regs.ax = AX_INVALID_IN_MODE
        return
    device = _device(bios)
    if not device.enabled() or regs.bl != 0:
        regs.ax = AX_FAILED
        return
    if regs.bh:
        regs.dx = device.dispi_read(vga_device.VBE_DISPI_INDEX_BANK)
    else:
        device.dispi_write(vga_device.VBE_DISPI_INDEX_BANK, regs.dx)
        if device.dispi_read(vga_device.VBE_DISPI_INDEX_BANK) != regs.dx:
            regs.ax = AX_FAILED
            return
    regs.ax = AX_OK


def _line_length(bios, mode):
    device = _device(bios)
    if device.enabled():
        return device.line_length()
    return vgamodes.line_size(mode)


def handle_104f06(bios, regs):
    """Logical scan line length: BL=00h set in pixels, 01h get, 02h set in bytes."""
    mode = modeset.current_mode(bios)
    if regs.bl > 2 or mode is None:
        regs.ax = AX_FAILED
        return
    bpp = vgamodes.bits_per_pixel(mode)
    device = _device(bios)
    if regs.bl != 1 and device.enabled():
        length = (regs.cx * bpp + 7) // 8 if regs.bl == 0 else regs.cx
        device.dispi_write(vga_device.VBE_DISPI_INDEX_VIRT_WIDTH, length * 8 // bpp)
    length = _line_length(bios, mode)
    if length <= 0:
        regs.ax = AX_FAILED
        return
    regs.bx = length
    regs.cx = length * 8 // bpp
    regs.dx = min(vga_device.VRAM_SIZE // length, 0xFFFF)
    regs.ax = AX_OK


def handle_104f07(bios, regs):
    """Display start: BL=00h/80h set to pixel CX of line DX, 01h get."""
    mode = modeset.current_mode(bios)
    device = _device(bios)
    if mode is None or regs.bl not in (0x00, 0x01, 0x80):
        regs.ax = AX_FAILED
        return
    bpp = vgamodes.bits_per_pixel(mode)
    length = _line_length(bios, mode)
    if regs.bl == 0x01:
        start = 0
        if device.enabled():
            start = (device.dispi_read(vga_device.VBE_DISPI_INDEX_Y_OFFSET) * length +
                     device.dispi_read(vga_device.VBE_DISPI_INDEX_X_OFFSET) * bpp // 8)
        regs.dx = start // length
        regs.cx = (start % length) * 8 // bpp
    elif device.enabled():
        start = (regs.cx * bpp + 7) // 8 + length * regs.dx
        device.dispi_write(vga_device.VBE_DISPI_INDEX_X_OFFSET, (start % length) * 8 // bpp)
        device.dispi_write(vga_device.VBE_DISPI_INDEX_Y_OFFSET, start // length)
    regs.ax = AX_OK


def handle_104f08(bios, regs):
    """DAC palette format: BL=00h set BH bits per primary (6 or 8), 01h get."""
    mode = modeset.current_mode(bios)
    if mode is None:
        regs.ax = AX_FAILED
        return
    if mode.memmodel == MM_DIRECT:
        regs.ax = AX_INVALID_IN_MODE
        return
    device = _device(bios)
    if regs.bl > 1:
        regs.ax = AX_FAILED
        return
    enable = device.dispi_read(vga_device.VBE_DISPI_INDEX_ENABLE)
    if regs.bl == 0:
        if regs.bh not in (6, 8) or (regs.bh == 8 and not device.enabled()):
            regs.ax = AX_FAILED
            return
        if device.enabled():
            enable = (enable | vga_device.VBE_DISPI_8BIT_DAC) if regs.bh == 8 else \
                (enable & ~vga_device.VBE_DISPI_8BIT_DAC)
            device.dispi_write(vga_device.VBE_DISPI_INDEX_ENABLE, enable)
    regs.bh = 8 if enable & vga_device.VBE_DISPI_8BIT_DAC else 6
    regs.ax = AX_OK


def handle_104f09(bios, regs):
    """Palette data: BL=00h/80h set CX entries from DL out of ES:DI (blue, green, red,
    pad), 01h get them; 8-bit modes only."""
    mode = modeset.current_mode(bios)
    if mode is None:
        regs.ax = AX_FAILED
        return
    if mode.memmodel == MM_DIRECT or mode.depth > 8:
        regs.ax = AX_INVALID_IN_MODE
        return
    start, count = regs.dl, regs.cx
    if regs.dh or start + count > (1 << mode.depth) or regs.bl not in (0x00, 0x01, 0x80):
        regs.ax = AX_FAILED
        return
    device = _device(bios)
    address = (regs.es << 4) + regs.di
    if regs.bl == 0x01:
        rgb = device.get_palette(start, count)
        table = bytearray(4 * count)
        table[0::4], table[1::4], table[2::4] = rgb[2::3], rgb[1::3], rgb[0::3]
        bios.mem.dma_write(address, bytes(table))
    else:
        table = bytes(bios.mem.dma_read(address, 4 * count))
        rgb = bytearray(3 * count)
        rgb[0::3], rgb[1::3], rgb[2::3] = table[2::4], table[1::4], table[0::4]
        device.set_palette(start, bytes(rgb))
    regs.ax = AX_OK


def handle_104f10(bios, regs):
    """Display power management: capabilities, set and get the state (kept, not shown)."""
    if regs.bl == 0x00:
        regs.bx = 0x0F30
    elif regs.bl == 0x01:
        bios.video.power_state = regs.bh & 0x0F
    elif regs.bl == 0x02:
        regs.bh = bios.video.power_state
    else:
        regs.ax = AX_FAILED
        return
    regs.ax = AX_OK


def handle_104fxx(bios, regs):
    """Functions not offered (4F0Ah protected-mode interface, 4F0Bh, 4F15h DDC ...)."""
    regs.ax = AX_UNSUPPORTED


VBE_FUNCTIONS = {
    0x00: handle_104f00, 0x01: handle_104f01, 0x02: handle_104f02, 0x03: handle_104f03,
    0x04: handle_104f04, 0x05: handle_104f05, 0x06: handle_104f06, 0x07: handle_104f07,
    0x08: handle_104f08, 0x09: handle_104f09, 0x10: handle_104f10,
}


def handle_104f(bios, regs):
    VBE_FUNCTIONS.get(regs.al, handle_104fxx)(bios, regs)
