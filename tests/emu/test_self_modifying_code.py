"""Stores into code that already ran take effect, as on a PC: whatever the store
instruction, after other stores to the same page, in real and protected mode, and the
GRUB pattern (protected-mode code patching the segment immediates of a real-mode
helper that already ran).  Every guest exits 0 when it ran what memory held; the same
images give the same exit under QEMU + SeaBIOS."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvboot.tools import runner
from tests import qemu
from tests.emu.test_machine import (FLAT_GDT, GDT_16BIT, PROTECTED_MODE_ENTRY, REAL_MODE_START,
                                    back_to_real_mode, flat_gdt)

# Two blocks on one page, both run once; a plain store patches the first, then STORE
# patches the second block's immediate to 0x22 (`imm_b + 1`).  Each block is
# `mov al, imm8; ret` (B0 ib C3).
TWO_BLOCKS = REAL_MODE_START + """
        call blk_a
        call blk_b
        mov byte ptr [imm_a + 1], 0x11
    {store}
        call blk_a
        cmp al, 0x11
        jne bad_a
        call blk_b
        cmp al, 0x22
        jne bad_b
        mov al, 0
        out 0xf4, al
    bad_a:
        mov al, 1
        out 0xf4, al
    bad_b:
        mov al, 2
        out 0xf4, al
    replacement:
        mov al, 0x22
        ret
        .align 64
    blk_a:
    imm_a:
        mov al, 0x01
        ret
        .align 64
    blk_b:
    imm_b:
        mov al, 0x02
        ret
"""

STORES = {
    "mov": "mov byte ptr [imm_b + 1], 0x22",
    "mov-other-segment": """
        mov ax, 0x07c0
        mov fs, ax
        mov byte ptr fs:[imm_b + 1 - 0x7c00], 0x22""",
    "mov-dword": "mov dword ptr [imm_b], 0x90c322b0",
    "stosb": """
        mov di, offset imm_b + 1
        mov al, 0x22
        stosb""",
    "rep-movsb": """
        mov si, offset replacement
        mov di, offset blk_b
        mov cx, 3
        cld
        rep movsb""",
    "push": """
        mov bx, sp
        mov sp, offset imm_b + 3
        mov ax, 0xc322
        push ax
        mov sp, bx""",
    "xchg": """
        mov al, 0x22
        xchg al, [imm_b + 1]""",
    "add": "add byte ptr [imm_b + 1], 0x20",
}


# A block that patches its own next instruction and runs it at once, with no jump in
# between (an `int n` caller patching n does this): a Pentium runs the new bytes, so
# pvboot must, on the block's first run and on later ones.
SAME_BLOCK = REAL_MODE_START + """
        mov bl, 0x22
        call blk
        cmp al, 0x22
        jne bad
        mov bl, 0x33
        call blk
        cmp al, 0x33
        jne bad
        mov al, 0
        out 0xf4, al
    bad:
        mov al, 1
        out 0xf4, al
        .align 64
    blk:
        mov byte ptr [imm + 1], bl
    imm:
        mov al, 0x11
        ret
"""


def _boot(path, **kw):
    return runner.boot([path], timeout=20, **kw)


@pytest.mark.parametrize("store", sorted(STORES))
def test_second_patch_on_a_page_takes_effect(boot_program, store):
    result = _boot(boot_program(TWO_BLOCKS.format(store=STORES[store])))
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.stop


def test_rep_movsb_over_a_whole_page_of_code_that_ran(boot_program):
    # Run a page of code (a block per 64 bytes), copy new code over all of it with one
    # rep movsb from another page, run it again: every block gives the new answer.
    source = REAL_MODE_START + """
        mov bx, 0x9000
    fill:                       # 64 blocks of `mov al, 1; ret` at 0x9000, 64 bytes apart
        mov word ptr [bx], 0x01b0
        mov byte ptr [bx + 2], 0xc3
        add bx, 64
        cmp bx, 0xa000
        jne fill
        mov bx, 0x9000
    run_old:
        call bx
        cmp al, 1
        jne bad
        add bx, 64
        cmp bx, 0xa000
        jne run_old
        mov bx, 0x2000          # the new code at 0x2000: `mov al, 2; ret` in each slot
    make_new:
        mov word ptr [bx], 0x02b0
        mov byte ptr [bx + 2], 0xc3
        add bx, 64
        cmp bx, 0x3000
        jne make_new
        mov si, 0x2000
        mov di, 0x9000
        mov cx, 0x1000
        cld
        rep movsb
        mov bx, 0x9000
    run_new:
        call bx
        cmp al, 2
        jne bad
        add bx, 64
        cmp bx, 0xa000
        jne run_new
        mov al, 0
        out 0xf4, al
    bad:
        mov al, 1
        out 0xf4, al
    """
    result = _boot(boot_program(source))
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.stop


# Protected mode, blocks built at 0x20000 (a page of their own, as a loader's code is
# apart from the code patching it): run both, a data store to the page, patch both.
PROTECTED_MODE_PATCH = PROTECTED_MODE_ENTRY + """
        mov dword ptr [0x20000], 0x90c301b0     # mov al, 1; ret
        mov dword ptr [0x20040], 0x90c302b0     # mov al, 2; ret
        mov eax, 0x20000
        call eax
        mov eax, 0x20040
        call eax
        mov dword ptr [0x20100], 1              # a plain data store to the page
        mov byte ptr [0x20001], 0x11
        mov edi, 0x20041
        mov al, 0x22
        push ds
        pop es
        stosb
        mov eax, 0x20000
        call eax
        cmp al, 0x11
        jne bad32
        mov eax, 0x20040
        call eax
        cmp al, 0x22
        jne bad32
        mov al, 0
        out 0xf4, al
    bad32:
        mov al, 3
        out 0xf4, al
    .code16
""" + FLAT_GDT


def test_store_from_protected_mode(boot_program):
    result = _boot(boot_program(PROTECTED_MODE_PATCH))
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.stop


# GRUB's real-mode BIOS-call helper: protected-mode code writes the segment values of
# the next call into the helper's `mov ax, imm16` instructions, switches to real mode
# and runs it.  Each round patches DS and ES to new values; the helper reports what it
# got through memory at 0x600.
GRUB_STYLE_PATCH = """
        cli
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 0x7000
        mov dword ptr [round_count], 0
    round:
""" + PROTECTED_MODE_ENTRY + """
        mov eax, [round_count]       # a data store to the helper's page first
        inc eax
        mov [round_count], eax
        mov ecx, eax
        shl ecx, 4
        add ecx, 0x1000
        mov word ptr [ds_value + 1], cx     # DS = 0x1000 + 16 * round
        jmp 1f
    1:
        add ecx, 0x0800
        mov word ptr [es_value + 1], cx     # ES = DS + 0x800
""" + back_to_real_mode("helper") + """
    helper:
    ds_value:
        mov ax, 0x1234
        mov ds, ax
        jmp 1f                      # the ES patch lands in another translated block
    1:
    es_value:
        mov ax, 0x5678
        mov es, ax
        mov bx, ds
        mov cx, es
        xor ax, ax
        mov ds, ax
        mov [0x600], bx
        mov [0x602], cx
        mov eax, [round_count]
        mov edx, eax
        shl edx, 4
        add edx, 0x1000
        cmp bx, dx
        jne bad_ds
        add dx, 0x0800
        cmp cx, dx
        jne bad_es
        cmp eax, 5
        jb round
        mov al, 0
        out 0xf4, al
    bad_ds:
        mov al, 4
        out 0xf4, al
    bad_es:
        mov al, 5
        out 0xf4, al
    round_count:
        .long 0
""" + flat_gdt(GDT_16BIT)


def test_block_patching_its_own_next_instruction(boot_program):
    result = _boot(boot_program(SAME_BLOCK))
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.stop


def test_grub_style_patching_of_segment_immediates(boot_program):
    result = _boot(boot_program(GRUB_STYLE_PATCH))
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.stop


@pytest.mark.skipif(not qemu.qemu_available(), reason="QEMU (Debian qemu-system-x86) not installed")
@pytest.mark.parametrize("name", ["two-blocks-push", "protected", "grub-style", "same-block"])
def test_qemu_runs_the_same_guests_to_the_same_exit(boot_program, name):
    source = {"two-blocks-push": TWO_BLOCKS.format(store=STORES["push"]),
              "protected": PROTECTED_MODE_PATCH, "grub-style": GRUB_STYLE_PATCH,
              "same-block": SAME_BLOCK}[name]
    path = boot_program(source)
    exit_value, _serial = qemu.run_qemu(path, timeout=30)
    assert exit_value == _boot(path).stop.exit_value == 0


# Property: blocks anywhere (the boot sector's own page, low and high conventional
# memory), patched in any order by any store kind, always run what memory holds.
BLOCK_PAGES = (0x7000, 0x9000, 0x20000, 0x8F000)
PATCHES = {
    "mov": "mov byte ptr es:[{off} + 1], {value}",
    "xchg": "mov al, {value}\n        xchg es:[{off} + 1], al",
    "stosb": "mov di, {off} + 1\n        mov al, {value}\n        stosb",
    "push": ("mov bx, sp\n        mov dx, ss\n        mov ax, es\n        mov ss, ax\n"
             "        mov sp, {off} + 3\n        mov ax, 0xcb00 + {value}\n        push ax\n"
             "        mov ss, dx\n        mov sp, bx"),
}


def _far_block(linear):
    return linear >> 4, linear & 0xF


def _patch_program(blocks, steps):
    """blocks: linear addresses of `mov al, imm8; retf`; steps: (block, kind, value,
    block to call after).  Each call checks AL against what the test expects."""
    lines = [REAL_MODE_START]
    values = {}
    for i, linear in enumerate(blocks):
        seg, off = _far_block(linear)
        lines.append(f"mov ax, {seg:#x}\n        mov es, ax\n"
                     f"        mov dword ptr es:[{off}], {0x90CB00B0 | (i + 1) << 8:#x}\n")
        values[i] = i + 1

    def call_and_check(i):
        seg, off = _far_block(blocks[i])
        return f"lcall {seg:#x}, {off}\n        cmp al, {values[i]}\n        jne bad\n"
    lines += [call_and_check(i) for i in range(len(blocks))]
    for block, kind, value, then in steps:
        seg, off = _far_block(blocks[block])
        lines.append(f"mov ax, {seg:#x}\n        mov es, ax\n        "
                     + PATCHES[kind].format(off=off, value=value) + "\n")
        values[block] = value
        lines.append(call_and_check(then))
    lines += [call_and_check(i) for i in range(len(blocks))]
    lines.append("mov al, 0\n        out 0xf4, al\n    bad:\n        mov al, 1\n        out 0xf4, al\n")
    return "        ".join(lines)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_patches_in_any_order_take_effect(boot_program, data):
    count = data.draw(st.integers(2, 3))
    pages = data.draw(st.lists(st.sampled_from(BLOCK_PAGES), min_size=count, max_size=count))
    slots = data.draw(st.lists(st.integers(0, 0xBF), min_size=count, max_size=count, unique=True))
    blocks = [page + 16 * slot for page, slot in zip(pages, slots)]
    steps = data.draw(st.lists(st.tuples(st.integers(0, count - 1), st.sampled_from(sorted(PATCHES)),
                                         st.integers(0x10, 0x7F), st.integers(0, count - 1)),
                               min_size=1, max_size=4))
    result = _boot(boot_program(_patch_program(blocks, steps)))
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), (blocks, steps, result.stop)
