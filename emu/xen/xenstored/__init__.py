"""An in-memory xenstore daemon speaking the xs_wire protocol on unix sockets.

The "real xenstore" that pvboot's frontend (as domain 1) and the blkback process (as
dom0) rendezvous through.  Split by job as C xenstored: core (sockets, dispatch),
store, transaction, watch, domain, perms and quota; see docs/xenstore.md.
"""

from ..xs_wire import XenstoreError
from .cli import main
from .core import XenstoreDaemon
from .quota import DEFAULT_LIMITS, Limits

__all__ = ["XenstoreDaemon", "XenstoreError", "Limits", "DEFAULT_LIMITS", "main"]
