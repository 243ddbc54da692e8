"""CPUID: pvboot's default CPU is QEMU's qemu32 (what qemu-system-i386 runs by
default): PAE and TSC, no long mode.  A guest prints leaves 0, 1, 80000000h and
80000001h on COM1 under both; --cpu picks the other models Unicorn has."""
import subprocess
import sys

import pytest

from pvboot.emu.cpu import CPU_MODELS, cpu_model_id
from pvboot.tools import runner
from tests import qemu
from tests.conftest import assemble16

LEAVES = (0, 1, 0x80000000, 0x80000001)
CPUID_DUMP = """
        cli
        xor ax, ax
        mov ds, ax
        mov si, offset leaves
    next_leaf:
        mov eax, [si]
        xor ecx, ecx
        cpuid
        call hex32
        mov eax, ebx
        call hex32
        mov eax, ecx
        call hex32
        mov eax, edx
        call hex32
        mov al, 10
        call putc
        add si, 4
        cmp si, offset leaves_end
        jne next_leaf
        mov al, 0
        out 0xf4, al
    hex32:                          # EAX as 8 hex digits and a space
        mov cx, 8
    1:  rol eax, 4
        push eax
        and al, 0x0f
        add al, '0'
        cmp al, '9'
        jbe 2f
        add al, 7
    2:  call putc
        pop eax
        loop 1b
        mov al, ' '
    putc:
        mov dx, 0x3fd
        push ax
    3:  in al, dx
        test al, 0x20
        jz 3b
        pop ax
        mov dx, 0x3f8
        out dx, al
        ret
    leaves:
""" + "".join(f"        .long {leaf:#x}\n" for leaf in LEAVES) + """
    leaves_end:
"""

EDX_TSC = 1 << 4
EDX_PAE = 1 << 6
EXT_EDX_LM = 1 << 29


@pytest.fixture(scope="module")
def dump_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("cpuid") / "cpuid.img"
    path.write_bytes(assemble16(CPUID_DUMP) + bytes(63 * 512))
    return str(path)


def _leaves(console):
    """{leaf: (eax, ebx, ecx, edx)} from the guest's lines."""
    rows = [line.split() for line in console.replace("\r", "").splitlines() if line.strip()]
    rows = [row for row in rows if len(row) == 4]
    assert len(rows) == len(LEAVES), console
    return {leaf: tuple(int(word, 16) for word in row) for leaf, row in zip(LEAVES, rows)}


def _pvboot_leaves(path, **kw):
    result = runner.boot([path], timeout=20, **kw)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.stop
    return _leaves(result.console)


def test_default_cpu_has_tsc_and_pae_and_no_long_mode(dump_image):
    leaves = _pvboot_leaves(dump_image)
    assert leaves[1][3] & EDX_TSC and leaves[1][3] & EDX_PAE
    assert not leaves[0x80000001][3] & EXT_EDX_LM


@pytest.mark.skipif(not qemu.qemu_available(), reason="QEMU (Debian qemu-system-x86) not installed")
def test_default_cpu_answers_as_qemu_system_i386(dump_image):
    exit_value, serial = qemu.run_qemu(dump_image, timeout=30)
    assert exit_value == 0
    assert _pvboot_leaves(dump_image) == _leaves(serial)


def test_cpu_option_picks_another_model(dump_image):
    leaves = _pvboot_leaves(dump_image, cpu="qemu64")
    assert leaves[0x80000001][3] & EXT_EDX_LM


def test_model_names_follow_qemu_and_unknown_ones_are_refused():
    assert {"qemu32", "qemu64", "haswell", "486", "pentium", "skylake-client"} <= set(CPU_MODELS)
    assert cpu_model_id("Haswell") == cpu_model_id("haswell")
    with pytest.raises(ValueError, match="qemu32"):
        cpu_model_id("no-such-cpu")


def test_cli_refuses_an_unknown_cpu_model_with_exit_2(dump_image):
    proc = subprocess.run([sys.executable, "-m", "pvboot.tools", "boot", "--cpu", "z80", dump_image],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown CPU model 'z80'" in proc.stderr
