"""Floppy images of a size no standard diskette has: up to 2.88M they boot in the drive
QEMU picks (a 2.88M drive, read as an 80/2/36 medium) and INT 13h answers as under
QEMU + SeaBIOS; larger ones are refused with exit 2 and the reason."""
import pytest

from pvboot.tools import qemu
from pvboot.tools.cli import main
from tests.conftest import assemble16
from tests.firmware.guest_serial import SERIAL_ROUTINES

# A GRUB rescue floppy (grub-mkrescue --format=i386-pc, floppy size) is this big.
GRUB_RESCUE_FLOPPY = 1_296_384

def geometry_program():
    """AH=08h on drive 00h (AH BL CH CL DH DL), then CHS reads of the last sector of
    the image, of the first sector past it (zeros on QEMU) and of sector 37 (past the
    2.88M track): "AH WORD" each; exit 0 through port 0xF4."""
    return assemble16(f"""
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7000
        mov ah, 8
        xor dl, dl
        int 0x13
        push dx
        mov al, ah
        call hex8
        mov al, bl
        call hex8
        mov al, ch
        call hex8
        mov al, cl
        call hex8
        pop dx
        mov al, dh
        call hex8
        mov al, dl
        call hex8
        mov si, offset reads
        mov bp, 3
    next:
        mov ax, 0x1000
        mov es, ax
        mov word ptr es:[0], 0xBEEF
        xor bx, bx
        mov ax, 0x0201
        mov cx, [si]
        mov dx, [si + 2]
        int 0x13
        mov al, ' '
        call putc
        mov al, ah
        call hex8
        mov ax, es:[0]
        push ax
        mov al, ah
        call hex8
        pop ax
        call hex8
        add si, 4
        dec bp
        jnz next
        mov al, 0
        out 0xf4, al
    1:  hlt
        jmp 1b
    {SERIAL_ROUTINES}
    reads:
        # LBA 2531 = C35 H0 S12 (36 spt, 2 heads); LBA 2532 = C35 H0 S13; C0 H0 S37
        .word 0x230C, 0x0000
        .word 0x230D, 0x0000
        .word 0x0025, 0x0000
    """)


def floppy_image(path, size):
    sectors = [geometry_program()]
    sectors += [(lba & 0xFFFF).to_bytes(2, "little") * 256 for lba in range(1, size // 512)]
    path.write_bytes(b"".join(sectors))
    return str(path)


def test_odd_size_floppy_boots_as_under_seabios(tmp_path, capsys):
    image = floppy_image(tmp_path / "rescue.img", GRUB_RESCUE_FLOPPY)
    code = main(["boot", "--floppy", image, "--timeout", "30"])
    ours = capsys.readouterr().out
    assert code == 0, ours
    if not qemu.qemu_available():
        pytest.skip(f"{qemu.QEMU} not installed (Debian package {qemu.QEMU_PACKAGE})")
    exit_value, theirs = qemu.run_qemu(image, floppy=True, timeout=30)
    assert exit_value == 0
    assert ours.strip() == theirs.strip()
    # 2.88M drive (BL=05), 80 cylinders, 36 sectors, 2 heads, one drive; the image's
    # last sector (LBA 2531 = 09E3h), zeros past it, and sector 37 refused (01h).
    assert ours.split() == ["00054F240101", "0009E3", "000000", "01BEEF"]


def test_floppy_larger_than_any_diskette_is_refused(tmp_path, capsys):
    image = floppy_image(tmp_path / "huge.img", 4 * 1024 * 1024)
    code = main(["boot", "--floppy", image, "--timeout", "30"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "larger than the largest floppy" in err
