"""The daemon (C xenstored_core): sockets, connections, the main loop, dispatch.

One selectors-driven thread serves every connection; a client that sends garbage,
stops reading or disappears only loses its own connection.  Clients of the main
socket are dom0 (privileged); connect_domain(N) and listen_domain(N, path) give
connections of domain N.  docs/xenstore.md describes the behaviour in full.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import threading
import traceback
from typing import Dict, List, Optional

from .. import xs_wire
from ..abi import (XENSTORE_PAYLOAD_MAX, XS_CONTROL, XS_DIRECTORY, XS_DIRECTORY_PART, XS_ERROR,
                   XS_GET_DOMAIN_PATH, XS_GET_PERMS, XS_INTRODUCE, XS_IS_DOMAIN_INTRODUCED,
                   XS_MKDIR, XS_READ, XS_RELEASE, XS_RESET_WATCHES, XS_RESUME, XS_RM,
                   XS_SET_PERMS, XS_SET_TARGET, XS_TRANSACTION_END, XS_TRANSACTION_START,
                   XS_UNWATCH, XS_WATCH, XS_WRITE)
from ..xs_wire import Message, XenstoreError
from . import domain, node_ops, transaction, watch
from .connection import Conn, Listener, bind_unix
from .api import InProcessApi
from .quota import DEFAULT_LIMITS, Limits
from .store import Store

# Levels of the daemon's diagnostics (logging's numbers).  It writes them itself: pvboot
# starts this daemon on every PV boot, and importing logging was part of that start-up.
DEBUG, INFO, WARNING = 10, 20, 30

# Output a client has not read yet; beyond this it is not reading and gets dropped.
MAX_OUTPUT_BUFFER = 16 << 20

# type -> (handler, privileged only, looks up the header's transaction)
HANDLERS = {
    XS_CONTROL: (domain.do_control, True, True),
    XS_DIRECTORY: (node_ops.do_directory, False, True),
    XS_READ: (node_ops.do_read, False, True),
    XS_GET_PERMS: (node_ops.do_get_perms, False, True),
    XS_WATCH: (watch.do_watch, False, False),
    XS_UNWATCH: (watch.do_unwatch, False, False),
    XS_TRANSACTION_START: (transaction.do_transaction_start, False, True),
    XS_TRANSACTION_END: (transaction.do_transaction_end, False, True),
    XS_INTRODUCE: (domain.do_introduce, True, True),
    XS_RELEASE: (domain.do_release, True, True),
    XS_GET_DOMAIN_PATH: (domain.do_get_domain_path, False, True),
    XS_WRITE: (node_ops.do_write, False, True),
    XS_MKDIR: (node_ops.do_mkdir, False, True),
    XS_RM: (node_ops.do_rm, False, True),
    XS_SET_PERMS: (node_ops.do_set_perms, False, True),
    XS_IS_DOMAIN_INTRODUCED: (domain.do_is_domain_introduced, True, True),
    XS_RESUME: (domain.do_resume, True, True),
    XS_SET_TARGET: (domain.do_set_target, True, True),
    XS_RESET_WATCHES: (watch.do_reset_watches, False, True),
    XS_DIRECTORY_PART: (node_ops.do_directory_part, False, True),
}


class XenstoreDaemon(InProcessApi):
    """The daemon.  start()/stop() (or a with-block) run it in a thread, serve_forever()
    in the calling thread.  All public methods are thread-safe."""

    def __init__(self, socket_path: Optional[str] = None, *,
                 domain_sockets: Optional[Dict[int, str]] = None,
                 limits: Limits = DEFAULT_LIMITS, log_level: int = WARNING):
        self.socket_path = socket_path
        self.log_level = log_level       # diagnostics at or above it go to stderr
        self.limits = limits
        self.store = Store()
        self.introduced = {0}
        self.targets: Dict[int, int] = {}
        self.conns: List[Conn] = []
        self._domain_socket_paths = dict(domain_sockets or {})
        self._lock = threading.RLock()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._listeners: List[Listener] = []
        self._to_close: List[Conn] = []
        self._dirty: set = set()
        self._stop_requested = False
        self._thread: Optional[threading.Thread] = None
        self._running = threading.Event()
        self._api_conn = Conn(None, 0, True, "in-process API")
        self._closed = False

    # -- lifecycle

    def _bind(self, path: str, domid: int) -> None:
        s = bind_unix(os.fspath(path))
        with self._lock:
            lst = Listener(s, os.fspath(path), domid)
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
                self._log(WARNING, "thread did not stop within %.1fs", timeout)
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
            for c in list(self.conns):
                self.close(c, "daemon stopping")
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
        except OSError:
            pass     # pipe full: a wake-up is pending anyway

    def _log(self, level: int, message: str, *args, trace: bool = False) -> None:
        if level >= self.log_level:
            print("xenstored: " + (message % args if args else message), file=sys.stderr)
            if trace:
                traceback.print_exc()

    # -- connections

    def connect_domain(self, domid: int) -> socket.socket:
        """A connected socket whose requests come from domain ``domid`` (privileged
        only for dom0).  Introduces the domain if needed."""
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

    def _adopt(self, sock: socket.socket, domid: int, desc: str) -> Conn:
        sock.setblocking(False)
        conn = Conn(sock, domid, domid == 0, desc)
        with self._lock:
            if self._closed:
                sock.close()
                raise RuntimeError("daemon stopped")
            self.conns.append(conn)
            domain.introduce(self, domid)
        self._wake()
        return conn

    def _accept(self, lst: Listener) -> None:
        while True:
            try:
                s, _ = lst.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._log(INFO, "accept on %s failed: %s", lst.path, e)
                return
            self._adopt(s, lst.domid, "%s client (domain %d)" % (lst.path, lst.domid))

    def close(self, conn: Conn, why: str) -> None:
        """Drop ``conn`` with its watches and transactions (socket closed by the loop)."""
        if conn.closed:
            return
        self._log(DEBUG, "closing %s: %s", conn.desc, why)
        conn.closed = True
        conn.watches.clear()
        conn.txs.clear()
        conn.requests.clear()
        conn.reply_ends.clear()
        conn.out.clear()
        if conn in self.conns:
            self.conns.remove(conn)
        self._dirty.discard(conn)
        self._to_close.append(conn)
        self._wake()

    def _reap(self) -> None:
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
        for conn in self.conns:
            # Requests still queued (outstanding quota) or the end of the stream: do
            # not read further until they are processed.
            idle = not (conn.requests or conn.read_eof or conn.decoder.error)
            want = ((selectors.EVENT_READ if idle else 0)
                    | (selectors.EVENT_WRITE if conn.out else 0))
            if want == conn.registered_mask:
                continue
            if not want:
                self._sel.unregister(conn.sock)
            elif conn.registered_mask:
                self._sel.modify(conn.sock, want, conn)
            else:
                self._sel.register(conn.sock, want, conn)
            conn.registered_mask = want

    # -- main loop

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
                        elif isinstance(data, Listener):
                            self._accept(data)
                        elif not data.closed:
                            if mask & selectors.EVENT_WRITE:
                                self._flush(data)
                            if mask & selectors.EVENT_READ and not data.closed:
                                self._on_readable(data)
                    self._flush_dirty()
        except Exception:
            self._log(WARNING, "loop crashed", trace=True)
            raise

    def _on_readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.close(conn, "recv: %s" % e)
            return
        if data:
            conn.requests.extend(conn.decoder.feed(data))
        else:
            conn.read_eof = True
        self._advance(conn)

    def _throttled(self, conn: Conn) -> bool:
        """C xenstored's outstanding quota: a domain with that many replies it has not
        read yet gets no further requests processed until it reads them."""
        limit = self.limits.outstanding
        return not conn.privileged and limit > 0 and len(conn.reply_ends) >= limit

    def _advance(self, conn: Conn) -> None:
        """Process the queued requests the outstanding quota allows; then, once none
        are left, act on a framing error or end of stream."""
        while conn.requests and not conn.closed and not self._throttled(conn):
            self._process(conn, conn.requests.popleft())
        if conn.closed or conn.requests:
            return
        if conn.decoder.error:
            # C xenstored ignores such a client: the stream cannot be resynchronised.
            self._log(INFO, "dropping %s: %s", conn.desc, conn.decoder.error)
            self._flush(conn)        # best effort: the replies to its valid requests
            self.close(conn, conn.decoder.error)
        elif conn.read_eof:
            self._flush(conn)
            self.close(conn, "EOF" + (" inside a message" if conn.decoder.pending else ""))

    def send(self, conn: Conn, data: bytes, is_reply: bool = False) -> None:
        if conn.closed or conn.sock is None:
            return
        conn.out += data
        conn.queued += len(data)
        if is_reply:
            conn.reply_ends.append(conn.queued)
        if len(conn.out) > MAX_OUTPUT_BUFFER:
            self.close(conn, "not reading its replies/events")
            return
        self._dirty.add(conn)

    def _flush(self, conn: Conn) -> None:
        while conn.out and not conn.closed:
            try:
                n = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self.close(conn, "send: %s" % e)
                return
            del conn.out[:n]
            conn.sent += n
            while conn.reply_ends and conn.reply_ends[0] <= conn.sent:
                conn.reply_ends.popleft()

    def _flush_dirty(self) -> None:
        flushed = set()
        while True:
            dirty, self._dirty = self._dirty, set()
            for conn in dirty:
                self._flush(conn)
            flushed |= dirty
            # replies that went out may let held-back requests through
            ready = [c for c in self.conns if c.requests and not self._throttled(c)]
            for conn in ready:
                self._advance(conn)
            if not ready and not self._dirty:
                break
        if any(c.out or c.requests for c in flushed if not c.closed):
            self._wake()     # the loop must update what it waits for

    # -- requests

    def reply(self, conn: Conn, msg: Message, type_: int, payload: bytes) -> None:
        if len(payload) > XENSTORE_PAYLOAD_MAX:
            type_, payload = XS_ERROR, xs_wire.error_payload("E2BIG")
        self.send(conn, xs_wire.encode(type_, msg.req_id, msg.tx_id, payload), is_reply=True)

    def _process(self, conn: Conn, msg: Message) -> None:
        handler = HANDLERS.get(msg.type)
        try:
            if handler is None:
                raise XenstoreError("ENOSYS")
            func, priv_only, uses_tx = handler
            if priv_only and not conn.privileged:
                raise XenstoreError("EACCES")
            tx = None
            if uses_tx and msg.tx_id != 0:
                tx = conn.txs.get(msg.tx_id)
                if tx is None:
                    raise XenstoreError("ENOENT")
            result = func(self, conn, msg, tx)
        except XenstoreError as e:
            self.reply(conn, msg, XS_ERROR, xs_wire.error_payload(e.errname))
            return
        except Exception:
            # A daemon bug: it costs this client its connection, never the others
            # their service (requests apply their changes only once they succeed).
            self._log(WARNING, "%s from %s failed", msg.type_name, conn.desc, trace=True)
            self.close(conn, "internal error")
            return
        if result is not None:
            self.reply(conn, msg, msg.type, result)

    # -- in-process API (the calls themselves: api.py)

    def _api(self, type_: int, payload: bytes, domid: int = 0):
        """Run one request as ``domid`` (dom0 by default) without a socket."""
        conn = self._api_conn if domid == 0 else Conn(None, domid, False, "API as %d" % domid)
        with self._lock:
            func = HANDLERS[type_][0]
            try:
                return func(self, conn, Message(type_, 0, 0, payload), None)
            except XenstoreError as e:
                raise XenstoreError(e.errname, payload.split(b"\0", 1)[0].decode("ascii", "replace"))
            finally:
                self._flush_dirty()
