"""The machine: interrupts through the guest's IVT, exceptions, faults, halts, idle time,
timeouts and budgets, each ending the run with its own stop reason."""
from pvboot.emu.clock import TICK_HZ
from pvboot.tools import runner

EXIT_AL = "out 0xf4, al\n"

# Interrupts off, segments 0, the stack below the boot sector's page.
REAL_MODE_START = """
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7000
"""

# Real -> 32-bit protected mode with flat segments (code 0x08, data 0x10), as GRUB does.
PROTECTED_MODE_ENTRY = """
        cli
        lgdt [gdtr]
        mov eax, cr0
        or eax, 1
        mov cr0, eax
        ljmp 0x08, offset pm32
    .code32
    pm32:
        mov ax, 0x10
        mov ds, ax
        mov ss, ax
        mov esp, 0x7000
"""
GDT_16BIT = """
        .quad 0x00009a000000ffff
        .quad 0x000092000000ffff
"""


def flat_gdt(extra=""):
    """The GDT: null, flat 32-bit code 0x08 and data 0x10, then `extra` descriptors."""
    return """
    .align 8
    gdt:
        .quad 0
        .quad 0x00cf9a000000ffff
        .quad 0x00cf92000000ffff
    """ + extra + """
    gdtr:
        .word gdtr - gdt - 1
        .long gdt
"""


FLAT_GDT = flat_gdt()


def back_to_real_mode(target):
    """From 32-bit protected mode back to real mode at label `target`, through the 16-bit
    descriptors 0x18 (code) and 0x20 (data) of flat_gdt(GDT_16BIT), as GRUB goes."""
    return f"""
        ljmp 0x18, offset pm16
    .code16
    pm16:
        mov ax, 0x20
        mov ds, ax
        mov eax, cr0
        and eax, 0xfffffffe
        mov cr0, eax
        ljmp 0, offset {target}
"""


def run(boot_program, source, **kw):
    kw.setdefault("timeout", 10)
    return runner.boot([boot_program(source)], **kw)


def test_exit_port_value_is_the_stop_value(boot_program):
    result = run(boot_program, "mov al, 0x2a\n" + EXIT_AL + "hlt")
    assert result.stop.reason == "exit"
    assert result.stop.exit_value == 0x2A
    assert result.exit_code == runner.EXIT_TEST_FAILURE


def test_guest_vector_is_honoured_and_iret_restores_flags(boot_program):
    # Install a handler for INT 60h that sets BX and returns; the caller's CF must survive.
    source = """
        cli
        xor ax, ax
        mov ds, ax
        mov word ptr [0x60*4], offset handler
        mov word ptr [0x60*4+2], 0
        mov bx, 0
        stc
        int 0x60
        jnc bad
        cmp bx, 0x1234
        jne bad
        pushf
        pop ax
        test ax, 0x0200          # IF back to what it was (clear) after iret
        jnz bad
        mov al, 0
        out 0xf4, al
    bad:
        mov al, 1
        out 0xf4, al
    handler:
        mov bx, 0x1234
        iret
    """
    result = run(boot_program, source)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0)


def test_interrupt_clears_if_and_pushes_a_real_mode_frame(boot_program):
    source = """
        xor ax, ax
        mov ds, ax
        mov word ptr [0x61*4], offset handler
        mov word ptr [0x61*4+2], 0
        sti
        int 0x61
    after:
        mov al, 1
        out 0xf4, al
    handler:
        pushf
        pop ax
        test ax, 0x0200          # the CPU clears IF on entry
        jnz after
        mov bp, sp
        cmp word ptr [bp], offset after   # IP pushed is the instruction after `int`
        jne after
        cmp word ptr [bp+2], 0
        jne after
        mov al, 0
        out 0xf4, al
    """
    result = run(boot_program, source)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0)


def test_divide_error_with_guest_handler_is_delivered(boot_program):
    source = """
        xor ax, ax
        mov ds, ax
        mov word ptr [0], offset handler
        mov word ptr [2], 0
        xor cx, cx
    fault:
        div cx
        mov al, 1
        out 0xf4, al
    handler:
        mov bp, sp
        cmp word ptr [bp], offset fault   # a fault pushes the faulting instruction
        jne wrong
        mov al, 0
        out 0xf4, al
    wrong:
        mov al, 2
        out 0xf4, al
    """
    result = run(boot_program, source)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0)


def test_unhandled_exception_is_a_crash_with_a_report(boot_program):
    result = run(boot_program, "xor cx, cx\ndiv cx\nhlt")
    assert result.stop.reason == "cpu-exception"
    assert result.exit_code == runner.EXIT_CRASH
    assert "div" in result.stop.report and "CS:IP" in result.stop.report


def test_invalid_opcode_is_a_crash(boot_program):
    result = run(boot_program, "nop\nud2\n")
    assert result.stop.reason == "invalid-opcode"
    assert result.exit_code == runner.EXIT_CRASH
    assert "ud2" in result.stop.report


def test_fetch_from_unmapped_memory_is_a_crash(boot_program):
    # Enter 32-bit protected mode and jump far beyond the end of RAM.
    source = PROTECTED_MODE_ENTRY + """
        mov eax, 0x40000000
        jmp eax
    .code16
    """ + FLAT_GDT
    result = run(boot_program, source)
    assert result.stop.reason == "unmapped-fetch"
    assert result.exit_code == runner.EXIT_CRASH


def test_hlt_with_interrupts_off_halts(boot_program):
    result = run(boot_program, "cli\nhlt\n")
    assert result.stop.reason == "halted"
    assert result.exit_code == runner.EXIT_SUCCESS


def test_hlt_with_interrupts_on_waits_for_the_timer_and_fast_forwards(boot_program):
    # Sleep in `hlt` until the BIOS tick count has advanced by 91 ticks (~5 s).
    source = """
        xor ax, ax
        mov ds, ax
        mov bx, [0x46c]
        add bx, 91
        sti
    wait:
        hlt
        mov ax, [0x46c]
        cmp ax, bx
        jb wait
        mov al, 0
        out 0xf4, al
    """
    result = run(boot_program, source)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0)
    assert result.counters["virtual_seconds"] >= 91 / TICK_HZ
    # Most of the 5 s were skipped, not slept (real time may add a few ticks under load).
    assert result.counters["idle"] >= 1
    assert result.counters["skipped_seconds"] > 3.0


def test_hlt_in_protected_mode_with_interrupts_off_halts(boot_program):
    result = run(boot_program, PROTECTED_MODE_ENTRY + "    hlt\n    jmp pm32\n.code16\n" + FLAT_GDT,
                 timeout=5)
    assert result.stop.reason == "halted"


def test_hlt_in_protected_mode_with_interrupts_on_resumes_and_lets_time_pass(boot_program):
    # pvboot delivers no interrupts through a protected-mode IDT; a hlt there must still
    # return (time passes to the next tick) rather than halt the machine or spin.
    source = PROTECTED_MODE_ENTRY + """
        sti
        hlt
        hlt
        hlt
        mov al, 0
        out 0xf4, al
    .code16
    """ + FLAT_GDT
    result = run(boot_program, source, timeout=10)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0)
    assert result.counters["idle"] == 3
    assert result.counters["virtual_seconds"] >= 2 / TICK_HZ


def test_wall_clock_timeout(boot_program):
    result = run(boot_program, "spin: jmp spin", timeout=0.5)
    assert result.stop.reason == "timeout"
    assert result.exit_code == runner.EXIT_TEST_FAILURE


def test_instruction_budget(boot_program):
    result = run(boot_program, "spin: inc ax\njmp spin", max_insns=5000)
    assert result.stop.reason == "insn-limit"
    assert result.exit_code == runner.EXIT_TEST_FAILURE


def test_unused_vectors_return(boot_program):
    # A software interrupt nobody implements must just return, as a BIOS's dummy iret does.
    result = run(boot_program, "int 0x77\nint 0x50\nmov al, 0\nout 0xf4, al")
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0)


def test_protected_mode_memory_above_1mib_is_visible_to_the_firmware(boot_program):
    # GRUB-style round trip: a marker written at 2 MiB in protected mode must be in the
    # firmware's (shared) memory once the guest is back in real mode.
    # 16-bit descriptors 0x18 (code) and 0x20 (data) for the way back, as GRUB uses.
    source = PROTECTED_MODE_ENTRY + """
        mov dword ptr [0x200000], 0xfeedbeef
""" + back_to_real_mode("real") + """
    real:
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov al, 0
        out 0xf4, al
    """ + flat_gdt(GDT_16BIT)
    from pvboot.emu.machine import Machine
    from pvboot.firmware.bios import Bios, BiosConfig
    from pvboot.emu.diskimage import DiskImage
    path = boot_program(source)
    machine = Machine()
    disk = DiskImage(path, kind="hd")
    try:
        Bios(machine, BiosConfig(disks=[disk]))
        stop = machine.run(timeout=10)
        assert (stop.reason, stop.exit_value) == ("exit", 0)
        assert machine.mem.read_u32(0x200000) == 0xFEEDBEEF
        assert machine.cpu.in_real_mode()
    finally:
        disk.close()
        machine.close()


def test_interrupt_vectors_come_from_the_idt_register(boot_program):
    # Move the IVT to 0x8000 with lidt: `int 0x60` must use the entry found there.
    source = """
        cli
        xor ax, ax
        mov ds, ax
        mov word ptr [0x8000 + 0x60*4], offset handler
        mov word ptr [0x8000 + 0x60*4 + 2], 0
        lidt [moved]
        int 0x60
        mov al, 1
        out 0xf4, al
    handler:
        mov al, 0
        out 0xf4, al
    moved:
        .word 0x3ff
        .long 0x8000
    """
    result = run(boot_program, source)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0)


def test_an_interrupt_past_the_idt_limit_shuts_the_cpu_down(boot_program):
    # QEMU triple-faults (resets) on `lidt` limit 0 then `int3`; pvboot stops the same way.
    result = run(boot_program, "cli\nlidt [zero]\nint3\nmov al, 1\nout 0xf4, al\nzero: .word 0\n.long 0")
    assert result.stop.reason == "triple-fault"
    assert result.exit_code == runner.EXIT_CRASH
