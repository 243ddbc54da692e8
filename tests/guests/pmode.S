# pmode: INT 13h around real <-> protected mode round trips, the way GRUB's
# real_to_prot / prot_to_real use it: a flat 32-bit GDT, data read by the
# BIOS in real mode copied above 1 MiB in protected mode, back to real mode
# through 16-bit protected segments, clearing PE and a far jump, then the BIOS
# again. The second trip compares the data above 1 MiB with a fresh read and
# copies it back below 1 MiB, where real mode checks it against the pattern.

        .include "lib.inc"

        .set HIGH, 0x200000             # above 1 MiB and above the 1 MiB wrap
        .set LOWCOPY, 0x30000
        .set CHUNK, 16 * 512            # 16 sectors per read
        .set LBA_A, 500
        .set LBA_B, 600


main:
        PUTLN "PMODE START"

        movw $0x2401, %ax               # A20 on through the BIOS ...
        int $0x15
        OK_OR_DIE "INT15 AX=2401"
        inb $0x92, %al                  # ... and the fast A20 port, never the reset bit
        orb $0x02, %al
        andb $0xFE, %al
        outb %al, $0x92
        movw $0x2402, %ax
        int $0x15
        OK_OR_DIE "INT15 AX=2402"
        cmpb $1, %al
        je 1f
        DIE "INT15 AX=2402 A20 STATE"
1:      push %es                        # 0000:0500 and FFFF:0510 differ only with A20 on
        movw $0xFFFF, %ax
        movw %ax, %es
        movw $0x1234, 0x500
        movw $0xABCD, %es:0x510
        cmpw $0x1234, 0x500
        pop %es
        je 1f
        DIE "A20"
1:      PUTLN "A20 ON OK"

        movl $LBA_A, %eax
        movw $16, %cx
        call edd_read_check
        PUTLN "REAL MODE READ 1 OK"

        movl $pm_copy_up, %ebx
        call pm_call
        PUTLN "PROTECTED MODE COPY TO 2 MIB DONE"

        movl $LBA_B, %eax
        movw $16, %cx
        call edd_read_check
        PUTLN "REAL MODE READ 2 OK"

        movl $pm_copy_up_b, %ebx
        call pm_call

        movl $LBA_A, %eax               # LBA_A again, to compare with the high copy
        movw $16, %cx
        call edd_read_check
        PUTLN "REAL MODE READ 3 OK"

        movl $LOWCOPY, %edi
        movl $CHUNK, %ecx
        call poison
        movl $pm_compare_and_copy_down, %ebx
        call pm_call
        cmpl $0, pm_result
        je 1f
        DIE "PROTECTED MODE COMPARE ABOVE 1 MIB"
1:      PUTLN "PROTECTED MODE COMPARE ABOVE 1 MIB OK"
        CHECK LOWCOPY, LBA_B, 16, 0, "HIGH COPY ROUND TRIP"
        PUTLN "HIGH COPY ROUND TRIP OK"

        movl $LBA_B + 16, %eax
        movw $16, %cx
        call edd_read_check
        PUTLN "REAL MODE READ 4 OK"

        PUTLN "PASS"
        EXIT 0

        .include "pm_call.inc"       # roms/pm_call.inc: pm_call and the GDT

        .code32
pm_copy_up:                             # RDBUF -> HIGH
        movl $RDBUF, %esi
        movl $HIGH, %edi
        movl $CHUNK / 4, %ecx
        cld
        rep movsl
        ret

pm_copy_up_b:                           # RDBUF -> HIGH + CHUNK
        movl $RDBUF, %esi
        movl $HIGH + CHUNK, %edi
        movl $CHUNK / 4, %ecx
        cld
        rep movsl
        ret

pm_compare_and_copy_down:               # RDBUF == HIGH ?; HIGH + CHUNK -> LOWCOPY
        movl $RDBUF, %esi
        movl $HIGH, %edi
        movl $CHUNK / 4, %ecx
        cld
        repe cmpsl
        setne %al
        movzbl %al, %eax
        movl %eax, pm_result
        movl $HIGH + CHUNK, %esi
        movl $LOWCOPY, %edi
        movl $CHUNK / 4, %ecx
        rep movsl
        ret
        .code16

pm_result:      .long 0xFFFFFFFF
