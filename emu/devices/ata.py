"""An ATA (IDE) hard disk backed by an emu.diskimage.DiskImage: its registers, PIO data
phases and commands; the channel that holds two of them is emu/devices/ide_channel.py.
Over 500 lines because it is one state machine (as QEMU's ide core): the commands share
the task file, the data-phase engine and the error paths, and split apart they would
reach into each other's state.  The register and command names are emu/devices/ata_regs.py's.

Details: docs/ide.md.
"""
import sys
from array import array

from pvboot.emu.devices import ata_regs as R
from pvboot.emu.diskimage import DiskImageError
from pvboot.emu.hdgeometry import qemu_ide_geometry       # QEMU's guess, shared with the BIOS

SECTOR_SIZE = 512
WORDS_PER_SECTOR = SECTOR_SIZE // 2

# Ports, registers, bits and commands: emu/devices/ata_regs.py, under the names used here.
PORT_ATA1_CMD_BASE = R.PORT_ATA1_CMD_BASE
PORT_ATA1_CTRL = R.PORT_ATA1_CTRL_BASE + R.ATA_CB_DC
IRQ_ATA1 = R.IRQ_ATA1

REG_DATA = R.ATA_CB_DATA
REG_ERROR = R.ATA_CB_ERR
REG_FEATURE = R.ATA_CB_FR
REG_NSECTOR = R.ATA_CB_SC
REG_LBA_LOW = R.ATA_CB_SN
REG_LBA_MID = R.ATA_CB_CL
REG_LBA_HIGH = R.ATA_CB_CH
REG_DEVICE = R.ATA_CB_DH
REG_STATUS = R.ATA_CB_STAT
REG_COMMAND = R.ATA_CB_CMD

STAT_BSY = R.ATA_CB_STAT_BSY
STAT_DRDY = R.ATA_CB_STAT_RDY
STAT_DF = R.ATA_CB_STAT_DF
STAT_DSC = R.ATA_CB_STAT_SKC
STAT_DRQ = R.ATA_CB_STAT_DRQ
STAT_CORR = R.ATA_CB_STAT_CORR
STAT_IDX = R.ATA_CB_STAT_IDX
STAT_ERR = R.ATA_CB_STAT_ERR

ERR_ICRC = R.ATA_CB_ER_ICRC
ERR_UNC = R.ATA_CB_ER_UNC
ERR_WP = R.ATA_CB_ER_WP
ERR_MC = R.ATA_CB_ER_MC
ERR_IDNF = R.ATA_CB_ER_IDNF
ERR_MCR = R.ATA_CB_ER_MCR
ERR_ABRT = R.ATA_CB_ER_ABRT
ERR_NM = R.ATA_CB_ER_NM
ERR_AMNF = R.ATA_CB_ER_AMNF
DIAG_PASSED = 0x01      # error register after reset / diagnostics: device 0 (and 1) passed

DC_HOB = R.ATA_CB_DC_HOB
DC_HD15 = R.ATA_CB_DC_HD15
DC_SRST = R.ATA_CB_DC_SRST
DC_NIEN = R.ATA_CB_DC_NIEN

DEV_LBA = R.ATA_CB_DH_LBA
DEV_DEV1 = R.ATA_CB_DH_DEV1_BIT

CMD_NOP = R.ATA_CMD_NOP
CMD_RECALIBRATE = R.ATA_CMD_RECALIBRATE
CMD_READ_SECTORS = R.ATA_CMD_READ_SECTORS
CMD_READ_SECTORS_NORETRY = R.ATA_CMD_READ_SECTORS_NORETRY
CMD_READ_SECTORS_EXT = R.ATA_CMD_READ_SECTORS_EXT
CMD_WRITE_SECTORS = R.ATA_CMD_WRITE_SECTORS
CMD_WRITE_SECTORS_NORETRY = R.ATA_CMD_WRITE_SECTORS_NORETRY
CMD_WRITE_SECTORS_EXT = R.ATA_CMD_WRITE_SECTORS_EXT
CMD_READ_VERIFY = R.ATA_CMD_READ_VERIFY_SECTORS
CMD_READ_VERIFY_NORETRY = R.ATA_CMD_READ_VERIFY_SECTORS_NORETRY
CMD_READ_VERIFY_EXT = R.ATA_CMD_READ_VERIFY_SECTORS_EXT
CMD_SEEK = R.ATA_CMD_SEEK
CMD_EXECUTE_DIAGNOSTIC = R.ATA_CMD_EXECUTE_DEVICE_DIAGNOSTIC
CMD_INITIALIZE_DEVICE_PARAMETERS = R.ATA_CMD_INITIALIZE_DEVICE_PARAMETERS
CMD_STANDBY_IMMEDIATE2 = R.ATA_CMD_STANDBY_IMMEDIATE2
CMD_IDLE_IMMEDIATE2 = R.ATA_CMD_IDLE_IMMEDIATE2
CMD_STANDBY2 = R.ATA_CMD_STANDBY2
CMD_IDLE2 = R.ATA_CMD_IDLE2
CMD_CHECK_POWER_MODE2 = R.ATA_CMD_CHECK_POWER_MODE2
CMD_IDENTIFY_PACKET_DEVICE = R.ATA_CMD_IDENTIFY_PACKET_DEVICE
CMD_GET_MEDIA_STATUS = R.ATA_CMD_GET_MEDIA_STATUS
CMD_STANDBY_IMMEDIATE = R.ATA_CMD_STANDBY_IMMEDIATE
CMD_IDLE_IMMEDIATE = R.ATA_CMD_IDLE_IMMEDIATE
CMD_STANDBY = R.ATA_CMD_STANDBY
CMD_IDLE = R.ATA_CMD_IDLE
CMD_CHECK_POWER_MODE = R.ATA_CMD_CHECK_POWER_MODE
CMD_FLUSH_CACHE = R.ATA_CMD_FLUSH_CACHE
CMD_FLUSH_CACHE_EXT = R.ATA_CMD_FLUSH_CACHE_EXT
CMD_IDENTIFY_DEVICE = R.ATA_CMD_IDENTIFY_DEVICE
CMD_SET_FEATURES = R.ATA_CMD_SET_FEATURES

# SET FEATURES subcommands (feature register) and transfer mode values (sector count).
SETFEAT_WCACHE_ON = 0x02
SETFEAT_XFER_MODE = 0x03
SETFEAT_LOOKAHEAD_OFF = 0x55
SETFEAT_REVERT_OFF = 0x66
SETFEAT_WCACHE_OFF = 0x82
SETFEAT_LOOKAHEAD_ON = 0xAA
SETFEAT_REVERT_ON = 0xCC
XFER_PIO_DEFAULT = 0x00
XFER_PIO_DEFAULT_NO_IORDY = 0x01
XFER_PIO_FLOW = 0x08              # 08h-0Ch: PIO flow control modes 0-4
MAX_PIO_MODE = 4

LBA28_LIMIT = 1 << 28
LBA48_LIMIT = 1 << 48
MAX_LBA28_SECTORS = LBA28_LIMIT - 1           # IDENTIFY words 60-61 cap
CHS_MAX_CYLINDERS = 16383
CHS_MAX_SECTORS = 16383 * 16 * 63             # the CHS-addressable size words 57-58 cap at

MODEL = "PVBOOT HARDDISK"
FIRMWARE_REVISION = "1.0"
CMOS_BIOS_DISKTRANSFLAG = R.CMOS_BIOS_DISKTRANSFLAG

_BIG_ENDIAN_HOST = sys.byteorder == "big"


def ata_string(text, nwords):
    """An IDENTIFY string field: space padded, two characters a word, first one in the
    high byte."""
    raw = text.encode("ascii")[:2 * nwords].ljust(2 * nwords, b" ")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


def words_to_bytes(words):
    """256 words as the 512 bytes a sector buffer holds (little endian)."""
    data = array("H", words)
    if _BIG_ENDIAN_HOST:
        data.byteswap()
    return data.tobytes()


def bytes_to_words(data):
    words = array("H")
    words.frombytes(bytes(data))
    if _BIG_ENDIAN_HOST:
        words.byteswap()
    return words


class AtaDisk:
    """One ATA hard disk on the channel: its registers, status and transfer state."""

    def __init__(self, image, unit, serial=None, model=MODEL, firmware=FIRMWARE_REVISION):
        self.image = image
        self.unit = unit                    # 0 master, 1 slave
        self.sectors = image.sectors
        self.read_only = bool(image.read_only)
        self.model = model
        self.serial = serial if serial is not None else f"PVB{unit:05d}"
        self.firmware = firmware
        self.pchs, self.translation = qemu_ide_geometry(self.sectors, image.read(0, 1))
        # The current CHS translation (INITIALIZE DEVICE PARAMETERS); defaults to the physical one.
        self.cur_cylinders = self.pchs.cylinders
        self.cur_heads = self.pchs.heads
        self.cur_spt = self.pchs.sectors
        self.slave_present = False          # set by the channel: word 93, DASP-
        self._power_on()

    def _power_on(self):
        """The register file, status and transfer state at power-on (also an ATAPI
        drive's, emu/devices/atapi.py)."""
        # Register file (current and previous "HOB" value of each 8-bit register).
        self.feature = self.hob_feature = 0
        self.nsector = self.hob_nsector = 0
        self.lba_low = self.hob_lba_low = 0
        self.lba_mid = self.hob_lba_mid = 0
        self.lba_high = self.hob_lba_high = 0
        self.select = 0
        self.status = STAT_DRDY | STAT_DSC
        self.error = DIAG_PASSED
        self.irq_pending = False
        self.busy_left = 0                  # status reads that still show BSY
        self.in_reset = False
        self.last_command = None
        self.commands = 0
        self.words_in = 0                   # data port words moved, however they went
        self.words_out = 0
        self._end_transfer()
        self.set_signature()

    # -- state helpers ----------------------------------------------------------------
    def set_signature(self):
        """The ATA signature after power-on, reset and diagnostics (device register 00h)."""
        self.nsector = self.lba_low = 1
        self.lba_mid = self.lba_high = 0
        self.select = 0
        self.error = DIAG_PASSED

    def _end_transfer(self):
        self.buffer = None                  # array('H') of the DRQ block
        self.pos = 0
        # A guest's IN/OUT in this block was not a string RepStrings could serve: the
        # rest of the block goes element by element without asking again (a loop of
        # plain INs pays for the instruction check once a block, not once a word).
        self.string_miss = False
        self.direction = None               # "in" (device -> host) or "out"
        self.on_block = None                # called when a whole block has moved
        self.xfer_lba = 0
        self.xfer_left = 0
        self.xfer_ext = False
        self.xfer_chs = False

    def write_register(self, reg, value):
        """A command block register write (both devices of a channel latch it)."""
        if reg == REG_FEATURE:
            self.hob_feature, self.feature = self.feature, value
        elif reg == REG_NSECTOR:
            self.hob_nsector, self.nsector = self.nsector, value
        elif reg == REG_LBA_LOW:
            self.hob_lba_low, self.lba_low = self.lba_low, value
        elif reg == REG_LBA_MID:
            self.hob_lba_mid, self.lba_mid = self.lba_mid, value
        elif reg == REG_LBA_HIGH:
            self.hob_lba_high, self.lba_high = self.lba_high, value
        elif reg == REG_DEVICE:
            self.select = value

    def read_register(self, reg, hob):
        if reg == REG_ERROR:
            return self.hob_feature if hob else self.error
        if reg == REG_NSECTOR:
            return self.hob_nsector if hob else self.nsector
        if reg == REG_LBA_LOW:
            return self.hob_lba_low if hob else self.lba_low
        if reg == REG_LBA_MID:
            return self.hob_lba_mid if hob else self.lba_mid
        if reg == REG_LBA_HIGH:
            return self.hob_lba_high if hob else self.lba_high
        return self.select

    def read_status(self, ack):
        if self.in_reset:
            return STAT_BSY
        if self.busy_left:
            self.busy_left -= 1
            return STAT_BSY
        if ack:
            self.irq_pending = False
        return self.status

    def _raise_irq(self):
        self.irq_pending = True

    def _ok(self, irq=True):
        self._end_transfer()
        self.status = STAT_DRDY | STAT_DSC
        if irq:
            self._raise_irq()

    def _fail(self, error):
        self._end_transfer()
        self.error = error
        self.status = STAT_DRDY | STAT_ERR
        self._raise_irq()

    # -- reset ---------------------------------------------------------------------------
    def assert_reset(self):
        self._end_transfer()
        self.in_reset = True
        self.irq_pending = False

    def release_reset(self, busy_polls):
        self.in_reset = False
        self.set_signature()
        self.status = STAT_DRDY | STAT_DSC
        self.busy_left = busy_polls

    # -- the data port ---------------------------------------------------------------------
    def read_data(self, size):
        if self.direction != "in" or self.busy_left or self.in_reset:
            return 0
        if size == 2:
            self.words_in += 1
            return self._next_word()
        if size == 4:
            self.words_in += 2
            low = self._next_word()
            return low | (self._next_word() << 16)
        return 0xFF

    def _next_word(self):
        buffer = self.buffer
        if buffer is None:
            return 0
        word = buffer[self.pos]
        self.pos += 1
        if self.pos == len(buffer):
            self.on_block()
        return word

    def write_data(self, size, value):
        if self.direction != "out" or self.busy_left or self.in_reset:
            return
        if size == 2:
            self.words_out += 1
            self._put_word(value & 0xFFFF)
        elif size == 4:
            self.words_out += 2
            self._put_word(value & 0xFFFF)
            self._put_word((value >> 16) & 0xFFFF)

    def _put_word(self, word):
        buffer = self.buffer
        if buffer is None:
            return
        buffer[self.pos] = word
        self.pos += 1
        if self.pos == len(buffer):
            self.on_block()

    def _string_room(self, direction, size, count):
        """Whole `size`-byte elements (at most `count`) a string can move now without
        leaving the DRQ block: 0 when the data port would not move data."""
        if self.direction != direction or self.busy_left or self.in_reset or \
                self.buffer is None or size not in (2, 4):
            return 0
        return min(count, (WORDS_PER_SECTOR - self.pos) * 2 // size)

    def take_in(self, size, count):
        """Up to `count` elements of a string read (little endian bytes), never past the
        end of the DRQ block: what that many read_data calls would return."""
        n = self._string_room("in", size, count)
        if not n:
            return b""
        start, end = self.pos, self.pos + n * size // 2
        if _BIG_ENDIAN_HOST:
            data = words_to_bytes(self.buffer[start:end])
        else:
            # The block's own bytes: on_block below gives the next sector a new buffer.
            data = memoryview(self.buffer).cast("B")[2 * start:2 * end]
        self.words_in += end - start
        self._string_done(end)
        return data

    def take_out(self, size, data):
        """Accept the leading elements of a string write (little endian bytes) up to the
        end of the DRQ block; how many were taken."""
        n = self._string_room("out", size, len(data) // size)
        if not n:
            return 0
        start, end = self.pos, self.pos + n * size // 2
        self.buffer[start:end] = bytes_to_words(data[:n * size])
        self.words_out += end - start
        self._string_done(end)
        return n

    def _string_done(self, end):
        self.pos = end
        if end == WORDS_PER_SECTOR:
            self.on_block()

    def _start_in(self, words, on_block):
        self.buffer = words
        self.pos = 0
        self.string_miss = False
        self.direction = "in"
        self.on_block = on_block
        self.status = STAT_DRDY | STAT_DSC | STAT_DRQ
        self._raise_irq()

    def _start_out(self, on_block, irq, words=WORDS_PER_SECTOR):
        self.buffer = array("H", bytes(2 * words))
        self.pos = 0
        self.string_miss = False
        self.direction = "out"
        self.on_block = on_block
        self.status = STAT_DRDY | STAT_DSC | STAT_DRQ
        if irq:             # PIO out: no interrupt before the first block
            self._raise_irq()

    # -- commands --------------------------------------------------------------------------
    def _command_started(self, command):
        self.commands += 1
        self.last_command = command
        self.error = 0
        self.irq_pending = False

    def execute(self, command, channel):
        self._command_started(command)
        self._end_transfer()
        self.busy_left = channel.busy_polls
        if command in (CMD_READ_SECTORS, CMD_READ_SECTORS_NORETRY, CMD_READ_SECTORS_EXT):
            self._cmd_read(command == CMD_READ_SECTORS_EXT)
        elif command in (CMD_WRITE_SECTORS, CMD_WRITE_SECTORS_NORETRY, CMD_WRITE_SECTORS_EXT):
            self._cmd_write(command == CMD_WRITE_SECTORS_EXT)
        elif command == CMD_IDENTIFY_DEVICE:
            self._start_in(array("H", self.identify()), self._identify_done)
        elif command in (CMD_READ_VERIFY, CMD_READ_VERIFY_NORETRY, CMD_READ_VERIFY_EXT):
            self._cmd_verify(command == CMD_READ_VERIFY_EXT)
        elif command & 0xF0 in (CMD_RECALIBRATE, CMD_SEEK):
            self._ok()
        elif command == CMD_EXECUTE_DIAGNOSTIC:
            channel.diagnose()
        elif command == CMD_INITIALIZE_DEVICE_PARAMETERS:
            self._cmd_init_params()
        elif command in (CMD_STANDBY_IMMEDIATE, CMD_IDLE_IMMEDIATE, CMD_STANDBY, CMD_IDLE,
                         CMD_STANDBY_IMMEDIATE2, CMD_IDLE_IMMEDIATE2, CMD_STANDBY2, CMD_IDLE2):
            self._ok()
        elif command in (CMD_CHECK_POWER_MODE, CMD_CHECK_POWER_MODE2):
            self.nsector = 0xFF         # active or idle
            self._ok()
        elif command in (CMD_FLUSH_CACHE, CMD_FLUSH_CACHE_EXT):
            self._cmd_flush()
        elif command == CMD_SET_FEATURES:
            self._cmd_set_features()
        elif command == CMD_GET_MEDIA_STATUS:
            if self.read_only:
                self._fail(ERR_WP)
            else:
                self._ok()
        else:
            # NOP, IDENTIFY PACKET DEVICE, DMA, multiple-mode and everything else.
            self._fail(ERR_ABRT)

    def _identify_done(self):
        self._end_transfer()
        self.status = STAT_DRDY | STAT_DSC

    # -- addressing ------------------------------------------------------------------------
    def _command_range(self, ext):
        """(first sector, count, chs) the registers name, or None for a CHS address that
        does not exist under the current translation."""
        if ext:
            lba = (self.lba_low | (self.lba_mid << 8) | (self.lba_high << 16) |
                   (self.hob_lba_low << 24) | (self.hob_lba_mid << 32) | (self.hob_lba_high << 40))
            count = self.nsector | (self.hob_nsector << 8)
            return lba, count or 65536, False
        count = self.nsector or 256
        if self.select & DEV_LBA:
            lba = (self.lba_low | (self.lba_mid << 8) | (self.lba_high << 16) |
                   ((self.select & 0x0F) << 24))
            return lba, count, False
        cylinder = self.lba_mid | (self.lba_high << 8)
        head = self.select & 0x0F
        sector = self.lba_low
        heads, spt = self.cur_heads, self.cur_spt
        if not spt or not sector or sector > spt or head >= heads or \
                cylinder >= self.cur_cylinders:
            return None
        return (cylinder * heads + head) * spt + sector - 1, count, True

    def _limit(self, ext):
        """Sectors the command set can address: LBA48 reaches all, LBA28 words 60-61."""
        return self.sectors if ext else min(self.sectors, MAX_LBA28_SECTORS)

    def _set_position(self):
        """Point the registers at the next sector and the count at what is left (QEMU's
        ide_set_sector), in the form the command used."""
        lba, left = self.xfer_lba, self.xfer_left
        if self.xfer_ext:
            self.lba_low, self.lba_mid, self.lba_high = lba & 0xFF, (lba >> 8) & 0xFF, (lba >> 16) & 0xFF
            self.hob_lba_low = (lba >> 24) & 0xFF
            self.hob_lba_mid = (lba >> 32) & 0xFF
            self.hob_lba_high = (lba >> 40) & 0xFF
            self.nsector, self.hob_nsector = left & 0xFF, (left >> 8) & 0xFF
            return
        self.nsector = left & 0xFF
        if self.xfer_chs:
            heads, spt = self.cur_heads, self.cur_spt
            track, sector = divmod(lba, spt)
            cylinder, head = divmod(track, heads)
            self.lba_low = sector + 1
            self.lba_mid, self.lba_high = cylinder & 0xFF, (cylinder >> 8) & 0xFF
            self.select = (self.select & 0xF0) | head
        else:
            self.lba_low, self.lba_mid, self.lba_high = lba & 0xFF, (lba >> 8) & 0xFF, (lba >> 16) & 0xFF
            self.select = (self.select & 0xF0) | ((lba >> 24) & 0x0F)

    def _begin(self, ext):
        found = self._command_range(ext)
        if found is None:
            self._fail(ERR_IDNF)
            return False
        self.xfer_lba, self.xfer_left, self.xfer_chs = found
        self.xfer_ext = ext
        return True

    # -- READ SECTORS (EXT) ------------------------------------------------------------------
    def _cmd_read(self, ext):
        if self._begin(ext):
            self._read_next()

    def _read_next(self):
        lba = self.xfer_lba
        if lba >= self._limit(self.xfer_ext):
            self._set_position()
            self._fail(ERR_IDNF)
            return
        words = array("H", bytes(SECTOR_SIZE))
        try:
            self.image.read_into(lba, 1, memoryview(words).cast("B"))
        except (OSError, DiskImageError, ValueError):
            self._set_position()
            self._fail(ERR_UNC)
            return
        if _BIG_ENDIAN_HOST:
            words.byteswap()
        self._start_in(words, self._read_block_done)

    def _read_block_done(self):
        self.xfer_lba += 1
        self.xfer_left -= 1
        self._set_position()
        if self.xfer_left:
            self.direction = None
            self.busy_left = self._channel_busy
            self._read_next()
        else:
            self._end_transfer()
            self.status = STAT_DRDY | STAT_DSC

    # -- WRITE SECTORS (EXT) -----------------------------------------------------------------
    def _cmd_write(self, ext):
        if self.read_only:
            self._fail(ERR_WP | ERR_ABRT)
            return
        if self._begin(ext):
            self._start_out(self._write_block_done, irq=False)

    def _write_block_done(self):
        lba = self.xfer_lba
        if lba >= self._limit(self.xfer_ext):
            self._set_position()
            self._fail(ERR_IDNF)
            return
        data = self.buffer
        if _BIG_ENDIAN_HOST:
            data = array("H", data)
            data.byteswap()
        try:
            self.image.write_from(lba, 1, memoryview(data).cast("B"))
        except (OSError, DiskImageError, ValueError):
            self._set_position()
            self._end_transfer()
            self.error = ERR_ABRT
            self.status = STAT_DRDY | STAT_DF | STAT_ERR
            self._raise_irq()
            return
        self.xfer_lba += 1
        self.xfer_left -= 1
        self._set_position()
        self.busy_left = self._channel_busy
        if self.xfer_left:
            self._start_out(self._write_block_done, irq=True)
        else:
            self._ok()

    # -- non-data commands ----------------------------------------------------------------
    def _cmd_verify(self, ext):
        if not self._begin(ext):
            return
        inside = max(0, min(self.xfer_left, self._limit(ext) - self.xfer_lba))
        self.xfer_lba += inside
        self.xfer_left -= inside
        missing = self.xfer_left
        self._set_position()
        if missing:
            self._fail(ERR_IDNF)
        else:
            self._ok()

    def _cmd_init_params(self):
        spt = self.nsector
        heads = (self.select & 0x0F) + 1
        if not spt:
            self._fail(ERR_ABRT)
            return
        self.cur_heads, self.cur_spt = heads, spt
        self.cur_cylinders = min(min(self.sectors, CHS_MAX_SECTORS) // (heads * spt), 65535)
        self._ok()

    def _cmd_flush(self):
        try:
            self.image.flush()
        except OSError:
            self._fail(ERR_ABRT)
            return
        self._ok()

    def _cmd_set_features(self):
        sub = self.feature
        if sub == SETFEAT_XFER_MODE:
            mode = self.nsector
            if mode in (XFER_PIO_DEFAULT, XFER_PIO_DEFAULT_NO_IORDY) or \
                    XFER_PIO_FLOW <= mode <= XFER_PIO_FLOW + MAX_PIO_MODE:
                self._ok()
            else:
                self._fail(ERR_ABRT)            # no DMA modes: word 49 says no DMA
        elif sub in (SETFEAT_WCACHE_ON, SETFEAT_WCACHE_OFF, SETFEAT_LOOKAHEAD_ON,
                     SETFEAT_LOOKAHEAD_OFF, SETFEAT_REVERT_ON, SETFEAT_REVERT_OFF):
            self._ok()
        else:
            self._fail(ERR_ABRT)

    # -- IDENTIFY DEVICE ------------------------------------------------------------------
    def identify(self):
        """The 256 words IDENTIFY DEVICE returns (ATA/ATAPI-7 layout)."""
        w = [0] * 256
        pchs = self.pchs
        w[0] = 0x0040                           # fixed, non-removable ATA device
        w[1] = pchs.cylinders
        w[3] = pchs.heads
        w[6] = pchs.sectors
        w[10:20] = ata_string(self.serial, 10)
        w[23:27] = ata_string(self.firmware, 4)
        w[27:47] = ata_string(self.model, 20)
        w[47] = 0x8000                          # READ/WRITE MULTIPLE not supported
        w[48] = 0x0001                          # 32-bit data port transfers
        w[49] = 1 << 9                          # LBA supported (no DMA)
        w[50] = 0x4000
        w[51] = 0x0200                          # PIO mode 2 timing
        cyls = self.cur_cylinders
        w[53] = 0x0003 if cyls else 0x0002      # words 54-58 (if a translation) and 64-70 valid
        if cyls:
            capacity = cyls * self.cur_heads * self.cur_spt
            w[54], w[55], w[56] = cyls, self.cur_heads, self.cur_spt
            w[57], w[58] = capacity & 0xFFFF, capacity >> 16
        lba28 = min(self.sectors, MAX_LBA28_SECTORS)
        w[60], w[61] = lba28 & 0xFFFF, lba28 >> 16
        w[64] = 0x0003                          # PIO modes 3 and 4
        w[65] = w[66] = w[67] = w[68] = 120     # cycle times (ns)
        w[80] = 0x00F0                          # ATA/ATAPI-4 to -7
        w[81] = 0x0016
        w[82] = 1 << 14                         # NOP
        w[83] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10)   # FLUSH CACHE (EXT), LBA48
        w[84] = 1 << 14
        w[85] = 1 << 14
        w[86] = (1 << 13) | (1 << 12) | (1 << 10)
        w[87] = 1 << 14
        if self.unit == 0:
            # Device 0: jumper, passed diagnostics; DASP- seen when device 1 is there.
            w[93] = 0x4000 | 0x000B | (0x0020 if self.slave_present else 0)
        else:
            w[93] = 0x4000 | 0x0B00
        s = self.sectors
        w[100], w[101], w[102], w[103] = s & 0xFFFF, (s >> 16) & 0xFFFF, (s >> 32) & 0xFFFF, (s >> 48) & 0xFFFF
        w[106] = 0x4000                         # one logical sector per physical sector
        w[255] = 0x00A5
        checksum = (-sum(words_to_bytes(w)[:511])) & 0xFF
        w[255] |= checksum << 8
        return w

    # Set by the channel: status reads showing BSY after each sector.
    _channel_busy = 0
