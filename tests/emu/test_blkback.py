"""blkback as a real process, driven by the test frontend (tests/xen_frontend.py).

Every malformed request is answered with the status Linux blkback gives it and the
backend keeps serving (a valid read after each must still succeed); a ring whose
producer runs past its size is halted; the image is never modified in the default
overlay mode; the xenbus handshake goes InitWait -> Connected (without the frontend
ever writing Connected) -> Closing/Closed -> InitWait again.
"""

import hashlib
import os
import subprocess
import sys
import time

import pytest

from pvboot.emu.xen import toolstack
from pvboot.emu.xen.abi import (BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_READ, BLKIF_OP_WRITE,
                         BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, VDISK_READONLY,
                         XenbusStateClosed, XenbusStateClosing, XenbusStateConnected,
                         XenbusStateInitialised, XenbusStateInitWait, pack_discard,
                         pack_indirect)
from pvboot.emu.xen.evtchn import EVTCHNSTAT_unbound
from pvboot.emu.xen.abi import GTF_reading, GTF_writing

from tests.xen_frontend import DOMID_BACKEND, DOMID_GUEST, NR_DATA_PAGES, TestFrontend

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECTORS = 2048          # 1 MiB test image
ABIS = ("x86_32-abi", "x86_64-abi")


def make_image(path, sectors=SECTORS):
    # Every sector distinct, so a wrong offset cannot go unnoticed.
    data = b"".join(i.to_bytes(4, "little") * 128 for i in range(sectors))
    data = bytes(b ^ (i * 7 & 0xFF) for i, b in enumerate(data[:4096])) + data[4096:]
    path.write_bytes(data)
    return data


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", params=ABIS)
def shared(request, tmp_path_factory):
    """One connected frontend per ABI, shared by the malformed-request tests."""
    tmp = tmp_path_factory.mktemp("blkback-" + request.param)
    image = tmp / "disk.img"
    data = make_image(image)
    digest = sha(image)
    fe = TestFrontend(tmp, image, abi=request.param)
    fe.wait_backend_state(XenbusStateInitWait)
    fe.connect()
    fe.data = data
    yield fe
    try:
        assert fe.proc.poll() is None, fe.stderr()
        assert fe.stop_backend() == 0
    finally:
        fe.close()
    assert sha(image) == digest          # overlay mode: the user's image is untouched


@pytest.fixture
def fresh(tmp_path):
    """A new image and frontend (not yet connected) per test; closed afterwards."""
    made = []

    def make(abi="x86_64-abi", **kw):
        image = tmp_path / ("disk%d.img" % len(made))
        data = make_image(image)
        fe = TestFrontend(tmp_path, image, abi=abi, **kw)
        fe.data = data
        fe.image = image
        made.append(fe)
        return fe
    yield make
    for fe in made:
        fe.close()


def assert_still_serving(fe):
    status, got = fe.read(5, 8)
    assert status == BLKIF_RSP_OKAY, fe.stderr()
    assert got == fe.data[5 * 512:13 * 512]
    assert fe.gnttab.mapped_refs() == {}


# ---------------------------------------------------------------- malformed requests

def test_valid_read(shared):
    assert_still_serving(shared)
    assert shared.backend_node("sectors") == str(SECTORS)
    assert shared.backend_node("sector-size") == "512"
    assert shared.backend_node("info") == "0"
    assert shared.backend_node("feature-flush-cache") == "1"


def _bad_gref(fe):
    return fe.request(BLKIF_OP_READ, 0, [(fe.gnttab.nr_entries, 0, 7)])


def _huge_gref(fe):
    return fe.request(BLKIF_OP_READ, 0, [(0xFFFFFFFF, 0, 7)])


def _never_granted(fe):
    return fe.request(BLKIF_OP_READ, 0, [(300, 0, 7)])


def _reserved_ref(fe):
    return fe.request(BLKIF_OP_READ, 0, [(1, 0, 7)])


def _readonly_grant_for_read(fe):
    return fe.rw(BLKIF_OP_READ, 0, [(0, 0, 7)], readonly_grants=True)


def _grant_to_other_domain(fe):
    ref = fe.gnttab.grant(2, fe.data_frame(0), False)
    try:
        return fe.request(BLKIF_OP_READ, 0, [(ref, 0, 7)])
    finally:
        assert fe.gnttab.end_and_release(ref)


def _grant_of_rom_frame(fe):
    ref = fe.gnttab.grant(DOMID_BACKEND, 0xF0, False)
    try:
        return fe.request(BLKIF_OP_READ, 0, [(ref, 0, 7)])
    finally:
        assert fe.gnttab.end_and_release(ref)


def _grant_of_grant_table(fe):
    ref = fe.gnttab.grant(DOMID_BACKEND, fe.gnttab.base // 4096, False)
    try:
        return fe.request(BLKIF_OP_READ, 0, [(ref, 0, 7)])
    finally:
        assert fe.gnttab.end_and_release(ref)


def _second_segment_bad(fe):
    # The good first grant must be unmapped again (end_and_release checks it).
    ref = fe.grant_data_page(0)
    try:
        return fe.request(BLKIF_OP_READ, 0, [(ref, 0, 7), (9999, 0, 7)])
    finally:
        assert fe.gnttab.end_and_release(ref)


def _segments(n):
    def run(fe):
        refs = [fe.grant_data_page(i) for i in range(min(n, 11))]
        try:
            return fe.request(BLKIF_OP_READ, 0, [(r, 0, 0) for r in refs], nr_segments=n)
        finally:
            for r in refs:
                assert fe.gnttab.end_and_release(r)
    return run


def _sects(first, last, sector=0):
    def run(fe):
        return fe.rw(BLKIF_OP_READ, sector, [(0, first, last)])
    return run


def _op(op):
    def run(fe):
        return fe.request(op, 0, [])
    return run


def _raw(packer):
    def run(fe):
        req_id = fe.new_id()
        fe.submit_raw(packer(fe.ring.abi, req_id))
        resp = fe.wait_response()
        assert resp is not None and resp.id == req_id
        return resp.status
    return run


MALFORMED = {
    "gref beyond the table": (_bad_gref, BLKIF_RSP_ERROR),
    "gref 0xffffffff": (_huge_gref, BLKIF_RSP_ERROR),
    "page never granted": (_never_granted, BLKIF_RSP_ERROR),
    "reserved ref": (_reserved_ref, BLKIF_RSP_ERROR),
    "read-only grant used for a READ": (_readonly_grant_for_read, BLKIF_RSP_ERROR),
    "grant to another domain": (_grant_to_other_domain, BLKIF_RSP_ERROR),
    "grant of a ROM frame": (_grant_of_rom_frame, BLKIF_RSP_ERROR),
    "grant of the grant table": (_grant_of_grant_table, BLKIF_RSP_ERROR),
    "second segment unmappable": (_second_segment_bad, BLKIF_RSP_ERROR),
    "nr_segments 0": (_segments(0), BLKIF_RSP_ERROR),
    "nr_segments 12": (_segments(12), BLKIF_RSP_ERROR),
    "nr_segments 255": (_segments(255), BLKIF_RSP_ERROR),
    "first_sect > last_sect": (_sects(5, 4), BLKIF_RSP_ERROR),
    "last_sect 8": (_sects(0, 8), BLKIF_RSP_ERROR),
    "first_sect 200": (_sects(200, 255), BLKIF_RSP_ERROR),
    "sector past the end": (_sects(0, 0, SECTORS), BLKIF_RSP_ERROR),
    "range across the end": (_sects(0, 7, SECTORS - 4), BLKIF_RSP_ERROR),
    "sector + count overflows u64": (_sects(0, 7, (1 << 64) - 4), BLKIF_RSP_ERROR),
    "unknown op": (_op(77), BLKIF_RSP_EOPNOTSUPP),
    "reserved op 4": (_op(4), BLKIF_RSP_EOPNOTSUPP),
    "WRITE_BARRIER (not advertised)": (_op(BLKIF_OP_WRITE_BARRIER), BLKIF_RSP_EOPNOTSUPP),
    "DISCARD": (_raw(lambda abi, i: pack_discard(abi, i, 0, 0, 0, 8)), BLKIF_RSP_EOPNOTSUPP),
    "INDIRECT": (_raw(lambda abi, i: pack_indirect(abi, i, BLKIF_OP_READ, 8, 0, 0, [300])),
                 BLKIF_RSP_EOPNOTSUPP),
    "FLUSH_DISKCACHE": (_op(BLKIF_OP_FLUSH_DISKCACHE), BLKIF_RSP_OKAY),
    "last sector of the disk": (_sects(7, 7, SECTORS - 1), BLKIF_RSP_OKAY),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_answered_and_serving_goes_on(shared, case):
    run, expected = MALFORMED[case]
    assert run(shared) == expected, shared.stderr()
    assert_still_serving(shared)


def test_many_requests_in_flight(shared):
    """A full ring of requests pushed at once, each answered once, in order."""
    fe = shared
    n = fe.ring.nr_ents
    refs = [fe.grant_data_page(i % 24) for i in range(n)]
    ids = []
    for i, ref in enumerate(refs):
        ids.append(fe.new_id())
        fe.ring.put_request(ids[-1], BLKIF_OP_READ, i, [(ref, 0, 0)])
    assert fe.ring.full()
    fe.push()
    got = []
    while len(got) < n:
        resp = fe.wait_response()
        assert resp is not None, fe.stderr()
        got.append(resp)
    assert [r.id for r in got] == ids and all(r.status == 0 for r in got)
    for ref in refs:
        assert fe.gnttab.end_and_release(ref)


# ---------------------------------------------------------------- data

LAYOUTS = [
    [(0, 0, 7)],
    [(0, 3, 3)],
    [(0, 1, 7), (1, 0, 0), (2, 3, 5), (3, 0, 7)],
    [(i, i % 8, 7) for i in range(11)],
    [(i, 0, i % 8) for i in range(11)],
    [(10 - i, 7, 7) for i in range(11)],
]


@pytest.mark.parametrize("abi", ABIS)
def test_multi_segment_reads_return_the_image(fresh, abi):
    fe = fresh(abi)
    fe.connect()
    sector = 0
    for layout in LAYOUTS:
        for page, _, _ in layout:
            fe.data_view(page)[:] = b"\xAA" * 4096
        assert fe.rw(BLKIF_OP_READ, sector, layout) == BLKIF_RSP_OKAY
        lba = sector
        for page, first, last in layout:
            view = bytes(fe.data_view(page))
            n = last - first + 1
            assert view[first * 512:(last + 1) * 512] == fe.data[lba * 512:(lba + n) * 512]
            # nothing outside the segment was touched
            assert view[:first * 512] == b"\xAA" * (first * 512)
            assert view[(last + 1) * 512:] == b"\xAA" * ((7 - last) * 512)
            lba += n
        sector += 97


@pytest.mark.parametrize("abi", ABIS)
def test_writes_go_to_the_overlay(fresh, abi):
    fe = fresh(abi)
    before = sha(fe.image)
    fe.connect()
    payload = os.urandom(512 * 20)
    assert fe.write(100, payload) == BLKIF_RSP_OKAY
    assert fe.request(BLKIF_OP_FLUSH_DISKCACHE, 0, []) == BLKIF_RSP_OKAY
    status, got = fe.read(100, 20, page=5)
    assert status == BLKIF_RSP_OKAY and got == payload
    status, got = fe.read(96, 8, page=5)
    assert got == fe.data[96 * 512:100 * 512] + payload[:4 * 512]
    # a write with odd first/last sects inside pages
    fe.data_view(0)[:] = b"\x55" * 4096
    assert fe.rw(BLKIF_OP_WRITE, 300, [(0, 2, 4)]) == BLKIF_RSP_OKAY
    status, got = fe.read(300, 3, page=6)
    assert got == b"\x55" * 1536
    assert fe.stop_backend() == 0
    assert sha(fe.image) == before


def test_persist_writes_reach_the_file(fresh):
    fe = fresh(persist=True)
    fe.connect()
    payload = os.urandom(512 * 9)
    assert fe.write(7, payload) == BLKIF_RSP_OKAY
    assert fe.request(BLKIF_OP_FLUSH_DISKCACHE, 0, []) == BLKIF_RSP_OKAY
    assert fe.image.read_bytes()[7 * 512:16 * 512] == payload
    # FLUSH with a segment: a write, then the flush
    fe.data_view(1)[:512] = b"F" * 512
    ref = fe.grant_data_page(1, readonly=True)
    assert fe.request(BLKIF_OP_FLUSH_DISKCACHE, 40, [(ref, 0, 0)]) == BLKIF_RSP_OKAY
    assert fe.gnttab.end_and_release(ref)
    assert fe.image.read_bytes()[40 * 512:41 * 512] == b"F" * 512


def test_read_only_disk(fresh):
    fe = fresh(read_only=True)
    before = sha(fe.image)
    fe.connect()
    assert int(fe.backend_node("info")) & VDISK_READONLY
    assert fe.backend_node("feature-flush-cache") == "0"
    assert fe.write(0, b"x" * 512) == BLKIF_RSP_ERROR
    assert fe.request(BLKIF_OP_FLUSH_DISKCACHE, 0, []) == BLKIF_RSP_EOPNOTSUPP
    assert_still_serving(fe)
    assert fe.stop_backend() == 0
    assert sha(fe.image) == before


def test_mode_r_from_the_toolstack_means_read_only(fresh):
    fe = fresh(mode="r")
    fe.connect()
    assert int(fe.backend_node("info")) & VDISK_READONLY
    assert fe.write(0, b"x" * 512) == BLKIF_RSP_ERROR
    assert_still_serving(fe)


def test_missing_protocol_means_native_x86_64(fresh):
    fe = fresh("x86_64-abi")
    fe.connect(protocol=None)
    assert fe.xs.read(fe.fe_path + "/protocol") is None
    assert_still_serving(fe)


def test_unknown_protocol_is_fatal(fresh):
    fe = fresh()
    fe.wait_backend_state(XenbusStateInitWait)
    fe.ring_ref = fe.gnttab.grant(DOMID_BACKEND, fe.base_frame + 2, False)
    fe.port = fe.evtchn.alloc_unbound(DOMID_GUEST, DOMID_BACKEND)
    fe.xs.write(fe.fe_path + "/ring-ref", str(fe.ring_ref))
    fe.xs.write(fe.fe_path + "/event-channel", str(fe.port))
    fe.xs.write(fe.fe_path + "/protocol", "arm-abi")
    fe.switch_state(XenbusStateInitialised)
    fe.wait_backend_state(XenbusStateClosing)
    assert "unknown fe protocol" in fe.backend_node("error")
    assert fe.gnttab.end_access(fe.ring_ref)              # not left mapped
    assert fe.proc.poll() is None


def test_guest_memory_by_path(fresh):
    fe = fresh(use_memory_path=True)
    fe.connect()
    assert_still_serving(fe)


# ---------------------------------------------------------------- ring overflow

def test_producer_run_past_the_ring_halts_it(fresh):
    fe = fresh()
    fe.connect()
    assert_still_serving(fe)
    ring = fe.ring
    ref = fe.grant_data_page(0)
    for i in range(ring.nr_ents + 1):
        ring.put_request_bytes(b"\0" * ring.entry_size)
    ring.req_prod_pvt = (ring.rsp_cons + ring.nr_ents + 5) & 0xFFFFFFFF
    fe.push()
    assert fe.wait_response(timeout=0.5) is None
    deadline = time.monotonic() + 5
    while "bogus ring requests" not in fe.stderr() and time.monotonic() < deadline:
        time.sleep(0.02)
    err = fe.stderr()
    assert "Frontend provided bogus ring requests" in err
    assert len(err.strip().splitlines()) == 1
    # no more answers on this ring, but the process is alive and still does xenbus
    fe.evtchn.send(DOMID_GUEST, fe.port)
    assert fe.wait_response(timeout=0.3) is None
    assert fe.proc.poll() is None
    assert fe.gnttab.end_and_release(ref)
    fe.disconnect()
    fe.reinitialise()
    fe.connect()
    assert_still_serving(fe)
    assert fe.stop_backend() == 0
    assert len(fe.stderr().strip().splitlines()) == 1     # the one line, nothing more


# ---------------------------------------------------------------- handshake

def test_handshake_states(fresh):
    fe = fresh("x86_32-abi")
    assert fe.wait_backend_state(XenbusStateInitWait) == XenbusStateInitWait
    assert fe.backend_node("feature-flush-cache") == "1"
    assert fe.backend_node("feature-persistent") == "1"
    assert fe.backend_node("sectors") is None                # only once connected
    time.sleep(0.1)
    assert fe.backend_state() == XenbusStateInitWait           # waits for the frontend
    fe.connect()                                               # stops at Initialised
    assert fe.xs.read_int(fe.fe_path + "/state") == XenbusStateInitialised
    assert fe.backend_state() == XenbusStateConnected
    assert_still_serving(fe)
    port, ring_ref = fe.port, fe.ring_ref
    # frontend Closing -> backend unmaps the ring, closes its port, Closing -> Closed
    fe.switch_state(XenbusStateClosing)
    fe.wait_backend_state(XenbusStateClosed)
    assert fe.evtchn.status(DOMID_GUEST, port)[0] == EVTCHNSTAT_unbound
    assert fe.gnttab.end_access(ring_ref)
    fe.gnttab.release_ref(ring_ref)
    fe.ring_ref = None
    fe.evtchn.close(DOMID_GUEST, port)
    fe.port = None
    # next stage's frontend: Initialising -> InitWait, then a new connection, other ABI
    fe.reinitialise()
    fe.abi = "x86_64-abi"
    fe.connect()
    assert_still_serving(fe)
    # Connected frontend (a Linux-style one) works too, and Closed straight away
    fe.switch_state(XenbusStateConnected)
    time.sleep(0.05)
    assert_still_serving(fe)
    fe.disconnect(final_state=XenbusStateClosed)
    fe.reinitialise()
    fe.connect()
    assert_still_serving(fe)
    assert fe.stop_backend() == 0
    assert fe.stderr() == ""


def test_detach_and_node_removal_stop_the_backend(fresh):
    fe = fresh()
    fe.connect()
    fe.switch_state(XenbusStateClosing)
    fe.wait_backend_state(XenbusStateClosed)
    assert toolstack.detach_disk(fe.toolstack_xs, fe.devid, timeout=5.0) is True
    assert fe.proc.wait(5) == 0
    assert not fe.toolstack_xs.exists(fe.be_path)
    assert not fe.toolstack_xs.exists(fe.fe_path)

    other = fresh()
    other.wait_backend_state(XenbusStateInitWait)
    other.toolstack_xs.rm(other.be_path)
    assert other.proc.wait(5) == 0


def test_exits_cleanly_when_xenstore_goes(fresh):
    fe = fresh()
    fe.connect()
    fe.daemon.stop()
    assert fe.proc.wait(5) == 0


def test_sigterm_while_connected(fresh):
    fe = fresh()
    fe.connect()
    assert fe.stop_backend() == 0
    assert fe.backend_state() == XenbusStateClosed
    assert fe.gnttab.end_access(fe.ring_ref)


# ---------------------------------------------------------------- command line

def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "pvboot.emu.xen.blkback", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=30, **kw)


def test_help():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "--xenstore" in r.stdout and "--evtchn-fd" in r.stdout and r.stderr == ""


@pytest.mark.parametrize("args", [
    [],
    ["--bogus"],
    ["--xenstore", "s", "--guest-memory", "m", "--grant-table-address", "zz",
     "--evtchn-page-address", "0x1000", "--evtchn-fd", "5", "--frontend-evtchn-fd", "6",
     "--devid", "51712"],
    ["--xenstore", "s", "--guest-memory", "m", "--grant-table-address", "0x1001",
     "--evtchn-page-address", "0x2000", "--evtchn-fd", "5", "--frontend-evtchn-fd", "6",
     "--devid", "51712"],
    ["--xenstore", "s", "--guest-memory", "m", "--grant-table-address", "0x1000",
     "--evtchn-page-address", "0x2000", "--evtchn-fd", "5", "--frontend-evtchn-fd", "6",
     "--devid", "hda"],
    ["--xenstore", "s", "--guest-memory", "m", "--grant-table-address", "0x1000",
     "--evtchn-page-address", "0x2000", "--evtchn-fd", "5", "--frontend-evtchn-fd", "6",
     "--devid", "xvda", "--read-only", "--persist"],
])
def test_bad_arguments_exit_2_with_one_line(args):
    r = run_cli(*args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_unusable_resources_exit_3_with_one_line(tmp_path):
    r = run_cli("--xenstore", str(tmp_path / "sock"), "--guest-memory", str(tmp_path / "nope"),
                "--grant-table-address", "0x1000", "--evtchn-page-address", "0x2000",
                "--evtchn-fd", "5", "--frontend-evtchn-fd", "6", "--devid", "xvda")
    assert r.returncode == 3
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    mem = tmp_path / "mem"
    mem.write_bytes(bytes(16384))
    r = run_cli("--xenstore", str(tmp_path / "sock"), "--guest-memory", str(mem),
                "--grant-table-address", "0x1000", "--evtchn-page-address", "0x2000",
                "--evtchn-fd", "5", "--frontend-evtchn-fd", "6", "--devid", "xvda")
    assert r.returncode == 3
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr


# ---------------------------------------------------------------- toolstack

def test_vdev_names():
    assert toolstack.vdev_to_devid("xvda") == 51712 == 202 << 8
    assert toolstack.vdev_to_devid("xvdb") == 51728
    assert toolstack.vdev_to_devid("xvda1") == 51713
    assert toolstack.vdev_to_devid("xvdq") == (1 << 28) | (16 << 8)
    for bad in ("hda", "xvd", "xvdA", "sda1", "xvda1x"):
        with pytest.raises(toolstack.ToolstackError):
            toolstack.vdev_to_devid(bad)


def test_attach_writes_what_xl_writes(tmp_path):
    from pvboot.emu.xen.xenstored import XenstoreDaemon
    from pvboot.emu.xen.xsclient import XenstoreError, XsClient
    with XenstoreDaemon() as daemon:
        xs = XsClient.from_socket(daemon.connect(), timeout=5)
        guest = XsClient.from_socket(daemon.connect_domain(DOMID_GUEST), timeout=5)
        toolstack.make_domain(xs, DOMID_GUEST)
        fe, be = toolstack.attach_disk(xs, None, "/img/disk.raw", "r", dev="xvdb")
        assert fe == "/local/domain/1/device/vbd/51728"
        assert be == "/local/domain/0/backend/vbd/1/51728"
        assert {k: xs.read(fe + "/" + k) for k in xs.directory(fe)} == {
            "backend": be, "backend-id": "0", "state": "1", "virtual-device": "51728",
            "device-type": "disk", "trusted": "1"}
        back = {k: xs.read(be + "/" + k) for k in xs.directory(be)}
        assert back == {
            "frontend": fe, "params": "/img/disk.raw", "frontend-id": "1", "online": "1",
            "removable": "0", "bootable": "1", "state": "1", "dev": "xvdb", "type": "phy",
            "mode": "r", "device-type": "disk", "discard-enable": "0", "specification": "xen"}
        assert xs.get_perms(fe) == ["n1", "r0"]
        assert xs.get_perms(be) == ["n0", "r1"]
        # the guest may read the backend's nodes but not write them; its own it may write
        assert guest.read(be + "/mode") == "r"
        with pytest.raises(XenstoreError) as denied:
            guest.write(be + "/mode", "w")
        assert denied.value.errname == "EACCES"
        guest.write(fe + "/state", "3")
        with pytest.raises(toolstack.ToolstackError):
            toolstack.attach_disk(xs, None, "/img/other.raw", dev="xvdb")
        with pytest.raises(toolstack.ToolstackError):
            toolstack.attach_disk(xs, None, "/img/disk.raw", "rw")
        # no backend running: detach gives up after the timeout and removes anyway
        assert toolstack.detach_disk(xs, 51728, timeout=0.2) is False     # gave up at the bound
        assert not xs.exists(fe) and not xs.exists(be)
        with pytest.raises(toolstack.ToolstackError):
            toolstack.detach_disk(xs, 51728)
        guest.close()
        xs.close()


# ---------------------------------------------------------------- ring helpers

@pytest.mark.parametrize("abi", ABIS)
def test_ring_notify_rules(abi):
    from pvboot.emu.xen.abi import pack_request
    from pvboot.emu.xen.ring import BackRing, FrontRing, RingFull, RingOverflow
    page = memoryview(bytearray(4096))
    front = FrontRing(page, abi)
    assert (front.req_prod, front.req_event, front.rsp_prod, front.rsp_event) == (0, 1, 0, 1)
    assert front.nr_ents == 32
    back = BackRing(page, abi)
    assert back.unconsumed_requests() == 0
    assert not back.final_check_for_requests() and front.req_event == 1
    front.put_request(7, BLKIF_OP_READ, 99, [(8, 0, 7)])
    assert front.push_requests()                # the backend armed req_event = 1
    front.put_request(8, BLKIF_OP_READ, 100, [(8, 0, 7)])
    assert not front.push_requests()            # it has not consumed: no new kick
    assert back.unconsumed_requests() == 2
    raw = back.get_request()
    assert raw == pack_request(abi, 7, BLKIF_OP_READ, 1, 0, 99, [(8, 0, 7)])
    back.get_request()
    back.put_response(7, BLKIF_OP_READ, 0)
    assert back.push_responses()                # rsp_event was 1
    back.put_response(8, BLKIF_OP_READ, -1)
    assert not back.push_responses()
    assert not back.final_check_for_requests() and front.req_event == 3
    assert front.get_response() == (7, BLKIF_OP_READ, 0)
    assert front.get_response() == (8, BLKIF_OP_READ, -1)
    assert front.get_response() is None
    assert not front.final_check_for_responses() and front.rsp_event == 3
    # wrap-around of the free-running u32 indexes
    for i in range(40):
        front.put_request(i, BLKIF_OP_READ, i, [(8, 0, 0)])
        front.push_requests()
        assert back.get_request()[:1] == b"\0"
        back.put_response(i, BLKIF_OP_READ, 0)
        back.push_responses()
        assert front.get_response().id == i
    for _ in range(32):
        front.put_request(1, BLKIF_OP_READ, 0, [])
    with pytest.raises(RingFull):
        front.put_request(1, BLKIF_OP_READ, 0, [])
    front.push_requests()
    assert back.unconsumed_requests() == 32
    # a producer beyond the ring: BackRing refuses to attach and stops serving
    page[0:4] = (back.rsp_prod_pvt + 33).to_bytes(4, "little")
    with pytest.raises(RingOverflow):
        back.unconsumed_requests()
    with pytest.raises(RingOverflow):
        BackRing(page, abi)
    page[8:12] = (front.rsp_cons + 40).to_bytes(4, "little")
    with pytest.raises(RingOverflow):
        front.unconsumed_responses()


def test_started_backend_holds_only_its_own_descriptors(fresh):
    """start_blkback forks: the child must drop what the pvboot process has open (the
    xenstore daemon's sockets, other disks, the caller's stdio) and keep guest memory,
    its event channels, its one xenstore connection and its image."""
    fe = fresh()
    fe.wait_backend_state(XenbusStateInitWait)
    pid = fe.proc.pid
    links = [os.readlink(f"/proc/{pid}/fd/{name}") for name in os.listdir(f"/proc/{pid}/fd")]
    assert sum(link.startswith("socket:") for link in links) == 1, links
    assert any("pvboot-guest-ram" in link for link in links)
    assert sum(link == "anon_inode:[eventfd]" for link in links) == 2, links
    assert links.count(fe.image_path) == 1, links
    # The test frontend's process holds the daemon's listening socket and three
    # connections; the child none of them but its own.
    assert len(links) <= 12, links


# -- persistent grants (blkif.h feature-persistent) ---------------------------------------
def test_persistent_grants_stay_mapped_until_closed(fresh):
    """With a frontend that says feature-persistent=1 the backend maps each grant once,
    writable whatever the operation, and keeps it until the frontend closes: the same
    gref then serves reads and writes, and cannot be ended before Closed."""
    fe = fresh()
    fe.wait_backend_state(XenbusStateInitWait)
    fe.connect(persistent=True)
    ref = fe.grant_data_page(0)
    assert fe.request(BLKIF_OP_READ, 3, [(ref, 0, 7)]) == BLKIF_RSP_OKAY
    assert bytes(fe.data_view(0)) == fe.data[3 * 512:11 * 512]
    flags = fe.gnttab.flags(ref)
    assert flags & GTF_reading and flags & GTF_writing, "still mapped after the response"
    assert not fe.gnttab.end_access(ref)
    fe.data_view(0)[:512] = b"\xA5" * 512
    assert fe.request(BLKIF_OP_WRITE, 40, [(ref, 0, 0)]) == BLKIF_RSP_OKAY
    other = fe.grant_data_page(1)                  # read it back through another grant
    assert fe.request(BLKIF_OP_READ, 40, [(other, 0, 0)]) == BLKIF_RSP_OKAY
    assert bytes(fe.data_view(1)[:512]) == b"\xA5" * 512
    fe.disconnect()
    for gref in (ref, other):
        assert not fe.gnttab.flags(gref) & (GTF_reading | GTF_writing)
        assert fe.gnttab.end_and_release(gref)


def test_a_persistent_layout_sent_again_reads_each_sector_and_is_still_range_checked(fresh):
    """blkback keeps the checked views of a layout of persistent grants: the same
    segments read whatever sector each request names, a sector past the disk's end
    still fails, and the kept slices go with the grants at Closed."""
    fe = fresh()
    fe.wait_backend_state(XenbusStateInitWait)
    fe.connect(persistent=True)
    ref0, ref1 = fe.grant_data_page(0), fe.grant_data_page(1)
    layout = [(ref0, 0, 7), (ref1, 2, 4)]             # a whole page, then 3 sectors
    for sector in (0, 17, 5, 17):
        assert fe.request(BLKIF_OP_READ, sector, layout) == BLKIF_RSP_OKAY
        assert bytes(fe.data_view(0)) == fe.data[sector * 512:(sector + 8) * 512]
        assert bytes(fe.data_view(1)[2 * 512:5 * 512]) == fe.data[(sector + 8) * 512:(sector + 11) * 512]
    sectors = len(fe.data) // 512
    assert fe.request(BLKIF_OP_READ, sectors - 10, layout) == BLKIF_RSP_ERROR
    assert fe.request(BLKIF_OP_READ, sectors - 11, layout) == BLKIF_RSP_OKAY
    fe.disconnect()
    for ref in (ref0, ref1):
        assert not fe.gnttab.flags(ref) & (GTF_reading | GTF_writing)
        assert fe.gnttab.end_and_release(ref)


def test_persistent_mappings_are_bounded(fresh):
    """At most RING_SIZE * BLKIF_MAX_SEGMENTS_PER_REQUEST (32 * 11) grants stay mapped;
    beyond that a grant is mapped for its request only (blkif.h)."""
    fe = fresh()
    fe.wait_backend_state(XenbusStateInitWait)
    fe.connect(persistent=True)
    limit = fe.ring.nr_ents * 11
    refs = [fe.grant_data_page(i % NR_DATA_PAGES) for i in range(limit + 1)]
    for i, ref in enumerate(refs):
        assert fe.request(BLKIF_OP_READ, i, [(ref, 0, 0)]) == BLKIF_RSP_OKAY
    assert all(fe.gnttab.flags(ref) & GTF_reading for ref in refs[:limit])
    assert fe.gnttab.end_and_release(refs[limit]), "the one past the limit was unmapped"
    fe.disconnect()
    assert all(fe.gnttab.end_and_release(ref) for ref in refs[:limit])


def test_without_feature_persistent_every_grant_is_unmapped_after_its_request(fresh):
    fe = fresh()
    fe.wait_backend_state(XenbusStateInitWait)
    fe.connect()
    ref = fe.grant_data_page(0)
    assert fe.request(BLKIF_OP_READ, 0, [(ref, 0, 7)]) == BLKIF_RSP_OKAY
    assert not fe.gnttab.flags(ref) & (GTF_reading | GTF_writing)
    assert fe.gnttab.end_and_release(ref)
