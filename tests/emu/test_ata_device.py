"""The emulated IDE channel (emu/devices/ata.py) driven through the port bus as a guest
drives it: IDENTIFY DEVICE, 28- and 48-bit PIO reads and writes against a known image,
what a sector count of 0 means, errors, soft reset, the status bits, and the counters.

Expected values come from the ATA/ATAPI-7 standard and the image's known contents, not
from the code under test."""
import struct

import pytest

from pvboot.emu.devices import ata as dev
from pvboot.emu.devices import ide_channel
from pvboot.emu.diskimage import DiskImage
from pvboot.emu.ioport import PortBus
from pvboot.emu.machine import Machine
from pvboot.firmware.block import qemu_ide_geometry

CMD = 0x1F0
CTRL = 0x3F6
DATA, ERR, FR, SC, SN, CL, CH, DH, STAT, COMMAND = (CMD, CMD + 1, CMD + 1, CMD + 2, CMD + 3,
                                                     CMD + 4, CMD + 5, CMD + 6, CMD + 7, CMD + 7)
BSY, DRDY, DF, DSC, DRQ, ERR_BIT = 0x80, 0x40, 0x20, 0x10, 0x08, 0x01
IDNF, ABRT, WP = 0x10, 0x04, 0x40
IDLE = DRDY | DSC                   # 50h
DATA_READY = DRDY | DSC | DRQ       # 58h
FAILED = DRDY | ERR_BIT             # 41h


def sector_bytes(lba, salt=0):
    """A sector whose every 16-bit word says where it is: (lba, word index, salt)."""
    return b"".join(struct.pack("<HHHH", lba & 0xFFFF, (lba >> 16) & 0xFFFF, i, salt)
                    for i in range(64))


def pattern_image(sectors):
    return b"".join(sector_bytes(lba) for lba in range(sectors))


class Host:
    """IN/OUT on a port bus, as guest code does them."""

    def __init__(self, bus):
        self.bus = bus

    def outb(self, port, value):
        self.bus.write(port, 1, value)

    def inb(self, port):
        return self.bus.read(port, 1)

    def inw(self):
        return self.bus.read(DATA, 2)

    def outw(self, value):
        self.bus.write(DATA, 2, value)

    def read_sector(self, pio32=False):
        if pio32:
            return struct.pack("<128I", *[self.bus.read(DATA, 4) for _ in range(128)])
        return struct.pack("<256H", *[self.inw() for _ in range(256)])

    def write_sector(self, data):
        for word in struct.unpack("<256H", data):
            self.outw(word)

    def lba28(self, command, lba, count, device=0xE0):
        self.outb(DH, device | ((lba >> 24) & 0x0F))
        self.outb(SC, count & 0xFF)
        self.outb(SN, lba & 0xFF)
        self.outb(CL, (lba >> 8) & 0xFF)
        self.outb(CH, (lba >> 16) & 0xFF)
        self.outb(COMMAND, command)

    def lba48(self, command, lba, count, device=0x40):
        self.outb(DH, device)
        # Each register twice: the high byte first (it becomes the HOB byte).
        self.outb(SC, (count >> 8) & 0xFF)
        self.outb(SN, (lba >> 24) & 0xFF)
        self.outb(CL, (lba >> 32) & 0xFF)
        self.outb(CH, (lba >> 40) & 0xFF)
        self.outb(SC, count & 0xFF)
        self.outb(SN, lba & 0xFF)
        self.outb(CL, (lba >> 8) & 0xFF)
        self.outb(CH, (lba >> 16) & 0xFF)
        self.outb(COMMAND, command)

    def identify(self, device=0xA0):
        self.outb(DH, device)
        self.outb(COMMAND, 0xEC)
        assert self.inb(STAT) == DATA_READY
        return [self.inw() for _ in range(256)]


def make_channel(sectors=400, slave_sectors=None, data=None, read_only=False, busy_polls=0):
    image = DiskImage.from_bytes(data if data is not None else pattern_image(sectors),
                                 name="master", read_only=read_only)
    slave = None
    if slave_sectors is not None:
        slave_img = DiskImage.from_bytes(pattern_image(slave_sectors), name="slave")
        slave = dev.AtaDisk(slave_img, 1)
    bus = PortBus()
    channel = ide_channel.AtaChannel(dev.AtaDisk(image, 0), slave, busy_polls=busy_polls)
    bus.register(channel)
    return Host(bus), channel, image


def ata_text(words):
    return b"".join(struct.pack(">H", w) for w in words).decode("ascii")


# -- IDENTIFY DEVICE --------------------------------------------------------------------------
def test_identify_fields():
    host, channel, image = make_channel(sectors=16384)
    w = host.identify()
    assert host.inb(STAT) == IDLE                     # DRQ drops after the 256th word
    assert w[0] & 0x8080 == 0                         # ATA device, not removable
    assert ata_text(w[27:47]).rstrip() == "PVBOOT HARDDISK"
    assert ata_text(w[10:20]).strip() == "PVB00000"
    assert ata_text(w[23:27]).rstrip() == "1.0"
    assert w[49] & (1 << 9)                           # LBA
    assert w[60] | (w[61] << 16) == 16384
    assert w[83] & (1 << 10) and w[86] & (1 << 10)    # LBA48 supported and enabled
    assert w[83] & 0xC000 == 0x4000                   # word valid
    assert w[100] | (w[101] << 16) | (w[102] << 32) | (w[103] << 48) == 16384
    pchs, _translation = qemu_ide_geometry(16384, image.read(0, 1))
    assert (w[1], w[3], w[6]) == (pchs.cylinders, pchs.heads, pchs.sectors) == (16, 16, 63)
    assert w[53] & 1 and (w[54], w[55], w[56]) == (16, 16, 63)
    assert w[57] | (w[58] << 16) == 16 * 16 * 63
    assert w[80] & (1 << 7)                           # ATA-7
    # Integrity word: A5h and a checksum making all 512 bytes sum to 0.
    raw = struct.pack("<256H", *w)
    assert raw[510] == 0xA5 and sum(raw) % 256 == 0
    # Device 0, no device 1: not "responds for device 1" (SeaBIOS's skip test).
    assert (w[93] & 0xDF61) != 0x4041 and w[93] & 0x4001 == 0x4001


def test_identify_lba28_capacity_caps_and_geometry_of_a_big_disk(tmp_path):
    path = tmp_path / "big.img"
    sectors = (1 << 28) + 1000
    with open(path, "wb") as f:
        f.truncate(sectors * 512)
    image = DiskImage(str(path))
    bus = PortBus()
    bus.register(ide_channel.AtaChannel(dev.AtaDisk(image, 0)))
    w = Host(bus).identify()
    assert w[60] | (w[61] << 16) == (1 << 28) - 1
    assert w[100] | (w[101] << 16) | (w[102] << 32) == sectors
    assert (w[1], w[3], w[6]) == (16383, 16, 63)
    image.close()


def test_identify_geometry_follows_the_partition_table():
    data = bytearray(pattern_image(4096))
    mbr = bytearray(512)
    # One partition ending at head 3, sector 32: a 4-head, 32-sector logical geometry.
    mbr[0x1BE:0x1BE + 16] = bytes([0x80, 0, 1, 0, 0x83, 3, 32, 31]) + struct.pack("<II", 32, 4000)
    mbr[510:512] = b"\x55\xAA"
    data[:512] = mbr
    host, _channel, _image = make_channel(data=bytes(data))
    w = host.identify()
    assert (w[1], w[3], w[6]) == (4096 // (4 * 32), 4, 32)


# -- reads ------------------------------------------------------------------------------------
def test_read_sectors_lba28_multi_sector_and_registers_follow():
    host, channel, _image = make_channel()
    host.lba28(0x20, 10, 3)
    for lba in (10, 11, 12):
        assert host.inb(STAT) == DATA_READY
        assert host.read_sector() == sector_bytes(lba)
    assert host.inb(STAT) == IDLE
    # The registers name the sector after the last one, the count is used up.
    assert (host.inb(SN), host.inb(CL), host.inb(CH), host.inb(SC)) == (13, 0, 0, 0)


def test_read_with_32_bit_data_port():
    host, channel, _image = make_channel()
    host.lba28(0x20, 7, 2)
    assert host.read_sector(pio32=True) == sector_bytes(7)
    assert host.read_sector(pio32=True) == sector_bytes(8)
    assert host.inb(STAT) == IDLE
    assert channel.data_reads == 256                  # one exit per dword


def test_read_sectors_count_0_means_256():
    host, _channel, _image = make_channel(sectors=300)
    host.lba28(0x20, 2, 0)
    for lba in range(2, 258):
        assert host.inb(STAT) & DRQ, lba
        data = host.read_sector()
        assert data == sector_bytes(lba)
    assert host.inb(STAT) == IDLE


def test_read_sectors_ext_uses_the_hob_bytes():
    host, _channel, _image = make_channel(sectors=400)
    host.lba48(0x24, 0x123, 2)
    assert host.read_sector() == sector_bytes(0x123)
    assert host.read_sector() == sector_bytes(0x124)
    assert host.inb(STAT) == IDLE
    host.lba48(0x24, 10, 0x0102)                     # 258 sectors: the count's HOB byte is 1
    for lba in range(10, 268):
        assert host.read_sector() == sector_bytes(lba)
    assert host.inb(STAT) == IDLE


def test_read_sectors_ext_reaches_past_lba28(tmp_path):
    path = tmp_path / "big.img"
    sectors = (1 << 28) + 16
    with open(path, "wb") as f:
        f.truncate(sectors * 512)
        f.seek(((1 << 28) + 5) * 512)
        f.write(sector_bytes((1 << 28) + 5))
    image = DiskImage(str(path))
    bus = PortBus()
    bus.register(ide_channel.AtaChannel(dev.AtaDisk(image, 0)))
    host = Host(bus)
    host.lba48(0x24, (1 << 28) + 5, 1)
    assert host.inb(STAT) == DATA_READY
    assert host.read_sector() == sector_bytes((1 << 28) + 5)
    assert host.inb(STAT) == IDLE
    # A 28-bit command reaches the words 60-61 capacity, 2^28 - 1 sectors: the last
    # 28-bit address, 2^28 - 1, is already past it (IDNF).
    host.lba28(0x20, (1 << 28) - 2, 2)
    assert host.inb(STAT) == DATA_READY
    host.read_sector()
    assert host.inb(STAT) == FAILED and host.inb(ERR) == IDNF
    image.close()


def test_read_sectors_ext_count_0_means_65536(tmp_path):
    path = tmp_path / "big.img"
    with open(path, "wb") as f:
        f.truncate(70000 * 512)
    image = DiskImage(str(path))
    bus = PortBus()
    channel = ide_channel.AtaChannel(dev.AtaDisk(image, 0))
    bus.register(channel)
    host = Host(bus)
    host.lba48(0x24, 0, 0)
    host.read_sector()
    # 65535 sectors still to come: FFh in the count register, FFh in its HOB byte.
    host.outb(CTRL, 0x08 | 0x80)                     # HOB: read the previous bytes
    hob_count = host.inb(SC)
    host.outb(CTRL, 0x08)
    assert (hob_count << 8 | host.inb(SC)) == 65535
    assert host.inb(STAT) == DATA_READY
    image.close()


def test_hob_readback_and_cleared_by_a_register_write():
    host, _channel, _image = make_channel()
    host.outb(SN, 0x12)
    host.outb(SN, 0x34)
    host.outb(CTRL, 0x88)
    assert host.inb(SN) == 0x12
    host.outb(CL, 0)                                 # any command block write clears HOB
    assert host.inb(SN) == 0x34


def test_chs_read_with_initialize_device_parameters():
    host, _channel, _image = make_channel(sectors=400)
    # Default translation 16 heads x 63: C/H/S 0/1/5 is LBA 63 + 4.
    host.outb(DH, 0xA0 | 1)
    host.outb(SC, 1)
    host.outb(SN, 5)
    host.outb(CL, 0)
    host.outb(CH, 0)
    host.outb(COMMAND, 0x20)
    assert host.read_sector() == sector_bytes(67)
    # Now 4 heads x 17 sectors: C/H/S 1/2/3 is (1*4 + 2)*17 + 2 = 104.
    host.outb(DH, 0xA0 | 3)
    host.outb(SC, 17)
    host.outb(COMMAND, 0x91)
    assert host.inb(STAT) == IDLE
    host.outb(DH, 0xA0 | 2)
    host.outb(SC, 1)
    host.outb(SN, 3)
    host.outb(CL, 1)
    host.outb(CH, 0)
    host.outb(COMMAND, 0x20)
    assert host.read_sector() == sector_bytes(104)
    w = host.identify()
    assert (w[54], w[55], w[56]) == (400 // 68, 4, 17)
    # Sector 0 and sector 18 do not exist.
    for sector in (0, 18):
        host.outb(DH, 0xA0)
        host.outb(SN, sector)
        host.outb(COMMAND, 0x20)
        assert (host.inb(STAT), host.inb(ERR)) == (FAILED, IDNF)


# -- writes -----------------------------------------------------------------------------------
def test_write_sectors_lba28_lands_in_the_overlay(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(pattern_image(64))
    image = DiskImage(str(path))
    bus = PortBus()
    channel = ide_channel.AtaChannel(dev.AtaDisk(image, 0))
    bus.register(channel)
    host = Host(bus)
    host.lba28(0x30, 20, 2)
    assert host.inb(STAT) == DATA_READY
    assert not channel.irq_asserted                  # PIO out: no interrupt for block 1
    host.write_sector(sector_bytes(20, salt=7))
    assert host.inb(STAT) == DATA_READY
    host.write_sector(sector_bytes(21, salt=7))
    assert host.inb(STAT) == IDLE
    assert image.read(20, 2) == sector_bytes(20, 7) + sector_bytes(21, 7)
    assert image.read(19, 1) == sector_bytes(19) and image.read(22, 1) == sector_bytes(22)
    assert path.read_bytes() == pattern_image(64)    # the user's file is untouched
    assert channel.data_writes == 512
    image.close()


def test_write_persist_reaches_the_file_and_flush(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(pattern_image(64))
    image = DiskImage(str(path), persist=True)
    bus = PortBus()
    bus.register(ide_channel.AtaChannel(dev.AtaDisk(image, 0)))
    host = Host(bus)
    host.lba48(0x34, 40, 1)
    host.write_sector(sector_bytes(40, 9))
    assert host.inb(STAT) == IDLE
    host.outb(COMMAND, 0xE7)
    assert host.inb(STAT) == IDLE
    image.close()
    assert path.read_bytes()[40 * 512:41 * 512] == sector_bytes(40, 9)


def test_write_sectors_ext_count_0_means_65536(tmp_path):
    path = tmp_path / "big.img"
    with open(path, "wb") as f:
        f.truncate(70000 * 512)
    image = DiskImage(str(path))
    bus = PortBus()
    bus.register(ide_channel.AtaChannel(dev.AtaDisk(image, 0)))
    host = Host(bus)
    host.lba48(0x34, 100, 0)
    host.write_sector(sector_bytes(100, 1))
    assert host.inb(STAT) == DATA_READY              # 65535 more to come
    host.outb(CTRL, 0x88)
    hob = host.inb(SC)
    host.outb(CTRL, 0x08)
    assert (hob << 8 | host.inb(SC)) == 65535
    assert image.read(100, 1) == sector_bytes(100, 1)
    image.close()


def test_write_count_0_means_256_in_lba28():
    host, _channel, image = make_channel(sectors=300)
    host.lba28(0x30, 1, 0)
    for lba in range(1, 257):
        assert host.inb(STAT) == DATA_READY
        host.write_sector(sector_bytes(lba, 3))
    assert host.inb(STAT) == IDLE
    assert image.read(256, 1) == sector_bytes(256, 3)
    assert image.read(257, 1) == sector_bytes(257)


def test_write_to_a_read_only_image_is_refused():
    host, _channel, image = make_channel(read_only=True)
    host.lba28(0x30, 3, 1)
    assert (host.inb(STAT), host.inb(ERR)) == (FAILED, WP | ABRT)
    host.outb(COMMAND, 0xDA)                          # GET MEDIA STATUS
    assert (host.inb(STAT), host.inb(ERR)) == (FAILED, WP)
    host2, _channel2, _image2 = make_channel()
    host2.outb(COMMAND, 0xDA)
    assert host2.inb(STAT) == IDLE


# -- errors -----------------------------------------------------------------------------------
def test_read_past_the_end_fails_at_the_first_missing_sector():
    host, _channel, _image = make_channel(sectors=100)
    host.lba28(0x20, 98, 4)
    assert host.read_sector() == sector_bytes(98)
    assert host.read_sector() == sector_bytes(99)
    assert host.inb(STAT) == FAILED
    assert host.inb(ERR) == IDNF
    assert (host.inb(SN), host.inb(SC)) == (100, 2)   # the failing sector, 2 not done
    # Entirely outside: no data at all.
    host.lba28(0x20, 100, 1)
    assert (host.inb(STAT), host.inb(ERR)) == (FAILED, IDNF)
    assert host.inw() == 0                            # no DRQ: the data port moves nothing
    host.lba48(0x24, 1 << 40, 1)
    assert (host.inb(STAT), host.inb(ERR)) == (FAILED, IDNF)


def test_write_past_the_end_fails_after_the_missing_sectors_data():
    host, _channel, image = make_channel(sectors=100)
    host.lba28(0x30, 99, 3)
    host.write_sector(sector_bytes(99, 5))
    assert host.inb(STAT) == DATA_READY               # the device asks for sector 100's data
    host.write_sector(sector_bytes(100, 5))
    assert (host.inb(STAT), host.inb(ERR)) == (FAILED, IDNF)
    assert image.read(99, 1) == sector_bytes(99, 5)


def test_verify_checks_the_range():
    host, _channel, _image = make_channel(sectors=100)
    host.lba28(0x40, 90, 10)
    assert host.inb(STAT) == IDLE
    host.lba28(0x40, 95, 10)
    assert (host.inb(STAT), host.inb(ERR), host.inb(SN)) == (FAILED, IDNF, 100)


@pytest.mark.parametrize("command", [0x00, 0xA1, 0xC8, 0xCA, 0xC4, 0xC6, 0x25, 0xF8, 0x08, 0x50])
def test_unknown_or_unsupported_command_aborts(command):
    host, _channel, _image = make_channel()
    host.outb(COMMAND, command)
    assert host.inb(STAT) == FAILED
    assert host.inb(ERR) == ABRT
    # The next good command clears the error.
    host.outb(COMMAND, 0x10)
    assert (host.inb(STAT), host.inb(ERR)) == (IDLE, 0)


def test_set_features():
    host, _channel, _image = make_channel()
    for feature, count in ((0x03, 0x0C), (0x03, 0x00), (0x02, 0), (0x82, 0), (0xAA, 0), (0x66, 0)):
        host.outb(FR, feature)
        host.outb(SC, count)
        host.outb(COMMAND, 0xEF)
        assert host.inb(STAT) == IDLE, (feature, count)
    for feature, count in ((0x03, 0x45), (0x03, 0x22), (0x77, 0)):   # UDMA, MWDMA, unknown
        host.outb(FR, feature)
        host.outb(SC, count)
        host.outb(COMMAND, 0xEF)
        assert (host.inb(STAT), host.inb(ERR)) == (FAILED, ABRT), (feature, count)


@pytest.mark.parametrize("command", [0x10, 0x70, 0xE0, 0xE1, 0xE2, 0xE3, 0xE7, 0xEA, 0x94, 0x95])
def test_non_data_commands_succeed_as_on_a_disk(command):
    host, _channel, _image = make_channel()
    host.outb(COMMAND, command)
    assert host.inb(STAT) == IDLE
    assert host.inb(ERR) == 0


def test_check_power_mode_says_active():
    host, _channel, _image = make_channel()
    host.outb(COMMAND, 0xE5)
    assert (host.inb(STAT), host.inb(SC)) == (IDLE, 0xFF)


# -- reset, status and interrupts ------------------------------------------------------------
def test_power_on_state_and_signature():
    host, _channel, _image = make_channel()
    assert host.inb(STAT) == IDLE
    assert (host.inb(ERR), host.inb(SC), host.inb(SN), host.inb(CL), host.inb(CH)) == (1, 1, 1, 0, 0)


def test_srst_drops_a_transfer_and_sets_the_signature():
    host, channel, _image = make_channel(slave_sectors=50)
    host.lba28(0x20, 5, 4)
    host.read_sector()
    assert host.inb(STAT) == DATA_READY
    host.outb(CTRL, 0x08 | 0x04 | 0x02)               # SRST, nIEN
    assert host.inb(STAT) == BSY
    assert host.inb(CTRL) == BSY                       # alternate status too
    host.outb(CTRL, 0x08 | 0x02)
    assert host.inb(STAT) == IDLE                      # DRQ gone
    assert host.inw() == 0
    assert (host.inb(ERR), host.inb(SC), host.inb(SN), host.inb(CL), host.inb(CH),
            host.inb(DH)) == (1, 1, 1, 0, 0, 0)
    # Both devices were reset: the slave shows its signature too.
    host.outb(DH, 0xB0)
    assert (host.inb(STAT), host.inb(SC), host.inb(SN)) == (IDLE, 1, 1)


def test_status_sequence_with_busy_polls():
    host, _channel, _image = make_channel(busy_polls=2)
    host.lba28(0x20, 1, 2)
    assert [host.inb(STAT) for _ in range(3)] == [BSY, BSY, DATA_READY]
    host2, _channel2, _ = make_channel(busy_polls=1)
    host2.lba28(0x20, 1, 2)
    assert host2.inb(CTRL) == BSY                      # alternate status counts as a poll
    assert host2.inb(STAT) == DATA_READY
    assert host2.read_sector() == sector_bytes(1)
    assert host2.inb(CTRL) == BSY                      # busy between sectors
    assert host2.inb(STAT) == DATA_READY
    assert host2.read_sector() == sector_bytes(2)
    assert host2.inb(STAT) == IDLE                     # the last block: no busy time
    # While BSY shows, the data port moves nothing.
    host3, _channel3, _ = make_channel(busy_polls=1)
    host3.lba28(0x20, 1, 1)
    assert host3.inw() == 0
    assert host3.inb(STAT) == BSY
    assert host3.read_sector() == sector_bytes(1)


def test_interrupt_pending_acknowledge_and_nien():
    host, channel, _image = make_channel()
    host.outb(CTRL, 0x08)
    host.lba28(0x20, 1, 1)
    assert channel.irq_asserted
    assert host.inb(CTRL) == DATA_READY                # alternate status: no acknowledge
    assert channel.irq_asserted
    assert host.inb(STAT) == DATA_READY                # status: acknowledge
    assert not channel.irq_asserted
    host.read_sector()
    assert not channel.irq_asserted                    # PIO in: no interrupt at the end
    host.outb(COMMAND, 0x10)
    assert channel.irq_asserted
    host.outb(CTRL, 0x0A)                              # nIEN masks INTRQ
    assert not channel.irq_asserted
    host.outb(CTRL, 0x08)
    assert channel.irq_asserted


def test_absent_slave_reads_zero_and_ignores_commands():
    host, channel, _image = make_channel()
    host.outb(DH, 0xB0)
    host.outb(SC, 0x55)
    host.outb(SN, 0xAA)
    assert (host.inb(SC), host.inb(SN), host.inb(STAT), host.inb(CTRL)) == (0, 0, 0, 0)
    assert host.inb(DH) == 0xB0
    host.outb(COMMAND, 0xEC)
    assert host.inb(STAT) == 0
    assert channel.disks[0].commands == 0
    host.outb(DH, 0xA0)
    assert (host.inb(SC), host.inb(SN)) == (0x55, 0xAA)   # the master latched the writes


def test_slave_disk_serves_its_own_image():
    host, _channel, _image = make_channel(sectors=100, slave_sectors=60)
    w = host.identify(device=0xB0)
    assert w[60] == 60 and ata_text(w[10:20]).strip() == "PVB00001"
    assert w[93] & 0x0100                               # device 1 word 93
    host.lba28(0x20, 59, 1, device=0xF0)
    assert host.read_sector() == sector_bytes(59)
    host.lba28(0x20, 60, 1, device=0xF0)
    assert (host.inb(STAT), host.inb(ERR)) == (FAILED, IDNF)
    w0 = host.identify(device=0xA0)
    assert w0[93] & 0x0020                              # device 0 saw DASP- from device 1


def test_execute_device_diagnostic():
    host, _channel, _image = make_channel()
    host.outb(SC, 9)
    host.outb(COMMAND, 0x90)
    assert (host.inb(STAT), host.inb(ERR), host.inb(SC), host.inb(SN)) == (IDLE, 1, 1, 1)


# -- counting exits ---------------------------------------------------------------------------
def test_every_access_is_counted():
    host, channel, _image = make_channel()
    bus = host.bus
    host.lba28(0x20, 0, 3)                              # 6 register writes
    for _ in range(3):
        host.inb(CTRL)
        host.inb(STAT)
        host.read_sector()
    assert channel.counters() == {"ata_data_reads": 768, "ata_data_writes": 0,
                                  "ata_data_words_read": 768, "ata_data_words_written": 0,
                                  "ata_register_reads": 6, "ata_register_writes": 6}
    assert (bus.reads, bus.writes) == (774, 6)


def test_install_registers_the_channel_and_cmos_translation(tmp_path):
    machine = Machine(memory_mib=2)
    path = tmp_path / "big.img"
    with open(path, "wb") as f:
        f.truncate(2048 * 16 * 63 * 512)              # 2048 cylinders: LBA translation
    try:
        small = DiskImage.from_bytes(pattern_image(400), name="a")
        big = DiskImage(str(path))
        channel = ide_channel.install(machine, [small, big])
        assert machine.devices["ata"] is channel
        assert machine.ports.device_at(0x1F0) is channel and machine.ports.device_at(0x3F6) is channel
        cmos = machine.devices["cmos"]
        want = (qemu_ide_geometry(small.sectors, small.read(0, 1))[1] |
                qemu_ide_geometry(big.sectors, big.read(0, 1))[1] << 2)
        assert cmos.get(0x39) == want == (0 | 1 << 2)
        with pytest.raises(ValueError):
            ide_channel.install(Machine(memory_mib=2), [small, small, small])
    finally:
        machine.close()
