"""`pvboot batch` (tools/batch.py): a 50-image manifest on the local worker pool and on
real Dask clusters (a LocalCluster, and `dask scheduler` + `dask worker` processes) with
the same verdicts; JUnit and JSON for the batch; a worker killed under an image."""
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import psutil
import pytest

from pvboot.tools import demo
from tests.guests import build
from tests.tools.small_guests import SPINNER, build_guest

WAIT = 120            # bound of every wait on a batch or a Dask process
IMAGES = 50
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Five kinds of entry, ten images each: what each must conclude.
KINDS = {
    "markers": ('expect = ["CHS READ", "WRITE OK"]', "pass"),
    "exit": ("exit = 0\ndriver = \"ata\"", "pass"),
    "absent": ('expect = ["never printed"]\ndriver = "host"', "fail"),
    "failpat": ('fail = ["EDD READ"]', "fail"),
    "known": ('fail = "PASS"\nxfail = "the demo prints PASS"', "xfailed"),
}


def _manifest(folder, count=IMAGES):
    """A manifest of `count` demo-disk copies, each its own image file."""
    os.makedirs(folder, exist_ok=True)
    entries, expected = ["[defaults]\ntimeout = 20\n"], {}
    kinds = list(KINDS)
    for i in range(count):
        kind = kinds[i % len(kinds)]
        image = f"demo{i:02d}.img"
        demo.write_demo_disk(os.path.join(folder, image))
        name = f"{kind}-{i:02d}"
        entries.append(f'[[boot]]\nname = "{name}"\nimage = "{image}"\n{KINDS[kind][0]}\n')
        expected[name] = KINDS[kind][1]
    path = os.path.join(folder, "pvboot-fleet.toml")
    with open(path, "w") as f:
        f.write("\n".join(entries))
    return path, expected


def _batch(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pvboot.tools", "batch", *args],
                          capture_output=True, text=True, timeout=WAIT, cwd=ROOT, env=env)


def _verdicts(stdout):
    data = json.loads(stdout)
    return {r["name"]: r["verdict"] for r in data["results"]}, data


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    return _manifest(str(tmp_path_factory.mktemp("fleet")))


@pytest.fixture(scope="module")
def local_run(fleet, tmp_path_factory):
    path, _ = fleet
    junit_file = str(tmp_path_factory.mktemp("junit") / "batch.xml")
    proc = _batch(path, "-j", "2", "--json", "--junit", junit_file)
    return proc, junit_file


def test_local_pool_verdicts(fleet, local_run):
    _, expected = fleet
    proc, _ = local_run
    assert proc.returncode == 1, proc.stderr          # the manifest holds failures
    verdicts, data = _verdicts(proc.stdout)
    assert verdicts == expected
    assert data["total"] == IMAGES and data["workers"] == 2
    assert data["verdicts"] == {"pass": 20, "fail": 20, "xfailed": 10}
    # Boots ran in forked worker processes, not in the batch's own.
    workers = {r["worker"] for r in data["results"]}
    assert len(workers) > 1 and all(w.rpartition(":")[2].isdigit() for w in workers)
    marker_entry = next(r for r in data["results"] if r["name"] == "markers-00")
    assert marker_entry["reason"] == "expected" and marker_entry["markers"][0]["kind"] == "expect"
    assert [s["stage"] for s in marker_entry["stages"]][:2] == ["power-on", "boot-sector"]


def test_progress_bar_and_summary_table(local_run):
    proc, _ = local_run
    assert re.search(rf"pvboot batch .*{IMAGES}/{IMAGES}", proc.stderr)
    assert f"pvboot batch: {IMAGES} boots" in proc.stderr
    assert "failpat-03" in proc.stderr and "verdict" in proc.stderr   # the table (stderr with --json)


def test_junit_for_the_whole_batch(local_run):
    _, junit_file = local_run
    suite = ET.parse(junit_file).getroot().find("testsuite")
    assert suite.get("tests") == str(IMAGES)
    assert suite.get("failures") == "20" and suite.get("errors") == "0"
    failed = {c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None}
    assert failed == {f"{k}-{i:02d}" for i in range(IMAGES)
                      for k in ("absent", "failpat") if list(KINDS).index(k) == i % 5}


def test_empty_and_broken_manifests_are_usage_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[boot]]\nimage = \n")
    proc = _batch(str(bad))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    proc = _batch(str(tmp_path / "missing.toml"))
    assert proc.returncode == 2 and "missing.toml" in proc.stderr
    proc = _batch(str(bad), "--scheduler", "localhost:8786")
    assert proc.returncode == 2 and "tcp://" in proc.stderr
    for value in ("nan", "inf", "-1", "0", '"20"', "true"):
        bad.write_text(f'[[boot]]\nimage = "x.img"\ntimeout = {value}\n')
        proc = _batch(str(bad))
        assert proc.returncode == 2 and "timeout" in proc.stderr and proc.stderr.count("\n") == 1, value
    bad.write_text('[[boot]]\nimage = "x.img"\nfail = "("\n')
    proc = _batch(str(bad))
    assert proc.returncode == 2 and "bad regular expression" in proc.stderr
    proc = _batch(str(bad), "-j", "0")
    assert proc.returncode == 2 and "-j 0" in proc.stderr


# -- a worker that dies under its image -------------------------------------------------
def _kill_workers(batch, count):
    """SIGKILL the batch's first `count` worker processes as they appear."""
    killed, deadline = set(), time.monotonic() + WAIT
    parent = psutil.Process(batch.pid)
    while len(killed) < count and time.monotonic() < deadline and batch.poll() is None:
        for child in parent.children():
            if child.pid not in killed:
                time.sleep(0.3)                  # let it get into the boot
                child.kill()
                killed.add(child.pid)
                break
        time.sleep(0.05)
    return len(killed)


@pytest.mark.skipif(not build.tools_available(), reason="GNU as/ld not installed")
@pytest.mark.parametrize("kills, verdict", [(1, "pass"), (2, "crashed")])
def test_a_crashed_worker_is_retried_once(tmp_path, kills, verdict):
    image, _ = build_guest(tmp_path, "spinner", SPINNER)
    manifest = tmp_path / "crash.toml"
    manifest.write_text(f'[[boot]]\nname = "spin"\nimage = "{image}"\ndriver = "host"\n'
                        'timeout = 2\nreason = "timeout"\n')
    batch = subprocess.Popen([sys.executable, "-m", "pvboot.tools", "batch", str(manifest),
                              "-j", "1", "--json", "--no-progress"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _kill_workers(batch, kills) == kills
        out, err = batch.communicate(timeout=WAIT)
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.communicate()
    (result,) = json.loads(out)["results"]
    assert result["verdict"] == verdict
    assert result["attempts"] == 2
    assert result["crashes"][0] == "killed by SIGKILL"
    assert "worker crashed (killed by SIGKILL)" in err
    assert batch.returncode == (0 if verdict == "pass" else 1)


# -- Dask ---------------------------------------------------------------------------------
needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="dask distributed not installed")


@needs_dask
def test_dask_local_cluster_same_verdicts(tmp_path):
    from distributed import LocalCluster
    path, expected = _manifest(str(tmp_path / "small"), count=len(KINDS))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        on_dask = _batch(path, "--scheduler", cluster.scheduler_address, "--json",
                         "--no-progress")
    assert on_dask.returncode == 1
    # The local pool's verdicts for these entries are test_local_pool_verdicts's.
    assert _verdicts(on_dask.stdout)[0] == expected


def _wait_for_log(log, pattern, proc):
    """The first match of `pattern` in the log file `log` of `proc` (bounded)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and proc.poll() is None:
        match = re.search(pattern, log.read_text(errors="replace"))
        if match:
            return match
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} from {proc.args}: {log.read_text(errors='replace')}")


@pytest.fixture
def dask_processes(tmp_path):
    """A `dask scheduler` and two one-thread `dask worker` processes on 127.0.0.1."""
    dask = shutil.which("dask") or pytest.skip("no dask command")
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = []

    def start(name, *args):
        log = tmp_path / f"{name}.log"
        with open(log, "w") as out:
            procs.append(subprocess.Popen([dask, *args], stdout=out, stderr=out, env=env,
                                          cwd=ROOT))
        return procs[-1], log

    try:
        scheduler, log = start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard")
        address = _wait_for_log(log, r"Scheduler at:\s+(tcp://127\.0\.0\.1:\d+)",
                                scheduler).group(1)
        workers = [start(f"worker{i}", "worker", address, "--no-nanny", "--nthreads", "1",
                         "--no-dashboard", "--host", "127.0.0.1") for i in range(2)]
        for worker, log in workers:
            _wait_for_log(log, r"Registered to:", worker)
        yield address
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@needs_dask
def test_fifty_images_on_dask_processes_same_verdicts_as_local(fleet, local_run, dask_processes):
    path, expected = fleet
    proc = _batch(path, "--scheduler", dask_processes, "--json")
    assert proc.returncode == 1, proc.stderr
    verdicts, data = _verdicts(proc.stdout)
    assert verdicts == expected == _verdicts(local_run[0].stdout)[0]
    assert data["scheduler"] == dask_processes
    assert re.search(rf"pvboot batch .*{IMAGES}/{IMAGES}", proc.stderr)
