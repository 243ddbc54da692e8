"""Setting a video mode, VGA or VBE (SeaBIOS vgabios.c vga_set_mode and
bochsvga_set_mode): program the display device, load the mode's palette, clear the
screen, and describe the mode in the BDA.

INT 10h AH=00h and AX=4F02h both come here, with SeaBIOS's flag bits: AH=00h passes
the BDA's palette-loading bits and bit 7 of AL as MF_NOCLEARMEM; 4F02h passes bits
9-15 of BX (bit 14 linear frame buffer, bit 15 don't clear).
"""
from pvboot.emu.devices import vga as vga_device
from pvboot.firmware import bda, palette, vgagfx
from pvboot.firmware.vgamodes import MM_CGA, MM_PACKED, MM_PLANAR, MM_TEXT, find_mode

# Mode-set flags (SeaBIOS vgabios.h).
MF_LEGACY = 0x0001
MF_GRAYSUM = palette.MF_GRAYSUM
MF_NOPALETTE = palette.MF_NOPALETTE
MF_LINEARFB = 0x4000
MF_NOCLEARMEM = 0x8000
MF_VBEFLAGS = 0xFE00

VBE_RETURN_STATUS_FAILED = 0x01
VGAREG_VGA_CRTC_ADDRESS = 0x3D4
VGAREG_MDA_CRTC_ADDRESS = 0x3B4
MONO_MODE = 0x07
BLANK_CELL = b"\x20\x07"          # space on light grey: a cleared text screen
VIDEO_CTL_NOCLEAR = 0x80          # BDA video_ctl bit 7: the last mode set kept memory


def calc_page_size(memmodel, width, height):
    """Bytes of one display page, as the BDA's 16-bit video_pagesize keeps it."""
    if memmodel == MM_TEXT:
        size = (width * height * 2 + 2047) & ~2047
    elif memmodel == MM_CGA:
        size = 16 * 1024
    else:
        size = (width * height // 8 + 8191) & ~8191
    return size & 0xFFFF


def _clear_vga_memory(mem, mode):
    base = mode.segment << 4
    if mode.memmodel == MM_TEXT:
        mem.write(base, BLANK_CELL * (16 * 1024))
    else:
        mem.fill(base, 32 * 1024 if mode.memmodel == MM_CGA else 64 * 1024, 0)


def _program_vbe(device, mode, flags):
    """The DISPI registers for a VBE mode, as SeaBIOS's bochsvga_set_mode writes them."""
    device.dispi_write(vga_device.VBE_DISPI_INDEX_BPP, mode.depth)
    device.dispi_write(vga_device.VBE_DISPI_INDEX_XRES, mode.width)
    device.dispi_write(vga_device.VBE_DISPI_INDEX_YRES, mode.height)
    device.dispi_write(vga_device.VBE_DISPI_INDEX_BANK, 0)
    enable = vga_device.VBE_DISPI_ENABLED
    if flags & MF_NOCLEARMEM:
        enable |= vga_device.VBE_DISPI_NOCLEARMEM
    if flags & MF_LINEARFB:
        enable |= vga_device.VBE_DISPI_LFB_ENABLED
    device.dispi_write(vga_device.VBE_DISPI_INDEX_ENABLE, enable)


def set_mode(bios, number, flags):
    """Switch to mode `number` (flags stripped); 0, or VBE_RETURN_STATUS_FAILED for a
    mode the BIOS does not have."""
    mode = find_mode(number)
    if mode is None:
        return VBE_RETURN_STATUS_FAILED
    mem = bios.mem
    device = bios.machine.devices["vga"]
    device.dispi_write(vga_device.VBE_DISPI_INDEX_ENABLE, vga_device.VBE_DISPI_DISABLED)
    if number >= 0x100:
        if mode.memmodel == MM_PLANAR:
            # The 16-colour VBE modes start from VGA mode 6Ah's state.
            palette.load_mode_palette(device, 0x6A, 0)
            _clear_vga_memory(mem, find_mode(0x6A))
        elif mode.memmodel == MM_PACKED and not flags & MF_NOPALETTE:
            device.set_palette(0, palette.VGA256_PALETTE)
        _program_vbe(device, mode, flags)
    else:
        palette.load_mode_palette(device, number, flags)
        if not flags & MF_NOCLEARMEM:
            _clear_vga_memory(mem, mode)
    bios.video.mode_sets += 1
    bios.video.vbe_mode = number | (flags & MF_VBEFLAGS)
    mem.write_u8(bda.VIDEO_MODE, number if number < 0x100 else 0xFF)
    if mode.memmodel == MM_TEXT:
        mem.write_u16(bda.VIDEO_COLS, mode.width)
        mem.write_u8(bda.VIDEO_ROWS, mode.height - 1)
        mem.write_u16(bda.CURSOR_TYPE, 0x0607)
    else:
        mem.write_u16(bda.VIDEO_COLS, mode.width // mode.cwidth)
        mem.write_u8(bda.VIDEO_ROWS, mode.height // mode.cheight - 1)
        mem.write_u16(bda.CURSOR_TYPE, 0x0000)
    mem.write_u16(bda.VIDEO_PAGESIZE, calc_page_size(mode.memmodel, mode.width, mode.height))
    mem.write_u16(bda.CRTC_ADDRESS,
                  VGAREG_MDA_CRTC_ADDRESS if number == MONO_MODE else VGAREG_VGA_CRTC_ADDRESS)
    mem.write_u16(bda.CHAR_HEIGHT, mode.cheight)
    mem.write_u8(bda.VIDEO_CTL, 0x60 | (VIDEO_CTL_NOCLEAR if flags & MF_NOCLEARMEM else 0))
    mem.write_u8(bda.VIDEO_SWITCHES, 0xF9)
    mem.write_u8(bda.MODESET_CTL, mem.buf[bda.MODESET_CTL] & 0x7F)
    mem.fill(bda.CURSOR_POS, 16, 0)
    mem.write_u16(bda.VIDEO_PAGESTART, 0)
    mem.write_u8(bda.VIDEO_PAGE, 0)
    vgagfx.set_font_vectors(bios, mode.cheight)
    return 0


def current_mode(bios):
    """The Mode last set (SeaBIOS get_current_mode), or None."""
    return find_mode(bios.video.vbe_mode & ~MF_VBEFLAGS)
