"""The read-ahead in flight (emu/storage/readahead.py, NbdClient.send_read/take/pump),
against a real qemu-storage-daemon: a write into its range is never hidden by it, its
failure never fails the guest's read, replies are matched by handle whatever their
order, other reads may come in between, pump() takes it in piece by piece, and a
broken connection still ends in NbdError."""
import random

import pytest

from pvboot.emu.diskimage import SECTOR_SIZE
from pvboot.emu.storage import nbd
from pvboot.emu.storage.images import open_image
from pvboot.emu.storage.nbd import NbdError
from tests.emu.storage_images import failing_qcow2, patterned_qcow2

SECTORS = 8192                    # 4 MiB: several windows of every size
BAD_SECTOR = 1500


@pytest.fixture
def disk(tmp_path):
    return patterned_qcow2(tmp_path, SECTORS)


def _sectors(data, lba, count):
    return data[lba * SECTOR_SIZE:(lba + count) * SECTOR_SIZE]


def _start_stream(img):
    """Two sequential reads: the window is [116, 364) (128 KiB with the request) and
    the read of [364, 876) is in flight (sent by pump(), as between blkback's
    requests)."""
    img.read(100, 8)
    img.read(108, 8)
    ahead = img._ahead
    assert (ahead.start, ahead.sectors) == (116, 248)
    assert ahead.handle is None                  # due, sent once the caller has answered:
    assert img.pump()
    assert ahead.handle is not None and (ahead.ahead_start, ahead.ahead_sectors) == (364, 512)
    return ahead


def test_a_sequential_scan_keeps_one_read_ahead_in_flight(disk, tmp_path):
    image, data = disk
    with open_image(str(image), run_dir=str(tmp_path)) as img:
        lba = 1
        while lba + 127 <= SECTORS:
            assert img.read(lba, 127) == _sectors(data, lba, 127), lba
            assert len(img._client.outstanding()) <= 1
            lba += 127
        ahead = img._ahead
        # One window read with a request; every later one came from a read-ahead.
        assert ahead.refills == 1 and ahead.used >= 5 and ahead.dropped == 0
        assert ahead.sent == ahead.used + len(img._client.outstanding())


def test_a_write_into_the_read_ahead_in_flight_is_read_back(disk, tmp_path):
    image, data = disk
    with open_image(str(image), run_dir=str(tmp_path)) as img:
        ahead = _start_stream(img)
        img.write_from(400, 1, b"W" * SECTOR_SIZE)     # inside [364, 876), in flight
        assert ahead.stale and ahead.sectors == 0
        expect = bytearray(data)
        expect[400 * SECTOR_SIZE:401 * SECTOR_SIZE] = b"W" * SECTOR_SIZE
        for lba in range(116, 900, 8):
            assert img.read(lba, 8) == _sectors(expect, lba, 8), lba
        assert ahead.dropped >= 1


def test_a_failing_read_ahead_does_not_fail_the_read(tmp_path):
    """BAD_SECTOR lies in the read-ahead of a stream started below it: that read-ahead
    fails, the reads after the window still succeed up to the bad sector."""
    top, data = failing_qcow2(tmp_path, SECTORS, BAD_SECTOR)
    with open_image(str(top), run_dir=str(tmp_path)) as img:
        img.read(1000, 8)
        img.read(1008, 8)
        img.pump()                               # the read-ahead goes out
        ahead = img._ahead
        assert ahead.ahead_start <= BAD_SECTOR < ahead.ahead_start + ahead.ahead_sectors
        for lba in range(1016, BAD_SECTOR - 8, 8):
            assert img.read(lba, 8) == _sectors(data, lba, 8), lba
        assert ahead.dropped == 1 and ahead.used == 0
        with pytest.raises(NbdError) as failed:
            img.read(BAD_SECTOR - 4, 8)
        assert failed.value.errno == 5
        assert img.read(BAD_SECTOR + 1, 8) == _sectors(data, BAD_SECTOR + 1, 8)


def test_replies_are_matched_by_handle_in_either_order(disk, tmp_path):
    """A 4 MiB read sent ahead, then small reads: the small replies usually overtake
    the big one (QEMU serves the commands of a connection concurrently)."""
    image, data = disk
    with open_image(str(image), run_dir=str(tmp_path)) as img:
        client = img._client
        orders = set()
        for i in range(40):
            big = bytearray(len(data))
            handle = client.send_read(0, [memoryview(big)])
            smalls = [bytearray(SECTOR_SIZE) for _ in range(3)]
            lbas = [SECTORS - 1 - i, 7 + i, 4000 + i]
            assert client.read_batch([(lba * SECTOR_SIZE, [memoryview(b)])
                                      for lba, b in zip(lbas, smalls)]) == [None] * 3
            orders.add(client._sent[handle].done)       # True: the big one came first
            for lba, small in zip(lbas, smalls):
                assert small == _sectors(data, lba, 1), lba
            assert client.take(handle) is None and big == data
            assert client.outstanding() == []
            if orders == {True, False}:
                break
        assert False in orders


def test_other_reads_in_between_leave_the_read_ahead_usable(disk, tmp_path):
    image, data = disk
    with open_image(str(image), run_dir=str(tmp_path)) as img:
        ahead = _start_stream(img)
        assert img.read(5000, 16) == _sectors(data, 5000, 16)
        bufs = [bytearray(8 * SECTOR_SIZE), bytearray(4 * SECTOR_SIZE)]
        # One batch: a hit in the window and a scattered read.
        assert img.read_batch([(116, [memoryview(bufs[0])]),
                               (7000, [memoryview(bufs[1])])]) == [None, None]
        assert bufs[0] == _sectors(data, 116, 8) and bufs[1] == _sectors(data, 7000, 4)
        assert ahead.handle is not None and ahead.used == 0
        # Back to the stream: the read straddling the window's end is served from both.
        for lba in range(124, 1000, 10):
            assert img.read(lba, 10) == _sectors(data, lba, 10), lba
        assert ahead.used >= 1 and ahead.dropped == 0


def test_pump_takes_the_read_ahead_in_piece_by_piece(disk, tmp_path, monkeypatch):
    image, data = disk
    monkeypatch.setattr(nbd, "PUMP_STEP", 4096)
    with open_image(str(image), run_dir=str(tmp_path)) as img:
        ahead = _start_stream(img)
        calls = 0
        while img.pump():
            calls += 1
            assert calls < 1_000_000
        assert calls > 512 * SECTOR_SIZE // 4096 // 2    # many small steps (and waits)
        assert img._client._sent[ahead.handle].done and img._client._body is None
        assert not img.pump()
        for lba in range(116, 900, 8):
            assert img.read(lba, 8) == _sectors(data, lba, 8), lba
        assert ahead.used >= 1


def test_a_reply_header_taken_in_part_is_finished_by_the_next_call(disk, tmp_path):
    image, data = disk
    with open_image(str(image), run_dir=str(tmp_path)) as img:
        client = img._client
        buf = bytearray(64 * SECTOR_SIZE)
        handle = client.send_read(64 * SECTOR_SIZE, [memoryview(buf)])
        # As pump() leaves it when the server's bytes stop inside a header.
        got = client.sock.recv_into(memoryview(client._header)[:5], 5)
        assert got == 5
        client._got = 5
        small = bytearray(SECTOR_SIZE)
        assert client.read_batch([(3 * SECTOR_SIZE, [memoryview(small)])]) == [None]
        assert small == _sectors(data, 3, 1)
        assert client.take(handle) is None and buf == _sectors(data, 64, 64)


def test_a_broken_connection_with_a_read_ahead_out_is_an_nbd_error(disk, tmp_path):
    image, data = disk
    with open_image(str(image), run_dir=str(tmp_path)) as img:
        _start_stream(img)
        img.daemon.proc.kill()
        img.daemon.proc.wait(timeout=10)
        while img.pump():
            pass
        with pytest.raises(NbdError):
            for lba in range(116, 2000, 8):     # through the window, then to the daemon
                img.read(lba, 8)
        with pytest.raises(NbdError):
            img.read(3000, 8)


def test_pump_after_close_has_nothing_to_do(disk, tmp_path):
    image, _data = disk
    img = open_image(str(image), run_dir=str(tmp_path))
    try:
        img.read(100, 8)
        img.read(108, 8)                        # a read-ahead due
    finally:
        img.close()
    assert img.pump() is False


def test_mixed_reads_writes_and_pumps_match_a_model(disk, tmp_path):
    """Sequential streams in uneven pieces, writes anywhere (often into the window or
    the read-ahead), scattered reads and batches, pump() or not between calls: every
    read returns what the bytes written so far say."""
    image, data = disk
    model = bytearray(data)
    rng = random.Random(16)
    with open_image(str(image), run_dir=str(tmp_path)) as img:
        lba = 1
        for step in range(1500):
            roll = rng.random()
            if roll < 0.08:                      # a write, mostly near the stream
                where = min(SECTORS - 8, max(0, lba + rng.randint(-64, 1200))) \
                    if rng.random() < 0.8 else rng.randrange(SECTORS - 8)
                count = rng.randint(1, 8)
                payload = bytes([step & 0xFF]) * (count * SECTOR_SIZE)
                img.write_from(where, count, payload)
                model[where * SECTOR_SIZE:(where + count) * SECTOR_SIZE] = payload
            elif roll < 0.15:                    # a scattered batch
                reads = []
                for _ in range(rng.randint(1, 4)):
                    at, count = rng.randrange(SECTORS - 64), rng.randint(1, 64)
                    reads.append((at, bytearray(count * SECTOR_SIZE)))
                assert img.read_batch([(at, [memoryview(b)]) for at, b in reads]) == \
                    [None] * len(reads)
                for at, buf in reads:
                    assert buf == model[at * SECTOR_SIZE:at * SECTOR_SIZE + len(buf)], at
            else:                                # the stream goes on
                count = rng.choice((8, 127, rng.randint(1, 127)))
                if lba + count > SECTORS:
                    lba = rng.randrange(SECTORS // 2)
                assert img.read(lba, count) == model[lba * SECTOR_SIZE:
                                                     (lba + count) * SECTOR_SIZE], (step, lba)
                lba += count
            for _ in range(rng.choice((0, 0, 1, 3, 50))):
                if not img.pump():
                    break
            assert len(img._client.outstanding()) <= 1
        ahead = img._ahead
        assert ahead.used >= 10 and ahead.dropped >= 1 and ahead.hits > ahead.refills
