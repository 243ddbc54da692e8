# INT 13h on the boot CD (El Torito no-emulation boot image, loaded whole at 0:7C00).
#
# Prints each call's registers and the data it returned on COM1, one line a call, and
# exits through port 0xF4 with 0.  The test boots the same ISO under QEMU + SeaBIOS
# (-cdrom) and under pvboot (PV CD) and compares the lines: nothing here decides what
# is right.  With MEDIA_CHANGE defined it instead waits (polling AH=42h) for the disc
# to be changed from outside and prints what the reads return then.

        .code16
        .text
        .set COM1, 0x3F8
        .set EXIT_PORT, 0xF4
        .set BUFSEG, 0x1000             # data buffer 1000:0000 (up to 64 KiB)
        .set PKT, 0x0800                # EDD / El Torito packets
        .set DAP, 0x0900

.macro PUTS str
        call puts_inline
        .asciz "\str"
.endm

# Print "<name> AX=xxxx CF=x" from the flags and AX saved right after the int.
.macro RESULT name
        pushf
        call result_inline
        .asciz "\name"
.endm

# DAP: count, buffer 0:BUF, lba (32-bit)
.macro SETDAP count, lba
        movw $DAP, %si
        movb $16, (%si)
        movb $0, 1(%si)
        movw $\count, 2(%si)
        movw $0, 4(%si)
        movw $BUFSEG, 6(%si)
        movl $\lba, 8(%si)
        movl $0, 12(%si)
.endm

        .globl _start
        .include "boot_start.inc"   # _start, start: CS = DS = ES = SS = 0, SP = 7C00h
        sti
        cld
        movb %dl, drive
.ifdef EMULATION
        # Only the first 512-byte sector is loaded: read the rest (CHS, 5 sectors).
        movw $0x0205, %ax
        movw $0x7E00, %bx
        movw $0x0002, %cx
        xorb %dh, %dh
        int $0x13
        jnc 1f
        movb $0x7E, %al
        outb %al, $EXIT_PORT
1:      movb %dl, drive                 # the sectors just read hold the image's copy
        jmp emulation
        .org 0x1BE                      # the image's partition table (hard disk emulation)
        .fill 64, 1, 0
        .word 0xAA55
emulation:
.endif
        PUTS "CD BOOT DL="
        movb drive, %al
        call hex8
        call newline

.ifdef MEDIA_CHANGE
        jmp media_change
.endif
.ifdef EMULATION
        jmp emulated_drive
.endif
        # Extensions present?
        movb $0x41, %ah
        movw $0x55AA, %bx
        movb drive, %dl
        int $0x13
        RESULT "41"
        movw %bx, %ax
        call puthex16
        movw %cx, %ax
        call puthex16
        call newline

        # EDD 3.0 drive parameters (buffer 74 bytes: T13 layout), then 26 bytes.
        movw $PKT, %si
        movw $74, (%si)
        movb $0x48, %ah
        movb drive, %dl
        int $0x13
        RESULT "48/74"
        movw $PKT, %si
        movw $26, %cx
        call dump
        movw $PKT+30, %si               # EDD 3.0 part: key .. checksum
        movw $44, %cx
        call dump
        call dump_dpte
        movw $PKT, %si
        movw $26, (%si)
        movb $0x48, %ah
        movb drive, %dl
        int $0x13
        RESULT "48/26"
        movw $PKT, %si
        movw $26, %cx
        call dump
        movw $PKT, %si
        movw $25, (%si)
        movb $0x48, %ah
        movb drive, %dl
        int $0x13
        RESULT "48/25"

        # Reads in 2048-byte sectors: the primary volume descriptor, then three.
        SETDAP 1, 16
        call read42
        RESULT "42 LBA16"
        call print_count_sum
        movw $0, %si
        movw $8, %cx
        call dump_buf
        SETDAP 3, 16
        call read42
        RESULT "42 LBA16x3"
        call print_count_sum
        SETDAP 32, 0
        call read42
        RESULT "42 32 SECTORS"
        call print_count_sum
        SETDAP 33, 0
        call read42
        RESULT "42 33 SECTORS"
        call print_count_sum
        SETDAP 0, 16
        call read42
        RESULT "42 COUNT 0"
        SETDAP 1, 0x00FFFFFF
        call read42
        RESULT "42 PAST END"
        call print_count_sum
        movb $0x01, %ah
        movb drive, %dl
        int $0x13
        RESULT "01"
        SETDAP 1, 16
        movb $0x43, %ah
        movb $0, %al
        movb drive, %dl
        int $0x13
        RESULT "43 WRITE"
        call print_count
        SETDAP 1, 16
        movb $0x44, %ah
        movb drive, %dl
        int $0x13
        RESULT "44 VERIFY"
        SETDAP 1, 20
        movb $0x47, %ah
        movb drive, %dl
        int $0x13
        RESULT "47 SEEK"
        movb $0x01, %ah
        movb drive, %dl
        int $0x13
        RESULT "01"

        # Old functions on a CD.
        movw $0x1234, %cx
        movw $0x5678, %dx
        movb $0x15, %ah
        movb drive, %dl
        int $0x13
        RESULT "15"
        movw %cx, %ax
        call puthex16
        movw %dx, %ax
        call puthex16
        call newline
        movb $0x08, %ah
        movb drive, %dl
        int $0x13
        RESULT "08"
        movb $0x16, %ah
        movb drive, %dl
        int $0x13
        RESULT "16"
        movw $0x0201, %ax
        movw $0x2000, %bx
        movw $0x0001, %cx
        movb $0, %dh
        movb drive, %dl
        int $0x13
        RESULT "02 CHS"
        movb $0x00, %ah
        movb drive, %dl
        int $0x13
        RESULT "00"
        movb $0x10, %ah
        movb drive, %dl
        int $0x13
        RESULT "10"
        movb $0x49, %ah
        movb drive, %dl
        int $0x13
        RESULT "49"
        movb $0x01, %ah
        movb drive, %dl
        int $0x13
        RESULT "01"
        movb $0x50, %ah
        movb drive, %dl
        int $0x13
        RESULT "50"

        # Locks: status, lock twice, eject refused, unlock three times.
        movw $0x4502, %ax
        movb drive, %dl
        int $0x13
        RESULT "45/02"
        movw $0x4500, %ax
        movb drive, %dl
        int $0x13
        RESULT "45/00"
        movw $0x4500, %ax
        movb drive, %dl
        int $0x13
        RESULT "45/00"
        movw $0x4502, %ax
        movb drive, %dl
        int $0x13
        RESULT "45/02"
        movb $0x46, %ah
        movb drive, %dl
        int $0x13
        RESULT "46 LOCKED"
        movw $0x4501, %ax
        movb drive, %dl
        int $0x13
        RESULT "45/01"
        movw $0x4501, %ax
        movb drive, %dl
        int $0x13
        RESULT "45/01"
        movw $0x4501, %ax
        movb drive, %dl
        int $0x13
        RESULT "45/01"
        movw $0x4503, %ax
        movb drive, %dl
        int $0x13
        RESULT "45/03"
        movb $0x01, %ah
        movb drive, %dl
        int $0x13
        RESULT "01"

        # El Torito status (AL=01h: emulation stays), specification packet.
        movw $PKT, %di
        movw $32, %cx
        movb $0xEE, %al
        rep stosb
        call status_4b01

        # Other drives are untouched by the CD: a floppy and a hard disk are absent.
        movb $0x08, %ah
        movb $0x80, %dl
        int $0x13
        RESULT "08 ON 80"
        movb $0x41, %ah
        movw $0x55AA, %bx
        movb $0xE1, %dl
        int $0x13
        RESULT "41 ON E1"
        PUTS "PASS"
        call newline
        movb $0, %al
        jmp exit

.ifdef EMULATION
emulated_drive:
        movb $0x08, %ah
        movb drive, %dl
        int $0x13
        RESULT "08"
        call print_bcdx
        movb $0x15, %ah
        movb drive, %dl
        int $0x13
        RESULT "15"
        call print_bcdx
        movb $0x16, %ah
        movb drive, %dl
        int $0x13
        RESULT "16"
        movw $0x0203, %ax               # cylinder 1, head 1, sector 5: 3 sectors
        xorw %bx, %bx
        movw $0x0105, %cx
        movb $1, %dh
        pushw %es
        pushw $BUFSEG
        popw %es
        movb drive, %dl
        int $0x13
        popw %es
        RESULT "02 CHS"
        movw $0, %si
        movw $16, %cx
        call dump_buf
        movw $0x1000, %si
        movw $16, %cx
        call dump_buf
        SETDAP 1, 0
        call read42
        RESULT "42"
        call status_4b01
        movb $0x08, %ah
        movb drive, %dl
        incb %dl
        int $0x13
        RESULT "08 NEXT"
        movb $0x08, %ah
        movb drive, %dl
        xorb $0x80, %dl
        int $0x13
        RESULT "08 OTHER"
        movb $0x41, %ah
        movw $0x55AA, %bx
        movb $0xE0, %dl
        int $0x13
        RESULT "41 ON E0"
        movw $0x4B00, %ax
        movw $PKT, %si
        movb drive, %dl
        int $0x13
        RESULT "4B/00"
        movb $0x08, %ah
        movb drive, %dl
        int $0x13
        RESULT "08 AFTER"
        PUTS "PASS"
        call newline
        movb $0, %al
        jmp exit

print_bcdx:
        movw %bx, %ax
        call puthex16
        movw %cx, %ax
        call puthex16
        movw %dx, %ax
        call puthex16
        call newline
        ret
.endif

.ifdef MEDIA_CHANGE
media_change:
        # Eject is refused while locked; then unlock, eject, and wait for a new disc.
        movw $0x4500, %ax
        movb drive, %dl
        int $0x13
        RESULT "45/00"
        PUTS "LOCKED"
        call newline
        call wait_release               # the host tries ejects while locked here
        SETDAP 1, 16
        call read42
        RESULT "42 STILL"
        movw $0, %si
        movw $8, %cx
        call dump_buf
        movw $0x4501, %ax
        movb drive, %dl
        int $0x13
        RESULT "45/01"
        movb $0x46, %ah
        movb drive, %dl
        int $0x13
        RESULT "46"
        movw $0, %bp
1:      SETDAP 1, 16                    # wait for the eject to land: 06h, then 0Ch
        call read42
        jnc 2f
        cmpb $0x06, %ah
        je 3f
2:      incw %bp
        jnz 1b
        PUTS "NO CHANGE"
        call newline
        movb $1, %al
        jmp exit
3:      RESULT "42 CHANGED"
        SETDAP 1, 16
        call read42
        RESULT "42 EMPTY"
        PUTS "EMPTY"
        call newline
4:      SETDAP 1, 16                    # wait for a new disc: 06h once, then data
        call read42
        jnc 4b
        cmpb $0x06, %ah
        jne 4b
        RESULT "42 CHANGED"
        SETDAP 1, 16
        call read42
        RESULT "42 NEW DISC"
        movw $40, %si                   # the new volume identifier
        movw $16, %cx
        call dump_buf
        PUTS "PASS"
        call newline
        movb $0, %al
        jmp exit

# Let about six seconds pass (110 ticks of the BDA clock; pvboot --realtime).
wait_release:
        pushw %ds
        pushw $0x40
        popw %ds
        movw 0x6C, %bx
        sti
1:      hlt
        movw 0x6C, %ax
        subw %bx, %ax                   # ticks since the start: they may jump by more than one
        cmpw $110, %ax
        jb 1b
        popw %ds
        ret
.endif

# --- helpers --------------------------------------------------------------

# AH=4Bh AL=01h on the boot drive: the result and the specification packet.
status_4b01:
        movw $0x4B01, %ax
        movw $PKT, %si
        movb drive, %dl
        int $0x13
        RESULT "4B/01"
        movw $PKT, %si
        movw $20, %cx
        call dump
        ret

read42:
        movb $0x42, %ah
        movw $DAP, %si
        movb drive, %dl
        int $0x13
        ret

# After RESULT: print the DAP's count and a 16-bit sum of the bytes read.
print_count_sum:
        pushw %ax
        PUTS " N="
        movw DAP+2, %ax
        call puthex16
        PUTS " SUM="
        movw DAP+2, %cx
        shlw $11, %cx                   # 2048 bytes a sector (0 for 32 sectors: 64 KiB)
        xorw %si, %si
        xorw %bx, %bx
        xorw %ax, %ax
        cmpw $0, DAP+2
        je 2f
        pushw %ds
        pushw $BUFSEG
        popw %ds
1:      lodsb
        addw %ax, %bx
        loop 1b
        popw %ds
2:      movw %bx, %ax
        call puthex16
        call newline
        popw %ax
        ret

print_count:
        PUTS " N="
        movw DAP+2, %ax
        call puthex16
        call newline
        ret

# The DPTE the EDD 2.x pointer at PKT+26 names (16 bytes), if any.
dump_dpte:
        PUTS "DPTE"
        call newline
        pushw %ds
        lesw PKT+26, %si
        movw %es, %ax
        orw %si, %ax
        jz 1f
        pushw %es
        popw %ds
        movw $16, %cx
        call dump
1:      popw %ds
        xorw %ax, %ax
        movw %ax, %es
        ret

# dump, of the data buffer's bytes at SI.
dump_buf:
        pushw %ds
        pushw $BUFSEG
        popw %ds
        call dump
        popw %ds
        ret

# Print CX bytes at DS:SI as hex, then CR LF.
dump:
        pushw %ax
1:      lodsb
        call hex8
        loop 1b
        call newline
        popw %ax
        ret

# The flags pushed by RESULT, AX as the int returned it, and the name after the call.
result_inline:
        pushw %bp
        movw %sp, %bp
        pushw %ax
        pushw %si
        movw 2(%bp), %si                # the name
        call puts_cs
        movw %si, 2(%bp)                # return past it
        PUTS " AX="
        call puthex16
        PUTS " CF="
        movw 4(%bp), %ax                # the flags
        andb $1, %al
        addb $0x30, %al
        call putc
        call newline
        popw %si
        popw %ax
        popw %bp
        ret $2                          # drop the flags

        .include "serial_print.inc"  # roms/: newline, puts_cs, puts_inline, hex8, hex16 over putc

puthex16:                               # AX, then a space
        call hex16
        pushw %ax
        movb $0x20, %al
        call putc
        popw %ax
        ret

putc:
        pushw %dx
        pushw %ax
        movw $COM1+5, %dx
1:      inb %dx, %al
        testb $0x20, %al
        jz 1b
        popw %ax
        movw $COM1, %dx
        outb %al, %dx
        popw %dx
        ret

exit:
        outb %al, $EXIT_PORT
1:      cli
        hlt
        jmp 1b

drive:  .byte 0
