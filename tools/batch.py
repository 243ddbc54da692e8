"""`pvboot batch MANIFEST`: boot every entry of a manifest (tools/manifest.py, the
pytest plugin's format) on a pool of local worker processes, or on a Dask cluster
(--scheduler, tools/dask_batch.py), with a progress bar, a summary table, --json and
--junit for the whole batch.

Locally the boots run on -j long-lived worker processes forked from this one, one
image at a time each (LocalPool): a worker that dies under an image costs only that
image, which is run once more on a new worker and reported with the crash.
"""
import collections
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pvboot.tools import junit, runner
from pvboot.tools.batch_worker import crashed, serve
from pvboot.tools.manifest import ManifestError, load_manifest

DESCRIPTION = """Boot every [[boot]] entry of a manifest (the pytest plugin's TOML format:
image, expect, screen, reason, exit, fail, timeout, keys, ...) on N local worker
processes or on a Dask cluster, and check each against its expectations.

exit codes:
  0  every entry passed (or was skipped, or failed as its xfail said)
  1  an entry failed, could not boot, or crashed its worker twice
  2  usage error or a manifest that cannot be read
"""

MAX_ATTEMPTS = 2               # a crashed worker's image is run once more
WORKER_MARGIN = 60.0           # seconds a worker gets beyond its entry's own timeout
DEFAULT_ENTRY_TIMEOUT = 30.0   # runner.boot's default
MAX_JOBS = 1024
WORKER_EXIT_SECONDS = 5.0      # an idle worker told to end has this long before SIGKILL


# -- the local pool -------------------------------------------------------------------------
def _death(process):
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code} without a result"


class _Worker:
    """One forked worker process (batch_worker.serve) and the job it is on."""

    def __init__(self, context, number):
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(target=serve, args=(child, os.getpid()),
                                       name=f"pvboot-batch-worker-{number}")
        self.process.start()
        child.close()
        self.job = None                   # (index, name, entry, crashes) while busy
        self.deadline = None

    def give(self, job):
        """Send it `job`; False when it is gone (the job was not started)."""
        index, name, entry, crashes = job
        try:
            self.conn.send((name, entry))
        except OSError:
            return False
        limit = float(entry.get("timeout", DEFAULT_ENTRY_TIMEOUT)) + WORKER_MARGIN
        self.job, self.deadline = job, time.monotonic() + limit
        return True

    def answer(self):
        """(Outcome, more) when it has sent one, else None (it died, or has not yet)."""
        try:
            return self.conn.recv() if self.conn.poll() else None
        except (EOFError, OSError):
            return None

    def end(self, kill=False):
        """Tell it to end (None; not just a closed pipe: the forked workers hold each
        other's ends of it) and reap it, killing it when asked or when it does not
        exit within WORKER_EXIT_SECONDS."""
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass                      # it is gone already
        self.conn.close()
        self.process.join(WORKER_EXIT_SECONDS)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()


class LocalPool:
    """Runs boot_one for each job on at most `workers` long-lived forked worker
    processes, one job at a time each.  A worker that dies without an answer (a
    signal, a pvboot crash, no answer within the entry's timeout plus a margin) takes
    down nothing but its own image, which is run once more on a new worker and
    reported with the crash.  The parent starts no threads (the progress bar is
    refreshed by hand), so forking it is safe."""

    def __init__(self, workers):
        self.workers = workers
        self._context = multiprocessing.get_context("fork")
        self.started = 0                  # worker processes started (crashes replace some)

    def run(self, jobs, on_done, tick=None):
        """jobs: [(index, name, entry)].  on_done(index, Outcome) as each finishes;
        tick() every poll (the progress bar's refresh)."""
        pool = []
        try:
            self._run(jobs, on_done, tick, pool)
        finally:                          # done or interrupted: no worker outlives the batch
            for worker in pool:
                worker.end(kill=worker.job is not None)

    def _start(self, pool):
        worker = _Worker(self._context, self.started)
        self.started += 1
        pool.append(worker)
        return worker

    def _run(self, jobs, on_done, tick, pool):
        waiting = collections.deque((index, name, entry, []) for index, name, entry in jobs)
        while waiting or any(w.job is not None for w in pool):
            while waiting:
                idle = next((w for w in pool if w.job is None), None)
                if idle is None and len(pool) >= self.workers:
                    break
                worker = idle or self._start(pool)
                job = waiting.popleft()
                if not worker.give(job):  # it died before the image reached it
                    pool.remove(worker)
                    worker.end(kill=True)
                    self._crashed(job, _death(worker.process), waiting, on_done)
            busy = [w for w in pool if w.job is not None]
            ready = multiprocessing.connection.wait(
                [w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=0.2)
            now = time.monotonic()
            for worker in busy:
                overdue = now > worker.deadline
                if not (worker.conn in ready or worker.process.sentinel in ready or overdue):
                    continue
                answer = worker.answer()
                if answer is None:
                    alive = worker.process.is_alive()
                    if alive and not overdue:
                        continue          # it is still writing
                    if not alive:         # it may have answered just before it ended
                        answer = worker.answer()
                if answer is not None:
                    index, _name, _entry, crashes = worker.job
                    outcome, more = answer
                    worker.job = None
                    outcome.attempts = len(crashes) + 1
                    outcome.crashes = list(crashes)
                    on_done(index, outcome)
                    if not more:
                        pool.remove(worker)
                        worker.end()
                    continue
                reason = "no result in time: killed" if worker.process.is_alive() else None
                pool.remove(worker)
                worker.end(kill=True)     # overdue: a hang counts as a crash
                self._crashed(worker.job, reason or _death(worker.process), waiting, on_done)
            if tick is not None:
                tick()

    @staticmethod
    def _crashed(job, reason, waiting, on_done):
        """The job's worker died under it: run it again first, or report the crash."""
        index, name, entry, crashes = job
        if len(crashes) + 1 < MAX_ATTEMPTS:
            waiting.appendleft((index, name, entry, crashes + [reason]))
        else:
            on_done(index, crashed(name, crashes + [reason]))


# -- the batch --------------------------------------------------------------------------------
def run_batch(entries, workers=None, scheduler=None, progress=None):
    """Outcomes for [(name, entry)] in manifest order; `progress(outcome)` after each."""
    outcomes = [None] * len(entries)
    jobs = [(i, name, entry) for i, (name, entry) in enumerate(entries)]

    def done(index, outcome):
        outcomes[index] = outcome
        if progress is not None:
            progress(outcome)

    if scheduler is not None:
        try:                                     # the optional extra: only when asked for
            from pvboot.tools import dask_batch
        except ImportError as exc:
            raise runner.InputError(f"--scheduler needs Dask distributed ({exc}): "
                                    "pip install 'pvboot[dask]'") from None
        dask_batch.run(scheduler, jobs, done)
    else:
        LocalPool(workers or default_workers()).run(jobs, done)
    return outcomes


def default_workers():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:               # pragma: no cover - not Linux
        return os.cpu_count() or 1


def counts(outcomes):
    tally = {}
    for outcome in outcomes:
        tally[outcome.verdict] = tally.get(outcome.verdict, 0) + 1
    return tally


def summary_table(outcomes):
    table = Table(title="pvboot batch", show_lines=False)
    for column in ("entry", "verdict", "reason", "exit", "seconds", "tries", "problem"):
        table.add_column(column, justify="right" if column in ("exit", "seconds", "tries")
                         else "left", no_wrap=column != "problem", overflow="ellipsis")
    styles = {"pass": "green", "skipped": "dim", "xfailed": "yellow"}
    for outcome in outcomes:
        result = outcome.result
        table.add_row(
            outcome.name, f"[{styles.get(outcome.verdict, 'bold red')}]{outcome.verdict}",
            result.stop.reason if result else "", str(result.exit_code) if result else "",
            f"{result.elapsed:.2f}" if result else "", str(outcome.attempts),
            (outcome.problems[0] if outcome.problems else outcome.error)[:80])
    return table


def junit_cases(outcomes):
    cases = []
    for outcome in outcomes:
        if outcome.verdict == "skipped":
            cases.append(junit.skipped_case(outcome.name, outcome.error))
        elif outcome.result is None:
            kind = "worker-crash" if outcome.verdict == "crashed" else "input-error"
            cases.append(junit.error_case(outcome.name, "; ".join(outcome.problems), kind=kind))
        else:
            problems = outcome.problems
            if outcome.verdict == "xpassed":
                problems = ["passed, but the manifest says xfail"]
            elif outcome.verdict == "xfailed":
                problems = []
            cases.append(junit.testcase(outcome.name, outcome.result, problems=problems))
    return cases


# -- the command line ---------------------------------------------------------------------------
def add_arguments(p):
    p.add_argument("manifest", metavar="MANIFEST", help="a TOML manifest of [[boot]] entries")
    p.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                   help="boots at a time on this machine (default: the cores)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run on this Dask distributed scheduler instead (pip install "
                        "'pvboot[dask]'; start workers with --nthreads 1)")
    p.add_argument("--json", action="store_true", help="print the whole batch as one JSON object")
    p.add_argument("--junit", metavar="FILE", help="write the batch as JUnit XML to FILE")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args):
    """`pvboot batch`: returns the exit code."""
    if args.jobs is not None and not 1 <= args.jobs <= MAX_JOBS:
        print(f"pvboot: error: -j {args.jobs}: give 1 to {MAX_JOBS} workers", file=sys.stderr)
        return runner.EXIT_USAGE
    if args.scheduler is not None and not args.scheduler.startswith(("tcp://", "tls://")):
        print(f"pvboot: error: --scheduler {args.scheduler!r}: give tcp://HOST:PORT",
              file=sys.stderr)
        return runner.EXIT_USAGE
    try:
        entries = load_manifest(args.manifest)
    except (ManifestError, OSError) as exc:
        text = exc.strerror if isinstance(exc, OSError) else str(exc)
        print(f"pvboot: error: {args.manifest}: {text}" if isinstance(exc, OSError)
              else f"pvboot: error: {text}", file=sys.stderr)
        return runner.EXIT_USAGE
    if not entries:
        print(f"pvboot: error: {args.manifest}: no [[boot]] entries", file=sys.stderr)
        return runner.EXIT_USAGE
    err = Console(stderr=True)
    bar = Progress(TextColumn("[bold]pvboot batch"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                   console=err, auto_refresh=False, disable=args.no_progress)
    task = bar.add_task("boots", total=len(entries), failed=0)
    failed = [0]

    def progress(outcome):
        failed[0] += not outcome.ok
        bar.update(task, advance=1, failed=failed[0])
        bar.refresh()

    started = time.monotonic()
    try:
        with bar:
            outcomes = run_batch(entries, args.jobs, args.scheduler, progress)
    except runner.InputError as exc:             # e.g. no Dask, or no scheduler there
        print(f"pvboot: error: {exc}", file=sys.stderr)
        return runner.EXIT_USAGE
    wall = time.monotonic() - started
    ok = all(outcome.ok for outcome in outcomes)
    if args.junit:
        junit.write(args.junit, junit_cases(outcomes), name=os.path.basename(args.manifest))
    tally = counts(outcomes)
    if args.json:
        print(json.dumps({
            "manifest": os.path.abspath(args.manifest), "scheduler": args.scheduler,
            "workers": None if args.scheduler else (args.jobs or default_workers()),
            "total": len(outcomes), "verdicts": tally, "ok": ok, "wall_seconds": round(wall, 3),
            "results": [outcome.to_json() for outcome in outcomes]}, indent=2))
    (err if args.json else Console()).print(summary_table(outcomes))
    print(f"pvboot batch: {len(outcomes)} boots in {wall:.1f} s: " +
          ", ".join(f"{n} {v}" for v, n in sorted(tally.items())), file=sys.stderr)
    for outcome in outcomes:
        for crash in outcome.crashes:
            print(f"pvboot batch: {outcome.name}: worker crashed ({crash}); "
                  f"{'run again' if outcome.verdict != 'crashed' else 'gave up'}", file=sys.stderr)
    return runner.EXIT_SUCCESS if ok else runner.EXIT_TEST_FAILURE
