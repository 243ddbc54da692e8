# pvboot's test kernel, protected-mode part (the 32-bit boot protocol entry): prints
# its markers on COM1, checks its own checksum and boot_params, prints the command
# line and writes its verdict to port 0xF4.  Assembled by tools/kernel.py (GNU as),
# linked at code32_start; PM_SIZE and STACK_TOP are given with --defsym.
# Protected-mode part, linked at LOAD_ADDRESS (it is not relocatable).
.code32
.text
.globl _start
_start:
        cli
        cld
        movl %esi, %ebp                     # boot_params, kept in %ebp
        movl $STACK_TOP, %esp
        xorl %edi, %edi                     # exit value
        movl $entry_msg, %esi
        call puts

        # The image sums to zero in 32-bit dwords (the builder sets the last one).
        movl $_start, %esi
        movl $(PM_SIZE / 4), %ecx
        xorl %eax, %eax
1:      addl (%esi), %eax
        addl $4, %esi
        loop 1b
        movl $sum_ok, %esi
        testl %eax, %eax
        jz 2f
        orl $1, %edi
        movl $sum_bad, %esi
2:      call puts

        # %esi at entry pointed at boot_params: the setup header copy with a loader id.
        movl $params_bad, %esi
        cmpl $0x53726448, 0x202(%ebp)       # "HdrS"
        jne 3f
        cmpb $0, 0x210(%ebp)                # type_of_loader
        je 3f
        movl $params_ok, %esi
        jmp 4f
3:      orl $2, %edi
4:      call puts

        # The command line the loader passed (at most cmdline_size bytes).
        movl $cmdline_msg, %esi
        call puts
        cmpl $0x53726448, 0x202(%ebp)
        jne 6f
        movl 0x228(%ebp), %esi              # cmd_line_ptr
        testl %esi, %esi
        jz 6f
        movl $255, %ecx
5:      lodsb
        testb %al, %al
        jz 6f
        call putc
        loop 5b
6:      movb $10, %al
        call putc

        movl $exit_msg, %esi
        call puts
        movl %edi, %eax
        addb $0x30, %al
        call putc
        movb $10, %al
        call putc
        movl %edi, %eax
        outb %al, $0xF4
7:      cli
        hlt
        jmp 7b

# puts: %esi -> COM1 up to the NUL
puts:
        lodsb
        testb %al, %al
        jz 1f
        call putc
        jmp puts
1:      ret

# putc: %al -> COM1, polling THR-empty in the line status register
putc:
        pushl %edx
        pushl %eax
        movw $0x3FD, %dx
1:      inb %dx, %al
        testb $0x20, %al
        jz 1b
        popl %eax
        movw $0x3F8, %dx
        outb %al, %dx
        popl %edx
        ret

entry_msg:   .asciz "PVBOOT-KERNEL-ENTRY\n"
sum_ok:      .asciz "PVBOOT-KERNEL-CHECKSUM OK\n"
sum_bad:     .asciz "PVBOOT-KERNEL-CHECKSUM BAD\n"
params_ok:   .asciz "PVBOOT-KERNEL-BOOT-PARAMS OK\n"
params_bad:  .asciz "PVBOOT-KERNEL-BOOT-PARAMS BAD\n"
cmdline_msg: .asciz "PVBOOT-KERNEL-CMDLINE: "
exit_msg:    .asciz "PVBOOT-KERNEL-EXIT "
        .balign 16
