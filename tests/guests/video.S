# video: INT 10h text mode services. Writes to the screen with AH=0E, 09,
# 13 and scrolls with AH=06, then reads cells back with AH=08 and reports
# them on COM1 (a harness can also compare the screen at 0xB8000). The
# screen contents are fixed by the calls, so every value printed is one any
# correct BIOS gives.

        .include "lib.inc"

# Cursor to (row, col), AH=08: must read char and attr; prints what it read.
.macro CELL row, col, char, attr
        movw $(\row << 8) | \col, %dx
        movw $(\attr << 8) | \char, %cx
        call expect_cell
.endm

# AH=03 must report (row, col); prints it.
.macro CURSOR row, col
        movw $(\row << 8) | \col, %cx
        call expect_cursor
.endm

main:
        PUTLN "VIDEO START"
        movw $0x0003, %ax
        int $0x10

        movb $0x0F, %ah
        int $0x10
        PUTS "AH0F MODE="
        call hex8
        PUTS " COLUMNS="
        xchgb %al, %ah
        call hex8
        call newline
        cmpw $0x0350, %ax               # after the xchg: AH = mode 3, AL = 80 columns
        je 1f
        DIE "AH0F"
1:
        movw $hello, %si                # teletype, with CR LF
1:      lodsb
        testb %al, %al
        jz 2f
        movb $0x0E, %ah
        xorw %bx, %bx
        int $0x10
        jmp 1b
2:      CURSOR 1, 0

        movb $0x02, %ah                 # AH=09 writes at the cursor without moving it
        xorb %bh, %bh
        movw $0x050A, %dx
        int $0x10
        movw $0x0958, %ax               # 'X'
        movw $0x001E, %bx               # page 0, yellow on blue
        movw $3, %cx
        int $0x10
        CURSOR 5, 10

        movw $0x1301, %ax               # AL=1: one attribute in BL, cursor moves
        movw $0x002F, %bx
        movw $6, %cx
        movw $0x0A14, %dx
        movw $pvboot, %bp               # ES:BP, ES = 0
        int $0x10
        CURSOR 10, 26

        CELL 0, 0, 0x48, 0x07           # 'H'
        CELL 0, 7, 0x70, 0x07           # 'p'
        CELL 5, 10, 0x58, 0x1E          # 'X'
        CELL 5, 12, 0x58, 0x1E          # 'X'
        CELL 5, 13, 0x20, 0x07          # ' '
        CELL 10, 20, 0x70, 0x2F         # 'p'
        CELL 10, 25, 0x74, 0x2F         # 't'

        movw $0x0601, %ax               # rows 5-10 up by one, new line attr 0x70
        movb $0x70, %bh
        movw $0x0500, %cx
        movw $0x0A4F, %dx
        int $0x10
        PUTLN "AH06 SCROLLED ROWS 5-10 UP BY 1"
        CELL 5, 10, 0x20, 0x07          # ' '
        CELL 9, 20, 0x70, 0x2F          # 'p'
        CELL 9, 25, 0x74, 0x2F          # 't'
        CELL 10, 20, 0x20, 0x70         # ' '
        CELL 0, 0, 0x48, 0x07           # 'H'

        movw $0x0600, %ax               # AL=0 blanks the whole window
        movb $0x1F, %bh
        movw $0x0000, %cx
        movw $0x004F, %dx
        int $0x10
        PUTLN "AH06 CLEARED ROW 0"
        CELL 0, 0, 0x20, 0x1F           # ' '
        CELL 1, 0, 0x20, 0x07           # ' '

        PUTLN "PASS"
        EXIT 0

# DX = row/col, CX = expected attr/char.
expect_cell:
        pushal
        movb $0x02, %ah
        xorb %bh, %bh
        int $0x10
        movb $0x08, %ah
        xorb %bh, %bh
        int $0x10
        movw %ax, %si
        PUTS "AH08 ROW="
        movb %dh, %al
        call hex8
        PUTS " COL="
        movb %dl, %al
        call hex8
        PUTS " CHAR="
        movw %si, %ax
        call hex8
        PUTS " ATTR="
        movb %ah, %al
        call hex8
        cmpw %cx, %si
        jne 1f
        PUTLN " OK"
        popal
        ret
1:      PUTS " FAIL WANT CHAR="
        movb %cl, %al
        call hex8
        PUTS " ATTR="
        movb %ch, %al
        call hex8
        call newline
        EXIT 1

# CX = expected row/col.
expect_cursor:
        pushal
        movw %cx, %si                   # AH=03 returns the cursor shape in CX
        movb $0x03, %ah
        xorb %bh, %bh
        int $0x10
        PUTS "AH03 ROW="
        movb %dh, %al
        call hex8
        PUTS " COL="
        movb %dl, %al
        call hex8
        cmpw %si, %dx
        jne 1f
        PUTLN " OK"
        popal
        ret
1:      PUTLN " FAIL"
        EXIT 1

hello:  .asciz "Hello, pvboot\r\n"
pvboot: .ascii "pvboot"
