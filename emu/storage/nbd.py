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
The protocol is the one in the NBD project's doc/proto.md; option haggling stops at
NBD_OPT_EXPORT_NAME, which every server speaks, and structured replies are never asked
for (a simple error reply carries no payload).
"""
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


class NbdError(OSError):
    """The server broke the protocol, went away, or answered a command with an error."""


class NbdClient:
    """One connection to one export.  Reads may be pipelined (read_batch); writes and
    flushes are one command at a time.  After a broken exchange (timeout, a reply that
    matches nothing, the server gone) every later command fails: the stream is lost."""

    def __init__(self, sock, export_name="disk"):
        self.sock = sock
        self._handle = 0
        self._broken = None
        self._header = bytearray(_REPLY.size)
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
        export (then nothing is sent)."""
        self._usable()
        requests = bytearray()
        pending = {}
        for index, (offset, buffers) in enumerate(reads):
            total = sum(len(b) for b in buffers)
            self._check(offset, total)
            self._handle = handle = (self._handle + 1) & 0xFFFFFFFFFFFFFFFF
            requests += _REQUEST.pack(NBD_REQUEST_MAGIC, 0, NBD_CMD_READ, handle, offset, total)
            pending[handle] = (index, buffers)
        errors = [None] * len(reads)
        if not pending:
            return errors
        header = self._header
        try:
            self.sock.sendall(requests)
            self._recv_vectors([header])
            while True:
                magic, error, handle = _REPLY.unpack(header)
                entry = pending.pop(handle, None) if magic == NBD_SIMPLE_REPLY_MAGIC else None
                if entry is None:
                    raise NbdError("unexpected NBD reply (magic %#x, handle %d)"
                                   % (magic, handle))
                index, buffers = entry
                if error:
                    errors[index] = NbdError(error, "NBD server error %d" % error)
                    buffers = []
                if not pending:
                    if buffers:
                        self._recv_vectors(buffers)
                    return errors
                # This reply's payload and the next reply's header in one call.
                self._recv_vectors([*buffers, header])
        except OSError as e:
            self._break(e)
            raise NbdError(str(e)) from None

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

    def _check(self, offset, length):
        if offset < 0 or length < 0 or offset + length > self.size or length > MAX_REQUEST:
            raise ValueError("NBD request of %d bytes at %d outside the export (%d bytes)"
                             % (length, offset, self.size))

    def _command(self, cmd, offset, length, payload=()):
        """One command and its reply; NbdError with the server's errno when it fails
        the command (the connection stays usable)."""
        handle = self._send_request(cmd, offset, length)
        try:
            for buf in payload:
                self.sock.sendall(buf)
            magic, error, got = _REPLY.unpack(self._recv_exact(_REPLY.size))
            if magic != NBD_SIMPLE_REPLY_MAGIC or got != handle:
                raise NbdError("unexpected NBD reply (magic %#x, handle %d)" % (magic, got))
        except OSError as e:
            self._break(e)
            raise NbdError(str(e)) from None
        if error:
            raise NbdError(error, "NBD server error %d" % error)

    def _usable(self):
        if self.sock is None:
            raise NbdError("the NBD connection is closed")
        if self._broken is not None:
            raise NbdError("the NBD connection broke earlier: %s" % self._broken)

    def _break(self, why):
        if self._broken is None:
            self._broken = str(why) or type(why).__name__

    def _send_request(self, cmd, offset, length):
        self._usable()
        self._handle = (self._handle + 1) & 0xFFFFFFFFFFFFFFFF
        try:
            self.sock.sendall(_REQUEST.pack(NBD_REQUEST_MAGIC, 0, cmd, self._handle, offset,
                                            length))
        except OSError as e:
            self._break(e)
            raise NbdError(str(e)) from None
        return self._handle

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
            rest = []
            for buf in buffers:
                if got >= len(buf):
                    got -= len(buf)
                    continue
                rest.append(memoryview(buf)[got:] if got else buf)
                got = 0
            buffers = rest
