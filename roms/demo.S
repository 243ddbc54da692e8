# pvboot's built-in demo disk: the boot sector. GNU as, AT&T syntax, .code16;
# rebuild roms/demo.bin with `python -m pvboot.tools.build_demo`.
#
# The demo disk is tools/diskpattern.demo_disk_image(): this sector at LBA 0
# and pattern_sector(lba) from LBA 16 on. The program prints a banner on COM1
# and on the screen (INT 10h AH=0Eh), reads LBAs 16-19 with AH=02h (CHS
# C0 H0 S17) and LBAs 1000-1007 with AH=42h, checks them against the pattern,
# writes LBA 40 with the salted pattern (AH=43h), reads it back with AH=02h,
# prints PASS or FAIL and leaves through QEMU's isa-debug-exit port 0xF4
# (0 on pass, 1 on failure), halting where that port does nothing.
# Only LBAs below 65536 are used, so the pattern's odd-word high part is 0.

        .code16
        .text
        .globl _start

        .set COM1, 0x3F8
        .set EXIT_PORT, 0xF4
        .set WRITE_SALT, 0xA5A5         # tools/diskpattern.py WRITE_SALT
        .set BUF_SEG, 0x1000            # reads land at 1000:0000
        .set WR_SEG, 0x2000             # the write's source at 2000:0000
        .set WRITE_LBA, 40

        .include "boot_start.inc"   # _start, start: CS = DS = ES = SS = 0, SP = 7C00h
        sti
        cld
        movb %dl, drive

        movw $COM1 + 3, %dx             # 115200 8N1
        movb $0x80, %al
        outb %al, %dx
        movw $COM1, %dx
        movb $1, %al
        outb %al, %dx
        incw %dx
        decb %al
        outb %al, %dx
        movw $COM1 + 3, %dx
        movb $0x03, %al
        outb %al, %dx

        movw $msg_banner, %si
        call puts

        movw $BUF_SEG, %ax              # CHS read: C0 H0 S17 = LBA 16, 4 sectors
        movw %ax, %es
        xorw %bx, %bx
        movw $0x0204, %ax
        movw $0x0011, %cx
        xorb %dh, %dh
        movb drive, %dl
        int $0x13
        jc fail
        xorw %di, %di
        movw $16, %bp
        movw $4, %cx
        xorw %dx, %dx
        call check
        jnz fail
        movw $msg_chs, %si
        call puts

        movb $0x42, %ah                 # EDD read: LBA 1000, 8 sectors
        movw $8, dap_count
        movw $1000, dap_lba
        movw $BUF_SEG, dap_seg
        call edd
        jc fail
        xorw %di, %di
        movw $1000, %bp
        movw $8, %cx
        xorw %dx, %dx
        call check
        jnz fail
        movw $msg_edd, %si
        call puts

        movw $WR_SEG, %ax               # EDD write of LBA 40 with the salted pattern
        movw %ax, %es
        xorw %di, %di
        movw $WRITE_LBA, %bp
        movw $1, %cx
        movw $WRITE_SALT, %dx
        call fill
        movb $0x43, %ah
        movw $1, dap_count
        movw $WRITE_LBA, dap_lba
        movw $WR_SEG, dap_seg
        call edd
        jc fail

        movw $BUF_SEG, %ax              # read back by CHS: C0 H0 S41 = LBA 40
        movw %ax, %es
        xorw %bx, %bx
        movw $0x0201, %ax
        movw $WRITE_LBA + 1, %cx
        xorb %dh, %dh
        movb drive, %dl
        int $0x13
        jc fail
        xorw %di, %di
        movw $WRITE_LBA, %bp
        movw $1, %cx
        movw $WRITE_SALT, %dx
        call check
        jnz fail
        movw $msg_write, %si
        call puts

        movw $msg_pass, %si
        call puts
        xorb %al, %al
        jmp exit
fail:
        movw $msg_fail, %si
        call puts
        movb $1, %al
exit:
        outb %al, $EXIT_PORT
1:      cli
        hlt
        jmp 1b

# AH = 42h/43h with the packet at dap (AL = 0: no verify); returns CF.
edd:
        xorb %al, %al
        movw $dap, %si
        movb drive, %dl
        int $0x13
        ret

# ES:DI (DI advances) = buffer, BP = first LBA, CX = sectors, DX = salt.
# check: ZF=1 when the buffer holds the pattern. fill: writes it.
check:
1:      push %cx
        movw %bp, %bx
        xorw %dx, %bx                   # lo = LBA ^ salt
        xorw %si, %si                   # i * 0x0105
        movw $256, %cx
2:      movw %si, %ax
        xorw %bx, %ax
        scasw
        jne 3f
        addw $0x0105, %si
        loop 2b
        pop %cx
        incw %bp
        loop 1b
        xorw %ax, %ax                   # ZF=1
        ret
3:      pop %cx
        ret

fill:
1:      push %cx
        movw %bp, %bx
        xorw %dx, %bx
        xorw %si, %si
        movw $256, %cx
2:      movw %si, %ax
        xorw %bx, %ax
        stosw
        addw $0x0105, %si
        loop 2b
        pop %cx
        incw %bp
        loop 1b
        ret

# DS:SI, NUL terminated, to COM1 and to the screen.
puts:
        lodsb
        testb %al, %al
        jz 2f
        push %ax
        movb $0x0E, %ah
        movw $0x0007, %bx
        int $0x10
        movw $COM1 + 5, %dx
1:      inb %dx, %al
        testb $0x20, %al
        jz 1b
        pop %ax
        movw $COM1, %dx
        outb %al, %dx
        jmp puts
2:      ret

drive:          .byte 0
dap:            .byte 16, 0
dap_count:      .word 0
                .word 0                 # offset
dap_seg:        .word 0
dap_lba:        .long 0, 0

msg_banner:     .asciz "pvboot demo\r\n"
msg_chs:        .asciz "CHS READ OK\r\n"
msg_edd:        .asciz "EDD READ OK\r\n"
msg_write:      .asciz "WRITE OK\r\n"
msg_pass:       .asciz "PASS\r\n"
msg_fail:       .asciz "FAIL\r\n"

        .org 0x1BE                      # no partition table: fails to assemble if the code grows into it
        .fill 64, 1, 0
        .word 0xAA55
