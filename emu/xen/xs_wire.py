"""The xenstore wire format (io/xs_wire.h): message framing and payload helpers.

A message is a 16-byte little-endian header (type, req_id, tx_id, len) and ``len``
payload bytes of NUL-separated strings; errors are XS_ERROR replies carrying the errno
name.  Shared by the daemon (xenstored/) and the client (xsclient.py); no I/O here.
"""

from __future__ import annotations

import re
from typing import Iterator, List, NamedTuple, Optional, Sequence, Union

from .abi import (XENSTORE_PAYLOAD_MAX, XS_ERROR, XS_TYPE_NAMES, XS_WATCH_EVENT, XSD_ERRNO,
                  XSD_SOCKMSG)

HEADER = XSD_SOCKMSG
HEADER_SIZE = HEADER.size

StrOrBytes = Union[str, bytes]


class Message(NamedTuple):
    type: int
    req_id: int
    tx_id: int
    payload: bytes

    @property
    def type_name(self) -> str:
        return XS_TYPE_NAMES.get(self.type, "type%d" % self.type)

    def encode(self) -> bytes:
        return encode(self.type, self.req_id, self.tx_id, self.payload)


def to_bytes(s: StrOrBytes) -> bytes:
    if isinstance(s, str):
        return s.encode("utf-8", "surrogateescape")
    return bytes(s)


def to_str(b: bytes) -> str:
    # surrogateescape: values are opaque bytes and must survive a round trip.
    return b.decode("utf-8", "surrogateescape")


def encode(type_: int, req_id: int, tx_id: int, payload: bytes = b"", *,
           check: bool = True) -> bytes:
    """One framed message.  check=False lets tests forge oversized ones."""
    payload = bytes(payload)
    if check and len(payload) > XENSTORE_PAYLOAD_MAX:
        raise ValueError("xenstore payload of %d bytes exceeds %d" % (len(payload), XENSTORE_PAYLOAD_MAX))
    return HEADER.pack(type_, req_id & 0xFFFFFFFF, tx_id & 0xFFFFFFFF, len(payload)) + payload


def decode_header(buf, offset: int = 0):
    """(type, req_id, tx_id, len) from the first 16 bytes at ``offset``."""
    return HEADER.unpack_from(buf, offset)


class Decoder:
    """Incremental decoder: feed() returns the complete messages seen so far.

    A header announcing more than XENSTORE_PAYLOAD_MAX sets ``error`` and stops it for
    good (the stream cannot be resynchronised); ``pending`` counts buffered bytes.
    """

    def __init__(self, max_payload: int = XENSTORE_PAYLOAD_MAX):
        self._buf = bytearray()
        self._max = max_payload
        self.error: Optional[str] = None

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> List[Message]:
        if self.error:
            return []
        self._buf += data
        out: List[Message] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= HEADER_SIZE:
            type_, req_id, tx_id, length = HEADER.unpack_from(buf, pos)
            if length > self._max:
                self.error = "message announces %d payload bytes (max %d)" % (length, self._max)
                break
            end = pos + HEADER_SIZE + length
            if len(buf) < end:
                break
            out.append(Message(type_, req_id, tx_id, bytes(buf[pos + HEADER_SIZE:end])))
            pos = end
        if pos:
            del buf[:pos]
        return out


class XenstoreError(Exception):
    """A request answered with XS_ERROR; ``errname`` is the xsd_errors name ("ENOENT")."""

    def __init__(self, errname: str, detail: str = ""):
        self.errname = errname
        self.errno = XSD_ERRNO.get(errname, 0)
        super().__init__("%s: %s" % (errname, detail) if detail else errname)


class XenstoreTimeout(XenstoreError, TimeoutError):
    """No reply (or watch event) arrived in time."""

    def __init__(self, what: str, timeout: float):
        XenstoreError.__init__(self, "ETIMEDOUT", "%s: nothing within %.3gs" % (what, timeout))


class XenstoreClosed(XenstoreError, ConnectionError):
    """The daemon closed the connection (or it broke)."""

    def __init__(self, detail: str = "connection closed"):
        XenstoreError.__init__(self, "EIO", detail)


# ---------------------------------------------------------------------------
# payload helpers
# ---------------------------------------------------------------------------

def join(*parts: StrOrBytes, trailing_nul: bool = True) -> bytes:
    """"a", "b" -> b"a\\0b\\0" (or b"a\\0b" without the trailing NUL)."""
    body = b"\0".join(to_bytes(p) for p in parts)
    return body + b"\0" if trailing_nul else body


def one_arg(s: StrOrBytes) -> bytes:
    """Single-string payload as libxenstore sends it: the string plus its NUL."""
    return to_bytes(s) + b"\0"


def split_strings(payload: bytes) -> List[bytes]:
    """NUL-terminated strings in a payload; a final unterminated tail is kept too."""
    if not payload:
        return []
    parts = payload.split(b"\0")
    if parts[-1] == b"":
        parts.pop()
    return parts


def request_strings(payload: bytes) -> List[bytes]:
    """The NUL-terminated strings of a request (C get_strings drops an unterminated tail)."""
    return payload.split(b"\0")[:-1]


def request_one_arg(payload: bytes) -> bytes:
    """The single argument of a request: exactly one NUL, at the end, else EINVAL."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        raise XenstoreError("EINVAL")
    return payload[:-1]


def c_atoi(raw: bytes) -> int:
    """C atoi(): leading whitespace, optional sign, digits; anything else is 0."""
    m = re.match(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)", raw)
    return int(m.group(1)) if m else 0


def count_strings(payload: bytes) -> int:
    """What xenstored's get_strings counts: the number of NULs."""
    return payload.count(b"\0")


def write_payload(path: StrOrBytes, value: StrOrBytes) -> bytes:
    """XS_WRITE: "path\\0value", no NUL after the value (it may be empty)."""
    return to_bytes(path) + b"\0" + to_bytes(value)


def error_payload(name: str) -> bytes:
    if name not in XSD_ERRNO:
        raise ValueError("%r is not in xsd_errors" % (name,))
    return name.encode("ascii") + b"\0"


def error_message(req_id: int, tx_id: int, name: str) -> bytes:
    return encode(XS_ERROR, req_id, tx_id, error_payload(name))


def parse_error(payload: bytes) -> str:
    """Errno name of an XS_ERROR payload ("ENOENT\\0" -> "ENOENT")."""
    return to_str(payload.split(b"\0", 1)[0])


def watch_event_payload(path: StrOrBytes, token: StrOrBytes) -> bytes:
    return join(path, token)


def parse_watch_event(payload: bytes):
    """(path, token) as str from a WATCH_EVENT payload "path\\0token\\0"."""
    parts = payload.split(b"\0")
    if len(parts) < 2:
        raise ValueError("malformed watch event %r" % (payload,))
    return to_str(parts[0]), to_str(parts[1])


def watch_event(path: StrOrBytes, token: StrOrBytes) -> bytes:
    return encode(XS_WATCH_EVENT, 0, 0, watch_event_payload(path, token))


def ack_payload() -> bytes:
    return b"OK\0"


def iter_messages(data: bytes) -> Iterator[Message]:
    """All complete messages in ``data`` (convenience for tests)."""
    yield from Decoder().feed(data)


def parse_perms(strings: Sequence[StrOrBytes]) -> List[tuple]:
    """["b0", "r1"] -> [(0, "b"), (1, "r")], with the checks xenstored applies.

    The id goes through C strtol with base 0 (so "0x10" and "010" are accepted).
    """
    out = []
    for s in strings:
        s = to_str(to_bytes(s))
        if not s or s[0] not in "rwbn":
            raise ValueError("bad permission %r" % (s,))
        out.append((_strtol0(s[1:]), s[0]))
    return out


def format_perms(perms) -> bytes:
    return b"".join(("%s%d" % (p, d)).encode("ascii") + b"\0" for d, p in perms)


# C strtol(base 0) syntax, whole string: "17", "0x11", "021" (octal), optional sign.
_STRTOL0 = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")


def _strtol0(text: str) -> int:
    m = _STRTOL0.match(text)
    if not m:
        raise ValueError("bad number %r" % (text,))
    v = int(m.group(2), 0) if not (m.group(2).startswith("0") and m.group(2)[1:2].isdigit()) \
        else int(m.group(2), 8)
    return -v if m.group(1) == "-" else v
