# pvboot bench: INT 13h AH=42h bulk read. GNU as, AT&T syntax, .code16; one boot
# sector, assembled by bench/guests.py with --defsym SECTORS=<sectors to read>.
#
# Reads SECTORS sectors from LBA 1 on in 127-sector AH=42h calls into 1000:0000
# (a 64 KiB-aligned, page-aligned buffer; every call overwrites it), checks CF and
# the count written back, and leaves through port 0xF4 (QEMU isa-debug-exit):
# 0 when every call succeeded, 1 on the first failure.

        .code16
        .text
        .globl _start

        .set EXIT_PORT, 0xF4
        .set BUF_SEG, 0x1000
        .set CHUNK, 127

        .include "boot_start.inc"   # roms/: _start, start: CS = DS = ES = SS = 0, SP = 7C00h
        sti
        cld
        movb %dl, drive
        movl $SECTORS, remaining

next:   movl remaining, %eax
        testl %eax, %eax
        jz done
        cmpl $CHUNK, %eax
        jbe 1f
        movl $CHUNK, %eax
1:      movw %ax, want
        movw %ax, dap_count
        movw $dap, %si
        movb $0x42, %ah
        movb drive, %dl
        int $0x13
        jc fail
        movw dap_count, %ax
        cmpw want, %ax
        jne fail
        movzwl %ax, %eax
        addl %eax, dap_lba
        subl %eax, remaining
        jmp next

done:   xorb %al, %al
        outb %al, $EXIT_PORT
        jmp halt
fail:   movb $1, %al
        outb %al, $EXIT_PORT
halt:   cli
        hlt
        jmp halt

drive:          .byte 0
want:           .word 0
remaining:      .long 0
        .balign 4
dap:    .byte 16, 0                     # EDD disk address packet
dap_count:
        .word 0
        .word 0, BUF_SEG                # buffer offset, segment
dap_lba:
        .long 1, 0

        .org 510
        .byte 0x55, 0xAA
