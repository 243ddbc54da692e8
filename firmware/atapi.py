"""The BIOS's ATAPI CD driver: the CD on the secondary IDE channel's master, driven by
PACKET commands through port I/O, after SeaBIOS's ata_atapi_process_op (hw/ata.c) and
the cdb_* helpers of hw/blockcmd.c.

Register access and waits are firmware/ata.py's (AtaChannel, AtaDriver.send_cmd and
wait_data); a packet command is: nIEN, PACKET (A0h) with the byte count per DRQ block in
LBA mid/high, the 12-byte command through the data port, a wait for not BSY, then, for a
command with data, one DRQ block per 2048-byte sector (or the one block of REQUEST
SENSE).  As in SeaBIOS, reads are READ(10), writes fail with AH=03h and any failure is
AH=0Ch; like the PV CD (firmware/cdrom.py) a failure whose sense is UNIT ATTENTION (the
disc was changed) answers AH=06h.  The lock and eject of INT 13h AH=45h/46h become
PREVENT ALLOW MEDIUM REMOVAL and START STOP UNIT (LoEj).
"""
import struct

from pvboot.firmware.ata import (
    ATA_CB_DATA, ATA_CB_DC, ATA_CB_DC_HD15, ATA_CB_DC_NIEN, ATA_CB_DH, ATA_CB_SC, ATA_CB_SN,
    ATA_CB_DH_DEV0, ATA_CB_STAT_BSY, ATA_CB_STAT_DRQ, ATA_CB_STAT_ERR,
    ATA_CMD_IDENTIFY_PACKET_DEVICE, AtaChannel, AtaDriver,
)
from pvboot.firmware.diskop import CMD_FORMAT, CMD_READ, CMD_WRITE, DISK_RET_EBADTRACK, DISK_RET_ECHANGED, DISK_RET_EWRITEPROTECT, DISK_RET_SUCCESS

PORT_ATA2_CMD_BASE = 0x170
PORT_ATA2_CTRL_BASE = 0x374
ATA_CMD_PACKET = 0xA0
CDROM_SECTOR_SIZE = 2048
CDB_SIZE = 12
CDB_CMD_READ_10 = 0x28
CDB_CMD_REQUEST_SENSE = 0x03
CDB_CMD_START_STOP_UNIT = 0x1B
CDB_CMD_PREVENT_ALLOW = 0x1E
SENSE_SIZE = 18
SENSE_UNIT_ATTENTION = 0x6
ATAPI_TYPE_CDROM = 0x05


class AtapiDriver(AtaDriver):
    """One ATAPI CD drive: the driver interface of firmware/cdrom.py's CdDrive
    (`read_only`, `process_op`, `lock_changed`, `eject`)."""

    def __init__(self, channel, slave, identify):
        super().__init__(channel, slave)
        self.identify = identify
        self.read_only = True
        self.name = f"ata{channel.ataid}-{slave}: ATAPI CD"

    def process_op(self, op):
        if op.command in (CMD_WRITE, CMD_FORMAT):
            op.count = 0
            return DISK_RET_EWRITEPROTECT
        if op.command != CMD_READ:
            return DISK_RET_SUCCESS
        mem, addr = self.chan.bios.mem, op.buf_addr
        if op.lba + op.count > 0xFFFFFFFF:
            # READ(10) has 32 bits of LBA: past them there is no disc (SeaBIOS wraps).
            op.count = 0
            return DISK_RET_EBADTRACK

        def store(index, data):
            mem.write(addr + index * CDROM_SECTOR_SIZE, data)
        cdb = struct.pack(">BBIBHB", CDB_CMD_READ_10, 0, op.lba & 0xFFFFFFFF, 0, op.count,
                          0).ljust(CDB_SIZE, b"\0")
        if self.packet(cdb, CDROM_SECTOR_SIZE, op.count, store):
            op.count = 0
            return DISK_RET_ECHANGED if self._sense_key() == SENSE_UNIT_ATTENTION else DISK_RET_EBADTRACK
        return DISK_RET_SUCCESS

    def _sense_key(self):
        got = []
        cdb = bytes([CDB_CMD_REQUEST_SENSE, 0, 0, 0, SENSE_SIZE]).ljust(CDB_SIZE, b"\0")
        if self.packet(cdb, SENSE_SIZE, 1, lambda index, data: got.append(data)) or not got:
            return None
        return got[0][2] & 0x0F

    def lock_changed(self, locked):
        self.packet(bytes([CDB_CMD_PREVENT_ALLOW, 0, 0, 0, int(locked)]).ljust(CDB_SIZE, b"\0"))

    def eject(self):
        cdb = bytes([CDB_CMD_START_STOP_UNIT, 0, 0, 0, 0x02]).ljust(CDB_SIZE, b"\0")
        return self.packet(cdb) == 0

    def packet(self, cdb, blocksize=0, blocks=0, store=None):
        """One packet command (ata_atapi_process_op); 0, or a negative error."""
        chan = self.chan
        dc = chan.iobase2 + ATA_CB_DC
        chan.outb(ATA_CB_DC_HD15 | ATA_CB_DC_NIEN, dc)
        try:
            ret = self.send_cmd({"command": ATA_CMD_PACKET, "lba_mid": blocksize & 0xFF,
                                 "lba_high": blocksize >> 8})
            if ret or self.wait_data():
                return ret or -1
            port, write = chan.iobase1 + ATA_CB_DATA, chan.ports.write
            for word in struct.unpack(f"<{CDB_SIZE // 2}H", cdb):
                write(port, 2, word)
            status = chan.pause_await_not_bsy()
            if status < 0:
                return status
            if status & ATA_CB_STAT_ERR:
                return -2
            words = (blocksize + 1) // 2
            read = chan.ports.read
            for index in range(blocks):
                if not status & ATA_CB_STAT_DRQ:
                    return -3
                data = struct.pack(f"<{words}H", *[read(port, 2) for _ in range(words)])
                store(index, data[:blocksize])
                status = chan.pause_await_not_bsy()
                if status < 0:
                    return status
                if status & ATA_CB_STAT_ERR:
                    return -2
            return 0
        finally:
            chan.outb(ATA_CB_DC_HD15, dc)


def atapi_setup(bios, timeout=2.0):
    """The CD on the secondary channel's master, or None (ata_detect for an ATAPI
    device: the registers answer, IDENTIFY PACKET DEVICE says CD-ROM)."""
    chan = AtaChannel(bios.machine.ports, PORT_ATA2_CMD_BASE, PORT_ATA2_CTRL_BASE, 1,
                      timeout=timeout, bios=bios)
    iobase1 = chan.iobase1
    chan.outb(ATA_CB_DH_DEV0, iobase1 + ATA_CB_DH)
    chan.outb(0x55, iobase1 + ATA_CB_SC)
    chan.outb(0xAA, iobase1 + ATA_CB_SN)
    if chan.inb(iobase1 + ATA_CB_SC) != 0x55 or chan.inb(iobase1 + ATA_CB_SN) != 0xAA:
        return None
    if chan.await_ide(ATA_CB_STAT_BSY, 0) < 0:
        return None
    dummy = AtaDriver(chan, 0)
    dummy.reset()
    identify = dummy.send_identity(ATA_CMD_IDENTIFY_PACKET_DEVICE)
    if identify is None or ((identify[0] >> 8) & 0x1F) != ATAPI_TYPE_CDROM:
        return None
    return AtapiDriver(chan, 0, identify)
