# pvboot's disk comparison program. GNU as, AT&T syntax, .code16; rebuild
# roms/compare.bin with `python -m pvboot.tools.build_compare`.
#
# It reads the boot disk in assorted patterns and prints one line per INT 13h
# read on COM1 with a CRC-32 of the bytes the call returned, so that the same
# disk booted through different firmware paths (emulated IDE, Xen PV bounce
# buffer, PV direct grants, QEMU + SeaBIOS) can be compared line by line. The
# disk is tools/comparedisk.compare_disk_image(): this program at LBAs 0-15
# and tools/diskpattern.py's pattern from LBA 16 to the end (81920 sectors);
# tools/comparedisk.expected_transcript() computes what it must print, from
# the image's contents and the same table of operations as `ops` below.
#
# Transcript (CR LF line ends):
#   COMPARE START
#   OP nn KIND LBA=llllllll N=cc BUF=ssss:oooo [HIGH=hhhhhhhh] AH=xx DIGEST=dddddddd
#   OP nn REGION HIGH=hhhhhhhh LEN=llllllll DIGEST=dddddddd
#   [OP nn FAIL CF=x AH=xx CNT=xx]                   the call failed or moved another count
#   [OP nn FAIL WROTE OUTSIDE ITS BUFFER]            a guard byte around the buffer changed
#   [OP nn FAIL DATA WRAPPED TO aaaaaaaa]            a buffer above 1 MiB: data landed 1 MiB lower
#   [FAILED CALLS=nn]
#   TOTAL DIGEST=tttttttt
# KIND is CHS (AH=02h, the LBA turned into CHS with the AH=08h geometry), EDD
# (AH=42h) or PM (AH=42h, then in 32-bit protected mode the data is copied to
# HIGH, above 1 MiB, and digested there). A REGION line digests, in protected
# mode, LEN bytes at HIGH that earlier PM operations filled (GRUB's way of
# loading a kernel: read low in real mode, copy up in protected mode).
# DIGEST is the CRC-32 of zlib / IEEE 802.3 (reflected 0xEDB88320, initial and
# final XOR 0xFFFFFFFF) of the N * 512 bytes at the buffer after the call
# (digested whether or not the call succeeded; the buffer and 16 guard bytes
# either side of it are filled with 0CCh before the call). TOTAL is the same
# CRC-32 of every byte printed before the TOTAL line, CR LF included.
#
# Exit through port 0xF4 (QEMU isa-debug-exit): 0 when every call returned
# CF=0, AH=0, the full count and wrote nothing outside its buffer; 1 when one
# did not or put data 1 MiB below its buffer (all operations still run, so a
# comparison sees every line); 2 when
# the program could not set up (stage 1 read, AH=08h, A20).

        .code16
        .text
        .globl _start

        .set COM1, 0x3F8
        .set EXIT_PORT, 0xF4
        .set PROGRAM_SECTORS, 16        # tools/diskpattern.py PATTERN_START
        .set CRC_TABLE, 0x0600          # 256 x 4 bytes, linear (DS = 0)
        .set POISON, 0xCC
        .set GUARD, 16                  # guard bytes either side of a buffer
        .set HIGH_MEM, 0x100000

        .set K_CHS, 1                   # operation kinds (the table's first byte)
        .set K_EDD, 2
        .set K_PM, 3
        .set K_REGION, 4


# --- macros -----------------------------------------------------------------

.macro PUTS str                         # print a literal (no newline)
        call puts_inline
        .asciz "\str"
.endm

.macro PUTLN str                        # print a literal and CR LF
        call puts_inline
        .ascii "\str"
        .byte 13, 10, 0
.endm

# One operation: 16 bytes. REGION uses `lba` for the length.
.macro OP kind, lba, count, seg, off, high=0
        .byte \kind, \count
        .word \off, \seg
        .long \lba, \high
        .word 0
.endm
        .set OP_SIZE, 16

# --- stage 1: the boot sector -------------------------------------------------

        .include "boot_start.inc"   # _start, start: CS = DS = ES = SS = 0, SP = 7C00h
        sti
        cld
        movb %dl, boot_drive
        movw $0x7E00, %bx               # LBAs 1-15 (C0 H0 S2, 15 sectors) to 0x7E00
        movw $(0x0200 + PROGRAM_SECTORS - 1), %ax
        movw $0x0002, %cx
        xorb %dh, %dh
        int $0x13
        jc 1f
        jmp main
1:      movb $2, %al                    # nothing past this sector is loaded
        outb %al, $EXIT_PORT
2:      cli
        hlt
        jmp 2b

boot_drive:
        .byte 0

        .org 0x1BE                      # fails to assemble if stage 1 grows too big
        .fill 64, 1, 0                  # no partition table: QEMU guesses no geometry from it
        .org 0x1FE
        .word 0xAA55

# --- main ---------------------------------------------------------------------

main:
        call serial_init
        call crc_init
        PUTLN "COMPARE START"
        call get_geometry
        call a20_on

        movw $ops, %si
        movb $1, op_index
1:      cmpb $0, (%si)
        je 2f
        call do_op
        addw $OP_SIZE, %si
        incb op_index
        jmp 1b

2:      cmpb $0, failed_calls
        je 3f
        PUTS "FAILED CALLS="
        movb failed_calls, %al
        call hex8
        call newline
3:      movl total_crc, %eax            # the digest of everything printed so far
        notl %eax
        pushl %eax
        PUTS "TOTAL DIGEST="
        popl %eax
        call hex32
        call newline
        xorb %al, %al
        cmpb $0, failed_calls
        je exit
        movb $1, %al
exit:                                   # AL = exit value; never returns
        outb %al, $EXIT_PORT
1:      cli
        hlt
        jmp 1b

# Print "<string after the call> FAIL" and exit(2): the program cannot go on.
setup_fail_inline:
        popw %si
        call puts_cs
        PUTLN " FAIL"
        movb $2, %al
        jmp exit

# --- one operation (SI = its table entry) ---------------------------------------

do_op:
        pushal
        PUTS "OP "
        movb op_index, %al
        call hex8
        movb $' ', %al
        call putc
        cmpb $K_REGION, (%si)
        jne 1f
        call do_region
        popal
        ret

1:      movzwl 4(%si), %edi             # the buffer's linear address
        shll $4, %edi
        movzwl 2(%si), %eax
        addl %eax, %edi
        movl %edi, op_lin
        movzbl 1(%si), %ecx
        shll $9, %ecx
        movl %ecx, op_len

        # Poison the guards and the buffer. Below 1 MiB + 64 KiB only: the low
        # guard of a buffer at 1 MiB would be ROM, so it stops at 1 MiB.
        movl %edi, %ebx
        subl $GUARD, %ebx
        cmpl $HIGH_MEM, %edi
        jb 2f
        cmpl $HIGH_MEM, %ebx
        jae 2f
        movl $HIGH_MEM, %ebx
2:      movl %ebx, op_guard_lo
        movl %edi, %ecx
        subl %ebx, %ecx
        addl op_len, %ecx
        addl $GUARD, %ecx
        movl %ebx, %edi
        movw $poison_chunk, chunk_fn
        call for_chunks
        movl op_lin, %edi               # above 1 MiB: also where the data would land
        cmpl $HIGH_MEM, %edi            # if the BIOS dropped address bit 20
        jb 11f
        subl $HIGH_MEM, %edi
        movl op_len, %ecx
        call for_chunks

11:     cmpb $K_CHS, (%si)
        jne 3f
        movl 6(%si), %eax               # AH=02h: LBA -> CHS with the AH=08h geometry
        call lba_to_chs
        movw 4(%si), %es
        movw 2(%si), %bx
        movb 1(%si), %al
        movb $0x02, %ah
        movb boot_drive, %dl
        pushw %si
        int $0x13
        popw %si
        movb %al, op_count
        jmp 4f

3:      movzbw 1(%si), %ax              # AH=42h; the count is a byte in the table
        movw %ax, dap + 2
        movl 2(%si), %eax               # offset, segment
        movl %eax, dap + 4
        movl 6(%si), %eax
        movl %eax, dap + 8
        movl $0, dap + 12
        pushw %si
        movw $dap, %si
        movb $0x42, %ah
        xorb %al, %al
        movb boot_drive, %dl
        int $0x13
        popw %si
        movb dap + 2, %al               # the count as the BIOS wrote it back
        movb %al, op_count

4:      pushf
        popw op_flags
        xorw %bx, %bx                   # DS and ES back to 0 whatever the BIOS did
        movw %bx, %ds
        movw %bx, %es
        movb %ah, op_ah

        movzbw (%si), %bx               # kind name
        shlw $1, %bx
        pushw %si
        movw kind_names - 2(%bx), %si
        call puts
        popw %si
        PUTS " LBA="
        movl 6(%si), %eax
        call hex32
        PUTS " N="
        movb 1(%si), %al
        call hex8
        PUTS " BUF="
        movw 4(%si), %ax
        call hex16
        movb $':', %al
        call putc
        movw 2(%si), %ax
        call hex16
        cmpb $K_PM, (%si)
        jne 5f
        PUTS " HIGH="
        movl 10(%si), %eax
        call hex32
5:      PUTS " AH="
        movb op_ah, %al
        call hex8

        movb $0, guard_bad              # nothing may have landed 1 MiB lower
        movw $guard_chunk, chunk_fn
        movl op_lin, %edi
        cmpl $HIGH_MEM, %edi
        jb 12f
        subl $HIGH_MEM, %edi
        movl op_len, %ecx
        call for_chunks
12:     movb guard_bad, %al
        movb %al, op_wrapped
        movb $0, guard_bad              # the guards must still be poison
        movl op_guard_lo, %edi
        movl op_lin, %ecx
        subl %edi, %ecx
        call for_chunks
        movl op_lin, %edi
        addl op_len, %edi
        movl $GUARD, %ecx
        call for_chunks

        cmpb $K_PM, (%si)
        je 6f
        movl $0xFFFFFFFF, %eax          # digest in real mode
        movw $crc_chunk, chunk_fn
        movl op_lin, %edi
        movl op_len, %ecx
        call for_chunks
        notl %eax
        jmp 7f
6:      movl op_lin, %eax               # copy up and digest in protected mode
        movl %eax, pm_src
        movl 10(%si), %eax
        movl %eax, pm_dst
        movl op_len, %eax
        movl %eax, pm_len
        movl $pm_copy, %ebx
        call pm_call
        movl pm_dst, %eax
        movl %eax, pm_src
        movl $pm_crc, %ebx
        call pm_call
        movl pm_result, %eax
7:      PUTS " DIGEST="
        call hex32
        call newline

        xorb %dl, %dl                   # DL = 1 once this operation failed
        testb $1, op_flags              # CF
        jnz 8f
        cmpb $0, op_ah
        jne 8f
        movb op_count, %al
        cmpb 1(%si), %al
        je 9f
8:      movb $1, %dl
        call op_prefix
        PUTS "FAIL CF="
        movb op_flags, %al
        andb $1, %al
        addb $'0', %al
        call putc
        PUTS " AH="
        movb op_ah, %al
        call hex8
        PUTS " CNT="
        movb op_count, %al
        call hex8
        call newline
9:      cmpb $0, guard_bad
        je 10f
        movb $1, %dl
        call op_prefix
        PUTLN "FAIL WROTE OUTSIDE ITS BUFFER"
10:     cmpb $0, op_wrapped
        je 13f
        movb $1, %dl
        call op_prefix
        PUTS "FAIL DATA WRAPPED TO "
        movl op_lin, %eax
        subl $HIGH_MEM, %eax
        call hex32
        call newline
13:     addb %dl, failed_calls
        popal
        ret

op_prefix:                              # "OP nn "
        push %ax
        PUTS "OP "
        movb op_index, %al
        call hex8
        movb $' ', %al
        call putc
        pop %ax
        ret

# REGION: the CRC-32 of `lba` bytes at `high`, in protected mode.
do_region:
        PUTS "REGION HIGH="
        movl 10(%si), %eax
        call hex32
        PUTS " LEN="
        movl 6(%si), %eax
        call hex32
        movl 10(%si), %eax
        movl %eax, pm_src
        movl 6(%si), %eax
        movl %eax, pm_len
        movl $pm_crc, %ebx
        call pm_call
        PUTS " DIGEST="
        movl pm_result, %eax
        call hex32
        jmp newline

kind_names:
        .word name_chs, name_edd, name_pm
name_chs:       .asciz "CHS"
name_edd:       .asciz "EDD"
name_pm:        .asciz "PM"

# --- linear buffers in real mode ---------------------------------------------------
#
# for_chunks: EDI = linear address, ECX = bytes; calls the routine at chunk_fn
# with ES:DI, CX (1..8000h) for each piece, below 1 MiB as (linear >> 4):(linear
# & 15), from 1 MiB to 10FFEFh as FFFF:(linear - FFFF0h) (A20 on). EAX is passed
# through to and from the routine; everything else is preserved.

for_chunks:
        pushl %ecx
        pushl %edx
        pushl %edi
        pushl %esi
        push %es
1:      testl %ecx, %ecx
        jz 5f
        movl %edi, %edx
        cmpl $HIGH_MEM, %edx
        jae 2f
        shrl $4, %edx
        movw %dx, %es
        movl %edi, %edx
        andl $0x0F, %edx
        jmp 3f
2:      subl $0xFFFF0, %edx
        cmpl $0x10000, %edx
        jb 21f
        call setup_fail_inline
        .asciz "BUFFER OUT OF REAL MODE REACH"
21:     movw $0xFFFF, %si
        movw %si, %es
3:      movl $0x10000, %esi             # chunk = min(ECX, 10000h - offset, 8000h)
        subl %edx, %esi
        cmpl $0x8000, %esi
        jbe 4f
        movl $0x8000, %esi
4:      cmpl %ecx, %esi
        jbe 41f
        movl %ecx, %esi
41:     pushl %ecx
        pushl %edi
        movw %dx, %di
        movw %si, %cx
        call *chunk_fn
        popl %edi
        popl %ecx
        addl %esi, %edi
        subl %esi, %ecx
        jmp 1b
5:      pop %es
        popl %esi
        popl %edi
        popl %edx
        popl %ecx
        ret

crc_chunk:                              # EAX = CRC state, updated over ES:DI, CX bytes
        pushl %ebx
        push %cx
        push %di
1:      movzbl %es:(%di), %ebx
        xorb %al, %bl
        shrl $8, %eax
        xorl CRC_TABLE(,%ebx,4), %eax
        incw %di
        loop 1b
        pop %di
        pop %cx
        popl %ebx
        ret

poison_chunk:
        push %ax
        push %cx
        push %di
        movb $POISON, %al
        cld
        rep stosb
        pop %di
        pop %cx
        pop %ax
        ret

guard_chunk:                            # guard_bad = 1 unless every byte is POISON
        push %ax
        push %cx
        push %di
        movb $POISON, %al
        cld
        repe scasb
        je 1f
        movb $1, guard_bad
1:      pop %di
        pop %cx
        pop %ax
        ret

# The CRC-32 table (reflected 0xEDB88320) at CRC_TABLE; starts the TOTAL CRC.
crc_init:
        pushal
        xorl %ecx, %ecx
1:      movl %ecx, %eax
        movw $8, %dx
2:      shrl $1, %eax
        jnc 3f
        xorl $0xEDB88320, %eax
3:      decw %dx
        jnz 2b
        movl %eax, CRC_TABLE(,%ecx,4)
        incw %cx
        cmpw $256, %cx
        jb 1b
        movl $0xFFFFFFFF, total_crc
        popal
        ret

# --- disk geometry, A20 ------------------------------------------------------------

get_geometry:                           # INT 13h AH=08h on the boot drive into geo_*
        pushal
        push %es
        xorw %di, %di                   # ES:DI = 0:0 guards against BIOSes that set it for floppies
        movw %di, %es
        movb $0x08, %ah
        movb boot_drive, %dl
        int $0x13
        jc 1f
        testb %ah, %ah
        jnz 1f
        movb %cl, %al
        andw $0x3F, %ax
        jz 1f
        movw %ax, geo_spt
        movb %dh, %al
        incw %ax                        # AH is 0 from the andw above
        movw %ax, geo_heads
        pop %es
        popal
        ret
1:      call setup_fail_inline
        .asciz "AH08"

lba_to_chs:                             # EAX = LBA -> CX, DH in INT 13h CHS form
        pushl %eax
        push %bx
        pushl %edx
        xorl %edx, %edx
        movzwl geo_spt, %ebx
        divl %ebx                       # EAX = track, EDX = sector - 1
        incw %dx
        movw %dx, %cx                   # CL = sector (1..63)
        xorl %edx, %edx
        movzwl geo_heads, %ebx
        divl %ebx                       # EAX = cylinder, DX = head
        movb %dl, %bl
        popl %edx
        movb %bl, %dh
        movb %al, %ch
        shlb $6, %ah
        orb %ah, %cl
        pop %bx
        popl %eax
        ret

a20_on:                                 # INT 15h AX=2401h and port 92h, checked
        pushal
        push %es
        movw $0x2401, %ax
        int $0x15
        inb $0x92, %al                  # never the reset bit
        orb $0x02, %al
        andb $0xFE, %al
        outb %al, $0x92
        movw $0xFFFF, %ax               # 0000:0500 and FFFF:0510 differ only with A20 on
        movw %ax, %es
        movw $0x1234, 0x500
        movw $0xABCD, %es:0x510
        cmpw $0x1234, 0x500
        jne 1f
        pop %es
        popal
        ret
1:      call setup_fail_inline
        .asciz "A20"

# --- protected mode ---------------------------------------------------------------

        .include "pm_call.inc"       # pm_call, the GDT; routines take their arguments in pm_*

        .code32
pm_copy:                                # pm_len bytes from pm_src to pm_dst
        movl pm_src, %esi
        movl pm_dst, %edi
        movl pm_len, %ecx
        cld
        rep movsb
        ret

pm_crc:                                 # pm_result = CRC-32 of pm_len bytes at pm_src
        movl pm_src, %esi
        movl pm_len, %ecx
        movl $0xFFFFFFFF, %eax
        jecxz 2f
1:      movzbl (%esi), %ebx
        xorb %al, %bl
        shrl $8, %eax
        xorl CRC_TABLE(,%ebx,4), %eax
        incl %esi
        decl %ecx
        jnz 1b
2:      notl %eax
        movl %eax, pm_result
        ret
        .code16

# --- serial output (every byte printed also goes into the TOTAL CRC) -----------------

serial_init:                            # 115200 8N1, FIFO on, no interrupts
        push %ax
        push %dx
        movw $COM1 + 1, %dx
        xorb %al, %al
        outb %al, %dx
        movw $COM1 + 3, %dx
        movb $0x80, %al
        outb %al, %dx
        movw $COM1, %dx
        movb $1, %al
        outb %al, %dx
        movw $COM1 + 1, %dx
        xorb %al, %al
        outb %al, %dx
        movw $COM1 + 3, %dx
        movb $0x03, %al
        outb %al, %dx
        movw $COM1 + 2, %dx
        movb $0xC7, %al
        outb %al, %dx
        movw $COM1 + 4, %dx
        movb $0x03, %al
        outb %al, %dx
        pop %dx
        pop %ax
        ret

putc:                                   # AL
        pushl %eax
        pushl %ebx
        push %dx
        movzbl %al, %ebx                # total_crc over the byte
        xorb total_crc, %bl
        movl total_crc, %edx
        shrl $8, %edx
        xorl CRC_TABLE(,%ebx,4), %edx
        movl %edx, total_crc
        movb %al, %ah
        movw $COM1 + 5, %dx
1:      inb %dx, %al
        testb $0x20, %al                # THR empty
        jz 1b
        movw $COM1, %dx
        movb %ah, %al
        outb %al, %dx
        pop %dx
        popl %ebx
        popl %eax
        ret

        .include "serial_print.inc"  # newline, puts, puts_cs, puts_inline, hex8/16/32 over putc

# --- data ---------------------------------------------------------------------------

        .p2align 2
total_crc:      .long 0
op_lin:         .long 0                 # the current operation's buffer, linear
op_len:         .long 0                 # and its length in bytes
op_guard_lo:    .long 0                 # where its low guard starts
pm_src:         .long 0
pm_dst:         .long 0
pm_len:         .long 0
pm_result:      .long 0
chunk_fn:       .word 0
op_flags:       .word 0                 # FLAGS after the INT 13h call
op_ah:          .byte 0
op_count:       .byte 0                 # AL (CHS) or the packet's count (EDD) after the call
op_index:       .byte 0
failed_calls:   .byte 0
guard_bad:      .byte 0
op_wrapped:     .byte 0                 # data landed 1 MiB below a buffer above 1 MiB
geo_spt:        .word 0
geo_heads:      .word 0

        .p2align 2
dap:                                    # EDD disk address packet
        .byte 16, 0
        .word 0                         # count
        .word 0, 0                      # buffer offset, segment
        .long 0, 0                      # LBA

# --- the operations: tools/comparedisk.py OPS lists the same, in the same order ------
#
#       kind      LBA    N   segment offset [high]
        .p2align 4
ops:
        # CHS (AH=02h) of each size, buffer 1000:0000; LBAs as CHS through AH=08h
        OP K_CHS,    16,   1, 0x1000, 0x0000
        OP K_CHS,    17,   2, 0x1000, 0x0000
        OP K_CHS,    61,   7, 0x1000, 0x0000     # across the end of track 0 (63 spt)
        OP K_CHS,  1000,   8, 0x1000, 0x0000
        OP K_CHS,  1001,   9, 0x1000, 0x0000
        OP K_CHS,  2015,  15, 0x1000, 0x0000
        OP K_CHS,  1008,  16, 0x1000, 0x0000     # cylinder 1 with 16 heads x 63
        OP K_CHS,  4097,  17, 0x1000, 0x0000
        OP K_CHS,  5000,  63, 0x1000, 0x0000
        OP K_CHS,  6047,  64, 0x1000, 0x0000
        OP K_CHS,  7777, 100, 0x1000, 0x0000
        OP K_CHS,  9001, 127, 0x1000, 0x0000
        # EDD (AH=42h) of each size, buffer 1000:0000, across the disk
        OP K_EDD, 12345,   1, 0x1000, 0x0000
        OP K_EDD, 32767,   2, 0x1000, 0x0000
        OP K_EDD, 65533,   7, 0x1000, 0x0000     # across LBA 65536
        OP K_EDD, 65536,   8, 0x1000, 0x0000
        OP K_EDD, 70001,   9, 0x1000, 0x0000
        OP K_EDD, 40000,  15, 0x1000, 0x0000
        OP K_EDD, 50001,  16, 0x1000, 0x0000
        OP K_EDD,    16,  17, 0x1000, 0x0000
        OP K_EDD, 75000,  63, 0x1000, 0x0000
        OP K_EDD, 20001,  64, 0x1000, 0x0000
        OP K_EDD, 30003, 100, 0x1000, 0x0000
        OP K_EDD, 60001, 127, 0x1000, 0x0000
        OP K_EDD, 81913,   7, 0x1000, 0x0000     # the disk's last sectors
        # Awkward buffers
        OP K_EDD,   101,   9, 0x1000, 0x0001     # odd
        OP K_CHS,   203,  17, 0x2000, 0x0003     # odd
        OP K_EDD,   307,  15, 0x1234, 0x0005     # linear 12345h
        OP K_EDD,   400,   8, 0x1000, 0x0200     # sector-aligned, not page-aligned
        OP K_EDD,   400,   8, 0x1020, 0x0000     # the same linear address
        OP K_EDD,   509,  16, 0x1000, 0x0100     # offset not a multiple of 512
        OP K_EDD,   611,   2, 0x1000, 0x0FFE     # across a 4 KiB page after 2 bytes
        OP K_EDD,   700,  16, 0x1FF0, 0x0000     # across the 64 KiB boundary 20000h
        OP K_CHS,    75,   7, 0x1FE0, 0x0180     # across 20000h
        OP K_EDD,   801, 127, 0x2FFF, 0x000F     # odd, across 30000h
        OP K_EDD,    80,   2, 0x1000, 0xFF00     # past the segment's end: linear, no wrap
        OP K_CHS,    90,   2, 0x1000, 0xFF00
        OP K_CHS,  3001,  64, 0x4000, 0x8001     # odd, across 50000h
        OP K_EDD, 66001, 100, 0x3000, 0x7E01     # odd, across 40000h
        # Above 1 MiB in real mode (A20 on), FFFF:A010 = linear 10A000h and up,
        # within 10A000h-10FFEFh: a BIOS that drops address bit 20 (SeaBIOS's
        # 16-bit ATA driver keeps only 16 bits of linear >> 4 for ES) puts the
        # data at 0A000h-0FFEFh, free memory checked for it, not on the IVT,
        # this program or its stack.
        OP K_EDD,  1101,   8, 0xFFFF, 0xA010
        OP K_EDD,  1203,   7, 0xFFFF, 0xB011     # odd
        OP K_EDD, 70003,  40, 0xFFFF, 0xA210
        OP K_CHS,  1501,  16, 0xFFFF, 0xC010
        OP K_EDD,  1301,  47, 0xFFFF, 0xA020     # up to 10FE10h
        # Protected-mode round trips: read low, copy to 2 MiB, digest there
        OP K_PM,  20001, 127, 0x1000, 0x0000, 0x200000
        OP K_PM,  20128, 127, 0x1000, 0x0000, 0x20FE00
        OP K_PM,  20255, 127, 0x1000, 0x0000, 0x21FC00
        OP K_PM,  20382, 127, 0x1000, 0x0000, 0x22FA00
        OP K_REGION, 4*127*512, 0, 0, 0, 0x200000
        OP K_PM,  77777,   9, 0x2FFF, 0x000F, 0x300001
        .byte 0                         # end of the table

        .balign 512, 0
