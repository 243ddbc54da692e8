"""xenstore test helpers: a hand-driven connection for malformed and hostile traffic,
and guest connections set up as a toolstack would."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile

from pvboot.emu.xen import xs_wire
from pvboot.emu.xen.abi import XS_ERROR, XS_WATCH_EVENT
from pvboot.emu.xen.xsclient import XsClient

T = 5.0   # generous bound for any single wait


class Raw:
    """Sends whatever bytes a test forges; decodes the daemon's answers."""

    def __init__(self, path_or_sock, timeout: float = T):
        if isinstance(path_or_sock, socket.socket):
            self.sock = path_or_sock
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(path_or_sock)
        self.sock.settimeout(timeout)
        self.dec = xs_wire.Decoder()
        self.queue = []

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send(self, type_, payload=b"", req_id=7, tx=0):
        self.send_raw(xs_wire.encode(type_, req_id, tx, payload, check=False))

    def recv(self):
        while not self.queue:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.queue.extend(self.dec.feed(data))
        return self.queue.pop(0)

    def call(self, type_, payload=b"", tx=0):
        """Send one request and return its reply (watch events skipped)."""
        self.send(type_, payload, tx=tx)
        while True:
            m = self.recv()
            assert m is not None, "daemon closed the connection"
            if m.type != XS_WATCH_EVENT:
                return m

    def closed_by_daemon(self) -> bool:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def err(msg):
    """The errno name of an XS_ERROR reply (fails on anything else)."""
    assert msg.type == XS_ERROR, "expected an error, got %r" % (msg,)
    return xs_wire.parse_error(msg.payload)


def open_guest(daemon, domid: int, timeout: float = T) -> XsClient:
    """A connection of domain ``domid`` owning /local/domain/<domid>, as a toolstack sets up."""
    home = "/local/domain/%d" % domid
    if not daemon.exists(home):
        daemon.mkdir(home)
        daemon.set_perms(home, ["n%d" % domid])
    return XsClient.from_socket(daemon.connect_domain(domid), timeout=timeout)


@contextlib.contextmanager
def short_socket_dir():
    """A directory for unix sockets under /tmp (their paths are limited to 107 bytes,
    which pytest's tmp_path can exceed); removed afterwards."""
    d = tempfile.mkdtemp(prefix="xs-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
