# e820: the memory map through INT 15h E820, E801, AH=88 and INT 12h. The
# numbers differ between BIOSes and RAM sizes, so only properties are printed:
# the walk's protocol, usable RAM at 0 and from 1 MiB, nothing usable in the
# legacy hole, and the older calls agreeing with the E820 map.

        .include "lib.inc"

        .set TABLE_SEG, 0x2000          # entries stored at 2000:0000, 24 bytes each
        .set MAX_ENTRIES, 64
        .set SMAP, 0x534D4150

main:
        PUTLN "E820 START"
        movw $TABLE_SEG, %ax
        movw %ax, %es
        xorw %di, %di
        xorl %ebx, %ebx
        xorw %bp, %bp
1:      movl $1, %es:20(%di)            # ACPI 3 "valid" bit, in case the BIOS fills 24 bytes
        movl $0xE820, %eax
        movl $24, %ecx
        movl $SMAP, %edx
        int $0x15
        jnc 2f
        DIE "E820 CF"
2:      cmpl $SMAP, %eax
        je 2f
        DIE "E820 SIGNATURE"
2:      cmpl $20, %ecx
        jb 3f
        cmpl $24, %ecx
        jbe 4f
3:      DIE "E820 ENTRY SIZE"
4:      cmpl $20, %ecx                  # a 24-byte entry may say "ignore me"
        je 5f
        testb $1, %es:20(%di)
        jz 6f
5:      incw %bp
        addw $24, %di
6:      cmpw $MAX_ENTRIES, %bp
        jb 7f
        DIE "E820 NEVER ENDS"
7:      testl %ebx, %ebx
        jnz 1b
        movw %bp, entries
        cmpw $3, %bp
        jae 1f
        DIE "E820 TOO FEW ENTRIES"
1:      PUTLN "E820 SIGNATURE AND ENTRY SIZES OK"
        PUTLN "E820 CONTINUATION ENDS WITH EBX=0 OK"

# One pass over the table: low RAM, RAM from 1 MiB, the hole, the RAM top.
        xorw %si, %si
        movw entries, %cx
next:   movl %es:(%si), %eax            # EDX:EAX = end = base + length
        movl %es:4(%si), %edx
        addl %es:8(%si), %eax
        adcl %es:12(%si), %edx
        movl %es:16(%si), %ebx          # type
        cmpl $1, %ebx
        jne not_ram

        cmpl $0, %es:4(%si)             # usable RAM from 0 to at least 0x9F000
        jne 1f
        cmpl $0, %es:(%si)
        jne 1f
        testl %edx, %edx
        jnz 2f
        cmpl $0x9F000, %eax
        jb 1f
2:      movl %eax, low_end
1:
        cmpl $0, %es:4(%si)             # usable RAM from 1 MiB, 16 MiB or more
        jne 1f
        cmpl $0x100000, %es:(%si)
        jne 1f
        cmpl $0, %es:12(%si)
        jne 2f
        cmpl $0x1000000, %es:8(%si)
        jb 1f
2:      movb $1, high_ok
1:
        cmpl $0, %es:4(%si)             # overlaps [0xA0000, 0x100000)?
        jne 1f
        cmpl $0x100000, %es:(%si)
        jae 1f
        testl %edx, %edx
        jnz 2f
        cmpl $0xA0000, %eax
        jbe 1f
2:      movb $1, hole_used
1:
not_ram:
        cmpl $1, %ebx                   # RAM top as SeaBIOS and E801 see it: the
        je 1f                           # highest RAM/ACPI end at or below 4 GiB
        cmpl $3, %ebx
        jne 2f
1:      testl %edx, %edx
        jnz 2f
        cmpl ram_top, %eax
        jbe 2f
        movl %eax, ram_top
2:      addw $24, %si
        decw %cx
        jnz next

        cmpl $0, low_end
        jne 1f
        DIE "E820 USABLE RAM AT 0"
1:      PUTLN "E820 USABLE RAM FROM 0 TO 9F000 OK"
        cmpb $1, high_ok
        je 1f
        DIE "E820 USABLE RAM FROM 1 MIB"
1:      PUTLN "E820 USABLE RAM FROM 1 MIB, 16 MIB OR MORE OK"
        cmpb $0, hole_used
        je 1f
        DIE "E820 USABLE RAM IN A0000-FFFFF"
1:      PUTLN "E820 NOTHING USABLE IN A0000-FFFFF OK"

        movw $0xE801, %ax
        int $0x15
        jc 1f
        cmpw $0x3C00, %cx               # KiB between 1 and 16 MiB
        ja 1f
        testw %dx, %dx                  # 64 KiB blocks above 16 MiB
        jz 2f
        cmpw $0x3C00, %cx
        jne 1f
2:      movzwl %cx, %eax
        shll $10, %eax
        movzwl %dx, %ebx
        shll $16, %ebx
        addl %ebx, %eax
        addl $0x100000, %eax            # where E801 says memory ends
        cmpl ram_top, %eax
        ja 1f
        addl $0x10000, %eax
        cmpl ram_top, %eax
        ja 3f
1:      DIE "E801"
3:      PUTLN "E801 CONSISTENT WITH E820 OK"

        movb $0x88, %ah
        int $0x15
        jc 1f
        movzwl %ax, %ebx
        shll $10, %ebx
        addl $0x100000, %ebx
        cmpl ram_top, %ebx
        ja 1f
        cmpw $0x3C00, %ax               # BIOSes cap this (SeaBIOS at 63 MiB)
        jae 3f
        addl $0x400, %ebx
        cmpl ram_top, %ebx
        ja 3f
1:      DIE "AH88"
3:      PUTLN "AH88 CONSISTENT WITH E820 OK"

        int $0x12
        cmpw $512, %ax
        jb 1f
        cmpw $640, %ax
        ja 1f
        cmpw 0x413, %ax                 # BDA base memory size
        jne 1f
        movzwl %ax, %eax
        shll $10, %eax
        cmpl low_end, %eax
        jbe 3f
1:      DIE "INT12"
3:      PUTLN "INT12 BASE MEMORY OK"

        PUTLN "PASS"
        EXIT 0

entries:        .word 0
low_end:        .long 0
ram_top:        .long 0
high_ok:        .byte 0
hole_used:      .byte 0
