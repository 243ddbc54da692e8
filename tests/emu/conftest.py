"""Shared fixtures for the emulated-hardware tests (guest memory, xenstore daemon and clients)."""

import os

import pytest

from pvboot.emu.memory import GuestMemory
from pvboot.emu.xen.xenstored import Limits, XenstoreDaemon
from tests.emu.xs_helpers import T, short_socket_dir


@pytest.fixture
def mem():
    """Guest memory with 1 MiB above the first (and its Xen area), closed after the test."""
    m = GuestMemory(1)
    yield m
    m.close()


@pytest.fixture
def xs_sockdir():
    with short_socket_dir() as d:
        yield d


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

