# pvboot bench: a CPU-bound real-mode loop. GNU as, AT&T syntax, .code16; one boot
# sector, assembled by bench/guests.py with --defsym ITERATIONS=<count>.
#
# ITERATIONS passes of a register-only arithmetic loop (add, rotate, xor, lea,
# dec/jnz: five instructions), then port 0xF4 <- 0. bench/rawcpu.py runs the very
# same bytes on a bare Unicorn from _start to loop_done (symbols read from the ELF).

        .code16
        .text
        .globl _start, loop_done

        .set EXIT_PORT, 0xF4

        .include "boot_start.inc"   # roms/: _start, start: CS = DS = ES = SS = 0, SP = 7C00h
        movl $ITERATIONS, %ecx
        movl $0x12345678, %eax
        xorl %ebx, %ebx

1:      addl %ecx, %eax
        roll $3, %eax
        xorl %eax, %ebx
        leal 1(%ebx,%eax), %edx
        decl %ecx
        jnz 1b
loop_done:
        movl %edx, result
        xorb %al, %al
        outb %al, $EXIT_PORT
halt:   cli
        hlt
        jmp halt

        .balign 4
result:         .long 0

        .org 510
        .byte 0x55, 0xAA
