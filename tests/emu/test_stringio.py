"""String port I/O (emu/stringio.py): a guest's own `rep insw`/`rep outsw` at the IDE
data port served a DRQ block per hook call, and every case it leaves to per-element
service (DF=1, 32-bit addressing, a segment wrap, memory that is not RAM, DRQ going off
mid-string) giving the same bytes, registers and device state as per-element service.

The reference is the same guest program run with string service switched off (the
channel's rep_strings None: one IN/OUT hook call per element, Unicorn's own rep loop)
and the image's known contents, never output of the code under test."""
import struct

import pytest

from pvboot.emu.devices import ata as atadev
from pvboot.emu.devices import ide_channel
from pvboot.emu.diskimage import DiskImage
from pvboot.emu.ioport import PortBus
from pvboot.emu.machine import Machine
from pvboot.emu.stringio import decode_rep_string, read_string, write_string
from tests.conftest import assemble16

SECTORS = 16
LOAD = 0x7C00


def sector_bytes(lba, salt=0):
    """512 bytes that say which sector they are and where in it each word sits."""
    return b"".join(struct.pack("<HHHH", lba, i, salt, 0xA55A ^ i) for i in range(64))


def disk_bytes(salt=0):
    return b"".join(sector_bytes(lba, salt) for lba in range(SECTORS))


# Issue READ SECTORS (20h) or WRITE SECTORS (30h) for COUNT sectors at LBA 2, wait for
# DRQ, then one string instruction at the data port with the registers given.
PROGRAM = """
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7000
    mov dx, 0x1F6
    mov al, 0xE0
    out dx, al
    mov dx, 0x1F2
    mov al, {count}
    out dx, al
    mov dx, 0x1F3
    mov al, 2
    out dx, al
    xor al, al
    inc dx
    out dx, al
    inc dx
    out dx, al
    mov dx, 0x1F7
    mov al, {command}
    out dx, al
1:  in al, dx
    test al, 8
    jz 1b
    mov ax, {seg}
    mov es, ax
    mov ds, ax
    mov di, {offset}
    mov si, {offset}
    mov cx, {cx}
    mov dx, 0x1F0
    {direction}
    {insn}
    xor ax, ax
    mov ds, ax
    mov [0x600], di
    mov [0x602], si
    mov [0x604], cx
    out 0xF4, al
"""


def run_program(insn, *, count=2, command=0x20, seg=0x1000, offset=0, cx=512, direction="cld",
                strings=True, fill=None, image=None, code=None):
    """Run the program; (machine, channel, stop) with the machine still open."""
    machine = Machine(memory_mib=2)
    image = image or DiskImage.from_bytes(disk_bytes(), name="disk")
    channel = ide_channel.install(machine, [image])
    if not strings:
        channel.rep_strings = None
    if fill is not None:
        machine.mem.write(fill[0], fill[1])
    machine.mem.write(LOAD, code or assemble16(
        PROGRAM.format(count=count, command=command, seg=seg, offset=offset, cx=cx,
                       direction=direction, insn=insn), boot_signature=False))
    machine.cpu.set("cs", 0)
    machine.cpu.set("eip", LOAD)
    stop = machine.run(timeout=20)
    return machine, channel, stop


def outcome(machine, channel, stop, start, length):
    """What a run left: its stop, guest memory there, DI/SI/CX, the device's state."""
    disk = channel.disks[0]
    return (stop.reason, stop.exit_value, machine.mem.read(start, length),
            machine.mem.read(0x600, 6), disk.pos, disk.direction, disk.status, disk.xfer_left,
            disk.words_in, disk.words_out)


def both_ways(insn, start, length, **kw):
    """The outcome with string service and without; and the first run's channel."""
    fast = run_program(insn, **kw)
    slow = run_program(insn, strings=False, **kw)
    try:
        return outcome(*fast, start, length), outcome(*slow, start, length), fast[1]
    finally:
        fast[0].close()
        slow[0].close()


def test_rep_insw_moves_a_sector_per_hook_call():
    fast, slow, channel = both_ways("rep insw", 0x10000, 2048, count=4, cx=1024)
    assert fast == slow
    assert fast[0] == "exit"
    assert fast[2][:2048] == disk_bytes()[2 * 512:6 * 512]
    di, si, cx = struct.unpack("<HHH", fast[3])
    assert (di, cx) == (2048, 0)
    # One IN hook call per sector instead of 256, each serving its whole DRQ block.
    assert channel.data_reads == 4
    assert channel.rep_strings.strings == 4 and channel.rep_strings.elements == 1024


def test_rep_insd_moves_a_sector_per_hook_call():
    fast, slow, channel = both_ways("rep insd", 0x10000, 1024, count=2, cx=256)
    assert fast == slow and fast[2] == disk_bytes()[2 * 512:4 * 512]
    assert channel.data_reads == 2


def test_a_string_longer_than_the_transfer_reads_zeros_once_drq_is_off():
    # 2 sectors then 10 more words: the device drops DRQ after the last sector and the
    # rest are per-element INs that move nothing (0), as on the device without strings.
    fast, slow, channel = both_ways("rep insw", 0x10000, 1044, count=2, cx=522,
                                    fill=(0x10000, b"\xEE" * 1044))
    assert fast == slow
    assert fast[2][:1024] == disk_bytes()[2 * 512:4 * 512]
    assert fast[2][1024:] == bytes(20)
    assert channel.data_reads == 2 + 10


def test_a_string_shorter_than_the_block_leaves_the_rest_ready():
    fast, slow, channel = both_ways("rep insw", 0x10000, 512, count=1, cx=100)
    assert fast == slow
    assert fast[4] == 100 and fast[5] == "in"        # 156 words still waiting
    assert channel.data_reads == 1


@pytest.mark.parametrize("case", [
    # DF=1: DI goes down: served per element.
    dict(insn="rep insw", direction="std", offset=0x1000, cx=256, count=1),
    # 32-bit addressing (ECX, EDI): per element.
    dict(insn="addr32 rep insw", offset=0x100, cx=256, count=1),
    # The string would wrap its 64 KiB segment at once: cut at the wrap (the CPU wraps
    # DI between the two pieces; test_wrap_serves_... below counts them).
    dict(insn="rep insw", offset=0xFF00, cx=256, count=1),
    # From the VGA buffer on into the option ROM area: not all RAM, so per element
    # (the CPU's first store past 0xC0000 ends the run).
    dict(insn="rep insw", seg=0xBF00, offset=0xF00, cx=256, count=1),
    # A byte string moves nothing at the data port: per element.
    dict(insn="rep insb", offset=0x100, cx=64, count=1),
    # CX=0: the CPU never asks the port.
    dict(insn="rep insw", offset=0x100, cx=0, count=1),
    # 16 sectors from LBA 2 of 16: the device fails at the end of the disk with DRQ off
    # and the rest of the string reads zeros, element by element.
    dict(insn="rep insw", offset=0, cx=16 * 256, count=16),
], ids=["df1", "addr32", "segment-wrap", "rom", "insb", "cx0", "error-mid-string"])
def test_each_fallback_gives_the_bytes_of_per_element_service(case):
    seg = case.get("seg", 0x1000)
    start = (seg << 4)
    fast, slow, channel = both_ways(start=start, length=0x10000, **case)
    assert fast == slow
    if case["offset"] == 0 and case["cx"] == 16 * 256:
        assert fast[2][:14 * 512] == disk_bytes()[2 * 512:]
        assert fast[2][14 * 512:16 * 512] == bytes(2 * 512) and fast[6] & 0x01   # ERR
        assert channel.rep_strings.strings == 14
    elif case["offset"] != 0xFF00:
        assert channel.rep_strings.strings == 0


def test_a_loop_of_plain_ins_is_checked_once_a_block():
    loop = "2: in ax, dx\n    stosw\n    loop 2b"
    fast, slow, channel = both_ways(loop, 0x10000, 1024, count=2, cx=512)
    assert fast == slow and fast[2] == disk_bytes()[2 * 512:4 * 512]
    assert channel.rep_strings.checks == 2 and channel.rep_strings.strings == 0
    assert channel.data_reads == 512


def test_wrap_serves_the_part_before_the_segment_end_in_one_step():
    fast, slow, channel = both_ways("rep insw", 0x10000, 0x10000, offset=0xFF00, cx=256, count=1)
    assert fast == slow
    memory = fast[2]
    sector = disk_bytes()[2 * 512:3 * 512]
    assert memory[0xFF00:0x10000] == sector[:256] and memory[:256] == sector[256:]
    # 128 words up to the segment's end in one step; the CPU wraps DI to 0 and the other
    # 128 come in a second.
    assert channel.rep_strings.strings == 2 and channel.rep_strings.elements == 256


def test_rep_outsw_writes_sectors_a_block_per_hook_call():
    payload = sector_bytes(100, salt=7) + sector_bytes(101, salt=7)
    results = []
    for strings in (True, False):
        image = DiskImage.from_bytes(disk_bytes(), name="disk")
        machine, channel, stop = run_program("rep outsw", command=0x30, count=2, cx=512,
                                             fill=(0x10000, payload), image=image,
                                             strings=strings)
        results.append((outcome(machine, channel, stop, 0x10000, 1024), image.read(0, SECTORS),
                        channel.data_writes))
        machine.close()
    (fast, fast_disk, fast_exits), (slow, slow_disk, slow_exits) = results
    assert fast == slow and fast_disk == slow_disk
    assert fast_disk[2 * 512:4 * 512] == payload
    assert (fast_exits, slow_exits) == (2, 512)


def test_a_sector_read_over_translated_code_runs_the_new_code():
    # The routine at 0x8000 runs once (so Unicorn has translated it), then `rep insw`
    # loads a sector over it whose code exits with 0x42 instead of 0x11.
    new_code = assemble16("mov al, 0x42\n out 0xF4, al\n", org=0x8000, boot_signature=False)
    sector = new_code.ljust(512, b"\x90")
    data = bytearray(disk_bytes())
    data[2 * 512:3 * 512] = sector
    program = PROGRAM.format(count=1, command=0x20, seg=0x800, offset=0, cx=256,
                             direction="cld", insn="call 0x8000\n    rep insw") \
        .replace("out 0xF4, al", "jmp 0x8000")
    old_code = assemble16("mov al, 0x11\n ret\n", org=0x8000, boot_signature=False)
    for strings in (True, False):
        machine, channel, stop = run_program(
            None, image=DiskImage.from_bytes(bytes(data), name="disk"), fill=(0x8000, old_code),
            strings=strings, code=assemble16(program, boot_signature=False))
        try:
            assert (stop.reason, stop.exit_value) == ("exit", 0x42), stop
            assert channel.data_reads == (1 if strings else 256)
        finally:
            machine.close()


def test_decode_reads_prefixes_as_the_cpu_does():
    assert decode_rep_string(b"\xF3\x6D", 0).size == 2
    assert decode_rep_string(b"\x66\xF3\x6D", 0).size == 4
    assert decode_rep_string(b"\xF2\x6F", 0).opcode == 0x6F
    assert decode_rep_string(b"\x2E\xF3\x6F", 0).segment != decode_rep_string(b"\xF3\x6F", 0).segment
    for code in (b"\x6D", b"\xF3\x67\x6D", b"\xF3\x6C", b"\xF3", b"\xF3\xA5", b"\xF3" * 16 + b"\x6D"):
        assert decode_rep_string(code, 0) is None


def test_firmware_strings_on_the_bus_match_per_element_reads_and_writes():
    def channel_bus():
        bus = PortBus()
        image = DiskImage.from_bytes(disk_bytes(), name="disk")
        channel = ide_channel.AtaChannel(atadev.AtaDisk(image, 0))
        bus.register(channel)
        for port, value in ((0x1F6, 0xE0), (0x1F2, 3), (0x1F3, 1), (0x1F4, 0), (0x1F5, 0),
                            (0x1F7, 0x20)):
            bus.write(port, 1, value)
        return bus, channel
    bus, channel = channel_bus()
    # 1.5 sectors as dwords, then as words past the end of the transfer.
    got = read_string(bus, 0x1F0, 4, 192) + read_string(bus, 0x1F0, 2, 400)
    assert got[:3 * 512] == disk_bytes()[512:4 * 512] and got[3 * 512:] == bytes(32)
    assert channel.data_reads == 4 + 16            # strings, then one IN per element
    slow, _ = channel_bus()
    assert got == b"".join(slow.read(0x1F0, 4).to_bytes(4, "little") for _ in range(192)) + \
        b"".join(slow.read(0x1F0, 2).to_bytes(2, "little") for _ in range(400))
    # Writes: a string to a device with no data phase moves nothing, as OUTs do.
    write_string(bus, 0x1F0, 2, bytes(64))
    assert channel.data_writes == 32
