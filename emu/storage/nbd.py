"""A small NBD client: the fixed-newstyle handshake and simple replies, nothing more.

blkback reads a non-raw image through an NBD export of the QEMU block layer
(qemu-storage-daemon or qemu-nbd).  Reads are pipelined: all requests of a batch go out
in one send, then the replies (in whatever order the server sends them, matched by
handle) are received with recvmsg_into(MSG_WAITALL) straight into the caller's buffers
(for blkback: views of the granted guest pages), each payload together with the next
reply's header: one syscall per reply, the data copied once, by the kernel.  The
buffers of one command are filled in order, which is also what gives aliasing buffers
the value of the last one.  Waits are bounded by SO_RCVTIMEO/SO_SNDTIMEO on a blocking
socket, not by Python's socket timeout, which costs a poll() before every call.
A read may also be sent ahead (send_read): its reply is taken in later, by take(), in
non-blocking steps by pump() between other calls, or by any call whose own replies it
comes before (every reply is matched by its handle, so the server may answer in any
order).  The protocol is the one in the NBD project's doc/proto.md; option haggling stops at
NBD_OPT_EXPORT_NAME, which every server speaks, and structured replies are never asked
for (a simple error reply carries no payload).
"""
import os
import socket
import struct

NBDMAGIC = 0x4E42444D41474943              # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054              # "IHAVEOPT"
NBD_FLAG_FIXED_NEWSTYLE = 1 << 0
NBD_FLAG_NO_ZEROES = 1 << 1
NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0
NBD_FLAG_C_NO_ZEROES = 1 << 1
NBD_OPT_EXPORT_NAME = 1
NBD_FLAG_HAS_FLAGS = 1 << 0
NBD_FLAG_READ_ONLY = 1 << 1
NBD_FLAG_SEND_FLUSH = 1 << 2
NBD_REQUEST_MAGIC = 0x25609513
NBD_SIMPLE_REPLY_MAGIC = 0x67446698
NBD_CMD_READ = 0
NBD_CMD_WRITE = 1
NBD_CMD_DISC = 2
NBD_CMD_FLUSH = 3

_REQUEST = struct.Struct(">IHHQQI")        # magic, flags, type, handle, offset, length
_REPLY = struct.Struct(">IIQ")             # magic, error, handle
_TIMEVAL = struct.Struct("@ll")            # struct timeval for SO_RCVTIMEO / SO_SNDTIMEO
MAX_REQUEST = 32 << 20                     # what QEMU's server accepts in one command
# Most bytes pump() takes in one call: a request that comes meanwhile waits for it.
PUMP_STEP = 128 << 10


class NbdError(OSError):
    """The server broke the protocol, went away, or answered a command with an error."""


class _Reply:
    """Where one read's reply goes (``buffers``, in order), and what it said."""

    __slots__ = ("buffers", "error", "done")     # done: its header is in

    def __init__(self, buffers):
        self.buffers = buffers
        self.error = None
        self.done = False


class NbdClient:
    """One connection to one export.  Reads may be pipelined (read_batch) or sent ahead
    (send_read); writes and flushes are one command at a time (replies to reads sent
    ahead may come before theirs).  After a broken exchange (timeout, a reply that
    matches nothing, the server gone) every later command fails: the stream is lost."""

    def __init__(self, sock, export_name="disk"):
        self.sock = sock
        self._handle = 0
        self._broken = None
        self._header = bytearray(_REPLY.size)
        self._sent = {}                # handle -> _Reply of a send_read() not taken yet
        self._got = 0                  # bytes of a reply header pump() took in
        self._body = None              # the payload views pump() has yet to fill
        self.size, self.flags = self._handshake(export_name.encode())

    @classmethod
    def connect_unix(cls, path, export_name="disk", timeout=10.0):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            # Blocking from here on, bounded by the kernel's per-call timeouts.
            sock.settimeout(None)
            tv = _TIMEVAL.pack(int(timeout), int(timeout % 1 * 1e6))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
            return cls(sock, export_name)
        except BaseException:
            sock.close()
            raise

    @property
    def read_only(self):
        return bool(self.flags & NBD_FLAG_READ_ONLY)

    # ------------------------------------------------------------------ handshake

    def _handshake(self, name):
        magic, opt, server_flags = struct.unpack(">QQH", self._recv_exact(18))
        if magic != NBDMAGIC or opt != IHAVEOPT or not server_flags & NBD_FLAG_FIXED_NEWSTYLE:
            raise NbdError("not a fixed-newstyle NBD server")
        no_zeroes = server_flags & NBD_FLAG_NO_ZEROES
        client_flags = NBD_FLAG_C_FIXED_NEWSTYLE | (NBD_FLAG_C_NO_ZEROES if no_zeroes else 0)
        self.sock.sendall(struct.pack(">IQII", client_flags, IHAVEOPT, NBD_OPT_EXPORT_NAME,
                                      len(name)) + name)
        try:
            size, flags = struct.unpack(">QH", self._recv_exact(10))
        except NbdError:
            raise NbdError("the server has no export %r" % name.decode()) from None
        if not no_zeroes:
            self._recv_exact(124)
        return size, flags

    # ------------------------------------------------------------------ commands

    def read_into(self, offset, buffers):
        """Read sum(len(b)) bytes at ``offset`` into ``buffers`` (writable memoryviews of
        bytes), in order: one command for all of them."""
        error = self.read_batch([(offset, buffers)])[0]
        if error is not None:
            raise error

    def read_batch(self, reads):
        """Pipelined reads: ``reads`` is [(offset, buffers)], one command each, all sent
        before any reply is read.  Returns one entry per read: None, or the NbdError of
        a command the server failed (its buffers are left as they were).  Raises
        NbdError when the exchange itself breaks, ValueError for a read outside the
        export (then nothing is sent).  A reply to a send_read() met on the way is
        taken in too."""
        self._usable()
        requests = bytearray()
        replies = []
        pending = {}
        for offset, buffers in reads:
            total = sum(len(b) for b in buffers)
            self._check(offset, total)
            self._handle = handle = (self._handle + 1) & 0xFFFFFFFFFFFFFFFF
            requests += _REQUEST.pack(NBD_REQUEST_MAGIC, 0, NBD_CMD_READ, handle, offset, total)
            pending[handle] = reply = _Reply(buffers)
            replies.append(reply)
        if pending:
            self._exchange(requests, (), pending)
        return [reply.error for reply in replies]

    def send_read(self, offset, buffers):
        """Send a read command and return its handle without waiting for the reply: the
        server works on it while we do something else.  take(handle) collects it
        later; until then ``buffers`` belong to the client (any call that meets the
        reply on its way fills them)."""
        total = sum(len(b) for b in buffers)
        self._check(offset, total)
        handle = self._send_request(NBD_CMD_READ, offset, total)
        self._sent[handle] = _Reply(buffers)
        return handle

    def take(self, handle):
        """Wait for the reply to send_read's ``handle`` if it has not come yet: None, or
        the NbdError the server failed it with.  Raises NbdError when the exchange
        breaks."""
        reply = self._sent[handle]
        if not reply.done or self._body is not None:
            self._usable()
            try:
                # (pump() may have matched it and be part-way through its payload.)
                self._collect({} if reply.done else {handle: reply})
            except OSError as e:
                self._break(e)
                raise NbdError(str(e)) from None
        del self._sent[handle]
        return reply.error

    def pump(self):
        """Take in whatever has arrived of the replies to send_read()s, without waiting
        (only between other calls).  True while one is still to come: the caller
        has nothing better to do than call again, and every byte taken in frees
        the server's send buffer for the next ones.  Raises NbdError when the
        exchange breaks."""
        if self.sock is None or self._broken is not None:
            return False
        recv_into = self.sock.recv_into
        try:
            while True:
                if self._body is None:
                    if all(reply.done for reply in self._sent.values()):
                        return False
                    got = self._got
                    n = recv_into(memoryview(self._header)[got:], 0, socket.MSG_DONTWAIT)
                    if not n:
                        raise NbdError("the NBD server closed the connection")
                    self._got = got = got + n
                    if got < _REPLY.size:
                        return True
                    self._got = 0
                    buffers = self._match({})
                    if not buffers:
                        continue
                    self._body = list(buffers)
                got = self.sock.recvmsg_into(_upto(self._body, PUMP_STEP), 0,
                                             socket.MSG_DONTWAIT)[0]
                if not got:
                    raise NbdError("the NBD server closed the connection")
                self._body = _after(self._body, got)
                if self._body:
                    return True
                self._body = None
        except BlockingIOError:
            # Nothing more yet: the daemon has work queued (on this core, as a rule,
            # since we woke it); let it run now rather than at the end of our slice.
            os.sched_yield()
            return True
        except OSError as e:
            self._break(e)
            raise NbdError(str(e)) from None

    def outstanding(self):
        """The handles of send_read()s not taken yet."""
        return list(self._sent)

    def write_from(self, offset, buffers):
        """Write the concatenation of ``buffers`` at ``offset``: one command."""
        total = sum(len(b) for b in buffers)
        self._check(offset, total)
        self._command(NBD_CMD_WRITE, offset, total, buffers)

    def flush(self):
        if self.flags & NBD_FLAG_SEND_FLUSH:
            self._command(NBD_CMD_FLUSH, 0, 0)

    def close(self):
        if self.sock is None:
            return
        try:
            self._send_request(NBD_CMD_DISC, 0, 0)
        except OSError:
            pass             # the server is gone already
        self.sock.close()
        self.sock = None
        self._sent.clear()   # replies still out are the server's to drop
        self._body = None

    def _check(self, offset, length):
        if offset < 0 or length < 0 or offset + length > self.size or length > MAX_REQUEST:
            raise ValueError("NBD request of %d bytes at %d outside the export (%d bytes)"
                             % (length, offset, self.size))

    def _command(self, cmd, offset, length, payload=()):
        """One command and its reply; NbdError with the server's errno when it fails
        the command (the connection stays usable)."""
        self._usable()
        self._handle = handle = (self._handle + 1) & 0xFFFFFFFFFFFFFFFF
        reply = _Reply(())
        self._exchange(_REQUEST.pack(NBD_REQUEST_MAGIC, 0, cmd, handle, offset, length),
                       payload, {handle: reply})
        if reply.error is not None:
            raise reply.error

    def _exchange(self, requests, payload, pending):
        """Send ``requests`` (and a write's ``payload``), then receive until every
        reply in ``pending`` (handle -> _Reply) is in."""
        try:
            self.sock.sendall(requests)
            for buf in payload:
                self.sock.sendall(buf)
            self._collect(pending)
        except OSError as e:
            self._break(e)
            raise NbdError(str(e)) from None

    def _collect(self, pending):
        """Receive replies until none of ``pending`` is missing.  Replies come in the
        order the server finishes the commands: each is matched by handle, with those
        of send_read()s not taken yet (their data lands in their buffers).  A payload
        is received together with the next reply's header while one is due: one
        recvmsg per reply."""
        header = self._header
        if self._got:                     # pump() stopped inside a header
            self._recv_vectors([memoryview(header)[self._got:]])
            self._got = 0
            self._body = list(self._match(pending))
        if self._body is not None:        # ... or inside a payload
            body, self._body = self._body, None
            if body:
                self._recv_vectors(body)
        if not pending:
            return
        self._recv_vectors([header])
        while True:
            buffers = self._match(pending)
            if not pending:
                if buffers:
                    self._recv_vectors(buffers)
                return
            self._recv_vectors([*buffers, header])

    def _match(self, pending):
        """The reply whose header is in self._header: its handle looked up in
        ``pending`` (taken out of it), then among the send_read()s; marked done, with
        its error.  Returns the buffers its payload goes to."""
        magic, error, handle = _REPLY.unpack(self._header)
        reply = None
        if magic == NBD_SIMPLE_REPLY_MAGIC:
            reply = pending.pop(handle, None)
            if reply is None:
                reply = self._sent.get(handle)
                if reply is not None and reply.done:
                    reply = None
        if reply is None:
            raise NbdError("unexpected NBD reply (magic %#x, handle %d)" % (magic, handle))
        reply.done = True
        if error:
            reply.error = NbdError(error, "NBD server error %d" % error)
            return ()                     # a simple error reply carries no payload
        return reply.buffers

    def _usable(self):
        if self.sock is None:
            raise NbdError("the NBD connection is closed")
        if self._broken is not None:
            raise NbdError("the NBD connection broke earlier: %s" % self._broken)

    def _break(self, why):
        if self._broken is None:
            self._broken = str(why) or type(why).__name__

    def _send_request(self, cmd, offset, length):
        """Send a command that carries no payload without waiting for its reply."""
        self._usable()
        self._handle = handle = (self._handle + 1) & 0xFFFFFFFFFFFFFFFF
        try:
            self.sock.sendall(_REQUEST.pack(NBD_REQUEST_MAGIC, 0, cmd, handle, offset, length))
        except OSError as e:
            self._break(e)
            raise NbdError(str(e)) from None
        return handle

    # ------------------------------------------------------------------ receiving

    def _recv_exact(self, n):
        buf = bytearray(n)
        self._recv_vectors([memoryview(buf)])
        return bytes(buf)

    def _recv_vectors(self, buffers):
        """Fill ``buffers`` in order from the socket (MSG_WAITALL: usually one call)."""
        want = sum(len(b) for b in buffers)
        recvmsg_into = self.sock.recvmsg_into
        while True:
            got = recvmsg_into(buffers, 0, socket.MSG_WAITALL)[0]
            if got == want:
                return
            if not got:
                raise NbdError("the NBD server closed the connection")
            # Interrupted or timed out part-way: go on after what arrived.
            want -= got
            buffers = _after(buffers, got)


def _upto(buffers, limit):
    """The first ``limit`` bytes of ``buffers``."""
    first = []
    for buf in buffers:
        if len(buf) >= limit:
            first.append(buf if len(buf) == limit else memoryview(buf)[:limit])
            return first
        first.append(buf)
        limit -= len(buf)
    return first


def _after(buffers, got):
    """What is left of ``buffers`` once their first ``got`` bytes are filled."""
    rest = []
    for buf in buffers:
        if got >= len(buf):
            got -= len(buf)
            continue
        rest.append(memoryview(buf)[got:] if got else buf)
        got = 0
    return rest
