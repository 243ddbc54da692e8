# disk_errors: INT 13h error statuses on the boot hard disk, as SeaBIOS
# (src/disk.c) returns them: CF=1 with AH = 01 (bad parameter) for invalid
# CHS requests, LBAs past the end, unknown functions and absent drives; 09
# (boundary) for transfers over 64 KiB; AH=01 reports the last status and a
# successful call resets it. Also the informational calls AH=08/15/41/48.

        .include "lib.inc"

main:
        PUTLN "DISK_ERRORS START"
        call get_geometry

# --- CHS parameter errors ---
        movw $0x0200, %ax               # count 0
        movw $0x0011, %cx
        xorb %dh, %dh
        call read_here
        ERR_OR_DIE 0x01, "CHS READ COUNT 0"

        movw $0x0281, %ax               # count 129
        movw $0x0011, %cx
        xorb %dh, %dh
        call read_here
        ERR_OR_DIE 0x01, "CHS READ COUNT 129"

        movw $0x0201, %ax               # sector 0
        movw $0x0000, %cx
        xorb %dh, %dh
        call read_here
        ERR_OR_DIE 0x01, "CHS READ SECTOR 0"

        movw $0x0201, %ax               # sector spt + 1
        movb geo_spt, %cl
        incb %cl
        xorb %ch, %ch
        xorb %dh, %dh
        call read_here
        ERR_OR_DIE 0x01, "CHS READ SECTOR PAST TRACK"

        movw $0x0201, %ax               # head = heads
        movw $0x0001, %cx
        movb geo_heads, %dh
        call read_here
        ERR_OR_DIE 0x01, "CHS READ HEAD PAST END"

        movw $0x0201, %ax               # cylinder 1023
        movw $0xFFC1, %cx
        xorb %dh, %dh
        call read_here
        ERR_OR_DIE 0x01, "CHS READ CYLINDER PAST END"

        movb $0x01, %ah
        movb boot_drive, %dl
        int $0x13
        ERR_OR_DIE 0x01, "AH01 LAST STATUS"

        movw $0x0201, %ax               # a good read resets the status
        movw $0x0011, %cx
        xorb %dh, %dh
        call read_here
        OK_OR_DIE "CHS READ AFTER ERRORS"
        movb $0x01, %ah
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "AH01 AFTER SUCCESS"
        PUTLN "AH01 AFTER SUCCESS AH=00 CF=0 OK"

# --- EDD errors ---
        movl $DISK_SECTORS, %ebp        # first LBA past the end
        movw $1, %cx
        call edd_here
        ERR_OR_DIE 0x01, "EDD READ LBA PAST END"

        movw $dap_above_4g, %si
        movb $0x42, %ah
        movb boot_drive, %dl
        int $0x13
        ERR_OR_DIE 0x01, "EDD READ LBA ABOVE 4G"

        movl $DISK_SECTORS, %ebp
        movw $1, %cx
        movw $RDBUF >> 4, %bx
        movw %bx, %es
        xorw %bx, %bx
        movw $0x4300, %ax
        call edd_rw
        ERR_OR_DIE 0x01, "EDD WRITE LBA PAST END"

        movl $PATTERN_START, %ebp       # 129 sectors: more than 64 KiB
        movw $129, %cx
        call edd_here
        ERR_OR_DIE 0x09, "EDD READ 129 SECTORS"
        testw %cx, %cx
        jz 1f
        DIE "EDD READ 129 SECTORS PACKET COUNT"
1:      PUTLN "EDD READ 129 SECTORS PACKET COUNT 0 OK"

        movb $0x01, %ah
        movb boot_drive, %dl
        int $0x13
        ERR_OR_DIE 0x09, "AH01 LAST STATUS"

        movl $RDBUF, %edi
        movl $512, %ecx
        call poison
        movl $PATTERN_START, %ebp       # 0 sectors: nothing to do, success
        xorw %cx, %cx
        call edd_here
        OK_OR_DIE "EDD READ 0 SECTORS"
        testw %cx, %cx
        jnz 1f
        movl $RDBUF, %edi
        movl $512, %ecx
        call check_poison
        jnc 2f
1:      DIE "EDD READ 0 SECTORS TRANSFERRED"
2:      PUTLN "EDD READ 0 SECTORS AH=00 CF=0 OK"

# --- unknown functions and drives ---
        movb $0x77, %ah
        movb boot_drive, %dl
        int $0x13
        ERR_OR_DIE 0x01, "AH77 UNKNOWN FUNCTION"

        movb $0x01, %ah
        movb boot_drive, %dl
        int $0x13
        ERR_OR_DIE 0x01, "AH01 LAST STATUS"

        movb $0x16, %ah                 # change line: floppies only
        movb boot_drive, %dl
        int $0x13
        ERR_OR_DIE 0x01, "AH16 ON HARD DISK"

        movw $0x0201, %ax
        movw $0x0011, %cx
        movw $0x0081, %dx               # no second hard disk
        movw $RDBUF >> 4, %bx
        movw %bx, %es
        xorw %bx, %bx
        int $0x13
        ERR_OR_DIE 0x01, "CHS READ DRIVE 81"

        movw $edd_params_small, %si
        movb $0x48, %ah
        movb boot_drive, %dl
        int $0x13
        ERR_OR_DIE 0x01, "AH48 BUFFER 25 BYTES"

# --- calls that succeed (each also resets the last status) ---
        movb $0x00, %ah
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "AH00 RESET"
        movb $0x01, %ah
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "AH01 AFTER RESET"
        PUTLN "AH00 RESET CLEARS STATUS OK"

        movb $0x10, %ah
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "AH10 DRIVE READY"
        movb $0x0D, %ah
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "AH0D ALTERNATE RESET"
        movb $0x11, %ah
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "AH11 RECALIBRATE"
        PUTLN "AH10 AH0D AH11 OK"

        movw $0x0403, %ax               # verify 3 sectors
        movw $0x0011, %cx
        xorb %dh, %dh
        call read_here
        OK_OR_DIE "AH04 VERIFY"
        cmpb $3, %al
        je 1f
        DIE "AH04 VERIFY AL"
1:      PUTLN "AH04 VERIFY OK"

        movb $0x15, %ah
        movb boot_drive, %dl
        int $0x13
        jc 1f
        cmpb $0x03, %ah                 # fixed disk
        jne 1f
        movw %cx, %ax                   # CX:DX = sectors
        shll $16, %eax
        movw %dx, %ax
        movl %eax, %esi
        movzwl geo_maxcyl, %eax         # = (AH=08 cylinders) * heads * spt
        incl %eax
        movzwl geo_heads, %ebx
        mull %ebx
        movzwl geo_spt, %ebx
        mull %ebx
        cmpl %eax, %esi
        jne 1f
        cmpl $DISK_SECTORS, %esi
        jbe 2f
1:      DIE "AH15"
2:      PUTLN "AH15 FIXED DISK SECTOR COUNT OK"

        call edd_present_or_die
        PUTLN "AH41 BX=AA55 CX BIT 0 OK"

        movw $edd_params, %si
        movb $0x48, %ah
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "AH48"
        cmpl $DISK_SECTORS, edd_params + 16
        jne 1f
        cmpl $0, edd_params + 20
        je 2f
1:      DIE "AH48 SECTORS"
2:      PUTLN "AH48 SECTOR COUNT OK"

        movb $0x08, %ah
        movb boot_drive, %dl
        xorw %di, %di
        movw %di, %es
        int $0x13
        OK_OR_DIE "AH08"
        cmpb 0x475, %dl                 # BDA: number of hard disks
        je 1f
        DIE "AH08 DRIVE COUNT"
1:      PUTLN "AH08 DRIVE COUNT OK"

        PUTLN "PASS"
        EXIT 0

# INT 13h with AX as given, CX, DH, DL = boot drive, ES:BX = RDBUF.
read_here:
        movw $RDBUF >> 4, %bx
        movw %bx, %es
        xorw %bx, %bx
        movb boot_drive, %dl
        int $0x13
        ret

# AH=42 read of CX sectors at LBA EBP into RDBUF.
edd_here:
        movw $RDBUF >> 4, %bx
        movw %bx, %es
        xorw %bx, %bx
        movw $0x4200, %ax
        jmp edd_rw

dap_above_4g:
        .byte 16, 0
        .word 1
        .word 0, RDBUF >> 4
        .long PATTERN_START, 1          # LBA 0x1_0000_0010

edd_params_small:
        .word 25
        .fill 28, 1, 0

edd_params:
        .word 26
        .fill 28, 1, 0
