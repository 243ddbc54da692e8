"""Node permissions: the access a connection gets from a node's ACL.

An ACL is ((owner, others' access), (domid, access), ...) with access one of
"n", "r", "w", "b" (xs_wire's permission letters).
"""

from __future__ import annotations

from typing import Dict

PERM_NONE, PERM_READ, PERM_WRITE, PERM_OWNER = 0, 1, 2, 8
PERM_BITS = {"n": PERM_NONE, "r": PERM_READ, "w": PERM_WRITE, "b": PERM_READ | PERM_WRITE}


def perm_for(conn, perms, targets: Dict[int, int]) -> int:
    """C xenstored's perm_for_conn: tools and owners get everything, then the first
    entry naming the domain (or its target), else the owner entry's "others" access."""
    ids = (conn.domid, targets.get(conn.domid))
    if conn.privileged or perms[0][0] in ids:
        return PERM_READ | PERM_WRITE | PERM_OWNER
    for domid, access in perms[1:]:
        if domid in ids:
            return PERM_BITS[access]
    return PERM_BITS[perms[0][1]]


def owner(perms) -> int:
    return perms[0][0]
