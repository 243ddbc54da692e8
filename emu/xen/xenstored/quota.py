"""Per-domain limits of the xenstore daemon, with C xenstored's names and defaults.

Only unprivileged connections are limited (dom0 is exempt) and 0 disables a limit,
as in xenstored.  Which error each limit answers is listed in docs/xenstore.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Tuple

from ..abi import XENSTORE_REL_PATH_MAX
from ..xs_wire import XenstoreError

# C xenstored's node accounting: struct node_hdr (u64 generation, u16 num_perms,
# u16 datalen, u32 childlen), 8 bytes per struct xs_permissions, then data and names.
NODE_HEADER_SIZE = 16
PERM_ENTRY_SIZE = 8


@dataclass(frozen=True)
class Limits:
    """Hard quotas; the field names are xenstored's ``--quota`` names with '_' for '-'."""
    nodes: int = 1000                     # nodes a domain owns (-E, ENOSPC)
    node_size: int = 2048                 # header + perms + value + child names (-S, ENOSPC)
    path_max: int = XENSTORE_REL_PATH_MAX  # path length below /local/domain/N/ (-M, EINVAL)
    watches: int = 128                    # watches per domain (-W, E2BIG)
    transactions: int = 10                # open transactions per domain (-t, ENOSPC)
    transaction_nodes: int = 1024         # nodes one transaction may touch (ENOSPC)
    node_permissions: int = 5             # entries in one node's ACL (-A, ENOSPC)
    outstanding: int = 20                 # unread replies before requests wait (no error)

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError("quota %s must be a non-negative integer, got %r"
                                 % (quota_name(f.name), v))
        if self.path_max > XENSTORE_REL_PATH_MAX:
            # xenstored clamps -M the same way: longer paths break the protocol.
            object.__setattr__(self, "path_max", XENSTORE_REL_PATH_MAX)


DEFAULT_LIMITS = Limits()


def quota_name(field_name: str) -> str:
    return field_name.replace("_", "-")


def quota_names() -> Tuple[str, ...]:
    return tuple(quota_name(f.name) for f in fields(Limits))


def exceeded(limit: int, value: int) -> bool:
    """True when ``value`` is over ``limit`` (0 = unlimited)."""
    return limit > 0 and value > limit


def check(conn, limit: int, value: int, errname: str) -> None:
    """Raise ``errname`` when an unprivileged ``conn`` would go over ``limit``."""
    if not conn.privileged and exceeded(limit, value):
        raise XenstoreError(errname)


def node_size(node) -> int:
    return (NODE_HEADER_SIZE + PERM_ENTRY_SIZE * len(node.perms) + len(node.value)
            + sum(len(name) + 1 for name in node.children))
