# floppy_swap: boots from floppy 00h, prints "WAITING FOR SWAP" and reads C1 H0 S1
# (LBA 36, zeros on this diskette) until its first byte is 42h, the mark of the
# diskette swapped in from outside the run; then prints the AH=15h and AH=16h
# answers and the read's status, and exits.  Not in build.PROGRAMS: it needs a swap.

        .include "lib.inc"

        .set BUF_SEG, 0x3000

main:
        PUTLN "WAITING FOR SWAP"
1:      movw $BUF_SEG, %ax
        movw %ax, %es
        xorw %bx, %bx
        movb %bl, %es:(%bx)
        movw $0x0201, %ax
        movw $0x0101, %cx               # C1 S1
        xorb %dh, %dh
        movb boot_drive, %dl
        int $0x13
        jc 2f
        cmpb $0x42, %es:0
        jne 1b
        pushf
        PUTS "READ NEW"
        popf
        call print_ah_cf
        call newline
        movb $0x15, %ah
        movb boot_drive, %dl
        int $0x13
        pushf
        PUTS "AH15"
        popf
        call print_ah_cf
        call newline
        movb $0x16, %ah
        movb boot_drive, %dl
        int $0x13
        pushf
        PUTS "AH16"
        popf
        call print_ah_cf
        call newline
        EXIT 0
2:      pushf
        PUTS "READ ERROR"
        popf
        call print_ah_cf
        call newline
        EXIT 1
