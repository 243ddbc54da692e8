; pvboot BIOS ROM stubs (AT&T syntax, 16-bit, assembled with keystone at 0xF0000).
;
; Each top-level label is one entry point.  A service stub traps into the Python
; firmware with `outb %al, $0xee` (the trap port; AL is not used) and returns with
; `iret`: the Python handler has already put its results in the registers and the
; carry/zero flags into the FLAGS image this iret restores.  At the trap SS:SP points
; at the caller's IP, CS, FLAGS, which is how the firmware finds that image.

unused_vector:
    iret

post_entry:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ss
    movw $0x7000, %sp
    movw %ax, %ds
    movw %ax, %es
    outb %al, $0xee
    int $0x19
    int $0x18
  post_hang:
    cli
    hlt
    jmp post_hang

; IRQ0: the firmware advances the BDA tick count, then user hook INT 1Ch, then EOI.
int08_entry:
    outb %al, $0xee
    int $0x1c
    pushw %ax
    movb $0x20, %al
    outb %al, $0x20
    popw %ax
    iret

int10_entry:
    outb %al, $0xee
    iret

int11_entry:
    outb %al, $0xee
    iret

int12_entry:
    outb %al, $0xee
    iret

int13_entry:
    outb %al, $0xee
    iret

int14_entry:
    outb %al, $0xee
    iret

int15_entry:
    outb %al, $0xee
    iret

int16_entry:
    outb %al, $0xee
    iret

int17_entry:
    outb %al, $0xee
    iret

int18_entry:
    outb %al, $0xee
    iret

int19_entry:
    outb %al, $0xee
    iret

int1a_entry:
    outb %al, $0xee
    iret

; keystone has no 16-bit far jump with an immediate pointer: spell out `ljmp $0xf000, $post_entry`.
reset_vector:
    .byte 0xea
    .word post_entry
    .word 0xf000
