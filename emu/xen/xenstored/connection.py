"""Client connections and listening sockets of the xenstore daemon.

A connection is dom0's (privileged) or one domain's; the daemon's main loop in
core.py owns the sockets, this module only the per-connection state.
"""

from __future__ import annotations

import os
import socket
import stat
from collections import deque
from typing import Deque, Dict, List, NamedTuple, Optional

from .. import xs_wire
from .transaction import Transaction
from .watch import Watch


class Conn:
    """One client connection (sock is None for in-process API requests)."""

    def __init__(self, sock: Optional[socket.socket], domid: int, privileged: bool, desc: str):
        self.sock = sock
        self.domid = domid
        self.privileged = privileged
        self.desc = desc
        self.decoder = xs_wire.Decoder()
        self.requests: Deque[xs_wire.Message] = deque()  # decoded, not yet processed
        self.read_eof = False
        self.out = bytearray()
        self.queued = 0                  # bytes ever put into out ...
        self.sent = 0                    # ... and handed to the kernel
        self.reply_ends: Deque[int] = deque()  # ``queued`` at the end of each unsent reply
        self.watches: List[Watch] = []
        self.txs: Dict[int, Transaction] = {}
        self.next_tx = 1
        self.closed = False
        self.registered_mask = 0
        self.implicit = "/local/domain/%d" % domid


class Listener(NamedTuple):
    sock: socket.socket
    path: str
    domid: int


def bind_unix(path: str) -> socket.socket:
    """A listening socket at ``path``; a stale socket file of a dead daemon is
    replaced, a live one (or any other file) is an error."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise FileExistsError("%s exists and is not a socket" % path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)
        else:
            raise OSError("a daemon is already listening on %s" % path)
        finally:
            probe.close()
    # Bind under a temporary name and rename: the path never exists without a
    # listener behind it, so clients can poll for it and connect right away.
    tmp = "%s.%d.tmp" % (path, os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(tmp)
        s.listen(64)
        os.rename(tmp, path)
    except BaseException as e:
        s.close()
        if os.path.lexists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno:
            raise OSError(e.errno, "cannot listen on %s: %s" % (path, e.strerror)) from None
        raise
    s.setblocking(False)
    return s
