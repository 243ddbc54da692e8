"""The one driver protocol (firmware/diskop.py DiskDriver): every driver the block layer
maps at POST - the PV frontend, the ATA driver, the host-file driver - implements it."""
from pvboot.emu.devices import ide_channel
from pvboot.emu.diskimage import DiskImage
from pvboot.emu.machine import Machine
from pvboot.emu.xen.platform import XenPlatform
from pvboot.firmware.ata import AtaDriver
from pvboot.firmware.bios import Bios, BiosConfig
from pvboot.firmware.block import ata_drive, xen_drive
from pvboot.firmware.diskop import DiskDriver
from pvboot.firmware.hostdisk import HostDiskDriver
from pvboot.firmware.xenblk import XenBlkFront
from tests.conftest import assemble16


def test_every_mapped_driver_is_a_disk_driver(tmp_path):
    boot = assemble16("mov al, 0\nout 0xf4, al\n1: hlt\njmp 1b\n")
    hd = tmp_path / "hd.img"
    hd.write_bytes(boot + bytes(511 * 512))
    (tmp_path / "fd.img").write_bytes(bytes(1440 * 1024))
    floppy = DiskImage(str(tmp_path / "fd.img"), kind="floppy")
    ide = [DiskImage(str(hd), kind="hd"), DiskImage(str(hd), kind="hd", read_only=True)]
    machine = Machine()
    platform = XenPlatform(machine.mem)
    try:
        devid = platform.attach_disk(str(hd))
        ide_channel.install(machine, ide)
        bios = Bios(machine, BiosConfig(disks=[floppy], xen=platform.guest_interface(),
                                        drives=[xen_drive(devid), ata_drive(1)]))
        stop = machine.run(timeout=30)
        assert (stop.reason, stop.exit_value) == ("exit", 0)
        drivers = [drive.driver for drive in bios.block.drives.values()]
        assert {type(d) for d in drivers} == {XenBlkFront, AtaDriver, HostDiskDriver}
        assert all(isinstance(d, DiskDriver) for d in drivers)
        bios.shutdown()
    finally:
        platform.close()
        for image in ide + [floppy]:
            image.close()
        machine.close()
