"""The daemon's in-process API for dom0 (the toolstack and tests in the same process):
read, write, mkdir, rm, directory, permissions and domain introduction without a
socket, each one request through the daemon's own handlers (XenstoreDaemon._api), plus
read-only views of the store, watches and connections under the daemon's lock.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from .. import xs_wire
from ..abi import XS_DIRECTORY, XS_GET_PERMS, XS_MKDIR, XS_READ, XS_RM, XS_SET_PERMS, XS_WRITE
from ..xs_wire import XenstoreError
from . import domain


class InProcessApi:
    """Mixed into XenstoreDaemon, whose _api, _lock, store, conns and _flush_dirty it uses."""

    def read(self, path: str) -> Optional[bytes]:
        """Value of ``path`` or None when it does not exist."""
        try:
            return self._api(XS_READ, xs_wire.one_arg(path))
        except XenstoreError as e:
            if e.errname == "ENOENT":
                return None
            raise

    def write(self, path: str, value) -> None:
        self._api(XS_WRITE, xs_wire.write_payload(path, value))

    def mkdir(self, path: str) -> None:
        self._api(XS_MKDIR, xs_wire.one_arg(path))

    def rm(self, path: str) -> None:
        self._api(XS_RM, xs_wire.one_arg(path))

    def directory(self, path: str) -> List[str]:
        return [xs_wire.to_str(c) for c in
                xs_wire.request_strings(self._api(XS_DIRECTORY, xs_wire.one_arg(path)))]

    def get_perms(self, path: str) -> List[str]:
        return [xs_wire.to_str(p) for p in
                xs_wire.request_strings(self._api(XS_GET_PERMS, xs_wire.one_arg(path)))]

    def set_perms(self, path: str, perms) -> None:
        self._api(XS_SET_PERMS, xs_wire.join(path, *perms))

    # The toolstack's transactions (emu/xen/toolstack.py: transact, read_many,
    # update_many, as XsClient offers them) run with the daemon's lock held: no other
    # client's request is processed until body returns, which makes them as atomic as
    # a committed transaction, without a socket round trip (host.py's dom0 lives in
    # the daemon's process).  Watches fire as each update is applied; their readers
    # can look only once the lock is released.  An update that fails midway is not
    # undone: these are dom0's, which meet no quota or permission check.
    def transact(self, body):
        with self._lock:
            return body(self)

    def read_many(self, paths) -> List[Optional[str]]:
        values = [self.read(path) for path in paths]
        return [None if v is None else xs_wire.to_str(v) for v in values]

    def update_many(self, ops) -> None:
        """("write", path, value), ("mkdir", path), ("set_perms", path, [perms]),
        ("rm", path), each applied in turn (XsClient.update_many's operations)."""
        for op, path, *arg in ops:
            if op == "write":
                self.write(path, arg[0])
            elif op == "set_perms" and arg[0]:
                self.set_perms(path, arg[0])
            elif op == "mkdir":
                self.mkdir(path)
            elif op == "rm":
                self.rm(path)
            else:
                raise ValueError("not an update: %r" % (op,))

    def exists(self, path: str) -> bool:
        with self._lock:
            return path in self.store.nodes

    def snapshot(self) -> Dict[str, bytes]:
        """{path: value} of the whole tree (special @ nodes excluded)."""
        with self._lock:
            return {p: n.value for p, n in self.store.nodes.items() if p.startswith("/")}

    def owners(self) -> Dict[str, int]:
        """{path: owning domid} of every node, special @ nodes included."""
        with self._lock:
            return {p: n.perms[0][0] for p, n in self.store.nodes.items()}

    def nodes_owned(self) -> Dict[int, int]:
        """The per-domain node counts the nodes quota is checked against."""
        with self._lock:
            return {domid: n for domid, n in self.store.owned.items() if n}

    def introduce_domain(self, domid: int) -> None:
        with self._lock:
            domain.introduce(self, domid)
            self._flush_dirty()

    def release_domain(self, domid: int) -> None:
        with self._lock:
            domain.release(self, domid)
            self._flush_dirty()

    def watches(self) -> List[Tuple[int, str, str]]:
        """(domid, path, token) of every registered watch (paths canonical)."""
        with self._lock:
            return [(c.domid, w.node, xs_wire.to_str(w.token)) for c in self.conns for w in c.watches]

    def backlogs(self) -> List[Tuple[int, int, int, int]]:
        """(domid, unread replies, unsent bytes, requests held back) per connection."""
        with self._lock:
            return [(c.domid, len(c.reply_ends), len(c.out), len(c.requests)) for c in self.conns]

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self.conns)
