"""A small blocking xenstore client, used by the firmware frontend and by blkback.

Replies are matched by req_id; watch events may arrive between them and are queued
for read_watch(). Every wait is bounded (XenstoreTimeout); XS_ERROR replies raise
XenstoreError with the errno name; one instance may be shared by several threads.
"""

from __future__ import annotations

import collections
import os
import select
import socket
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple, TypeVar, Union

from . import xs_wire
from .abi import (XS_DIRECTORY, XS_ERROR, XS_GET_DOMAIN_PATH, XS_GET_PERMS, XS_INTRODUCE,
                  XS_IS_DOMAIN_INTRODUCED, XS_MKDIR, XS_READ, XS_RELEASE, XS_RESET_WATCHES,
                  XS_RM, XS_SET_PERMS, XS_TRANSACTION_END, XS_TRANSACTION_START, XS_UNWATCH,
                  XS_WATCH, XS_WATCH_EVENT, XS_WRITE)
from .xs_wire import Message, XenstoreClosed, XenstoreError, XenstoreTimeout
from .xstransaction import Transaction

__all__ = ["XsClient", "Transaction", "XenstoreError", "XenstoreTimeout", "XenstoreClosed",
           "connect", "from_socket", "default_socket_path"]

DEFAULT_TIMEOUT = 10.0
Value = Union[str, bytes]
T = TypeVar("T")


class XsClient:
    """One xenstore connection.  Methods take ``tx`` (a transaction id, 0 = none) and
    ``timeout`` (seconds, None = the client's default)."""

    def __init__(self, sock: socket.socket, timeout: float = DEFAULT_TIMEOUT):
        self._sock = sock
        self.timeout = timeout
        # Sends never block forever either (a daemon that stops reading).
        sock.settimeout(timeout)
        self._decoder = xs_wire.Decoder()
        self._cond = threading.Condition(threading.Lock())
        self._send_lock = threading.Lock()
        self._reader_busy = False
        self._replies: Dict[int, Message] = {}
        self._waiting: set = set()
        self._events: collections.deque = collections.deque()
        self._next_req = 1
        self._closed: Optional[str] = None

    # ------------------------------------------------------------ creation

    @classmethod
    def connect(cls, path: str, timeout: float = DEFAULT_TIMEOUT) -> "XsClient":
        """Connect to a daemon's unix socket (retrying briefly while it starts up)."""
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(path)
                return cls(s, timeout)
            except (FileNotFoundError, ConnectionRefusedError) as e:
                s.close()
                if time.monotonic() >= deadline:
                    raise XenstoreTimeout("connect to %s (%s)" % (path, e), timeout) from None
                time.sleep(0.01)
            except BaseException:
                s.close()
                raise

    @classmethod
    def from_socket(cls, sock: socket.socket, timeout: float = DEFAULT_TIMEOUT) -> "XsClient":
        return cls(sock, timeout)

    def close(self) -> None:
        with self._cond:
            if self._closed is None:
                self._closed = "closed by client"
            self._cond.notify_all()
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> "XsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def fileno(self) -> int:
        """Readable when the daemon sent something; see also pending_events()."""
        return self._sock.fileno()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    # ------------------------------------------------------------ transport

    def _deadline(self, timeout: Optional[float]) -> Tuple[float, float]:
        t = self.timeout if timeout is None else timeout
        return t, time.monotonic() + t

    def _pump(self, remaining: float) -> None:
        """Read once from the socket (lock NOT held) and dispatch what arrived."""
        try:
            poller = select.poll()
            poller.register(self._sock, select.POLLIN)
            ready = poller.poll(max(0.0, remaining) * 1000.0)
            data = self._sock.recv(65536) if ready else None
        except (OSError, ValueError) as e:
            with self._cond:
                if self._closed is None:
                    self._closed = "connection broke: %s" % e
            return
        with self._cond:
            if data is None:
                return
            if not data:
                if self._closed is None:
                    self._closed = "daemon closed the connection"
                return
            for msg in self._decoder.feed(data):
                if msg.type == XS_WATCH_EVENT:
                    self._events.append(xs_wire.parse_watch_event(msg.payload))
                elif msg.req_id in self._waiting:
                    self._replies[msg.req_id] = msg
                # else: a reply nobody waits for any more (timed out) - drop it
            if self._decoder.error and self._closed is None:
                self._closed = "bad message from daemon: %s" % self._decoder.error

    def _wait_for(self, get: Callable[[], Optional[T]], what: str, timeout: Optional[float]) -> T:
        t, deadline = self._deadline(timeout)
        pumped = False
        with self._cond:
            while True:
                got = get()
                if got is not None:
                    return got
                if self._closed is not None:
                    raise XenstoreClosed("%s: %s" % (what, self._closed))
                remaining = deadline - time.monotonic()
                # Even a zero timeout looks at the socket once (poll semantics).
                if remaining <= 0 and (pumped or self._reader_busy):
                    raise XenstoreTimeout(what, t)
                if self._reader_busy:
                    self._cond.wait(remaining)
                    continue
                self._reader_busy = True
                pumped = True
                self._cond.release()
                try:
                    self._pump(remaining)
                finally:
                    self._cond.acquire()
                    self._reader_busy = False
                    self._cond.notify_all()

    def request(self, type_: int, payload: bytes = b"", tx: int = 0,
                timeout: Optional[float] = None) -> bytes:
        """Send one request and return the reply payload; XS_ERROR raises XenstoreError."""
        reply = self.request_many([(type_, payload)], tx, timeout)[0]
        if isinstance(reply, XenstoreError):
            raise reply
        return reply

    def request_many(self, requests: List[Tuple[int, bytes]], tx: int = 0,
                     timeout: Optional[float] = None) -> List[Union[bytes, XenstoreError]]:
        """Send every (type, payload) of ``requests`` before waiting for a reply, and
        return each reply's payload or the XenstoreError it got, in order: one round
        trip for all, as the daemon answers a connection's requests in turn (start-up's
        dozens of nodes, docs/performance.md).  A timeout or a lost connection raises."""
        with self._cond:
            if self._closed is not None:
                raise XenstoreClosed(self._closed)
            ids = []
            for _ in requests:
                ids.append(self._next_req)
                self._next_req = (self._next_req + 1) & 0xFFFFFFFF or 1
            self._waiting.update(ids)
        whats = ["%s %r" % (xs_wire.Message(type_, 0, 0, b"").type_name, payload[:60])
                 for type_, payload in requests]
        t, deadline = self._deadline(timeout)
        results: List[Union[bytes, XenstoreError]] = []
        try:
            data = b"".join(xs_wire.encode(type_, req_id, tx, payload)
                            for (type_, payload), req_id in zip(requests, ids))
            try:
                with self._send_lock:
                    self._sock.sendall(data)
            except socket.timeout:
                raise XenstoreTimeout(whats[0] + " (send)", self.timeout) from None
            except OSError as e:
                raise XenstoreClosed("%s: send failed: %s" % (whats[0], e)) from None
            for (type_, _payload), req_id, what in zip(requests, ids, whats):
                reply = self._wait_for(lambda: self._replies.pop(req_id, None), what,
                                       max(0.0, deadline - time.monotonic()))
                if reply.type == XS_ERROR:
                    results.append(XenstoreError(xs_wire.parse_error(reply.payload), what))
                elif reply.type != type_:
                    results.append(XenstoreError("EIO", "%s: reply of type %d"
                                                 % (what, reply.type)))
                else:
                    results.append(reply.payload)
        finally:
            with self._cond:
                self._waiting.difference_update(ids)
                for req_id in ids:
                    self._replies.pop(req_id, None)
        return results

    # ------------------------------------------------------------ operations

    def read_bytes(self, path: str, tx: int = 0, timeout: Optional[float] = None) -> bytes:
        return self.request(XS_READ, xs_wire.one_arg(path), tx, timeout)

    def read(self, path: str, default: Optional[str] = None, tx: int = 0,
             timeout: Optional[float] = None) -> Optional[str]:
        """Value as str; ``default`` (None) when the node does not exist."""
        try:
            return xs_wire.to_str(self.read_bytes(path, tx, timeout))
        except XenstoreError as e:
            if e.errname == "ENOENT":
                return default
            raise

    def read_int(self, path: str, default: Optional[int] = None, tx: int = 0,
                 timeout: Optional[float] = None) -> Optional[int]:
        v = self.read(path, None, tx, timeout)
        if v is None:
            return default
        try:
            return int(v.strip(), 0)
        except ValueError:
            return default

    def read_many(self, paths: List[str], tx: int = 0,
                  timeout: Optional[float] = None) -> List[Optional[str]]:
        """read() of every path in one round trip (None: no such node)."""
        replies = self.request_many([(XS_READ, xs_wire.one_arg(p)) for p in paths], tx, timeout)
        for reply in replies:
            if isinstance(reply, XenstoreError) and reply.errname != "ENOENT":
                raise reply
        return [None if isinstance(r, XenstoreError) else xs_wire.to_str(r) for r in replies]

    def update_many(self, ops: List[Tuple[str, ...]], tx: int = 0,
                    timeout: Optional[float] = None) -> None:
        """("write", path, value), ("mkdir", path), ("set_perms", path, [perms]) and
        ("rm", path) in one round trip; the first failure is raised once all replied."""
        requests = []
        for op, path, *arg in ops:
            if op == "write":
                requests.append((XS_WRITE, xs_wire.write_payload(path, arg[0])))
            elif op == "set_perms" and arg[0]:
                requests.append((XS_SET_PERMS, xs_wire.join(path, *arg[0])))
            elif op in ("mkdir", "rm"):
                requests.append((XS_MKDIR if op == "mkdir" else XS_RM, xs_wire.one_arg(path)))
            else:
                raise ValueError("not an update: %r" % (op,))
        for reply in self.request_many(requests, tx, timeout):
            if isinstance(reply, XenstoreError):
                raise reply

    def exists(self, path: str, tx: int = 0, timeout: Optional[float] = None) -> bool:
        try:
            self.read_bytes(path, tx, timeout)
            return True
        except XenstoreError as e:
            if e.errname == "ENOENT":
                return False
            raise

    def write(self, path: str, value: Union[Value, int], tx: int = 0,
              timeout: Optional[float] = None) -> None:
        if isinstance(value, int):
            value = str(value)
        self.request(XS_WRITE, xs_wire.write_payload(path, value), tx, timeout)

    def mkdir(self, path: str, tx: int = 0, timeout: Optional[float] = None) -> None:
        self.request(XS_MKDIR, xs_wire.one_arg(path), tx, timeout)

    def rm(self, path: str, tx: int = 0, timeout: Optional[float] = None) -> None:
        self.request(XS_RM, xs_wire.one_arg(path), tx, timeout)

    def directory(self, path: str, tx: int = 0, timeout: Optional[float] = None) -> List[str]:
        payload = self.request(XS_DIRECTORY, xs_wire.one_arg(path), tx, timeout)
        return [xs_wire.to_str(c) for c in xs_wire.split_strings(payload)]

    def get_perms(self, path: str, tx: int = 0, timeout: Optional[float] = None) -> List[str]:
        """["n0", "r1", ...]: the owner entry (owner, others' access) first."""
        payload = self.request(XS_GET_PERMS, xs_wire.one_arg(path), tx, timeout)
        return [xs_wire.to_str(p) for p in xs_wire.split_strings(payload)]

    def set_perms(self, path: str, perms: List[str], tx: int = 0,
                  timeout: Optional[float] = None) -> None:
        if not perms:
            raise ValueError("at least the owner entry is needed")
        self.request(XS_SET_PERMS, xs_wire.join(path, *perms), tx, timeout)

    def get_domain_path(self, domid: int, timeout: Optional[float] = None) -> str:
        return xs_wire.to_str(xs_wire.split_strings(
            self.request(XS_GET_DOMAIN_PATH, xs_wire.one_arg(str(domid)), 0, timeout))[0])

    def introduce(self, domid: int, gfn: int = 0, port: int = 1,
                  timeout: Optional[float] = None) -> None:
        self.request(XS_INTRODUCE, xs_wire.join(str(domid), str(gfn), str(port)), 0, timeout)

    def release(self, domid: int, timeout: Optional[float] = None) -> None:
        self.request(XS_RELEASE, xs_wire.one_arg(str(domid)), 0, timeout)

    def is_domain_introduced(self, domid: int, timeout: Optional[float] = None) -> bool:
        return self.request(XS_IS_DOMAIN_INTRODUCED, xs_wire.one_arg(str(domid)), 0,
                            timeout).startswith(b"T")

    def reset_watches(self, timeout: Optional[float] = None) -> None:
        self.request(XS_RESET_WATCHES, b"", 0, timeout)
        with self._cond:
            self._events.clear()

    # ------------------------------------------------------------ watches

    def watch(self, path: str, token: str, timeout: Optional[float] = None) -> None:
        """Register a watch.  The daemon fires it once right away: expect an event."""
        self.request(XS_WATCH, xs_wire.join(path, token), 0, timeout)

    def unwatch(self, path: str, token: str, timeout: Optional[float] = None) -> None:
        self.request(XS_UNWATCH, xs_wire.join(path, token), 0, timeout)
        # Events already queued for this watch are stale now.
        with self._cond:
            self._events = collections.deque(
                e for e in self._events if not (e[1] == token and _covers(path, e[0])))

    def read_watch(self, timeout: Optional[float] = None) -> Tuple[str, str]:
        """Next (path, token) event; XenstoreTimeout if none arrives in time."""
        return self._wait_for(lambda: self._events.popleft() if self._events else None,
                              "waiting for a watch event", timeout)

    def poll_watch(self) -> Optional[Tuple[str, str]]:
        """Next queued or already-arrived event, without blocking."""
        try:
            return self.read_watch(timeout=0)
        except XenstoreTimeout:
            return None

    def pending_events(self) -> int:
        # No lock: the count is stale as soon as it is returned either way, and reading
        # the deque's length is atomic (blkback asks once per ring service).
        return len(self._events)

    def wait_for(self, predicate: Callable[[], Optional[T]], timeout: Optional[float] = None,
                 what: str = "condition") -> T:
        """Re-evaluate ``predicate`` (which may read xenstore) after every watch event
        until it returns something other than None/False; bounded by ``timeout``.
        The caller must have a watch covering what the predicate looks at."""
        t, deadline = self._deadline(timeout)
        while True:
            got = predicate()
            if got is not None and got is not False:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise XenstoreTimeout("waiting for " + what, t)
            try:
                self.read_watch(remaining)
            except XenstoreTimeout:
                raise XenstoreTimeout("waiting for " + what, t) from None

    # ------------------------------------------------------------ transactions

    def transaction_start(self, timeout: Optional[float] = None) -> int:
        payload = self.request(XS_TRANSACTION_START, b"\0", 0, timeout)
        return int(payload.rstrip(b"\0"))

    def transaction_end(self, tx: int, commit: bool = True, timeout: Optional[float] = None) -> None:
        """Commit (or abort); a conflicting commit raises XenstoreError("EAGAIN")."""
        self.request(XS_TRANSACTION_END, b"T\0" if commit else b"F\0", tx, timeout)

    def transaction(self, timeout: Optional[float] = None) -> "Transaction":
        """One attempt: ``with xs.transaction() as t: t.write(...)`` commits on success,
        aborts on exception, raises XenstoreError EAGAIN on conflict."""
        return Transaction(self, timeout, retrying=False)

    def transactions(self, retries: int = 32, timeout: Optional[float] = None) -> Iterator["Transaction"]:
        """Attempts until one commits; EAGAIN at commit (or raised inside) retries::

            for t in xs.transactions():
                with t:
                    n = int(t.read("counter") or 0)
                    t.write("counter", n + 1)
        """
        for _ in range(retries):
            t = Transaction(self, timeout, retrying=True)
            yield t
            if t.committed:
                return
            if not t.conflicted:
                raise RuntimeError("transaction attempt was not used in a with-block")
        raise XenstoreError("EAGAIN", "transaction still conflicting after %d attempts" % retries)

    def transact(self, body: Callable[["Transaction"], T], retries: int = 32,
                 timeout: Optional[float] = None) -> T:
        """Run ``body(t)`` in a transaction, re-running it on EAGAIN; returns its result."""
        result = None
        for t in self.transactions(retries, timeout):
            with t:
                result = body(t)
        return result


def _covers(watch_path: str, event_path: str) -> bool:
    """Whether an event path belongs to a watch on watch_path (same spelling)."""
    if watch_path == "/":
        return event_path.startswith("/")
    return event_path == watch_path or event_path.startswith(watch_path + "/")


DEFAULT_SOCKET = "/var/run/xenstored/socket"


def default_socket_path() -> str:
    """Where libxenstore would connect: $XENSTORED_PATH, else the standard socket."""
    return os.environ.get("XENSTORED_PATH") or DEFAULT_SOCKET


def connect(path: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT) -> XsClient:
    """XsClient.connect(path), path defaulting to default_socket_path()."""
    return XsClient.connect(path or default_socket_path(), timeout)


def from_socket(sock: socket.socket, timeout: float = DEFAULT_TIMEOUT) -> XsClient:
    return XsClient.from_socket(sock, timeout)
