# pvboot's test kernel, real-mode part: the legacy boot sector, the space for the
# setup header (tools/kernel.py fills it in) and the setup code that enters protected
# mode and jumps to code32_start.  Assembled by tools/kernel.py (GNU as), linked at 0.
# HEADER_END is given with --defsym.
# Real-mode part, linked at 0: labels are offsets from the start of the kernel file.
# The boot sector and the setup run with different CS bases (0 with IP=0x7C00, and
# seg+0x20 with IP=0 at 0x200), so neither calls into the other: each prints inline.
.code16

# PUTS16: DS:SI -> COM1 up to the NUL (polls the line status register's THR-empty bit)
.macro PUTS16
1:      lodsb
        testb %al, %al
        jz 3f
        movb %al, %bl
        movw $0x3FD, %dx
2:      inb %dx, %al
        testb $0x20, %al
        jz 2b
        movw $0x3F8, %dx
        movb %bl, %al
        outb %al, %dx
        jmp 1b
3:
.endm

.text
.globl _start
_start:
# --- legacy boot sector: a BIOS that boots this file directly runs this at 0x7C00 -----
        cli
        cld
        movw $0x07C0, %ax
        movw %ax, %ds
        movw $direct_msg, %si
        PUTS16
        movb $1, %al
        outb %al, $0xF4
1:      cli
        hlt
        jmp 1b

direct_msg:
        .asciz "PVBOOT-KERNEL: not a boot sector; load this kernel with a boot loader\r\n"

        .org 0x1F1
        .fill HEADER_END - 0x1F1, 1, 0      # the setup header: tools/kernel.py writes it

# --- setup: the loader jumps to seg+0x20:0 (the jump at 0x200 lands here) ---------------
setup_entry:
        cli
        cld
        movw %cs, %ax
        subw $0x20, %ax
        movw %ax, %ds
        movw %ax, %es
        movw $setup_msg, %si
        PUTS16
        xorl %ebx, %ebx
        movw %ds, %bx
        shll $4, %ebx                       # linear address of the real-mode part
        leal gdt(%ebx), %eax
        movl %eax, gdtr + 2
        leal pm32(%ebx), %eax
        movl %eax, pm32_ptr
        lgdtl gdtr
        movl %cr0, %eax
        orb $1, %al
        movl %eax, %cr0
        ljmpl *pm32_ptr

.code32
pm32:
        movl $0x18, %eax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        movl %ebx, %esi                     # boot_params = the real-mode part
        movl 0x214(%esi), %eax              # code32_start (a loader may have changed it)
        xorl %ebx, %ebx
        xorl %ebp, %ebp
        xorl %edi, %edi
        jmp *%eax

        .balign 8
gdt:    .quad 0, 0
        .quad 0x00CF9A000000FFFF            # 0x10: __BOOT_CS, flat 4 GiB code
        .quad 0x00CF92000000FFFF            # 0x18: __BOOT_DS, flat 4 GiB data
gdtr:   .word 4 * 8 - 1
        .long 0
pm32_ptr:
        .long 0
        .word 0x10

setup_msg:
        .asciz "PVBOOT-KERNEL-SETUP\n"
kernel_version_string:
        .asciz "pvboot test kernel 1"
