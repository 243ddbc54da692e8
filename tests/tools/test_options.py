"""Every number a user types: in range, or exit 2 and one line (tools/options.py), tried
with hypothesis through the real parsers and a few times through the real process;
text input (--keys, --serial-input) and the small usage errors."""
import contextlib
import io
import json
import math
import os
import resource
import signal
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pvboot.tools import blkif_fuzz, cli, fuzz, options, runner
from pvboot.tools.bench import cli as bench_cli
from tests.cli import assert_one_line_error, image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PVBOOT = [sys.executable, "-m", "pvboot.tools"]

# How each command's real parser is reached (built once: parsing does not change it).
_BUILT = {}


def _parser(command):
    if command not in _BUILT:
        _BUILT[command] = {"bench": bench_cli.build_parser, "fuzz": fuzz.build_parser,
                            "fuzz blkif": blkif_fuzz.build_parser}.get(
            command, lambda: cli.build_parser(command))()
    return _BUILT[command]


PARSERS = {
    "boot": lambda argv: _parser("boot").parse_args(["boot", *argv]),
    "compare": lambda argv: _parser("compare").parse_args(["compare", *argv]),
    "mkimage": lambda argv: _parser("mkimage").parse_args(["mkimage", "grub-fat", "x.img", *argv]),
    "bench": lambda argv: _parser("bench").parse_args(argv),
    "fuzz": lambda argv: _parser("fuzz").parse_args(["1", *argv]),
    "fuzz blkif": lambda argv: _parser("fuzz blkif").parse_args(["1", *argv]),
}
# (command, option, its Range, the attribute it sets)
OPTIONS = [
    ("boot", "--memory", options.MEMORY_MIB, "memory"),
    ("boot", "--timeout", options.TIMEOUT, "timeout"),
    ("boot", "--max-insns", options.MAX_INSNS, "max_insns"),
    ("boot", "--backend-timeout", options.BACKEND_TIMEOUT, "backend_timeout"),
    ("compare", "--memory", options.MEMORY_MIB, "memory"),
    ("compare", "--timeout", options.TIMEOUT, "timeout"),
    ("compare", "--backend-timeout", options.BACKEND_TIMEOUT, "backend_timeout"),
    ("mkimage", "--size", options.MKIMAGE_SIZE_MIB, "size"),
    ("bench", "--runs", options.BENCH_RUNS, "runs"),
    ("bench", "--bulk-mib", options.BENCH_BULK_MIB, "bulk_mib"),
    ("fuzz", "--seed", options.FUZZ_SEED, "seed"),
    ("fuzz", "--max-insns", options.FUZZ_MAX_INSNS, "max_insns"),
    ("fuzz", "--timeout", options.TIMEOUT, "timeout"),
    ("fuzz blkif", "--seed", options.FUZZ_SEED, "seed"),
    ("fuzz blkif", "--timeout", options.TIMEOUT, "timeout"),
]

SPECIAL = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e400", "-1e400", "0", "-0",
           "0.0", "-1", "1e-400", "0x", "0x10", "0b101", "1_000", " 7 ", "", "9" * 5000,
           str(2**63), str(2**63 - 1), str(2**64), "86400", "86400.0001", "3071", "3072"]
number_texts = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats().map(repr),
    st.floats(min_value=-1e6, max_value=1e6).map(str),
    st.integers().map(str),
    st.integers(min_value=-2**70, max_value=2**70).map(hex),
    st.text(max_size=30),
)


def parse(command, option, text):
    """(namespace or None, exit code or None, stderr) of parsing `option=text`."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return PARSERS[command]([f"{option}={text}"]), None, err.getvalue()
        except SystemExit as exc:
            return None, exc.code, err.getvalue()


@pytest.mark.parametrize("command,option,rng,attr", OPTIONS,
                         ids=[f"{c} {o}" for c, o, _r, _a in OPTIONS])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=number_texts)
def test_a_number_is_in_range_or_one_line_and_exit_2(command, option, rng, attr, text):
    args, code, err = parse(command, option, text)
    if args is not None:
        value = getattr(args, attr)
        assert isinstance(value, int) if rng.integer else isinstance(value, float)
        assert not (isinstance(value, float) and (math.isnan(value) or math.isinf(value)))
        assert rng.low <= value <= rng.high and not (rng.low_open and value == rng.low)
        assert err == ""
    else:
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "error: argument" in lines[0], err
        assert "Traceback" not in err


@settings(max_examples=300, deadline=None)
@given(keyword=st.sampled_from(sorted(options.BOOT_KEYWORDS)),
       value=st.one_of(st.floats(), st.integers(), st.integers(min_value=-2**80, max_value=2**80)))
def test_runner_keywords_use_the_same_ranges(keyword, value):
    """runner.boot's numbers (the pytest plugin's manifests use them) take the ranges of
    the options; out of range is InputError before anything starts."""
    rng = options.BOOT_KEYWORDS[keyword]
    try:
        checked = options.check(keyword, value)
    except ValueError as exc:
        assert str(exc).startswith(rng.name) and "\n" not in str(exc)
        with pytest.raises(runner.InputError):
            runner.boot([], **{keyword: value})
    else:
        assert checked == value and rng.low <= value <= rng.high
        if rng.integer:
            assert isinstance(value, int)


def pvboot(*args, **kwargs):
    return subprocess.run(PVBOOT + list(args), capture_output=True, text=True, timeout=60,
                          cwd=REPO, **kwargs)


@pytest.mark.parametrize("argv,fragment", [
    (["boot", "--timeout", "nan"], "NaN"),
    (["boot", "--timeout", "1e400"], "out of range"),
    (["boot", "--max-insns", str(2**63)], "out of range"),
    (["boot", "--memory", "0"], "at least 1"),
    (["boot", "--memory", "1048576"], "3,071 MiB"),
    (["boot", "--backend-timeout", "-5"], "out of range"),
    (["compare", "--timeout", "inf", "x.img"], "out of range"),
    (["bench", "--runs", "0"], "out of range"),
    (["mkimage", "grub-fat", "x.img", "--size", "99999999"], "out of range"),
    (["fuzz", "1", "--seed", "-1"], "out of range"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_the_real_process_refuses_absurd_numbers(argv, fragment):
    assert_one_line_error(pvboot(*argv), fragment)


def test_the_largest_memory_boots():
    """--memory 3071 (the top of the range) is a machine that boots: E820 and INT 12h/15h
    describe it and the demo disk passes."""
    proc = pvboot("boot", "--memory", "3071", "--json", "--timeout", "30")
    assert proc.returncode == 0, proc.stderr


# -- text input -----------------------------------------------------------------------
ECHO_THREE = """
    mov cx, 3
next:
    mov dx, 0x3fd
wait:
    in al, dx
    test al, 1
    jz wait
    mov dx, 0x3f8
    in al, dx
    out dx, al
    loop next
    mov al, 0
    out 0xf4, al
"""


def test_serial_input_is_the_arguments_utf8_bytes(tmp_path):
    path = image(tmp_path, ECHO_THREE)
    proc = subprocess.run(PVBOOT + ["boot", str(path), "--serial-input", "\u2603", "--timeout", "10"],
                          capture_output=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("\u2603".encode("utf-8"))      # E2 98 83, echoed back


def test_keys_refuse_what_no_pc_key_types():
    assert_one_line_error(pvboot("boot", "--keys", "a\u2603"), "U+2603", "US PC keyboard")
    with pytest.raises(runner.InputError, match="U\\+00E9"):
        runner.boot([], keys="caf\u00e9")


# -- small usage errors ------------------------------------------------------------------
def test_no_subcommand_is_a_usage_error_on_stderr():
    proc = pvboot()
    assert proc.returncode == 2 and proc.stdout == ""
    assert "a subcommand is required" in proc.stderr


def test_a_symlink_loop_is_named_as_such(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert_one_line_error(pvboot("boot", str(tmp_path / "a")), "symbolic link loop")
    assert_one_line_error(pvboot("boot", "--expect-kernel", str(tmp_path / "a")),
                          "--expect-kernel", "symbolic link loop")


def limited(size):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_the_file_size_limit_names_the_file():
    """Under `ulimit -f` every file pvboot writes is named: the demo disk it builds
    (1 MiB), then guest RAM (a memfd of --memory + 1 MiB)."""
    proc = pvboot("boot", "-q", preexec_fn=limited(512 * 1024))
    assert_one_line_error(proc, "demo.img", "too large")
    proc = pvboot("boot", "--memory", "1", "-q", preexec_fn=limited((1 << 20) + 4096))
    assert_one_line_error(proc, "guest RAM (2 MiB", "file-size limit")


# -- signals ----------------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_and_cleans_up(tmp_path, signum):
    """SIGTERM / SIGINT while the guest spins in one translated block (no Python runs):
    the run stops long before its --timeout, cleans up and exits with 128 + signal."""
    path = image(tmp_path, "spin: jmp spin")
    proc = subprocess.Popen(PVBOOT + ["boot", str(path), "--timeout", "600", "--trace", "int",
                                      "-q"], stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        for line in proc.stderr:             # the boot has reached the guest's code
            if " int 19 " in line:
                break
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert f"interrupted by {signal.Signals(signum).name}" in err
    assert "Traceback" not in err and "Exception ignored" not in err


SIGNAL_THREAD_ENDS = """
import types
from pvboot.tools import runner
runner.SIGNAL_POLL_SECONDS = 3600.0
machine = types.SimpleNamespace(stop=lambda *a: None, uc=types.SimpleNamespace(emu_stop=None))
with runner._stop_on_signals(machine):
    pass
print("left")
"""


def test_the_signal_thread_ends_with_the_run_not_at_its_poll_interval():
    """Leaving the run wakes the signal thread (it is not polled for its end): with an
    hour-long safety-net interval the process still leaves the block at once, and no
    emu_stop is called on the way out (emu_stop=None would raise)."""
    proc = subprocess.run([sys.executable, "-c", SIGNAL_THREAD_ENDS], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout == "left\n", proc.stderr


def test_no_backend_wait_outlasts_the_run_timeout(tmp_path):
    """--backend-timeout is a bound on each wait inside the firmware, where the watchdog
    cannot stop the run: it is capped at --timeout."""
    proc = pvboot("boot", image(tmp_path, "cli\nhlt"), "--no-backend", "--backend-timeout", "600",
                  "--timeout", "1", "--json")
    messages = json.loads(proc.stdout)["messages"]
    assert any("within 1 s" in m for m in messages), messages
