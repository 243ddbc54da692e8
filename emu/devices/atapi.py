"""An ATAPI CD-ROM drive on the secondary IDE channel's master (0x170-0x177, 0x376),
where QEMU's -cdrom sits: the emulated twin of the PV CD.

Details: docs/cdrom.md.
"""
import struct
from array import array

from pvboot.emu.devices.ata import AtaDisk, DIAG_PASSED, ERR_ABRT, ata_string
from pvboot.emu.devices.ide_channel import AtaChannel

CDROM_SECTOR_SIZE = 2048
PORT_ATA2_CMD_BASE = 0x170
PORT_ATA2_CTRL = 0x376
CMD_DEVICE_RESET = 0x08
CMD_PACKET = 0xA0
CMD_IDENTIFY_PACKET_DEVICE = 0xA1
CMD_IDENTIFY_DEVICE = 0xEC
PACKET_WORDS = 6
# Interrupt reason (sector count register).
IR_COD = 0x01
IR_IO = 0x02
# SCSI operation codes.
TEST_UNIT_READY = 0x00
REQUEST_SENSE = 0x03
INQUIRY = 0x12
START_STOP_UNIT = 0x1B
PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1E
READ_CAPACITY = 0x25
READ_10 = 0x28
# Sense keys and (ASC, ASCQ).
NO_SENSE = 0x0
NOT_READY = 0x2
ILLEGAL_REQUEST = 0x5
UNIT_ATTENTION = 0x6
ASC_MEDIUM_NOT_PRESENT = (0x3A, 0x00)
ASC_MEDIUM_CHANGED = (0x28, 0x00)
ASC_INVALID_OPCODE = (0x20, 0x00)
ASC_LBA_OUT_OF_RANGE = (0x21, 0x00)
ASC_INVALID_FIELD = (0x24, 0x00)
ASC_REMOVAL_PREVENTED = (0x53, 0x02)
MODEL = "PVBOOT DVD-ROM"
IDENTIFY_WORD0 = 0x85C0


class AtapiCdrom(AtaDisk):
    """The CD drive: an AtaDisk's registers with a packet command set and a disc."""

    def __init__(self, image, unit=0):
        # Not AtaDisk.__init__: a CD has no CHS geometry, and may have no disc.
        self.image = image
        self.unit = unit
        self.read_only = True
        self.slave_present = False
        self.sense = (NO_SENSE, (0, 0))
        self.prevent_removal = False
        self.media_changed = False
        self.pending = []           # DRQ blocks (array('H')) still to go to the host
        self._power_on()

    @property
    def sectors(self):
        """Disc size in 2048-byte sectors (0: no disc)."""
        return 0 if self.image is None else self.image.sectors * 512 // CDROM_SECTOR_SIZE

    def set_signature(self):
        self.nsector = self.lba_low = 1
        self.lba_mid, self.lba_high = 0x14, 0xEB
        self.select = 0
        self.error = DIAG_PASSED

    def change_disc(self, image):
        """A new disc (None: none) from outside: the next command sees UNIT ATTENTION."""
        if self.image is not None:
            self.image.close()
        self.image = image
        self.media_changed = True

    # -- commands ------------------------------------------------------------------------
    def execute(self, command, channel):
        self._command_started(command)
        if command == CMD_PACKET:
            self._start_out(self._packet_received, irq=False, words=PACKET_WORDS)
            self.nsector = IR_COD
        elif command == CMD_IDENTIFY_PACKET_DEVICE:
            self.nsector = IR_IO
            self._start_in(self.identify(), self._ok)
        elif command == CMD_DEVICE_RESET:
            self.set_signature()
            self._ok()
        else:
            # IDENTIFY DEVICE and the disk commands: aborted, the signature tells why.
            self.set_signature()
            self._fail(ERR_ABRT)

    def identify(self):
        words = array("H", bytes(512))
        words[0] = IDENTIFY_WORD0
        words[23:27] = array("H", ata_string("1.0", 4))
        words[27:47] = array("H", ata_string(MODEL, 20))
        words[49] = 1 << 9                  # LBA
        words[80] = 0x00F0                  # ATA/ATAPI-4..7
        return words

    def _packet_received(self):
        cdb = self.buffer.tobytes()
        self._end_transfer()
        handler = _COMMANDS.get(cdb[0])
        if handler is None:
            self._check_condition(ILLEGAL_REQUEST, ASC_INVALID_OPCODE)
            return
        if cdb[0] not in (REQUEST_SENSE, INQUIRY) and self.media_changed:
            self.media_changed = False
            self._check_condition(UNIT_ATTENTION, ASC_MEDIUM_CHANGED)
            return
        handler(self, cdb)

    def _check_condition(self, key, asc):
        self.sense = (key, asc)
        self.nsector = IR_COD | IR_IO
        self._fail(key << 4)

    def _good(self):
        self.sense = (NO_SENSE, (0, 0))
        self.nsector = IR_COD | IR_IO
        self._ok()

    def _send(self, data, allocation=None):
        """Data to the host in DRQ blocks of at most the byte count the host set."""
        if allocation is not None:
            data = data[:allocation]
        if not data:
            self._good()
            return
        limit = ((self.lba_high << 8) | self.lba_mid) & ~1 or 0xFFFE
        blocks = [data[i:i + limit] for i in range(0, len(data), limit)]
        self.pending = [array("H", block + b"\0" * (len(block) & 1)) for block in blocks]
        self._next_block()

    def _next_block(self):
        if not self.pending:
            self._good()
            return
        block = self.pending.pop(0)
        self.lba_mid, self.lba_high = (2 * len(block)) & 0xFF, (2 * len(block)) >> 8
        self.nsector = IR_IO
        self._start_in(block, self._next_block)

    def _need_disc(self):
        if self.image is None:
            self._check_condition(NOT_READY, ASC_MEDIUM_NOT_PRESENT)
            return False
        return True

    def cmd_test_unit_ready(self, cdb):
        if self._need_disc():
            self._good()

    def cmd_request_sense(self, cdb):
        key, (asc, ascq) = self.sense
        data = bytearray(18)
        data[0], data[2], data[7], data[12], data[13] = 0x70, key, 10, asc, ascq
        self.sense = (NO_SENSE, (0, 0))
        self._send(bytes(data), cdb[4])

    def cmd_inquiry(self, cdb):
        data = bytearray(36)
        data[0], data[1], data[2], data[3], data[4] = 0x05, 0x80, 0x05, 0x32, 31
        data[8:16] = b"PVBOOT  "
        data[16:32] = MODEL.ljust(16).encode()
        data[32:36] = b"1.0 "
        self._send(bytes(data), cdb[4])

    def cmd_read_capacity(self, cdb):
        if self._need_disc():
            self._send(struct.pack(">II", max(self.sectors - 1, 0), CDROM_SECTOR_SIZE))

    def cmd_read_10(self, cdb):
        if not self._need_disc():
            return
        lba, count = struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
        if lba + count > self.sectors:
            self._check_condition(ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE)
            return
        per = CDROM_SECTOR_SIZE // 512
        self._send(self.image.read(lba * per, count * per))

    def cmd_start_stop_unit(self, cdb):
        load_eject, start = cdb[4] & 2, cdb[4] & 1
        if load_eject and not start:
            if self.prevent_removal:
                self._check_condition(ILLEGAL_REQUEST, ASC_REMOVAL_PREVENTED)
                return
            if self.image is not None:
                self.image.close()
                self.image = None
        self._good()

    def cmd_prevent_allow(self, cdb):
        self.prevent_removal = bool(cdb[4] & 1)
        self._good()


_COMMANDS = {
    TEST_UNIT_READY: AtapiCdrom.cmd_test_unit_ready, REQUEST_SENSE: AtapiCdrom.cmd_request_sense,
    INQUIRY: AtapiCdrom.cmd_inquiry, READ_CAPACITY: AtapiCdrom.cmd_read_capacity,
    READ_10: AtapiCdrom.cmd_read_10, START_STOP_UNIT: AtapiCdrom.cmd_start_stop_unit,
    PREVENT_ALLOW_MEDIUM_REMOVAL: AtapiCdrom.cmd_prevent_allow,
}


def install(machine, image):
    """The secondary IDE channel with the CD drive as master (`image`: a DiskImage of the
    ISO, or None for an empty drive); returns the drive (machine.devices["atapi"])."""
    drive = AtapiCdrom(image)
    channel = AtaChannel(drive, cmd_base=PORT_ATA2_CMD_BASE, ctrl_port=PORT_ATA2_CTRL)
    machine.ports.register(channel)
    machine.devices["atapi"] = channel
    return drive
