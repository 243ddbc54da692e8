# vbe: VESA BIOS Extensions and the VGA DAC through INT 10h, reported on COM1.
#
# Prints the controller info (AX=4F00h, "VBE2" request), the mode list, the mode info
# of every listed mode (AX=4F01h; all bytes but the window function pointer), the
# state functions after a VBE mode set (4F03h/4F06h/4F07h/4F08h/4F0Ah), the palette
# modes 03h, 04h, 07h, 12h and 13h load (AX=1017h) and DAC writes and reads through
# INT 10h and ports 3C7h-3C9h.  Every value is one the BIOS fixes, so QEMU + SeaBIOS and pvboot
# must print the same.  Lines starting "PV " differ on purpose: pvboot follows the
# current SeaBIOS where QEMU 7.2's 1.16 does not yet (4F05h in a linear mode, 4F09h),
# and reads the PEL mask back as a VGA does (QEMU reads 00h): the comparison leaves
# them out.
#
# Then it leaves a picture: FINAL_MODE (a --defsym; 0x13, or a VBE mode number with
# bit 14) is set and filled with the pattern tests/firmware/test_vbe.py computes:
#   8 bits:  index (x + 2 y) & 0xFF
#   16 bits: red x & 31, green y & 63, blue (x + y) & 31
#   32 bits: red x & 255, green y & 255, blue (x + y) & 255
# With WAIT_KEY defined it prints "PICTURE READY" and waits for a key before it exits.

        .include "lib.inc"

        .set BUF_SEG, 0x2000            # 2000:0000 info block, 2000:0200 mode info
        .set INFO, 0x0000
        .set MODEINFO, 0x0200
        .set DACBUF, 0x0400
        .set BUF_LINEAR, 0x20000

.macro VBE_CALL ax_value
        push %es
        pushw $BUF_SEG
        pop %es
        movw $\ax_value, %ax
        int $0x10
        pop %es
.endm

# Print the literal, then AX in hex and a line end.
.macro SAY_AX text
        PUTS "\text"
        call hex16
        call newline
.endm

main:
        PUTLN "VBE START"
        push %fs
        pushw $BUF_SEG
        pop %fs

        # --- 4F00h -----------------------------------------------------------
        movl $0x32454256, %fs:INFO      # "VBE2"
        movw $INFO, %di
        VBE_CALL 0x4F00
        PUTS "4F00 AX="
        call hex16
        PUTS " SIG="
        movw $INFO, %si
        movw $4, %cx
        push %bp
        movw $putc, %bp
        call print_fs
        pop %bp
        PUTS " VER="
        movw %fs:INFO+4, %ax
        call hex16
        PUTS " CAPS="
        movl %fs:INFO+10, %eax
        call hex32
        PUTS " MEM="
        movw %fs:INFO+18, %ax
        call hex16
        PUTS " OEMREV="
        movw %fs:INFO+20, %ax
        call hex16
        call newline
        movw %fs:INFO+14, %ax           # the list must be inside the block
        cmpw $INFO+34, %ax
        je 1f
        DIE "4F00 MODE LIST POINTER"
1:      cmpw $BUF_SEG, %fs:INFO+16
        je 1f
        DIE "4F00 MODE LIST SEGMENT"
1:
        # OEM string: a far pointer to a NUL-terminated string
        push %ds
        lds %fs:INFO+6, %si
        cmpb $0, (%si)
        pop %ds
        jne 1f
        DIE "4F00 OEM STRING"
1:
        # --- mode list and 4F01h for each mode -----------------------------
        movw $INFO+34, %bx
mode_loop:
        movw %fs:(%bx), %cx
        cmpw $0xFFFF, %cx
        je modes_done
        push %bx
        movw $MODEINFO, %di
        movw $0x1234, %fs:MODEINFO+254  # must be cleared: 256 bytes are written
        VBE_CALL 0x4F01
        PUTS "MODE "
        xchgw %ax, %cx
        call hex16
        xchgw %ax, %cx
        PUTS " AX="
        call hex16
        PUTS " "
        movw $MODEINFO, %si
        movw $12, %cx
        call print_hex_fs
        PUTS " "
        movw $MODEINFO+16, %si
        movw $46, %cx
        call print_hex_fs
        call newline
        cmpw $0, %fs:MODEINFO+254
        je 1f
        DIE "4F01 256 BYTES"
1:      pop %bx
        addw $2, %bx
        jmp mode_loop
modes_done:
        movw $0x01FF, %cx
        movw $MODEINFO, %di
        VBE_CALL 0x4F01
        SAY_AX "4F01 MODE 1FF AX="

        # --- state functions around a VBE mode set -------------------------
        call report_4f03

        movw $0x4114, %bx               # Linux vga=788: 800x600x16, linear
        VBE_CALL 0x4F02
        SAY_AX "4F02 4114 AX="
        call report_4f03
        movb $0x0F, %ah
        int $0x10
        PUTS "AH0F AL="
        call hex8
        call newline
        movb $0x01, %bl
        VBE_CALL 0x4F06
        PUTS "4F06 GET AX="
        call hex16
        call print_bx_cx_dx
        movb $0x00, %bl                 # 1024 pixels a line
        movw $1024, %cx
        VBE_CALL 0x4F06
        PUTS "4F06 SET AX="
        call hex16
        call print_bx_cx_dx
        movb $0x00, %bl                 # display start pixel 8, line 3
        movw $8, %cx
        movw $3, %dx
        VBE_CALL 0x4F07
        SAY_AX "4F07 SET AX="
        movb $0x01, %bl
        xorw %cx, %cx
        xorw %dx, %dx
        VBE_CALL 0x4F07
        PUTS "4F07 GET AX="
        call hex16
        call print_bx_cx_dx
        movb $0x01, %bl
        VBE_CALL 0x4F08
        SAY_AX "4F08 DIRECT AX="
        movw $0x0100, %bx
        VBE_CALL 0x4F05
        SAY_AX "PV 4F05 LINEAR AX="
        VBE_CALL 0x4F0A
        SAY_AX "4F0A AX="

        movw $0x0105, %bx               # 1024x768x8, banked
        VBE_CALL 0x4F02
        SAY_AX "4F02 0105 AX="
        movw $0x0000, %bx               # window A to bank 2
        movw $2, %dx
        VBE_CALL 0x4F05
        SAY_AX "4F05 SET AX="
        movw $0x0100, %bx
        xorw %dx, %dx
        VBE_CALL 0x4F05
        PUTS "4F05 GET AX="
        call hex16
        PUTS " DX="
        movw %dx, %ax
        call hex16
        call newline
        movw $0x0001, %bx               # 8-bit DAC
        movb $8, %bh
        movb $0, %bl
        VBE_CALL 0x4F08
        PUTS "4F08 SET 8 AX="
        call hex16
        PUTS " BH="
        movb %bh, %al
        call hex8
        call newline
        movw $0x0601, %bx
        VBE_CALL 0x4F08
        PUTS "4F08 GET AX="
        call hex16
        PUTS " BH="
        movb %bh, %al
        call hex8
        call newline

        # --- the DAC: each mode's palette, then mode 13h ----------------------
        .irp mode, 0x03, 0x04, 0x07, 0x12, 0x13
        movb $\mode, %al
        call dump_dac_of_mode
        .endr
        movb $0x0F, %ah
        int $0x10
        PUTS "AH0F AL="
        call hex8
        call newline
        VBE_CALL 0x4F03
        PUTS "4F03 MODE 13 BX="
        movw %bx, %ax
        call hex16
        call newline

        movw $0x1010, %ax               # entry 1 = 01 02 03
        movw $1, %bx
        movb $0x01, %dh
        movw $0x0203, %cx
        int $0x10
        movl $0x06050403, %fs:DACBUF    # entries 2, 3 = 04 05 06, 07 08 09
        movw $0x0908, %fs:DACBUF+4
        movb $0x07, %fs:DACBUF+3
        movw $0x1012, %ax
        movw $2, %bx
        movw $2, %cx
        movw $DACBUF, %dx
        push %es
        pushw $BUF_SEG
        pop %es
        int $0x10
        pop %es
        movw $0x3C8, %dx                # entry 4 = 0A 0B 0C through the ports
        movb $4, %al
        outb %al, %dx
        incw %dx
        movb $0x0A, %al
        outb %al, %dx
        movb $0x0B, %al
        outb %al, %dx
        movb $0x4C, %al                 # 6-bit DAC: bits 6-7 are dropped
        outb %al, %dx
        movw $0x1015, %ax               # read entry 3 back through INT 10h
        movw $3, %bx
        int $0x10
        PUTS "1015 ENTRY 3 "
        call print_dh_ch_cl
        movw $0x3C7, %dx                # entries 1-4 back through the ports
        movb $1, %al
        outb %al, %dx
        addw $2, %dx
        PUTS "3C9 ENTRIES 1-4 "
        movw $12, %cx
1:      inb %dx, %al
        call hex8
        loop 1b
        call newline
        movw $0x1019, %ax
        int $0x10
        PUTS "PV 1019 PEL MASK "
        movb %bl, %al
        call hex8
        call newline
        movb $0x00, %bl                 # VBE palette data in mode 13h
        movw $1, %cx
        movw $5, %dx
        movl $0x00112233, %fs:DACBUF
        movw $DACBUF, %di
        VBE_CALL 0x4F09
        SAY_AX "PV 4F09 SET AX="
        movw $0x1015, %ax
        movw $5, %bx
        int $0x10
        PUTS "PV 4F09 ENTRY 5 "
        call print_dh_ch_cl

        # --- the picture ----------------------------------------------------
        pop %fs
.if FINAL_MODE == 0x13
        movw $0x0013, %ax
        int $0x10
        push %es
        pushw $0xA000
        pop %es
        xorw %di, %di
        xorw %dx, %dx                   # y
2:      xorw %cx, %cx                   # x
1:      movw %dx, %ax
        shlw $1, %ax
        addw %cx, %ax
        stosb
        incw %cx
        cmpw $320, %cx
        jb 1b
        incw %dx
        cmpw $200, %dx
        jb 2b
        pop %es
.else
        movw $FINAL_MODE, %cx           # the mode info says where the LFB is
        movw $MODEINFO, %di
        VBE_CALL 0x4F01
        push %fs
        pushw $BUF_SEG
        pop %fs
        movl %fs:MODEINFO+40, %eax
        movl %eax, lfb
        movw %fs:MODEINFO+18, %ax
        movw %ax, width
        movw %fs:MODEINFO+20, %ax
        movw %ax, height
        movb %fs:MODEINFO+25, %al
        movb %al, depth
        movw %fs:MODEINFO+50, %ax
        movw %ax, pitch
        pop %fs
        movw $FINAL_MODE, %bx
        VBE_CALL 0x4F02
        cmpw $0x004F, %ax
        je 1f
        DIE "4F02 FINAL MODE"
1:      movl $draw, %ebx
        call pm_call
.endif
.ifdef WAIT_KEY
        PUTLN "PICTURE READY"           # a test may take the display's picture now
        xorb %ah, %ah
        int $0x16
.endif
        PUTLN "PASS"
        EXIT 0

# FS:SI, CX bytes, each through the routine at BP (hex8: as hex, putc: as characters)
print_fs:
        push %si
        push %cx
        push %ax
1:      movb %fs:(%si), %al
        call *%bp
        incw %si
        loop 1b
        pop %ax
        pop %cx
        pop %si
        ret

print_hex_fs:
        push %bp
        movw $hex8, %bp
        call print_fs
        pop %bp
        ret

# Set mode AL (AH=00h) and print its 256 DAC entries (AX=1017h), 16 a line:
# "DAC<mode> <first entry> <R G B ...>".
dump_dac_of_mode:
        push %fs
        pushw $BUF_SEG
        pop %fs
        movb %al, %dl
        xorb %ah, %ah
        int $0x10
        push %dx
        xorw %bx, %bx
        movw $256, %cx
        movw $DACBUF, %dx
        VBE_CALL 0x1017
        pop %dx
        movw $DACBUF, %si
        xorw %bx, %bx
1:      PUTS "DAC"
        movb %dl, %al
        call hex8
        PUTS " "
        movb %bl, %al
        call hex8
        PUTS " "
        movw $48, %cx
        call print_hex_fs
        call newline
        addw $48, %si
        addb $16, %bl
        jnz 1b
        pop %fs
        ret

report_4f03:                            # AX=4F03h, printed
        VBE_CALL 0x4F03
        PUTS "4F03 AX="
        call hex16
        PUTS " BX="
        movw %bx, %ax
        call hex16
        jmp newline

print_dh_ch_cl:                         # a DAC entry as INT 10h AX=1015h returns it
        movb %dh, %al
        call hex8
        movb %ch, %al
        call hex8
        movb %cl, %al
        call hex8
        jmp newline

print_bx_cx_dx:
        PUTS " BX="
        movw %bx, %ax
        call hex16
        PUTS " CX="
        movw %cx, %ax
        call hex16
        PUTS " DX="
        movw %dx, %ax
        call hex16
        jmp newline

        .include "pm_call.inc"

        .code32
draw:                                   # fill the VBE mode's visible picture
        movl lfb, %edi
        xorl %edx, %edx                 # y
2:      pushl %edi
        xorl %ecx, %ecx                 # x
1:      cmpb $32, depth
        jne 3f
        movl %ecx, %eax                 # 32 bits: x << 16 | y << 8 | (x + y)
        andl $0xFF, %eax
        shll $16, %eax
        movb %dl, %ah
        movb %cl, %al
        addb %dl, %al
        stosl
        jmp 4f
3:      movl %ecx, %eax                 # 16 bits: (x & 31) << 11 | (y & 63) << 5 | (x + y) & 31
        andl $31, %eax
        shll $11, %eax
        movl %edx, %ebx
        andl $63, %ebx
        shll $5, %ebx
        orl %ebx, %eax
        movl %ecx, %ebx
        addl %edx, %ebx
        andl $31, %ebx
        orl %ebx, %eax
        stosw
4:      incl %ecx
        cmpw width, %cx
        jb 1b
        popl %edi
        movzwl pitch, %eax
        addl %eax, %edi
        incl %edx
        cmpw height, %dx
        jb 2b
        ret
        .code16

        .p2align 2
lfb:    .long 0
width:  .word 0
height: .word 0
pitch:  .word 0
depth:  .byte 0
