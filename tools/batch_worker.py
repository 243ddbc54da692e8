"""One boot of a batch as a worker runs it, locally or on Dask: boot_one judges a
manifest entry and returns an Outcome (pickled back to tools/batch.py)."""
import dataclasses
import os
import socket

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


def boot_one(name, entry):
    """Boot one manifest entry and judge it; runs in a worker (local or Dask).  A guest
    failure is a verdict, not an exception."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    if "skip" in entry:
        return Outcome(name, "skipped", error=str(entry["skip"]), worker=worker)
    try:
        result, problems = run_entry(entry)
    except runner.InputError as exc:
        return Outcome(name, "error", [str(exc)], error=str(exc), worker=worker)
    if "xfail" in entry:
        verdict = "xfailed" if problems else "xpassed"
    else:
        verdict = "fail" if problems else "pass"
    return Outcome(name, verdict, problems, result, worker=worker)


def crashed(name, crashes):
    return Outcome(name, "crashed", [f"worker crashed: {crashes[-1]}"], error=crashes[-1],
                   attempts=len(crashes), crashes=list(crashes))
