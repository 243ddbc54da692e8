# mode13: text and pixels through INT 10h in VGA mode 13h, as boot-sector games draw.
#
# Pixels with AH=0Ch (read back with AH=0Dh and printed on COM1), teletype text with
# AH=0Eh in colour BL over enough lines to scroll the screen, AH=09h/0Ah repeated
# characters, an AH=13h string, an AH=06h window scroll and every printable ASCII
# character.  Then it prints "PICTURE
# READY" and waits for a key, so a test can compare the screen with QEMU's.

        .include "lib.inc"

main:
        PUTLN "MODE13 START"
        movw $0x0013, %ax
        int $0x10
        xorw %dx, %dx                   # a diagonal and a box of pixels, colour = x
1:      movw %dx, %cx
        addw $100, %cx
        movb %dl, %al
        movb $0x0C, %ah
        int $0x10
        incw %dx
        cmpw $100, %dx
        jb 1b
        movw $0x0C2A, %ax
        movw $300, %cx
        movw $190, %dx
        int $0x10
        movb $0x0D, %ah
        int $0x10
        PUTS "AH0D 300,190 AL="
        call hex8
        call newline
        movb $0x0D, %ah
        movw $150, %cx
        movw $50, %dx
        int $0x10
        PUTS "AH0D 150,50 AL="
        call hex8
        call newline

        movw $27, %bp                   # 27 lines: the last ones scroll the screen
2:      movw $line, %si
        movw %bp, %bx                   # a colour per line
        orb $0x20, %bl
        call teletype
        decw %bp
        jnz 2b

        movb $0x02, %ah                 # cursor to row 5, column 3
        xorb %bh, %bh
        movw $0x0503, %dx
        int $0x10
        movw $0x0958, %ax               # 'X' x 5 in colour 0Ch
        movw $0x000C, %bx
        movw $5, %cx
        int $0x10
        movb $0x02, %ah
        movw $0x0603, %dx
        int $0x10
        movw $0x0A59, %ax               # 'Y' x 45: wraps onto the next row
        movw $0x0009, %bx
        movw $45, %cx
        int $0x10
        movw $0x1301, %ax               # string at row 10, column 2, colour 0Ah
        movw $0x000A, %bx
        movw $(msg_end - msg), %cx
        movw $0x0A02, %dx
        movw $msg, %bp
        int $0x10
        movw $0x0602, %ax               # rows 12-20, columns 4-30 up by 2, fill 04h
        movb $0x04, %bh
        movw $0x0C04, %cx
        movw $0x141E, %dx
        int $0x10
        movb $0x03, %ah
        xorb %bh, %bh
        int $0x10
        PUTS "AH03 CURSOR="
        movw %dx, %ax
        call hex16
        call newline

        movb $0x20, %cl                 # every printable ASCII character, 32 a row
3:      movb %cl, %al                   # from row 21 on, in colour 0Fh
        subb $0x20, %al
        movb %al, %dl
        andb $31, %dl
        shrb $5, %al
        addb $21, %al
        movb %al, %dh
        movb $0x02, %ah
        xorb %bh, %bh
        int $0x10
        push %cx
        movb %cl, %al
        movb $0x09, %ah
        movw $0x000F, %bx
        movw $1, %cx
        int $0x10
        pop %cx
        incb %cl
        cmpb $0x7F, %cl
        jb 3b

        PUTLN "PICTURE READY"
        xorb %ah, %ah
        int $0x16
        PUTLN "PASS"
        EXIT 0

teletype:                               # DS:SI, NUL terminated, colour BL
        push %ax
1:      lodsb
        testb %al, %al
        jz 2f
        movb $0x0E, %ah
        xorb %bh, %bh
        int $0x10
        jmp 1b
2:      pop %ax
        ret

line:   .asciz "Hello from mode 13h: 0123456789!\r\n"
msg:    .ascii "AH=13h string"
msg_end:
