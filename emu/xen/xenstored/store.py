"""The xenstore tree: nodes, path rules and the walks every request shares.

The live tree is a flat {path: Node} dict of immutable nodes, so a transaction's
snapshot is a shallow dict copy.  Walks over a subtree use an explicit stack: a
client chooses the depth, so nothing here may recurse.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Dict, List, NamedTuple, Optional, Tuple

from ..abi import XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX
from ..xs_wire import XenstoreError
from .perms import owner

_VALID_PATH = re.compile(rb"[A-Za-z0-9/_@-]*\Z")
_LOCAL_DOMAIN = re.compile(r"/local/domain/(\d{1,5})/")


class Node(NamedTuple):
    """One immutable node; a change stores a new object (snapshots share the rest)."""
    value: bytes
    perms: Tuple[Tuple[int, str], ...]   # ((owner, others' access), (domid, access), ...)
    children: Tuple[str, ...]            # creation order, like C xenstored
    gen: int


class Store:
    """The live tree, its generation counter and how many nodes each domain owns."""

    def __init__(self):
        self.nodes: Dict[str, Node] = {}
        self.gen = 0
        self.owned: Counter = Counter()
        # What C xenstored creates at start: a bare root, /tool/xenstored, the specials.
        dom0_only = ((0, "n"),)
        self.set("/", Node(b"", dom0_only, ("tool",), 0))
        self.set("/tool", Node(b"", dom0_only, ("xenstored",), 0))
        self.set("/tool/xenstored", Node(b"", dom0_only, (), 0))
        self.set("@introduceDomain", Node(b"", dom0_only, (), 0))
        self.set("@releaseDomain", Node(b"", dom0_only, (), 0))

    def next_gen(self) -> int:
        self.gen += 1
        return self.gen

    def set(self, path: str, node: Optional[Node]) -> None:
        """Store ``node`` at ``path`` (None removes it), keeping ``owned`` exact."""
        account(self.owned, self.nodes.get(path), node)
        if node is None:
            self.nodes.pop(path, None)
        else:
            self.nodes[path] = node._replace(gen=self.next_gen())


def account(counts: Counter, old: Optional[Node], new: Optional[Node]) -> None:
    """Move one node's ownership count from ``old``'s owner to ``new``'s."""
    if old is not None:
        counts[owner(old.perms)] -= 1
    if new is not None:
        counts[owner(new.perms)] += 1


# -- paths

def parent(path: str) -> str:
    cut = path.rfind("/", 1)
    return path[:cut] if cut > 0 else "/"


def basename(path: str) -> str:
    return path[path.rfind("/") + 1:]


def child_path(path: str, name: str) -> str:
    return (path if path != "/" else "") + "/" + name


def is_child(child: str, ancestor: str) -> bool:
    """``child`` is ``ancestor`` or lies below it."""
    if ancestor == "/":
        return child.startswith("/")
    return child == ancestor or child.startswith(ancestor + "/")


def canonical(conn, raw: bytes, path_max: int, allow_special: bool = False) -> str:
    """C canonicalize(): the absolute path of a request argument, or EINVAL.

    Characters [A-Za-z0-9/_@-], no trailing or double slash; relative paths resolve
    under the connection's /local/domain/<domid>; an unprivileged connection's path
    below /local/domain/N/ may be at most ``path_max`` long (0 = XENSTORE_REL_PATH_MAX).
    """
    if not _VALID_PATH.match(raw):
        raise XenstoreError("EINVAL")
    path = raw.decode("ascii")
    if path.startswith("@") and not allow_special:
        raise XenstoreError("EINVAL")
    if not path.startswith(("/", "@")):
        if len(path) > XENSTORE_REL_PATH_MAX:
            raise XenstoreError("EINVAL")
        path = conn.implicit + "/" + path
    if (path.endswith("/") and path != "/") or "//" in path:
        raise XenstoreError("EINVAL")
    if len(path) > XENSTORE_ABS_PATH_MAX:
        raise XenstoreError("EINVAL")
    if not conn.privileged:
        m = _LOCAL_DOMAIN.match(path)
        if len(path) - (m.end() if m else 0) > (path_max or XENSTORE_REL_PATH_MAX):
            raise XenstoreError("EINVAL")
    return path


# -- walks over a view (anything with get(path) and perm(node), see transaction.View)

def get_node(view, path: str, perm: int) -> Node:
    """The node if the view's connection has ``perm`` on it.  ENOENT is only told to
    callers who could have had that access through the closest existing ancestor."""
    node = view.get(path)
    if node is not None:
        if view.perm(node) & perm == perm:
            return node
        raise XenstoreError("EACCES")
    anc = path
    while anc != "/":
        anc = parent(anc)
        a = view.get(anc)
        if a is not None:
            raise XenstoreError("ENOENT" if view.perm(a) & perm else "EACCES")
    raise XenstoreError("EACCES")


def create_node(view, conn, path: str, value: bytes) -> None:
    """Create ``path`` and its missing parents.  New nodes copy their parent's ACL;
    one created by an unprivileged domain is owned by that domain."""
    missing = [path]
    parent_path = parent(path)
    parent_node = view.get(parent_path)
    while parent_node is None:
        missing.append(parent_path)
        parent_path = parent(parent_path)
        parent_node = view.get(parent_path)
    for name in reversed(missing):
        perms = parent_node.perms
        if not conn.privileged:
            perms = ((conn.domid, perms[0][1]),) + perms[1:]
        view.put(parent_path, parent_node._replace(children=parent_node.children + (basename(name),)))
        node = Node(value if name == path else b"", perms, (), 0)
        view.put(name, node)
        parent_path, parent_node = name, node


def subtree_postorder(view, path: str, node: Node) -> List[Tuple[str, Node]]:
    """(path, node) of ``path`` and everything below it, children before parents."""
    out: List[Tuple[str, Node]] = []
    stack = [(path, node, iter(node.children))]
    while stack:
        p, n, names = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            out.append((p, n))
            continue
        cpath = child_path(p, name)
        cnode = view.get(cpath)
        if cnode is not None:
            stack.append((cpath, cnode, iter(cnode.children)))
    return out

