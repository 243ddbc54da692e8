"""A long-lived dom0 for a process that boots guest after guest (a `pvboot batch`
worker): one xenstore daemon and long-lived blkback processes (blkback/server.py)
that serve every guest in turn, so that no image pays for starting either.

Each guest is still a domain of its own, as under Xen: XenPlatform(host=...) gives it
the next domain id, its own event channels and grant table in its own memory, its own
xenstore connection and vbds; when it is closed its backends stop serving it and the
domain is destroyed as a toolstack does (the domain released, which drops its
connections, watches and transactions; its /local/domain/<domid> tree and the
backends' directories for it removed; any other node it still owns removed), so the
next guest finds nothing of it.  Domain ids go round 1..3 (the event channel page
holds domains 0..3): two successive guests never share one.

A blkback server that died, or did not finish with a guest in time, is killed and
never reused; refill() starts its replacement between guests, when no guest memory is
mapped in this process for the fork to copy.
"""
import os
import shutil
import tempfile

from .evtchn import EVTCHN_NR_DOMAINS
from .blkback.server import BlkbackServer
from .xenstored import XenstoreDaemon
from .xs_wire import XenstoreError
from .xsclient import XsClient

XENSTORE_TIMEOUT = 5.0
BACKEND_PATH = "/local/domain/0/backend"
MAX_SPARES = 8                  # platform.VDEVS: the PV disks one guest may have


class XenHost:
    """dom0 across guests: the daemon (`daemon`, `socket_path`), the toolstack's dom0
    connection (`xs`) and `spares` idle blkback servers."""

    def __init__(self, spares=1, backend_stderr=None):
        self.spares = spares
        self.backend_stderr = backend_stderr
        self.socket_dir = tempfile.mkdtemp(prefix="pvboot-xs-")
        self.socket_path = os.path.join(self.socket_dir, "xenstored")
        self.daemon = XenstoreDaemon(self.socket_path).start()
        self.xs = XsClient.from_socket(self.daemon.connect(), timeout=XENSTORE_TIMEOUT)
        self._last_domid = 0
        self.live = set()               # domids of guests not yet destroyed
        self.idle = []                  # BlkbackServers waiting for a vbd
        self.started = 0                # servers forked (replacements included)
        try:
            self.refill()
        except BaseException:
            self.close()
            raise

    def new_domid(self):
        """The next guest's domain id: 1, 2, 3, 1, ... skipping any still alive."""
        for _ in range(EVTCHN_NR_DOMAINS):
            self._last_domid = self._last_domid % (EVTCHN_NR_DOMAINS - 1) + 1
            if self._last_domid not in self.live:
                self.live.add(self._last_domid)
                return self._last_domid
        raise RuntimeError("no free domain id: %d guests alive" % len(self.live))

    def expect_disks(self, count):
        """A guest used `count` backends: keep that many idle from now on, so that the
        next such guest forks none (refill() starts them)."""
        self.spares = max(self.spares, min(count, MAX_SPARES))

    def refill(self):
        """Fork idle servers up to `spares` (between guests: see the module's note)."""
        for server in [s for s in self.idle if not s.alive()]:
            self.idle.remove(server)
            server.close()
        while len(self.idle) < self.spares:
            self.idle.append(BlkbackServer(self.backend_stderr))
            self.started += 1

    def start_blkback(self, mem, grant_table, evtchn, xenstore, devid, **options):
        """spawn.start_blkback on a long-lived server: an idle one, else a new one (one
        that is forked while this guest's memory is mapped, and so is retired with it)."""
        while self.idle:
            server = self.idle.pop()
            if server.alive():
                try:
                    return server.serve(mem, evtchn=evtchn, grant_table=grant_table,
                                        xenstore=xenstore, devid=devid, **options)
                except OSError:
                    pass                # it died just now
            server.close()
        server = BlkbackServer(self.backend_stderr)
        self.started += 1
        server.retire = True
        return server.serve(mem, evtchn=evtchn, grant_table=grant_table, xenstore=xenstore,
                            devid=devid, **options)

    def give_back(self, lease):
        """A vbd's lease is over (its Lease.wait returned): the server serves the next
        guest, unless it died, was killed, or holds a guest's memory of its own."""
        server = lease.server
        server.lease = None
        if lease.server_died or server.retire or not server.alive():
            server.close()
        else:
            self.idle.append(server)

    def destroy_domain(self, domid):
        """What a toolstack does on domain destroy: release the domain in xenstore and
        remove every node of it."""
        daemon = self.daemon
        daemon.release_domain(domid)
        paths = ["/local/domain/%d" % domid]
        try:
            kinds = daemon.directory(BACKEND_PATH)
        except XenstoreError:
            kinds = []
        paths += ["%s/%s/%d" % (BACKEND_PATH, kind, domid) for kind in kinds]
        for path in paths:
            self._rm(path)
        for path, owner in daemon.owners().items():
            if owner == domid and path.startswith("/"):
                self._rm(path)
        self.live.discard(domid)

    def _rm(self, path):
        try:
            self.daemon.rm(path)
        except XenstoreError as exc:
            if exc.errname != "ENOENT":
                raise

    def close(self):
        for server in self.idle:
            server.close()
        self.idle = []
        self.xs.close()
        self.daemon.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
