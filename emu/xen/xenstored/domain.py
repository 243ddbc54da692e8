"""Domains (C xenstored_domain): introduction, release, targets, domain paths.

Domains are introduced by XS_INTRODUCE or when a connection for them is made;
released domains lose their connections.  Per-domain quotas live in quota.py.
"""

from __future__ import annotations

import re

from .. import xs_wire
from ..abi import DOMID_SELF
from ..xs_wire import XenstoreError
from .watch import fire_special


def parse_domid(raw: bytes) -> int:
    """C parse_domid(): strtoul base 10, whole string, <= 65535 ("" is 0, as in C)."""
    m = re.fullmatch(rb"[ \t\n\v\f\r]*([+-]?)([0-9]*)", raw)
    if raw and (not m or not m.group(2)):
        raise XenstoreError("EINVAL")
    if not raw:
        return 0
    v = int(m.group(2))
    if (m.group(1) == b"-" and v) or v > 65535:
        raise XenstoreError("EINVAL")
    return v


def introduce(d, domid: int) -> None:
    if domid not in d.introduced:
        d.introduced.add(domid)
        fire_special(d, "@introduceDomain")


def release(d, domid: int) -> None:
    d.introduced.discard(domid)
    d.targets.pop(domid, None)
    for c in list(d.conns):
        if c.domid == domid and not c.privileged:
            d.close(c, "domain released")
    fire_special(d, "@releaseDomain")


def _known_domain(d, payload: bytes) -> int:
    domid = parse_domid(xs_wire.request_one_arg(payload))
    if domid == 0:
        raise XenstoreError("EINVAL")
    if domid not in d.introduced:
        raise XenstoreError("ENOENT")
    return domid


def do_get_domain_path(d, conn, msg, tx):
    return b"/local/domain/%d\0" % parse_domid(xs_wire.request_one_arg(msg.payload))


def do_introduce(d, conn, msg, tx):
    args = xs_wire.request_strings(msg.payload)
    if len(args) < 3:
        raise XenstoreError("EINVAL")
    domid = parse_domid(args[0])
    if xs_wire.c_atoi(args[2]) <= 0:          # event channel port
        raise XenstoreError("EINVAL")
    introduce(d, domid)
    return b"OK\0"


def do_release(d, conn, msg, tx):
    release(d, _known_domain(d, msg.payload))
    return b"OK\0"


def do_resume(d, conn, msg, tx):
    _known_domain(d, msg.payload)
    return b"OK\0"


def do_is_domain_introduced(d, conn, msg, tx):
    domid = parse_domid(xs_wire.request_one_arg(msg.payload))
    return b"T\0" if domid == DOMID_SELF or domid in d.introduced else b"F\0"


def do_set_target(d, conn, msg, tx):
    args = xs_wire.request_strings(msg.payload)
    if len(args) < 2:
        raise XenstoreError("EINVAL")
    domid, target = parse_domid(args[0]), parse_domid(args[1])
    for x in (domid, target):
        if x not in d.introduced:
            raise XenstoreError("ENOENT")
    d.targets[domid] = target
    return b"OK\0"


def do_control(d, conn, msg, tx):
    # No xenstore-control commands (log, quota, live update...) are implemented.
    raise XenstoreError("EINVAL")
