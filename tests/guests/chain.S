# chain: an MBR that chainloads a VBR, the way DOS-style MBRs and boot
# managers do. It moves itself from 0x7C00 to 0x0600, finds the active
# partition, reads that partition's first sector (the VBR, at LBA VBR_LBA)
# over itself at 0x7C00 with INT 13h AH=42 and jumps there with DL = drive and
# DS:SI = the partition entry. The VBR prints its own lines: an emulator that
# runs stale code from 0x7C00 instead of the freshly read sector shows here.
#
# The VBR is the program's last reserved sector (offset 0x1E00); the image
# builder moves it to LBA VBR_LBA. The partition is cylinder aligned for the
# 16 heads x 63 sectors geometry QEMU picks, so it does not change that choice.

        .set LIB_PARTITION_TABLE, 1
        .set RELOC, 0x0600
        .set PROGRAM_BYTES, PATTERN_START * 512
        .set CYL_SECTORS, 16 * 63
        .set PART_END_CYL, DISK_SECTORS / CYL_SECTORS - 1

.macro PARTITION_TABLE
        .byte 0x80                      # active
        .byte 1, 1, 0                   # start C0 H1 S1 = LBA 63
        .byte 0x7F                      # type: reserved for experiments
        .byte 15, 63 | ((PART_END_CYL >> 2) & 0xC0), PART_END_CYL & 0xFF
        .long VBR_LBA
        .long (PART_END_CYL + 1) * CYL_SECTORS - VBR_LBA
        .fill 48, 1, 0
.endm

        .include "lib.inc"

        .set RELOC_DELTA, RELOC - 0x7C00    # add to a label for its relocated address

main:
        PUTLN "CHAIN MBR AT 7C00"
        cld
        movw $0x7C00, %si
        movw $RELOC, %di
        movw $PROGRAM_BYTES / 2, %cx
        rep movsw
        ljmp $0, $relocated + RELOC_DELTA

relocated:
        call 1f                         # where is this code running?
1:      popw %ax
        cmpw $1b + RELOC_DELTA, %ax
        je 2f
        DIE "MBR RELOCATION"
2:      PUTLN "MBR RUNNING AT 0600 OK"

        movw $0x7C00 + 0x1BE + RELOC_DELTA, %bp
        movw $4, %cx
1:      cmpb $0x80, (%bp)
        je 2f
        addw $16, %bp
        loop 1b
        DIE "MBR NO ACTIVE PARTITION"
2:      movl 8(%bp), %eax
        movl %eax, mbr_dap + 8 + RELOC_DELTA
        PUTS "MBR ACTIVE PARTITION AT LBA "
        call hex32
        call newline

        movw $0xFFFF, 0x7DFE            # the read must bring the signature
        movw $mbr_dap + RELOC_DELTA, %si
        movb $0x42, %ah
        movb boot_drive + RELOC_DELTA, %dl
        int $0x13
        OK_OR_DIE "MBR READ VBR"
        cmpw $0xAA55, 0x7DFE
        je 1f
        DIE "MBR VBR SIGNATURE"
1:      PUTLN "MBR LOADED VBR, JUMPING TO 0000:7C00"
        movw %bp, %si
        movb boot_drive + RELOC_DELTA, %dl
        ljmp $0, $0x7C00

mbr_dap:
        .byte 16, 0
        .word 1
        .word 0x7C00, 0
        .long 0, 0

# --- the VBR: runs at 0x7C00, so it addresses its data as label - vbr + 0x7C00 ---

        .org (PATTERN_START - 1) * 512
vbr:
        cli
        xorw %ax, %ax
        movw %ax, %ss
        movw $0x7C00, %sp
        movw %ax, %es
        sti
        cld
        movw %si, %bp                   # DS:SI = partition entry (DS = 0)
        movb %dl, %bh
        movw $vbr_hello - vbr + 0x7C00, %si
        call vbr_puts

        call 1f
1:      popw %ax
        cmpw $1b - vbr + 0x7C00, %ax
        jne vbr_fail
        movw $vbr_at - vbr + 0x7C00, %si
        call vbr_puts

        cmpb $0x80, %bh
        jne vbr_fail
        movw $vbr_dl - vbr + 0x7C00, %si
        call vbr_puts

        cmpb $0x80, (%bp)
        jne vbr_fail
        cmpl $VBR_LBA, 8(%bp)
        jne vbr_fail
        movw $vbr_entry - vbr + 0x7C00, %si
        call vbr_puts

        movw $vbr_dap - vbr + 0x7C00, %si  # INT 13h still works from the VBR
        movb $0x42, %ah
        movb %bh, %dl
        int $0x13
        jc vbr_fail
        movw $0x1000, %ax
        movw %ax, %es
        cmpw $VBR_LBA + 1, %es:0        # pattern words 0 and 1 of LBA VBR_LBA + 1
        jne vbr_fail
        cmpw $(VBR_LBA + 1) ^ 0x0105, %es:2
        jne vbr_fail
        movw $vbr_read - vbr + 0x7C00, %si
        call vbr_puts

        movw $vbr_pass - vbr + 0x7C00, %si
        call vbr_puts
        xorb %al, %al
        jmp vbr_exit
vbr_fail:
        movw $vbr_failed - vbr + 0x7C00, %si
        call vbr_puts
        movb $1, %al
vbr_exit:
        outb %al, $EXIT_PORT
1:      cli
        hlt
        jmp 1b

vbr_puts:                               # DS:SI; its own UART code: the MBR's is not its to use
        lodsb
        testb %al, %al
        jz 2f
        movb %al, %ah
        movw $COM1 + 5, %dx
1:      inb %dx, %al
        testb $0x20, %al
        jz 1b
        movw $COM1, %dx
        movb %ah, %al
        outb %al, %dx
        jmp vbr_puts
2:      ret

vbr_dap:
        .byte 16, 0
        .word 1
        .word 0, 0x1000
        .long VBR_LBA + 1, 0

vbr_hello:      .asciz "VBR: HELLO FROM THE PARTITION BOOT SECTOR\r\n"
vbr_at:         .asciz "VBR RUNNING AT 7C00 OK\r\n"
vbr_dl:         .asciz "VBR DL=80 OK\r\n"
vbr_entry:      .asciz "VBR DS:SI PARTITION ENTRY OK\r\n"
vbr_read:       .asciz "VBR EDD READ OK\r\n"
vbr_pass:       .asciz "PASS\r\n"
vbr_failed:     .asciz "VBR FAIL\r\n"

        .org (PATTERN_START - 1) * 512 + 510
        .word 0xAA55
