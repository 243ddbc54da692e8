"""The GDB remote protocol's transport for the stub (emu/gdbstub.py): the --gdb
address, $payload#checksum framing with acks, and a reader thread per debugger that
turns its byte stream into packets, Ctrl-C (0x03) and hang-up events, so that the
emulation thread only ever waits on a queue (bounded polls) while it serves GDB.
"""
import queue
import socket
import threading

POLL = 0.5                      # queue polls (checks for a closed session)


class GdbAddressError(ValueError):
    """A --gdb value that is not [HOST:]PORT."""


def parse_address(text, default_host="127.0.0.1"):
    """(host, port) from "[HOST:]PORT"; port 0 asks the system for a free one."""
    host, _, port_text = str(text).rpartition(":")
    host = host.strip("[]") or default_host
    try:
        port = int(port_text, 10)
    except ValueError:
        raise GdbAddressError(f"--gdb {text!r}: the port is not a number (use [HOST:]PORT)") \
            from None
    if not 0 <= port <= 0xFFFF:
        raise GdbAddressError(f"--gdb {text!r}: port {port} is outside 0..65535")
    return host, port


def checksum(data):
    return sum(data) & 0xFF


def frame(payload):
    """`payload` (bytes) as a packet: $payload#cs."""
    return b"$" + payload + b"#%02x" % checksum(payload)


class Connection:
    """One debugger's socket: a reader thread splits the byte stream into packets
    (acknowledged as they arrive), Ctrl-C bytes and the end of the stream."""

    def __init__(self, sock, on_interrupt):
        self.sock = sock
        self.events = queue.Queue()
        self.closed = threading.Event()
        self._send_lock = threading.Lock()
        self._on_interrupt = on_interrupt
        self._thread = threading.Thread(target=self._read, name="pvboot-gdb", daemon=True)
        self._thread.start()

    def _read(self):
        buffer = b""
        try:
            while True:
                data = self.sock.recv(4096)
                if not data:
                    break
                buffer = self._parse(buffer + data)
        except OSError:
            pass
        self.closed.set()
        self.events.put(("closed", None))
        self._on_interrupt()               # the run loop must notice even while it runs

    def _parse(self, buffer):
        while buffer:
            if buffer[0] == 0x03:
                buffer = buffer[1:]
                self._on_interrupt()
                continue
            start = buffer.find(b"$")
            if start < 0:
                return b""                 # acks and noise
            if 0x03 in buffer[:start]:
                buffer = b"\x03" + buffer[start:]
                continue
            end = buffer.find(b"#", start)
            if end < 0 or len(buffer) < end + 3:
                return buffer[start:]      # the rest of the packet is still to come
            payload, sent = buffer[start + 1:end], buffer[end + 1:end + 3]
            buffer = buffer[end + 3:]
            try:
                good = int(sent, 16) == checksum(payload)
            except ValueError:
                good = False
            self._raw_send(b"+" if good else b"-")
            if good:
                self.events.put(("packet", payload.decode("latin-1")))
        return buffer

    def _raw_send(self, data):
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed.set()

    def send(self, text):
        self._raw_send(frame(text.encode("latin-1")))

    def next_packet(self):
        """The next packet, or None once the debugger has gone."""
        while True:
            try:
                kind, payload = self.events.get(timeout=POLL)
            except queue.Empty:
                if self.closed.is_set():
                    return None
                continue
            if kind == "closed":
                return None
            return payload

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(timeout=5)
