"""Running the pvboot command line from tests: one process per call, from the checkout."""
import os
import subprocess
import sys

from tests.conftest import assemble16

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PVBOOT = [sys.executable, "-m", "pvboot.tools"]


def pvboot(*args, timeout=60):
    return subprocess.run(PVBOOT + list(args), capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def image(tmp_path, source, name="disk.img"):
    path = tmp_path / name
    path.write_bytes(assemble16(source) + bytes(512 * 15))
    return str(path)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


PRINT_PASS = """
    mov dx, 0x3f8
    mov si, offset msg
next:
    lodsb
    test al, al
    jz done
    out dx, al
    jmp next
done:
    cli
    hlt
msg: .asciz "hello PASS\\n"
"""


_PRINT_THEN_SPIN = """
    mov dx, 0x3f8
    mov si, offset msg
next:
    lodsb
    test al, al
    jz spin
    out dx, al
    jmp next
spin:
    jmp spin
msg: .asciz "TEXT"
"""


def print_then_spin(text):
    """A boot program that prints `text` on COM1 and then spins (for runs a test stops
    or matches while the guest still runs).  `text` is GNU as string syntax."""
    return _PRINT_THEN_SPIN.replace("TEXT", text)
