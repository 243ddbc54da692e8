"""`pvboot batch MANIFEST`: boot every entry of a manifest (tools/manifest.py, the
pytest plugin's format) on a pool of local worker processes, or on a Dask cluster
(--scheduler, tools/dask_batch.py), with a progress bar, a summary table, --json and
--junit for the whole batch.

Locally each boot runs in its own forked child (at most -j at a time): a child that
dies without an answer (a signal, a pvboot crash, no answer within the entry's timeout
plus a margin) takes down nothing but its own image, which is run once more and
reported with the crash.  The parent starts no threads (the progress bar is refreshed
by hand), so forking it is safe.
"""
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
from pvboot.tools.batch_worker import Outcome, boot_one, crashed
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


# -- the local pool -------------------------------------------------------------------------
def _child(conn, name, entry):
    try:
        outcome = boot_one(name, entry)
    except BaseException as exc:          # a pvboot bug: the entry's error, not a crash
        outcome = Outcome(name, "error", [f"internal error: {type(exc).__name__}: {exc}"],
                          error=f"{type(exc).__name__}: {exc}")
    try:
        conn.send(outcome)
        conn.close()
    finally:
        os._exit(0)                       # no interpreter teardown in a forked child


def _receive(conn):
    """The child's Outcome, or None when it sent none (it died, or has not yet)."""
    try:
        return conn.recv() if conn.poll() else None
    except (EOFError, OSError):
        return None


def _death(process):
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code} without a result"


class LocalPool:
    """Runs boot_one for each job in forked children, at most `workers` at a time."""

    def __init__(self, workers):
        self.workers = workers
        self._context = multiprocessing.get_context("fork")

    def run(self, jobs, on_done, tick=None):
        """jobs: [(index, name, entry)].  on_done(index, Outcome) as each finishes;
        tick() every poll (the progress bar's refresh)."""
        running = {}                      # connection -> (process, job, deadline)
        try:
            self._run(jobs, on_done, tick, running)
        finally:                          # interrupted: no worker outlives the batch
            for process, _, _ in running.values():
                process.kill()
                process.join()

    def _run(self, jobs, on_done, tick, running):
        waiting = [(index, name, entry, []) for index, name, entry in jobs]
        waiting.reverse()
        while waiting or running:
            while waiting and len(running) < self.workers:
                job = waiting.pop()
                index, name, entry, crashes = job
                parent, child = self._context.Pipe(duplex=False)
                process = self._context.Process(target=_child, args=(child, name, entry),
                                                name=f"pvboot-batch-{index}")
                process.start()
                child.close()
                limit = float(entry.get("timeout", DEFAULT_ENTRY_TIMEOUT)) + WORKER_MARGIN
                running[parent] = (process, job, time.monotonic() + limit)
            ready = multiprocessing.connection.wait(
                list(running) + [p.sentinel for p, _, _ in running.values()], timeout=0.2)
            now = time.monotonic()
            for conn in list(running):
                process, job, deadline = running[conn]
                index, name, entry, crashes = job
                overdue = now > deadline
                if not (conn in ready or process.sentinel in ready or overdue):
                    continue
                outcome = _receive(conn)
                if outcome is None and process.is_alive() and not overdue:
                    continue              # it is still writing, or about to exit
                if process.is_alive():
                    process.kill()        # overdue: a hang counts as a crash
                    process.join()
                    reason = "no result in time: killed"
                else:
                    process.join()
                    reason = _death(process)
                conn.close()
                del running[conn]
                if outcome is not None:
                    outcome.attempts = len(crashes) + 1
                    outcome.crashes = list(crashes)
                    on_done(index, outcome)
                elif len(crashes) + 1 < MAX_ATTEMPTS:
                    waiting.append((index, name, entry, crashes + [reason]))
                else:
                    on_done(index, crashed(name, crashes + [reason]))
            if tick is not None:
                tick()


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
