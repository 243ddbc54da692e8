# int13_hook: the guest takes over the INT 13h vector (as DOS, GRUB's
# drivemap and boot managers do), counts calls and chains to the BIOS with
# pushf; lcall. Every `int $0x13` must go through the IVT, and the BIOS's
# CF must come back through the hook. Removing the hook stops the counting.

        .include "lib.inc"

        .set IVT13, 0x13 * 4

main:
        PUTLN "INT13_HOOK START"
        call get_geometry               # before the hook: it must count only what follows
        cli
        movl IVT13, %eax
        movl %eax, old13
        movw $hook, IVT13
        movw %cs, IVT13 + 2
        sti
        cmpw $hook, IVT13
        jne 1f
        movl old13, %eax
        cmpl %eax, IVT13
        jne 2f
1:      DIE "HOOK INSTALL"
2:      PUTLN "HOOK INSTALLED"

        movl $50, %eax
        movw $4, %cx
        call edd_read_check             # one call, AH=42
        PUTLN "EDD READ THROUGH HOOK OK"

        movw $0x0014, %cx               # C0 H0 S20 = LBA 19, 2 sectors
        xorb %dh, %dh
        movb $2, %al
        call chs_read_check             # one call, AH=02
        PUTLN "CHS READ THROUGH HOOK OK"

        movl $DISK_SECTORS, %ebp        # failure: CF must survive the hook
        movw $1, %cx
        movw $RDBUF >> 4, %bx
        movw %bx, %es
        xorw %bx, %bx
        movw $0x4200, %ax
        call edd_rw
        ERR_OR_DIE 0x01, "EDD READ PAST END THROUGH HOOK"

        movb $0x01, %ah
        movb boot_drive, %dl
        int $0x13
        ERR_OR_DIE 0x01, "AH01 THROUGH HOOK"

        cmpw $4, calls
        jne 1f
        cmpw $2, edd_reads              # the good read and the one past the end
        jne 1f
        cmpw $1, chs_reads
        je 2f
1:      PUTS "HOOK COUNT FAIL CALLS="
        movw calls, %ax
        call hex16
        PUTS " AH42="
        movw edd_reads, %ax
        call hex16
        PUTS " AH02="
        movw chs_reads, %ax
        call hex16
        call newline
        EXIT 1
2:      PUTLN "HOOK SAW 4 CALLS OK"

        cli
        movl old13, %eax
        movl %eax, IVT13
        sti
        movl $60, %eax
        movw $1, %cx
        call edd_read_check
        cmpw $4, calls
        je 1f
        DIE "HOOK REMOVED"
1:      PUTLN "HOOK REMOVED OK"

        PUTLN "PASS"
        EXIT 0

hook:
        incw %cs:calls
        cmpb $0x42, %ah
        jne 1f
        incw %cs:edd_reads
1:      cmpb $0x02, %ah
        jne 2f
        incw %cs:chs_reads
2:      pushf                           # the BIOS returns with iret
        lcall *%cs:old13
        # Hand the BIOS's CF back in the caller's saved FLAGS; keep its IF.
        push %bp
        movw %sp, %bp
        jc 3f
        andb $0xFE, 6(%bp)
        pop %bp
        iret
3:      orb $0x01, 6(%bp)
        pop %bp
        iret

old13:          .long 0
calls:          .word 0
edd_reads:      .word 0
chs_reads:      .word 0
