"""Serial output for the small test guests (GNU as, Intel syntax): `putc` sends AL to
COM1, `hex8` sends AL as two hex digits.  Both keep every register but AX and flags."""

SERIAL_ROUTINES = """
hex8:
    push ax
    shr al, 4
    call hexdigit
    pop ax
    and al, 15
hexdigit:
    add al, '0'
    cmp al, '9'
    jbe putc
    add al, 7
putc:
    push dx
    mov dx, 0x3f8
    out dx, al
    pop dx
    ret
"""
