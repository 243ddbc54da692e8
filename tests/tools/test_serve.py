"""`pvboot serve` and its client: commands run in a process forked from a warm server
take the client's stdio, arguments, working directory, environment, umask and
signals, end with the client, and the server refuses what it must not run."""
import array
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from pvboot.tools import serve, serve_client, serve_request
from tests.cli import PRINT_PASS, PVBOOT, REPO, image, print_then_spin
from tests.waiting import wait_until

LOG_LINE = re.compile(r"\[(\d+)\] (.*) -> exit (\d+) \(wall")
READY_LINE = re.compile(r"ready: a warmed-up fork \[(\d+)\]")

READY_THEN_LOOP = print_then_spin("READY\\n")

EXIT_WITH_ONE = """
    mov al, 1
    out 0xf4, al
    cli
    hlt
"""


class Served:
    def __init__(self, proc, sock, log):
        self.proc, self.sock, self.log = proc, sock, log

    def env(self, **extra):
        return {**os.environ, "PVBOOT_SERVER": str(self.sock), **extra}

    def run(self, *args, cwd=REPO, timeout=60, env=None):
        return subprocess.run(PVBOOT + list(args), capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, env=env or self.env())

    def lines(self):
        return self.log.read_text()

    def ready_spares(self):
        return [int(pid) for pid in READY_LINE.findall(self.lines())]

    def wait_for_spare(self, count=1):
        wait_until(lambda: len(self.ready_spares()) >= count, f"spare number {count}",
                   timeout=60, process=self.proc)
        return self.ready_spares()[count - 1]

    def served(self):
        """(pid, command, exit code) of every command the server has seen end."""
        return [(int(m.group(1)), m.group(2), int(m.group(3)))
                for m in LOG_LINE.finditer(self.lines())]


def start_server(tmp_path, *options):
    sock = tmp_path / "s.sock"
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(PVBOOT + ["serve", "--socket", str(sock), *options],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, cwd=REPO)
    wait_until(lambda: "serving on" in log.read_text(), "the server to listen",
               timeout=60, process=proc)
    return Served(proc, sock, log)


@pytest.fixture
def server(tmp_path):
    served = start_server(tmp_path)
    yield served
    if served.proc.poll() is None:
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(30) == 0, served.lines()
    assert not served.sock.exists()


def test_a_boot_runs_in_the_server_and_prints_what_a_fresh_pvboot_prints(server, tmp_path):
    disk = image(tmp_path, PRINT_PASS)
    cold = subprocess.run(PVBOOT + ["boot", disk, "--expect", "PASS"], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    client = subprocess.Popen(PVBOOT + ["boot", disk, "--expect", "PASS"], cwd=REPO,
                              env=server.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    out, err = client.communicate(timeout=60)
    assert client.returncode == cold.returncode == 0, err
    assert out == cold.stdout
    assert err == cold.stderr
    [(pid, command, code)] = server.served()
    assert code == 0 and command.startswith("boot ")
    assert pid != client.pid            # it ran in the server's child, not the client


def test_a_warmed_spare_takes_each_command_and_its_warm_up_stays_out_of_the_output(
        server, tmp_path):
    disk = image(tmp_path, PRINT_PASS)
    cold = subprocess.run(PVBOOT + ["boot", disk, "--expect", "PASS"], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    for number in (1, 2):
        spare = server.wait_for_spare(number)
        warm = server.run("boot", disk, "--expect", "PASS")
        assert (warm.returncode, warm.stdout, warm.stderr) == (0, cold.stdout, cold.stderr)
        assert server.served()[-1][0] == spare       # the spare ran it, and only that one
    assert len(set(server.ready_spares())) == len(server.ready_spares())


def test_without_a_spare_each_command_is_forked_when_it_comes(tmp_path):
    served = start_server(tmp_path, "--no-spare")
    try:
        proc = served.run("boot", image(tmp_path, PRINT_PASS), "--expect", "PASS")
        assert proc.returncode == 0, proc.stderr
        assert len(served.served()) == 1 and served.ready_spares() == []
    finally:
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(30) == 0


def test_a_stopping_server_ends_its_spare(tmp_path):
    served = start_server(tmp_path)
    spare = served.wait_for_spare()
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(30) == 0
    assert not os.path.exists(f"/proc/{spare}")


def test_exit_codes_and_errors_reach_the_client(server, tmp_path):
    failing = server.run("boot", image(tmp_path, EXIT_WITH_ONE, "one.img"))
    assert failing.returncode == 1, failing.stderr
    assert "guest wrote 0x1 to port 0xf4" in failing.stderr
    missing = server.run("boot", str(tmp_path / "missing.img"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"pvboot: error: {tmp_path / 'missing.img'}: no such file"]
    assert [code for _pid, _cmd, code in server.served()] == [1, 2]


def test_the_command_takes_the_clients_directory_environment_and_umask(server, tmp_path):
    image(tmp_path, PRINT_PASS, "here.img")
    junit = tmp_path / "out" / "result.xml"
    (tmp_path / "out").mkdir()
    proc = subprocess.run(PVBOOT + ["boot", "here.img", "--expect", "PASS",
                                    "--junit", "out/result.xml"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=server.env(PYTHONPATH=REPO),
                          preexec_fn=lambda: os.umask(0o077))
    assert proc.returncode == 0, proc.stderr
    assert junit.is_file()
    assert junit.stat().st_mode & 0o777 == 0o600          # the server's umask is 022
    assert server.served()[-1][2] == 0
    # argparse wraps --help to $COLUMNS as the command reads it.
    narrow = server.run("boot", "--help", env=server.env(COLUMNS="50"))
    wide = server.run("boot", "--help", env=server.env(COLUMNS="200"))
    assert narrow.returncode == wide.returncode == 0
    cold = server.run("boot", "--help", env=server.env(COLUMNS="50", PVBOOT_SERVER="off"))
    assert narrow.stdout == cold.stdout
    assert len(narrow.stdout.splitlines()) > len(wide.stdout.splitlines())
    assert [cmd for _pid, cmd, _code in server.served()][-2:] == ["boot --help"] * 2


def test_off_runs_the_command_without_the_server(server, tmp_path):
    proc = subprocess.run(PVBOOT + ["boot", image(tmp_path, PRINT_PASS), "--expect", "PASS"],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env=server.env(PVBOOT_SERVER="off"))
    assert proc.returncode == 0, proc.stderr
    assert server.served() == []


def _start_looping_client(server, tmp_path):
    client = subprocess.Popen(PVBOOT + ["boot", image(tmp_path, READY_THEN_LOOP),
                                        "--timeout", "120"],
                              cwd=REPO, env=server.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert client.stdout.readline() == "READY\n"
    return client


def test_ctrl_c_on_the_client_stops_the_command_and_the_server_goes_on(server, tmp_path):
    client = _start_looping_client(server, tmp_path)
    client.send_signal(signal.SIGINT)
    assert client.wait(30) == 130
    assert "interrupted by SIGINT" in client.stderr.read()
    assert [code for _pid, _cmd, code in server.served()] == [130]
    again = server.run("boot", image(tmp_path, PRINT_PASS, "again.img"), "--expect", "PASS")
    assert again.returncode == 0, again.stderr


def test_a_killed_client_ends_its_command(server, tmp_path):
    client = _start_looping_client(server, tmp_path)
    client.kill()
    client.wait(30)
    wait_until(lambda: server.served(), "the command to end after its client", timeout=30)
    [(pid, _cmd, code)] = server.served()
    assert code == 128 + signal.SIGTERM
    assert not os.path.exists(f"/proc/{pid}")


def test_more_commands_than_allowed_run_without_the_server(tmp_path):
    served = start_server(tmp_path, "--max-commands", "1")
    try:
        client = _start_looping_client(served, tmp_path)
        second = served.run("boot", image(tmp_path, PRINT_PASS, "second.img"), "--expect", "PASS")
        assert second.returncode == 0, second.stderr
        assert "refused: busy" in served.lines()
        client.send_signal(signal.SIGTERM)
        assert client.wait(30) == 143
    finally:
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(30) == 0


def _raw_request(sock_path, payload, fds=(0, 1, 2)):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(str(sock_path))
        ancillary = ([(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
                     if fds else [])
        sock.sendmsg([payload], ancillary)
        sock.shutdown(socket.SHUT_WR)
        return serve_client.read_line(sock).decode()


def _request(**changes):
    request = serve_client.build_request(["boot", "--help"])
    request.update(changes)
    return serve_client.encode_request(request)


@pytest.mark.parametrize("payload, fds, reason", [
    (b"\0\0\0\x05hello", (0, 1, 2), "truncated request"),
    (b"\0\0\0\x05he", (0, 1, 2), "truncated request"),
    ((1 << 30).to_bytes(4, "big"), (0, 1, 2), "request too long"),
    (b"\0\0\0\x0cpvboot-serve", (0, 1, 2), "truncated request"),
    (None, (), "3 descriptors expected"),
    (None, (0, 1), "3 descriptors expected"),
])
def test_malformed_requests_are_refused_and_the_server_goes_on(server, tmp_path, payload, fds,
                                                                reason):
    reply = _raw_request(server.sock, _request() if payload is None else payload, fds)
    assert reply.startswith("refused") and reason in reply
    assert reason in server.lines()
    good = server.run("boot", image(tmp_path, PRINT_PASS), "--expect", "PASS")
    assert good.returncode == 0, good.stderr
    assert len(server.served()) == 1


def test_a_client_that_never_sends_is_dropped_after_its_bound(server, tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.settimeout(30)
        silent.connect(str(server.sock))
        reply = serve_client.read_line(silent).decode()    # waits out REQUEST_TIMEOUT
    assert reply.startswith("refused") and "timed out" in reply
    good = server.run("boot", image(tmp_path, PRINT_PASS), "--expect", "PASS")
    assert good.returncode == 0, good.stderr
    assert len(server.served()) == 1


@pytest.mark.parametrize("changes, reason", [
    ({"python": "/usr/bin/python-other"}, "another interpreter"),
    ({"package": "/nowhere/pvboot"}, "another pvboot"),
    ({"umask": 0o7777}, "umask: out of range"),
    ({"rlimits": {"RLIMIT_BOGUS": (1, 1)}}, "bad resource limit"),
    ({"streams": [{"encoding": "no-such-codec", "errors": "strict", "line_buffering": False,
                   "write_through": False}] * 3}, "unknown encoding"),
])
def test_requests_the_server_must_not_run_are_refused(server, changes, reason):
    reply = _raw_request(server.sock, _request(**changes))
    assert reply.startswith("refused") and reason in reply
    assert server.served() == []


def test_a_client_of_another_interpreter_runs_its_command_itself(server, tmp_path):
    # The refusal makes the client run the command in its own process.
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; sys.executable = '/usr/bin/python-other'; "
         "sys.argv[0] = 'pvboot'; from pvboot.tools import console_main; console_main()",
         "boot", image(tmp_path, PRINT_PASS), "--expect", "PASS"],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=server.env())
    assert proc.returncode == 0, proc.stderr
    assert server.served() == []
    assert "refused: another interpreter" in server.lines()


def test_changed_code_makes_the_server_refuse_and_stop(tmp_path):
    package = tmp_path / "pvboot"
    package.mkdir()
    module = package / "a.py"
    module.write_text("x = 1\n")
    sock = tmp_path / "s.sock"
    logged = []
    server = serve.Server(str(sock), 0, 4, logged.append, package=str(package))
    request = serve_client.build_request(["boot"])
    request["package"] = str(package)
    assert server._refusal(request) is None
    os.utime(module, ns=(time.time_ns(), module.stat().st_mtime_ns + 10**9))
    assert server._refusal(request).startswith("stale")
    assert server.stopping == "pvboot's files changed"


def test_resource_limits_above_the_servers_are_refused():
    soft, hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
    if hard == -1:
        pytest.skip("no hard limit on open files here")
    assert serve_request.limit_refusal({"RLIMIT_NOFILE": (soft, hard)}) is None
    assert serve_request.limit_refusal({"RLIMIT_NOFILE": (soft, hard + 1)}) == \
        "RLIMIT_NOFILE hard limit above the server's"
    assert serve_request.limit_refusal({"RLIMIT_NOFILE": (soft, -1)}) is not None


def test_a_second_server_on_the_same_socket_is_an_error(server):
    proc = subprocess.run(PVBOOT + ["serve", "--socket", str(server.sock)], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"pvboot serve: error: {server.sock}: a server is serving there already"]


def test_a_socket_left_by_a_killed_server_is_replaced(tmp_path):
    first = start_server(tmp_path)
    first.proc.kill()
    first.proc.wait(30)
    assert first.sock.exists()
    second = start_server(tmp_path)
    try:
        proc = second.run("boot", image(tmp_path, PRINT_PASS), "--expect", "PASS")
        assert proc.returncode == 0, proc.stderr
        assert len(second.served()) == 1
    finally:
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(30) == 0


def test_an_idle_server_stops_by_itself(tmp_path):
    served = start_server(tmp_path, "--idle-exit", "0.2")
    assert served.proc.wait(60) == 0
    assert "stopped (idle)" in served.lines()
    assert not served.sock.exists()


@pytest.mark.parametrize("option, value", [("--idle-exit", "nan"), ("--idle-exit", "-1"),
                                           ("--idle-exit", "inf"), ("--max-commands", "0"),
                                           ("--max-commands", "1e9")])
def test_bad_numbers_are_one_line_errors(tmp_path, option, value):
    proc = subprocess.run(PVBOOT + ["serve", "--socket", str(tmp_path / "s.sock"), option, value],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and option in proc.stderr
    assert not (tmp_path / "s.sock").exists()


def test_without_a_server_the_client_steps_aside(tmp_path, monkeypatch):
    monkeypatch.setenv("PVBOOT_SERVER", str(tmp_path / "absent.sock"))
    assert serve_client.socket_path() is None
    assert serve_client.run_through_server(["boot"]) is None
    plain = tmp_path / "plain"
    plain.write_text("")
    monkeypatch.setenv("PVBOOT_SERVER", str(plain))      # not a socket
    assert serve_client.socket_path() is None
    monkeypatch.setenv("PVBOOT_SERVER", "off")
    assert serve_client.socket_path() is None


def test_without_process_descriptors_the_server_says_so(tmp_path, monkeypatch, capsys):
    def unsupported(_pid):
        raise OSError(38, "Function not implemented")
    monkeypatch.setattr(os, "pidfd_open", unsupported)
    code = serve.main(["--socket", str(tmp_path / "s.sock")], prog="pvboot serve",
                      command=lambda argv: 0, warm_up=lambda: None)
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "pvboot serve: error: needs process descriptors (pidfd_open, Linux 5.3 or later): "
        "Function not implemented"]
    assert not (tmp_path / "s.sock").exists()
