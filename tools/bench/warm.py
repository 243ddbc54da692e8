"""The warm server of the bench's "warm" boot rows: a `pvboot serve` started before
the boot rounds and stopped after them.  A warm run's CPU time is its client's plus
that of the command the server forked for it, which the server logs as it reaps it
(the client's own rusage cannot include a process that is not its child; for a
command the spare ran, that includes the spare's warm-up boot).  The server warms
its next spare up after each command; the bench waits for it to be ready before it
starts the next process, so that the warm-up never runs beside a measured run.
"""
import re
import signal
import subprocess
import time

from pvboot.tools.serve import READY_PREFIX

START_SECONDS = 60.0
STOP_SECONDS = 30.0
READY_SECONDS = 30.0
LOG_LINE = re.compile(r"\[(\d+)\] .* -> exit (\d+) \(wall ([0-9.]+) s, cpu ([0-9.]+) s\)")


class WarmServer:
    def __init__(self, argv, log_path, cwd, env):
        self.argv, self.log_path, self.cwd, self.env = argv, log_path, cwd, env
        self.socket_path = argv[argv.index("--socket") + 1]
        self.proc = None
        self.seen = 0           # log lines already matched to a run
        self.ready_seen = 0     # "ready" lines already waited for

    def start(self):
        """Start it and wait until it listens; returns why it could not ("" when it runs)."""
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log, cwd=self.cwd,
                                         env=self.env, start_new_session=True)
        deadline = time.monotonic() + START_SECONDS
        while "serving on" not in self._log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                lines = self._log().strip().splitlines()
                return "pvboot serve did not start" + (f": {lines[-1]}" if lines else "")
            time.sleep(0.02)
        self.wait_ready()
        return ""

    def wait_ready(self):
        """Wait (bounded) until the server has logged one more spare ready than before."""
        deadline = time.monotonic() + READY_SECONDS
        while self._log().count(READY_PREFIX) <= self.ready_seen:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return
            time.sleep(0.005)
        self.ready_seen += 1

    def client_env(self, env):
        return {**env, "PVBOOT_SERVER": str(self.socket_path)}

    def add_command_cpu(self, record):
        """Add the forked command's CPU time to a warm run's record; a run the server
        did not log (it ran without the server) is marked failed."""
        lines = LOG_LINE.findall(self._log())
        if len(lines) <= self.seen:
            record["ok"] = False
            record["error"] = "the run did not go through pvboot serve"
            return
        _pid, _code, _wall, cpu = lines[self.seen]
        self.seen = len(lines)
        if record["cpu_s"] is not None:
            record["cpu_s"] += float(cpu)
        self.wait_ready()

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_SECONDS)

    def _log(self):
        try:
            return self.log_path.read_text()
        except OSError:
            return ""
