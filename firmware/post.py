"""Power-on self test, after SeaBIOS's post.c: fill the IVT, the BDA and the EBDA, bring
up video, keyboard and disks.  The ROM's POST stub then calls INT 19h."""
from pvboot.emu.memmap import CONVENTIONAL_END, EBDA_BASE, EBDA_SIZE
from pvboot.firmware import bda, block, cdrom, system, video


def post(bios, regs):
    mem = bios.mem
    rom = bios.rom
    # Every vector defined: unused ones point at an `iret`, so a stray `int` returns.
    seg, off = rom.segoff("unused_vector")
    mem.write(0, ((seg << 16) | off).to_bytes(4, "little") * 256)
    for vector, label, _service in bios.SERVICES:
        seg, off = rom.segoff(label)
        mem.write_u32(vector * 4, (seg << 16) | off)

    mem.fill(bda.BDA, 0x100, 0)
    mem.write_u16(bda.PORT_COM, 0x3F8)
    mem.write_u16(bda.EBDA_SEG, EBDA_BASE >> 4)
    mem.write_u16(bda.MEM_SIZE_KB, EBDA_BASE // 1024)
    mem.fill(EBDA_BASE, EBDA_SIZE, 0)
    mem.write_u8(EBDA_BASE + bda.EBDA_SIZE_KB_OFFSET, EBDA_SIZE // 1024)
    assert EBDA_BASE + EBDA_SIZE == CONVENTIONAL_END
    # Equipment: 80x25 colour video, one serial port (bits 9-11); floppies added by block.
    mem.write_u16(bda.EQUIPMENT_LIST_FLAGS, (0b10 << 4) | (1 << 9))
    bios.sync_ticks(force=True)
    system.system_init(bios)
    video.video_init(bios)
    bios.keyboard.install(bios)
    bios.block = block.BlockLayer(bios)
    bios.block.setup()
    cdrom.cdrom_setup(bios)
