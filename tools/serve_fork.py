"""The forked side of `pvboot serve`: a process that becomes the client's command.

Either a fresh fork of the server, or the spare: a fork made while the server is idle,
which boots the built-in demo disk once with its output discarded and then waits for
a command.  That boot is what a fork otherwise pays at its first boot: ~1,000 pages of
the server's heap copied on first write, blkback forked from a fresh process, the
firmware's first-use caches; the command then runs ~10 ms sooner (docs/tools.md).
"""
import fcntl
import gc
import io
import os
import resource
import signal
import socket
import sys
import tempfile
import threading
import time

from pvboot.tools.serve_request import NO_REQUEST, BadRequest, read_request

EXIT_USAGE, EXIT_INTERNAL = 2, 4
WARM_UP_COMMAND = ("demo", "--quiet", "--timeout", "10")
READY = b"r"


def become_forked(server_fds):
    """First thing in any fork of the server: its descriptors closed, its signal
    handlers gone, a process group of its own (so the server's terminal's Ctrl-C is
    not the command's)."""
    signal.set_wakeup_fd(-1)
    for fd in server_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setpgid(0, 0)


def end_fork(body):
    """Run body() in a fork and end the process with its exit code, whatever it raises."""
    code = EXIT_INTERNAL
    try:
        code = body()
    except SystemExit as exc:          # argparse's --help and usage errors
        code = system_exit_code(exc.code)
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
        os._exit(code if isinstance(code, int) else EXIT_INTERNAL)


def spare_main(command, control):
    """The spare's life: warm up, say so on `control`, then run the command the server
    hands over (its framed request, the client's connection and stdio), or end when
    the server closes `control` without one."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    try:
        command(list(WARM_UP_COMMAND))
    except BaseException:               # noqa: B036 - a failed warm-up only warms less
        pass
    # What the warm-up left in reference cycles (its machine and guest RAM) goes now,
    # not in the middle of the command; what stays is frozen, as in the server.
    gc.collect()
    gc.freeze()
    control.sendall(READY)
    control.settimeout(None)
    try:
        request, _body, fds = read_request(control, descriptors=4)
    except BadRequest as exc:
        # Closed without a word: retired.  Anything else: a request it took and cannot
        # read (the client, if any, hears exit 4).
        return 0 if str(exc) == NO_REQUEST else EXIT_INTERNAL
    except OSError:
        return EXIT_INTERNAL
    control.close()
    conn = socket.socket(fileno=fds[0])
    return run_command(command, conn, request, fds[1:])


def system_exit_code(value):
    """The exit status the interpreter gives sys.exit(value)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def run_command(command, conn, request, fds):
    """In the forked process: become the client's command and run it with `command`
    (the command line's run(): argv -> exit code)."""
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
