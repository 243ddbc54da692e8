"""`pvboot fuzz blkif`: the model of Linux xen-blkback's answers, the request generator,
and the command (a short run, bad numbers, a mismatch reported with seed and request)."""
import io
import os
import random
import subprocess
import sys

import pytest

from pvboot.emu.xen.abi import (BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD,
                                BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ,
                                BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP,
                                BLKIF_RSP_ERROR, BLKIF_RSP_OKAY)
from pvboot.tools import blkif_fuzz
from pvboot.tools.blkif_fuzz import GRANT_KINDS, Request, Segment, expected_status

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PVBOOT = [sys.executable, "-m", "pvboot.tools"]
S = 100          # disk sectors of the model cases


def req(op=BLKIF_OP_READ, sector=0, segs=((0, 0, 7, "rw"),), nr=None):
    segs = tuple(Segment(*s) for s in segs)
    return Request(op, sector, segs, len(segs) if nr is None else nr, 1, 0, 0)


# What Linux xen-blkback answers (dispatch_rw_block_io, __do_block_io_op), case by case.
LINUX = [
    (req(), False, BLKIF_RSP_OKAY),
    (req(sector=S - 1, segs=((0, 7, 7, "rw"),)), False, BLKIF_RSP_OKAY),
    (req(sector=S - 4), False, BLKIF_RSP_ERROR),                      # across the end
    (req(sector=S), False, BLKIF_RSP_ERROR),
    (req(sector=(1 << 64) - 4), False, BLKIF_RSP_ERROR),              # u64 overflow
    (req(segs=((0, 5, 4, "rw"),)), False, BLKIF_RSP_ERROR),           # first > last
    (req(segs=((0, 0, 8, "rw"),)), False, BLKIF_RSP_ERROR),           # last past the page
    (req(nr=0), False, BLKIF_RSP_ERROR),
    (req(nr=BLKIF_MAX_SEGMENTS_PER_REQUEST + 1), False, BLKIF_RSP_ERROR),
    (req(nr=255), False, BLKIF_RSP_ERROR),
    (req(nr=3), False, BLKIF_RSP_ERROR),                              # zero descriptors: gref 0
    (req(segs=((0, 0, 7, "ro"),)), False, BLKIF_RSP_ERROR),           # a read needs a writable grant
    (req(BLKIF_OP_WRITE, segs=((0, 0, 7, "ro"),)), False, BLKIF_RSP_OKAY),
    (req(BLKIF_OP_WRITE), True, BLKIF_RSP_ERROR),
    (req(BLKIF_OP_FLUSH_DISKCACHE, segs=()), False, BLKIF_RSP_OKAY),
    (req(BLKIF_OP_FLUSH_DISKCACHE, segs=()), True, BLKIF_RSP_EOPNOTSUPP),
    (req(BLKIF_OP_WRITE_BARRIER), False, BLKIF_RSP_EOPNOTSUPP),
    (req(BLKIF_OP_DISCARD), False, BLKIF_RSP_EOPNOTSUPP),
    (req(BLKIF_OP_INDIRECT), False, BLKIF_RSP_EOPNOTSUPP),
    (req(4), False, BLKIF_RSP_EOPNOTSUPP),
    (req(77), False, BLKIF_RSP_EOPNOTSUPP),
] + [(req(segs=((0, 0, 7, kind),)), False, BLKIF_RSP_ERROR)
     for kind in GRANT_KINDS if kind not in ("rw", "ro")]


@pytest.mark.parametrize("request_, read_only, status", LINUX)
def test_the_model_answers_as_linux_blkback(request_, read_only, status):
    assert expected_status(request_, S, read_only) == status


def test_a_seed_gives_one_sequence_covering_every_kind_of_request():
    draws = [blkif_fuzz.random_request(random.Random(5)) for _ in range(2)]
    assert draws[0] == draws[1]
    rng = random.Random(5)
    reqs = [blkif_fuzz.random_request(rng) for _ in range(5000)]
    statuses = {expected_status(r, blkif_fuzz.DISK_SECTORS) for r in reqs}
    assert statuses == {BLKIF_RSP_OKAY, BLKIF_RSP_ERROR, BLKIF_RSP_EOPNOTSUPP}
    assert {s.grant for r in reqs for s in r.segments} == set(GRANT_KINDS)
    assert any(r.nr_segments > BLKIF_MAX_SEGMENTS_PER_REQUEST for r in reqs)
    assert any(r.sector >= blkif_fuzz.DISK_SECTORS for r in reqs)
    assert any(s.first > s.last for r in reqs for s in r.segments)
    assert any(r.op > BLKIF_OP_INDIRECT for r in reqs)


def test_the_command_runs_and_summarises():
    proc = subprocess.run(PVBOOT + ["fuzz", "blkif", "400", "--seed", "9", "-q"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "400 requests from seed 9" in proc.stdout.splitlines()[-1]
    assert "0 problem(s)" in proc.stdout.splitlines()[-1]


def test_persist_leaves_the_image_equal_to_the_model():
    proc = subprocess.run(PVBOOT + ["fuzz", "blkif", "400", "--seed", "11", "--persist", "-q"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 problem(s)" in proc.stdout.splitlines()[-1]


def test_a_model_that_forgets_a_write_is_caught(monkeypatch):
    """The oracle can fail on writes: a model that drops every accepted write."""
    apply = blkif_fuzz.BlkifOracle._apply

    def forgetful(self, req, expected, before):
        if req.op != BLKIF_OP_READ:
            return None
        return apply(self, req, expected, before)
    monkeypatch.setattr(blkif_fuzz.BlkifOracle, "_apply", forgetful)
    out = io.StringIO()
    assert blkif_fuzz.run(300, 11, 5.0, "x86_64-abi", True, "f", out, persist=True) == 1
    assert "PROBLEM seed 11" in out.getvalue()


@pytest.mark.parametrize("args", [["0"], ["x"], ["10", "--timeout", "nan"],
                                  ["10", "--timeout", "-1"], ["10", "--seed", "-3"],
                                  ["10", "--abi", "arm"]])
def test_bad_arguments_exit_2_with_one_line(args):
    proc = subprocess.run(PVBOOT + ["fuzz", "blkif"] + args, capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_a_mismatch_prints_the_seed_and_the_request(monkeypatch):
    monkeypatch.setattr(blkif_fuzz, "expected_status", lambda *a, **k: 99)
    out = io.StringIO()
    assert blkif_fuzz.run(50, 4, 5.0, "x86_64-abi", True, "pvboot fuzz blkif", out) == 1
    text = out.getvalue()
    assert "PROBLEM seed 4 request 1: status" in text and "Request(op=" in text
    assert "pvboot fuzz blkif 1 --seed 4" in text
