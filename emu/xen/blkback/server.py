"""A long-lived blkback: one process that serves vbd after vbd, guest after guest
(what a driver domain's kernel backend does), for `pvboot batch` workers that boot
image after image (emu/xen/host.py).

A forked blkback (spawn.py) costs each image a fork, the child's copy-on-write faults
and its exit.  This one is forked once and then told about each new vbd over a
SOCK_SEQPACKET socket: the message carries the options main() would parse and, as
SCM_RIGHTS, the new guest's memory memfd, its event channel eventfds and the stderr
file the image's report reads.  It then runs main.serve_device for that vbd exactly
as a forked blkback would (its own mapping of that guest's memory, its own xenstore
connection and watches, the image opened for it) and closes everything of it before
it answers "done STATUS" and waits for the next.  Nothing of one guest is reachable
while the next is served: the mapping, the eventfds, the image and the connection
are gone.

The toolstack's messages: "serve JSON" (+ 4 fds), "stop" (end the vbd being served,
what SIGTERM is to a forked blkback).  The socket's end (the worker is gone) or
SIGTERM ends the process.
"""
import json
import os
import select
import socket
import subprocess
import sys
import time
import types

from ..backend_process import fork_main
from .main import EXIT_INTERNAL, install_stop_signals, serve_device

MAX_MESSAGE = 65536
FDS_PER_VBD = 4                 # guest memory, backend eventfd, frontend eventfd, stderr


def _receive(sock):
    """(message, fds) of the next message, or (b"", []) at the socket's end."""
    try:
        message, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, FDS_PER_VBD)
    except (ConnectionResetError, BrokenPipeError):
        return b"", []
    return message, fds


def _close_all(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def serve_guests(sock):
    """The server's life: serve each vbd it is sent until the socket ends or a signal
    asks it to stop; returns the exit status."""
    stop = []
    wake_r, _wake_w = install_stop_signals(stop)
    own_stderr = os.dup(2)
    while not stop:
        ready, _, _ = select.select([sock, wake_r], [], [])
        if sock not in ready:
            continue
        message, fds = _receive(sock)
        if not message:
            return 0                       # the toolstack is gone
        if not message.startswith(b"serve ") or len(fds) != FDS_PER_VBD:
            _close_all(fds)                # a late "stop" for a vbd already done
            continue
        status = _serve_one(sock, json.loads(message[6:]), fds, stop, wake_r, own_stderr)
        try:
            sock.send(b"done %d" % status)
        except OSError:
            return 0
    return 0


def _serve_one(sock, options, fds, stop, wake_r, own_stderr):
    memfd, evtchn_fd, frontend_fd, stderr_fd = fds
    control = []

    def on_control():
        message, extra = _receive(sock)
        _close_all(extra)
        control.append("stopped by the toolstack" if message == b"stop"
                       else "the toolstack is gone")

    sys.stderr.flush()
    os.dup2(stderr_fd, 2)               # this vbd's messages go to its image's report
    try:
        args = types.SimpleNamespace(**options, guest_memory=None, guest_memory_fd=memfd,
                                     evtchn_fd=evtchn_fd, frontend_evtchn_fd=frontend_fd)
        return serve_device(args, wake_r,
                            lambda: (stop or control or [None])[0],
                            control_fd=sock.fileno(), on_control=on_control)
    except Exception as e:                 # pragma: no cover - serve_device catches its own
        print("blkback: internal error: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        sys.stderr.flush()
        os.dup2(own_stderr, 2)
        # serve_device released the eventfds it attached (and dup'ed the memfd); the
        # ones it never got to are closed here (already-closed numbers fail quietly).
        _close_all((memfd, stderr_fd, evtchn_fd, frontend_fd))


class BlkbackServer:
    """The toolstack's handle on one long-lived blkback (a forked child)."""

    def __init__(self, stderr=None):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = fork_main(lambda _argv: serve_guests(theirs), ["blkback-server"],
                                  (theirs.fileno(),), stderr)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.lease = None               # the vbd it serves now
        self.retire = False             # end it after this vbd (host.py)

    def alive(self):
        return self.proc.poll() is None

    def serve(self, mem, grant_table, evtchn, xenstore, devid, *, frontend_domid,
              backend_domid=0, read_only=False, persist=False, verbose=False, stderr=None,
              run_dir=None, save_overlay=None, lock=True):
        """Have it serve vbd ``devid`` of the guest behind ``mem`` (spawn.start_blkback's
        arguments); returns a Lease (ForkedProcess's poll / wait / terminate / kill for
        this vbd).  OSError when the server is gone."""
        waker, backend_fd = evtchn.new_waker()
        options = dict(
            xenstore=str(xenstore), guest_memory_size=mem.size,
            grant_table_address=grant_table.base, grant_table_frames=grant_table.nr_frames,
            evtchn_page_address=evtchn.address, evtchn_waker=waker, devid=devid,
            frontend_domid=frontend_domid, backend_domid=backend_domid, read_only=read_only,
            persist=persist, verbose=verbose, run_dir=None if run_dir is None else str(run_dir),
            save_overlay=None if save_overlay is None else str(save_overlay), no_lock=not lock)
        err_fd = stderr.fileno() if stderr is not None else 2
        socket.send_fds(self.sock, [b"serve " + json.dumps(options).encode()],
                        [mem.fd, backend_fd, evtchn.eventfd(frontend_domid), err_fd])
        self.lease = Lease(self, devid)
        return self.lease

    def close(self):
        """End it: the socket's end asks it to exit (bounded), then SIGKILL."""
        self.sock.close()
        try:
            self.proc.wait(3.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Lease:
    """One vbd served by a BlkbackServer, as a ForkedProcess-like handle: returncode is
    the vbd's exit status ("done STATUS"), or the server's when it died meanwhile."""

    def __init__(self, server, devid):
        self.server = server
        self.args = ["blkback-server", "--devid", str(devid)]
        self.returncode = None
        self.server_died = False
        self._eof = False               # the server's end of the socket closed

    def _take_answer(self):
        """Read the server's answer if one is there, or notice that it died."""
        if self.returncode is not None:
            return
        sock = self.server.sock
        if not self._eof and select.select([sock], [], [], 0)[0]:
            message, fds = _receive(sock)
            _close_all(fds)
            if message.startswith(b"done "):
                self.returncode = int(message[5:])
                return
            self._eof = not message
        if self.server.proc.poll() is not None:
            self.server_died = True
            self.returncode = self.server.proc.returncode

    def poll(self):
        self._take_answer()
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        self._take_answer()
        if self.returncode is not None:
            return self.returncode
        try:
            pidfd = os.pidfd_open(self.server.proc.pid)
        except ProcessLookupError:      # reaped since: poll() has its status
            self._take_answer()
            return self.returncode
        try:
            while True:
                self._take_answer()
                if self.returncode is not None:
                    return self.returncode
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                select.select([pidfd] if self._eof else [self.server.sock, pidfd], [], [],
                              remaining)
        finally:
            os.close(pidfd)

    def terminate(self):
        """Ask it to end this vbd (it goes on to the next)."""
        if self.returncode is None:
            try:
                self.server.sock.send(b"stop")
            except OSError:
                pass

    def kill(self):
        """The vbd did not end in time: the whole server is killed (never reused)."""
        self.server_died = True
        self.server.proc.kill()
