"""Property tests (hypothesis) of blkback's request validation, through the real ring to
a real blkback process.

Every request hypothesis makes - any operation, nr_segments up to 255, sectors near
and past the disk's end and near 2**64, first_sect/last_sect out of order or past 7,
grants valid, read-only, to another domain, never made, past the table or reserved,
any id and handle, discard and indirect - must get the answer the model of Linux
xen-blkback gives (pvboot.tools.blkif_fuzz.expected_status); an accepted read puts
exactly the disk's bytes into the granted sectors, nothing else in guest memory
moves, every grant is unmapped, and the image file never changes (overlay mode).
"""

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvboot.emu.xen.abi import (BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_FLUSH_DISKCACHE,
                                BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_SECTORS_PER_PAGE,
                                XenbusStateInitWait)
from pvboot.tools.blkif_fuzz import (GRANT_KINDS, BlkifOracle, Request, Segment, disk_bytes)

from tests.xen_frontend import NR_DATA_PAGES, TestFrontend

SECTORS = 128
U64 = 1 << 64
EXAMPLES = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def segments(draw):
    if draw(st.booleans()):
        first = draw(st.integers(0, BLKIF_SECTORS_PER_PAGE - 1))
        last = draw(st.integers(first, BLKIF_SECTORS_PER_PAGE - 1))
    else:
        first, last = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    grant = draw(st.one_of(st.just("rw"), st.sampled_from(GRANT_KINDS)))
    return Segment(draw(st.integers(0, NR_DATA_PAGES - 1)), first, last, grant)


@st.composite
def requests(draw):
    op = draw(st.one_of(st.sampled_from((BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_FLUSH_DISKCACHE)),
                        st.integers(0, 255)))
    segs = tuple(draw(st.lists(segments(), max_size=BLKIF_MAX_SEGMENTS_PER_REQUEST)))
    nr_segments = draw(st.one_of(st.just(len(segs)), st.integers(0, 255)))
    sector = draw(st.one_of(st.integers(0, SECTORS - 1), st.integers(SECTORS - 12, SECTORS + 4),
                            st.integers(U64 - 100, U64 - 1), st.integers(0, U64 - 1)))
    return Request(op, sector, segs, nr_segments, draw(st.integers(0, U64 - 1)),
                   draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 2**32 - 1)))


@pytest.fixture(scope="module", params=[("x86_64-abi", False), ("x86_32-abi", False),
                                        ("x86_64-abi", True)],
                ids=["x86_64", "x86_32", "read-only"])
def oracle(request, tmp_path_factory):
    """A blkback on a scratch image, connected, with the model of its disk."""
    abi, read_only = request.param
    tmp = tmp_path_factory.mktemp("blkprop")
    image = tmp / "disk.img"
    data = disk_bytes(7, SECTORS)
    image.write_bytes(data)
    with TestFrontend(tmp, image, abi=abi, read_only=read_only) as fe:
        fe.wait_backend_state(XenbusStateInitWait)
        fe.connect()
        model = BlkifOracle(fe, data, read_only=read_only)
        yield model
        model.close()
        assert model.ram_untouched()
        assert fe.proc.poll() is None, fe.stderr()
        assert fe.gnttab.mapped_refs() == {}
    assert hashlib.sha256(image.read_bytes()).digest() == hashlib.sha256(data).digest()


@EXAMPLES
@given(req=requests())
def test_every_request_answered_as_the_model_says(oracle, req):
    assert oracle.check(req) is None, oracle.fe.stderr()


@EXAMPLES
@given(first=st.integers(0, 7), count=st.integers(1, 8),
       pages=st.lists(st.integers(0, 2), min_size=1, max_size=BLKIF_MAX_SEGMENTS_PER_REQUEST))
def test_aliased_segments_give_sequential_order(oracle, first, count, pages):
    """Segments sharing pages (issue 6): writes then reads, as a sequential copy gives."""
    last = min(7, first + count - 1)
    segs = tuple(Segment(p, first, last, "rw") for p in pages)
    n = len(segs) * (last - first + 1)
    for op in (BLKIF_OP_WRITE, BLKIF_OP_READ):
        req = Request(op, SECTORS - n, segs, len(segs), 1, 0, first * 31 + count)
        assert oracle.check(req) is None, oracle.fe.stderr()


def test_the_oracle_sees_a_wrong_byte(oracle):
    """The properties above can fail: a model disk one bit off is reported."""
    req = Request(BLKIF_OP_READ, 3, (Segment(0, 0, 0, "rw"),), 1, 5, 0, 1)
    oracle.disk[3 * 512 + 17] ^= 1
    try:
        problem = oracle.check(req)
    finally:
        oracle.disk[3 * 512 + 17] ^= 1
    assert problem and "byte 17" in problem
