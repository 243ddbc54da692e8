"""emu.diskimage: the user's file is never changed unless asked, and reads see writes."""
import hashlib
import mmap
import os
import random

import pytest

from pvboot.emu.diskimage import SECTOR_SIZE, DiskImage, DiskImageError


def _make_file(path, sectors, seed=1):
    data = random.Random(seed).randbytes(sectors * SECTOR_SIZE)
    path.write_bytes(data)
    return data


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reads_match_the_file(tmp_path):
    path = tmp_path / "disk.img"
    data = _make_file(path, 64)
    with DiskImage(path) as image:
        assert image.sectors == 64
        assert image.kind == "hd"
        assert image.read(0, 64) == data
        assert image.read(10, 3) == data[10 * 512:13 * 512]


def test_overlay_leaves_the_file_unchanged(tmp_path):
    path = tmp_path / "disk.img"
    data = bytearray(_make_file(path, 256))
    before = _sha(path)
    mtime = os.stat(path).st_mtime_ns
    rng = random.Random(7)
    with DiskImage(path) as image:
        # Random overlapping, adjacent and disjoint writes, checked against a model.
        for _ in range(200):
            lba = rng.randrange(256)
            count = rng.randrange(1, min(16, 256 - lba) + 1)
            chunk = rng.randbytes(count * 512)
            image.write_from(lba, count, chunk)
            data[lba * 512:(lba + count) * 512] = chunk
            lba = rng.randrange(256)
            count = rng.randrange(1, 256 - lba + 1)
            assert image.read(lba, count) == bytes(data[lba * 512:(lba + count) * 512])
        assert image.read(0, 256) == bytes(data)
        assert image.overlay_sectors > 0
        # Extents stay sorted, disjoint and merged.
        pairs = list(zip(image._starts, image._ends))
        assert all(s < e for s, e in pairs)
        assert all(e1 < s2 for (_, e1), (s2, _) in zip(pairs, pairs[1:]))
        image.flush()
    assert _sha(path) == before
    assert os.stat(path).st_mtime_ns == mtime


def test_read_into_a_memory_view_is_zero_copy(tmp_path):
    path = tmp_path / "disk.img"
    data = _make_file(path, 8)
    region = mmap.mmap(-1, 8192)
    with DiskImage(path) as image:
        image.write_from(2, 1, b"\xAB" * 512)
        view = memoryview(region)[1024:1024 + 4 * 512]
        image.read_into(1, 4, view)
        view.release()
    expected = data[512:1024] + b"\xAB" * 512 + data[1536:2560]
    assert region[1024:1024 + 2048] == expected
    assert region[:1024] == bytes(1024)
    region.close()


def test_read_into_parts_counts_bytes_whatever_the_views_format(tmp_path):
    # Byte views are used as they are, others cast to bytes first: a 2 KiB view of
    # 512 u32 items is 4 sectors, not 1.
    path = tmp_path / "disk.img"
    data = _make_file(path, 16)
    region = mmap.mmap(-1, 8192)
    with DiskImage(path) as image:
        words = memoryview(region)[:2048].cast("I")
        flat = memoryview(region)[2048:2560]
        image.read_into_parts(3, [words, flat, bytearray(512)])
        words.release()
        flat.release()
        with pytest.raises(ValueError):
            image.read_into_parts(3, [bytearray(100)])
    assert region[:2560] == data[3 * 512:8 * 512]
    region.close()


def test_persist_writes_through(tmp_path):
    path = tmp_path / "disk.img"
    data = bytearray(_make_file(path, 16))
    with DiskImage(path, persist=True) as image:
        image.write_from(3, 2, b"\x5A" * 1024)
        image.flush()
        assert image.overlay_sectors == 0
    data[3 * 512:5 * 512] = b"\x5A" * 1024
    assert path.read_bytes() == bytes(data)


def test_read_only_refuses_writes(tmp_path):
    path = tmp_path / "disk.img"
    _make_file(path, 4)
    before = _sha(path)
    with DiskImage(path, read_only=True) as image:
        with pytest.raises(DiskImageError, match="read-only"):
            image.write_from(0, 1, bytes(512))
    assert _sha(path) == before
    with pytest.raises(DiskImageError):
        DiskImage(path, read_only=True, persist=True)


def test_size_not_a_multiple_of_512_rounds_down(tmp_path):
    path = tmp_path / "odd.img"
    path.write_bytes(bytes(512 * 3 + 100))
    with DiskImage(path) as image:
        assert image.sectors == 3
        assert any("not a multiple of 512" in note for note in image.notes)
        with pytest.raises(ValueError):
            image.read(3, 1)


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"x" * 100), "shorter than one"),
])
def test_validation_errors_are_one_line(tmp_path, setup, message):
    path = tmp_path / "bad.img"
    setup(path)
    with pytest.raises(DiskImageError, match=message) as info:
        DiskImage(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_and_unwritable(tmp_path):
    path = tmp_path / "locked.img"
    path.write_bytes(bytes(1024))
    path.chmod(0)
    with pytest.raises(DiskImageError, match="not readable"):
        DiskImage(path)
    path.chmod(0o444)
    with pytest.raises(DiskImageError, match="not writable"):
        DiskImage(path, persist=True)
    DiskImage(path).close()      # read access is enough for the overlay


def test_bad_kind_and_out_of_range(tmp_path):
    path = tmp_path / "disk.img"
    _make_file(path, 4)
    with pytest.raises(DiskImageError, match="kind"):
        DiskImage(path, kind="cdrom")
    with DiskImage(path, kind="floppy") as image:
        assert image.kind == "floppy"
        with pytest.raises(ValueError):
            image.write_from(3, 2, bytes(1024))
        with pytest.raises(ValueError):
            image.read_into(0, 2, bytearray(512))


def test_from_bytes_does_not_change_its_source():
    source = bytearray(random.Random(3).randbytes(4096))
    original = bytes(source)
    with DiskImage.from_bytes(source, name="demo") as image:
        assert image.sectors == 8
        image.write_from(1, 1, b"\xFF" * 512)
        assert image.read(1, 1) == b"\xFF" * 512
        assert image.read(0, 1) == original[:512]
    assert source == original
