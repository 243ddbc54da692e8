# disk_rw: INT 13h reads and writes on the boot hard disk, checked against the
# pattern. CHS addresses go through the AH=08 geometry and SeaBIOS's formula
# LBA = (cylinder * heads + head) * spt + sector - 1, so they land on the same
# sectors whatever geometry a BIOS reports; EDD addresses are plain LBAs.
# Writes use the salted pattern, so the harness can check the image afterwards
# (LBAs 30-31 by CHS, 300-302 by EDD).

        .include "lib.inc"

main:
        PUTLN "DISK_RW START"
        call get_geometry
        # Smaller geometries could not hold the addresses used below.
        cmpw $2, geo_maxcyl
        jb 1f
        cmpw $2, geo_heads
        jb 1f
        cmpw $32, geo_spt
        jae 2f
1:      DIE "AH08 GEOMETRY TOO SMALL"
2:      PUTLN "AH08 GEOMETRY OK"

        call edd_present_or_die
        PUTLN "AH41 EDD PRESENT OK"

        movw $26, edd_params
        movw $edd_params, %si
        movb $0x48, %ah
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "AH48"
        cmpw $26, edd_params
        jb 1f
        cmpl $DISK_SECTORS, edd_params + 16
        jne 1f
        cmpl $0, edd_params + 20
        jne 1f
        cmpw $512, edd_params + 24
        je 2f
1:      DIE "AH48 SIZE"
2:      PUTLN "AH48 SECTOR COUNT OK"

# --- CHS reads ---
        movw $0x0011, %cx               # C0 H0 S17: LBA 16-19
        xorb %dh, %dh
        movb $4, %al
        call chs_read_check
        PUTLN "CHS READ CYL 0 HEAD 0 OK"

        movb geo_spt, %cl               # last sector of the first track
        xorb %ch, %ch
        xorb %dh, %dh
        movb $1, %al
        call chs_read_check
        PUTLN "CHS READ END OF TRACK OK"

        movb geo_spt, %cl               # two sectors before the end of head 0 ...
        decb %cl
        xorb %ch, %ch
        xorb %dh, %dh
        movb $3, %al                    # ... and on into head 1
        call chs_read_check
        PUTLN "CHS READ ACROSS HEADS OK"

        movw $0x0001, %cx               # C0 H1 S1
        movb $1, %dh
        movb $2, %al
        call chs_read_check
        PUTLN "CHS READ HEAD 1 OK"

        movw $0x0101, %cx               # C1 H0 S1
        xorb %dh, %dh
        movb $1, %al
        call chs_read_check
        PUTLN "CHS READ CYL 1 OK"

        movb geo_spt, %cl               # C2, last head, last sector
        movb $2, %ch
        movb geo_heads, %dh
        decb %dh
        movb $1, %al
        call chs_read_check
        PUTLN "CHS READ CYL 2 LAST HEAD OK"

        movw geo_maxcyl, %ax            # the last sector AH=08 admits to
        movb %al, %ch
        shlb $6, %ah
        movb geo_spt, %cl
        orb %ah, %cl
        movb geo_heads, %dh
        decb %dh
        movb $1, %al
        call chs_read_check
        PUTLN "CHS READ LAST CYLINDER OK"

# --- EDD reads ---
        movl $PATTERN_START, %eax
        movw $1, %cx
        call edd_read_check
        PUTLN "EDD READ LBA 16 OK"

        movl $100, %eax
        movw $8, %cx
        call edd_read_check
        PUTLN "EDD READ 8 SECTORS OK"

        movl $0x1000, %eax
        movw $128, %cx                  # exactly 64 KiB, the most one call may move
        call edd_read_check
        PUTLN "EDD READ 128 SECTORS OK"

        movl $DISK_SECTORS - 1, %eax    # beyond the CHS range
        movw $1, %cx
        call edd_read_check
        PUTLN "EDD READ LAST SECTOR OK"

# --- CHS write (AH=03) of LBAs 30-31, read back by EDD ---
        movl $30, %eax
        movw $2, %cx
        call fill_write_buffer
        movw $0x0302, %ax
        movw $31, %cx                   # C0 H0 S31 = LBA 30
        xorb %dh, %dh
        movb boot_drive, %dl
        int $0x13
        OK_OR_DIE "CHS WRITE"
        cmpb $2, %al
        je 1f
        DIE "CHS WRITE AL"
1:      movl $4 * 512, %ecx
        call poison_read_buffer
        movl $29, %ebp
        movw $4, %cx
        movw $0x4200, %ax
        call edd_rw
        OK_OR_DIE "CHS WRITE READBACK"
        CHECK RDBUF, 29, 1, 0, "CHS WRITE SECTOR BEFORE"
        CHECK RDBUF+512, 30, 2, WRITE_SALT, "CHS WRITE DATA"
        CHECK RDBUF+3*512, 32, 1, 0, "CHS WRITE SECTOR AFTER"
        PUTLN "CHS WRITE OK"

# --- EDD write (AH=43) of LBAs 300-302, read back by CHS ---
        movl $300, %eax
        movw $3, %cx
        call fill_write_buffer
        movl $300, %ebp
        movw $3, %cx
        movw $0x4300, %ax               # AL=0: write without verify
        call edd_rw
        OK_OR_DIE "EDD WRITE"
        cmpw $3, %cx
        je 1f
        DIE "EDD WRITE PACKET COUNT"
1:      movl $5 * 512, %ecx
        call poison_read_buffer
        movl $299, %ebp
        movw $0x0205, %ax
        call chs_rw
        OK_OR_DIE "EDD WRITE READBACK"
        cmpb $5, %al
        je 1f
        DIE "EDD WRITE READBACK AL"
1:      CHECK RDBUF, 299, 1, 0, "EDD WRITE SECTOR BEFORE"
        CHECK RDBUF+512, 300, 3, WRITE_SALT, "EDD WRITE DATA"
        CHECK RDBUF+4*512, 303, 1, 0, "EDD WRITE SECTOR AFTER"
        PUTLN "EDD WRITE OK"

        PUTLN "PASS"
        EXIT 0

edd_params:
        .word 26
        .fill 28, 1, 0
