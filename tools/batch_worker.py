"""One boot of a batch as a worker runs it, locally or on Dask: boot_one judges a
manifest entry and returns an Outcome (pickled back to tools/batch.py).

serve() is a local worker's life: forked once from `pvboot batch` (everything already
imported), it boots image after image sent over its pipe, each on a fresh machine (its
own guest memory, devices, grant table and event channels, and a xenstore domain of its
own), so that no image pays for an interpreter start.  Its dom0 lives across the images
(emu/xen/host.py XenHost: one xenstore daemon, long-lived blkback processes that are
handed each new guest's memory and event channels), as a Xen host's does across
domains: no image pays for starting a daemon or forking a backend either.
docs/performance.md has the measurements.
"""
import dataclasses
import os
import signal
import socket

from pvboot.emu.storage.daemon import die_with_parent
from pvboot.emu.xen.host import XenHost
from pvboot.tools import runner
from pvboot.tools.manifest import run_entry

# What a worker reports per image: pass, fail, error (the entry could not boot, e.g. a
# missing image), crashed (its worker died twice), skipped, xfailed, xpassed.
GOOD_VERDICTS = frozenset({"pass", "skipped", "xfailed"})


@dataclasses.dataclass
class Outcome:
    """One entry's verdict, what made it, and where it ran."""
    name: str
    verdict: str
    problems: list = dataclasses.field(default_factory=list)
    result: object = None        # runner.Result (None: error, crashed, skipped)
    error: str = ""              # why it could not boot, crashed, or was skipped
    attempts: int = 1
    crashes: list = dataclasses.field(default_factory=list)   # one line per dead worker
    worker: str = ""

    @property
    def ok(self):
        return self.verdict in GOOD_VERDICTS

    def to_json(self):
        data = {"name": self.name, "verdict": self.verdict, "problems": self.problems,
                "error": self.error, "attempts": self.attempts, "crashes": self.crashes,
                "worker": self.worker}
        if self.result is not None:
            result = self.result
            data.update({"reason": result.stop.reason, "detail": result.stop.detail,
                         "exit_value": result.stop.exit_value, "exit_code": result.exit_code,
                         "elapsed": round(result.elapsed, 6), "markers": result.markers,
                         "stages": result.stages, "counters": result.counters})
        return data


def _worker_name():
    return f"{socket.gethostname()}:{os.getpid()}"


def boot_one(name, entry, xen_host=None):
    """Boot one manifest entry and judge it; runs in a worker (local or Dask).  A guest
    failure is a verdict, not an exception.  xen_host: the worker's XenHost (None:
    the boot starts its own daemon and backends)."""
    worker = _worker_name()
    if "skip" in entry:
        return Outcome(name, "skipped", error=str(entry["skip"]), worker=worker)
    try:
        result, problems = run_entry(entry, xen_host=xen_host, capture_screen=False)
    except runner.InputError as exc:
        return Outcome(name, "error", [str(exc)], error=str(exc), worker=worker)
    if "xfail" in entry:
        verdict = "xfailed" if problems else "xpassed"
    else:
        verdict = "fail" if problems else "pass"
    # The final screen's cells and display state (capture_screen) are for --screenshot:
    # a batch reports the screen as text, and they would be most of what is pickled back.
    return Outcome(name, verdict, problems, result, worker=worker)


def internal_error(name, exc):
    """The Outcome of an exception boot_one let through: a pvboot bug, the entry's error."""
    return Outcome(name, "error", [f"internal error: {type(exc).__name__}: {exc}"],
                   error=f"{type(exc).__name__}: {exc}", worker=_worker_name())


def crashed(name, crashes):
    return Outcome(name, "crashed", [f"worker crashed: {crashes[-1]}"], error=crashes[-1],
                   attempts=len(crashes), crashes=list(crashes))


def serve(conn, parent_pid):
    """A local worker: boot each (name, entry) received on `conn`, answer (Outcome, more)
    and go on while `more`; end at None or a closed pipe.  After an internal error the
    worker ends (more=False): whatever that boot left behind stays out of the next.
    It dies with the batch (SIGKILL), whatever the batch dies of; its blkback servers
    die with it (SIGTERM).  Never returns."""
    host = None
    try:
        die_with_parent(parent_pid)
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # ^C is the batch's to handle
        try:
            host = XenHost()
        except (OSError, RuntimeError):
            host = None               # each boot then starts its own daemon and backends
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                break
            if job is None:
                break
            name, entry = job
            try:
                answer = (boot_one(name, entry, host), True)
            except BaseException as exc:
                answer = (internal_error(name, exc), False)
            conn.send(answer)
            if not answer[1]:
                break
            if host is not None:
                try:
                    host.refill()     # a blkback server lost under that image
                except OSError:
                    pass              # no fork now: the next boot forks one when it can
    finally:
        try:
            if host is not None:
                host.close()
        finally:
            os._exit(0)               # no interpreter teardown in a forked worker
