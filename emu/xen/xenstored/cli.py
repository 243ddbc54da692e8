"""Command line of the standalone daemon: ``python -m pvboot.emu.xen.xenstored``.

Quota options take C xenstored's spellings (-E, -S, -W, -t, -A, -M, -Q what=nb).
Exit status: 0 after SIGTERM/SIGINT, 2 for bad options or an unusable socket path.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys

from .core import DEBUG, INFO, WARNING, XenstoreDaemon
from .quota import DEFAULT_LIMITS, Limits, quota_name, quota_names

QUOTA_MAX = 0x7FFFFFFF
EXIT_USAGE = 2

# option letter, long name, Limits field, what it limits (C xenstored's -E ... -M)
_QUOTA_OPTIONS = (
    ("-E", "--entry-nb", "nodes", "nodes a domain may own (ENOSPC)"),
    ("-S", "--entry-size", "node_size", "bytes of one node: 16 + 8 per permission + value "
                                        "+ child names with their NULs (ENOSPC)"),
    ("-W", "--watch-nb", "watches", "watches per domain (E2BIG)"),
    ("-t", "--transaction", "transactions", "open transactions per domain (ENOSPC)"),
    ("-A", "--perm-nb", "node_permissions", "permission entries per node (ENOSPC)"),
    ("-M", "--path-max", "path_max", "path length below /local/domain/N/, at most 2048 (EINVAL)"),
)


def _count(text: str) -> int:
    try:
        v = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number, got %r" % text) from None
    if not 0 <= v <= QUOTA_MAX:
        raise argparse.ArgumentTypeError("%d is out of range 0..%d" % (v, QUOTA_MAX))
    return v


def _quota_setting(text: str):
    name, sep, value = text.partition("=")
    if not sep or name not in quota_names():
        raise argparse.ArgumentTypeError("expected WHAT=NB with WHAT one of %s, got %r"
                                         % (", ".join(quota_names()), text))
    return name.replace("-", "_"), _count(value)


def _domain_socket_arg(text: str):
    domid, sep, path = text.partition(":")
    if not sep or not domid.isdigit() or int(domid) > 65535 or not path:
        raise argparse.ArgumentTypeError("expected DOMID:PATH, got %r" % text)
    return int(domid), path


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_USAGE, "%s: error: %s\n" % (self.prog, message))


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="python -m pvboot.emu.xen.xenstored",
        description="In-memory xenstore daemon on a unix socket.",
        epilog="Quotas limit unprivileged domains only (dom0 is exempt); 0 disables one.")
    ap.add_argument("--socket", required=True, metavar="PATH",
                    help="unix socket for privileged (dom0) clients, e.g. XENSTORED_PATH")
    ap.add_argument("--domain-socket", action="append", default=[], type=_domain_socket_arg,
                    metavar="DOMID:PATH", help="extra socket whose clients are domain DOMID")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="log to stderr (-v info, -vv debug)")
    q = ap.add_argument_group("quotas")
    for short, long, field, what in _QUOTA_OPTIONS:
        q.add_argument(short, long, dest=field, type=_count, metavar="NB",
                       default=getattr(DEFAULT_LIMITS, field),
                       help="%s (default: %%(default)s)" % what)
    q.add_argument("-Q", "--quota", action="append", default=[], type=_quota_setting,
                   metavar="WHAT=NB",
                   help="set any quota by its xenstored name: " + ", ".join(
                       "%s (default %d)" % (quota_name(f.name), getattr(DEFAULT_LIMITS, f.name))
                       for f in dataclasses.fields(Limits)))
    return ap


def limits_from_args(args) -> Limits:
    values = {f.name: getattr(DEFAULT_LIMITS, f.name) for f in dataclasses.fields(Limits)}
    for _, _, field, _ in _QUOTA_OPTIONS:
        values[field] = getattr(args, field)
    values.update(dict(args.quota))
    return Limits(**values)


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    daemon = XenstoreDaemon(args.socket, domain_sockets=dict(args.domain_socket),
                            limits=limits_from_args(args),
                            log_level=(WARNING if not args.verbose else
                                       INFO if args.verbose == 1 else DEBUG))

    def on_signal(signum, frame):
        daemon.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        daemon.serve_forever()
    except OSError as e:
        print("xenstored: %s" % (e.strerror or e), file=sys.stderr)
        return EXIT_USAGE
    finally:
        daemon.stop()
    return 0
