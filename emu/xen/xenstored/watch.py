"""Watches (C xenstored_watch): registration, matching and event delivery.

A watch fires once when registered, then for changes at or below its path; for a
removal, for the removed node or any removed node exactly watched.  Relative watches
get relative event paths.  Events go out before the reply to the request causing them.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import xs_wire
from ..abi import XENSTORE_PAYLOAD_MAX, XS_WATCH, XS_WATCH_EVENT
from ..xs_wire import XenstoreError
from . import quota
from .perms import PERM_READ, perm_for
from .store import canonical, is_child, parent

MATCH_EXACT, MATCH_SUBTREE = 0, 1


class Watch(NamedTuple):
    node: str        # canonical path (or @special)
    token: bytes
    prefix_len: int  # events for relative watches drop "/local/domain/N/"


def send_event(d, conn, path: str, token: bytes) -> None:
    payload = xs_wire.watch_event_payload(path, token)
    # An event longer than a message can carry is not sent (C xenstored drops it too):
    # a watcher's long token must not fail the request of whoever made the change.
    if len(payload) <= XENSTORE_PAYLOAD_MAX:
        d.send(conn, xs_wire.encode(XS_WATCH_EVENT, 0, 0, payload))


def fire(d, path: str, match: int, old_perms) -> None:
    """Send the event for a change of ``path`` to every watch that matches it."""
    for conn in d.conns:
        if not conn.watches or not watch_permitted(d, conn, path, old_perms):
            continue
        for w in conn.watches:
            if w.node == path if match == MATCH_EXACT else is_child(path, w.node):
                send_event(d, conn, path[w.prefix_len:], w.token)


def fire_special(d, name: str) -> None:
    for conn in d.conns:
        for w in conn.watches:
            if w.node == name:
                send_event(d, conn, name, w.token)


def watch_permitted(d, conn, path: str, old_perms) -> bool:
    """C watch_permitted(): the node (before or after the change) or its parent must
    be readable, so guests do not learn about nodes they cannot see."""
    if conn.privileged:
        return True
    if old_perms is not None and perm_for(conn, old_perms, d.targets) & PERM_READ:
        return True
    for p in (path, parent(path)):
        node = d.store.nodes.get(p)
        if node is not None and perm_for(conn, node.perms, d.targets) & PERM_READ:
            return True
    return False


def domain_watches(d, domid: int) -> int:
    return sum(len(c.watches) for c in d.conns if c.domid == domid)


def do_watch(d, conn, msg, tx):
    args = xs_wire.request_strings(msg.payload)
    if len(args) != 2:
        raise XenstoreError("EINVAL")
    relative = not args[0].startswith((b"/", b"@"))
    path = canonical(conn, args[0], d.limits.path_max, allow_special=True)
    token = args[1]
    if any(w.node == path and w.token == token for w in conn.watches):
        raise XenstoreError("EEXIST")
    # E2BIG as released C xenstored answers (4.22 changed it to ENOSPC).
    quota.check(conn, d.limits.watches, domain_watches(d, conn.domid) + 1, "E2BIG")
    w = Watch(path, token, len(conn.implicit) + 1 if relative else 0)
    conn.watches.append(w)
    d.reply(conn, msg, XS_WATCH, b"OK\0")
    # Fired once up front (xenstored does): clients read the initial state from it.
    send_event(d, conn, path[w.prefix_len:], token)
    return None


def do_unwatch(d, conn, msg, tx):
    args = xs_wire.request_strings(msg.payload)
    if len(args) != 2:
        raise XenstoreError("EINVAL")
    path = canonical(conn, args[0], d.limits.path_max, allow_special=True)
    for i, w in enumerate(conn.watches):
        if w.node == path and w.token == args[1]:
            del conn.watches[i]
            return b"OK\0"
    raise XenstoreError("ENOENT")


def do_reset_watches(d, conn, msg, tx):
    conn.watches.clear()
    conn.txs.clear()
    return b"OK\0"
