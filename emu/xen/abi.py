"""Xen public-header ABI for the PV block path, as Python data: constants under the
headers' names, both blkif layouts ("x86_32-abi", "x86_64-abi") as struct.Struct, and the
ring arithmetic of io/ring.h as pure functions over u32 indexes.
tests/emu/test_xen_abi.py checks every number here against the installed C headers.
Over 500 lines on purpose: it mirrors one set of headers, and is checked as one.
"""

from __future__ import annotations

import errno as _errno
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Iterable, NamedTuple, Sequence

# ---------------------------------------------------------------------------
# xen.h
# ---------------------------------------------------------------------------

DOMID_FIRST_RESERVED = 0x7FF0
DOMID_SELF = 0x7FF0
DOMID_IO = 0x7FF1
DOMID_XEN = 0x7FF2
DOMID_COW = 0x7FF3
DOMID_INVALID = 0x7FF4
DOMID_IDLE = 0x7FFF

XEN_PAGE_SIZE = 4096

# ---------------------------------------------------------------------------
# io/protocols.h
# ---------------------------------------------------------------------------

XEN_IO_PROTO_ABI_X86_32 = "x86_32-abi"
XEN_IO_PROTO_ABI_X86_64 = "x86_64-abi"
XEN_IO_PROTO_ABI_ARM = "arm-abi"

# ---------------------------------------------------------------------------
# io/blkif.h
# ---------------------------------------------------------------------------

BLKIF_OP_READ = 0
BLKIF_OP_WRITE = 1
BLKIF_OP_WRITE_BARRIER = 2
BLKIF_OP_FLUSH_DISKCACHE = 3
BLKIF_OP_RESERVED_1 = 4
BLKIF_OP_DISCARD = 5
BLKIF_OP_INDIRECT = 6

BLKIF_DISCARD_SECURE = 1 << 0

BLKIF_MAX_SEGMENTS_PER_REQUEST = 11
BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8

BLKIF_RSP_EOPNOTSUPP = -2
BLKIF_RSP_ERROR = -1
BLKIF_RSP_OKAY = 0

VDISK_CDROM = 0x1
VDISK_REMOVABLE = 0x2
VDISK_READONLY = 0x4

# first_sect/last_sect/sector_number are always 512-byte units, whatever the disk's sector-size.
BLKIF_SECTOR_SIZE = 512
BLKIF_SECTORS_PER_PAGE = XEN_PAGE_SIZE // BLKIF_SECTOR_SIZE

# ---------------------------------------------------------------------------
# io/ring.h
# ---------------------------------------------------------------------------

RING_IDX_MASK = 0xFFFFFFFF

SRING_REQ_PROD = 0
SRING_REQ_EVENT = 4
SRING_RSP_PROD = 8
SRING_RSP_EVENT = 12
SRING_PVT = 16
SRING_PAD = 20
SRING_ENTRIES = 64
SRING_HEADER = struct.Struct("<IIII")


def rd32(x: int) -> int:
    """Round down to a power of two, as ring.h's __RD32 does (0 stays 0)."""
    if x <= 0:
        return 0
    return 1 << (x.bit_length() - 1)


def ring_size(entry_size: int, page_size: int = XEN_PAGE_SIZE) -> int:
    """__RING_SIZE: entries fitting after the 64-byte header, rounded down to 2**n."""
    return rd32((page_size - SRING_ENTRIES) // entry_size)


def ring_entry_offset(index: int, entry_size: int, nr_ents: int) -> int:
    """Byte offset in the shared page of ring slot ``index`` (free-running u32)."""
    return SRING_ENTRIES + (index & (nr_ents - 1)) * entry_size


def sring_init_header() -> bytes:
    """SHARED_RING_INIT: producers 0, both event indexes 1, pvt and pad zero."""
    return SRING_HEADER.pack(0, 1, 0, 1) + bytes(SRING_ENTRIES - SRING_HEADER.size)


def ring_idx(x: int) -> int:
    return x & RING_IDX_MASK


# The helpers below write ring_idx out as "& RING_IDX_MASK" (RING_IDX is a u32): both
# ends call them several times per request, and a call costs more than the mask.

def ring_push_check_notify(new: int, old: int, event: int) -> bool:
    """RING_PUSH_{REQUESTS,RESPONSES}_AND_CHECK_NOTIFY's decision.

    ``old`` is the producer index before publishing, ``new`` after it, ``event`` the
    peer's req_event/rsp_event read AFTER publishing (a full barrier in between).
    """
    return (new - event) & RING_IDX_MASK < (new - old) & RING_IDX_MASK


def ring_unconsumed_responses(rsp_prod: int, rsp_cons: int) -> int:
    return (rsp_prod - rsp_cons) & RING_IDX_MASK


def ring_unconsumed_requests(req_prod: int, req_cons: int, rsp_prod_pvt: int, nr_ents: int) -> int:
    """XEN_RING_NR_UNCONSUMED_REQUESTS: never more than the free response slots."""
    req = (req_prod - req_cons) & RING_IDX_MASK
    rsp = (nr_ents - ((req_cons - rsp_prod_pvt) & RING_IDX_MASK)) & RING_IDX_MASK
    return req if req < rsp else rsp


def ring_free_requests(req_prod_pvt: int, rsp_cons: int, nr_ents: int) -> int:
    return (nr_ents - ((req_prod_pvt - rsp_cons) & RING_IDX_MASK)) & RING_IDX_MASK


def ring_full(req_prod_pvt: int, rsp_cons: int, nr_ents: int) -> bool:
    return ring_free_requests(req_prod_pvt, rsp_cons, nr_ents) == 0


def ring_request_cons_overflow(cons: int, rsp_prod_pvt: int, nr_ents: int) -> bool:
    return (cons - rsp_prod_pvt) & RING_IDX_MASK >= nr_ents


def ring_request_prod_overflow(prod: int, rsp_prod_pvt: int, nr_ents: int) -> bool:
    """A frontend claiming more outstanding requests than slots is broken: halt it."""
    return (prod - rsp_prod_pvt) & RING_IDX_MASK > nr_ents


def ring_response_prod_overflow(prod: int, rsp_cons: int, nr_ents: int) -> bool:
    return (prod - rsp_cons) & RING_IDX_MASK > nr_ents


def ring_final_check_event(cons: int) -> int:
    """Value RING_FINAL_CHECK_FOR_* stores into req_event/rsp_event when idle."""
    return (cons + 1) & RING_IDX_MASK


def ring_final_check_for_responses(read_rsp_prod, write_rsp_event, rsp_cons: int) -> bool:
    """RING_FINAL_CHECK_FOR_RESPONSES over caller-supplied accessors.

    Re-reading the producer after arming rsp_event closes the window where a response
    lands between the first look and the arm (the peer would then not notify).
    """
    if ring_unconsumed_responses(read_rsp_prod(), rsp_cons):
        return True
    write_rsp_event(ring_final_check_event(rsp_cons))
    return bool(ring_unconsumed_responses(read_rsp_prod(), rsp_cons))


def ring_final_check_for_requests(read_req_prod, write_req_event, req_cons: int,
                                  rsp_prod_pvt: int, nr_ents: int) -> bool:
    """RING_FINAL_CHECK_FOR_REQUESTS, same accessor convention as above."""
    if ring_unconsumed_requests(read_req_prod(), req_cons, rsp_prod_pvt, nr_ents):
        return True
    write_req_event(ring_final_check_event(req_cons))
    return bool(ring_unconsumed_requests(read_req_prod(), req_cons, rsp_prod_pvt, nr_ents))


# ---------------------------------------------------------------------------
# blkif layouts, both ABIs
# ---------------------------------------------------------------------------

SEGMENT = struct.Struct("<IBBxx")       # gref, first_sect, last_sect, 2 pad
SEGMENT_SIZE = SEGMENT.size
SEGMENT_OFFSETS = {"gref": 0, "first_sect": 4, "last_sect": 5}

_SEGS = "IBBxx" * BLKIF_MAX_SEGMENTS_PER_REQUEST


class Segment(NamedTuple):
    gref: int
    first_sect: int
    last_sect: int


class BlkifRequest(NamedTuple):
    operation: int
    nr_segments: int
    handle: int
    id: int
    sector_number: int
    # Only the first min(nr_segments, 11) slots; validating nr_segments is the caller's job.
    segments: tuple


class BlkifResponse(NamedTuple):
    id: int
    operation: int
    status: int


class BlkifDiscard(NamedTuple):
    operation: int
    flag: int
    handle: int
    id: int
    sector_number: int
    nr_sectors: int


class BlkifIndirect(NamedTuple):
    operation: int
    indirect_op: int
    nr_segments: int
    id: int
    sector_number: int
    handle: int
    indirect_grefs: tuple


@dataclass(frozen=True)
class BlkifABI:
    """One blkif wire ABI: struct layouts, field offsets and the resulting ring size."""

    name: str
    request: struct.Struct
    response: struct.Struct
    discard: struct.Struct
    indirect: struct.Struct
    request_offsets: dict = field(hash=False, compare=False)
    response_offsets: dict = field(hash=False, compare=False)
    discard_offsets: dict = field(hash=False, compare=False)
    indirect_offsets: dict = field(hash=False, compare=False)

    @property
    def request_size(self) -> int:
        return self.request.size

    @property
    def response_size(self) -> int:
        return self.response.size

    @property
    def entry_size(self) -> int:
        """sizeof(union blkif_sring_entry): the ring stride (discard/indirect are casts of a slot)."""
        return max(self.request.size, self.response.size)

    @property
    def ring_size(self) -> int:
        return ring_size(self.entry_size)

    def entry_offset(self, index: int) -> int:
        return ring_entry_offset(index, self.entry_size, self.ring_size)


BLKIF_X86_64 = BlkifABI(
    name=XEN_IO_PROTO_ABI_X86_64,
    request=struct.Struct("<BBH4xQQ" + _SEGS),
    response=struct.Struct("<QBxh4x"),
    discard=struct.Struct("<BBH4xQQQ"),
    indirect=struct.Struct("<BBH4xQQH2x%dI4x" % BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST),
    request_offsets={"operation": 0, "nr_segments": 1, "handle": 2, "id": 8,
                     "sector_number": 16, "seg": 24},
    response_offsets={"id": 0, "operation": 8, "status": 10},
    discard_offsets={"operation": 0, "flag": 1, "handle": 2, "id": 8,
                     "sector_number": 16, "nr_sectors": 24},
    indirect_offsets={"operation": 0, "indirect_op": 1, "nr_segments": 2, "id": 8,
                      "sector_number": 16, "handle": 24, "indirect_grefs": 28},
)

BLKIF_X86_32 = BlkifABI(
    name=XEN_IO_PROTO_ABI_X86_32,
    request=struct.Struct("<BBHQQ" + _SEGS),
    response=struct.Struct("<QBxh"),
    discard=struct.Struct("<BBHQQQ"),
    indirect=struct.Struct("<BBHQQH2x%dI8x" % BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST),
    request_offsets={"operation": 0, "nr_segments": 1, "handle": 2, "id": 4,
                     "sector_number": 12, "seg": 20},
    response_offsets={"id": 0, "operation": 8, "status": 10},
    discard_offsets={"operation": 0, "flag": 1, "handle": 2, "id": 4,
                     "sector_number": 12, "nr_sectors": 20},
    indirect_offsets={"operation": 0, "indirect_op": 1, "nr_segments": 2, "id": 4,
                      "sector_number": 12, "handle": 20, "indirect_grefs": 24},
)

BLKIF_ABIS = {BLKIF_X86_32.name: BLKIF_X86_32, BLKIF_X86_64.name: BLKIF_X86_64}

# What a frontend that writes no `protocol` key means (blkback assumes native; ours is x86_64).
BLKIF_NATIVE_ABI = BLKIF_X86_64


def get_abi(abi) -> BlkifABI:
    """Accept a BlkifABI or a protocol string ("x86_32-abi"/"x86_64-abi")."""
    if isinstance(abi, BlkifABI):
        return abi
    try:
        return BLKIF_ABIS[abi]
    except KeyError:
        raise ValueError("unknown blkif protocol %r" % (abi,)) from None


def pack_segment(gref: int, first_sect: int, last_sect: int) -> bytes:
    return SEGMENT.pack(gref, first_sect, last_sect)


def unpack_segment(buf, offset: int = 0) -> Segment:
    return Segment(*SEGMENT.unpack_from(buf, offset))


def pack_request(abi, id: int, operation: int, nr_segments: int | None, handle: int,
                 sector_number: int, segments: Iterable[Sequence[int]] = ()) -> bytes:
    """Pack a blkif_request.  ``nr_segments`` None means len(segments); it is
    deliberately not checked against the list so tests can forge bad requests."""
    abi = get_abi(abi)
    segs = [tuple(s) for s in segments]
    if len(segs) > BLKIF_MAX_SEGMENTS_PER_REQUEST:
        raise ValueError("at most %d segments fit in a request" % BLKIF_MAX_SEGMENTS_PER_REQUEST)
    if nr_segments is None:
        nr_segments = len(segs)
    flat = []
    for i in range(BLKIF_MAX_SEGMENTS_PER_REQUEST):
        flat.extend(segs[i] if i < len(segs) else (0, 0, 0))
    return abi.request.pack(operation, nr_segments, handle, id, sector_number, *flat)


def unpack_request(abi, buf, offset: int = 0) -> BlkifRequest:
    abi = get_abi(abi)
    v = abi.request.unpack_from(buf, offset)
    n = min(v[1], BLKIF_MAX_SEGMENTS_PER_REQUEST)
    segs = tuple(Segment(*v[5 + 3 * i:8 + 3 * i]) for i in range(n))
    return BlkifRequest(v[0], v[1], v[2], v[3], v[4], segs)


def pack_response(abi, id: int, operation: int, status: int) -> bytes:
    return get_abi(abi).response.pack(id, operation, status)


def unpack_response(abi, buf, offset: int = 0) -> BlkifResponse:
    return BlkifResponse(*get_abi(abi).response.unpack_from(buf, offset))


def pack_discard(abi, id: int, flag: int, handle: int, sector_number: int, nr_sectors: int) -> bytes:
    return get_abi(abi).discard.pack(BLKIF_OP_DISCARD, flag, handle, id, sector_number, nr_sectors)


def unpack_discard(abi, buf, offset: int = 0) -> BlkifDiscard:
    return BlkifDiscard(*get_abi(abi).discard.unpack_from(buf, offset))


def pack_indirect(abi, id: int, indirect_op: int, nr_segments: int, handle: int,
                  sector_number: int, indirect_grefs: Sequence[int]) -> bytes:
    grefs = list(indirect_grefs)
    if len(grefs) > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST:
        raise ValueError("too many indirect pages")
    grefs += [0] * (BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST - len(grefs))
    return get_abi(abi).indirect.pack(BLKIF_OP_INDIRECT, indirect_op, nr_segments, id,
                                      sector_number, handle, *grefs)


def unpack_indirect(abi, buf, offset: int = 0) -> BlkifIndirect:
    v = get_abi(abi).indirect.unpack_from(buf, offset)
    return BlkifIndirect(v[0], v[1], v[2], v[3], v[4], v[5], tuple(v[6:]))


def peek_operation(buf, offset: int = 0) -> int:
    """The operation byte sits at offset 0 in every request variant of both ABIs."""
    return buf[offset]


# ---------------------------------------------------------------------------
# grant_table.h (v1)
# ---------------------------------------------------------------------------

GRANT_ENTRY_V1 = struct.Struct("<HHI")     # flags, domid, frame
GRANT_ENTRY_V1_SIZE = GRANT_ENTRY_V1.size
GRANT_ENTRY_V1_OFFSETS = {"flags": 0, "domid": 2, "frame": 4}
GRANT_ENTRIES_PER_PAGE_V1 = XEN_PAGE_SIZE // GRANT_ENTRY_V1_SIZE

GNTTAB_NR_RESERVED_ENTRIES = 8
NR_RESERVED_ENTRIES = GNTTAB_NR_RESERVED_ENTRIES   # the name Linux/Mini-OS use
GNTTAB_RESERVED_CONSOLE = 0
GNTTAB_RESERVED_XENSTORE = 1

GTF_invalid = 0 << 0
GTF_permit_access = 1 << 0
GTF_accept_transfer = 2 << 0
GTF_transitive = 3 << 0
GTF_type_mask = 3 << 0

_GTF_readonly = 2
GTF_readonly = 1 << _GTF_readonly
_GTF_reading = 3
GTF_reading = 1 << _GTF_reading
_GTF_writing = 4
GTF_writing = 1 << _GTF_writing
_GTF_PWT = 5
GTF_PWT = 1 << _GTF_PWT
_GTF_PCD = 6
GTF_PCD = 1 << _GTF_PCD
_GTF_PAT = 7
GTF_PAT = 1 << _GTF_PAT
_GTF_sub_page = 8
GTF_sub_page = 1 << _GTF_sub_page

_GTF_transfer_committed = 2
GTF_transfer_committed = 1 << _GTF_transfer_committed
_GTF_transfer_completed = 3
GTF_transfer_completed = 1 << _GTF_transfer_completed

GNTST_okay = 0
GNTST_general_error = -1
GNTST_bad_domain = -2
GNTST_bad_gntref = -3
GNTST_bad_handle = -4
GNTST_bad_virt_addr = -5
GNTST_bad_dev_addr = -6
GNTST_no_device_space = -7
GNTST_permission_denied = -8
GNTST_bad_page = -9
GNTST_bad_copy_arg = -10
GNTST_address_too_big = -11
GNTST_eagain = -12
GNTST_no_space = -13


class GrantEntryV1(NamedTuple):
    flags: int
    domid: int
    frame: int


def pack_grant_entry_v1(flags: int, domid: int, frame: int) -> bytes:
    return GRANT_ENTRY_V1.pack(flags, domid, frame)


def unpack_grant_entry_v1(buf, offset: int = 0) -> GrantEntryV1:
    return GrantEntryV1(*GRANT_ENTRY_V1.unpack_from(buf, offset))


# ---------------------------------------------------------------------------
# io/xenbus.h
# ---------------------------------------------------------------------------

class XenbusState(IntEnum):
    Unknown = 0
    Initialising = 1
    InitWait = 2
    Initialised = 3
    Connected = 4
    Closing = 5
    Closed = 6
    Reconfiguring = 7
    Reconfigured = 8


XenbusStateUnknown = XenbusState.Unknown
XenbusStateInitialising = XenbusState.Initialising
XenbusStateInitWait = XenbusState.InitWait
XenbusStateInitialised = XenbusState.Initialised
XenbusStateConnected = XenbusState.Connected
XenbusStateClosing = XenbusState.Closing
XenbusStateClosed = XenbusState.Closed
XenbusStateReconfiguring = XenbusState.Reconfiguring
XenbusStateReconfigured = XenbusState.Reconfigured

# ---------------------------------------------------------------------------
# io/xs_wire.h
# ---------------------------------------------------------------------------

XS_CONTROL = 0
XS_DEBUG = XS_CONTROL
XS_DIRECTORY = 1
XS_READ = 2
XS_GET_PERMS = 3
XS_WATCH = 4
XS_UNWATCH = 5
XS_TRANSACTION_START = 6
XS_TRANSACTION_END = 7
XS_INTRODUCE = 8
XS_RELEASE = 9
XS_GET_DOMAIN_PATH = 10
XS_WRITE = 11
XS_MKDIR = 12
XS_RM = 13
XS_SET_PERMS = 14
XS_WATCH_EVENT = 15
XS_ERROR = 16
XS_IS_DOMAIN_INTRODUCED = 17
XS_RESUME = 18
XS_SET_TARGET = 19
# 20 was XS_RESTRICT, removed upstream; the slot stays unused.
XS_RESET_WATCHES = XS_SET_TARGET + 2
XS_DIRECTORY_PART = 22
XS_TYPE_COUNT = 23
XS_INVALID = 0xFFFF

XS_TYPE_NAMES = {
    XS_CONTROL: "CONTROL", XS_DIRECTORY: "DIRECTORY", XS_READ: "READ",
    XS_GET_PERMS: "GET_PERMS", XS_WATCH: "WATCH", XS_UNWATCH: "UNWATCH",
    XS_TRANSACTION_START: "TRANSACTION_START", XS_TRANSACTION_END: "TRANSACTION_END",
    XS_INTRODUCE: "INTRODUCE", XS_RELEASE: "RELEASE", XS_GET_DOMAIN_PATH: "GET_DOMAIN_PATH",
    XS_WRITE: "WRITE", XS_MKDIR: "MKDIR", XS_RM: "RM", XS_SET_PERMS: "SET_PERMS",
    XS_WATCH_EVENT: "WATCH_EVENT", XS_ERROR: "ERROR",
    XS_IS_DOMAIN_INTRODUCED: "IS_DOMAIN_INTRODUCED", XS_RESUME: "RESUME",
    XS_SET_TARGET: "SET_TARGET", XS_RESET_WATCHES: "RESET_WATCHES",
    XS_DIRECTORY_PART: "DIRECTORY_PART",
}

XS_WRITE_NONE = "NONE"
XS_WRITE_CREATE = "CREATE"
XS_WRITE_CREATE_EXCL = "CREATE|EXCL"

# Errors travel as their names; the order is the header's table order.
XSD_ERRORS = (
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
    "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
)
XSD_ERRNO = {name: getattr(_errno, name) for name in XSD_ERRORS}
XSD_ERRNAME = {num: name for name, num in XSD_ERRNO.items()}

XSD_SOCKMSG = struct.Struct("<IIII")    # type, req_id, tx_id, len
XSD_SOCKMSG_SIZE = XSD_SOCKMSG.size
XSD_SOCKMSG_OFFSETS = {"type": 0, "req_id": 4, "tx_id": 8, "len": 12}

XS_WATCH_PATH = 0
XS_WATCH_TOKEN = 1

XENSTORE_RING_SIZE = 1024
XENSTORE_PAYLOAD_MAX = 4096
XENSTORE_ABS_PATH_MAX = 3072
XENSTORE_REL_PATH_MAX = 2048

XENSTORE_SERVER_FEATURE_RECONNECTION = 1
XENSTORE_SERVER_FEATURE_ERROR = 2
XENSTORE_CONNECTED = 0
XENSTORE_RECONNECT = 1
XENSTORE_ERROR_NONE = 0
XENSTORE_ERROR_COMM = 1
XENSTORE_ERROR_RINGIDX = 2
XENSTORE_ERROR_PROTO = 3
