"""Rebuilds roms/bios.bin and roms/bios.sym, the BIOS ROM, from roms/bios.asm.

    python -m pvboot.tools.build_rom           # assemble and write roms/bios.bin + bios.sym
    python -m pvboot.tools.build_rom --check   # exit 1 if they are out of date

The ROM's entry stubs are assembled with keystone at their final addresses.  keystone
exposes no symbol table, so bios.asm is cut at its top-level labels and each piece is
assembled on its own; the labels become the symbol table (bios.sym) the firmware uses
to fill the IVT and to know which stub trapped.  pvboot itself loads the prebuilt
files: importing keystone and assembling cost ~20 ms of every start.
"""
import re
import sys

import keystone

from pvboot.roms import (DATA_AREA_OFFSET, RESET_VECTOR_OFFSET, ROM_BASE, ROM_SIZE, ROMS_DIR, Rom,
                  format_symbols)

SOURCE = ROMS_DIR / "bios.asm"
IMAGE = ROMS_DIR / "bios.bin"
SYMBOLS = ROMS_DIR / "bios.sym"

_LABEL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s*(?:;.*)?$")


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


def assemble_rom(source=SOURCE):
    """Assemble roms/bios.asm into a 64 KiB ROM at 0xF0000; returns a roms.Rom."""
    ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_16)
    # AT&T syntax keeps keystone from adding 0x66 to 16-bit ret/call/push.
    ks.syntax = keystone.KS_OPT_SYNTAX_ATT
    image = bytearray(b"\xFF" * ROM_SIZE)
    symbols, sizes = {}, {}
    offset = 0
    for label, lines in split_entries(source.read_text()):
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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    rom = assemble_rom()
    outputs = {IMAGE: rom.image, SYMBOLS: format_symbols(rom).encode()}
    if argv == ["--check"]:
        stale = [path.name for path, data in outputs.items()
                 if not path.exists() or path.read_bytes() != data]
        if stale:
            print(f"{', '.join(stale)} out of date: run python -m pvboot.tools.build_rom", file=sys.stderr)
            return 1
        print("roms/bios.bin and roms/bios.sym are up to date")
        return 0
    if argv:
        print("usage: python -m pvboot.tools.build_rom [--check]", file=sys.stderr)
        return 2
    for path, data in outputs.items():
        path.write_bytes(data)
        print(f"wrote {path} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
