"""The NBD data path's batching (docs/storage.md): pipelined reads, sequential read-ahead
and blkback's merged requests keep every byte where it belongs, and a read the QEMU
block layer fails (blkdebug error injection under the image) fails that read alone,
also when it arrives through blkback's ring (BLKIF_RSP_ERROR for that request only)."""
import random

import pytest

from pvboot.emu.diskimage import SECTOR_SIZE
from pvboot.emu.storage.images import open_image
from pvboot.emu.storage.nbd import NbdError
from pvboot.emu.xen.abi import BLKIF_OP_READ, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY
from tests.emu.storage_images import failing_qcow2, need_qemu_tools, patterned_qcow2
from tests.xen_frontend import TestFrontend

SECTORS = 4096                    # 2 MiB: more than one read-ahead window
BAD_SECTOR = 1500                 # where blkdebug fails every read (EIO)


@pytest.fixture(autouse=True)
def qemu_tools():
    need_qemu_tools()


@pytest.fixture
def disk(tmp_path):
    """A qcow2 whose every sector says its own number, and its raw bytes."""
    return patterned_qcow2(tmp_path, SECTORS)


@pytest.fixture
def failing(tmp_path):
    """A qcow2 on a raw backing file behind blkdebug: reads touching BAD_SECTOR fail."""
    return failing_qcow2(tmp_path, SECTORS, BAD_SECTOR)


def _views(total, pieces):
    """A buffer of ``total`` bytes cut into ``pieces`` sector-aligned views."""
    buf = bytearray(b"\xEE" * total)
    view = memoryview(buf)
    cuts = sorted(random.Random(total).sample(range(1, total // SECTOR_SIZE), pieces - 1))
    edges = [0, *(c * SECTOR_SIZE for c in cuts), total]
    return buf, [view[a:b] for a, b in zip(edges, edges[1:])]


def test_batches_of_pipelined_reads_return_every_byte(disk, tmp_path):
    image, data = disk
    rng = random.Random(7)
    with open_image(str(image), run_dir=str(tmp_path)) as img:
        # A sequential scan in AH=42h-sized pieces (read-ahead), then scattered batches.
        lba = 1
        while lba + 127 <= SECTORS:
            buf, parts = _views(127 * SECTOR_SIZE, 16)
            assert img.read_batch([(lba, parts)]) == [None]
            assert buf == data[lba * SECTOR_SIZE:(lba + 127) * SECTOR_SIZE], lba
            lba += 127
        assert img._ahead.refills >= 1 and img._ahead.hits > img._ahead.refills
        for _ in range(20):
            reads, bufs = [], []
            for _ in range(rng.randint(1, 12)):
                lba, count = rng.randrange(SECTORS - 64), rng.randint(2, 64)
                buf, parts = _views(count * SECTOR_SIZE, min(count, 5))
                reads.append((lba, parts))
                bufs.append((lba, buf))
            assert img.read_batch(reads) == [None] * len(reads)
            for lba, buf in bufs:
                assert buf == data[lba * SECTOR_SIZE:lba * SECTOR_SIZE + len(buf)], lba


def test_a_write_drops_the_read_ahead_window(disk, tmp_path):
    image, data = disk
    with open_image(str(image), run_dir=str(tmp_path)) as img:
        img.read(100, 8)
        img.read(108, 8)                         # sequential: the window now holds 116..
        assert img._ahead.refills == 1
        img.write_from(120, 1, b"W" * SECTOR_SIZE)
        assert img.read(116, 8) == data[116 * 512:120 * 512] + b"W" * 512 + \
            data[121 * 512:124 * 512]


def test_a_failing_read_fails_alone_and_the_connection_goes_on(failing, tmp_path):
    image, data = failing
    with open_image(str(image), run_dir=str(tmp_path)) as img:
        bufs = [bytearray(8 * SECTOR_SIZE) for _ in range(4)]
        lbas = [8, BAD_SECTOR - 3, 3000, BAD_SECTOR - 16]
        errors = img.read_batch([(lba, [memoryview(b)]) for lba, b in zip(lbas, bufs)])
        assert [e is None for e in errors] == [True, False, True, True]
        assert isinstance(errors[1], NbdError) and errors[1].errno == 5
        for i in (0, 2, 3):
            assert bufs[i] == data[lbas[i] * 512:(lbas[i] + 8) * 512]
        # Sequential reads whose read-ahead would reach the bad sector still succeed.
        assert img.read(BAD_SECTOR - 8, 8) == data[(BAD_SECTOR - 8) * 512:BAD_SECTOR * 512]
        with pytest.raises(NbdError):
            img.read(BAD_SECTOR, 1)
        assert img.read(BAD_SECTOR + 1, 4) == data[(BAD_SECTOR + 1) * 512:(BAD_SECTOR + 5) * 512]


def test_blkback_fails_only_the_request_the_storage_failed(failing, tmp_path):
    """Adjacent requests pushed together (merged into one NBD read by blkback): the one
    covering the bad sector answers BLKIF_RSP_ERROR, its neighbours their data."""
    image, data = failing
    fe = TestFrontend(tmp_path, "qcow2:%s" % image)     # libxl qdisk params: format:path
    try:
        fe.connect()
        first = BAD_SECTOR - 3 * 8 - 4               # requests of 8 sectors, one page each
        ids, refs = [], []
        for i in range(6):
            fe.data_view(i)[:] = b"\xAA" * 4096
            ids.append(fe.new_id())
            refs.append(fe.grant_data_page(i))
            fe.ring.put_request(ids[-1], BLKIF_OP_READ, first + 8 * i, [(refs[-1], 0, 7)])
        fe.push()
        statuses = {}
        while len(statuses) < len(ids):
            resp = fe.wait_response()
            assert resp is not None, fe.stderr()
            statuses[resp.id] = resp.status
        assert all(fe.gnttab.end_and_release(ref) for ref in refs)
        bad = (BAD_SECTOR - first) // 8
        assert [statuses[i] for i in ids] == [BLKIF_RSP_ERROR if n == bad else BLKIF_RSP_OKAY
                                              for n in range(6)]
        for n in range(6):
            if n != bad:
                lba = first + 8 * n
                assert bytes(fe.data_view(n)) == data[lba * 512:(lba + 8) * 512], n
        status, got = fe.read(8, 8)
        assert status == BLKIF_RSP_OKAY and got == data[8 * 512:16 * 512]
        assert fe.stop_backend() == 0
    finally:
        fe.close()
