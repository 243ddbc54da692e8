# pvboot bench: guest interrupt round trips. GNU as, AT&T syntax, .code16; one boot
# sector, assembled by bench/guests.py with --defsym ITERATIONS=<count>.
#
# Calls INT 13h AH=01h (status of the last operation: no disk access, so each call
# is one trip guest -> BIOS -> guest) ITERATIONS times on the boot drive, then
# writes 0 to port 0xF4 (QEMU isa-debug-exit).

        .code16
        .text
        .globl _start

        .set EXIT_PORT, 0xF4

        .include "boot_start.inc"   # roms/: _start, start: CS = DS = ES = SS = 0, SP = 7C00h
        sti
        cld
        movb %dl, drive
        movl $ITERATIONS, counter

1:      movb $0x01, %ah
        movb drive, %dl
        int $0x13
        decl counter
        jnz 1b

        xorb %al, %al
        outb %al, $EXIT_PORT
halt:   cli
        hlt
        jmp halt

drive:          .byte 0
        .balign 4
counter:        .long 0

        .org 510
        .byte 0x55, 0xAA
