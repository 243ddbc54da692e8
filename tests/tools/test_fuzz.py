"""`pvboot fuzz`: reproducible random boot sectors, every run bounded and judged."""
import os
import subprocess
import sys

from pvboot.tools import fuzz, runner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_seed_gives_one_boot_sector():
    sector = fuzz.boot_sector(1234)
    assert len(sector) == 512 and sector.endswith(b"\x55\xAA")
    assert fuzz.boot_sector(1234) == sector != fuzz.boot_sector(1235)
    assert fuzz.disk_image(1234)[:512] == sector
    assert len(fuzz.disk_image(1234)) == fuzz.DISK_SECTORS * 512


def test_each_run_ends_with_a_documented_exit_code_inside_its_bound(tmp_path):
    path = str(tmp_path / "fuzz.img")
    for seed in range(6):
        code, problem, reason = fuzz.run_one(seed, path, max_insns=20_000, timeout=60,
                                             driver="host")
        assert problem is None, (seed, problem)
        assert code in fuzz.DOCUMENTED_EXITS and reason is not None


def test_the_command_reports_seeds_and_a_summary():
    proc = subprocess.run([sys.executable, "-m", "pvboot.tools", "fuzz", "3", "--seed", "40",
                           "--driver", "host", "--max-insns", "20000"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == runner.EXIT_SUCCESS, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[1:4]] == [
        "run 1/3 seed 40", "run 2/3 seed 41", "run 3/3 seed 42"]
    assert "3 runs, 0 problem(s)" in lines[-1]
