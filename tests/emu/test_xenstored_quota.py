"""Per-domain quotas of the xenstore daemon, over the real wire protocol.

Each limit answers C xenstored's error string, counts go back down after rm, dom0 is
exempt, and one domain running into its limits never stops another being served.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from pvboot.emu.xen import xs_wire
from pvboot.emu.xen.abi import XENSTORE_PAYLOAD_MAX, XS_READ, XS_WRITE
from pvboot.emu.xen.xsclient import XenstoreError, XsClient
from tests.emu.xs_helpers import Raw, T, err, open_guest
from tests.waiting import wait_until

# How C xenstored sizes a node for its node-size quota: a 16-byte header, 8 bytes per
# permission entry, the value, then each child name with its NUL.
NODE_HEADER, PERM_ENTRY = 16, 8


def owned_by(daemon, domid: int) -> int:
    """Nodes whose ACL names ``domid`` as owner, counted from the tree itself."""
    return Counter(daemon.owners().values())[domid]


def refused(errname: str, func, *args, **kwargs) -> None:
    with pytest.raises(XenstoreError) as ei:
        func(*args, **kwargs)
    assert ei.value.errname == errname, ei.value


@pytest.fixture
def dom0(xs_daemon_factory):
    """(daemon with default quotas, dom0 client)."""
    d = xs_daemon_factory()
    c = XsClient.from_socket(d.connect(), timeout=T)
    yield d, c
    c.close()


def fill_nodes(guest, limit: int) -> int:
    """Create nodes until the quota refuses one; returns how many were created.  Spread
    over 40 directories so no node hits the node-size quota through its child list."""
    for i in range(40):
        guest.mkdir("d%d" % i)
    made = 40
    with pytest.raises(XenstoreError) as ei:
        while made < 2 * limit:
            guest.write("d%d/n%d" % (made % 40, made), "")
            made += 1
    assert ei.value.errname == "ENOSPC"
    return made


def test_nodes_quota_default_1000_and_counts_go_down(dom0):
    d, xs = dom0
    g = open_guest(d, 1)
    assert owned_by(d, 1) == 1                       # its home directory
    fill_nodes(g, 1000)
    assert owned_by(d, 1) == 1000 == d.nodes_owned()[1]
    refused("ENOSPC", g.mkdir, "more")
    g.rm("d0")                                       # the directory and its leaves
    assert owned_by(d, 1) == d.nodes_owned()[1] < 1000
    freed = 1000 - owned_by(d, 1)
    for i in range(freed):
        g.write("again/%d" % i if i else "again", "")
    refused("ENOSPC", g.write, "again/x", "")
    assert owned_by(d, 1) == 1000
    # dom0 is exempt: it creates far more than the quota, the count still exact.
    for i in range(1100):
        xs.write("/dom0/n%d" % i, "")
    assert owned_by(d, 0) == d.nodes_owned()[0] > 1100


def test_nodes_quota_is_atomic_per_request(xs_daemon_factory):
    d = xs_daemon_factory(nodes=5)
    g = open_guest(d, 1)
    g.write("a", "")
    g.write("b", "")
    g.write("c", "")                                 # 4 owned with the home
    refused("ENOSPC", g.write, "x/y", "1")           # would make 6: nothing created
    assert not d.exists("/local/domain/1/x")
    assert owned_by(d, 1) == d.nodes_owned()[1] == 4
    g.write("x", "1")
    assert owned_by(d, 1) == 5


def test_nodes_quota_checked_again_at_commit(xs_daemon_factory):
    d = xs_daemon_factory(nodes=10)
    g = open_guest(d, 1)
    xs = XsClient.from_socket(d.connect(), timeout=T)
    tx = g.transaction_start()
    for i in range(5):
        g.write("t%d" % i, "", tx=tx)                # 6 with the home: fine so far
    for i in range(6):                               # dom0 hands domain 1 more nodes meanwhile
        xs.write("/given/%d" % i, "")
        xs.set_perms("/given/%d" % i, ["n1"])
    assert owned_by(d, 1) == 7
    refused("ENOSPC", g.transaction_end, tx, True)
    assert not d.exists("/local/domain/1/t0")
    assert owned_by(d, 1) == d.nodes_owned()[1] == 7
    xs.close()


def test_node_size_quota(dom0):
    d, xs = dom0
    g = open_guest(d, 1)
    leaf_max = 2048 - NODE_HEADER - PERM_ENTRY       # one permission entry
    g.write("v", "x" * leaf_max)
    refused("ENOSPC", g.write, "v", "x" * (leaf_max + 1))
    assert g.read("v") == "x" * leaf_max             # the refused write changed nothing
    xs.write("/local/domain/1/v", "y" * 3000)        # dom0 exempt
    assert g.read("v") == "y" * 3000
    g.write("v", "short")                            # shrinking is always allowed
    g.rm("v")


def test_node_size_counts_child_names(xs_daemon_factory):
    d = xs_daemon_factory(node_size=64)
    g = open_guest(d, 1)
    g.mkdir("dir")
    fits = (64 - NODE_HEADER - PERM_ENTRY) // len("child000\0")
    for i in range(fits):
        g.mkdir("dir/child%03d" % i)
    refused("ENOSPC", g.mkdir, "dir/child%03d" % fits)
    assert len(g.directory("dir")) == fits
    g.rm("dir/child000")                              # removing shrinks the list: allowed
    g.mkdir("dir/child%03d" % fits)


def test_path_length_quota(dom0, xs_daemon_factory):
    d, xs = dom0
    g = open_guest(d, 1)
    base = "/".join(["p" * 200] * 10)                 # short enough names for node-size
    longest = base + "/" + "q" * (2048 - len(base) - 1)
    assert len(longest) == 2048
    g.write(longest, "deep")
    assert xs.read("/local/domain/1/" + longest) == "deep"
    refused("EINVAL", g.write, longest + "q", "")
    refused("EINVAL", g.read, longest + "q")
    xs.write("/local/domain/1/" + longest + "q", "dom0")  # dom0 exempt
    short = xs_daemon_factory(path_max=100)
    g2 = open_guest(short, 1)
    g2.write("a" * 100, "")
    refused("EINVAL", g2.write, "a" * 101, "")


def test_watch_quota_is_per_domain(dom0):
    d, xs = dom0
    g = open_guest(d, 1)
    g_again = XsClient.from_socket(d.connect_domain(1), timeout=T)
    for i in range(64):
        g.watch("w%d" % i, "a")
        g_again.watch("w%d" % i, "b")
    refused("E2BIG", g_again.watch, "extra", "b")
    refused("E2BIG", g.watch, "extra", "a")
    g.unwatch("w0", "a")
    g_again.watch("extra", "b")
    g.close()                                         # its watches go with it
    wait_until(lambda: sum(1 for w in d.watches() if w[0] == 1) == 65, "watches to drop", T)
    for i in range(63):
        g_again.watch("more%d" % i, "b")
    refused("E2BIG", g_again.watch, "over", "b")
    for i in range(200):                              # dom0 exempt
        xs.watch("/w%d" % i, "t")
    g_again.close()


def test_transaction_quota(dom0):
    d, xs = dom0
    g = open_guest(d, 1)
    txs = [g.transaction_start() for _ in range(10)]
    refused("ENOSPC", g.transaction_start)
    g.transaction_end(txs[0], commit=False)
    txs[0] = g.transaction_start()
    for tx in txs:
        g.transaction_end(tx, commit=False)
    dom0_txs = [xs.transaction_start() for _ in range(15)]   # dom0 exempt
    assert len(set(dom0_txs)) == 15


def test_transaction_nodes_quota(xs_daemon_factory):
    d = xs_daemon_factory(transaction_nodes=8)
    g = open_guest(d, 1)
    tx = g.transaction_start()
    written = 0
    with pytest.raises(XenstoreError) as ei:
        while written < 20:
            g.write("n%d" % written, "", tx=tx)     # each touches one new node (+ the home)
            written += 1
    assert ei.value.errname == "ENOSPC"
    assert written == 8 - 1
    g.transaction_end(tx, commit=True)              # what fitted commits
    assert sorted(g.directory("/local/domain/1")) == sorted("n%d" % i for i in range(written))


def test_permissions_per_node_quota(dom0):
    d, xs = dom0
    g = open_guest(d, 1)
    g.write("p", "1")
    five = ["n1", "r2", "r3", "r4", "r5"]
    g.set_perms("p", five)
    refused("ENOSPC", g.set_perms, "p", five + ["r6"])
    assert g.get_perms("p") == five
    xs.set_perms("/local/domain/1/p", five + ["r6", "r7"])   # dom0 exempt
    assert len(g.get_perms("p")) == 7


def test_payload_max_closes_only_that_connection(dom0):
    d, xs = dom0
    open_guest(d, 1).close()
    raw = Raw(d.connect_domain(1))
    path = b"/local/domain/1/big\0"
    # the largest message is read and answered (here by the node-size quota) ...
    assert err(raw.call(XS_WRITE, path + b"v" * (XENSTORE_PAYLOAD_MAX - len(path)))) == "ENOSPC"
    # ... one announcing a byte more cannot be resynchronised: the connection goes
    raw.send_raw(xs_wire.encode(XS_READ, 2, 0, b"", check=False)[:12]
                 + (XENSTORE_PAYLOAD_MAX + 1).to_bytes(4, "little"))
    assert raw.closed_by_daemon()
    xs.write("/after", "ok")
    assert xs.read("/after") == "ok"


def test_one_domains_abuse_leaves_others_served(dom0):
    d, xs = dom0
    bad = open_guest(d, 1)
    good = open_guest(d, 2)
    fill_nodes(bad, 1000)
    for i in range(128):
        bad.watch("w%d" % i, "t")
    refused("E2BIG", bad.watch, "x", "t")
    for _ in range(10):
        bad.transaction_start()
    refused("ENOSPC", bad.transaction_start)
    refused("ENOSPC", bad.write, "big", "x" * 4000)
    refused("EINVAL", bad.write, "a" * 2049, "")
    assert bad.read("d1") == ""                      # still answered, not dropped
    # the other domain has its whole quota, dom0 its service
    for i in range(10):
        good.transaction_start()
    for i in range(128):
        good.watch("w%d" % i, "t")
    good.write("mine", "2")
    assert good.read("mine") == "2"
    xs.write("/tool/ok", "1")
    assert xs.read("/tool/ok") == "1"
    assert d.connection_count == 3


def test_outstanding_replies_hold_back_further_requests(xs_daemon_factory):
    """A domain that does not read its replies stalls only itself, with bounded output
    queued for it; once it reads, every request is answered in order."""
    d = xs_daemon_factory(outstanding=4)
    xs = XsClient.from_socket(d.connect(), timeout=T)
    open_guest(d, 1).close()
    wait_until(lambda: d.connection_count == 1, "the set-up connection to go", T)
    value = b"x" * 2000
    xs.write("/local/domain/1/big", value)
    raw = Raw(d.connect_domain(1))
    count = 3000                                     # ~6 MB of replies, ~110 KB of requests
    requests = b"".join(xs_wire.encode(XS_READ, i, 0, b"/local/domain/1/big\0") for i in range(count))
    sender = threading.Thread(target=raw.send_raw, args=(requests,), daemon=True)
    sender.start()
    guest_backlog = lambda: next(b for b in d.backlogs() if b[0] == 1)   # noqa: E731
    wait_until(lambda: guest_backlog()[3] > 0, "requests to be held back", T)
    for i in range(5):                               # others are served meanwhile
        xs.write("/meanwhile", str(i))
    other = open_guest(d, 2)
    other.write("mine", "2")
    _, unread, unsent, held = guest_backlog()
    assert unread == 4 and held > 0
    assert unsent <= 4 * (16 + XENSTORE_PAYLOAD_MAX)
    for i in range(count):
        m = raw.recv()
        assert (m.type, m.req_id, m.payload) == (XS_READ, i, value)
    sender.join(T)
    assert guest_backlog()[1:] == (0, 0, 0)
    raw.close()
    other.close()
    xs.close()
