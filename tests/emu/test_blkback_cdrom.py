"""blkback serving a CD vbd (device-type cdrom): what it advertises, what it refuses,
an empty drive, and a disc change through `params` (emu/xen/cdmedia.py)."""

from pvboot.emu.xen.abi import BLKIF_RSP_ERROR, BLKIF_RSP_OKAY
from tests.xen_frontend import TestFrontend
from tests.waiting import wait_until

DISC_SECTORS = 64                  # 512-byte sectors: 16 CD sectors


def _disc(tmp_path, name, fill):
    path = tmp_path / name
    path.write_bytes(bytes([fill]) * DISC_SECTORS * 512)
    return path


def test_cd_advertises_info_7_and_2048_and_refuses_writes(tmp_path):
    disc = _disc(tmp_path, "a.iso", 0xA5)
    with TestFrontend(tmp_path, disc, device_type="cdrom") as fe:
        fe.connect()
        assert fe.backend_node("info") == "7"
        assert fe.backend_node("sector-size") == "2048"
        assert fe.backend_node("sectors") == str(DISC_SECTORS)      # 512-byte units
        assert fe.backend_node("media-req-sup") == "1"
        status, data = fe.read(4, 4)                               # ring sectors: 512 bytes
        assert status == BLKIF_RSP_OKAY and data == b"\xA5" * 2048
        assert fe.write(0, b"\0" * 512) == BLKIF_RSP_ERROR
    assert disc.read_bytes() == b"\xA5" * DISC_SECTORS * 512


def test_empty_drive_then_disc_inserted_unless_locked(tmp_path):
    other = _disc(tmp_path, "b.iso", 0x5A)
    with TestFrontend(tmp_path, "", device_type="cdrom") as fe:
        fe.connect()
        assert fe.backend_node("sectors") == "0"
        assert fe.read(0, 1)[0] == BLKIF_RSP_ERROR
        # The guest's lock (media-req) makes the backend put params back.
        fe.xs.write(fe.fe_path + "/media-req", "lock")
        fe.toolstack_xs.write(fe.be_path + "/params", str(other))
        wait_until(lambda: fe.backend_node("params") == "", "the backend to empty params", 5.0)
        assert "locked" in fe.backend_node("error")
        fe.xs.write(fe.fe_path + "/media-req", "none")
        fe.toolstack_xs.write(fe.be_path + "/params", str(other))
        wait_until(lambda: fe.backend_node("sectors") == str(DISC_SECTORS),
                   "the backend to publish the new disc's sectors", 5.0)
        status, data = fe.read(0, 1)
        assert status == BLKIF_RSP_OKAY and data == b"\x5A" * 512
