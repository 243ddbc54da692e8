"""The BIOS's ATA driver (firmware/ata.py) on the emulated IDE channel (emu/devices/ata.py):
the guest programs print exactly their QEMU+SeaBIOS transcripts through it, its answers
match the plain driver's op for op, it picks LBA28/LBA48 as SeaBIOS does, its waits are
bounded, and a sector read costs 256 data-port exits."""
import hashlib
import struct
from types import SimpleNamespace

import pytest

from pvboot.emu.devices import ide_channel
from pvboot.emu.diskimage import DiskImage
from pvboot.emu.machine import Machine
from pvboot.firmware import ata
from pvboot.firmware.block import (
    CMD_FORMAT, CMD_ISREADY, CMD_READ, CMD_RESET, CMD_SEEK, CMD_VERIFY, CMD_WRITE,
    DISK_RET_EBADTRACK, DISK_RET_EWRITEPROTECT, DISK_RET_SUCCESS, DTYPE_ATA, BlockLayer, DiskOp,
)
from pvboot.firmware.hostdisk import HostDiskDriver
from pvboot.roms import DATA_AREA_OFFSET, ROM_BASE
from tests.fakebios import FakeBios
from tests.guests import build
from pvboot.tools import runner

BUF = 0x20000
MiB = 1 << 20


def pattern(sectors, salt=0):
    return b"".join(struct.pack("<IH", lba, salt) + bytes([(lba * 7 + salt) & 0xFF]) * 506
                    for lba in range(sectors))


def mbr_with_partition(end_head, end_sector, nr_sects=1000):
    mbr = bytearray(512)
    mbr[0x1BE + 5] = end_head
    mbr[0x1BE + 6] = end_sector
    mbr[0x1BE + 12:0x1BE + 16] = struct.pack("<I", nr_sects)
    mbr[510:512] = b"\x55\xAA"
    return bytes(mbr)


class AtaFakeBios(FakeBios):
    """FakeBios whose hard disks sit on the emulated IDE channel (config.ata)."""

    def __init__(self, images, busy_polls=0, memory_mib=2):
        self.machine = Machine(memory_mib=memory_mib)
        self.mem = self.machine.mem
        self.clock = self.machine.clock
        self.counters = self.machine.counters
        self.channel = ide_channel.install(self.machine, images, busy_polls=busy_polls) if images else None
        self.config = SimpleNamespace(disks=[], boot_order=None, xen=None, ata=True,
                                      trace=frozenset(), trace_out=None)
        self.lines = []
        self.warnings = []
        self._rom_next = ROM_BASE + DATA_AREA_OFFSET
        self.block = BlockLayer(self)
        self.block.setup()

    def warn(self, message):
        self.warnings.append(message)


def image_from(data, tmp_path=None, name="disk", **kw):
    if tmp_path is None:
        return DiskImage.from_bytes(data, name=name, **kw)
    path = tmp_path / f"{name}.img"
    path.write_bytes(data)
    return DiskImage(str(path), **kw)


def sparse(tmp_path, sectors, name="big.img", sector0=None, **kw):
    path = tmp_path / name
    with open(path, "wb") as f:
        f.truncate(sectors * 512)
        if sector0 is not None:
            f.write(sector0)
    return DiskImage(str(path), **kw)


# -- the guest programs ---------------------------------------------------------------------
DISK_PROGRAMS = sorted(name for name, p in build.PROGRAMS.items() if p["media"] == "disk")
PVBOOT_KEYS = "hiA1{f1}{up}{enter}"

needs_tools = pytest.mark.skipif(not build.tools_available(), reason="GNU as/ld not installed")


@needs_tools
@pytest.mark.parametrize("name", DISK_PROGRAMS)
def test_guest_program_prints_the_seabios_transcript_over_ide(name, tmp_path):
    image = build.build_image(name, tmp_path)
    keys = PVBOOT_KEYS if name == "keys" else ""
    result = runner.boot([str(image)], driver="ata", timeout=20, keys=keys)
    assert result.stop.reason == "exit", f"{result.stop}\n{result.console}"
    assert result.console == build.EXPECTED_SERIAL[name]
    assert result.stop.exit_value == build.EXPECTED_EXIT
    assert result.messages == []
    # Every sector the BIOS moved went through the data port, one string exit per
    # sector of 256 words, plus the one IDENTIFY block.
    c = result.counters
    assert c["ata_data_reads"] == c["sectors_read"] + 1
    assert c["ata_data_writes"] == c["sectors_written"]
    assert c["ata_data_words_read"] == 256 * (c["sectors_read"] + 1)
    assert c["ata_data_words_written"] == 256 * c["sectors_written"]


@needs_tools
@pytest.mark.parametrize("name", sorted(n for n in build.WRITTEN_SECTORS
                                        if build.PROGRAMS[n]["media"] == "disk"))
def test_persisted_writes_over_ide_match_seabios(name, tmp_path):
    image = build.build_image(name, tmp_path)
    result = runner.boot([str(image)], driver="ata", timeout=20, persist=True)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    assert image.read_bytes() == build.expected_image_after(name)


@needs_tools
def test_default_ide_run_leaves_the_image_untouched(tmp_path):
    image = build.build_image("disk_rw", tmp_path)
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    result = runner.boot([str(image)], driver="ata", timeout=20)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before


READ_127 = """
    xor ax, ax
    mov ds, ax
    mov si, offset dap
    mov ah, 0x42
    mov dl, 0x80
    int 0x13
    setc al
    out 0xF4, al
dap:
    .byte 16, 0
    .word 127, 0, 0x2000
    .quad 1
"""


@needs_tools
def test_a_127_sector_read_costs_one_data_exit_a_sector(boot_program):
    path = boot_program(READ_127, sectors=200)
    result = runner.boot([path], driver="ata", timeout=20)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    c = result.counters
    assert c["sectors_read"] == 1 + 127          # boot sector, then the guest's read
    assert c["ata_data_reads"] == 1 + 1 + 127
    assert c["ata_data_words_read"] == 256 * (1 + 1 + 127)


def test_data_port_reads_per_sector_and_the_exits_of_one_command():
    data = pattern(400)
    bios = AtaFakeBios([image_from(data)])
    drive = bios.block.get_drive(0x80)
    channel, ports = bios.channel, bios.machine.ports
    # The first command after POST selects device 0 again (detection ended on device 1).
    assert bios.block.process_op(DiskOp(CMD_READ, drive, 0, 1, BUF)) == DISK_RET_SUCCESS
    for n in (1, 8, 127):
        before, reads, writes = channel.counters(), ports.reads, ports.writes
        op = DiskOp(CMD_READ, drive, 3, n, BUF)
        assert bios.block.process_op(op) == DISK_RET_SUCCESS and op.count == n
        after = channel.counters()
        assert after["ata_data_reads"] - before["ata_data_reads"] == n
        assert after["ata_data_words_read"] - before["ata_data_words_read"] == 256 * n
        # SeaBIOS's PIO protocol: status before selecting, the device register, status
        # after the command, then per sector the alternate status and the status; nIEN
        # on and off, the device register and five task file registers and the command.
        assert after["ata_register_reads"] - before["ata_register_reads"] == 3 + 2 * n
        assert ports.reads - reads == n + 3 + 2 * n
        assert ports.writes - writes == 9
        assert bios.mem.read(BUF, 512 * n) == data[3 * 512:(3 + n) * 512]


# -- setup ----------------------------------------------------------------------------------
def test_setup_finds_master_and_slave():
    bios = AtaFakeBios([image_from(pattern(300), name="a"), image_from(pattern(100), name="b")])
    assert bios.block.hd_count == 2
    a, b = bios.block.get_drive(0x80), bios.block.get_drive(0x81)
    assert (a.sectors, b.sectors) == (300, 100)
    assert a.dtype == b.dtype == DTYPE_ATA
    assert a.driver.slave == 0 and b.driver.slave == 1
    assert a.name.startswith("ata0-0: PVBOOT HARDDISK ATA-7 Hard-Disk")
    for drive, n in ((a, 300), (b, 100)):
        op = DiskOp(CMD_READ, drive, n - 2, 2, BUF)
        assert bios.block.process_op(op) == DISK_RET_SUCCESS
        assert bios.mem.read(BUF, 1024) == pattern(n)[(n - 2) * 512:]


def test_setup_without_a_device_finds_nothing_and_says_so():
    bios = AtaFakeBios([])
    assert bios.block.hd_count == 0
    assert bios.warnings == ["no ATA disk answered on the primary IDE channel"]


def test_setup_with_a_device_stuck_busy_is_bounded():
    machine = Machine(memory_mib=2)
    try:
        ide_channel.install(machine, [image_from(pattern(10))])
        channel = machine.devices["ata"]
        channel.disks[0].in_reset = True              # BSY forever
        bios = SimpleNamespace(machine=machine, mem=machine.mem, warn=lambda m: None)
        assert ata.ata_setup(bios, timeout=0.2) == []
        assert machine.ports.reads > 0            # it polled the busy status, then gave up
    finally:
        machine.close()


# -- the same answers as the plain driver -----------------------------------------------------
@pytest.mark.parametrize("sectors, sector0", [
    (400, None), (16384, None), (2048 * 16 * 63, None), (20000 * 16 * 63, None),
    (100000, mbr_with_partition(3, 32)), (5000000, mbr_with_partition(254, 63)),
])
def test_geometry_equals_the_plain_drivers(tmp_path, sectors, sector0):
    image = sparse(tmp_path, sectors, sector0=sector0)
    bios = AtaFakeBios([image])
    drive = bios.block.get_drive(0x80)
    host = HostDiskDriver(image, bios.mem)
    assert drive.driver.geometry() == host.geometry()
    host_bios = FakeBios([image])
    host_drive = host_bios.block.get_drive(0x80)
    assert (drive.pchs, drive.translation, drive.lchs, drive.sectors) == \
        (host_drive.pchs, host_drive.translation, host_drive.lchs, host_drive.sectors)


OPS = [
    (CMD_READ, 0, 1), (CMD_READ, 5, 127), (CMD_READ, 98, 2), (CMD_READ, 99, 1),
    (CMD_READ, 97, 5), (CMD_READ, 99, 2), (CMD_READ, 100, 1), (CMD_READ, 100, 4),
    (CMD_READ, 150, 3),
    (CMD_WRITE, 10, 3), (CMD_WRITE, 98, 2), (CMD_WRITE, 98, 3), (CMD_WRITE, 99, 2),
    (CMD_WRITE, 99, 3), (CMD_WRITE, 100, 1), (CMD_WRITE, 100, 2), (CMD_WRITE, 100, 3),
    (CMD_VERIFY, 0, 1), (CMD_SEEK, 50, 0), (CMD_FORMAT, 0, 1), (CMD_RESET, 0, 0),
    (CMD_ISREADY, 0, 0), (0x55, 0, 1),
]


@pytest.mark.parametrize("command, lba, count", OPS)
@pytest.mark.parametrize("read_only", [False, True])
def test_each_op_answers_as_the_plain_driver(command, lba, count, read_only):
    data = pattern(100)
    ata_image = image_from(data, name="ata", read_only=read_only)
    host_image = image_from(data, name="host", read_only=read_only)
    ata_bios, host_bios = AtaFakeBios([ata_image]), FakeBios([host_image])
    results = []
    for bios in (ata_bios, host_bios):
        # As at boot, the boot sector read comes first (on the IDE channel it selects the
        # master again: detection ended on the absent slave, whose status reads 0).
        assert bios.block.read_boot_sector(0x80) is not None
        bios.mem.write(BUF, pattern(count or 1, salt=9)[:512 * count] + b"\xEE" * 512)
        before = bytes(bios.mem.read(BUF, 512 * (count + 1)))
        op = DiskOp(command, bios.block.get_drive(0x80), lba, count, BUF)
        status = bios.block.process_op(op)
        image = ata_image if bios is ata_bios else host_image
        results.append((status, op.count, bios.mem.read(BUF, 512 * (count + 1)) == before,
                        bios.mem.read(BUF, 512 * (count + 1)), image.read(0, 100)))
    assert results[0][:3] == results[1][:3]
    assert results[0][3] == results[1][3]             # guest memory
    assert results[0][4] == results[1][4]             # disk contents
    if read_only:
        assert ata_bios.block.get_drive(0x80).driver.read_only
        if command == CMD_WRITE:
            assert results[0][:2] == (DISK_RET_EWRITEPROTECT, 0)


def test_a_write_the_device_refuses_for_write_protection_is_03h():
    bios = AtaFakeBios([image_from(pattern(50), read_only=True)])
    driver = bios.block.get_drive(0x80).driver
    driver.read_only = False                          # as if setup had not asked
    op = DiskOp(CMD_WRITE, bios.block.get_drive(0x80), 1, 2, BUF)
    assert bios.block.process_op(op) == DISK_RET_EWRITEPROTECT
    assert op.count == 0 and driver.read_only


# -- command choice -----------------------------------------------------------------------------
@pytest.mark.parametrize("lba, count, commands", [
    (100, 2, [0x20]),
    ((1 << 28) - 3, 2, [0x20]),               # ends at 2^28 - 2: still 28 bits
    ((1 << 28) - 2, 2, [0x24]),               # lba + count reaches 2^28: LBA48
    ((1 << 28) + 5, 1, [0x24]),
    (10, 255, [0x20]),
    (10, 256, [0x24]),                        # a count of 256 goes out as LBA48
    (10, 300, [0x24, 0x20]),                  # 256 + 44 sectors: two commands
])
def test_lba28_or_lba48_as_seabios_chooses(tmp_path, lba, count, commands):
    image = sparse(tmp_path, (1 << 28) + 100)
    want = pattern(count, salt=3)
    image.write_from(lba, count, want)
    bios = AtaFakeBios([image], memory_mib=4)
    drive = bios.block.get_drive(0x80)
    disk = bios.channel.disks[0]
    seen = []
    execute = disk.execute
    disk.execute = lambda command, channel: (seen.append(command), execute(command, channel))
    op = DiskOp(CMD_READ, drive, lba, count, BUF)
    assert drive.driver.process_op(op) == DISK_RET_SUCCESS and op.count == count
    assert seen == commands
    assert bios.mem.read(BUF, 512 * count) == want


def test_rw_command_task_file():
    cmd = ata.AtaDriver.rw_command(0x0123456789AB, 0x0102, True)
    assert cmd == {"command": 0x34, "sector_count2": 0x01, "lba_low2": 0x45, "lba_mid2": 0x23,
                   "lba_high2": 0x01, "sector_count": 0x02, "lba_low": 0xAB, "lba_mid": 0x89,
                   "lba_high": 0x67, "device": 0x40}
    cmd = ata.AtaDriver.rw_command(0x0123456, 5, False)
    assert cmd == {"command": 0x20, "sector_count": 5, "lba_low": 0x56, "lba_mid": 0x34,
                   "lba_high": 0x12, "device": 0x40 | 0x0}


# -- bounded waits ------------------------------------------------------------------------------
def test_a_device_that_stays_busy_fails_the_op_in_bounded_time():
    bios = AtaFakeBios([image_from(pattern(50))])
    drive = bios.block.get_drive(0x80)
    drive.driver.chan.timeout = 0.1
    bios.channel.busy_polls = 10 ** 9                 # BSY after every command
    op = DiskOp(CMD_READ, drive, 1, 3, BUF)
    assert bios.block.process_op(op) == DISK_RET_EBADTRACK
    assert op.count == 0
    assert len(bios.warnings) == 1                # one bounded failure, no endless retry
    assert bios.warnings and "timed out" in bios.warnings[0]


def test_busy_polls_do_not_change_the_answers():
    data = pattern(100)
    bios = AtaFakeBios([image_from(data)], busy_polls=3)
    drive = bios.block.get_drive(0x80)
    op = DiskOp(CMD_READ, drive, 97, 5, BUF)
    assert bios.block.process_op(op) == DISK_RET_EBADTRACK and op.count == 3
    assert bios.mem.read(BUF, 3 * 512) == data[97 * 512:]
    op = DiskOp(CMD_WRITE, drive, 4, 2, BUF)
    assert bios.block.process_op(op) == DISK_RET_SUCCESS and op.count == 2


# -- the runner and the command line ------------------------------------------------------------
def test_runner_refuses_three_ide_disks(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"d{i}.img"
        p.write_bytes(b"\0" * 510 + b"\x55\xAA")
        paths.append(str(p))
    with pytest.raises(runner.InputError, match="two disks"):
        runner.boot(paths, driver="ata")


@needs_tools
def test_two_ide_disks_boot_from_the_master(tmp_path):
    image = build.build_image("disk_rw", tmp_path)
    other = tmp_path / "other.img"
    other.write_bytes(pattern(64))
    result = runner.boot([str(image), str(other)], driver="ata", timeout=20)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console


@needs_tools
def test_command_line_driver_ata_reports_the_ide_exits(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from tests.conftest import assemble16
    path = tmp_path / "disk.img"
    path.write_bytes(assemble16(READ_127) + bytes(512 * 199))
    proc = subprocess.run([sys.executable, "-m", "pvboot.tools", "boot", str(path), "--driver", "ata",
                           "--json"], capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["counters"]["ata_data_reads"] == 1 + 1 + 127
    assert out["counters"]["ata_data_words_read"] == 256 * (1 + 1 + 127)
    three = [str(path)] * 3
    proc = subprocess.run([sys.executable, "-m", "pvboot.tools", "boot", *three, "--driver", "ata"],
                          capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert proc.returncode == 2 and "two disks" in proc.stderr


def test_32_bit_pio_moves_a_sector_in_one_exit_of_128_dwords():
    data = pattern(64)
    bios = AtaFakeBios([image_from(data)])
    drive = bios.block.get_drive(0x80)
    drive.driver.chan.pio32 = True
    before = bios.channel.counters()
    op = DiskOp(CMD_READ, drive, 2, 4, BUF)
    assert bios.block.process_op(op) == DISK_RET_SUCCESS
    assert bios.mem.read(BUF, 4 * 512) == data[2 * 512:6 * 512]
    after = bios.channel.counters()
    assert after["ata_data_reads"] - before["ata_data_reads"] == 4
    assert after["ata_data_words_read"] - before["ata_data_words_read"] == 256 * 4
    bios.mem.write(BUF, pattern(2, salt=5))
    op = DiskOp(CMD_WRITE, drive, 40, 2, BUF)
    assert bios.block.process_op(op) == DISK_RET_SUCCESS
    after = bios.channel.counters()
    assert after["ata_data_writes"] - before["ata_data_writes"] == 2
    assert after["ata_data_words_written"] - before["ata_data_words_written"] == 256 * 2
    assert bios.channel.disks[0].image.read(40, 2) == pattern(2, salt=5)


def test_reset_pulses_srst_and_reselects_the_drive():
    bios = AtaFakeBios([image_from(pattern(64)), image_from(pattern(64))])
    ports = bios.machine.ports
    ports.write(0x1F2, 1, 0x77)
    for number, dh in ((0x81, 0xB0), (0x80, 0xA0)):
        drive = bios.block.get_drive(number)
        assert bios.block.process_op(DiskOp(CMD_RESET, drive)) == DISK_RET_SUCCESS
        assert ports.read(0x1F2, 1) == 1 and ports.read(0x1F6, 1) == dh   # signature, selected
        assert ports.read(0x3F6, 1) == 0x50
        assert not bios.channel.devctl & 0x02                             # interrupts back on
        assert bios.block.process_op(DiskOp(CMD_ISREADY, drive)) == DISK_RET_SUCCESS
