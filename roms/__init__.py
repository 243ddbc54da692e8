"""The BIOS ROM image: entry stubs written in assembly (roms/bios.asm), assembled with
keystone at the ROM's address, plus the built-in demo boot program (roms/demo.bin).

keystone exposes no symbol table, so bios.asm is cut at its top-level labels and each
piece is assembled at its final address; the labels become the symbol table the
firmware uses to fill the IVT and to know which stub trapped.
"""
import functools
import importlib.resources
import re

import keystone

ROM_BASE = 0xF0000
ROM_SIZE = 0x10000
RESET_VECTOR_OFFSET = 0xFFF0
# Where the ROM keeps data tables (disk parameter tables, DPTE, config table).
DATA_AREA_OFFSET = 0xE000

_LABEL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s*(?:;.*)?$")


def _source(name):
    return importlib.resources.files(__package__).joinpath(name).read_text()


def split_entries(text):
    """[(label, [asm lines])] for each top-level label of an assembly file."""
    entries, current = [], None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].rstrip()
        match = _LABEL.match(raw.strip())
        if match and not raw.startswith((" ", "\t")):
            current = (match.group(1), [])
            entries.append(current)
        elif line.strip():
            if current is None:
                raise ValueError(f"bios.asm: code before the first label: {raw!r}")
            current[1].append(line.strip())
    return entries


class Rom:
    """The assembled ROM: `image` (64 KiB) and `symbols` (label -> linear address)."""

    def __init__(self, image, symbols, sizes):
        self.image = image
        self.symbols = symbols
        self.sizes = sizes

    def segoff(self, label):
        """(segment, offset) of a label, with the ROM's segment 0xF000."""
        return ROM_BASE >> 4, self.symbols[label] - ROM_BASE


@functools.lru_cache(maxsize=None)
def build_rom():
    """Assemble roms/bios.asm into a 64 KiB ROM at 0xF0000."""
    ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_16)
    # AT&T syntax keeps keystone from adding 0x66 to 16-bit ret/call/push (NOTES 6).
    ks.syntax = keystone.KS_OPT_SYNTAX_ATT
    image = bytearray(b"\xFF" * ROM_SIZE)
    symbols, sizes = {}, {}
    offset = 0
    for label, lines in split_entries(_source("bios.asm")):
        if label == "reset_vector":
            at = RESET_VECTOR_OFFSET
        else:
            at = offset
        code = _assemble(ks, lines, ROM_BASE + at, symbols, label)
        image[at:at + len(code)] = code
        symbols[label] = ROM_BASE + at
        sizes[label] = len(code)
        if label != "reset_vector":
            offset = at + len(code)
            if offset > DATA_AREA_OFFSET:
                raise ValueError("ROM stubs overflow into the data area")
    return Rom(bytes(image), symbols, sizes)


def _assemble(ks, lines, address, symbols, label):
    # Earlier labels may be referenced as absolute constants (e.g. a far jump to post_entry).
    text = "\n".join(lines)
    for name, linear in symbols.items():
        text = re.sub(rf"\b{name}\b", str(linear - ROM_BASE), text)
    try:
        encoding, _ = ks.asm(text, address)
    except keystone.KsError as exc:
        raise ValueError(f"bios.asm: cannot assemble {label}: {exc}") from None
    return bytes(encoding or b"")


def demo_program():
    """The built-in demo disk's boot program (assembled from roms/demo.S by tools/build_demo.py)."""
    return importlib.resources.files(__package__).joinpath("demo.bin").read_bytes()
