"""emu/devices/atapi.py: the ATAPI CD drive through its ports, as a driver sees it."""
import struct

from pvboot.emu.devices.atapi import (
    AtapiCdrom, PORT_ATA2_CMD_BASE as BASE, PORT_ATA2_CTRL as CTRL,
)
from pvboot.emu.devices.ide_channel import AtaChannel
from pvboot.emu.diskimage import DiskImage

STAT, DATA, SC, CL, CH, ERR = BASE + 7, BASE, BASE + 2, BASE + 4, BASE + 5, BASE + 1


def _channel(tmp_path, sectors=8):
    data = bytes((i // 2048) & 0xFF for i in range(sectors * 2048))
    path = tmp_path / "disc.iso"
    path.write_bytes(data)
    drive = AtapiCdrom(DiskImage(path, read_only=True))
    return AtaChannel(drive, cmd_base=BASE, ctrl_port=CTRL), drive, data


def _packet(channel, cdb, bytecount):
    channel.write(CL, 1, bytecount & 0xFF)
    channel.write(CH, 1, bytecount >> 8)
    channel.write(STAT, 1, 0xA0)
    assert channel.read(STAT, 1) & 0x08 and channel.read(SC, 1) == 1     # DRQ, CoD
    for word in struct.unpack("<6H", cdb.ljust(12, b"\0")):
        channel.write(DATA, 2, word)
    out = bytearray()
    while channel.read(STAT, 1) & 0x08:
        n = channel.read(CL, 1) | (channel.read(CH, 1) << 8)
        out += b"".join(struct.pack("<H", channel.read(DATA, 2)) for _ in range(n // 2))
    return channel.read(STAT, 1), channel.read(ERR, 1), bytes(out)


def test_signature_and_identify_packet(tmp_path):
    channel, _drive, _data = _channel(tmp_path)
    assert (channel.read(CL, 1), channel.read(CH, 1)) == (0x14, 0xEB)
    channel.write(STAT, 1, 0xEC)                     # IDENTIFY DEVICE: aborted
    assert channel.read(STAT, 1) & 0x01
    channel.write(STAT, 1, 0xA1)
    words = [channel.read(DATA, 2) for _ in range(256)]
    assert (words[0] >> 8) & 0x1F == 0x05 and words[0] & 0x80


def test_read_10_in_2048_byte_blocks(tmp_path):
    channel, _drive, data = _channel(tmp_path)
    status, _err, got = _packet(channel, struct.pack(">BBIBH", 0x28, 0, 2, 0, 3), 2048)
    assert not status & 0x01 and got == data[2 * 2048:5 * 2048]
    status, err, _ = _packet(channel, struct.pack(">BBIBH", 0x28, 0, 7, 0, 2), 2048)
    assert status & 0x01 and err >> 4 == 0x5                              # past the end


def test_capacity_sense_and_removal(tmp_path):
    channel, drive, _data = _channel(tmp_path)
    _s, _e, cap = _packet(channel, b"\x25", 8)
    assert struct.unpack(">II", cap) == (7, 2048)
    _packet(channel, b"\x1e\0\0\0\x01", 0)                              # prevent removal
    status, err, _ = _packet(channel, b"\x1b\0\0\0\x02", 0)              # eject: refused
    assert status & 0x01 and err >> 4 == 0x5
    _s, _e, sense = _packet(channel, b"\x03\0\0\0\x12", 18)
    assert (sense[2], sense[12], sense[13]) == (0x5, 0x53, 0x02)
    _packet(channel, b"\x1e", 0)                                         # allow
    status, _err, _ = _packet(channel, b"\x1b\0\0\0\x02", 0)
    assert not status & 0x01 and drive.image is None
    status, err, _ = _packet(channel, b"\x00", 0)                        # no disc
    assert status & 0x01 and err >> 4 == 0x2
    _s, _e, sense = _packet(channel, b"\x03\0\0\0\x12", 18)
    assert sense[12] == 0x3A


def test_disc_change_is_a_unit_attention_once(tmp_path):
    channel, drive, _data = _channel(tmp_path)
    drive.change_disc(DiskImage(tmp_path / "disc.iso", read_only=True))
    status, err, _ = _packet(channel, b"\x00", 0)
    assert status & 0x01 and err >> 4 == 0x6
    status, _err, _ = _packet(channel, b"\x00", 0)
    assert not status & 0x01
