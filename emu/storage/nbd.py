"""A small NBD client: the fixed-newstyle handshake and simple replies, nothing more.

blkback reads a non-raw image through an NBD export of the QEMU block layer
(qemu-storage-daemon or qemu-nbd).  Read payloads go straight into the caller's buffers
(for blkback: views of the granted guest pages) with socket.recv_into, so the data is
copied once, by the kernel; the buffers of one command are filled in order, which is
also what gives aliasing buffers the value of the last one.  The protocol is the one
in the NBD project's doc/proto.md; option haggling stops at NBD_OPT_EXPORT_NAME, which
every server speaks, and structured replies are never asked for.
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
_MAX_REQUEST = 32 << 20                    # what QEMU's server accepts in one command


class NbdError(OSError):
    """The server broke the protocol, went away, or answered a command with an error."""


class NbdClient:
    """One connection to one export (commands are sent one at a time)."""

    def __init__(self, sock, export_name="disk"):
        self.sock = sock
        self._handle = 0
        self.size, self.flags = self._handshake(export_name.encode())

    @classmethod
    def connect_unix(cls, path, export_name="disk", timeout=10.0):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
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
        total = sum(len(b) for b in buffers)
        self._check(offset, total)
        self._command(NBD_CMD_READ, offset, total)
        for buf in buffers:
            self._recv_into(buf)

    def write_from(self, offset, buffers):
        """Write the concatenation of ``buffers`` at ``offset``: one command."""
        total = sum(len(b) for b in buffers)
        self._check(offset, total)
        handle = self._send_request(NBD_CMD_WRITE, offset, total)
        for buf in buffers:
            self.sock.sendall(buf)
        self._reply(handle)

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
        if offset < 0 or length < 0 or offset + length > self.size or length > _MAX_REQUEST:
            raise ValueError("NBD request of %d bytes at %d outside the export (%d bytes)"
                             % (length, offset, self.size))

    def _command(self, cmd, offset, length):
        self._reply(self._send_request(cmd, offset, length))

    def _send_request(self, cmd, offset, length):
        self._handle = (self._handle + 1) & 0xFFFFFFFFFFFFFFFF
        self.sock.sendall(_REQUEST.pack(NBD_REQUEST_MAGIC, 0, cmd, self._handle, offset, length))
        return self._handle

    def _reply(self, handle):
        magic, error, got = _REPLY.unpack(self._recv_exact(_REPLY.size))
        if magic != NBD_SIMPLE_REPLY_MAGIC or got != handle:
            raise NbdError("unexpected NBD reply (magic %#x, handle %d)" % (magic, got))
        if error:
            raise NbdError(error, "NBD server error %d" % error)

    # ------------------------------------------------------------------ receiving

    def _recv_exact(self, n):
        buf = bytearray(n)
        self._recv_into(memoryview(buf))
        return bytes(buf)

    def _recv_into(self, view):
        got = 0
        length = len(view)
        recv_into = self.sock.recv_into
        while got < length:
            n = recv_into(view[got:] if got else view)
            if not n:
                raise NbdError("the NBD server closed the connection")
            got += n
