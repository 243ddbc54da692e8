"""The standalone daemon's command line (quota options, --help, bad input) and
Debian's xenstore-utils, as an unprivileged domain, running into a quota."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pvboot.emu.xen.xenstored import DEFAULT_LIMITS
from pvboot.emu.xen.xsclient import XenstoreError, XsClient
from tests.emu.xs_helpers import T, open_guest
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
DAEMON = [sys.executable, "-m", "pvboot.emu.xen.xenstored"]
ENV = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_daemon_cli(*argv):
    return subprocess.run(DAEMON + list(argv), env=ENV, capture_output=True, text=True, timeout=30)


def test_help_lists_every_quota_with_its_default():
    p = run_daemon_cli("--help")
    assert p.returncode == 0
    help_text = " ".join(p.stdout.split())
    for opt, value in (("--entry-nb", DEFAULT_LIMITS.nodes), ("--entry-size", DEFAULT_LIMITS.node_size),
                       ("--watch-nb", DEFAULT_LIMITS.watches),
                       ("--transaction", DEFAULT_LIMITS.transactions),
                       ("--perm-nb", DEFAULT_LIMITS.node_permissions),
                       ("--path-max", DEFAULT_LIMITS.path_max)):
        assert opt in help_text
        assert "(default: %d)" % value in help_text
    assert "transaction-nodes (default %d)" % DEFAULT_LIMITS.transaction_nodes in help_text


@pytest.mark.parametrize("argv", [
    ["-E", "-1"], ["-E", "nan"], ["-W", "inf"], ["-S", "1e3"], ["-t", "99999999999999999999"],
    ["-Q", "bogus=3"], ["-Q", "nodes"], ["-Q", "nodes=-4"], ["--domain-socket", "x:/tmp/s"],
], ids=lambda a: " ".join(a))
def test_bad_options_exit_2_with_one_line(xs_sockdir, argv):
    p = run_daemon_cli("--socket", os.path.join(xs_sockdir, "s"), *argv)
    assert p.returncode == 2
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and "error:" in lines[0], p.stderr
    assert not os.path.exists(os.path.join(xs_sockdir, "s"))


def test_unusable_socket_path_exits_2(xs_sockdir):
    not_a_socket = os.path.join(xs_sockdir, "file")
    Path(not_a_socket).write_text("")
    for path in (not_a_socket, os.path.join(xs_sockdir, "missing", "s")):
        p = run_daemon_cli("--socket", path)
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
        assert path in p.stderr


def wait_for_socket(path: str, proc) -> None:
    wait_until(lambda: os.path.exists(path), "the daemon to create " + path, 10, process=proc)


@pytest.mark.parametrize("verbose, logged", [([], False), (["-v"], False), (["-vv"], True)])
def test_verbosity_decides_what_the_daemon_says(xs_sockdir, verbose, logged):
    """-vv reports every connection it closes on stderr, less verbose runs do not (the
    daemon writes its own diagnostics: pvboot's start-up does not import logging)."""
    path = os.path.join(xs_sockdir, "s")
    proc = subprocess.Popen(DAEMON + ["--socket", path] + verbose, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_socket(path, proc)
        with XsClient.connect(path, timeout=T) as xs:
            xs.write("/k", "v")
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    assert ("xenstored: closing" in err) is logged, err


def test_standalone_daemon_applies_quota_options(xs_sockdir):
    dom0_path, guest_path = os.path.join(xs_sockdir, "s"), os.path.join(xs_sockdir, "g")
    proc = subprocess.Popen(DAEMON + ["--socket", dom0_path, "--domain-socket", "1:" + guest_path,
                                      "-E", "3", "-Q", "node-permissions=2"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_socket(guest_path, proc)
        with XsClient.connect(dom0_path, timeout=T) as xs:
            xs.mkdir("/local/domain/1")
            xs.set_perms("/local/domain/1", ["n1"])
            with XsClient.connect(guest_path, timeout=T) as g:
                g.write("a", "1")
                g.write("b", "2")                  # 3 nodes with the home
                with pytest.raises(XenstoreError) as ei:
                    g.write("c", "3")
                assert ei.value.errname == "ENOSPC"
                with pytest.raises(XenstoreError) as ei:
                    g.set_perms("a", ["n1", "r2", "r3"])
                assert ei.value.errname == "ENOSPC"
                g.set_perms("a", ["n1", "r2"])
            for i in range(10):                    # dom0 keeps its exemption
                xs.write("/dom0/%d" % i, "x")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0


# -- Debian's xenstore-utils as an unprivileged domain

XS_TOOLS = ["xenstore-write", "xenstore-read", "xenstore-chmod", "xenstore-rm"]


@pytest.fixture
def guest_tool(xs_daemon_factory, xs_sockdir):
    """(daemon, run(tool, *args) as domain 1 over its own socket, run as dom0)."""
    missing = [t for t in XS_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip("xenstore-utils not installed (missing %s)" % ", ".join(missing))
    d = xs_daemon_factory()
    guest_path = os.path.join(xs_sockdir, "guest1")
    d.listen_domain(1, guest_path)
    open_guest(d, 1).close()

    def runner(socket_path):
        env = dict(os.environ, XENSTORED_PATH=socket_path)
        return lambda *argv: subprocess.run(list(argv), env=env, capture_output=True, text=True,
                                            timeout=20)
    return d, runner(guest_path), runner(d.socket_path)


def test_xenstore_utils_guest_hits_quotas(guest_tool):
    d, as_guest, as_dom0 = guest_tool
    assert as_guest("xenstore-write", "small", "ok").returncode == 0
    big = "x" * 2100                                  # over the 2048-byte node-size quota
    p = as_guest("xenstore-write", "big", big)
    assert p.returncode != 0 and "could not write path" in p.stderr
    assert d.read("/local/domain/1/big") is None
    p = as_guest("xenstore-chmod", "small", "n1", "r2", "r3", "r4", "r5", "r6")
    assert p.returncode != 0 and os.strerror(28) in p.stderr    # ENOSPC, as libxenstore reports it
    assert as_guest("xenstore-read", "small").stdout == "ok\n"  # the domain is still served
    assert as_dom0("xenstore-write", "/local/domain/1/big", big).returncode == 0   # dom0 exempt
    assert as_guest("xenstore-read", "big").stdout == big + "\n"
    assert as_guest("xenstore-rm", "big").returncode == 0
