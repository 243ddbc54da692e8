"""The batch group's peer: QEMU + SeaBIOS booting many images, N processes at a time,
as one process the bench can time (`python -m pvboot.tools.bench.qemupool PLAN.json`):
spawn to exit covers every boot, and its CPU time covers every QEMU it reaped, as
`pvboot batch`'s covers its workers and their blkbacks.

PLAN.json: {"jobs": N, "marker": TEXT, "returncode": CODE, "argvs": [[...], ...]}, the
command lines made by bench/processes.py qemu_argv.  A boot passes when QEMU exits
with CODE (the debug-exit port's) and printed TEXT.  Like bench/rawcpu.py this module
imports nothing of pvboot: the peer is not charged for pvboot's imports.  Exit 0 when
every boot passed, 1 otherwise (the first failure on stderr), 2 on a usage error.
"""
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

BOOT_TIMEOUT = 60.0             # seconds per QEMU process (processes.TIMEOUT_BOOT)


def boot(argv, marker, returncode):
    """One QEMU boot: None when it did what it should, else why not (one line)."""
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=BOOT_TIMEOUT)
    except subprocess.TimeoutExpired:         # run() has killed it
        return f"{argv[-1]}: timed out"
    if proc.returncode != returncode:
        last = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
        return f"{argv[-1]}: exit status {proc.returncode} (want {returncode}) {last}".strip()
    if marker and marker not in proc.stdout.decode("latin-1"):
        return f"{argv[-1]}: {marker!r} not on the console"
    return None


def main(argv):
    if len(argv) != 1:
        print("usage: python -m pvboot.tools.bench.qemupool PLAN.json", file=sys.stderr)
        return 2
    try:
        with open(argv[0]) as f:
            plan = json.load(f)
        jobs, marker, want, argvs = plan["jobs"], plan["marker"], plan["returncode"], plan["argvs"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"qemupool: {argv[0]}: {exc}", file=sys.stderr)
        return 2
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        errors = [e for e in pool.map(lambda a: boot(a, marker, want), argvs) if e]
    if errors:
        print(f"qemupool: {len(errors)} of {len(argvs)} boots failed; first: {errors[0]}",
              file=sys.stderr)
        return 1
    print(f"qemupool: {len(argvs)} boots passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
