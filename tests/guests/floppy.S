# floppy: a 1.44 MB floppy boot sector (drive 00h). AH=08 must report the
# standard geometry (type 4, 80 cylinders, 2 heads, 18 sectors), AH=15 a
# diskette without change line support (AH=01, as SeaBIOS answers), and CHS
# reads/writes go through that geometry. The floppy controller works by ISA
# DMA, which cannot cross a 64 KiB physical boundary: SeaBIOS refuses such
# a buffer with AH=09. EDD is not offered for floppies.

        .include "lib.inc"

main:
        PUTLN "FLOPPY START"
        cmpb $0x00, boot_drive
        je 1f
        DIE "BOOT DRIVE"
1:      PUTLN "BOOT DRIVE 00 OK"

        push %es
        xorw %di, %di
        movw %di, %es
        movb $0x08, %ah
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "AH08"
        cmpb $0x04, %bl                 # 1.44 MB 3.5"
        jne 1f
        cmpw $0x4F12, %cx               # last cylinder 79, 18 sectors
        jne 1f
        cmpb $1, %dh                    # last head
        jne 1f
        cmpb $1, %dl                    # drives
        jb 1f
        movw %es, %ax                   # the diskette parameter table
        orw %di, %ax
        jnz 2f
1:      DIE "AH08"
2:      pop %es
        PUTLN "AH08 TYPE 04, 80 CYLINDERS, 2 HEADS, 18 SECTORS OK"
        call get_geometry

        movb $0x15, %ah
        movb boot_drive, %dl
        int $0x13
        jc 1f
        cmpb $0x01, %ah
        je 2f
1:      DIE "AH15"
2:      PUTLN "AH15 AH=01 CF=0 OK"

        movw $0x0011, %cx               # C0 H0 S17: LBA 16-17
        xorb %dh, %dh
        movb $2, %al
        call chs_read_check
        PUTLN "CHS READ C0 H0 S17 OK"

        movw $0x0001, %cx               # C0 H1, the whole track: LBA 18-35
        movb $1, %dh
        movb $18, %al
        call chs_read_check
        PUTLN "CHS READ TRACK C0 H1 OK"

        movw $0x0105, %cx               # C1 H0 S5: LBA 40-42
        xorb %dh, %dh
        movb $3, %al
        call chs_read_check
        PUTLN "CHS READ C1 H0 S5 OK"

        movw $0x4F12, %cx               # C79 H1 S18: LBA 2879, the last
        movb $1, %dh
        movb $1, %al
        call chs_read_check
        PUTLN "CHS READ C79 H1 S18 OK"

        movl $40, %eax                  # write LBA 40, read 39-41 back
        movw $1, %cx
        call fill_write_buffer
        movw $0x0301, %ax
        movw $0x0105, %cx
        xorb %dh, %dh
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "CHS WRITE"
        cmpb $1, %al
        je 1f
        DIE "CHS WRITE AL"
1:      movl $3 * 512, %ecx
        call poison_read_buffer
        movw $0x0203, %ax
        movw $0x0104, %cx
        xorb %dh, %dh
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "CHS WRITE READBACK"
        CHECK RDBUF, 39, 1, 0, "CHS WRITE SECTOR BEFORE"
        CHECK RDBUF+512, 40, 1, WRITE_SALT, "CHS WRITE DATA"
        CHECK RDBUF+1024, 41, 1, 0, "CHS WRITE SECTOR AFTER"
        PUTLN "CHS WRITE OK"

        movw $0x1000, %bx               # linear 0x1FF00-0x202FF crosses 0x20000
        movw %bx, %es
        movw $0xFF00, %bx
        movw $0x0202, %ax
        movw $0x0011, %cx
        xorb %dh, %dh
        movb boot_drive, %dl
        int $0x13
        ERR_OR_DIE 0x09, "CHS READ ACROSS 64 KIB DMA BOUNDARY"

        movb $0x01, %ah
        movb boot_drive, %dl
        int $0x13
        ERR_OR_DIE 0x09, "AH01 LAST STATUS"

        movw $0x55AA, %bx
        movb $0x41, %ah
        movb boot_drive, %dl
        int $0x13
        ERR_OR_DIE 0x01, "AH41 ON FLOPPY"

        movw $0x0011, %cx               # the drive still works after the errors
        xorb %dh, %dh
        movb $1, %al
        call chs_read_check
        movb $0x01, %ah
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "AH01 AFTER SUCCESS"
        PUTLN "CHS READ AFTER ERRORS OK, AH01 AH=00 CF=0"

        PUTLN "PASS"
        EXIT 0
