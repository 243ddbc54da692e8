"""An in-memory xenstore daemon speaking the xs_wire protocol on unix sockets.

This is the "real xenstore" that pvboot's firmware frontend (as domain 1) and the
blkback process (as dom0) rendezvous through.  Behaviour follows the C xenstored
(tools/xenstored in Xen) where clients can observe it:

* one selectors-driven thread serves every connection; a client that sends garbage,
  stops reading or disappears only loses its own connection;
* clients on the unix socket are dom0 (privileged); connect_domain(N) hands out a
  socketpair end and listen_domain(N, path) a socket whose clients are domain N,
  with node permissions enforced (owner, then per-domain entries, then "others");
* paths: characters [A-Za-z0-9/_@-], no trailing or double slash, relative paths
  resolve under /local/domain/<domid>; single-argument requests must carry exactly
  one NUL, at the end (C and OCaml daemons both insist), else EINVAL;
* WRITE/MKDIR create missing parents; new nodes copy the parent's permissions, and a
  node created by an unprivileged domain is owned by it;
* RM is recursive; removing a missing node is OK when its parent exists and ENOENT
  otherwise (C xenstored; oxenstored always answers OK); removing "/" is EINVAL;
* watches fire once on registration, then for changes at or below the watched path
  (for a removal: the removed node, or any removed node exactly watched); events
  precede the reply to the request that caused them;
* transactions work on a snapshot taken at TRANSACTION_START; commit fails with
  EAGAIN if any node the transaction read or wrote (present or absent) was changed
  outside it since then; either way the transaction is gone afterwards;
* oversized header length: the connection is dropped (C xenstored's ignore_connection);
  unknown message types answer ENOSYS, privileged-only ones EACCES for guests.

The tree lives in memory only; nothing is logged unless logging is configured.
Run standalone with ``python -m pvboot.emu.xen.xenstored --socket PATH``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import selectors
import signal
import socket
import stat
import sys
import threading
from typing import Dict, List, NamedTuple, Optional, Tuple

from . import xs_wire
from .abi import (DOMID_SELF, XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX, XENSTORE_REL_PATH_MAX,
                  XS_CONTROL, XS_DIRECTORY, XS_DIRECTORY_PART, XS_ERROR, XS_GET_DOMAIN_PATH,
                  XS_GET_PERMS, XS_INTRODUCE, XS_IS_DOMAIN_INTRODUCED, XS_MKDIR, XS_READ,
                  XS_RELEASE, XS_RESET_WATCHES, XS_RESUME, XS_RM, XS_SET_PERMS, XS_SET_TARGET,
                  XS_TRANSACTION_END, XS_TRANSACTION_START, XS_UNWATCH, XS_WATCH, XS_WRITE)
from .xs_wire import Message, XenstoreError

log = logging.getLogger("pvboot.emu.xen.xenstored")

__all__ = ["XenstoreDaemon", "XenstoreError", "main"]

PERM_NONE, PERM_READ, PERM_WRITE, PERM_OWNER = 0, 1, 2, 8
_PERM_BITS = {"n": PERM_NONE, "r": PERM_READ, "w": PERM_WRITE, "b": PERM_READ | PERM_WRITE}

SPECIAL_NODES = ("@introduceDomain", "@releaseDomain")

# Per-connection limits for unprivileged domains (C xenstored's default quotas).
MAX_WATCHES_PER_DOMAIN = 128
MAX_TRANSACTIONS_PER_DOMAIN = 10
# Output a client has not read yet; beyond this it is not reading and gets dropped.
MAX_OUTPUT_BUFFER = 16 << 20

_VALID_PATH = re.compile(rb"[A-Za-z0-9/_@-]*\Z")
_LOCAL_DOMAIN = re.compile(r"/local/domain/(\d{1,5})/")
_MATCH_EXACT, _MATCH_SUBTREE = 0, 1


class _Err(Exception):
    """Internal: answer the current request with XS_ERROR <name>."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class Node(NamedTuple):
    """One immutable tree node; every change stores a new object (snapshots share them)."""
    value: bytes
    perms: Tuple[Tuple[int, str], ...]   # ((owner, others' access), (domid, access), ...)
    children: Tuple[str, ...]            # creation order, like C xenstored
    gen: int


class _Watch(NamedTuple):
    node: str        # canonical path (or @special)
    token: bytes
    prefix_len: int  # events for relative watches drop "/local/domain/N/"


class _Transaction:
    def __init__(self, tid: int, base: Dict[str, Node]):
        self.id = tid
        self.base = base                          # the tree as it was at start
        self.overlay: Dict[str, Optional[Node]] = {}  # None = deleted in this transaction
        self.accessed: set = set()
        self.events: List[tuple] = []


class _Conn:
    def __init__(self, sock: Optional[socket.socket], domid: int, privileged: bool, desc: str):
        self.sock = sock
        self.domid = domid
        self.privileged = privileged
        self.desc = desc
        self.decoder = xs_wire.Decoder()
        self.out = bytearray()
        self.watches: List[_Watch] = []
        self.txs: Dict[int, _Transaction] = {}
        self.next_tx = 1
        self.closed = False
        self.registered_mask = 0
        self.implicit = "/local/domain/%d" % domid


class _Listener(NamedTuple):
    sock: socket.socket
    path: str
    domid: int


class _View:
    """Node access either on the live tree or inside a transaction (records accesses)."""

    def __init__(self, daemon: "XenstoreDaemon", tx: Optional[_Transaction]):
        self.d = daemon
        self.tx = tx

    def get(self, path: str) -> Optional[Node]:
        tx = self.tx
        if tx is None:
            return self.d._nodes.get(path)
        tx.accessed.add(path)
        if path in tx.overlay:
            return tx.overlay[path]
        return tx.base.get(path)

    def put(self, path: str, node: Node) -> None:
        node = node._replace(gen=self.d._next_gen())
        if self.tx is None:
            self.d._nodes[path] = node
        else:
            self.tx.accessed.add(path)
            self.tx.overlay[path] = node

    def delete(self, path: str) -> None:
        if self.tx is None:
            self.d._nodes.pop(path, None)
        else:
            self.tx.accessed.add(path)
            self.tx.overlay[path] = None

    def fire(self, path: str, match: int, old: Optional[Node]) -> None:
        if self.tx is None:
            self.d._fire(path, match, old.perms if old else None)
        else:
            self.tx.events.append((path, match, old.perms if old else None))


def _parent(path: str) -> str:
    cut = path.rfind("/", 1)
    return path[:cut] if cut > 0 else "/"


def _basename(path: str) -> str:
    return path[path.rfind("/") + 1:]


def _is_child(child: str, parent: str) -> bool:
    if parent == "/":
        return child.startswith("/")
    return child == parent or child.startswith(parent + "/")


def _perm_for(conn: _Conn, perms, targets: Dict[int, int]) -> int:
    """C xenstored's perm_for_conn: tools and owners get everything, then the first
    entry naming the domain, else the owner entry's access (what "others" get)."""
    ids = (conn.domid, targets.get(conn.domid))
    if conn.privileged or perms[0][0] in ids:
        return PERM_READ | PERM_WRITE | PERM_OWNER
    for domid, p in perms[1:]:
        if domid in ids:
            return _PERM_BITS[p]
    return _PERM_BITS[perms[0][1]]


def _one_arg(payload: bytes) -> bytes:
    """The single NUL-terminated argument, or EINVAL (C onearg())."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        raise _Err("EINVAL")
    return payload[:-1]


def _strings(payload: bytes) -> List[bytes]:
    """NUL-terminated strings only (C get_strings ignores an unterminated tail)."""
    return payload.split(b"\0")[:-1]


def _parse_domid(raw: bytes) -> int:
    """C parse_domid(): strtoul base 10, whole string, <= 65535 ("" is 0, as in C)."""
    m = re.fullmatch(rb"[ \t\n\v\f\r]*([+-]?)([0-9]*)", raw)
    if raw and (not m or not m.group(2)):
        raise _Err("EINVAL")
    if not raw:
        return 0
    v = int(m.group(2))
    if m.group(1) == b"-" and v:
        raise _Err("EINVAL")
    if v > 65535:
        raise _Err("EINVAL")
    return v


def _atoi(raw: bytes) -> int:
    m = re.match(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)", raw)
    return int(m.group(1)) if m else 0


class XenstoreDaemon:
    """The daemon.  Use start()/stop() (or a with-block) to run it in a thread, or
    serve_forever() in the calling thread.  All public methods are thread-safe."""

    def __init__(self, socket_path: Optional[str] = None, *,
                 domain_sockets: Optional[Dict[int, str]] = None):
        self.socket_path = socket_path
        self._domain_socket_paths = dict(domain_sockets or {})
        self._lock = threading.RLock()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._listeners: List[_Listener] = []
        self._conns: List[_Conn] = []
        self._to_close: List[_Conn] = []
        self._dirty: set = set()
        self._stop_requested = False
        self._thread: Optional[threading.Thread] = None
        self._running = threading.Event()
        self._gen = 0
        self._nodes: Dict[str, Node] = {}
        self._introduced = {0}
        self._targets: Dict[int, int] = {}
        self._api_conn = _Conn(None, 0, True, "in-process API")
        self._closed = False
        self._init_tree()

    # ------------------------------------------------------------------ setup

    def _next_gen(self) -> int:
        self._gen += 1
        return self._gen

    def _init_tree(self) -> None:
        # What C xenstored creates at start: a bare root, /tool/xenstored, the specials.
        dom0_only = ((0, "n"),)
        self._nodes["/"] = Node(b"", dom0_only, ("tool",), self._next_gen())
        self._nodes["/tool"] = Node(b"", dom0_only, ("xenstored",), self._next_gen())
        self._nodes["/tool/xenstored"] = Node(b"", dom0_only, (), self._next_gen())
        self._nodes["@introduceDomain"] = Node(b"", dom0_only, (), self._next_gen())
        self._nodes["@releaseDomain"] = Node(b"", dom0_only, (), self._next_gen())

    def _bind(self, path: str, domid: int) -> None:
        path = os.fspath(path)
        if os.path.lexists(path):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise FileExistsError("%s exists and is not a socket" % path)
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)          # stale socket of a dead daemon
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
        except BaseException:
            s.close()
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        s.setblocking(False)
        with self._lock:
            lst = _Listener(s, path, domid)
            self._listeners.append(lst)
            self._sel.register(s, selectors.EVENT_READ, lst)
        self._wake()

    def _bind_all(self) -> None:
        if self._listeners:
            return
        if self.socket_path:
            self._bind(self.socket_path, 0)
        for domid, path in self._domain_socket_paths.items():
            self._bind(path, domid)

    # ------------------------------------------------------------- lifecycle

    def start(self) -> "XenstoreDaemon":
        """Bind the sockets and serve from a background thread."""
        if self._thread is not None:
            raise RuntimeError("daemon already started")
        self._bind_all()
        self._thread = threading.Thread(target=self._serve, name="xenstored", daemon=True)
        self._thread.start()
        self._running.wait(5.0)
        return self

    def serve_forever(self) -> None:
        """Bind the sockets and serve in the calling thread until stop()."""
        self._bind_all()
        self._serve()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close every connection and remove the socket files."""
        self._stop_requested = True
        self._wake()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            if t.is_alive():
                log.warning("xenstored thread did not stop within %.1fs", timeout)
        self._close_everything()

    def request_stop(self) -> None:
        """Ask a serving loop to return (safe from signal handlers)."""
        self._stop_requested = True
        self._wake()

    def __enter__(self) -> "XenstoreDaemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _close_everything(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for c in list(self._conns):
                self._close(c, "daemon stopping")
            self._reap()
            for lst in self._listeners:
                try:
                    self._sel.unregister(lst.sock)
                except (KeyError, ValueError):
                    pass
                lst.sock.close()
                try:
                    os.unlink(lst.path)
                except FileNotFoundError:
                    pass
            self._listeners = []
            try:
                self._sel.close()
            finally:
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _wake(self) -> None:
        if self._closed:
            return       # the pipe's fd numbers may already belong to someone else
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass     # pipe full: a wake-up is pending anyway / already closed

    # ------------------------------------------------------------ connections

    def connect_domain(self, domid: int) -> socket.socket:
        """A connected socket whose requests the daemon treats as coming from domain
        ``domid`` (privileged only for dom0).  Introduces the domain if needed."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._adopt(ours, domid, "domain %d (socketpair)" % domid)
        return theirs

    def connect(self) -> socket.socket:
        """A connected dom0 socket, like a client of the main unix socket."""
        return self.connect_domain(0)

    def listen_domain(self, domid: int, path: str) -> None:
        """Also listen on ``path``; everyone connecting there is domain ``domid``."""
        self._domain_socket_paths[domid] = path
        if self._listeners or self._thread is not None:
            self._bind(path, domid)

    def _adopt(self, sock: socket.socket, domid: int, desc: str) -> _Conn:
        sock.setblocking(False)
        conn = _Conn(sock, domid, domid == 0, desc)
        with self._lock:
            if self._closed:
                sock.close()
                raise RuntimeError("daemon stopped")
            self._conns.append(conn)
            self._introduce(domid)
        self._wake()
        return conn

    def _accept(self, lst: _Listener) -> None:
        while True:
            try:
                s, _ = lst.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.info("accept on %s failed: %s", lst.path, e)
                return
            self._adopt(s, lst.domid, "%s client (domain %d)" % (lst.path, lst.domid))

    def _close(self, conn: _Conn, why: str) -> None:
        if conn.closed:
            return
        log.debug("closing %s: %s", conn.desc, why)
        conn.closed = True
        conn.watches.clear()
        conn.txs.clear()
        conn.out.clear()
        if conn in self._conns:
            self._conns.remove(conn)
        self._dirty.discard(conn)
        self._to_close.append(conn)
        self._wake()

    def _reap(self) -> None:
        """Unregister and close connections marked closed (loop thread or shutdown)."""
        while self._to_close:
            conn = self._to_close.pop()
            if conn.registered_mask:
                try:
                    self._sel.unregister(conn.sock)
                except (KeyError, ValueError):
                    pass
                conn.registered_mask = 0
            try:
                conn.sock.close()
            except OSError:
                pass

    def _sync_registrations(self) -> None:
        for conn in self._conns:
            want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
            if want != conn.registered_mask:
                if conn.registered_mask:
                    self._sel.modify(conn.sock, want, conn)
                else:
                    self._sel.register(conn.sock, want, conn)
                conn.registered_mask = want

    # ------------------------------------------------------------- main loop

    def _serve(self) -> None:
        self._running.set()
        try:
            while not self._stop_requested:
                with self._lock:
                    if self._closed:
                        return
                    self._reap()
                    self._sync_registrations()
                events = self._sel.select()
                with self._lock:
                    for key, mask in events:
                        data = key.data
                        if data is None:
                            try:
                                while os.read(self._wake_r, 4096):
                                    pass
                            except BlockingIOError:
                                pass
                        elif isinstance(data, _Listener):
                            self._accept(data)
                        elif not data.closed:
                            if mask & selectors.EVENT_WRITE:
                                self._flush(data)
                            if mask & selectors.EVENT_READ and not data.closed:
                                self._on_readable(data)
                    self._flush_dirty()
        except Exception:
            log.exception("xenstored loop crashed")
            raise

    def _on_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._close(conn, "recv: %s" % e)
            return
        if not data:
            self._close(conn, "EOF" + (" inside a message" if conn.decoder.pending else ""))
            return
        for msg in conn.decoder.feed(data):
            if conn.closed:
                return
            self._process(conn, msg)
        if conn.decoder.error:
            log.info("dropping %s: %s", conn.desc, conn.decoder.error)
            self._close(conn, conn.decoder.error)

    def _send(self, conn: _Conn, data: bytes) -> None:
        if conn.closed or conn.sock is None:
            return
        conn.out += data
        if len(conn.out) > MAX_OUTPUT_BUFFER:
            self._close(conn, "not reading its replies/events")
            return
        self._dirty.add(conn)

    def _flush(self, conn: _Conn) -> None:
        while conn.out and not conn.closed:
            try:
                n = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._close(conn, "send: %s" % e)
                return
            del conn.out[:n]

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for conn in dirty:
            self._flush(conn)
        if any(c.out for c in dirty if not c.closed):
            self._wake()     # loop must start watching for writability

    # -------------------------------------------------------------- requests

    def _reply(self, conn: _Conn, msg: Message, type_: int, payload: bytes) -> None:
        if len(payload) > XENSTORE_PAYLOAD_MAX:
            type_, payload = XS_ERROR, xs_wire.error_payload("E2BIG")
        self._send(conn, xs_wire.encode(type_, msg.req_id, msg.tx_id, payload))

    def _process(self, conn: _Conn, msg: Message) -> None:
        handler = self._HANDLERS.get(msg.type)
        try:
            if handler is None:
                raise _Err("ENOSYS")
            func, priv_only, uses_tx = handler
            if priv_only and not conn.privileged:
                raise _Err("EACCES")
            tx = None
            if uses_tx and msg.tx_id != 0:
                tx = conn.txs.get(msg.tx_id)
                if tx is None:
                    raise _Err("ENOENT")
            result = func(self, conn, msg, tx)
        except _Err as e:
            self._reply(conn, msg, XS_ERROR, xs_wire.error_payload(e.name))
            return
        if result is not None:
            self._reply(conn, msg, msg.type, result)

    # -- paths and permissions

    def _canonical(self, conn: _Conn, raw: bytes, allow_special: bool = False) -> str:
        if not _VALID_PATH.match(raw):
            raise _Err("EINVAL")
        path = raw.decode("ascii")
        if path.startswith("@") and not allow_special:
            raise _Err("EINVAL")
        if not path.startswith(("/", "@")):
            if len(path) > XENSTORE_REL_PATH_MAX:
                raise _Err("EINVAL")
            path = conn.implicit + "/" + path
        if (path.endswith("/") and path != "/") or "//" in path:
            raise _Err("EINVAL")
        if len(path) > XENSTORE_ABS_PATH_MAX:
            raise _Err("EINVAL")
        if not conn.privileged:
            m = _LOCAL_DOMAIN.match(path)
            if len(path) - (m.end() if m else 0) > XENSTORE_REL_PATH_MAX:
                raise _Err("EINVAL")
        return path

    def _perm(self, conn: _Conn, node: Node) -> int:
        return _perm_for(conn, node.perms, self._targets)

    def _get(self, view: _View, conn: _Conn, path: str, perm: int) -> Node:
        """The node if ``conn`` has ``perm`` on it; ENOENT is only disclosed to callers
        that could have had that access through the closest existing ancestor."""
        node = view.get(path)
        if node is not None:
            if self._perm(conn, node) & perm == perm:
                return node
            raise _Err("EACCES")
        anc = path
        while anc != "/":
            anc = _parent(anc)
            a = view.get(anc)
            if a is not None:
                if self._perm(conn, a) & perm:
                    raise _Err("ENOENT")
                raise _Err("EACCES")
        raise _Err("EACCES")

    def _create(self, view: _View, conn: _Conn, path: str, value: bytes) -> None:
        missing = [path]
        parent_path = _parent(path)
        parent = view.get(parent_path)
        while parent is None:
            missing.append(parent_path)
            parent_path = _parent(parent_path)
            parent = view.get(parent_path)
        for name in reversed(missing):
            perms = parent.perms
            if not conn.privileged:
                perms = ((conn.domid, perms[0][1]),) + perms[1:]
            view.put(parent_path, parent._replace(children=parent.children + (_basename(name),)))
            node = Node(value if name == path else b"", perms, (), 0)
            view.put(name, node)
            parent_path, parent = name, node

    # -- operations

    def _op_read(self, conn, msg, tx):
        view = _View(self, tx)
        return self._get(view, conn, self._canonical(conn, _one_arg(msg.payload)), PERM_READ).value

    def _op_directory(self, conn, msg, tx):
        view = _View(self, tx)
        node = self._get(view, conn, self._canonical(conn, _one_arg(msg.payload)), PERM_READ)
        return b"".join(c.encode("ascii") + b"\0" for c in node.children)

    def _op_directory_part(self, conn, msg, tx):
        args = _strings(msg.payload)
        if len(args) != 2:
            raise _Err("EINVAL")
        view = _View(self, tx)
        node = self._get(view, conn, self._canonical(conn, args[0]), PERM_READ)
        children = b"".join(c.encode("ascii") + b"\0" for c in node.children)
        off = _atoi(args[1])
        gen = b"%d\0" % node.gen
        if off < 0 or off >= len(children):
            return gen + b"\0"
        maxlen = XENSTORE_PAYLOAD_MAX - len(gen) - 1
        length, pos = 0, off
        while True:
            nul = children.index(b"\0", pos)
            if length + (nul - pos) >= maxlen:
                break
            length += nul - pos + 1
            pos = nul + 1
            if off + length == len(children):
                break
        data = gen + children[off:off + length]
        if off + length == len(children):
            data += b"\0"
        return data

    def _op_write(self, conn, msg, tx):
        nul = msg.payload.find(b"\0")
        if nul < 0:
            raise _Err("EINVAL")
        path = self._canonical(conn, msg.payload[:nul])
        value = msg.payload[nul + 1:]
        view = _View(self, tx)
        try:
            node = self._get(view, conn, path, PERM_WRITE)
        except _Err as e:
            if e.name != "ENOENT":
                raise
            self._create(view, conn, path, value)
        else:
            view.put(path, node._replace(value=value))
        view.fire(path, _MATCH_SUBTREE, None)
        return b"OK\0"

    def _op_mkdir(self, conn, msg, tx):
        path = self._canonical(conn, _one_arg(msg.payload))
        view = _View(self, tx)
        try:
            self._get(view, conn, path, PERM_WRITE)
        except _Err as e:
            if e.name != "ENOENT":
                raise
            self._create(view, conn, path, b"")
            view.fire(path, _MATCH_SUBTREE, None)
        return b"OK\0"

    def _op_rm(self, conn, msg, tx):
        path = self._canonical(conn, _one_arg(msg.payload))
        view = _View(self, tx)
        try:
            node = self._get(view, conn, path, PERM_WRITE)
        except _Err as e:
            if e.name == "ENOENT" and path != "/" and view.get(_parent(path)) is not None:
                return b"OK\0"
            raise
        if path == "/":
            raise _Err("EINVAL")
        self._remove_subtree(view, path, node, path)
        parent = view.get(_parent(path))
        name = _basename(path)
        view.put(_parent(path), parent._replace(children=tuple(c for c in parent.children if c != name)))
        return b"OK\0"

    def _remove_subtree(self, view: _View, path: str, node: Node, root: str) -> None:
        for child in node.children:
            cpath = (path if path != "/" else "") + "/" + child
            cnode = view.get(cpath)
            if cnode is not None:
                self._remove_subtree(view, cpath, cnode, root)
        view.delete(path)
        view.fire(path, _MATCH_SUBTREE if path == root else _MATCH_EXACT, node)

    def _op_get_perms(self, conn, msg, tx):
        view = _View(self, tx)
        path = self._canonical(conn, _one_arg(msg.payload), allow_special=True)
        return xs_wire.format_perms(self._get(view, conn, path, PERM_READ).perms)

    def _op_set_perms(self, conn, msg, tx):
        args = _strings(msg.payload)
        if len(args) < 2:
            raise _Err("EINVAL")
        try:
            perms = tuple(xs_wire.parse_perms(args[1:]))
        except ValueError:
            raise _Err("EINVAL") from None
        path = self._canonical(conn, args[0], allow_special=True)
        view = _View(self, tx)
        node = self._get(view, conn, path, PERM_WRITE | PERM_OWNER)
        if not conn.privileged and perms[0][0] != node.perms[0][0]:
            raise _Err("EPERM")
        view.put(path, node._replace(perms=perms))
        view.fire(path, _MATCH_SUBTREE, node)
        return b"OK\0"

    def _op_watch(self, conn, msg, tx):
        args = _strings(msg.payload)
        if len(args) != 2:
            raise _Err("EINVAL")
        relative = not args[0].startswith((b"/", b"@"))
        path = self._canonical(conn, args[0], allow_special=True)
        token = args[1]
        if any(w.node == path and w.token == token for w in conn.watches):
            raise _Err("EEXIST")
        if not conn.privileged and len(conn.watches) >= MAX_WATCHES_PER_DOMAIN:
            raise _Err("ENOSPC")
        w = _Watch(path, token, len(conn.implicit) + 1 if relative else 0)
        conn.watches.append(w)
        self._reply(conn, msg, XS_WATCH, b"OK\0")
        # Fired once up front (xenstored does): clients read initial state from it.
        self._send(conn, xs_wire.watch_event(path[w.prefix_len:], token))
        return None

    def _op_unwatch(self, conn, msg, tx):
        args = _strings(msg.payload)
        if len(args) != 2:
            raise _Err("EINVAL")
        path = self._canonical(conn, args[0], allow_special=True)
        for i, w in enumerate(conn.watches):
            if w.node == path and w.token == args[1]:
                del conn.watches[i]
                return b"OK\0"
        raise _Err("ENOENT")

    def _op_transaction_start(self, conn, msg, tx):
        if tx is not None:
            raise _Err("EBUSY")      # no nesting
        if not conn.privileged and len(conn.txs) >= MAX_TRANSACTIONS_PER_DOMAIN:
            raise _Err("ENOSPC")
        tid = conn.next_tx
        while tid == 0 or tid in conn.txs:
            tid = (tid + 1) & 0xFFFFFFFF
        conn.next_tx = (tid + 1) & 0xFFFFFFFF
        conn.txs[tid] = _Transaction(tid, dict(self._nodes))
        return b"%d\0" % tid

    def _op_transaction_end(self, conn, msg, tx):
        arg = msg.payload
        if arg not in (b"T\0", b"F\0"):
            raise _Err("EINVAL")
        if tx is None:
            raise _Err("ENOENT")
        del conn.txs[tx.id]
        if arg == b"T\0":
            self._commit(tx)
        return b"OK\0"

    def _commit(self, tx: _Transaction) -> None:
        for path in tx.accessed:
            if self._nodes.get(path) is not tx.base.get(path):
                raise _Err("EAGAIN")
        for path, node in tx.overlay.items():
            if node is None:
                self._nodes.pop(path, None)
            else:
                self._nodes[path] = node._replace(gen=self._next_gen())
        for path, match, old_perms in tx.events:
            self._fire(path, match, old_perms)

    def _op_get_domain_path(self, conn, msg, tx):
        return b"/local/domain/%d\0" % _parse_domid(_one_arg(msg.payload))

    def _op_introduce(self, conn, msg, tx):
        args = _strings(msg.payload)
        if len(args) < 3:
            raise _Err("EINVAL")
        domid = _parse_domid(args[0])
        if _atoi(args[2]) <= 0:          # event channel port
            raise _Err("EINVAL")
        self._introduce(domid)
        return b"OK\0"

    def _known_domain(self, payload: bytes) -> int:
        domid = _parse_domid(_one_arg(payload))
        if domid == 0:
            raise _Err("EINVAL")
        if domid not in self._introduced:
            raise _Err("ENOENT")
        return domid

    def _op_release(self, conn, msg, tx):
        self._release(self._known_domain(msg.payload))
        return b"OK\0"

    def _op_resume(self, conn, msg, tx):
        self._known_domain(msg.payload)
        return b"OK\0"

    def _op_is_domain_introduced(self, conn, msg, tx):
        domid = _parse_domid(_one_arg(msg.payload))
        return b"T\0" if domid == DOMID_SELF or domid in self._introduced else b"F\0"

    def _op_set_target(self, conn, msg, tx):
        args = _strings(msg.payload)
        if len(args) < 2:
            raise _Err("EINVAL")
        domid, target = _parse_domid(args[0]), _parse_domid(args[1])
        for d in (domid, target):
            if d not in self._introduced:
                raise _Err("ENOENT")
        self._targets[domid] = target
        return b"OK\0"

    def _op_reset_watches(self, conn, msg, tx):
        conn.watches.clear()
        conn.txs.clear()
        return b"OK\0"

    def _op_control(self, conn, msg, tx):
        # No xenstore-control commands (log, quota, live update...) are implemented.
        raise _Err("EINVAL")

    # (function, privileged only, looks up the header's transaction)
    _HANDLERS = {
        XS_CONTROL: (_op_control, True, True),
        XS_DIRECTORY: (_op_directory, False, True),
        XS_READ: (_op_read, False, True),
        XS_GET_PERMS: (_op_get_perms, False, True),
        XS_WATCH: (_op_watch, False, False),
        XS_UNWATCH: (_op_unwatch, False, False),
        XS_TRANSACTION_START: (_op_transaction_start, False, True),
        XS_TRANSACTION_END: (_op_transaction_end, False, True),
        XS_INTRODUCE: (_op_introduce, True, True),
        XS_RELEASE: (_op_release, True, True),
        XS_GET_DOMAIN_PATH: (_op_get_domain_path, False, True),
        XS_WRITE: (_op_write, False, True),
        XS_MKDIR: (_op_mkdir, False, True),
        XS_RM: (_op_rm, False, True),
        XS_SET_PERMS: (_op_set_perms, False, True),
        XS_IS_DOMAIN_INTRODUCED: (_op_is_domain_introduced, True, True),
        XS_RESUME: (_op_resume, True, True),
        XS_SET_TARGET: (_op_set_target, True, True),
        XS_RESET_WATCHES: (_op_reset_watches, False, True),
        XS_DIRECTORY_PART: (_op_directory_part, False, True),
    }

    # -- watches and domains

    def _fire(self, path: str, match: int, old_perms) -> None:
        for conn in self._conns:
            if not conn.watches or not self._watch_permitted(conn, path, old_perms):
                continue
            for w in conn.watches:
                if w.node == path if match == _MATCH_EXACT else _is_child(path, w.node):
                    self._send(conn, xs_wire.watch_event(path[w.prefix_len:], w.token))

    def _watch_permitted(self, conn: _Conn, path: str, old_perms) -> bool:
        """C watch_permitted(): the node (before or after the change) or its parent
        must be readable, so guests do not learn about nodes they cannot see."""
        if conn.privileged:
            return True
        if old_perms is not None and _perm_for(conn, old_perms, self._targets) & PERM_READ:
            return True
        node = self._nodes.get(path)
        if node is not None and self._perm(conn, node) & PERM_READ:
            return True
        parent = self._nodes.get(_parent(path))
        return parent is not None and bool(self._perm(conn, parent) & PERM_READ)

    def _introduce(self, domid: int) -> None:
        if domid not in self._introduced:
            self._introduced.add(domid)
            self._fire_special("@introduceDomain")

    def _release(self, domid: int) -> None:
        self._introduced.discard(domid)
        self._targets.pop(domid, None)
        for c in list(self._conns):
            if c.domid == domid and not c.privileged:
                self._close(c, "domain released")
        self._fire_special("@releaseDomain")

    def _fire_special(self, name: str) -> None:
        for conn in self._conns:
            for w in conn.watches:
                if w.node == name:
                    self._send(conn, xs_wire.watch_event(name, w.token))

    # ------------------------------------------------------ in-process API

    def _api(self, type_: int, payload: bytes, domid: int = 0):
        """Run one request as ``domid`` (dom0 by default) without a socket."""
        conn = self._api_conn if domid == 0 else _Conn(None, domid, False, "API as %d" % domid)
        msg = Message(type_, 0, 0, payload)
        with self._lock:
            func, _, _ = self._HANDLERS[type_]
            try:
                result = func(self, conn, msg, None)
            except _Err as e:
                raise XenstoreError(e.name, payload.split(b"\0", 1)[0].decode("ascii", "replace"))
            finally:
                self._flush_dirty()
        return result

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
        return [xs_wire.to_str(c) for c in _strings(self._api(XS_DIRECTORY, xs_wire.one_arg(path)))]

    def get_perms(self, path: str) -> List[str]:
        return [xs_wire.to_str(p) for p in _strings(self._api(XS_GET_PERMS, xs_wire.one_arg(path)))]

    def set_perms(self, path: str, perms) -> None:
        self._api(XS_SET_PERMS, xs_wire.join(path, *perms))

    def exists(self, path: str) -> bool:
        with self._lock:
            return path in self._nodes

    def snapshot(self) -> Dict[str, bytes]:
        """{path: value} of the whole tree (special @ nodes excluded)."""
        with self._lock:
            return {p: n.value for p, n in self._nodes.items() if p.startswith("/")}

    def introduce_domain(self, domid: int) -> None:
        with self._lock:
            self._introduce(domid)
            self._flush_dirty()

    def release_domain(self, domid: int) -> None:
        with self._lock:
            self._release(domid)
            self._flush_dirty()

    def watches(self) -> List[Tuple[int, str, str]]:
        """(domid, path, token) of every registered watch (paths canonical)."""
        with self._lock:
            return [(c.domid, w.node, xs_wire.to_str(w.token)) for c in self._conns for w in c.watches]

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._conns)


# ---------------------------------------------------------------------------
# standalone
# ---------------------------------------------------------------------------

def _domain_socket_arg(text: str):
    domid, sep, path = text.partition(":")
    if not sep or not domid.isdigit() or not path:
        raise argparse.ArgumentTypeError("expected DOMID:PATH, got %r" % text)
    return int(domid), path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pvboot.emu.xen.xenstored",
                                 description="In-memory xenstore daemon on a unix socket.")
    ap.add_argument("--socket", required=True, metavar="PATH",
                    help="unix socket for privileged (dom0) clients, e.g. XENSTORED_PATH")
    ap.add_argument("--domain-socket", action="append", default=[], type=_domain_socket_arg,
                    metavar="DOMID:PATH", help="extra socket whose clients are domain DOMID")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="log to stderr (-v info, -vv debug)")
    args = ap.parse_args(argv)
    if args.verbose:
        logging.basicConfig(stream=sys.stderr,
                            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                            format="xenstored: %(message)s")
    daemon = XenstoreDaemon(args.socket, domain_sockets=dict(args.domain_socket))

    def on_signal(signum, frame):
        daemon.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        daemon.serve_forever()
    finally:
        daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
