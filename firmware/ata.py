"""The BIOS's ATA driver, after SeaBIOS's src/hw/ata.c: hard disks on the primary IDE
channel, driven by PIO through the machine's port bus exactly as the guest's IN/OUT
and `rep insw`/`rep outsw` would (each access, and each sector's string, an exit on a
hypervisor: the counts are what an emulated IDE disk costs).  What it does as SeaBIOS does, and its one addition (read-only disks):
docs/disk-drivers.md.
"""
import contextlib
import struct
import time

from pvboot.emu.devices.ata_regs import (
    ATA_CB_ASTAT, ATA_CB_CH, ATA_CB_CL, ATA_CB_CMD, ATA_CB_DATA, ATA_CB_DC, ATA_CB_DC_HD15,
    ATA_CB_DC_NIEN, ATA_CB_DC_SRST, ATA_CB_DH, ATA_CB_DH_DEV0, ATA_CB_DH_DEV1, ATA_CB_DH_LBA,
    ATA_CB_ER_WP, ATA_CB_ERR, ATA_CB_FR, ATA_CB_SC, ATA_CB_SN, ATA_CB_STAT, ATA_CB_STAT_BSY,
    ATA_CB_STAT_DF, ATA_CB_STAT_DRQ, ATA_CB_STAT_ERR, ATA_CB_STAT_RDY, ATA_CMD_GET_MEDIA_STATUS,
    ATA_CMD_IDENTIFY_DEVICE, ATA_CMD_IDENTIFY_PACKET_DEVICE, ATA_CMD_READ_SECTORS,
    ATA_CMD_READ_SECTORS_EXT, ATA_CMD_WRITE_SECTORS, ATA_CMD_WRITE_SECTORS_EXT,
    CMOS_BIOS_DISKTRANSFLAG, PORT_ATA1_CMD_BASE, PORT_ATA1_CTRL_BASE,
)
from pvboot.emu.hdgeometry import CHS
from pvboot.emu.stringio import read_string, write_string
from pvboot.firmware.hw import rtc_read
from pvboot.firmware.diskop import (
    CMD_FORMAT, CMD_ISREADY, CMD_READ, CMD_RESET, CMD_SEEK, CMD_VERIFY, CMD_WRITE,
    DISK_RET_EBADTRACK, DISK_RET_ENOTREADY, DISK_RET_EPARAM, DISK_RET_EWRITEPROTECT,
    DISK_RET_SUCCESS, DISK_SECTOR_SIZE, DTYPE_ATA,
)

IDE_TIMEOUT = 32.0                  # seconds, SeaBIOS's bound on every IDE wait
MAX_SECTORS_PER_COMMAND = 256       # the driver's cut of a transfer into commands
LBA28_LIMIT = 1 << 28


_NOOP_COMMANDS = frozenset({CMD_VERIFY, CMD_SEEK, CMD_FORMAT})
_WORDS = struct.Struct("<256H")


class AtaTimeout(Exception):
    pass


class AtaChannel:
    """One IDE channel as the driver reaches it (SeaBIOS struct ata_channel_s)."""

    def __init__(self, ports, iobase1=PORT_ATA1_CMD_BASE, iobase2=PORT_ATA1_CTRL_BASE, ataid=0,
                 timeout=IDE_TIMEOUT, pio32=False, bios=None):
        self.ports = ports
        self.iobase1 = iobase1
        self.iobase2 = iobase2
        self.ataid = ataid
        self.timeout = timeout
        self.pio32 = pio32
        self.bios = bios

    # -- port I/O --------------------------------------------------------------------------
    def inb(self, port):
        return self.ports.read(port, 1) & 0xFF

    def outb(self, value, port):
        self.ports.write(port, 1, value & 0xFF)

    def warn_timeout(self):
        if self.bios is not None:
            self.bios.warn(f"ata{self.ataid}: timed out waiting for the disk")

    # -- waits (await_ide and friends) --------------------------------------------------------
    def await_ide(self, mask, flags, timeout=None):
        """Poll the status register until (status & mask) == flags; the status, or -1."""
        read, port = self.ports.read, self.iobase1 + ATA_CB_STAT
        end = None
        while True:
            status = read(port, 1) & 0xFF
            if (status & mask) == flags:
                return status
            now = time.monotonic()
            if end is None:
                end = now + (self.timeout if timeout is None else timeout)
            elif now > end:
                self.warn_timeout()
                return -1

    def await_not_bsy(self):
        return self.await_ide(ATA_CB_STAT_BSY, 0)

    def await_rdy(self):
        return self.await_ide(ATA_CB_STAT_RDY, ATA_CB_STAT_RDY)

    def pause_await_not_bsy(self):
        # One PIO cycle's pause: a read of the alternate status.
        self.inb(self.iobase2 + ATA_CB_ASTAT)
        return self.await_not_bsy()

    def ndelay_await_not_bsy(self):
        # ndelay(400) costs no port access (SeaBIOS times it with the TSC).
        return self.await_not_bsy()

    def powerup_await_non_bsy(self, end):
        """Wait for not BSY at power-up, noticing a floating bus (every bit ever seen set)."""
        orstatus = 0
        while True:
            status = self.inb(self.iobase1 + ATA_CB_STAT)
            if not status & ATA_CB_STAT_BSY:
                return status
            orstatus |= status
            if orstatus == 0xFF:
                return orstatus
            if time.monotonic() > end:
                self.warn_timeout()
                return -1


class AtaDriver:
    """One ATA hard disk (SeaBIOS struct atadrive_s) and the block layer's driver
    interface: `sectors`, `read_only`, `geometry()`, `process_op(op)`."""

    def __init__(self, channel, slave, identify=None):
        self.chan = channel
        self.slave = slave
        self.cntl_id = channel.ataid * 2 + slave
        self.type = 0                   # DTYPE_ATA once IDENTIFY DEVICE answered
        self.identify = identify
        self.sectors = 0
        self.pchs = CHS(0, 0, 0)
        self.read_only = False
        self.model = ""
        self.version = 0
        self.name = f"ata{channel.ataid}-{slave}"
        if identify is not None:
            self._from_identify(identify)

    def _from_identify(self, buffer):
        """init_drive_ata: geometry, size and description from IDENTIFY DEVICE."""
        self.type = DTYPE_ATA
        self.pchs = CHS(buffer[1], buffer[3], buffer[6])
        if buffer[83] & (1 << 10):
            sectors = buffer[100] | (buffer[101] << 16) | (buffer[102] << 32) | (buffer[103] << 48)
        else:
            sectors = buffer[60] | (buffer[61] << 16)
        self.sectors = sectors
        self.model = ata_extract_model(buffer)
        self.version = ata_extract_version(buffer)
        adjsize, prefix = sectors >> 11, "M"
        if adjsize >= 1 << 16:
            adjsize, prefix = adjsize >> 10, "G"
        self.name = (f"ata{self.chan.ataid}-{self.slave}: {self.model} ATA-{self.version} "
                     f"Hard-Disk ({adjsize} {prefix}iBytes)")

    # -- the driver interface -----------------------------------------------------------
    def geometry(self):
        """(physical CHS from IDENTIFY words 1/3/6, translation from CMOS byte 39h)."""
        translation = rtc_read(self.chan.ports, CMOS_BIOS_DISKTRANSFLAG + self.cntl_id // 4)
        return self.pchs, (translation >> (2 * (self.cntl_id % 4))) & 0x03

    def process_op(self, op):
        """ata_process_op: one DiskOp; a DISK_RET_* status, op.count = sectors done."""
        command = op.command
        if command == CMD_READ:
            return self.readwrite(op, False)
        if command == CMD_WRITE:
            return self.readwrite(op, True)
        if command == CMD_RESET:
            self.reset()
            return DISK_RET_SUCCESS
        if command == CMD_ISREADY:
            return self.isready()
        if command in _NOOP_COMMANDS:
            return DISK_RET_SUCCESS
        return DISK_RET_EPARAM

    # -- reset and ready -----------------------------------------------------------------
    def reset(self):
        """ata_reset: pulse SRST, wait for not BSY, reselect the drive, wait for DRDY."""
        chan = self.chan
        iobase1, dc = chan.iobase1, chan.iobase2 + ATA_CB_DC
        chan.outb(ATA_CB_DC_HD15 | ATA_CB_DC_NIEN | ATA_CB_DC_SRST, dc)
        chan.outb(ATA_CB_DC_HD15 | ATA_CB_DC_NIEN, dc)
        try:
            status = chan.await_not_bsy()
            if status < 0:
                return
            if self.slave:
                end = time.monotonic() + chan.timeout
                while True:
                    chan.outb(ATA_CB_DH_DEV1, iobase1 + ATA_CB_DH)
                    status = chan.ndelay_await_not_bsy()
                    if status < 0:
                        return
                    if chan.inb(iobase1 + ATA_CB_DH) == ATA_CB_DH_DEV1:
                        break
                    if time.monotonic() > end:
                        chan.warn_timeout()
                        return
            else:
                # The device may not reset its device register: set it explicitly.
                chan.outb(ATA_CB_DH_DEV0, iobase1 + ATA_CB_DH)
            if self.type == DTYPE_ATA:
                chan.await_rdy()
        finally:
            chan.outb(ATA_CB_DC_HD15, dc)

    def isready(self):
        status = self.chan.inb(self.chan.iobase1 + ATA_CB_STAT)
        if (status & (ATA_CB_STAT_BSY | ATA_CB_STAT_RDY)) == ATA_CB_STAT_RDY:
            return DISK_RET_SUCCESS
        return DISK_RET_ENOTREADY

    # -- commands --------------------------------------------------------------------------
    def send_cmd(self, cmd):
        """Select the drive and write the command's registers (HOB bytes first for an EXT
        command); 0, or a negative error."""
        chan = self.chan
        iobase1 = chan.iobase1
        status = chan.await_not_bsy()
        if status < 0:
            return status
        newdh = (cmd.get("device", 0) & ~0x10) | (ATA_CB_DH_DEV1 if self.slave else ATA_CB_DH_DEV0)
        olddh = chan.inb(iobase1 + ATA_CB_DH)
        chan.outb(newdh, iobase1 + ATA_CB_DH)
        if (olddh ^ newdh) & (1 << 4):
            status = chan.ndelay_await_not_bsy()
            if status < 0:
                return status
        command = cmd["command"]
        if (command & ~0x11) == ATA_CMD_READ_SECTORS_EXT:
            chan.outb(cmd.get("feature2", 0), iobase1 + ATA_CB_FR)
            chan.outb(cmd.get("sector_count2", 0), iobase1 + ATA_CB_SC)
            chan.outb(cmd.get("lba_low2", 0), iobase1 + ATA_CB_SN)
            chan.outb(cmd.get("lba_mid2", 0), iobase1 + ATA_CB_CL)
            chan.outb(cmd.get("lba_high2", 0), iobase1 + ATA_CB_CH)
        chan.outb(cmd.get("feature", 0), iobase1 + ATA_CB_FR)
        chan.outb(cmd.get("sector_count", 0), iobase1 + ATA_CB_SC)
        chan.outb(cmd.get("lba_low", 0), iobase1 + ATA_CB_SN)
        chan.outb(cmd.get("lba_mid", 0), iobase1 + ATA_CB_CL)
        chan.outb(cmd.get("lba_high", 0), iobase1 + ATA_CB_CH)
        chan.outb(command, iobase1 + ATA_CB_CMD)
        return 0

    def wait_data(self):
        """ata_wait_data: not BSY, no ERR, DRQ; 0 or a negative error."""
        status = self.chan.ndelay_await_not_bsy()
        if status < 0:
            return status
        if status & ATA_CB_STAT_ERR:
            return -4
        if not status & ATA_CB_STAT_DRQ:
            return -5
        return 0

    @contextlib.contextmanager
    def polled(self):
        """nIEN for the length of a command: the driver polls, so the device must not
        raise IRQ 14/15 (SeaBIOS sets nIEN before and clears it after each command)."""
        dc = self.chan.iobase2 + ATA_CB_DC
        self.chan.outb(ATA_CB_DC_HD15 | ATA_CB_DC_NIEN, dc)
        try:
            yield
        finally:
            self.chan.outb(ATA_CB_DC_HD15, dc)

    def cmd_nondata(self, cmd):
        """ata_cmd_nondata: a command without data; 0, or negative (-4 on ERR)."""
        with self.polled():
            ret = self.send_cmd(cmd)
            if ret:
                return ret
            status = self.chan.ndelay_await_not_bsy()
            if status < 0:
                return status
            if status & ATA_CB_STAT_ERR:
                return -4
            if status & ATA_CB_STAT_DRQ:
                return -5
            return 0

    def pio_transfer(self, count, iswrite, buf):
        """ata_pio_transfer: move `count` sectors through the data port, `buf` giving
        (write) or taking (read) each sector's bytes: buf(index[, data]).  Returns
        (ret, count reported): on an error mid-transfer the sectors moved before it."""
        chan = self.chan
        port = chan.iobase1 + ATA_CB_DATA
        ports = chan.ports
        size = 4 if chan.pio32 else 2
        remaining = count
        index = 0
        while True:
            # One sector a string (SeaBIOS's insw_fl/outsw_fl): the device serves the
            # DRQ block in one exit.
            if iswrite:
                write_string(ports, port, size, buf(index))
            else:
                buf(index, read_string(ports, port, size, DISK_SECTOR_SIZE // size))
            index += 1
            status = chan.pause_await_not_bsy()
            if status < 0:
                return status, count - remaining
            remaining -= 1
            if not remaining:
                break
            status &= ATA_CB_STAT_BSY | ATA_CB_STAT_DRQ | ATA_CB_STAT_ERR
            if status != ATA_CB_STAT_DRQ:
                return -6, count - remaining
        status &= ATA_CB_STAT_BSY | ATA_CB_STAT_DF | ATA_CB_STAT_DRQ | ATA_CB_STAT_ERR
        if not iswrite:
            status &= ~ATA_CB_STAT_DF
        if status:
            return -7, count
        return 0, count

    def pio_cmd_data(self, cmd, count, iswrite, buf):
        """ata_pio_cmd_data: nIEN, the command, the wait for DRQ, the transfer; returns
        (ret, count reported)."""
        with self.polled():
            ret = self.send_cmd(cmd)
            if ret:
                return ret, count
            ret = self.wait_data()
            if ret:
                return ret, count
            return self.pio_transfer(count, iswrite, buf)

    def send_identity(self, command):
        """send_ata_identity: IDENTIFY (PACKET) DEVICE; the 256 words, or None."""
        got = []
        ret, _count = self.pio_cmd_data({"command": command}, 1, False,
                                        lambda index, data: got.append(data))
        if ret or not got:
            return None
        return list(_WORDS.unpack(got[0]))

    # -- reads and writes ------------------------------------------------------------------
    def readwrite(self, op, iswrite):
        """ata_readwrite, cut into commands of at most 256 sectors."""
        if iswrite and self.read_only:
            op.count = 0
            return DISK_RET_EWRITEPROTECT
        total = op.count
        if total <= 0:
            return DISK_RET_SUCCESS
        bios = self.chan.bios
        mem = bios.mem if bios is not None else None
        counters = getattr(bios, "counters", None)
        if counters is not None:
            counters.setdefault("bytes_copied", 0)
        done = 0
        while done < total:
            n = min(total - done, MAX_SECTORS_PER_COMMAND)
            lba = op.lba + done
            base = op.buf_addr + done * DISK_SECTOR_SIZE
            if iswrite:
                def buf(index, base=base):
                    return mem.dma_read(base + index * DISK_SECTOR_SIZE, DISK_SECTOR_SIZE)
            else:
                def buf(index, data, base=base):
                    mem.dma_write(base + index * DISK_SECTOR_SIZE, data)
            ret, reported = self.pio_cmd_data(self.rw_command(lba, n, iswrite), n, iswrite, buf)
            if counters is not None:
                # Every sector went through the firmware: data port <-> guest memory.
                counters["bytes_copied"] += (reported if ret else n) * DISK_SECTOR_SIZE
            if ret:
                op.count = done + reported
                if iswrite and ret == -4 and self._write_protected():
                    self.read_only = True
                    op.count = 0
                    return DISK_RET_EWRITEPROTECT
                return DISK_RET_EBADTRACK
            done += n
        return DISK_RET_SUCCESS

    @staticmethod
    def rw_command(lba, count, iswrite):
        """The task file of one READ/WRITE SECTORS (EXT) command, chosen as ata_readwrite
        does: LBA48 when the count reaches 256 or the transfer reaches sector 2^28."""
        cmd = {}
        if count >= 1 << 8 or lba + count >= LBA28_LIMIT:
            cmd["sector_count2"] = (count >> 8) & 0xFF
            cmd["lba_low2"] = (lba >> 24) & 0xFF
            cmd["lba_mid2"] = (lba >> 32) & 0xFF
            cmd["lba_high2"] = (lba >> 40) & 0xFF
            lba &= 0xFFFFFF
            cmd["command"] = ATA_CMD_WRITE_SECTORS_EXT if iswrite else ATA_CMD_READ_SECTORS_EXT
        else:
            cmd["command"] = ATA_CMD_WRITE_SECTORS if iswrite else ATA_CMD_READ_SECTORS
        cmd["sector_count"] = count & 0xFF
        cmd["lba_low"] = lba & 0xFF
        cmd["lba_mid"] = (lba >> 8) & 0xFF
        cmd["lba_high"] = (lba >> 16) & 0xFF
        cmd["device"] = ((lba >> 24) & 0x0F) | ATA_CB_DH_LBA
        return cmd

    def _write_protected(self):
        """After a refused write: does the error register say WP?"""
        return bool(self.chan.inb(self.chan.iobase1 + ATA_CB_ERR) & ATA_CB_ER_WP)

    def probe_read_only(self):
        """GET MEDIA STATUS: pvboot's disk sets WP when its image is read only."""
        if self.cmd_nondata({"command": ATA_CMD_GET_MEDIA_STATUS}) == -4:
            self.read_only = self._write_protected()
        return self.read_only


def ata_extract_model(buffer):
    raw = b"".join(struct.pack(">H", buffer[27 + i]) for i in range(20))
    return raw.decode("ascii", "replace").rstrip(" \0")


def ata_extract_version(buffer):
    ataversion = buffer[80]
    for version in range(15, 0, -1):
        if ataversion & (1 << version):
            return version
    return 0


def ata_detect(chan, spinup_end=None):
    """Probe master and slave of `chan` (SeaBIOS ata_detect); the AtaDrivers found."""
    found = []
    if spinup_end is None:
        spinup_end = time.monotonic() + chan.timeout
    iobase1 = chan.iobase1
    didreset = False
    for slave in (0, 1):
        status = chan.powerup_await_non_bsy(spinup_end)
        if status < 0:
            continue
        newdh = ATA_CB_DH_DEV1 if slave else ATA_CB_DH_DEV0
        chan.outb(newdh, iobase1 + ATA_CB_DH)
        status = chan.powerup_await_non_bsy(spinup_end)
        if status < 0:
            continue
        # Do the registers look like an ATA device's?
        chan.outb(newdh, iobase1 + ATA_CB_DH)
        dh = chan.inb(iobase1 + ATA_CB_DH)
        chan.outb(0x55, iobase1 + ATA_CB_SC)
        chan.outb(0xAA, iobase1 + ATA_CB_SN)
        sc = chan.inb(iobase1 + ATA_CB_SC)
        sn = chan.inb(iobase1 + ATA_CB_SN)
        if sc != 0x55 or sn != 0xAA or dh != newdh:
            continue
        dummy = AtaDriver(chan, slave)
        if not didreset:
            dummy.reset()
            didreset = True
        # An ATAPI device answers IDENTIFY PACKET DEVICE; pvboot drives only hard disks.
        if dummy.send_identity(ATA_CMD_IDENTIFY_PACKET_DEVICE) is not None:
            continue
        if not chan.inb(iobase1 + ATA_CB_STAT):
            continue        # no status: cannot be a drive
        if chan.await_rdy() < 0:
            continue
        buffer = dummy.send_identity(ATA_CMD_IDENTIFY_DEVICE)
        if buffer is None:
            continue
        drive = AtaDriver(chan, slave, buffer)
        drive.probe_read_only()
        found.append(drive)
        if not slave and (buffer[93] & 0xDF61) == 0x4041:
            # Device 0 answers for device 1: there is no device 1.
            break
    return found


def ata_setup(bios, timeout=IDE_TIMEOUT, pio32=False):
    """The hard disks on the primary IDE channel, identified and ready for the block
    layer (SeaBIOS ata_setup for QEMU's first channel)."""
    chan = AtaChannel(bios.machine.ports, PORT_ATA1_CMD_BASE, PORT_ATA1_CTRL_BASE, 0,
                      timeout=timeout, pio32=pio32, bios=bios)
    return ata_detect(chan)
