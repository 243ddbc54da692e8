"""`pvboot serve`: a warm server for pvboot commands (the client: tools/serve_client.py).

The server imports the command line, Unicorn and everything a boot loads once; each
command it is handed runs in a fork of it, which takes the client's stdio, arguments,
working directory, environment, umask and resource limits and runs the command
exactly as a fresh `pvboot` would (its own machine, xenstore daemon and blkback), so a
run through the server differs from one without it only in the start it skips.  While
no command runs, the server keeps one fork warmed up and waiting (the spare,
tools/serve_fork.py), which takes the next command.  The server itself stays
single-threaded, as fork needs.  It refuses (and the client runs the command itself)
a client of another interpreter or pvboot, any request once pvboot's files changed
(it then exits), and more than --max-commands at once.  docs/tools.md: "A warm server".
"""
import array
import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import time

import pvboot

from pvboot.tools import options, serve_client, serve_fork
from pvboot.tools.serve_request import BadRequest, code_fingerprint, limit_refusal, read_request

EXIT_OK, EXIT_USAGE = 0, 2
REQUEST_TIMEOUT = 2.0            # seconds a connected client has to send its request
STOP_GRACE = 10.0                # seconds running commands get at shutdown before SIGKILL
IDLE_EXIT = options.Range("--idle-exit", 0, 30 * 24 * 3600.0, False, "seconds",
                          why="0: never")
MAX_COMMANDS = options.Range("--max-commands", 1, 1024, True, "commands")
READY_PREFIX = "ready: a warmed-up fork ["
READY_LINE = READY_PREFIX + "{pid}] waits for the next command"


class Command:
    """A running command: its process, the client's connection, what it runs."""

    def __init__(self, pid, conn, argv, started):
        self.pid, self.conn, self.argv, self.started = pid, conn, argv, started


class Spare:
    """The fork that warms up while the server is idle; `control` is the server's end
    of the socket pair it says "ready" on and is handed its command through."""

    def __init__(self, pid, pidfd, control):
        self.pid, self.pidfd, self.control = pid, pidfd, control
        self.ready = False


class Server:
    """The listening socket, the running commands (by pidfd), the spare, and the loop
    over them."""

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
        self.children = {}       # pidfd -> Command
        self.spare = None
        self.use_spare = False
        self.stopping = None     # why the server stops
        self.served = 0
        self.last_activity = time.monotonic()
        self._wake = ()

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
    def serve(self, spare=True):
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake = (wake_r, wake_w)
        self.use_spare = spare

        def stop(signum, _frame):
            self.stopping = self.stopping or signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, stop)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        self._make_spare()
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
                    elif key.data == "spare-control":
                        self._spare_says()
                    elif key.data == "spare":
                        self._spare_ended()
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
            request, body, fds = read_request(conn)
            refusal = self._refusal(request)
            if refusal:
                self._send(conn, f"refused {refusal}")
                self.log(f"refused: {refusal}")
                conn.close()
                return
            self._start(conn, request, body, fds)
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
        return limit_refusal(request["rlimits"])

    # -- forks ---------------------------------------------------------------------------
    def _fork(self, body, also_close=()):
        """Fork; the child closes what is the server's (sockets through their objects,
        so that none closes a reused descriptor number later) and ends with body()'s
        code."""
        pid = os.fork()
        if pid == 0:
            self.selector.close()
            for sock in (self.listener, *also_close,
                         *(command.conn for command in self.children.values()),
                         *((self.spare.control,) if self.spare is not None else ())):
                sock.close()
            serve_fork.become_forked([*self._wake, *self.children,
                                      *((self.spare.pidfd,) if self.spare is not None else ())])
            serve_fork.end_fork(body)
        return pid

    def _start(self, conn, request, body, fds):
        started = time.monotonic()
        handed = None
        if self.spare is not None and self.spare.ready:
            handed = self._hand_to_spare(conn, body, fds)
        if handed is None:              # no spare ready (or it died): forked now
            pid = self._fork(lambda: serve_fork.run_command(self.command, conn, request, fds))
            pidfd = os.pidfd_open(pid)
        else:
            pid, pidfd = handed
        self.children[pidfd] = Command(pid, conn, request["argv"], started)
        self.selector.register(pidfd, selectors.EVENT_READ, "child")
        self._send(conn, f"accepted {pid}")

    def _hand_to_spare(self, conn, body, fds):
        """Give the ready spare the request as it came, the connection and the stdio;
        (pid, pidfd) of the process now running the command, or None if the spare
        could not take it (it is retired)."""
        spare, self.spare = self.spare, None
        self.selector.unregister(spare.control)
        self.selector.unregister(spare.pidfd)
        framed = serve_client.frame(body)
        descriptors = array.array("i", [conn.fileno(), *fds]).tobytes()
        try:
            sent = spare.control.sendmsg(
                [framed], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, descriptors)])
        except OSError as exc:          # it died meanwhile
            spare.control.close()
            code = self._retire(spare.pid, spare.pidfd)
            self.log(f"the spare [{spare.pid}] could not take a command ({exc}; exit {code})")
            return None
        # From here the command is the spare's, whatever happens: never run twice.  (It
        # reads the request and closes its end at once: nothing more is sent once all
        # of it is out.)
        try:
            if sent < len(framed):
                spare.control.sendall(framed[sent:])
        except OSError:
            pass                        # it reports the truncated request as exit 4
        spare.control.close()
        return spare.pid, spare.pidfd

    def _make_spare(self):
        """A new spare, if wanted and none is there: only while no command runs, so
        that its warm-up boot never competes with one."""
        if not self.use_spare or self.spare is not None or self.children or self.stopping:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = self._fork(lambda: serve_fork.spare_main(self.command, theirs), also_close=(ours,))
        theirs.close()
        self.spare = Spare(pid, os.pidfd_open(pid), ours)
        self.selector.register(ours, selectors.EVENT_READ, "spare-control")
        self.selector.register(self.spare.pidfd, selectors.EVENT_READ, "spare")

    def _spare_says(self):
        try:
            data = self.spare.control.recv(16)
        except OSError:
            data = b""
        if data == serve_fork.READY and not self.spare.ready:
            self.spare.ready = True
            self.log(READY_LINE.format(pid=self.spare.pid))
        elif not data:
            self.selector.unregister(self.spare.control)     # it ended: its pidfd says how

    def _spare_ended(self):
        """The spare ended before it had a command: not replaced until a command ends,
        so that a spare that cannot start does not fork in a loop."""
        spare, self.spare = self.spare, None
        try:
            self.selector.unregister(spare.control)
        except (KeyError, ValueError):
            pass
        spare.control.close()
        self.selector.unregister(spare.pidfd)
        code = self._retire(spare.pid, spare.pidfd)
        self.log(f"the spare [{spare.pid}] ended before it had a command (exit {code})")

    @staticmethod
    def _retire(pid, pidfd):
        """End a spare: SIGTERM (a warm-up boot then stops and cleans up as any run
        does), SIGKILL if it is still there after STOP_GRACE."""
        _signal(pid, signal.SIGTERM)
        with selectors.DefaultSelector() as waiting:
            waiting.register(pidfd, selectors.EVENT_READ)
            if not waiting.select(STOP_GRACE):
                _signal(pid, signal.SIGKILL)
        os.close(pidfd)
        _pid, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    def _reap(self, pidfd):
        command = self.children.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _pid, status, usage = os.wait4(command.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        # Logged before the client hears: whoever it tells finds the line there.
        self.log(f"[{command.pid}] {' '.join(command.argv)[:200]} -> exit {code} "
                 f"(wall {time.monotonic() - command.started:.3f} s, "
                 f"cpu {usage.ru_utime + usage.ru_stime:.3f} s)")
        self._send(command.conn, f"exit {code}")
        command.conn.close()
        self.served += 1
        self.last_activity = time.monotonic()
        self._make_spare()

    def _shut_down(self):
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass
        if self.spare is not None:
            spare, self.spare = self.spare, None
            for key in (spare.control, spare.pidfd):
                try:
                    self.selector.unregister(key)
                except (KeyError, ValueError):
                    pass
            spare.control.close()
            self._retire(spare.pid, spare.pidfd)
        for command in self.children.values():
            _signal(command.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self.children:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for command in self.children.values():
                    _signal(command.pid, signal.SIGKILL)
                deadline = time.monotonic() + STOP_GRACE
                remaining = STOP_GRACE
            for key, _events in self.selector.select(remaining):
                if key.data == "child":
                    self._reap(key.fd)
        self.log(f"stopped ({self.stopping}); {self.served} commands served")


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except OSError:
        pass


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
    p.add_argument("--no-spare", action="store_true",
                   help="fork each command when it comes, instead of into a fork made and "
                        "warmed up (one demo boot, output discarded) while the server is idle")
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

    try:        # the server waits on its commands' process descriptors (Linux 5.3)
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError) as exc:
        print(f"{prog}: error: needs process descriptors (pidfd_open, Linux 5.3 or later): "
              f"{getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return EXIT_USAGE
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
    return server.serve(spare=not args.no_spare)
