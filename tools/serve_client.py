"""The thin side of `pvboot serve`: hands this command to a warm server, if one runs.

console_main calls run_through_server before it imports anything else, so a command
that goes through a server pays for the interpreter and this module only: the server
forks a process that has pvboot, Unicorn and argparse loaded already, and gives it
this process's stdin, stdout and stderr (SCM_RIGHTS), arguments, working directory,
environment, umask and resource limits.  The request's bytes are described here and
nowhere else (tools/serve.py reads them).  docs/tools.md: "A warm server".
"""
import _socket      # not `socket`: its enum classes cost the client ~4 ms to import
import array
import os
import resource
import signal
import stat
import sys

import pvboot

ENV_VAR = "PVBOOT_SERVER"        # a socket path, or off/0/no/none
OFF_VALUES = ("off", "0", "no", "none")
PROTOCOL = 1
MAX_REQUEST_BYTES = 1 << 20      # argv + environment; a longer request is refused
MAX_LINE_BYTES = 256             # the server's replies: "accepted PID", "refused WHY", "exit N"
REPLY_TIMEOUT = 10.0             # seconds from connect to "accepted"/"refused"
FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
EXIT_INTERNAL = 4


def default_socket_path():
    """$XDG_RUNTIME_DIR/pvboot/server.sock, else /tmp/pvboot-UID/server.sock."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    base = (os.path.join(runtime, "pvboot") if os.path.isabs(runtime)
            else f"/tmp/pvboot-{os.getuid()}")
    return os.path.join(base, "server.sock")


def socket_path():
    """The server socket this command should use, or None: PVBOOT_SERVER (a path, or
    off), else the default path if a socket of this user's is there."""
    setting = os.environ.get(ENV_VAR, "")
    if setting.strip().lower() in OFF_VALUES:
        return None
    path = setting or default_socket_path()
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        return None
    return path


def _stdio_open():
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            return False
    return True


def _stream_settings(stream):
    """How the server's child rebuilds this stream (encoding, errors, buffering)."""
    return {"encoding": getattr(stream, "encoding", None) or "utf-8",
            "errors": getattr(stream, "errors", None) or "strict",
            "line_buffering": bool(getattr(stream, "line_buffering", False)),
            "write_through": bool(getattr(stream, "write_through", False))}


def build_request(argv):
    """The request's fields (encode_request puts them on the wire)."""
    limits = {}
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            try:
                limits[name] = resource.getrlimit(getattr(resource, name))
            except (OSError, ValueError):
                pass
    mask = os.umask(0o022)
    os.umask(mask)
    return {"argv0": sys.argv[0] if sys.argv else "pvboot", "argv": list(argv),
            "cwd": os.getcwd(), "env": dict(os.environ), "umask": mask, "rlimits": limits,
            "python": sys.executable, "version": sys.version,
            "package": os.path.dirname(os.path.abspath(pvboot.__file__)),
            "streams": [_stream_settings(s) for s in (sys.stdin, sys.stdout, sys.stderr)]}


# The request on the wire: a 4-byte big-endian length, then NUL-separated fields (no
# field can hold a NUL: argv, environment and paths are C strings), in this order:
#   TAG, python, version, package, argv0, cwd, umask (octal),
#   argc, argv...,  envc, NAME=VALUE...,  limitc, "RLIMIT_X SOFT HARD"...,
#   3 x "ENCODING ERRORS LINE_BUFFERING WRITE_THROUGH" (stdin, stdout, stderr)
# (a plain format: json would cost the client ~2.5 ms of imports).
TAG = f"pvboot-serve {PROTOCOL}"


def encode_request(request):
    fields = [TAG, request["python"], request["version"], request["package"],
              request["argv0"], request["cwd"], f"{request['umask']:o}",
              str(len(request["argv"])), *request["argv"],
              str(len(request["env"])), *(f"{k}={v}" for k, v in request["env"].items()),
              str(len(request["rlimits"])),
              *(f"{name} {soft} {hard}" for name, (soft, hard) in request["rlimits"].items()),
              *(f"{s['encoding']} {s['errors']} {int(s['line_buffering'])} "
                f"{int(s['write_through'])}" for s in request["streams"])]
    return frame(b"\0".join(os.fsencode(f) for f in fields))


def frame(body):
    """The request's framing: a 4-byte big-endian length, then the body."""
    return len(body).to_bytes(4, "big") + body


def read_line(sock):
    """One reply line, at most MAX_LINE_BYTES; b"" if the server closed first."""
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            return b""
        line += chunk
        if len(line) > MAX_LINE_BYTES:
            raise OSError("reply line too long")
    return bytes(line[:-1])


def run_through_server(argv):
    """Run argv through the server and return its exit code, or None to run it here:
    no server, a server that refuses (other code, other interpreter, busy) or cannot
    be reached.  Once the server has the request, the command is never run twice."""
    if argv[:1] == ["serve"] or not _stdio_open():
        return None
    path = socket_path()
    if path is None:
        return None
    try:
        payload = encode_request(build_request(argv))
    except (OSError, ValueError, TypeError):
        return None
    if len(payload) > MAX_REQUEST_BYTES:
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
    sock.settimeout(REPLY_TIMEOUT)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    try:
        fds = array.array("i", (0, 1, 2)).tobytes()
        sent = sock.sendmsg([payload], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        if sent < len(payload):
            sock.sendall(payload[sent:])
        reply = read_line(sock)
    except OSError as exc:
        return _lost(path, f"no answer to the request ({exc})")
    if reply.startswith(b"refused"):
        sock.close()
        return None
    if not reply.startswith(b"accepted "):
        return _lost(path, "it closed the connection")
    try:
        child = int(reply.split()[1])
    except (IndexError, ValueError):
        return _lost(path, "it sent a malformed reply")

    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except OSError:
            pass

    for name in FORWARDED_SIGNALS:
        signal.signal(getattr(signal, name), forward)
    sock.settimeout(None)           # the run's own --timeout bounds it
    try:
        reply = read_line(sock)
    except OSError as exc:
        return _lost(path, f"the connection failed ({exc})")
    try:
        if reply.startswith(b"exit "):
            return int(reply.split()[1])
    except (IndexError, ValueError):
        pass
    return _lost(path, "it went away before the run ended")


def _lost(path, why):
    print(f"pvboot: internal error: the server at {path}: {why}", file=sys.stderr)
    return EXIT_INTERNAL
