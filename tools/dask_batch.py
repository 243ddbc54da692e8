"""`pvboot batch --scheduler tcp://HOST:PORT`: the same boots on a Dask distributed
cluster (the optional extra: pip install 'pvboot[dask]').

Each entry is one task running tools.batch_worker.boot_one on a worker, so the verdicts are
the local run's.  Workers need pvboot importable and the images at the manifest's
paths (a shared file system), and should run one thread each (`dask worker
--nthreads 1`): each boot forks its blkback processes.  A task that raises is retried
once (retries=1); a worker that dies under a task has it rescheduled by the scheduler
(its allowed-failures setting) and, when it keeps killing workers, it is reported
as crashed.
"""
from dask.distributed import Client, KilledWorker, as_completed

from pvboot.tools import runner
from pvboot.tools.batch_worker import Outcome, boot_one, crashed

CONNECT_TIMEOUT = "30s"


def run(address, jobs, on_done):
    """jobs: [(index, name, entry)]; on_done(index, Outcome) as each finishes."""
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise runner.InputError(f"--scheduler {address}: cannot connect: {exc}") from None
    try:
        futures = {}
        for index, name, entry in jobs:
            future = client.submit(boot_one, name, entry, key=f"pvboot-boot-{index}",
                                   retries=1, pure=False)
            futures[future] = (index, name)
        for future in as_completed(list(futures), loop=client.loop):
            index, name = futures[future]
            try:
                outcome = future.result()
            except KilledWorker as exc:
                outcome = crashed(name, [f"Dask worker died: {exc}"])
            except Exception as exc:   # boot_one raised on both tries: a pvboot bug
                outcome = Outcome(name, "error", [f"internal error: {type(exc).__name__}: {exc}"],
                                  error=f"{type(exc).__name__}: {exc}", attempts=2)
            on_done(index, outcome)
    finally:
        client.close()
