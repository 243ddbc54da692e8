"""Checks emu/xen/abi.py against Xen's public headers (Debian libxen-dev).

tests/xen_abi/probe.c is compiled with the host gcc and prints sizes, offsets,
constants and the results of ring.h's notification macros; every value is compared
with the Python definitions.  Skips (with the reason) when gcc or the headers are
missing; CI installs libxen-dev.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pvboot.emu.xen import abi

PROBE_SRC = Path(__file__).resolve().parents[1] / "xen_abi" / "probe.c"
HEADER = "xen/io/blkif.h"


def _compile_probe(outdir: Path) -> Path:
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        pytest.skip("no C compiler (%s) to build the Xen ABI probe" % cc)
    exe = outdir / "xen_abi_probe"
    proc = subprocess.run([cc, "-std=gnu11", "-Wall", "-O0", "-o", str(exe), str(PROBE_SRC)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        if "xen/" in proc.stderr and "No such file" in proc.stderr:
            pytest.skip("Xen public headers missing (%s); install Debian's libxen-dev" % HEADER)
        pytest.fail("probe did not compile:\n" + proc.stderr)
    return exe


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    exe = _compile_probe(tmp_path_factory.mktemp("xen_abi"))
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=True).stdout
    values: dict = {}
    for line in out.splitlines():
        key, _, rest = line.partition(" ")
        assert key not in values, "probe printed %s twice" % key
        values[key] = rest
    return values


def _int(probe, key):
    assert key in probe, "probe did not print %s" % key
    return int(probe[key].split()[0])


# Constants the probe prints under their header names and abi.py defines under the same.
INT_CONSTANTS = """
BLKIF_OP_READ BLKIF_OP_WRITE BLKIF_OP_WRITE_BARRIER BLKIF_OP_FLUSH_DISKCACHE
BLKIF_OP_RESERVED_1 BLKIF_OP_DISCARD BLKIF_OP_INDIRECT BLKIF_DISCARD_SECURE
BLKIF_MAX_SEGMENTS_PER_REQUEST BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST
BLKIF_RSP_EOPNOTSUPP BLKIF_RSP_ERROR BLKIF_RSP_OKAY VDISK_CDROM VDISK_REMOVABLE VDISK_READONLY
GNTTAB_NR_RESERVED_ENTRIES GNTTAB_RESERVED_CONSOLE GNTTAB_RESERVED_XENSTORE
GTF_invalid GTF_permit_access GTF_accept_transfer GTF_transitive GTF_type_mask
_GTF_readonly GTF_readonly _GTF_reading GTF_reading _GTF_writing GTF_writing _GTF_PWT GTF_PWT
_GTF_PCD GTF_PCD _GTF_PAT GTF_PAT _GTF_sub_page GTF_sub_page
_GTF_transfer_committed GTF_transfer_committed _GTF_transfer_completed GTF_transfer_completed
GNTST_okay GNTST_general_error GNTST_bad_domain GNTST_bad_gntref GNTST_bad_handle
GNTST_bad_virt_addr GNTST_bad_dev_addr GNTST_no_device_space GNTST_permission_denied
GNTST_bad_page GNTST_bad_copy_arg GNTST_address_too_big GNTST_eagain GNTST_no_space
DOMID_FIRST_RESERVED DOMID_SELF DOMID_IO DOMID_XEN DOMID_COW DOMID_INVALID DOMID_IDLE
XenbusStateUnknown XenbusStateInitialising XenbusStateInitWait XenbusStateInitialised
XenbusStateConnected XenbusStateClosing XenbusStateClosed XenbusStateReconfiguring
XenbusStateReconfigured
XS_CONTROL XS_DEBUG XS_DIRECTORY XS_READ XS_GET_PERMS XS_WATCH XS_UNWATCH
XS_TRANSACTION_START XS_TRANSACTION_END XS_INTRODUCE XS_RELEASE XS_GET_DOMAIN_PATH XS_WRITE
XS_MKDIR XS_RM XS_SET_PERMS XS_WATCH_EVENT XS_ERROR XS_IS_DOMAIN_INTRODUCED XS_RESUME
XS_SET_TARGET XS_RESET_WATCHES XS_DIRECTORY_PART XS_TYPE_COUNT XS_INVALID
XS_WATCH_PATH XS_WATCH_TOKEN XENSTORE_RING_SIZE XENSTORE_PAYLOAD_MAX XENSTORE_ABS_PATH_MAX
XENSTORE_REL_PATH_MAX XENSTORE_SERVER_FEATURE_RECONNECTION XENSTORE_SERVER_FEATURE_ERROR
XENSTORE_CONNECTED XENSTORE_RECONNECT XENSTORE_ERROR_NONE XENSTORE_ERROR_COMM
XENSTORE_ERROR_RINGIDX XENSTORE_ERROR_PROTO
""".split()

STR_CONSTANTS = """
XEN_IO_PROTO_ABI_X86_32 XEN_IO_PROTO_ABI_X86_64 XEN_IO_PROTO_ABI_ARM
XS_WRITE_NONE XS_WRITE_CREATE XS_WRITE_CREATE_EXCL
""".split()


@pytest.mark.parametrize("name", INT_CONSTANTS)
def test_int_constant(probe, name):
    assert getattr(abi, name) == _int(probe, name), name


@pytest.mark.parametrize("name", STR_CONSTANTS)
def test_str_constant(probe, name):
    assert getattr(abi, name) == probe[name]


def test_every_probed_constant_is_checked(probe):
    plain = {k for k in probe if ":" not in k and k != "XEN_IO_PROTO_ABI_NATIVE"}
    assert plain == set(INT_CONSTANTS) | set(STR_CONSTANTS)


def test_short_aliases():
    assert abi.NR_RESERVED_ENTRIES == abi.GNTTAB_NR_RESERVED_ENTRIES
    assert [int(s) for s in abi.XenbusState] == list(range(9))
    for num, name in abi.XS_TYPE_NAMES.items():
        assert getattr(abi, "XS_" + name) == num


def _check_layout(probe, cname, struct_obj, offsets):
    assert struct_obj.size == _int(probe, "sizeof:" + cname), cname
    for fld, off in offsets.items():
        assert off == _int(probe, "offsetof:%s:%s" % (cname, fld)), (cname, fld)
    # and no probed field of this struct is left unchecked
    probed = {k.split(":")[2] for k in probe if k.startswith("offsetof:%s:" % cname)}
    assert probed <= set(offsets) | {"pad"}, probed - set(offsets)


@pytest.mark.parametrize("abi_obj, tag", [(abi.BLKIF_X86_32, "x86_32"), (abi.BLKIF_X86_64, "x86_64")])
def test_blkif_layouts(probe, abi_obj, tag):
    _check_layout(probe, "blkif_%s_request" % tag, abi_obj.request, abi_obj.request_offsets)
    _check_layout(probe, "blkif_%s_response" % tag, abi_obj.response, abi_obj.response_offsets)
    _check_layout(probe, "blkif_%s_request_discard" % tag, abi_obj.discard, abi_obj.discard_offsets)
    _check_layout(probe, "blkif_%s_request_indirect" % tag, abi_obj.indirect,
                  abi_obj.indirect_offsets)
    assert abi_obj.entry_size == _int(probe, "sizeof:blkif_%s_sring_entry" % tag)
    assert abi_obj.ring_size == _int(probe, "ring_size:blkif_%s" % tag)
    assert abi_obj.ring_size == _int(probe, "const_ring_size:blkif_%s" % tag)
    assert _int(probe, "offsetof:blkif_%s_sring:ring" % tag) == abi.SRING_ENTRIES
    assert abi_obj.ring_size == 32


def test_native_header_structs_match_native_abi(probe):
    native = abi.get_abi(probe["XEN_IO_PROTO_ABI_NATIVE"])
    _check_layout(probe, "blkif_request", native.request, native.request_offsets)
    _check_layout(probe, "blkif_response", native.response, native.response_offsets)
    _check_layout(probe, "blkif_request_discard", native.discard, native.discard_offsets)
    _check_layout(probe, "blkif_request_indirect", native.indirect, native.indirect_offsets)
    assert native.ring_size == _int(probe, "ring_size:blkif")


def test_segment_layout(probe):
    _check_layout(probe, "blkif_request_segment", abi.SEGMENT, abi.SEGMENT_OFFSETS)


def test_shared_ring_header(probe):
    assert _int(probe, "offsetof:blkif_sring:req_prod") == abi.SRING_REQ_PROD
    assert _int(probe, "offsetof:blkif_sring:req_event") == abi.SRING_REQ_EVENT
    assert _int(probe, "offsetof:blkif_sring:rsp_prod") == abi.SRING_RSP_PROD
    assert _int(probe, "offsetof:blkif_sring:rsp_event") == abi.SRING_RSP_EVENT
    assert _int(probe, "offsetof:blkif_sring:pvt") == abi.SRING_PVT
    assert _int(probe, "offsetof:blkif_sring:__pad") == abi.SRING_PAD
    assert _int(probe, "offsetof:blkif_sring:ring") == abi.SRING_ENTRIES
    hdr = abi.SRING_HEADER.unpack_from(abi.sring_init_header())
    assert hdr == tuple(_int(probe, "init:" + f) for f in
                        ("req_prod", "req_event", "rsp_prod", "rsp_event"))
    assert len(abi.sring_init_header()) == abi.SRING_ENTRIES


def test_ring_size_formula():
    assert abi.ring_size(112) == 32 and abi.ring_size(108) == 32
    assert abi.ring_size(16) == 128      # (4096-64)/16 = 252 -> 128
    assert abi.ring_size(4032) == 1 and abi.ring_size(4033) == 0
    assert abi.BLKIF_X86_64.entry_offset(33) == 64 + 112
    assert abi.BLKIF_X86_32.entry_offset(31) == 64 + 31 * 108


def test_grant_entry_layout(probe):
    _check_layout(probe, "grant_entry_v1", abi.GRANT_ENTRY_V1, abi.GRANT_ENTRY_V1_OFFSETS)
    raw = abi.pack_grant_entry_v1(abi.GTF_permit_access | abi.GTF_readonly, 0x1234, 0xDEADBEEF)
    assert raw[0:2] == (5).to_bytes(2, "little")
    assert raw[2:4] == (0x1234).to_bytes(2, "little")
    assert raw[4:8] == (0xDEADBEEF).to_bytes(4, "little")
    assert abi.unpack_grant_entry_v1(raw) == (5, 0x1234, 0xDEADBEEF)


def test_xsd_sockmsg_layout(probe):
    _check_layout(probe, "xsd_sockmsg", abi.XSD_SOCKMSG, abi.XSD_SOCKMSG_OFFSETS)


def test_xsd_errors_table(probe):
    count = _int(probe, "xsd_errors:count")
    assert count == len(abi.XSD_ERRORS)
    for i in range(count):
        name, num = probe["xsd_errors:%d" % i].split()
        assert abi.XSD_ERRORS[i] == name
        assert abi.XSD_ERRNO[name] == int(num)


def _field(raw, off, size, signed=False):
    return int.from_bytes(raw[off:off + size], "little", signed=signed)


@pytest.mark.parametrize("abi_obj", [abi.BLKIF_X86_32, abi.BLKIF_X86_64])
def test_pack_request_places_fields_at_header_offsets(abi_obj):
    segs = [(0x1000 + i, i % 8, 7) for i in range(abi.BLKIF_MAX_SEGMENTS_PER_REQUEST)]
    raw = abi.pack_request(abi_obj.name, 0x0123456789ABCDEF, abi.BLKIF_OP_WRITE, None, 0x51,
                           0x1122334455667788, segs)
    o = abi_obj.request_offsets
    assert len(raw) == abi_obj.request_size
    assert raw[o["operation"]] == abi.BLKIF_OP_WRITE
    assert raw[o["nr_segments"]] == 11
    assert _field(raw, o["handle"], 2) == 0x51
    assert _field(raw, o["id"], 8) == 0x0123456789ABCDEF
    assert _field(raw, o["sector_number"], 8) == 0x1122334455667788
    for i, (gref, first, last) in enumerate(segs):
        base = o["seg"] + i * abi.SEGMENT_SIZE
        assert _field(raw, base, 4) == gref
        assert raw[base + 4] == first and raw[base + 5] == last
    req = abi.unpack_request(abi_obj, raw)
    assert req.segments == tuple(abi.Segment(*s) for s in segs)
    assert (req.operation, req.nr_segments, req.handle, req.id, req.sector_number) == \
        (abi.BLKIF_OP_WRITE, 11, 0x51, 0x0123456789ABCDEF, 0x1122334455667788)
    # a forged nr_segments is carried as is; unpack clips the segment list only
    bad = abi.unpack_request(abi_obj, abi.pack_request(abi_obj, 1, 0, 200, 0, 0, segs[:2]))
    assert bad.nr_segments == 200 and len(bad.segments) == 11


@pytest.mark.parametrize("abi_obj", [abi.BLKIF_X86_32, abi.BLKIF_X86_64])
def test_pack_response_and_variants(abi_obj):
    raw = abi.pack_response(abi_obj, 0xFEDCBA9876543210, abi.BLKIF_OP_READ, abi.BLKIF_RSP_EOPNOTSUPP)
    o = abi_obj.response_offsets
    assert len(raw) == abi_obj.response_size
    assert _field(raw, o["id"], 8) == 0xFEDCBA9876543210
    assert raw[o["operation"]] == 0
    assert _field(raw, o["status"], 2, signed=True) == -2
    assert abi.unpack_response(abi_obj, raw) == (0xFEDCBA9876543210, 0, -2)

    d = abi.pack_discard(abi_obj, 7, abi.BLKIF_DISCARD_SECURE, 3, 100, 2000)
    assert abi.peek_operation(d) == abi.BLKIF_OP_DISCARD
    assert _field(d, abi_obj.discard_offsets["nr_sectors"], 8) == 2000
    assert abi.unpack_discard(abi_obj, d) == (abi.BLKIF_OP_DISCARD, 1, 3, 7, 100, 2000)

    ind = abi.pack_indirect(abi_obj, 9, abi.BLKIF_OP_READ, 300, 4, 55, [11, 12])
    assert _field(ind, abi_obj.indirect_offsets["indirect_grefs"] + 4, 4) == 12
    assert _field(ind, abi_obj.indirect_offsets["handle"], 2) == 4
    u = abi.unpack_indirect(abi_obj, ind)
    assert (u.operation, u.indirect_op, u.nr_segments, u.id, u.sector_number, u.handle) == \
        (abi.BLKIF_OP_INDIRECT, 0, 300, 9, 55, 4)
    assert u.indirect_grefs[:3] == (11, 12, 0)


def test_get_abi_rejects_unknown():
    with pytest.raises(ValueError):
        abi.get_abi("arm-abi")


def _probe_rows(probe, prefix):
    for key, val in probe.items():
        if key.startswith(prefix + ":"):
            yield [int(x) for x in key.split(":")[1:]], [int(x) for x in val.split()]


def test_push_notify_matches_ring_h(probe):
    rows = list(_probe_rows(probe, "notify"))
    assert len(rows) > 1000
    for (old, new, ev), (notify,) in rows:
        assert abi.ring_push_check_notify(new, old, ev) == bool(notify), (old, new, ev)


def test_final_check_for_responses_matches_ring_h(probe):
    rows = list(_probe_rows(probe, "final_rsp"))
    assert rows
    for (prod, cons), (work, event_after) in rows:
        page = {"rsp_event": 12345}
        got = abi.ring_final_check_for_responses(lambda: prod,
                                                 lambda v: page.__setitem__("rsp_event", v), cons)
        assert got == bool(work) and page["rsp_event"] == event_after, (prod, cons)


def test_request_side_math_matches_ring_h(probe):
    rows = dict((tuple(k), v) for k, v in _probe_rows(probe, "unconsumed_req"))
    finals = dict((tuple(k), v) for k, v in _probe_rows(probe, "final_req"))
    assert rows and finals.keys() == rows.keys()
    for (prod, cons, pvt), (unconsumed, prod_ovf, cons_ovf) in rows.items():
        assert abi.ring_unconsumed_requests(prod, cons, pvt, 32) == unconsumed
        assert abi.ring_request_prod_overflow(prod, pvt, 32) == bool(prod_ovf)
        assert abi.ring_request_cons_overflow(cons, pvt, 32) == bool(cons_ovf)
        work, event_after = finals[(prod, cons, pvt)]
        page = {"req_event": 12345}
        got = abi.ring_final_check_for_requests(lambda: prod,
                                                lambda v: page.__setitem__("req_event", v),
                                                cons, pvt, 32)
        assert got == bool(work) and page["req_event"] == event_after


def test_front_ring_helpers():
    assert abi.ring_free_requests(5, 5, 32) == 32
    assert abi.ring_full(37, 5, 32)
    assert abi.ring_free_requests(2, 0xFFFFFFF0, 32) == 14    # across the u32 wrap
    assert abi.ring_unconsumed_responses(1, 0xFFFFFFFF) == 2
    assert not abi.ring_response_prod_overflow(32, 0, 32)
    assert abi.ring_response_prod_overflow(33, 0, 32)


@pytest.mark.parametrize("protocol", sorted(abi.BLKIF_ABIS))
def test_request_packed_beforehand_is_the_same_request(protocol):
    """FrontRing.put_request_from (a request packed once, id and sector filled in per
    use: the direct path with persistent grants) writes what put_request writes."""
    from pvboot.emu.xen.ring import BackRing, FrontRing
    pages = [memoryview(bytearray(abi.XEN_PAGE_SIZE)) for _ in range(2)]
    rings = [FrontRing(page, protocol) for page in pages]
    segments = [(70 + i, 0, 7) for i in range(11)]
    packed = abi.pack_request(protocol, 0, abi.BLKIF_OP_READ, None, 0, 0, segments)
    rings[0].put_request(0xDEAD_BEEF_0001, abi.BLKIF_OP_READ, 1 << 40, segments)
    rings[1].put_request_from(packed, 0xDEAD_BEEF_0001, 1 << 40)
    for ring in rings:
        ring.push_requests()
    assert bytes(pages[0]) == bytes(pages[1])
    request = abi.unpack_request(protocol, BackRing(pages[1], protocol).get_request())
    assert (request.id, request.sector_number, request.segments[10]) == (0xDEAD_BEEF_0001, 1 << 40, (80, 0, 7))
