"""Tests for the xenstore daemon (emu/xen/xenstored/), its client (xsclient.py) and
the wire helpers (xs_wire.py), including Debian's xenstore-utils as foreign clients.

Every daemon gets a fresh short socket path (unix socket paths are limited to 107
bytes, which pytest's tmp_path can exceed).  External programs and waits all run under
timeouts so a broken daemon fails tests instead of hanging them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pvboot.emu.xen import xs_wire
from pvboot.emu.xen.abi import (XENSTORE_PAYLOAD_MAX, XS_DIRECTORY, XS_DIRECTORY_PART, XS_ERROR,
                         XS_GET_DOMAIN_PATH, XS_INTRODUCE, XS_MKDIR, XS_READ, XS_RM,
                         XS_SET_TARGET, XS_TRANSACTION_END, XS_TRANSACTION_START, XS_WATCH,
                         XS_WATCH_EVENT, XS_WRITE)
from pvboot.emu.xen.xenstored import XenstoreDaemon
from pvboot.emu.xen.xsclient import XenstoreClosed, XenstoreError, XenstoreTimeout, XsClient
from tests.emu.xs_helpers import Raw, T, err, short_socket_dir
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sockdir():
    with short_socket_dir() as d:
        yield d


@pytest.fixture
def daemon(sockdir):
    d = XenstoreDaemon(os.path.join(sockdir, "sock")).start()
    yield d
    d.stop(timeout=T)


@pytest.fixture
def xs(daemon):
    c = XsClient.connect(daemon.socket_path, timeout=T)
    yield c
    c.close()


@pytest.fixture
def guest(daemon, xs):
    """Domain 1, with /local/domain/1 owned by it (as a toolstack would set up)."""
    xs.mkdir("/local/domain/1")
    xs.set_perms("/local/domain/1", ["n1"])
    c = XsClient.from_socket(daemon.connect_domain(1), timeout=T)
    yield c
    c.close()


# ---------------------------------------------------------------------------
# xs_wire
# ---------------------------------------------------------------------------

def test_wire_encode_decode_roundtrip():
    raw = xs_wire.encode(XS_WRITE, 0x01020304, 9, xs_wire.write_payload("/a", b"v\0w"))
    assert raw[:16] == bytes([11, 0, 0, 0, 4, 3, 2, 1, 9, 0, 0, 0, 6, 0, 0, 0])
    dec = xs_wire.Decoder()
    got = []
    for i in range(len(raw)):               # byte by byte: partial headers and payloads
        got += dec.feed(raw[i:i + 1])
    assert got == [xs_wire.Message(XS_WRITE, 0x01020304, 9, b"/a\0v\0w")]
    assert dec.pending == 0
    with pytest.raises(ValueError):
        xs_wire.encode(XS_WRITE, 1, 0, b"x" * (XENSTORE_PAYLOAD_MAX + 1))


def test_wire_decoder_flags_oversized_header():
    dec = xs_wire.Decoder()
    good = xs_wire.encode(XS_READ, 1, 0, b"/\0")
    bad = xs_wire.encode(XS_READ, 2, 0, b"", check=False)[:12] + (5000).to_bytes(4, "little")
    assert dec.feed(good + bad) == [xs_wire.Message(XS_READ, 1, 0, b"/\0")]
    assert dec.error and dec.feed(good) == []


def test_wire_payload_helpers():
    assert xs_wire.join("a", "b") == b"a\0b\0"
    assert xs_wire.split_strings(b"a\0b\0") == [b"a", b"b"]
    assert xs_wire.split_strings(b"") == []
    assert xs_wire.error_payload("ENOENT") == b"ENOENT\0"
    assert xs_wire.parse_error(b"EAGAIN\0") == "EAGAIN"
    assert xs_wire.parse_watch_event(b"/x\0tok\0") == ("/x", "tok")
    assert xs_wire.parse_perms(["n0", "r0x10", "b010", "w3"]) == [(0, "n"), (16, "r"), (8, "b"), (3, "w")]
    for bad in ("x1", "r", "r1a", "", "r08"):
        with pytest.raises(ValueError):
            xs_wire.parse_perms([bad])
    with pytest.raises(ValueError):
        xs_wire.error_payload("EWHATEVER")


# ---------------------------------------------------------------------------
# basic operations
# ---------------------------------------------------------------------------

def test_initial_tree(xs):
    assert xs.directory("/") == ["tool"]
    assert xs.directory("/tool") == ["xenstored"]
    assert xs.get_perms("/") == ["n0"]


def test_write_read_creates_parents(xs):
    xs.write("/local/domain/1/device/vbd/768/state", "1")
    assert xs.read("/local/domain/1/device/vbd/768/state") == "1"
    assert xs.read("/local/domain/1/device") == ""
    assert xs.directory("/local/domain/1/device/vbd") == ["768"]
    assert xs.directory("/") == ["tool", "local"]


def test_write_values_empty_and_binary(xs):
    xs.write("/v/empty", "")
    assert xs.read_bytes("/v/empty") == b""
    xs.write("/v/bin", b"a\0b\xff")              # a value may contain NULs
    assert xs.read_bytes("/v/bin") == b"a\0b\xff"
    xs.write("/v/bin", "short")                  # overwrite replaces, no tail left
    assert xs.read("/v/bin") == "short"
    xs.write("/v/int", 42)
    assert xs.read_int("/v/int") == 42


def test_read_missing(xs):
    assert xs.read("/nope") is None
    assert xs.read("/nope", default="d") == "d"
    with pytest.raises(XenstoreError) as ei:
        xs.read_bytes("/nope")
    assert ei.value.errname == "ENOENT"
    with pytest.raises(XenstoreError) as ei:
        xs.directory("/nope")
    assert ei.value.errname == "ENOENT"
    assert not xs.exists("/nope")


def test_mkdir(xs):
    xs.mkdir("/m/n/o")
    assert xs.read("/m/n/o") == "" and xs.directory("/m/n") == ["o"]
    xs.write("/m/n/o", "keep")
    xs.mkdir("/m/n/o")                          # existing node: OK, value untouched
    assert xs.read("/m/n/o") == "keep"


def test_rm_recursive_and_missing(xs):
    xs.write("/r/a/b/c", "1")
    xs.write("/r/a/d", "2")
    xs.write("/r/e", "3")
    xs.rm("/r/a")
    assert xs.directory("/r") == ["e"]
    assert xs.read("/r/a/b/c") is None and xs.read("/r/a") is None
    xs.rm("/r/a")                               # missing, parent exists: OK (C xenstored)
    with pytest.raises(XenstoreError) as ei:
        xs.rm("/r/a/b")                         # parent missing too: ENOENT
    assert ei.value.errname == "ENOENT"
    with pytest.raises(XenstoreError) as ei:
        xs.rm("/")
    assert ei.value.errname == "EINVAL"
    assert xs.directory("/")[:1] == ["tool"]


def test_relative_paths_and_domain_path(xs):
    assert xs.get_domain_path(0) == "/local/domain/0"
    assert xs.get_domain_path(7) == "/local/domain/7"
    xs.write("name", "Domain-0")
    assert xs.read("/local/domain/0/name") == "Domain-0"
    assert xs.read("name") == "Domain-0"
    with pytest.raises(XenstoreError) as ei:
        xs.get_domain_path("x")
    assert ei.value.errname == "EINVAL"
    with pytest.raises(XenstoreError):
        xs.get_domain_path(70000)


def test_perms_get_set_and_inherit(xs):
    xs.write("/p/a", "1")
    assert xs.get_perms("/p/a") == ["n0"]
    xs.set_perms("/p", ["b3", "r5", "w6"])
    assert xs.get_perms("/p") == ["b3", "r5", "w6"]
    xs.write("/p/new/child", "x")               # dom0-created: parent perms copied as is
    assert xs.get_perms("/p/new") == ["b3", "r5", "w6"]
    assert xs.get_perms("/p/new/child") == ["b3", "r5", "w6"]
    assert xs.get_perms("/p/a") == ["n0"]       # existing children keep theirs
    for bad in (["x1"], ["r"], ["r1z"]):
        with pytest.raises(XenstoreError) as ei:
            xs.set_perms("/p", bad)
        assert ei.value.errname == "EINVAL"
    with pytest.raises(XenstoreError) as ei:
        xs.set_perms("/missing", ["n0"])
    assert ei.value.errname == "ENOENT"
    assert xs.get_perms("@releaseDomain") == ["n0"]


def test_directory_too_big_and_directory_part(xs):
    names = ["child-with-a-long-name-%04d" % i for i in range(200)]   # ~5.4 KB of names
    for n in names:
        xs.mkdir("/big/" + n)
    with pytest.raises(XenstoreError) as ei:
        xs.directory("/big")
    assert ei.value.errname == "E2BIG"
    got, off, gen = [], 0, None
    while True:
        payload = xs.request(XS_DIRECTORY_PART, xs_wire.join("/big", str(off)))
        parts = payload.split(b"\0")
        gen = gen or parts[0]
        assert parts[0] == gen
        body = payload[len(parts[0]) + 1:]
        if body.endswith(b"\0\0") or body == b"\0":   # an empty string ends the list
            got += [p.decode() for p in body.split(b"\0") if p]
            break
        chunk = [p.decode() for p in body.split(b"\0") if p]
        got += chunk
        off += len(body)
    assert got == names


# ---------------------------------------------------------------------------
# watches
# ---------------------------------------------------------------------------

def test_watch_fires_on_registration_change_and_removal(xs, daemon):
    other = XsClient.connect(daemon.socket_path, timeout=T)
    xs.watch("/w", "tok")
    assert xs.read_watch(T) == ("/w", "tok")            # fired up front, node need not exist
    other.write("/w", "1")
    assert xs.read_watch(T) == ("/w", "tok")
    other.write("/w/deep/er", "2")                      # below the watched path
    assert xs.read_watch(T) == ("/w/deep/er", "tok")
    other.write("/sibling", "x")                        # elsewhere: nothing
    other.write("/wx", "x")                             # prefix but not a child: nothing
    assert xs.poll_watch() is None
    other.rm("/w/deep")                                 # removal
    assert xs.read_watch(T) == ("/w/deep", "tok")
    other.rm("/w")
    assert xs.read_watch(T) == ("/w", "tok")
    other.mkdir("/w")
    assert xs.read_watch(T) == ("/w", "tok")
    other.mkdir("/w")                                   # no change, no event
    other.set_perms("/w", ["n0", "r1"])
    assert xs.read_watch(T) == ("/w", "tok")
    xs.unwatch("/w", "tok")
    other.write("/w", "after")
    time.sleep(0.05)
    assert xs.poll_watch() is None
    other.close()


def test_watch_on_removed_descendant_node(xs):
    xs.write("/tree/a/b", "1")
    xs.watch("/tree/a/b", "exact")
    assert xs.read_watch(T) == ("/tree/a/b", "exact")
    xs.rm("/tree")                                      # b goes away with its ancestor
    assert xs.read_watch(T) == ("/tree/a/b", "exact")


def test_watch_errors_and_reset(xs):
    xs.watch("/x", "t")
    with pytest.raises(XenstoreError) as ei:
        xs.watch("/x", "t")
    assert ei.value.errname == "EEXIST"
    with pytest.raises(XenstoreError) as ei:
        xs.unwatch("/x", "other")
    assert ei.value.errname == "ENOENT"
    xs.reset_watches()
    xs.write("/x", "1")
    time.sleep(0.05)
    assert xs.poll_watch() is None
    with pytest.raises(XenstoreError) as ei:
        xs.request(XS_WATCH, b"/x\0")                   # token missing
    assert ei.value.errname == "EINVAL"


def test_relative_watch_reports_relative_paths(guest):
    guest.watch("device", "rel")
    assert guest.read_watch(T) == ("device", "rel")
    guest.write("device/vbd/768/state", "1")
    assert guest.read_watch(T) == ("device/vbd/768/state", "rel")


def test_watch_event_precedes_reply_and_interleaves(daemon, xs):
    raw = Raw(daemon.socket_path)
    raw.send(XS_WATCH, xs_wire.join("/q", "t1"), req_id=1)
    first, second = raw.recv(), raw.recv()
    assert (first.type, first.req_id, first.payload) == (XS_WATCH, 1, b"OK\0")
    assert second.type == XS_WATCH_EVENT and second.payload == b"/q\0t1\0"
    raw.send(XS_WRITE, xs_wire.write_payload("/q", "v"), req_id=2)
    ev, rep = raw.recv(), raw.recv()
    assert ev.type == XS_WATCH_EVENT and (ev.req_id, ev.tx_id) == (0, 0)
    assert (rep.type, rep.req_id) == (XS_WRITE, 2)
    # the client queues events that arrive between replies
    xs.watch("/q", "t2")
    raw.send(XS_WRITE, xs_wire.write_payload("/q/1", "v"), req_id=3)
    assert xs.read("/q") == "v"
    assert xs.read_watch(T) == ("/q", "t2")
    assert xs.read_watch(T) == ("/q/1", "t2")
    raw.close()


def test_special_watches_introduce_release(xs):
    xs.watch("@introduceDomain", "in")
    xs.watch("@releaseDomain", "out")
    assert {xs.read_watch(T), xs.read_watch(T)} == {("@introduceDomain", "in"), ("@releaseDomain", "out")}
    assert not xs.is_domain_introduced(5)
    xs.introduce(5, 1234, 3)
    assert xs.read_watch(T) == ("@introduceDomain", "in")
    assert xs.is_domain_introduced(5) and xs.is_domain_introduced(0)
    xs.request(XS_SET_TARGET, xs_wire.join("5", "0"))
    xs.release(5)
    assert xs.read_watch(T) == ("@releaseDomain", "out")
    assert not xs.is_domain_introduced(5)
    with pytest.raises(XenstoreError) as ei:
        xs.release(5)
    assert ei.value.errname == "ENOENT"
    with pytest.raises(XenstoreError) as ei:
        xs.request(XS_INTRODUCE, xs_wire.join("6", "0", "0"))    # port 0
    assert ei.value.errname == "EINVAL"


# ---------------------------------------------------------------------------
# transactions
# ---------------------------------------------------------------------------

def test_transaction_isolation_commit_abort(xs, daemon):
    other = XsClient.connect(daemon.socket_path, timeout=T)
    xs.write("/t/v", "0")
    tx = xs.transaction_start()
    xs.write("/t/v", "1", tx=tx)
    xs.write("/t/new/leaf", "n", tx=tx)
    assert xs.read("/t/v", tx=tx) == "1" and xs.read("/t/v") == "0"
    assert other.read("/t/new/leaf") is None
    xs.transaction_end(tx)
    assert other.read("/t/v") == "1" and other.read("/t/new/leaf") == "n"

    tx = xs.transaction_start()
    xs.rm("/t/new", tx=tx)
    xs.write("/t/v", "2", tx=tx)
    xs.transaction_end(tx, commit=False)
    assert other.read("/t/v") == "1" and other.read("/t/new/leaf") == "n"
    with pytest.raises(XenstoreError) as ei:
        xs.read_bytes("/t/v", tx=tx)                  # the transaction is gone
    assert ei.value.errname == "ENOENT"
    other.close()


def test_transaction_sees_snapshot_from_start(xs, daemon):
    other = XsClient.connect(daemon.socket_path, timeout=T)
    xs.write("/s", "old")
    tx = xs.transaction_start()
    other.write("/s", "new")
    assert xs.read("/s", tx=tx) == "old"
    with pytest.raises(XenstoreError) as ei:
        xs.transaction_end(tx)
    assert ei.value.errname == "EAGAIN"
    other.close()


@pytest.mark.parametrize("conflict", ["write", "create", "rm", "perms", "child"])
def test_transaction_conflict_then_retry_succeeds(xs, daemon, conflict):
    other = XsClient.connect(daemon.socket_path, timeout=T)
    xs.write("/c/node", "0")
    tx = xs.transaction_start()
    if conflict == "create":
        assert xs.read("/c/absent", tx=tx) is None   # absence is recorded too
    else:
        xs.read("/c/node", tx=tx)
    xs.write("/c/result", "mine", tx=tx)
    {"write": lambda: other.write("/c/node", "1"),
     "create": lambda: other.write("/c/absent", "1"),
     "rm": lambda: other.rm("/c/node"),
     "perms": lambda: other.set_perms("/c/node", ["n0", "r1"]),
     "child": lambda: other.write("/c/node/kid", "1")}[conflict]()
    with pytest.raises(XenstoreError) as ei:
        xs.transaction_end(tx)
    assert ei.value.errname == "EAGAIN"
    assert other.read("/c/result") is None            # nothing of it was applied
    attempts = []

    def body(t):
        attempts.append(1)
        t.read("/c/node")
        t.write("/c/result", "mine")
    xs.transact(body)
    assert other.read("/c/result") == "mine" and len(attempts) == 1
    other.close()


def test_unrelated_changes_do_not_conflict(xs, daemon):
    other = XsClient.connect(daemon.socket_path, timeout=T)
    xs.write("/u/a", "0")
    xs.write("/u/b", "0")
    tx = xs.transaction_start()
    xs.read("/u/a", tx=tx)
    xs.write("/u/a", "1", tx=tx)
    other.write("/u/b", "1")
    xs.transaction_end(tx)
    assert other.read("/u/a") == "1"
    other.close()


def test_concurrent_counter_increments_are_not_lost(daemon):
    n, workers = 40, 3
    conflicts = []

    def work():
        c = XsClient.connect(daemon.socket_path, timeout=T)
        for _ in range(n):
            for t in c.transactions(retries=500):
                with t:
                    v = t.read_int("/counter", 0)
                    t.write("/counter", v + 1)
                if t.conflicted:
                    conflicts.append(1)
        c.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
        assert not th.is_alive()
    c = XsClient.connect(daemon.socket_path, timeout=T)
    assert c.read_int("/counter") == n * workers
    c.close()


def test_transaction_watch_events_wait_for_commit(xs, daemon):
    other = XsClient.connect(daemon.socket_path, timeout=T)
    other.watch("/tw", "t")
    assert other.read_watch(T) == ("/tw", "t")
    with xs.transaction() as t:
        t.write("/tw/a", "1")
        time.sleep(0.05)
        assert other.poll_watch() is None
    assert other.read_watch(T) == ("/tw/a", "t")
    try:
        with xs.transaction() as t:
            t.write("/tw/b", "1")
            raise KeyError("abort")
    except KeyError:
        pass
    time.sleep(0.05)
    assert other.poll_watch() is None and other.read("/tw/b") is None
    other.close()


def test_transaction_protocol_errors(xs):
    tx = xs.transaction_start()
    with pytest.raises(XenstoreError) as ei:
        xs.request(XS_TRANSACTION_START, b"\0", tx=tx)
    assert ei.value.errname == "EBUSY"
    with pytest.raises(XenstoreError) as ei:
        xs.request(XS_TRANSACTION_END, b"X\0", tx=tx)
    assert ei.value.errname == "EINVAL"
    with pytest.raises(XenstoreError) as ei:
        xs.request(XS_TRANSACTION_END, b"T\0", tx=0)
    assert ei.value.errname == "ENOENT"
    with pytest.raises(XenstoreError) as ei:
        xs.read_bytes("/", tx=tx + 100)
    assert ei.value.errname == "ENOENT"
    xs.transaction_end(tx)
    tx2 = xs.transaction_start()
    assert tx2 != tx and tx2 != 0
    xs.transaction_end(tx2, commit=False)


# ---------------------------------------------------------------------------
# permissions for an unprivileged domain
# ---------------------------------------------------------------------------

def test_domain_connection_permissions(xs, guest):
    xs.write("/local/domain/0/secret", "s")
    xs.write("/backend/vbd/1/768/state", "4")
    xs.set_perms("/backend/vbd/1/768", ["n0", "r1"])
    xs.set_perms("/backend/vbd/1/768/state", ["n0", "r1"])

    assert guest.get_domain_path(1) == "/local/domain/1"
    for call in (lambda: guest.read("/local/domain/0/secret"),
                 lambda: guest.read("/local/domain/0/missing"),   # no ENOENT leak
                 lambda: guest.directory("/"),
                 lambda: guest.write("/backend/vbd/1/768/state", "6"),
                 lambda: guest.write("/backend/vbd/1/768/new", "x"),
                 lambda: guest.rm("/backend/vbd/1/768"),
                 lambda: guest.introduce(3, 0, 1),
                 lambda: guest.is_domain_introduced(0)):
        with pytest.raises(XenstoreError) as ei:
            call()
        assert ei.value.errname == "EACCES"
    assert guest.read("/backend/vbd/1/768/state") == "4"      # granted by "r1"

    guest.write("device/vbd/768/state", "1")                  # relative, own subtree
    assert xs.read("/local/domain/1/device/vbd/768/state") == "1"
    assert xs.get_perms("/local/domain/1/device/vbd/768/state") == ["n1"]
    assert guest.read("device/missing") is None               # own subtree: ENOENT
    guest.set_perms("device/vbd/768/state", ["n1", "r0"])
    with pytest.raises(XenstoreError) as ei:
        guest.set_perms("device/vbd/768/state", ["n2"])       # may not give it away
    assert ei.value.errname == "EPERM"

    # dom0 creating below a guest-owned node keeps the guest as owner (inherit as is)
    xs.write("/local/domain/1/data/x", "1")
    assert xs.get_perms("/local/domain/1/data/x") == ["n1"]
    # a guest creating below a node it may write becomes the owner of the new nodes
    xs.mkdir("/shared")
    xs.set_perms("/shared", ["n0", "b1"])
    guest.write("/shared/g/leaf", "v")
    assert xs.get_perms("/shared/g/leaf") == ["n1", "b1"]


def test_domain_watch_events_respect_permissions(xs, guest):
    xs.write("/hidden/a", "1")
    guest.watch("/hidden", "h")
    assert guest.read_watch(T) == ("/hidden", "h")            # the initial fire always comes
    xs.write("/hidden/a", "2")
    time.sleep(0.05)
    assert guest.poll_watch() is None
    xs.set_perms("/hidden/a", ["n0", "r1"])                   # now it may see a
    assert guest.read_watch(T) == ("/hidden/a", "h")


def test_listen_domain_socket(sockdir):
    d = XenstoreDaemon(os.path.join(sockdir, "sock"),
                       domain_sockets={1: os.path.join(sockdir, "dom1")}).start()
    try:
        c = XsClient.connect(os.path.join(sockdir, "dom1"), timeout=T)
        with pytest.raises(XenstoreError) as ei:
            c.read("/tool")
        assert ei.value.errname == "EACCES"
        c.close()
    finally:
        d.stop(T)


# ---------------------------------------------------------------------------
# malformed input; everybody else keeps being served
# ---------------------------------------------------------------------------

def test_oversized_header_drops_only_that_connection(daemon, xs):
    raw = Raw(daemon.socket_path)
    raw.send_raw(xs_wire.encode(XS_READ, 1, 0, b"", check=False)[:12] + (5000).to_bytes(4, "little"))
    assert raw.closed_by_daemon()
    xs.write("/still", "alive")
    assert xs.read("/still") == "alive"


def test_truncated_message_at_eof(daemon, xs):
    raw = Raw(daemon.socket_path)
    raw.send_raw(xs_wire.encode(XS_WRITE, 1, 0, xs_wire.write_payload("/trunc", "v"))[:-1])
    raw.sock.shutdown(socket.SHUT_WR)
    assert raw.closed_by_daemon()
    raw.close()
    assert xs.read("/trunc") is None


def test_stalled_partial_message_does_not_block_others(daemon, xs):
    raw = Raw(daemon.socket_path)
    raw.send_raw(xs_wire.encode(XS_WRITE, 1, 0, xs_wire.write_payload("/stall", "v"))[:10])
    for i in range(20):
        xs.write("/busy/%d" % i, str(i))
    assert len(xs.directory("/busy")) == 20
    raw.send_raw(xs_wire.encode(XS_WRITE, 1, 0, xs_wire.write_payload("/stall", "v"))[10:])
    assert raw.recv().type == XS_WRITE
    raw.close()


def test_unknown_types_and_garbage(daemon, xs):
    raw = Raw(daemon.socket_path)
    assert err(raw.call(99, b"whatever\0")) == "ENOSYS"       # C xenstored's answer
    assert err(raw.call(XS_WATCH_EVENT, b"/a\0b\0")) == "ENOSYS"
    assert err(raw.call(XS_ERROR, b"EINVAL\0")) == "ENOSYS"
    assert err(raw.call(20, b"/\0")) == "ENOSYS"                # removed XS_RESTRICT
    assert err(raw.call(0, b"help\0")) == "EINVAL"              # no control commands
    assert raw.call(XS_READ, b"/tool\0").type == XS_READ      # still in sync
    raw.send_raw(os.urandom(8) + b"\xff\xff\xff\x7f" * 2)      # garbage header
    assert raw.closed_by_daemon()
    assert xs.read("/tool") == ""


BAD_PATHS = [b"", b"/a/", b"a/", b"//a", b"/a//b", b"/a b", b"/a.b", b"/\xc3\xa9",
             b"/a\nb", b"@foo", b"/" + b"x" * 3100, b"r" * 2100]


@pytest.mark.parametrize("path", BAD_PATHS, ids=lambda p: repr(p[:12]))
def test_bad_paths_einval(daemon, xs, path):
    raw = Raw(daemon.socket_path)
    assert err(raw.call(XS_READ, path + b"\0")) == "EINVAL"
    assert err(raw.call(XS_WRITE, path + b"\0v")) == "EINVAL"
    assert err(raw.call(XS_MKDIR, path + b"\0")) == "EINVAL"
    assert err(raw.call(XS_RM, path + b"\0")) == "EINVAL"
    assert raw.call(XS_READ, b"/tool\0").type == XS_READ
    raw.close()
    assert xs.read("/tool") == ""


def test_argument_nul_rules(daemon):
    raw = Raw(daemon.socket_path)
    assert raw.call(XS_WRITE, b"/n\0value").type == XS_WRITE          # no NUL after value
    assert raw.call(XS_READ, b"/n\0").payload == b"value"
    assert err(raw.call(XS_READ, b"/n")) == "EINVAL"                  # one NUL, at the end
    assert err(raw.call(XS_READ, b"/n\0\0")) == "EINVAL"
    assert err(raw.call(XS_READ, b"")) == "EINVAL"
    assert err(raw.call(XS_WRITE, b"/n")) == "EINVAL"                 # no NUL at all
    assert err(raw.call(XS_DIRECTORY, b"/n\0x")) == "EINVAL"
    assert raw.call(XS_GET_DOMAIN_PATH, b"3\0").payload == b"/local/domain/3\0"
    assert err(raw.call(XS_GET_DOMAIN_PATH, b"3")) == "EINVAL"
    raw.close()


def test_client_that_never_reads_does_not_stall_daemon(daemon, xs):
    lazy = Raw(daemon.socket_path)
    lazy.send(XS_WATCH, xs_wire.join("/flood", "t"))
    payload = "x" * 3000
    for i in range(400):            # ~1.2 MB of events the lazy client never reads
        xs.write("/flood", payload)  # each answered within the client's timeout
    assert xs.read("/flood") == payload
    # the daemon queued what the lazy client's socket could not take, and went on
    assert max(unsent for _, _, unsent, _ in daemon.backlogs()) > 0
    lazy.close()
    xs.write("/after", "1")
    assert xs.read("/after") == "1"


# ---------------------------------------------------------------------------
# client behaviour
# ---------------------------------------------------------------------------

def test_client_timeouts_and_closed():
    a, b = socket.socketpair()
    c = XsClient.from_socket(a, timeout=0.2)
    with pytest.raises(XenstoreTimeout, match=r"nothing within 0\.2s"):
        c.read("/x")                         # nobody answers: the client's own bound
    with pytest.raises(XenstoreTimeout, match=r"nothing within 0\.1s"):
        c.read_watch(0.1)
    b.close()
    with pytest.raises(XenstoreClosed):
        c.read("/x")
    c.close()


def test_client_shared_between_threads(xs):
    for i in range(10):
        xs.write("/mt/%d" % i, str(i))
    errors = []

    def worker(k):
        try:
            for _ in range(30):
                assert xs.read("/mt/%d" % k) == str(k)
        except Exception as e:    # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors


def test_client_wait_for(xs, daemon):
    other = XsClient.connect(daemon.socket_path, timeout=T)
    xs.watch("/state", "s")
    threading.Timer(0.1, lambda: other.write("/state", "4")).start()
    assert xs.wait_for(lambda: xs.read("/state") == "4", timeout=T, what="state 4")
    with pytest.raises(XenstoreTimeout):
        xs.wait_for(lambda: xs.read("/state") == "5", timeout=0.2)
    other.close()


def test_connect_uses_xenstored_path(daemon, monkeypatch):
    from pvboot.emu.xen import xsclient
    monkeypatch.setenv("XENSTORED_PATH", daemon.socket_path)
    assert xsclient.default_socket_path() == daemon.socket_path
    with xsclient.connect(timeout=T) as c:
        assert c.read("/tool") == ""


def test_unwatch_drops_queued_events_of_that_watch_only(xs):
    xs.watch("/uw", "a")
    xs.watch("/other", "a")
    xs.write("/uw/x", "1")
    xs.write("/other", "1")
    xs.read("/tool")                       # replies after the events: all queued now
    xs.unwatch("/uw", "a")
    got = []
    while (e := xs.poll_watch()) is not None:
        got.append(e)
    assert got == [("/other", "a"), ("/other", "a")]


def test_in_process_api(daemon, xs):
    daemon.write("/api/x", "1")
    assert xs.read("/api/x") == "1"
    xs.write("/api/y", "2")
    assert daemon.read("/api/y") == b"2" and daemon.read("/api/none") is None
    assert daemon.directory("/api") == ["x", "y"]
    daemon.set_perms("/api/x", ["n0", "r1"])
    assert daemon.get_perms("/api/x") == ["n0", "r1"]
    xs.watch("/api", "w")
    xs.read_watch(T)
    daemon.rm("/api/x")
    assert xs.read_watch(T) == ("/api/x", "w")
    assert daemon.snapshot()["/api/y"] == b"2"


def test_in_process_transact_is_atomic_for_other_clients(daemon, xs):
    """The toolstack's transactions in the daemon's process (host.py): the lock is held
    for the whole body, so a client's read waits for all of it; the watches fire."""
    xs.watch("/tx", "w")
    xs.read_watch(T)
    seen = []

    def body(t):
        assert t.read_many(["/tx", "/tx/a"]) == [None, None]
        t.update_many([("mkdir", "/tx"), ("write", "/tx/a", "1")])
        reader = threading.Thread(target=lambda: seen.append(xs.read("/tx/b", "absent")))
        reader.start()
        reader.join(0.3)                   # it cannot get an answer while the body runs
        t.update_many([("write", "/tx/b", "2"), ("set_perms", "/tx", ["n0", "r1"])])
        assert t.read_many(["/tx/a", "/tx/none"]) == ["1", None]
        return reader

    daemon.transact(body).join(T)
    assert seen == ["2"]
    assert daemon.get_perms("/tx") == ["n0", "r1"]
    events = {xs.read_watch(T)[0] for _ in range(4)}
    assert {"/tx", "/tx/a", "/tx/b"} <= events
    with pytest.raises(ValueError):
        daemon.update_many([("chmod", "/tx")])


# ---------------------------------------------------------------------------
# lifecycle: thread and standalone process
# ---------------------------------------------------------------------------

def test_thread_start_stop_is_bounded(sockdir):
    path = os.path.join(sockdir, "s2")
    d = XenstoreDaemon(path).start()
    c = XsClient.connect(path, timeout=T)
    c.write("/x", "1")
    d.stop(timeout=T)
    assert not d._thread.is_alive()          # stopped within the bound, not abandoned
    assert not os.path.exists(path)
    with pytest.raises(XenstoreClosed):
        c.read("/x")
    c.close()


def test_refuses_second_daemon_on_live_socket(daemon):
    with pytest.raises(OSError):
        XenstoreDaemon(daemon.socket_path).start()


def test_standalone_process_sigterm(sockdir):
    path = os.path.join(sockdir, "proc")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "pvboot.emu.xen.xenstored", "--socket", path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=sockdir)
    try:
        c = XsClient.connect(path, timeout=10)
        c.write("/proc/x", "y")
        assert c.read("/proc/x") == "y"
        c.close()
        proc.send_signal(signal.SIGTERM)
        out, errout = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, errout
    assert out == b""
    assert not os.path.exists(path)


# ---------------------------------------------------------------------------
# Debian xenstore-utils against the daemon
# ---------------------------------------------------------------------------

XS_TOOLS = ["xenstore-write", "xenstore-read", "xenstore-ls", "xenstore-rm",
            "xenstore-list", "xenstore-watch", "xenstore-chmod", "xenstore-exists"]


@pytest.fixture
def xstool(daemon):
    missing = [t for t in XS_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip("xenstore-utils not installed (missing %s); apt-get install xenstore-utils"
                    % ", ".join(missing))
    env = dict(os.environ, XENSTORED_PATH=daemon.socket_path)

    def run(*argv, check=True):
        p = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=20)
        if check:
            assert p.returncode == 0, (argv, p.stdout, p.stderr)
        return p
    run.env = env
    return run


def test_xenstore_utils_write_read_list_ls_rm(xstool, xs):
    xstool("xenstore-write", "/vm/name", "guest one", "/vm/id", "1")
    assert xs.read("/vm/name") == "guest one"
    assert xstool("xenstore-read", "/vm/name", "/vm/id").stdout == "guest one\n1\n"
    p = xstool("xenstore-read", "/vm/absent", check=False)
    assert p.returncode != 0 and "absent" in p.stderr
    assert xstool("xenstore-list", "/vm").stdout.split() == ["name", "id"]
    xs.set_perms("/vm/id", ["n0", "r1"])
    ls = xstool("xenstore-ls", "-f", "/vm").stdout.splitlines()
    assert ls == ['/vm/name = "guest one"', '/vm/id = "1"']
    lsp = xstool("xenstore-ls", "-p", "/vm").stdout
    assert "(n0,r1)" in lsp
    full = xstool("xenstore-ls").stdout
    assert 'tool = ""' in full and ' name = "guest one"' in full
    assert xstool("xenstore-exists", "/vm/id").returncode == 0
    xstool("xenstore-chmod", "/vm/name", "b3")
    assert xs.get_perms("/vm/name") == ["b3"]
    xstool("xenstore-rm", "/vm/name")
    assert xs.read("/vm/name") is None
    assert xstool("xenstore-exists", "/vm/name", check=False).returncode != 0
    assert xstool("xenstore-rm", "/nothere/below", check=False).returncode != 0
    xstool("xenstore-rm", "/vm")
    assert xs.read("/vm") is None


def test_xenstore_utils_large_directory(xstool, xs):
    names = ["entry-with-a-rather-long-name-%04d" % i for i in range(150)]
    for n in names:
        xs.mkdir("/bigdir/" + n)
    # > 4096 bytes of names: libxenstore falls back to XS_DIRECTORY_PART after E2BIG
    assert xstool("xenstore-list", "/bigdir").stdout.split() == names


def test_xenstore_utils_watch(xstool, daemon, xs):
    proc = subprocess.Popen(["xenstore-watch", "-n", "3", "/watched"], env=xstool.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # change things only once the tool's watch is registered
        wait_until(lambda: any(w[1] == "/watched" for w in daemon.watches()),
                   "xenstore-watch's watch", T, process=proc)
        xs.write("/watched", "1")
        xs.write("/watched/child", "2")
        out, errout = proc.communicate(timeout=T)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, errout
    # the registration event, then one per change
    assert out.splitlines() == ["/watched", "/watched", "/watched/child"]
