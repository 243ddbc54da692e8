"""Transactions and the per-request view of the tree (C xenstored_transaction).

A transaction works on a snapshot taken at TRANSACTION_START; its commit fails with
EAGAIN if any node it read or wrote (present or absent) changed outside it since.
Every request stages its changes in a View and applies them only on success, so a
request refused half-way (a quota, a permission) leaves no trace.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional

from ..xs_wire import XenstoreError
from . import quota
from .perms import perm_for
from .store import Node, account
from .watch import fire


class Transaction:
    def __init__(self, tid: int, base: Dict[str, Node]):
        self.id = tid
        self.base = base                                # the tree as it was at start
        self.overlay: Dict[str, Optional[Node]] = {}   # None = removed in this transaction
        self.accessed: set = set()
        self.owned_delta: Counter = Counter()           # nodes owned per domain, vs. base
        self.events: List[tuple] = []                   # fired on commit


class View:
    """The tree as one request of ``conn`` sees it: live, or inside ``tx``."""

    def __init__(self, daemon, conn, tx: Optional[Transaction]):
        self.d = daemon
        self.conn = conn
        self.tx = tx
        self.changes: Dict[str, Optional[Node]] = {}
        self.events: List[tuple] = []

    def _before(self, path: str) -> Optional[Node]:
        """The node as it was before this request (recording transaction accesses)."""
        tx = self.tx
        if tx is None:
            return self.d.store.nodes.get(path)
        if path not in tx.accessed:
            quota.check(self.conn, self.d.limits.transaction_nodes, len(tx.accessed) + 1, "ENOSPC")
            tx.accessed.add(path)
        if path in tx.overlay:
            return tx.overlay[path]
        return tx.base.get(path)

    def get(self, path: str) -> Optional[Node]:
        if path in self.changes:
            return self.changes[path]
        return self._before(path)

    def perm(self, node: Node) -> int:
        return perm_for(self.conn, node.perms, self.d.targets)

    def put(self, path: str, node: Node, check_size: bool = True) -> None:
        if check_size:
            quota.check(self.conn, self.d.limits.node_size, quota.node_size(node), "ENOSPC")
        self._before(path)
        self.changes[path] = node

    def delete(self, path: str) -> None:
        self._before(path)
        self.changes[path] = None

    def fire(self, path: str, match: int, old: Optional[Node]) -> None:
        self.events.append((path, match, old.perms if old else None))

    def apply(self) -> None:
        """Make the staged changes real (live tree or transaction) and fire or queue
        their watch events; ENOSPC, with nothing changed, past the nodes quota."""
        delta: Counter = Counter()
        for path, node in self.changes.items():
            account(delta, self._before(path), node)
        store, tx = self.d.store, self.tx
        for domid, n in delta.items():
            if n > 0:
                pending = tx.owned_delta[domid] if tx is not None else 0
                quota.check(self.conn, self.d.limits.nodes, store.owned[domid] + pending + n, "ENOSPC")
        if tx is None:
            for path, node in self.changes.items():
                store.set(path, node)
            for event in self.events:
                fire(self.d, *event)
        else:
            for path, node in self.changes.items():
                tx.overlay[path] = None if node is None else node._replace(gen=store.next_gen())
            tx.owned_delta.update(delta)
            tx.events.extend(self.events)
        self.changes.clear()
        self.events.clear()


def commit(d, conn, tx: Transaction) -> None:
    store = d.store
    for path in tx.accessed:
        if store.nodes.get(path) is not tx.base.get(path):
            raise XenstoreError("EAGAIN")
    for domid, n in tx.owned_delta.items():
        if n > 0:   # others may have created nodes of this domain since the start
            quota.check(conn, d.limits.nodes, store.owned[domid] + n, "ENOSPC")
    for path, node in tx.overlay.items():
        store.set(path, node)
    for event in tx.events:
        fire(d, *event)


def open_transactions(d, domid: int) -> int:
    return sum(len(c.txs) for c in d.conns if c.domid == domid)


def do_transaction_start(d, conn, msg, tx):
    if tx is not None:
        raise XenstoreError("EBUSY")      # no nesting
    quota.check(conn, d.limits.transactions, open_transactions(d, conn.domid) + 1, "ENOSPC")
    tid = conn.next_tx
    while tid == 0 or tid in conn.txs:
        tid = (tid + 1) & 0xFFFFFFFF
    conn.next_tx = (tid + 1) & 0xFFFFFFFF
    conn.txs[tid] = Transaction(tid, dict(d.store.nodes))
    return b"%d\0" % tid


def do_transaction_end(d, conn, msg, tx):
    if msg.payload not in (b"T\0", b"F\0"):
        raise XenstoreError("EINVAL")
    if tx is None:
        raise XenstoreError("ENOENT")
    del conn.txs[tx.id]                  # gone whatever the outcome
    if msg.payload == b"T\0":
        commit(d, conn, tx)
    return b"OK\0"
