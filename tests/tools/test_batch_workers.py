"""`pvboot batch`'s long-lived local workers (tools/batch.py LocalPool, batch_worker.serve):
one worker boots image after image, each on a fresh machine with its own verdict; a
worker killed under an image costs only that image; a worker whose boot raised is
replaced."""
import json
import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from pvboot.tools import demo
from tests.guests import build
from tests.tools.small_guests import SPINNER, build_guest

WAIT = 120            # bound of every wait on a batch
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _batch_json(manifest, *args):
    proc = subprocess.run([sys.executable, "-m", "pvboot.tools", "batch", str(manifest),
                           "--json", "--no-progress", *args],
                          capture_output=True, text=True, timeout=WAIT, cwd=ROOT)
    return proc, {r["name"]: r for r in json.loads(proc.stdout)["results"]}


def test_one_worker_boots_every_image_each_on_a_fresh_machine(tmp_path):
    for i in range(3):
        demo.write_demo_disk(tmp_path / f"demo{i}.img")
    manifest = tmp_path / "fleet.toml"
    manifest.write_text(textwrap.dedent("""\
        [[boot]]
        name = "first"
        image = "demo0.img"
        expect = "PASS"
        [[boot]]
        name = "absent"
        image = "demo1.img"
        expect = "never printed"
        reason = "exit"
        [[boot]]
        name = "missing"
        image = "no-such.img"
        [[boot]]
        name = "known"
        image = "demo2.img"
        fail = "PASS"
        xfail = "the demo prints PASS"
        [[boot]]
        name = "again"
        image = "demo0.img"
        expect = "PASS"
        """))
    proc, results = _batch_json(manifest, "-j", "1")
    assert proc.returncode == 1, proc.stderr
    assert {name: r["verdict"] for name, r in results.items()} == {
        "first": "pass", "absent": "fail", "missing": "error", "known": "xfailed",
        "again": "pass"}
    assert "no-such.img" in results["missing"]["error"]
    # One worker process served all five, none of them crashed.
    assert len({r["worker"] for r in results.values()}) == 1
    assert all(r["attempts"] == 1 and r["crashes"] == [] for r in results.values())
    # The same image booted twice by that worker: nothing carried over from the boots
    # between (guest writes, disk operations, ring requests).  Notifications are left
    # out: how many a transfer needs depends on how fast the backend answers.
    first, again = results["first"]["counters"], results["again"]["counters"]
    assert first["disk_ops"] > 0 and first["sectors_written"] > 0
    for key in ("interrupts", "disk_ops", "sectors_read", "sectors_written", "ring_requests",
                "ring_responses", "bytes_copied", "port_writes"):
        assert first[key] == again[key], key


def _kill_worker_in_long_boot(batch, busy_for=1.5):
    """SIGKILL the batch's worker once it has been inside one boot for `busy_for`
    seconds (a worker runs its xenstore daemon's thread all along, and the run's
    signal thread only while it boots); returns its pid."""
    parent = psutil.Process(batch.pid)
    since, deadline = {}, time.monotonic() + WAIT
    while time.monotonic() < deadline and batch.poll() is None:
        for child in parent.children():
            try:
                booting = child.num_threads() > 2
            except psutil.NoSuchProcess:
                continue
            if not booting:
                since.pop(child.pid, None)
            elif time.monotonic() - since.setdefault(child.pid, time.monotonic()) >= busy_for:
                child.kill()
                return child.pid
        time.sleep(0.02)
    raise AssertionError("no worker stayed in a boot long enough to be killed")


@pytest.mark.skipif(not build.tools_available(), reason="GNU as/ld not installed")
def test_a_worker_killed_mid_batch_costs_only_its_image(tmp_path):
    image, _ = build_guest(tmp_path, "spinner", SPINNER)
    demo.write_demo_disk(tmp_path / "demo.img")
    manifest = tmp_path / "crash.toml"
    entries = [("before", "demo.img", 'expect = "PASS"'),
               ("spin", os.path.basename(image), 'timeout = 4\nreason = "timeout"'),
               ("after", "demo.img", 'expect = "PASS"')]
    manifest.write_text("\n".join(f'[[boot]]\nname = "{name}"\nimage = "{img}"\n{checks}\n'
                                  for name, img, checks in entries))
    batch = subprocess.Popen([sys.executable, "-m", "pvboot.tools", "batch", str(manifest),
                              "-j", "1", "--json", "--no-progress"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        killed = _kill_worker_in_long_boot(batch)
        out, err = batch.communicate(timeout=WAIT)
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.communicate()
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert batch.returncode == 0, err
    assert {name: r["verdict"] for name, r in results.items()} == {
        "before": "pass", "spin": "pass", "after": "pass"}
    spin = results["spin"]
    assert spin["attempts"] == 2 and spin["crashes"] == ["killed by SIGKILL"]
    assert results["before"]["worker"].endswith(f":{killed}")
    # The image was run again on a new worker, which then went on with the batch.
    assert spin["worker"] == results["after"]["worker"] != results["before"]["worker"]
    for name in ("before", "after"):
        assert results[name]["attempts"] == 1 and results[name]["crashes"] == []
    assert "spin: worker crashed (killed by SIGKILL); run again" in err


def test_a_worker_whose_boot_raised_is_replaced(tmp_path):
    """An exception out of runner.boot (here: a keyword no manifest could give) is that
    entry's error; the worker ends after answering and a new one takes the next image."""
    demo.write_demo_disk(tmp_path / "demo.img")
    image = str(tmp_path / "demo.img")
    script = textwrap.dedent(f"""\
        import json
        from pvboot.tools.batch import LocalPool
        jobs = [(0, "a", {{"image": [{image!r}], "expect": "PASS"}}),
                (1, "bad", {{"image": [{image!r}], "no_such_keyword": 1}}),
                (2, "b", {{"image": [{image!r}], "expect": "PASS"}})]
        pool, done = LocalPool(1), {{}}
        pool.run(jobs, lambda index, outcome: done.update({{outcome.name: outcome.to_json()}}))
        print(json.dumps({{"started": pool.started, "results": done}}))
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=WAIT, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    results = data["results"]
    assert results["bad"]["verdict"] == "error"
    assert results["bad"]["error"].startswith("TypeError") and results["bad"]["attempts"] == 1
    assert results["a"]["verdict"] == results["b"]["verdict"] == "pass"
    assert data["started"] == 2
    assert results["a"]["worker"] == results["bad"]["worker"] != results["b"]["worker"]
