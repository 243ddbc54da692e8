"""What the screen shows at a moment, for --screenshot and reports: a read-only view of
the display device and the BIOS's text buffer, so a tool needs no firmware internals.

`capture(machine)` gives a Screen: the text cells of a text mode, or the pixels of a
graphics mode the hardware scans out, namely a VBE (DISPI) mode in any depth from
video memory, or VGA mode 13h from 0xA0000, each through the DAC palette as it is.
Planar and CGA modes are not rendered (Screen.kind "undrawn").  Every size comes from
the device's clamped registers or the mode table, never from a guest-written BDA field.
"""
import array
import dataclasses
import functools

from pvboot.firmware import bda
from pvboot.firmware.video import TEXT_MODES, screen_cells

MODE_13H = 0x13
MODE_13H_SIZE = (320, 200)
VGA_WINDOW = 0xA0000


@dataclasses.dataclass
class Screen:
    kind: str                  # "text", "indexed", "rgb" or "undrawn"
    mode: int                  # BDA video mode (0xFF: a VBE mode)
    cells: list = None         # text (and undrawn): the text buffer, rows of (char, attr)
    width: int = 0
    height: int = 0
    pixels: bytes = b""        # indexed: one palette index a pixel; rgb: R, G, B a pixel
    palette: bytes = b""       # indexed: 256 x (R, G, B), 8 bits each

    def rows(self):
        """The pixel rows (bytes each) of a graphics Screen."""
        stride = self.width * (3 if self.kind == "rgb" else 1)
        return [self.pixels[y * stride:(y + 1) * stride] for y in range(self.height)]


@functools.lru_cache(maxsize=None)
def _rgb_table(depth):
    """Each 16-bit pixel value of a 15- or 16-bit mode -> its R, G, B bytes."""
    green_bits = 6 if depth == 16 else 5
    red_shift = 5 + green_bits
    table = []
    for value in range(65536):
        red = (value >> red_shift) & 0x1F
        green = (value >> 5) & ((1 << green_bits) - 1)
        blue = value & 0x1F
        table.append(bytes((red << 3 | red >> 2,
                            (green << 2 | green >> 4) if green_bits == 6 else (green << 3 | green >> 2),
                            blue << 3 | blue >> 2)))
    return table


def _direct_rgb(data, width, height, depth, line, start):
    """R, G, B bytes of a direct-colour picture at `start` in `data` (video memory)."""
    out = bytearray()
    step = (depth + 7) // 8
    for y in range(height):
        row = bytes(data[start + y * line:start + y * line + width * step])
        if step == 4 or step == 3:
            rgb = bytearray(width * 3)
            rgb[0::3], rgb[1::3], rgb[2::3] = row[2::step], row[1::step], row[0::step]
            out += rgb
        else:
            out += b"".join(map(_rgb_table(depth).__getitem__, array.array("H", row)))
    return bytes(out)


def capture(machine):
    """The Screen the machine shows now."""
    mem = machine.mem
    mode = mem.buf[bda.VIDEO_MODE]
    device = machine.devices["vga"]
    scanout = device.scanout()
    if scanout is not None:
        width, height, depth, line, start = scanout
        if depth == 8:
            pixels = b"".join(bytes(device.vram_view[start + y * line:start + y * line + width])
                              for y in range(height))
            return Screen("indexed", mode, width=width, height=height, pixels=pixels,
                          palette=device.palette_rgb8())
        if depth >= 15:
            return Screen("rgb", mode, width=width, height=height,
                          pixels=_direct_rgb(device.vram_view, width, height, depth, line, start))
        return Screen("undrawn", mode, cells=screen_cells(mem))
    if mode == MODE_13H:
        width, height = MODE_13H_SIZE
        return Screen("indexed", mode, width=width, height=height,
                      pixels=mem.read(VGA_WINDOW, width * height), palette=device.palette_rgb8())
    return Screen("text" if mode in TEXT_MODES else "undrawn", mode, cells=screen_cells(mem))
