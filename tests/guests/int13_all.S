# int13_all: every INT 13h function SeaBIOS implements (and some it does not, for
# AH=01h) on floppy 00h, hard disk 80h and CD E0h, one line a call:
#   "DD FFAL AX=xxxx BX=xxxx CX=xxxx DX=xxxx CF=x"
# with the same registers going in each time (AL, CX=0001h C0 S1, DH=0, ES:BX =
# 3000:0000, DS:SI = the function's packet).  ES:DI (a pointer into the BIOS) is not
# printed; after AH=48h the EDD buffer up to the DPTE pointer.  No eject (AH=46h on the CD): the later calls would see no disc.
# Not in build.PROGRAMS: it needs the three drives (tests/firmware/test_int13_all.py).

        .include "lib.inc"

        .set BUF_SEG, 0x3000

main:
        PUTLN "INT13 ALL START"
        movw $drives, %bp
next_drive:
        movb (%bp), %dl
        cmpb $0xFF, %dl
        je done
        movb %dl, cur_drive
        movw $calls, %di
next_call:
        movw (%di), %ax                 # AH = function, AL = its AL
        cmpw $0xFFFF, %ax
        je drive_done
        push %di
        push %bp
        call one_call
        pop %bp
        pop %di
        addw $2, %di
        jmp next_call
drive_done:
        incw %bp
        jmp next_drive
done:
        PUTLN "INT13 ALL END"
        EXIT 0

one_call:                               # AX = function/AL
        movw %ax, cur_call
        # Fresh packets each call: the DAP (1 block at 3000:0000, LBA 1) and the EDD buffer.
        movw $0x0010, dap
        movw $1, dap + 2
        movw $0, dap + 4
        movw $BUF_SEG, dap + 6
        movl $1, dap + 8
        movl $0, dap + 12
        movw $0x1E, edd_buf
        movw $edd_buf + 2, %di
        movw $0x1C, %cx
1:      movb $0, (%di)
        incw %di
        loop 1b
        movw $dap, %si
        cmpb $0x48, %ah
        jne 1f
        movw $edd_buf, %si
1:      cmpb $0x4B, %ah
        jne 1f
        movw $edd_buf, %si
1:      movw $BUF_SEG, %bx
        movw %bx, %es
        xorw %bx, %bx
        xorw %di, %di
        movw $0x0001, %cx
        xorb %dh, %dh
        movb cur_drive, %dl
        int $0x13
        pushf
        push %dx
        push %cx
        push %bx
        push %ax
        xorw %bx, %bx
        movw %bx, %ds
        movw %bx, %es
        movb cur_drive, %al
        call hex8
        movb $0x20, %al
        call putc
        movw cur_call, %ax
        call hex16
        PUTS " AX="
        pop %ax
        call hex16
        PUTS " BX="
        pop %ax
        call hex16
        PUTS " CX="
        pop %ax
        call hex16
        PUTS " DX="
        pop %ax
        call hex16
        PUTS " CF="
        popf
        movb $0x30, %al
        adcb $0, %al
        call putc
        call newline
        cmpb $0x48, cur_call + 1        # AH=48h: the EDD buffer it filled, as words
        jne 2f
        PUTS "   EDD"
        movw $edd_buf, %si
        movw $13, %cx                   # not the DPTE pointer: an address in each BIOS
1:      movb $0x20, %al
        call putc
        lodsw
        call hex16
        loop 1b
        call newline
2:      ret

cur_drive:      .byte 0
cur_call:       .word 0
drives:         .byte 0x00, 0x80, 0xE0, 0xFF
calls:
        .word 0x0000, 0x0101, 0x0201, 0x0101, 0x0301, 0x0401, 0x0501, 0x0800
        .word 0x0900, 0x0C00, 0x0D00, 0x1000, 0x1100, 0x1400, 0x1500, 0x1600
        .word 0x4100, 0x4200, 0x4300, 0x4400, 0x4500, 0x4502, 0x4501, 0x4501
        .word 0x4700, 0x4800, 0x4900, 0x4B01, 0x4E01, 0x4E02, 0x4E06
        .word 0x0600, 0x0700, 0x0A00, 0x0B00, 0x1700, 0x1800, 0x4A00, 0x4C00
        .word 0x4D00, 0x5000, 0xFF00, 0x0100
        .word 0xFFFF
        .balign 4
dap:            .fill 16, 1, 0
edd_buf:        .fill 0x1E, 1, 0
