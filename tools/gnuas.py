"""GNU as and ld on the host: assemble guest code into a flat binary at a load address.

Builds the guest programs pvboot ships prebuilt (roms/demo.bin, roms/compare.bin), the
test kernel, the benchmark's programs and the test suite's guest programs; pvboot
itself never needs binutils at run time.  Warnings count as failures: a silently
truncated `.org` is a broken image.
"""
import shutil
import subprocess
import tempfile
from pathlib import Path

BUILD_TIMEOUT = 60
PACKAGE = "binutils"


class AssemblerError(RuntimeError):
    """as, ld, nm or objcopy failed, or is not installed (the message says which)."""


def available(symbols=False):
    """True when the tools assemble() needs are installed."""
    tools = ("as", "ld", "nm", "objcopy") if symbols else ("as", "ld")
    return all(shutil.which(tool) for tool in tools)


def _run(cmd):
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except FileNotFoundError:
        raise AssemblerError(f"{cmd[0]} not found: install the Debian package {PACKAGE}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AssemblerError(f"{' '.join(cmd)}: {exc}") from None
    if proc.returncode != 0 or proc.stderr.strip():
        raise AssemblerError(f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def assemble(source, *, base=0x7C00, defsyms=None, include_dirs=(), symbols=False):
    """Assemble `source` (a path to a .S file, or the source text) and link it at `base`
    with entry `_start`.  Returns the flat binary, or (binary, {symbol: address}) with
    symbols=True."""
    with tempfile.TemporaryDirectory(prefix="pvboot-as-") as tmp:
        tmp = Path(tmp)
        if isinstance(source, str):
            path = tmp / "prog.S"
            path.write_text(source)
        else:
            path = Path(source)
        obj, elf, out = tmp / "prog.o", tmp / "prog.elf", tmp / "prog.bin"
        cmd = ["as", "--32", "-I", str(path.parent)]
        for directory in include_dirs:
            cmd += ["-I", str(directory)]
        for name, value in sorted((defsyms or {}).items()):
            cmd += ["--defsym", f"{name}={value}"]
        _run(cmd + ["-o", str(obj), str(path)])
        link = ["ld", "-m", "elf_i386", "-nostdlib", "-Ttext", f"{base:#x}", "-e", "_start"]
        if not symbols:
            _run(link + ["--oformat", "binary", "-o", str(out), str(obj)])
            return out.read_bytes()
        _run(link + ["-o", str(elf), str(obj)])
        table = {}
        for line in _run(["nm", str(elf)]).splitlines():
            parts = line.split()
            if len(parts) == 3:
                table[parts[2]] = int(parts[0], 16)
        _run(["objcopy", "-O", "binary", str(elf), str(out)])
        return out.read_bytes(), table
