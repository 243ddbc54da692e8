"""INT 13h as SeaBIOS answers it: register-level calls through firmware.int13 on a real
machine's memory and registers, and boot sectors that call INT 13h on the full machine.

Expected values come from SeaBIOS's disk.c rules and from the images' own bytes, not
from the code under test.
"""
import hashlib
import shutil
import struct
import subprocess
from types import SimpleNamespace

import pytest

from pvboot.emu.diskimage import DiskImage
from pvboot.firmware.int13 import handle_13
from pvboot.firmware.regs import Regs
from tests.fakebios import FakeBios

MiB = 1 << 20
GiB = 1 << 30
FRAME = 0x6FFA          # where the fake interrupt frame (IP, CS, FLAGS) sits


class Int13Bios(FakeBios):
    """The shared fake BIOS plus a way to make one INT 13h call."""

    def __init__(self, disks, trace=()):
        super().__init__(disks, trace)

    def call(self, cf_in=True, **values):
        """INT 13h with the given registers; CF starts as `cf_in` so that a handler that
        forgets to set or clear it is caught."""
        cpu = self.machine.cpu
        for name in ("eax", "ebx", "ecx", "edx", "esi", "edi"):
            cpu.set(name, 0)
        for name in ("ds", "es"):
            cpu.set(name, 0)
        cpu.set("ss", 0)
        cpu.set("esp", FRAME)
        self.mem.write(FRAME, struct.pack("<HHH", 0x7C00, 0, 0x0202 | int(cf_in)))
        for name, value in values.items():
            cpu.set(name, value)
        regs = Regs.at_trap(cpu, self.mem)
        handle_13(self, regs)
        regs.commit()
        out = {name: cpu.get(name) for name in ("ax", "bx", "cx", "dx", "si", "di", "es", "ds")}
        out.update(ah=out["ax"] >> 8, al=out["ax"] & 0xFF, bl=out["bx"] & 0xFF,
                   ch=out["cx"] >> 8, cl=out["cx"] & 0xFF, dh=out["dx"] >> 8, dl=out["dx"] & 0xFF,
                   cf=bool(self.mem.read_u16(FRAME + 4) & 1))
        return SimpleNamespace(**out)


def pattern_image(tmp_path, sectors, name="disk.img", **kw):
    data = b"".join(struct.pack("<I", lba) + bytes([lba * 7 & 0xFF]) * 508 for lba in range(sectors))
    path = tmp_path / name
    path.write_bytes(data)
    return DiskImage(path, **kw), data, path


def sparse_image(tmp_path, size, name="disk.img", **kw):
    path = tmp_path / name
    with open(path, "wb") as f:
        f.truncate(size)
    return DiskImage(path, **kw)


def chs_regs(cylinder, head, sector):
    return {"cx": ((cylinder & 0xFF) << 8) | ((cylinder >> 2) & 0xC0) | sector, "dx": (head << 8) | 0x80}


def put_dap(mem, addr, count, segment, offset, lba, size=16):
    mem.write(addr, struct.pack("<BBHHHQ", size, 0, count, offset, segment, lba))


@pytest.fixture
def small_disk(tmp_path):
    """A 10 MiB disk (LCHS 20/16/63 on QEMU+SeaBIOS) with a known pattern in 300 sectors."""
    image, data, path = pattern_image(tmp_path, 300)
    # Grow it to 10 MiB of zeros behind the pattern.
    image.close()
    with open(path, "r+b") as f:
        f.truncate(10 * MiB)
    data = data + bytes(10 * MiB - len(data))
    image = DiskImage(path)
    yield Int13Bios([image]), image, data, path
    image.close()


# -- CHS calls -----------------------------------------------------------------------------
def test_chs_read(small_disk):
    bios, _, data, _ = small_disk
    # C/H/S 0/2/5 on 16 heads x 63 sectors is LBA 2*63 + 4 = 130.
    r = bios.call(ax=0x0203, bx=0x0100, es=0x2000, **chs_regs(0, 2, 5))
    assert (r.ah, r.al, r.cf) == (0, 3, False)
    assert bios.mem.read(0x20100, 3 * 512) == data[130 * 512:133 * 512]
    assert bios.mem.read_u8(0x474) == 0
    # Cylinder bits 8-9 come from CL's top bits: cylinder 1 = LBA 1008.
    r = bios.call(ax=0x0201, bx=0, es=0x3000, **chs_regs(1, 0, 1))
    assert (r.ah, r.al, r.cf) == (0, 1, False)
    assert bios.mem.read(0x30000, 512) == data[1008 * 512:1009 * 512]


@pytest.mark.parametrize("al, cylinder, head, sector", [
    (0, 0, 0, 1),           # no sectors
    (129, 0, 0, 1),         # more than 128
    (1, 0, 0, 0),           # sector 0
    (1, 20, 0, 1),          # cylinder past the logical geometry (20 cylinders)
    (1, 0, 16, 1),          # head past it (sectors past the geometry: see the floppy test)
])
def test_chs_parameter_errors(small_disk, al, cylinder, head, sector):
    bios, _, _, _ = small_disk
    r = bios.call(cf_in=False, ax=0x0200 | al, bx=0, es=0x2000, **chs_regs(cylinder, head, sector))
    assert (r.ah, r.cf) == (0x01, True)
    assert r.al == al                      # AL is left alone on a parameter error
    assert bios.mem.read_u8(0x474) == 0x01
    # AH=01h reports that status (and keeps it).
    r = bios.call(cf_in=False, ax=0x0100, dx=0x0080)
    assert (r.ah, r.cf) == (0x01, True)
    assert bios.mem.read_u8(0x474) == 0x01


def test_chs_write_goes_to_the_overlay(small_disk):
    bios, image, data, path = small_disk
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    bios.mem.fill(0x40000, 1024, 0x3C)
    r = bios.call(ax=0x0302, bx=0, es=0x4000, **chs_regs(0, 0, 2))
    assert (r.ah, r.al, r.cf) == (0, 2, False)
    assert image.read(1, 2) == b"\x3C" * 1024
    assert image.read(3, 1) == data[3 * 512:4 * 512]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_verify_and_format(small_disk):
    bios, _, _, _ = small_disk
    r = bios.call(ax=0x0405, **chs_regs(3, 1, 1))
    assert (r.ah, r.al, r.cf) == (0, 5, False)
    r = bios.call(ax=0x0510, **chs_regs(3, 1, 1))
    assert (r.ah, r.cf) == (0, False)
    r = bios.call(cf_in=False, ax=0x0540, **chs_regs(3, 1, 1))     # 64 > 63 sectors
    assert (r.ah, r.cf) == (1, True)


# -- extended calls --------------------------------------------------------------------------
def test_extended_read_and_count_write_back(small_disk):
    bios, _, data, _ = small_disk
    mem = bios.mem
    put_dap(mem, 0x600, 127, 0x1000, 0x0010, 17)
    r = bios.call(ax=0x4200, dx=0x0080, si=0x0600)
    assert (r.ah, r.cf) == (0, False)
    assert mem.read(0x10010, 127 * 512) == data[17 * 512:144 * 512]
    assert mem.read_u16(0x602) == 127
    # Past the end: the sectors that exist are read, the count says how many.
    last = 10 * MiB // 512
    mem.fill(0x50000, 4 * 512, 0xEE)
    put_dap(mem, 0x600, 4, 0x5000, 0, last - 2)
    r = bios.call(cf_in=False, ax=0x4200, dx=0x0080, si=0x0600)
    assert (r.ah, r.cf) == (0x0C, True)
    assert mem.read_u16(0x602) == 2
    assert mem.read(0x50000, 1024) == data[(last - 2) * 512:]
    assert mem.read(0x50400, 1024) == b"\xEE" * 1024


def test_extended_parameter_checks(small_disk):
    bios, _, _, _ = small_disk
    mem = bios.mem
    sectors = 10 * MiB // 512
    put_dap(mem, 0x600, 1, 0x2000, 0, sectors)                  # lba == sectors
    r = bios.call(cf_in=False, ax=0x4200, dx=0x0080, si=0x0600)
    assert (r.ah, r.cf) == (0x01, True)
    assert mem.read_u16(0x602) == 1                             # not written back
    put_dap(mem, 0x600, 0, 0x2000, 0, 5)                        # nothing to do
    r = bios.call(ax=0x4200, dx=0x0080, si=0x0600)
    assert (r.ah, r.cf) == (0, False)
    ops = bios.counters["disk_ops"]
    put_dap(mem, 0x600, 129, 0x2000, 0, 5)                      # over 64 KiB
    r = bios.call(cf_in=False, ax=0x4200, dx=0x0080, si=0x0600)
    assert (r.ah, r.cf) == (0x09, True)
    assert mem.read_u16(0x602) == 0
    assert bios.counters["disk_ops"] == ops + 1


def test_extended_write_seek_verify(small_disk):
    bios, image, data, _ = small_disk
    mem = bios.mem
    mem.fill(0x20000, 3 * 512, 0x77)
    put_dap(mem, 0x600, 3, 0x2000, 0, 200)
    r = bios.call(ax=0x4300, dx=0x0080, si=0x0600)
    assert (r.ah, r.cf, mem.read_u16(0x602)) == (0, False, 3)
    assert image.read(200, 3) == b"\x77" * 1536
    for ah in (0x44, 0x47):
        put_dap(mem, 0x600, 8, 0x2000, 0, 100)
        r = bios.call(ax=ah << 8, dx=0x0080, si=0x0600)
        assert (r.ah, r.cf, mem.read_u16(0x602)) == (0, False, 8)
    assert image.read(100, 8) == data[100 * 512:108 * 512]


def test_read_only_disk(tmp_path):
    image, data, _ = pattern_image(tmp_path, 64, read_only=True)
    bios = Int13Bios([image])
    put_dap(bios.mem, 0x600, 2, 0x2000, 0, 4)
    r = bios.call(cf_in=False, ax=0x4300, dx=0x0080, si=0x0600)
    assert (r.ah, r.cf) == (0x03, True)
    assert bios.mem.read_u16(0x602) == 0
    r = bios.call(cf_in=False, ax=0x0301, bx=0, es=0x2000, **chs_regs(0, 0, 1))
    assert (r.ah, r.al, r.cf) == (0x03, 0, True)
    assert image.read(0, 64) == data


def test_buffer_in_rom_does_not_crash(small_disk):
    bios, _, _, _ = small_disk
    rom = bios.mem.read(0xF0000, 0x10000)
    r = bios.call(ax=0x0201, bx=0x0000, es=0xF000, **chs_regs(0, 0, 1))
    assert (r.ah, r.al, r.cf) == (0, 1, False)
    assert bios.mem.read(0xF0000, 0x10000) == rom


# -- information calls ---------------------------------------------------------------------
def test_get_parameters_hard_disk(tmp_path):
    big = sparse_image(tmp_path, GiB, "big.img")
    small = sparse_image(tmp_path, 10 * MiB, "small.img")
    bios = Int13Bios([big, small])
    # 1 GiB: LCHS 1024/32/63; SeaBIOS reports cylinders - 2 = 1022.
    r = bios.call(ax=0x0800, dx=0x0080)
    assert (r.ah, r.cf, r.al) == (0, False, 0)
    assert r.ch == 1022 & 0xFF and r.cl == ((1022 >> 2) & 0xC0) | 63
    assert (r.dh, r.dl) == (31, 2)
    r = bios.call(ax=0x0800, dx=0x0081)
    assert (r.ch, r.cl, r.dh, r.dl) == (18, 63, 15, 2)
    # AH=15h: (cylinders - 1) * heads * sectors.
    r = bios.call(ax=0x1500, dx=0x0080)
    assert (r.ah, r.cf) == (3, False)
    assert (r.cx << 16) | r.dx == 1023 * 32 * 63
    r = bios.call(cf_in=False, ax=0x1600, dx=0x0080)
    assert (r.ah, r.cf) == (1, True)


def test_extensions_check_and_misc_functions(small_disk):
    bios, _, _, _ = small_disk
    r = bios.call(ax=0x4100, bx=0x55AA, dx=0x0080)
    assert (r.ah, r.bx, r.cx, r.cf) == (0x30, 0xAA55, 0x0007, False)
    for ah in (0x09, 0x0C, 0x0D, 0x10, 0x11, 0x14, 0x00, 0x45, 0x49):
        r = bios.call(ax=ah << 8, dx=0x0080)
        assert (r.ah, r.cf) == (0, False), hex(ah)
    r = bios.call(cf_in=False, ax=0x4600, dx=0x0080)
    assert (r.ah, r.cf) == (0xB2, True)
    r = bios.call(ax=0x4E01, dx=0x0080)
    assert (r.ah, r.cf) == (0, False)
    r = bios.call(cf_in=False, ax=0x4E02, dx=0x0080)
    assert (r.ah, r.cf) == (1, True)
    for ah in (0x06, 0x0A, 0x12, 0x4A, 0x50, 0xFF):
        r = bios.call(cf_in=False, ax=ah << 8, dx=0x0080)
        assert (r.ah, r.cf) == (1, True), hex(ah)


def test_unknown_drives(small_disk):
    bios, _, _, _ = small_disk
    r = bios.call(cf_in=False, ax=0x0800, dx=0x0081)
    assert (r.ah, r.cf) == (1, True)
    assert bios.mem.read_u8(0x474) == 1
    r = bios.call(cf_in=False, ax=0x0201, dx=0x00E0, cx=1)
    assert (r.ah, r.cf) == (1, True)
    bios.mem.write_u8(0x441, 0)
    r = bios.call(cf_in=False, ax=0x0000, dx=0x0000)
    assert (r.ah, r.cf) == (1, True)
    assert bios.mem.read_u8(0x441) == 1           # a floppy number: the floppy status


@pytest.mark.parametrize("size", [26, 29, 30, 65, 66, 74])
def test_edd_drive_parameters(tmp_path, size):
    big = sparse_image(tmp_path, GiB, "big.img")
    bios = Int13Bios([big])
    mem = bios.mem
    mem.fill(0x700, 80, 0xCC)
    mem.write_u16(0x700, size)
    r = bios.call(ax=0x4800, dx=0x0080, si=0x0700)
    assert (r.ah, r.cf) == (0, False)
    buf = mem.read(0x700, 80)
    returned, infos, cyl, heads, spt, sectors, bps = struct.unpack_from("<HHIIIQH", buf)
    assert (infos, cyl, heads, spt, sectors, bps) == (2, 2080, 16, 63, GiB // 512, 512)
    assert returned == (26 if size < 30 else 30)
    if size < 30:
        assert buf[26:] == b"\xCC" * 54
        return
    seg, off = struct.unpack_from("<HH", buf, 28)[0], struct.unpack_from("<HH", buf, 26)[0]
    dpte = mem.read((seg << 4) + off, 16)
    assert struct.unpack_from("<HHB", dpte) == (0x1F0, 0x3F6, 0xE0)
    assert dpte[6] == 14 and dpte[14] == 0x11 and sum(dpte) & 0xFF == 0
    assert struct.unpack_from("<H", dpte, 10)[0] == (1 << 3) | (1 << 9) | (1 << 4)   # LBA-translated
    if size < 66:
        assert buf[30:] == b"\xCC" * 50
        return
    assert struct.unpack_from("<HB", buf, 30) == (0xBEDD, 44 if size == 74 else 36)
    # As SeaBIOS on QEMU: the IDE controller is PCI function 00:01.1, channel 0, master.
    assert buf[36:48] == b"PCI ATA     "
    assert struct.unpack_from("<QQ", buf, 48) == (0x010100, 0)
    end = 74 if size == 74 else 66
    assert sum(buf[30:end]) & 0xFF == 0
    assert buf[end:] == b"\xCC" * (80 - end)


def test_edd_buffer_too_small(small_disk):
    bios, _, _, _ = small_disk
    bios.mem.write_u16(0x700, 25)
    r = bios.call(cf_in=False, ax=0x4800, dx=0x0080, si=0x0700)
    assert (r.ah, r.cf) == (1, True)
    assert bios.mem.read_u16(0x700) == 25


# -- floppies ------------------------------------------------------------------------------
@pytest.fixture
def floppy(tmp_path):
    image, data, _ = pattern_image(tmp_path, 2880, "fd.img", kind="floppy")
    yield Int13Bios([image]), image, data
    image.close()


def test_floppy_parameters(floppy):
    bios, _, _ = floppy
    r = bios.call(ax=0x0800, dx=0x0000)
    assert (r.ah, r.cf, r.al) == (0, False, 0)
    assert (r.bx, r.ch, r.cl, r.dh, r.dl) == (4, 79, 18, 1, 1)
    table = bios.mem.read((r.es << 4) + r.di, 14)
    ivt = bios.mem.read_u32(0x1E * 4)
    assert ((ivt >> 16) << 4) + (ivt & 0xFFFF) == (r.es << 4) + r.di
    assert (table[3], table[4], table[11], table[13]) == (2, 18, 79, 4)
    assert bios.mem.read_u8(0x441) == 0
    r = bios.call(ax=0x1500, dx=0x0000)
    assert (r.ah, r.cf) == (1, False)
    r = bios.call(cf_in=False, ax=0x1600, dx=0x0000)
    assert (r.ah, r.cf) == (6, True)
    assert bios.mem.read_u8(0x441) == 6
    r = bios.call(cf_in=False, ax=0x0100, dx=0x0000)
    assert (r.ah, r.cf) == (6, True)
    for ah in (0x41, 0x42, 0x48, 0x10, 0x0C):          # not floppy functions
        r = bios.call(cf_in=False, ax=ah << 8, dx=0x0000)
        assert (r.ah, r.cf) == (1, True), hex(ah)


def test_floppy_read_and_dma_boundary(floppy):
    bios, _, data = floppy
    # C/H/S 1/1/3 on 2 heads x 18 sectors = LBA (1*2 + 1)*18 + 2 = 56; 20 sectors run on
    # through head 1 into the next cylinder, as QEMU's multi-track controller does.
    r = bios.call(ax=0x0214, bx=0, es=0x2000, cx=0x0103, dx=0x0100)
    assert (r.ah, r.al, r.cf) == (0, 20, False)
    assert bios.mem.read(0x20000, 20 * 512) == data[56 * 512:76 * 512]
    r = bios.call(cf_in=False, ax=0x0202, bx=0xFE00, es=0x2000, cx=0x0001, dx=0x0000)
    assert (r.ah, r.al, r.cf) == (0x09, 0, True)
    r = bios.call(cf_in=False, ax=0x0201, bx=0, es=0x2000, cx=0x0013, dx=0x0000)   # sector 19
    assert (r.ah, r.cf) == (1, True)


def test_floppy_medium_in_a_larger_drive(tmp_path):
    # QEMU puts a 720K diskette in a 1.44M drive: INT 13h checks and reports the drive's
    # geometry (80/2/18, type 4); the medium has 9 sectors a track.
    image, data, _ = pattern_image(tmp_path, 1440, "fd720.img", kind="floppy")
    bios = Int13Bios([image])
    r = bios.call(ax=0x0800, dx=0x0000)
    assert (r.bx, r.ch, r.cl, r.dh) == (4, 79, 18, 1)
    # Sector 10 passes SeaBIOS's check but is not on the medium: the controller fails.
    r = bios.call(cf_in=False, ax=0x0201, bx=0, es=0x2000, cx=0x000A, dx=0x0000)
    assert (r.ah, r.al, r.cf) == (0x20, 0, True)
    # C/H/S 1/1/2 is the medium's LBA (1*2 + 1)*9 + 1 = 28; the transfer runs on linearly.
    r = bios.call(ax=0x0203, bx=0, es=0x2000, cx=0x0102, dx=0x0100)
    assert (r.ah, r.al, r.cf) == (0, 3, False)
    assert bios.mem.read(0x20000, 3 * 512) == data[28 * 512:31 * 512]
    image.close()


def test_floppy_read_past_the_end_reads_zeros(floppy):
    bios, _, data = floppy
    bios.mem.fill(0x20000, 1024, 0xEE)
    r = bios.call(ax=0x0202, bx=0, es=0x2000, cx=0x4F12, dx=0x0100)     # last sector + 1
    assert (r.ah, r.al, r.cf) == (0, 2, False)
    assert bios.mem.read(0x20000, 1024) == data[-512:] + bytes(512)


# -- on the whole machine ------------------------------------------------------------------------
HAVE_BINUTILS = shutil.which("as") is not None and shutil.which("ld") is not None


def assemble_boot_sector(source, tmp_path):
    """GNU as (AT&T, .code16) -> a 512-byte boot sector linked at 0x7C00."""
    src, obj, out = tmp_path / "boot.S", tmp_path / "boot.o", tmp_path / "boot.bin"
    src.write_text(".code16\n.text\n.globl _start\n_start:\n" + source + "\n")
    subprocess.run(["as", "--32", "-o", str(obj), str(src)], check=True, capture_output=True)
    subprocess.run(["ld", "-m", "elf_i386", "-Ttext", "0x7c00", "-e", "_start", "--oformat", "binary",
                    "-o", str(out), str(obj)], check=True, capture_output=True)
    code = out.read_bytes()
    assert len(code) <= 510
    return code.ljust(510, b"\0") + b"\x55\xAA"


# Exit values: 0x30 + the step that went wrong; 3 when all is well (1 + 2 from the two
# routines below, so a stale translation of the first one shows as 2).
MACHINE_PROGRAM = """
        cli
        xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw $0x7C00, %sp
        movb %dl, drive
        movb $0x31, %cl
        movw $dap1, %si                 # LBA 1 (mov $1, %al; ret) -> 0:8000
        movb $0x42, %ah
        movb drive, %dl
        int $0x13
        jc fail
        call 0x8000
        movb %al, %bl
        movb $0x32, %cl
        movw $dap2, %si                 # LBA 2 (mov $2, %al; ret) over it
        movb $0x42, %ah
        movb drive, %dl
        int $0x13
        jc fail
        call 0x8000
        addb %al, %bl
        movb $0x33, %cl                 # LBA 3 -> FFFF:0010 = 1 MiB (SeaBIOS would wrap it to 0)
        movw $dap3, %si
        movb $0x42, %ah
        movb drive, %dl
        int $0x13
        jc fail
        movw $0xFFFF, %ax
        movw %ax, %es
        cmpl $0x5A5A0003, %es:0x10
        jne fail
        movb $0x34, %cl                 # AH=08h: DL = 1 hard disk, 20/16/63 -> CX=123Fh
        movb $0x08, %ah
        movb drive, %dl
        int $0x13
        jc fail
        cmpw $0x123F, %cx
        jne fail
        cmpw $0x0F01, %dx
        jne fail
        movb %bl, %al
        outb %al, $0xF4
fail:   movb %cl, %al
        outb %al, $0xF4
        hlt
drive:  .byte 0
        .balign 4
dap1:   .byte 16, 0
        .word 1, 0x8000, 0
        .quad 1
dap2:   .byte 16, 0
        .word 1, 0x8000, 0
        .quad 2
dap3:   .byte 16, 0
        .word 1, 0x0010, 0xFFFF
        .quad 3
"""


@pytest.mark.skipif(not HAVE_BINUTILS, reason="GNU as/ld (binutils) not installed")
def test_int13_on_the_machine(tmp_path):
    from pvboot.tools.runner import boot
    sector0 = assemble_boot_sector(MACHINE_PROGRAM, tmp_path)
    routine = {1: b"\xB0\x01\xC3", 2: b"\xB0\x02\xC3", 3: struct.pack("<I", 0x5A5A0003)}
    image = bytearray(10 * MiB)
    image[:512] = sector0
    for lba, code in routine.items():
        image[lba * 512:lba * 512 + len(code)] = code
    path = tmp_path / "disk.img"
    path.write_bytes(image)
    before = hashlib.sha256(image).hexdigest()
    result = boot([str(path)], timeout=10)
    assert result.stop.reason == "exit", result.stop
    assert result.stop.exit_value == 3
    assert result.counters["disk_ops"] >= 4          # boot sector + three reads
    assert result.counters["sectors_read"] >= 4
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
