# buffers: INT 13h transfers into awkward buffers. Odd addresses, buffers
# that cross a 64 KiB physical boundary, and buffers whose offset runs past
# 0xFFFF within the segment: SeaBIOS turns ES:BX (or the packet's seg:off)
# into one linear address and moves the data there contiguously, so the last
# case must land linearly after the segment's end and must not wrap to its
# start. A transfer of more than 64 KiB is refused with AH=09.

        .include "lib.inc"

# After a read of SI sectors from LBA EBP to linear EDI: the data is the unsalted
# pattern (a difference fails as `what`) and the 16 bytes either side are untouched.
.macro CHECK_READ what
        movl %ebp, %eax
        movw %si, %cx
        xorw %bx, %bx
        CHECK_OR_DIE "\what"
        movl %esi, %ecx
        shll $9, %ecx
        call guards
.endm

main:
        PUTLN "BUFFERS START"
        call get_geometry

        movw $0x1000, %dx               # odd address
        movw $0x0001, %bx
        movl $40, %ebp
        movw $3, %cx
        call edd_at
        PUTLN "EDD READ TO 1000:0001 OK"

        movw $0x2000, %dx
        movw $0x0003, %bx
        movl $30, %ebp
        movb $2, %al
        call chs_at
        PUTLN "CHS READ TO 2000:0003 OK"

        movw $0x1FF0, %dx               # linear 0x1FF00-0x202FF: crosses 0x20000
        xorw %bx, %bx
        movl $70, %ebp
        movw $2, %cx
        call edd_at
        PUTLN "EDD READ TO 1FF0:0000 ACROSS 64 KIB BOUNDARY OK"

        movw $0x1FE0, %dx               # linear 0x1FF80-0x2017F
        movw $0x0180, %bx
        movl $75, %ebp
        movb $1, %al
        call chs_at
        PUTLN "CHS READ TO 1FE0:0180 ACROSS 64 KIB BOUNDARY OK"

        # Offset 0xFF00 + 0x400 bytes runs past the segment's end.
        movl $0x10000, %edi             # where a wrap would write
        movl $0x400, %ecx
        call poison
        movw $0x1000, %dx
        movw $0xFF00, %bx
        movl $80, %ebp
        movw $2, %cx
        call edd_at
        call no_wrap
        PUTLN "EDD READ TO 1000:FF00 PAST SEGMENT END: LINEAR, NO WRAP OK"

        movl $0x10000, %edi
        movl $0x400, %ecx
        call poison
        movw $0x1000, %dx
        movw $0xFF00, %bx
        movl $90, %ebp
        movb $2, %al
        call chs_at
        call no_wrap
        PUTLN "CHS READ TO 1000:FF00 PAST SEGMENT END: LINEAR, NO WRAP OK"

        movw $0x1000, %dx               # 64 KiB from offset 0x200
        movw $0x0200, %bx
        movl $200, %ebp
        movw $128, %cx
        call edd_at
        PUTLN "EDD READ 128 SECTORS TO 1000:0200 OK"

        movw $0x2000, %dx
        movw $0x0000, %bx
        movl $PATTERN_START, %ebp
        movb $128, %al
        call chs_at
        PUTLN "CHS READ 128 SECTORS TO 2000:0000 OK"

        movw $0x1000, %ax
        movw %ax, %es
        xorw %bx, %bx
        movl $PATTERN_START, %ebp
        movw $129, %cx
        movw $0x4200, %ax
        call edd_rw
        ERR_OR_DIE 0x09, "EDD READ 129 SECTORS"

        movw $0x1000, %ax
        movw %ax, %es
        xorw %bx, %bx
        movl $PATTERN_START, %ebp
        movw $0x0281, %ax
        call chs_rw
        ERR_OR_DIE 0x01, "CHS READ 129 SECTORS"

        PUTLN "PASS"
        EXIT 0

# The 0x300 bytes at 1000:0000 are still poison (no wrap inside the segment).
no_wrap:
        movl $0x10000, %edi
        movl $0x300, %ecx
        call check_poison
        jnc 1f
        DIE "DATA WRAPPED TO THE SEGMENT START"
1:      ret

# EDI = linear address of DX:BX; poisons 16 bytes before it and ECX bytes
# (the transfer) + 16 after it.
prepare:
        pushl %ecx
        movzwl %dx, %edi
        shll $4, %edi
        movzwl %bx, %ecx
        addl %ecx, %edi
        popl %ecx
        pushal
        subl $16, %edi
        addl $32, %ecx
        call poison
        popal
        ret

# The 16 bytes before and after the transfer (EDI, ECX bytes) are untouched.
guards:
        pushal
        subl $16, %edi
        pushl %ecx
        movl $16, %ecx
        call check_poison
        popl %ecx
        jc 1f
        addl $16, %edi
        addl %ecx, %edi
        movl $16, %ecx
        call check_poison
        jc 1f
        popal
        ret
1:      DIE "TRANSFER OUTSIDE ITS BUFFER"

# AH=42 read of CX sectors at LBA EBP to DX:BX, checked at the linear address.
edd_at:
        pushal
        push %es
        movzwl %cx, %ecx
        movl %ecx, %esi
        shll $9, %ecx
        call prepare
        movw %dx, %es
        movw %si, %cx
        movw $0x4200, %ax
        call edd_rw
        OK_OR_DIE "EDD READ"
        cmpw %si, %cx
        je 1f
        DIE "EDD READ PACKET COUNT"
1:      CHECK_READ "EDD READ DATA"
        pop %es
        popal
        ret

# AH=02 read of AL sectors at LBA EBP (as CHS) to DX:BX, checked likewise.
chs_at:
        pushal
        push %es
        movzbl %al, %esi
        movl %esi, %ecx
        shll $9, %ecx
        call prepare
        movw %dx, %es
        movw %si, %ax
        movb $0x02, %ah
        call chs_rw
        OK_OR_DIE "CHS READ"
        cmpw %si, %ax
        je 1f
        DIE "CHS READ AL"
1:      CHECK_READ "CHS READ DATA"
        pop %es
        popal
        ret
