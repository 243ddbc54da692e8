"""A `pvboot serve` request as the server reads it (tools/serve_client.py writes it):
framing, descriptors and every field checked, before anything is forked for it.
"""
import array
import codecs
import os
import resource
import socket

from pvboot.tools import serve_client
from pvboot.tools.serve_client import MAX_REQUEST_BYTES


def code_fingerprint(package_dir):
    """(path, mtime, size) of every file pvboot runs from: a changed file makes the
    server's loaded code stale."""
    entries = []
    for root, dirs, files in os.walk(package_dir, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".bin")):
                path = os.path.join(root, name)
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                entries.append((path, info.st_mtime_ns, info.st_size))
    return tuple(entries)


class BadRequest(Exception):
    pass


def parse_request(body):
    """The client's request (tools/serve_client.encode_request), every field checked."""
    fields = [os.fsdecode(f) for f in body.split(b"\0")]
    position = 0

    def take(count=1):
        nonlocal position
        if position + count > len(fields):
            raise BadRequest("truncated request")
        position += count
        return fields[position - count:position]

    def number(text, what, low, high, base=10):
        try:
            value = int(text, base)
        except ValueError:
            raise BadRequest(f"{what}: not a number") from None
        if not low <= value <= high:
            raise BadRequest(f"{what}: out of range")
        return value

    tag, python, version, package, argv0, cwd, umask = take(7)
    if tag != serve_client.TAG:
        raise BadRequest("another protocol")
    request = {"python": python, "version": version, "package": package, "argv0": argv0,
               "cwd": cwd, "umask": number(umask, "umask", 0, 0o777, 8)}
    request["argv"] = take(number(take()[0], "argc", 0, len(fields)))
    env = {}
    for item in take(number(take()[0], "envc", 0, len(fields))):
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise BadRequest("an environment entry without NAME=")
        env[name] = value
    request["env"] = env
    limits = {}
    for item in take(number(take()[0], "limitc", 0, 64)):
        parts = item.split(" ")
        if (len(parts) != 3 or not parts[0].startswith("RLIMIT_")
                or not hasattr(resource, parts[0])):
            raise BadRequest(f"bad resource limit {item[:40]!r}")
        limits[parts[0]] = tuple(number(v, parts[0], -1, 2**63 - 1) for v in parts[1:])
    request["rlimits"] = limits
    streams = []
    for item in take(3):
        parts = item.split(" ")
        if len(parts) != 4 or parts[2] not in "01" or parts[3] not in "01":
            raise BadRequest("bad stream settings")
        try:
            codecs.lookup(parts[0])
            codecs.lookup_error(parts[1])
        except LookupError:
            raise BadRequest(f"unknown encoding or error handler in {item[:40]!r}") from None
        streams.append({"encoding": parts[0], "errors": parts[1],
                        "line_buffering": parts[2] == "1", "write_through": parts[3] == "1"})
    request["streams"] = streams
    if position != len(fields):
        raise BadRequest("trailing fields")
    return request


def limit_refusal(rlimits):
    """Why this server's child could not take the client's resource limits (a hard
    limit above the server's own), or None."""
    for name, (soft, hard) in rlimits.items():
        own_soft, own_hard = resource.getrlimit(getattr(resource, name))
        if own_hard != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY
                                                  or hard > own_hard):
            return f"{name} hard limit above the server's"
    return None


NO_REQUEST = "closed before any request"


def read_request(conn, descriptors=3):
    """(request, body, fds) from a connection: the framed body and exactly
    `descriptors` descriptors (SCM_RIGHTS), all closed again if anything is wrong."""
    fds = array.array("i")
    data = bytearray()
    need = 4
    while len(data) < need:
        chunk, ancdata, _flags, _addr = conn.recvmsg(
            min(65536, need - len(data)), socket.CMSG_SPACE(descriptors * fds.itemsize))
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cdata[:len(cdata) - len(cdata) % fds.itemsize])
        if not chunk:
            break
        data += chunk
        if need == 4 and len(data) >= 4:
            need = 4 + int.from_bytes(data[:4], "big")
            if need - 4 > MAX_REQUEST_BYTES:
                for fd in fds:
                    os.close(fd)
                raise BadRequest("request too long")
    fds = list(fds)
    if not data and not fds:
        raise BadRequest(NO_REQUEST)
    if len(data) < need or len(fds) != descriptors:
        for fd in fds:
            os.close(fd)
        raise BadRequest("truncated request" if len(data) < need
                         else f"{descriptors} descriptors expected")
    body = bytes(data[4:need])
    try:
        return parse_request(body), body, fds
    except BadRequest:
        for fd in fds:
            os.close(fd)
        raise
