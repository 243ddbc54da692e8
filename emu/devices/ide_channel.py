"""The primary (or secondary) IDE channel: the command block and device control ports
through which a master and an optional slave device (emu/devices/ata.py's AtaDisk, or
the ATAPI drive) are reached, and `install`, which puts the primary channel with its
disks in a machine and records their geometry translation in CMOS as QEMU does.

Details: docs/ide.md.
"""
from pvboot.emu.devices.ata import (
    CMOS_BIOS_DISKTRANSFLAG, DC_HD15, DC_HOB, DC_NIEN, DC_SRST, DEV_DEV1, PORT_ATA1_CMD_BASE,
    PORT_ATA1_CTRL, REG_COMMAND, REG_DEVICE, REG_STATUS, AtaDisk)
from pvboot.emu.ioport import PortDevice
from pvboot.emu.stringio import RepStrings


class AtaChannel(PortDevice):
    """The primary IDE channel with its master and optional slave disk."""

    def __init__(self, master, slave=None, cmd_base=PORT_ATA1_CMD_BASE, ctrl_port=PORT_ATA1_CTRL,
                 busy_polls=0):
        self.cmd_base = cmd_base
        self.ctrl_port = ctrl_port
        self.ports = tuple(range(cmd_base, cmd_base + 8)) + (ctrl_port,)
        self.disks = [master, slave]
        if master is None:
            raise ValueError("an ATA channel needs a master disk")
        master.slave_present = slave is not None
        self.devctl = DC_HD15
        self.unit = 0
        self.busy_polls = busy_polls
        # Set by install(): serves a guest's `rep insw`/`rep outsw` a block at a time.
        self.rep_strings = None
        # Exits by kind: accesses to the data port (an IN or OUT, or a whole string
        # served in one step), and to every other register (command and control block).
        self.data_reads = 0
        self.data_writes = 0
        self.register_reads = 0
        self.register_writes = 0

    @property
    def busy_polls(self):
        return self._busy_polls

    @busy_polls.setter
    def busy_polls(self, value):
        self._busy_polls = value
        for disk in self.disks:
            if disk is not None:
                disk._channel_busy = value

    @property
    def selected(self):
        """The selected AtaDisk, or None if that device is absent."""
        return self.disks[self.unit]

    @property
    def irq_asserted(self):
        """INTRQ: the selected device has an interrupt pending and nIEN is clear."""
        disk = self.selected
        return disk is not None and disk.irq_pending and not self.devctl & DC_NIEN

    def counters(self):
        disks = [disk for disk in self.disks if disk is not None]
        return {"ata_data_reads": self.data_reads, "ata_data_writes": self.data_writes,
                "ata_data_words_read": sum(disk.words_in for disk in disks),
                "ata_data_words_written": sum(disk.words_out for disk in disks),
                "ata_register_reads": self.register_reads,
                "ata_register_writes": self.register_writes}

    # -- port I/O --------------------------------------------------------------------------
    def read(self, port, size):
        if port == self.cmd_base:
            self.data_reads += 1
            disk = self.disks[self.unit]
            if disk is None:
                return 0
            if self.rep_strings is not None and disk.direction == "in" and not disk.string_miss:
                value = self.rep_strings.ins(port, size, self._take_in_selected)
                if value is not None:
                    return value
                disk.string_miss = True
            return disk.read_data(size)
        self.register_reads += 1
        disk = self.disks[self.unit]
        if port == self.ctrl_port:              # alternate status: no interrupt acknowledge
            return 0 if disk is None else disk.read_status(ack=False)
        reg = port - self.cmd_base
        if reg == REG_DEVICE:
            return (disk or self.disks[0]).select
        if disk is None:
            return 0
        if reg == REG_STATUS:
            return disk.read_status(ack=True)
        return disk.read_register(reg, self.devctl & DC_HOB)

    def write(self, port, size, value):
        if port == self.cmd_base:
            self.data_writes += 1
            disk = self.disks[self.unit]
            if disk is None:
                return
            if self.rep_strings is not None and disk.direction == "out" and not disk.string_miss:
                if self.rep_strings.outs(port, size, value, self._take_out_selected):
                    return
                disk.string_miss = True
            disk.write_data(size, value)
            return
        self.register_writes += 1
        value &= 0xFF
        if port == self.ctrl_port:
            self._device_control(value)
            return
        reg = port - self.cmd_base
        self.devctl &= ~DC_HOB
        if reg == REG_COMMAND:
            disk = self.disks[self.unit]
            if disk is not None and not disk.in_reset:
                disk.execute(value, self)
            return
        for disk in self.disks:
            if disk is not None:
                disk.write_register(reg, value)
        if reg == REG_DEVICE:
            self.unit = 1 if value & DEV_DEV1 else 0

    # String I/O (emu/stringio.py): the data port moves a DRQ block's worth at once.
    # take_in/take_out are one exit each, as an IN or OUT is; a guest's string, whose
    # first element's IN or OUT was counted already, goes through the _selected ones.
    def take_in(self, port, size, count):
        data = self._take_in_selected(port, size, count)
        if data:
            self.data_reads += 1
        return data

    def take_out(self, port, size, data):
        taken = self._take_out_selected(port, size, data)
        if taken:
            self.data_writes += 1
        return taken

    def _take_in_selected(self, port, size, count):
        disk = self.disks[self.unit]
        if port != self.cmd_base or disk is None:
            return b""
        return disk.take_in(size, count)

    def _take_out_selected(self, port, size, data):
        disk = self.disks[self.unit]
        if port != self.cmd_base or disk is None:
            return 0
        return disk.take_out(size, data)

    def _device_control(self, value):
        was_reset = self.devctl & DC_SRST
        self.devctl = value
        if value & DC_SRST and not was_reset:
            for disk in self.disks:
                if disk is not None:
                    disk.assert_reset()
        elif was_reset and not value & DC_SRST:
            for disk in self.disks:
                if disk is not None:
                    disk.release_reset(self.busy_polls)
            self.unit = 0

    def diagnose(self):
        """EXECUTE DEVICE DIAGNOSTIC: both devices run it and report device 0 passed."""
        for disk in self.disks:
            if disk is not None:
                disk.set_signature()
                disk._ok()
        self.unit = 0


def install(machine, images, busy_polls=0):
    """Put the primary IDE channel in `machine` with `images` (DiskImages: master, then
    slave) and record each disk's geometry translation in CMOS as QEMU does; returns the
    channel (also machine.devices["ata"])."""
    images = list(images)
    if not images:
        raise ValueError("the IDE channel needs at least one disk image")
    if len(images) > 2:
        raise ValueError(f"the IDE channel holds two disks (master and slave), not {len(images)}")
    disks = [AtaDisk(image, unit) for unit, image in enumerate(images)]
    channel = AtaChannel(disks[0], disks[1] if len(disks) > 1 else None, busy_polls=busy_polls)
    channel.rep_strings = RepStrings(machine.cpu, machine.mem)
    machine.ports.register(channel)
    machine.devices["ata"] = channel
    cmos = machine.devices.get("cmos")
    if cmos is not None:
        flags = cmos.get(CMOS_BIOS_DISKTRANSFLAG)
        for disk in disks:
            shift = 2 * disk.unit
            flags = (flags & ~(3 << shift)) | ((disk.translation & 3) << shift)
        cmos.set(CMOS_BIOS_DISKTRANSFLAG, flags)
    return channel
