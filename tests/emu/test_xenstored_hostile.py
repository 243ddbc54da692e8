"""Hostile clients against the xenstore daemon: the deepest trees its limits allow,
fuzzed wire traffic (hypothesis) and random operation sequences checked against the
per-domain node accounting.  The daemon must answer or close, and keep serving.
"""

from __future__ import annotations

import socket
from collections import Counter

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pvboot.emu.xen import xs_wire
from pvboot.emu.xen.abi import XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX, XS_ERROR, XS_WATCH_EVENT
from pvboot.emu.xen.xenstored import Limits, XenstoreDaemon
from pvboot.emu.xen.xsclient import XenstoreError, XsClient
from tests.emu.xs_helpers import T, open_guest


def test_deepest_absolute_path_then_rm(xs_daemon_factory):
    """1536 levels (the longest absolute path), beyond Python's recursion limit."""
    d = xs_daemon_factory()
    xs = XsClient.from_socket(d.connect(), timeout=T)
    deepest = "/d" * (XENSTORE_ABS_PATH_MAX // 2)
    xs.write(deepest, "bottom")
    xs.watch(deepest, "bottom")
    xs.read_watch(T)                                 # the registration event
    tx = xs.transaction_start()
    xs.rm("/d", tx=tx)                               # inside a transaction first ...
    xs.transaction_end(tx, commit=False)
    assert xs.read(deepest) == "bottom"
    xs.rm("/d")                                      # ... then for real
    assert xs.read_watch(T) == (deepest, "bottom")
    assert not d.exists("/d") and xs.read(deepest) is None
    assert d.nodes_owned()[0] == len(d.owners())     # everything left is dom0's
    other = XsClient.from_socket(d.connect(), timeout=T)
    other.write("/alive", "yes")
    assert xs.read("/alive") == "yes"


def test_deepest_guest_path_its_limits_allow(xs_daemon_factory):
    """With the nodes quota off, path-max (2048) bounds a guest at 1024 levels."""
    d = xs_daemon_factory(nodes=0)
    g = open_guest(d, 1)
    deepest = "/".join(["a"] * 1024)
    assert len(deepest) == 2047
    g.write(deepest, "x")
    with pytest.raises(XenstoreError) as ei:
        g.write(deepest + "/b", "")
    assert ei.value.errname == "EINVAL"
    g.rm("a")
    assert d.nodes_owned()[1] == 1 and g.directory("/local/domain/1") == []


def test_watch_with_a_huge_token_costs_only_its_own_events(xs_daemon_factory):
    """Events too long for a message are not sent, as in C xenstored; the change that
    would have caused one still succeeds for whoever made it."""
    d = xs_daemon_factory()
    xs = XsClient.from_socket(d.connect(), timeout=T)
    g = open_guest(d, 1)
    token = "t" * 4000
    g.watch("/local/domain/1", token)
    assert g.read_watch(T) == ("/local/domain/1", token)
    long_path = "/local/domain/1/" + "a" * 200
    xs.write(long_path, "x")                          # event would be > 4096 bytes
    xs.write("/local/domain/1/b", "y")                # this one fits
    assert g.read_watch(T) == ("/local/domain/1/b", token)
    assert g.read(long_path) == "x"
    assert d.connection_count == 2


# -- wire fuzzing

MAX_U32 = 0xFFFFFFFF
PATHISH = st.lists(st.sampled_from([b"/", b"\0", b"a", b"@", b"1", b"local", b"domain", b"x" * 40,
                                    b"T", b"F", b"r1", b"n0", b"\xff", b"t" * 1500]),
                   max_size=12).map(b"".join)
PAYLOAD = st.one_of(PATHISH, st.binary(max_size=64))
FRAME = st.one_of(
    # well-formed framing, any type / transaction / payload
    st.tuples(st.integers(0, 30) | st.integers(0, MAX_U32), st.integers(0, MAX_U32),
              st.integers(0, 3) | st.integers(0, MAX_U32), PAYLOAD)
    .map(lambda t: xs_wire.encode(t[0], t[1], t[2], t[3], check=False)),
    # a header whose length lies (too short, too long, beyond XENSTORE_PAYLOAD_MAX)
    st.tuples(st.integers(0, 30), st.integers(0, MAX_U32), st.integers(0, MAX_U32), PAYLOAD)
    .map(lambda t: xs_wire.HEADER.pack(t[0], 1, 0, t[2]) + t[3]),
    # raw garbage
    st.binary(min_size=1, max_size=40),
)


@pytest.fixture(scope="module")
def fuzz_daemon():
    d = XenstoreDaemon(None).start()
    yield d
    d.stop(timeout=T)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(FRAME, max_size=8), domid=st.sampled_from([0, 1, 7]))
def test_fuzzed_wire_traffic_is_answered_or_closed(fuzz_daemon, frames, domid):
    sock = fuzz_daemon.connect_domain(domid)
    sock.settimeout(T)
    data = b"".join(frames)
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while True:                                   # the daemon must hang up: EOF or error
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except (ConnectionResetError, BrokenPipeError):
        received = None                               # closed on us mid-stream: also an end
    finally:
        sock.close()
    if received is not None:
        dec = xs_wire.Decoder()
        answers = dec.feed(bytes(received))
        assert dec.error is None and dec.pending == 0  # whole, well-framed messages only
        # every message the daemon could frame is answered once, in order, by a reply
        # of its own type or an xsd error name; framing errors end the connection
        requests = xs_wire.Decoder().feed(data)
        replies = [m for m in answers if m.type != XS_WATCH_EVENT]
        assert [(m.req_id, m.tx_id) for m in replies] == [(m.req_id, m.tx_id) for m in requests]
        for req, rep in zip(requests, replies):
            assert len(rep.payload) <= XENSTORE_PAYLOAD_MAX
            if rep.type == XS_ERROR:
                assert xs_wire.parse_error(rep.payload) in xs_wire.XSD_ERRNO
            else:
                assert rep.type == req.type
    with XsClient.from_socket(fuzz_daemon.connect(), timeout=T) as probe:
        assert probe.read("/tool") is not None        # still serving everybody else


# -- quota accounting under random operation sequences

NAMES = st.sampled_from(["a", "b", "c"])
REL = st.lists(NAMES, min_size=1, max_size=3).map("/".join)
ACTOR = st.sampled_from([0, 1, 2])
OP = st.one_of(
    st.tuples(st.just("write"), ACTOR, REL, st.integers(0, 3000)),
    st.tuples(st.just("mkdir"), ACTOR, REL),
    st.tuples(st.just("rm"), ACTOR, REL),
    st.tuples(st.just("chown"), st.just(0), REL, st.sampled_from([0, 1, 2])),
    st.tuples(st.just("tx"), ACTOR, st.lists(st.tuples(st.sampled_from(["write", "rm"]), REL),
                                              min_size=1, max_size=4)),
)
QUOTA = 6


def _target(actor: int, rel: str, owner: int) -> str:
    # Guests mostly work in their home, sometimes in the other guest's (EACCES there
    # unless dom0 gave them the node); dom0 everywhere.
    home = owner if actor == 0 else actor
    return "/local/domain/%d/%s" % (home, rel)


def _run(client, op, actor):
    kind = op[0]
    if kind == "write":
        client.write(_target(actor, op[2], 1 + op[3] % 2), "v" * op[3])
    elif kind == "mkdir":
        client.mkdir(_target(actor, op[2], 2))
    elif kind == "rm":
        client.rm(_target(actor, op[2], 1))
    elif kind == "chown":
        client.set_perms(_target(0, op[2], 1), ["n%d" % op[3]])
    else:
        tx = client.transaction_start()
        try:
            for what, rel in op[2]:
                if what == "write":
                    client.write(_target(actor, rel, 1), "t", tx=tx)
                else:
                    client.rm(_target(actor, rel, 1), tx=tx)
        except XenstoreError:
            client.transaction_end(tx, commit=False)
            raise
        client.transaction_end(tx, commit=True)


def _tree_consistent(daemon) -> None:
    nodes = daemon.store.nodes
    for path, node in nodes.items():
        for child in node.children:
            assert (path.rstrip("/") + "/" + child) in nodes, (path, child)
        if path.startswith("/") and path != "/":
            parent = path.rsplit("/", 1)[0] or "/"
            assert path.rsplit("/", 1)[1] in nodes[parent].children, path


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OP, max_size=25))
def test_node_counts_match_the_tree_under_random_operations(ops):
    with XenstoreDaemon(None, limits=Limits(nodes=QUOTA)) as d:
        clients = {0: XsClient.from_socket(d.connect(), timeout=T),
                   1: open_guest(d, 1), 2: open_guest(d, 2)}
        for op in ops:
            actor = op[1]
            before = d.nodes_owned().get(actor, 0)
            try:
                _run(clients[actor], op, actor)
            except XenstoreError as e:
                event(e.errname)
                assert e.errname in ("ENOSPC", "EACCES", "ENOENT", "EAGAIN", "EINVAL"), e
            after = d.nodes_owned().get(actor, 0)
            assert d.nodes_owned() == {k: v for k, v in Counter(d.owners().values()).items() if v}
            if actor:                                 # a guest never grows past its quota
                assert after <= max(before, QUOTA), (op, before, after)
        _tree_consistent(d)
        for c in clients.values():
            c.close()
