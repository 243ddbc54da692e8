"""Pipelined xenstore requests (XsClient.request_many, read_many, update_many): every
request of a batch goes out before the first reply is awaited, replies come back in
order, and an error is the answer of its own request only."""

import os
import socket
import threading

import pytest

from pvboot.emu.xen import xs_wire
from pvboot.emu.xen.abi import XS_ERROR, XS_READ, XS_WRITE
from pvboot.emu.xen.xenstored import XenstoreDaemon
from pvboot.emu.xen.xsclient import XenstoreError, XsClient
from tests.emu.xs_helpers import T, Raw, short_socket_dir


@pytest.fixture
def xs():
    with short_socket_dir() as d:
        daemon = XenstoreDaemon(os.path.join(d, "sock")).start()
        client = XsClient.connect(daemon.socket_path, timeout=T)
        yield client
        client.close()
        daemon.stop(timeout=T)


def test_a_batch_is_sent_whole_before_any_reply_is_awaited():
    """A peer that answers only once it holds all three requests still gets the batch
    through (a client waiting for each reply in turn would time out), and each reply,
    an error included, lands at its own request's place."""
    ours, theirs = socket.socketpair()
    client = XsClient.from_socket(ours, timeout=T)
    peer = Raw(theirs)
    seen = []

    def answer():
        while len(seen) < 3:
            message = peer.recv()
            if message is None:
                return
            seen.append(message)
        for message, (type_, payload) in zip(seen, [(XS_READ, b"one"),
                                                    (XS_ERROR, xs_wire.error_payload("ENOENT")),
                                                    (XS_WRITE, b"OK\0")]):
            peer.send_raw(xs_wire.encode(type_, message.req_id, message.tx_id, payload))

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    replies = client.request_many([(XS_READ, xs_wire.one_arg("/a")),
                                   (XS_READ, xs_wire.one_arg("/b")),
                                   (XS_WRITE, xs_wire.write_payload("/c", "v"))], tx=5)
    thread.join(T)
    client.close()
    theirs.close()
    assert [m.type for m in seen] == [XS_READ, XS_READ, XS_WRITE]
    assert {m.tx_id for m in seen} == {5}
    assert len({m.req_id for m in seen}) == 3
    assert replies[0] == b"one" and replies[2] == b"OK\0"
    assert isinstance(replies[1], XenstoreError) and replies[1].errname == "ENOENT"


def test_read_many_gives_none_for_a_missing_node(xs):
    xs.write("/x/a", "1")
    xs.write("/x/b", "")
    assert xs.read_many(["/x/a", "/x/missing", "/x/b"]) == ["1", None, ""]


def test_update_many_applies_in_order_inside_a_transaction(xs):
    xs.transact(lambda t: t.update_many([("mkdir", "/d"), ("set_perms", "/d", ["n0", "r1"]),
                                         ("write", "/d/k", "v"), ("rm", "/d/k"),
                                         ("write", "/d/k2", "w")]))
    assert xs.read_many(["/d/k", "/d/k2"]) == [None, "w"]
    assert xs.get_perms("/d") == ["n0", "r1"]


def test_a_failed_update_raises_and_its_transaction_commits_nothing(xs):
    with pytest.raises(XenstoreError) as failure:
        xs.transact(lambda t: t.update_many([("write", "/e/k", "v"),
                                             ("write", "bad//path", "v"),
                                             ("write", "/e/k3", "w")]))
    assert failure.value.errname == "EINVAL"
    assert xs.read_many(["/e/k", "/e/k3"]) == [None, None]


def test_an_unknown_update_is_refused_before_anything_is_sent(xs):
    with pytest.raises(ValueError):
        xs.update_many([("write", "/f", "v"), ("read", "/f")])
    assert xs.read("/f") is None
