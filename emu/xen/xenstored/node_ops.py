"""Requests on nodes (the do_* handlers of C xenstored_core): one function per
message type.  Each takes (daemon, connection, message, transaction or None) and
returns the reply payload; errors are raised as XenstoreError.
"""

from __future__ import annotations

from .. import xs_wire
from ..abi import XENSTORE_PAYLOAD_MAX
from ..xs_wire import XenstoreError
from . import quota
from .perms import PERM_OWNER, PERM_READ, PERM_WRITE, owner
from .store import basename, canonical, create_node, get_node, parent, subtree_postorder
from .transaction import View
from .watch import MATCH_EXACT, MATCH_SUBTREE


def _path(d, conn, raw: bytes, allow_special: bool = False) -> str:
    return canonical(conn, raw, d.limits.path_max, allow_special)


def _children(node) -> bytes:
    return b"".join(c.encode("ascii") + b"\0" for c in node.children)


def do_read(d, conn, msg, tx):
    path = _path(d, conn, xs_wire.request_one_arg(msg.payload))
    return get_node(View(d, conn, tx), path, PERM_READ).value


def do_directory(d, conn, msg, tx):
    path = _path(d, conn, xs_wire.request_one_arg(msg.payload))
    return _children(get_node(View(d, conn, tx), path, PERM_READ))


def do_directory_part(d, conn, msg, tx):
    """Children from byte offset ``off``, prefixed by the node's generation; as C
    xenstored, whole names only and an extra NUL once the list is complete."""
    args = xs_wire.request_strings(msg.payload)
    if len(args) != 2:
        raise XenstoreError("EINVAL")
    node = get_node(View(d, conn, tx), _path(d, conn, args[0]), PERM_READ)
    children = _children(node)
    off = xs_wire.c_atoi(args[1])
    gen = b"%d\0" % node.gen
    if off < 0 or off >= len(children):
        return gen + b"\0"
    maxlen = XENSTORE_PAYLOAD_MAX - len(gen) - 1
    length, pos = 0, off
    while True:
        nul = children.index(b"\0", pos)
        if length + (nul - pos) >= maxlen:
            break
        length += nul - pos + 1
        pos = nul + 1
        if off + length == len(children):
            break
    data = gen + children[off:off + length]
    if off + length == len(children):
        data += b"\0"
    return data


def do_write(d, conn, msg, tx):
    nul = msg.payload.find(b"\0")
    if nul < 0:
        raise XenstoreError("EINVAL")
    path = _path(d, conn, msg.payload[:nul])
    value = msg.payload[nul + 1:]
    view = View(d, conn, tx)
    try:
        node = get_node(view, path, PERM_WRITE)
    except XenstoreError as e:
        if e.errname != "ENOENT":
            raise
        create_node(view, conn, path, value)
    else:
        view.put(path, node._replace(value=value))
    view.fire(path, MATCH_SUBTREE, None)
    view.apply()
    return b"OK\0"


def do_mkdir(d, conn, msg, tx):
    path = _path(d, conn, xs_wire.request_one_arg(msg.payload))
    view = View(d, conn, tx)
    try:
        get_node(view, path, PERM_WRITE)
    except XenstoreError as e:
        if e.errname != "ENOENT":
            raise
        create_node(view, conn, path, b"")
        view.fire(path, MATCH_SUBTREE, None)
        view.apply()
    return b"OK\0"


def do_rm(d, conn, msg, tx):
    """Recursive.  A missing node is OK when its parent exists (C xenstored; oxenstored
    always says OK), ENOENT otherwise; "/" is EINVAL."""
    path = _path(d, conn, xs_wire.request_one_arg(msg.payload))
    view = View(d, conn, tx)
    try:
        node = get_node(view, path, PERM_WRITE)
    except XenstoreError as e:
        if e.errname == "ENOENT" and path != "/" and view.get(parent(path)) is not None:
            return b"OK\0"
        raise
    if path == "/":
        raise XenstoreError("EINVAL")
    for p, n in subtree_postorder(view, path, node):
        view.delete(p)
        view.fire(p, MATCH_SUBTREE if p == path else MATCH_EXACT, n)
    parent_node = view.get(parent(path))
    name = basename(path)
    # Removing never fails on a quota (C writes this parent unchecked too).
    view.put(parent(path), parent_node._replace(
        children=tuple(c for c in parent_node.children if c != name)), check_size=False)
    view.apply()
    return b"OK\0"


def do_get_perms(d, conn, msg, tx):
    path = _path(d, conn, xs_wire.request_one_arg(msg.payload), allow_special=True)
    return xs_wire.format_perms(get_node(View(d, conn, tx), path, PERM_READ).perms)


def do_set_perms(d, conn, msg, tx):
    args = xs_wire.request_strings(msg.payload)
    if len(args) < 2:
        raise XenstoreError("EINVAL")
    quota.check(conn, d.limits.node_permissions, len(args) - 1, "ENOSPC")
    try:
        perms = tuple(xs_wire.parse_perms(args[1:]))
    except ValueError:
        raise XenstoreError("EINVAL") from None
    path = _path(d, conn, args[0], allow_special=True)
    view = View(d, conn, tx)
    node = get_node(view, path, PERM_WRITE | PERM_OWNER)
    if not conn.privileged and owner(perms) != owner(node.perms):
        raise XenstoreError("EPERM")
    view.put(path, node._replace(perms=perms))
    view.fire(path, MATCH_SUBTREE, node)
    view.apply()
    return b"OK\0"
