"""An in-memory xenstore daemon speaking the xs_wire protocol on unix sockets.

The "real xenstore" that pvboot's frontend (as domain 1) and the blkback process (as
dom0) rendezvous through.  Split by job as C xenstored: core (sockets, dispatch),
store, transaction, watch, domain, perms and quota; see docs/xenstore.md.
"""

from ..xs_wire import XenstoreError
from .core import XenstoreDaemon
from .quota import DEFAULT_LIMITS, Limits

# The command line (cli.main) is __main__'s: the daemon in pvboot's process does not
# load its option parser.
__all__ = ["XenstoreDaemon", "XenstoreError", "Limits", "DEFAULT_LIMITS"]
