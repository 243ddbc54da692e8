"""Event channels: Xen's checks for alloc_unbound / bind_interdomain / send / close, and
wake-ups across processes (a child waits on an event the parent sends; a
notification sent before the waiter sleeps is not lost)."""

import select
import os
import subprocess
import sys
import textwrap
import time

import pytest

from pvboot.emu.xen.evtchn import (EVTCHN_PORTS_PER_DOMAIN, EVTCHNSTAT_closed,
                            EVTCHNSTAT_interdomain, EVTCHNSTAT_unbound, EventChannels,
                            EvtchnError)

GUEST, BACKEND = 1, 0
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def ev(mem):
    e = EventChannels.create(mem, mem.xen_area_base + 4096)
    yield e
    e.release()


def connect(ev):
    guest_port = ev.alloc_unbound(GUEST, BACKEND)
    backend_port = ev.bind_interdomain(BACKEND, GUEST, guest_port)
    return guest_port, backend_port


def test_alloc_and_bind(ev):
    port = ev.alloc_unbound(GUEST, BACKEND)
    assert port >= 1
    assert ev.status(GUEST, port)[:3] == (EVTCHNSTAT_unbound, GUEST, BACKEND)
    # not offered to domain 2; not a port; not unbound
    with pytest.raises(EvtchnError):
        ev.bind_interdomain(2, GUEST, port)
    with pytest.raises(EvtchnError):
        ev.bind_interdomain(BACKEND, GUEST, port + 1)
    with pytest.raises(EvtchnError):
        ev.bind_interdomain(BACKEND, GUEST, 0)
    with pytest.raises(EvtchnError):
        ev.bind_interdomain(BACKEND, GUEST, EVTCHN_PORTS_PER_DOMAIN)
    local = ev.bind_interdomain(BACKEND, GUEST, port)
    assert ev.status(GUEST, port)[:4] == (EVTCHNSTAT_interdomain, GUEST, BACKEND, local)
    assert ev.status(BACKEND, local)[:4] == (EVTCHNSTAT_interdomain, BACKEND, GUEST, port)
    # the binder is told to look, in case it missed a send to the unbound port
    assert ev.poll_pending(BACKEND) == [local]
    with pytest.raises(EvtchnError):
        ev.bind_interdomain(BACKEND, GUEST, port)          # already bound


def test_ports_are_per_domain(ev):
    a = ev.alloc_unbound(GUEST, BACKEND)
    b = ev.alloc_unbound(BACKEND, GUEST)
    assert a == b == 1
    with pytest.raises(EvtchnError):
        ev.alloc_unbound(9, BACKEND)


def test_send_sets_peer_pending_and_wakes(ev):
    guest_port, backend_port = connect(ev)
    ev.poll_pending(BACKEND)
    ev.send(GUEST, guest_port)
    assert ev.is_pending(BACKEND, backend_port)
    assert not ev.is_pending(GUEST, guest_port)
    assert ev.wait(BACKEND, 1.0) == [backend_port]
    assert not ev.is_pending(BACKEND, backend_port)
    ev.send(BACKEND, backend_port)
    assert ev.wait(GUEST, 1.0, ports=(guest_port,)) == [guest_port]


def test_wait_is_bounded(ev):
    guest_port, backend_port = connect(ev)
    ev.poll_pending(BACKEND)
    assert ev.wait(BACKEND, 0.1) == []
    assert not ev.is_pending(BACKEND, backend_port)      # nothing arrived: the bound ended it
    assert ev.wait(BACKEND, 0) == []


def test_send_on_unbound_is_dropped_and_bad_ports_fail(ev):
    port = ev.alloc_unbound(GUEST, BACKEND)
    ev.send(GUEST, port)                                   # silently dropped, as in Xen
    assert ev.poll_pending(BACKEND) == [] and ev.poll_pending(GUEST) == []
    for bad in (0, EVTCHN_PORTS_PER_DOMAIN, -1, 40):
        with pytest.raises(EvtchnError):
            ev.send(GUEST, bad)
    with pytest.raises(EvtchnError):
        ev.close(GUEST, 40)


def test_close_makes_peer_unbound_and_rebind_works(ev):
    guest_port, backend_port = connect(ev)
    ev.close(BACKEND, backend_port)
    assert ev.status(BACKEND, backend_port)[0] == EVTCHNSTAT_closed
    assert ev.status(GUEST, guest_port)[:3] == (EVTCHNSTAT_unbound, GUEST, BACKEND)
    again = ev.bind_interdomain(BACKEND, GUEST, guest_port)
    assert ev.status(GUEST, guest_port)[3] == again
    ev.close(GUEST, guest_port)
    assert ev.status(BACKEND, again)[:3] == (EVTCHNSTAT_unbound, BACKEND, GUEST)
    ev.close(BACKEND, again)
    with pytest.raises(EvtchnError):
        ev.close(BACKEND, again)


def test_mask_holds_the_event_until_unmask(ev):
    guest_port, backend_port = connect(ev)
    ev.poll_pending(BACKEND)
    ev.mask(BACKEND, backend_port)
    ev.send(GUEST, guest_port)
    assert ev.is_pending(BACKEND, backend_port)
    assert ev.wait(BACKEND, 0.05) == []
    ev.unmask(BACKEND, backend_port)
    assert ev.wait(BACKEND, 1.0) == [backend_port]


def test_scribbled_page_is_not_trusted(mem, ev):
    guest_port, backend_port = connect(ev)
    off = ev._offset(GUEST, guest_port)
    ev.page[off + 8:off + 12] = (0xFFFFFFFF).to_bytes(4, "little")   # remote port garbage
    with pytest.raises(EvtchnError):
        ev.send(GUEST, guest_port)
    ev.page[0:4] = b"XXXX"
    with pytest.raises(ValueError):
        EventChannels.attach(mem, ev.address, {})


CHILD = textwrap.dedent("""
    import os, sys, time
    from pvboot.emu.xen.evtchn import EventChannels
    path, address, fd0, fd1, port, delay = sys.argv[1], *map(int, sys.argv[2:7])
    from pvboot.emu.xen.grant_table import GuestFrames
    frames = GuestFrames(path, None)
    ev = EventChannels.attach(frames, address, {0: fd0, 1: fd1})
    print("ready", flush=True)
    time.sleep(delay / 1000)
    t = time.monotonic()
    got = ev.wait(0, 5.0)
    waited = time.monotonic() - t
    if got == [port]:
        ev.send(0, port)
    print(got, "%.4f" % waited, flush=True)
""")


def spawn_child(mem, ev, port, delay_ms):
    fds = (ev.eventfd(BACKEND), ev.eventfd(GUEST))
    return subprocess.Popen([sys.executable, "-c", CHILD, mem.path_for_other_process,
                             str(ev.address), str(fds[0]), str(fds[1]), str(port),
                             str(delay_ms)],
                            stdout=subprocess.PIPE, text=True, pass_fds=fds, cwd=REPO)


def test_cross_process_wake_up(mem, ev):
    guest_port, backend_port = connect(ev)
    ev.poll_pending(BACKEND)
    child = spawn_child(mem, ev, backend_port, 0)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.1)                                    # let it go to sleep
        ev.send(GUEST, guest_port)
        assert ev.wait(GUEST, 5.0, ports=(guest_port,)) == [guest_port]
        line = child.stdout.readline().split()
        assert line[0] == "[%d]" % backend_port
        assert not ev.is_pending(GUEST, guest_port)       # the reply's wake-up was consumed
    finally:
        child.wait(10)
    assert child.returncode == 0


def test_send_before_the_waiter_sleeps_is_not_lost(mem, ev):
    guest_port, backend_port = connect(ev)
    ev.poll_pending(BACKEND)
    ev.send(GUEST, guest_port)                            # before the child even exists
    child = spawn_child(mem, ev, backend_port, 200)
    try:
        assert child.stdout.readline().strip() == "ready"
        got, _waited = child.stdout.readline().split()
        assert got == "[%d]" % backend_port                # a lost send would time out: []
        assert ev.wait(GUEST, 5.0) == [guest_port]
    finally:
        child.wait(10)
    assert child.returncode == 0


def test_allocation_is_exclusive_across_processes(mem, ev):
    """Two processes allocating dom0 ports at once never get the same port."""
    script = textwrap.dedent("""
        import sys
        from pvboot.emu.xen.evtchn import EventChannels
        from pvboot.emu.xen.grant_table import GuestFrames
        frames = GuestFrames(sys.argv[1], None)
        ev = EventChannels.attach(frames, int(sys.argv[2]), {})
        sys.stdin.readline()
        print(" ".join(str(ev.alloc_unbound(0, 1)) for _ in range(25)), flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script, mem.path_for_other_process,
                              str(ev.address)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        child.stdin.write("go\n")
        child.stdin.flush()
        mine = [ev.alloc_unbound(BACKEND, GUEST) for _ in range(25)]
        theirs = [int(p) for p in child.stdout.readline().split()]
    finally:
        child.stdin.close()
        child.wait(10)
    assert len(theirs) == 25
    assert not set(mine) & set(theirs)
    assert len(set(mine) | set(theirs)) == 50


def _readable(fd):
    return bool(select.select([fd], [], [], 0)[0])


def test_each_backend_process_has_its_own_waker(mem, ev):
    # Two backends in dom0 (one per disk), each attached with its own waker: a send to
    # one backend's port must wake that backend only, so neither drains the other's
    # wake-up (which would leave it waiting out its poll timeout).
    waker_a, fd_a = ev.new_waker()
    waker_b, fd_b = ev.new_waker()
    assert waker_a != waker_b
    page = mem.xen_area_base + 4096
    backend_a = EventChannels(mem.buf[page:page + 4096], {GUEST: ev.eventfd(GUEST)},
                              address=page, wakers={waker_a: fd_a}, own_waker=waker_a)
    backend_b = EventChannels(mem.buf[page:page + 4096], {GUEST: ev.eventfd(GUEST)},
                              address=page, wakers={waker_b: fd_b}, own_waker=waker_b)
    guest_a = ev.alloc_unbound(GUEST, BACKEND)
    guest_b = ev.alloc_unbound(GUEST, BACKEND)
    port_a = backend_a.bind_interdomain(BACKEND, GUEST, guest_a)
    port_b = backend_b.bind_interdomain(BACKEND, GUEST, guest_b)
    backend_a.drain(BACKEND)
    backend_b.drain(BACKEND)
    ev.send(GUEST, guest_a)
    assert _readable(fd_a) and not _readable(fd_b)
    assert backend_a.wait(BACKEND, 1.0, ports=(port_a,)) == [port_a]
    ev.send(GUEST, guest_b)
    assert _readable(fd_b) and not _readable(fd_a)
    assert backend_b.wait(BACKEND, 1.0, ports=(port_b,)) == [port_b]
    # Backends answer through the guest's own eventfd, as before.
    backend_b.send(BACKEND, port_b)
    assert ev.wait(GUEST, 1.0, ports=(guest_b,)) == [guest_b]
