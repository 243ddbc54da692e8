"""Shared fixtures for the emulated-hardware tests (xenstore daemon and clients)."""

import os
import shutil
import tempfile

import pytest

from pvboot.emu.xen.xenstored import Limits, XenstoreDaemon
from tests.emu.xs_helpers import T


@pytest.fixture
def xs_sockdir():
    """A short directory for unix sockets (pytest's tmp_path can exceed 107 bytes)."""
    d = tempfile.mkdtemp(prefix="xs-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def xs_daemon_factory(xs_sockdir):
    """make(**limits) -> a started daemon with those quotas (others at their defaults)."""
    started = []

    def make(**limits):
        d = XenstoreDaemon(os.path.join(xs_sockdir, "sock%d" % len(started)),
                           limits=Limits(**limits)).start()
        started.append(d)
        return d
    yield make
    for d in started:
        d.stop(timeout=T)

