"""Shared test helpers: small inline 16-bit guest programs, assembled with GNU as."""
import os
import tempfile
from pathlib import Path

import pytest

from tests.guests import build

# A `pvboot serve` the developer left running must not take the suite's commands
# (tests/tools/test_serve.py points its own at a server it starts).
os.environ["PVBOOT_SERVER"] = "off"


def assemble16(source, org=0x7C00, boot_signature=True):
    """Assemble inline GNU-as source (Intel syntax, `.code16`) into a flat binary at `org`.

    With boot_signature the result is padded to 512 bytes ending in 55 AA (the program
    must fit in 510 bytes)."""
    if not build.tools_available():
        pytest.skip("GNU as/ld (Debian binutils) not installed")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "prog.S"
        src.write_text(".code16\n.intel_syntax noprefix\n.text\n.globl _start\n_start:\n" + source + "\n")
        code = build.assemble(src, base=org)
    if boot_signature:
        assert len(code) <= 510, f"boot program is {len(code)} bytes"
        code = code.ljust(510, b"\0") + b"\x55\xAA"
    return code


@pytest.fixture
def boot_program(tmp_path):
    """Write an assembled boot program (plus padding sectors) to a disk image; returns its path."""
    def make(source, sectors=64, name="disk.img"):
        code = assemble16(source)
        path = tmp_path / name
        path.write_bytes(code + bytes(512 * (sectors - 1)))
        return str(path)
    return make
