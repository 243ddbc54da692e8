"""`pvboot serve`: a warm server for pvboot commands (the client: tools/serve_client.py).

The server imports the command line, Unicorn and everything a boot loads once, then
forks one process per command it is handed; that process takes the client's stdio,
arguments, working directory, environment, umask and resource limits and runs the
command exactly as a fresh `pvboot` would (its own machine, xenstore daemon and
blkback), so a run through the server differs from one without it only in the start
it skips.  The server itself stays single-threaded, as fork needs.  It refuses
(and the client runs the command itself) when the client runs another interpreter
or another pvboot, when pvboot's files changed since it started (it then exits), or
when it is busy.  docs/tools.md: "A warm server".
"""
import array
import codecs
import fcntl
import gc
import importlib
import io
import os
import resource
import selectors
import signal
import socket
import sys
import tempfile
import threading
import time

import pvboot

from pvboot.tools import options, serve_client
from pvboot.tools.serve_client import MAX_REQUEST_BYTES

EXIT_OK, EXIT_USAGE, EXIT_INTERNAL = 0, 2, 4
REQUEST_TIMEOUT = 2.0            # seconds a connected client has to send its request
STOP_GRACE = 10.0                # seconds running commands get at shutdown before SIGKILL
IDLE_EXIT = options.Range("--idle-exit", 0, 30 * 24 * 3600.0, False, "seconds",
                          why="0: never")
MAX_COMMANDS = options.Range("--max-commands", 1, 1024, True, "commands")


def code_fingerprint(package_dir):
    """(path, mtime, size) of every file pvboot runs from: a changed file makes the
    server's loaded code stale."""
    entries = []
    for root, dirs, files in os.walk(package_dir, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".bin")):
                path = os.path.join(root, name)
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                entries.append((path, info.st_mtime_ns, info.st_size))
    return tuple(entries)


class BadRequest(Exception):
    pass


def parse_request(body):
    """The client's request (tools/serve_client.encode_request), every field checked."""
    fields = [os.fsdecode(f) for f in body.split(b"\0")]
    position = 0

    def take(count=1):
        nonlocal position
        if position + count > len(fields):
            raise BadRequest("truncated request")
        position += count
        return fields[position - count:position]

    def number(text, what, low, high, base=10):
        try:
            value = int(text, base)
        except ValueError:
            raise BadRequest(f"{what}: not a number") from None
        if not low <= value <= high:
            raise BadRequest(f"{what}: out of range")
        return value

    tag, python, version, package, argv0, cwd, umask = take(7)
    if tag != serve_client.TAG:
        raise BadRequest("another protocol")
    request = {"python": python, "version": version, "package": package, "argv0": argv0,
               "cwd": cwd, "umask": number(umask, "umask", 0, 0o777, 8)}
    request["argv"] = take(number(take()[0], "argc", 0, len(fields)))
    env = {}
    for item in take(number(take()[0], "envc", 0, len(fields))):
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise BadRequest("an environment entry without NAME=")
        env[name] = value
    request["env"] = env
    limits = {}
    for item in take(number(take()[0], "limitc", 0, 64)):
        parts = item.split(" ")
        if (len(parts) != 3 or not parts[0].startswith("RLIMIT_")
                or not hasattr(resource, parts[0])):
            raise BadRequest(f"bad resource limit {item[:40]!r}")
        limits[parts[0]] = tuple(number(v, parts[0], -1, 2**63 - 1) for v in parts[1:])
    request["rlimits"] = limits
    streams = []
    for item in take(3):
        parts = item.split(" ")
        if len(parts) != 4 or parts[2] not in "01" or parts[3] not in "01":
            raise BadRequest("bad stream settings")
        try:
            codecs.lookup(parts[0])
            codecs.lookup_error(parts[1])
        except LookupError:
            raise BadRequest(f"unknown encoding or error handler in {item[:40]!r}") from None
        streams.append({"encoding": parts[0], "errors": parts[1],
                        "line_buffering": parts[2] == "1", "write_through": parts[3] == "1"})
    request["streams"] = streams
    if position != len(fields):
        raise BadRequest("trailing fields")
    return request


def _limit_refusal(rlimits):
    """Why this server's child could not take the client's resource limits (a hard
    limit above the server's own), or None."""
    for name, (soft, hard) in rlimits.items():
        own_soft, own_hard = resource.getrlimit(getattr(resource, name))
        if own_hard != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY
                                                  or hard > own_hard):
            return f"{name} hard limit above the server's"
    return None


class Server:
    """The listening socket, the running commands (by pidfd) and the loop over both."""

    def __init__(self, path, idle_exit, max_commands, log, command=None, package=None):
        self.path = path
        self.command = command   # argv -> exit code: the command line's run()
        self.idle_exit = idle_exit
        self.max_commands = max_commands
        self.log = log
        self.package = package or os.path.dirname(os.path.abspath(pvboot.__file__))
        self.fingerprint = code_fingerprint(self.package)
        self.selector = selectors.DefaultSelector()
        self.listener = None
        self.children = {}       # pidfd -> (pid, connection, argv, started)
        self.stopping = None     # why the server stops
        self.served = 0
        self.last_activity = time.monotonic()

    # -- the socket ----------------------------------------------------------------------
    def listen(self):
        directory = os.path.dirname(self.path) or "."
        if self.path == serve_client.default_socket_path():
            # A shared /tmp: the default directory must be this user's own, as
            # ssh-agent's is.  The socket itself is mode 600 wherever it is, and
            # the server checks each client's uid (SO_PEERCRED).
            os.makedirs(directory, mode=0o700, exist_ok=True)
            info = os.stat(directory)
            if info.st_uid != os.getuid() or info.st_mode & 0o077:
                raise OSError(f"{directory}: must be this user's and closed to others (mode 700)")
        if os.path.lexists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(self.path)
                raise OSError(f"{self.path}: a server is serving there already")
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(self.path)             # left by a server that was killed
            finally:
                probe.close()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)
        try:
            self.listener.bind(self.path)
        finally:
            os.umask(old_umask)
        self.listener.listen(64)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")

    # -- the loop ------------------------------------------------------------------------
    def serve(self):
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake = (wake_r, wake_w)

        def stop(signum, _frame):
            self.stopping = self.stopping or signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, stop)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self.stopping:
                timeout = None
                if self.idle_exit and not self.children:
                    timeout = max(0.0, self.last_activity + self.idle_exit - time.monotonic())
                    if timeout == 0.0:
                        self.stopping = "idle"
                        break
                for key, _events in self.selector.select(timeout):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        try:
                            os.read(wake_r, 64)
                        except BlockingIOError:
                            pass
                    else:
                        self._reap(key.fd)
        finally:
            self._shut_down()
            signal.set_wakeup_fd(-1)
            os.close(wake_r)
            os.close(wake_w)
        return EXIT_OK

    def _accept(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.last_activity = time.monotonic()
        fds = []
        try:
            conn.settimeout(REQUEST_TIMEOUT)
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
                raise BadRequest("another user")
            request, fds = self._read_request(conn)
            refusal = self._refusal(request)
            if refusal:
                self._send(conn, f"refused {refusal}")
                self.log(f"refused: {refusal}")
                conn.close()
                return
            self._start(conn, request, fds)
        except (BadRequest, OSError) as exc:
            self.log(f"refused a request: {exc}")
            self._send(conn, f"refused {str(exc)[:200]}")
            conn.close()
        finally:
            for fd in fds:
                os.close(fd)

    @staticmethod
    def _send(conn, line):
        try:
            conn.sendall(line.encode("ascii", "replace")[:serve_client.MAX_LINE_BYTES] + b"\n")
        except OSError:
            pass

    @staticmethod
    def _read_request(conn):
        fds = array.array("i")
        data = bytearray()
        need = 4
        while len(data) < need:
            chunk, ancdata, _flags, _addr = conn.recvmsg(
                min(65536, need - len(data)), socket.CMSG_SPACE(3 * fds.itemsize))
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(cdata[:len(cdata) - len(cdata) % fds.itemsize])
            if not chunk:
                break
            data += chunk
            if need == 4 and len(data) >= 4:
                need = 4 + int.from_bytes(data[:4], "big")
                if need - 4 > MAX_REQUEST_BYTES:
                    for fd in fds:
                        os.close(fd)
                    raise BadRequest("request too long")
        fds = list(fds)
        if len(data) < need or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            raise BadRequest("truncated request" if len(data) < need else "three descriptors expected")
        try:
            return parse_request(bytes(data[4:need])), fds
        except BadRequest:
            for fd in fds:
                os.close(fd)
            raise

    def _refusal(self, request):
        if request["python"] != sys.executable or request["version"] != sys.version:
            return "another interpreter"
        if os.path.realpath(request["package"]) != os.path.realpath(self.package):
            return "another pvboot"
        if code_fingerprint(self.package) != self.fingerprint:
            self.stopping = "pvboot's files changed"
            return "stale: pvboot's files changed since the server started"
        if len(self.children) >= self.max_commands:
            return "busy"
        return _limit_refusal(request["rlimits"])

    def _start(self, conn, request, fds):
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            code = EXIT_INTERNAL
            try:
                self._close_server_fds(conn)
                code = run_command(self.command, conn, request, fds)
            except SystemExit as exc:          # argparse's --help and usage errors
                code = _system_exit_code(exc.code)
            except KeyboardInterrupt:
                code = 128 + signal.SIGINT
            except BaseException as exc:       # noqa: B036 - the fork must end here
                print(f"pvboot: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
            finally:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except (OSError, ValueError):
                        pass
                os._exit(code)
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = (pid, conn, request["argv"], started)
        self.selector.register(pidfd, selectors.EVENT_READ, "child")
        self._send(conn, f"accepted {pid}")

    def _close_server_fds(self, keep):
        signal.set_wakeup_fd(-1)
        for fd in list(self._wake) + list(self.children):
            os.close(fd)
        for _pid, conn, _argv, _started in self.children.values():
            if conn is not keep:
                conn.close()
        self.listener.close()
        self.selector.close()

    def _reap(self, pidfd):
        pid, conn, argv, started = self.children.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _pid, status, usage = os.wait4(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        # Logged before the client hears: whoever it tells finds the line there.
        self.log(f"[{pid}] {' '.join(argv)[:200]} -> exit {code} "
                 f"(wall {time.monotonic() - started:.3f} s, "
                 f"cpu {usage.ru_utime + usage.ru_stime:.3f} s)")
        self._send(conn, f"exit {code}")
        conn.close()
        self.served += 1
        self.last_activity = time.monotonic()

    def _shut_down(self):
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass
        for pid, *_rest in self.children.values():
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self.children:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for pid, *_rest in self.children.values():
                    _signal(pid, signal.SIGKILL)
                deadline = time.monotonic() + STOP_GRACE
                remaining = STOP_GRACE
            for key, _events in self.selector.select(remaining):
                if key.data == "child":
                    self._reap(key.fd)
        self.log(f"stopped ({self.stopping}); {self.served} commands served")


def _system_exit_code(value):
    """The exit status the interpreter gives sys.exit(value)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except OSError:
        pass


# -- the forked command -------------------------------------------------------------------
def run_command(command, conn, request, fds):
    """In the forked process: become the client's command and run it with `command`
    (the command line's run(): argv -> exit code)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setpgid(0, 0)             # the server's terminal signals are not the command's
    # Above 2 first, so that dup2 onto 0-2 cannot overwrite a descriptor still to move.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in fds]
    for fd in fds:
        os.close(fd)
    for target, fd in enumerate(high):
        os.dup2(fd, target)
        os.close(fd)
    streams = []
    for fd, settings, mode in zip((0, 1, 2), request["streams"], ("rb", "wb", "wb")):
        raw = io.open(fd, mode, buffering=-1 if fd == 0 else 0, closefd=False)
        binary = raw if fd == 0 else io.BufferedWriter(raw)
        streams.append(io.TextIOWrapper(binary, encoding=settings["encoding"],
                                        errors=settings["errors"],
                                        line_buffering=settings["line_buffering"],
                                        write_through=settings["write_through"]))
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams
    os.umask(request["umask"])
    for name, (soft, hard) in request["rlimits"].items():
        try:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        except (OSError, ValueError) as exc:
            print(f"pvboot: error: cannot take the resource limit {name}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    os.environ.clear()
    os.environ.update(request["env"])
    # What the standard library read from the server's environment and kept.
    tempfile.tempdir = None
    time.tzset()
    try:
        os.chdir(request["cwd"])
    except OSError as exc:
        print(f"pvboot: error: cannot enter the working directory: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.argv = [request["argv0"], *request["argv"]]

    def watch_client():
        # The client going away (killed, its terminal closed) ends the command as
        # SIGTERM would: stopped after the current instruction, everything closed.
        try:
            while conn.recv(64):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    conn.settimeout(None)
    threading.Thread(target=watch_client, name="pvboot-client", daemon=True).start()
    return command(request["argv"])


# -- `pvboot serve` -----------------------------------------------------------------------
def build_parser(prog="pvboot serve"):
    p = options.OneLineParser(
        prog=prog, description="Serve pvboot commands from a warm process: each command "
        "this user runs while it serves skips the interpreter's and pvboot's start "
        f"(set {serve_client.ENV_VAR}=off to bypass it).",
        epilog="exit codes: 0 stopped (signal, idle, pvboot's files changed), "
               "2 usage error or the socket cannot be served")
    p.add_argument("--socket", metavar="PATH", default=None,
                   help=f"where to listen (default: ${serve_client.ENV_VAR} if it is a path, "
                        f"else {serve_client.default_socket_path()})")
    p.add_argument("--idle-exit", type=IDLE_EXIT,
                   default=3600.0, metavar="SECONDS",
                   help="stop after this long with nothing to do (default 3600; 0: never)")
    p.add_argument("--max-commands", default=64, metavar="N", type=MAX_COMMANDS,
                   help="commands run at once; more run without the server (default 64)")
    return p


def main(argv, prog, command, warm_up):
    """`pvboot serve`; command: the command line's run() (argv -> exit code), which
    each fork calls; warm_up: builds what the forks would otherwise build first (the
    common subcommands' parsers)."""
    args = build_parser(prog).parse_args(argv)
    path = args.socket
    if path is None:
        setting = os.environ.get(serve_client.ENV_VAR, "")
        path = setting if setting and setting.lower() not in serve_client.OFF_VALUES \
            else serve_client.default_socket_path()
    path = os.path.abspath(path)
    if len(os.fsencode(path)) > 107:
        print(f"{prog}: error: {path}: too long for a Unix socket (at most 107 bytes)",
              file=sys.stderr)
        return EXIT_USAGE

    def log(line):
        print(f"{prog}: {line}", file=sys.stderr, flush=True)

    warm_up()
    importlib.import_module("pvboot.tools.demo")     # the default disk's builder
    gc.freeze()         # what the forks share is never scanned (nor copied) by their collections
    server = Server(path, args.idle_exit, args.max_commands, log, command=command)
    try:
        server.listen()
    except OSError as exc:
        print(f"{prog}: error: {exc.strerror + ': ' + path if exc.strerror else exc}",
              file=sys.stderr)
        return EXIT_USAGE
    log(f"serving on {path} (pid {os.getpid()}); pvboot commands of this user go through "
        f"it ({serve_client.ENV_VAR}=off: not)")
    return server.serve()
