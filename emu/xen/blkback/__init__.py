"""blkback: the Xen PV block backend, as its own OS process (dom0's side of a vbd).

pvboot plays hypervisor and toolstack; this process plays the driver domain's kernel
backend (after Linux drivers/block/xen-blkback), split the same way by job:
xenbus.py (the device's xenstore state machine, Linux xenbus.c), blkio.py (request
checks and I/O on the shared ring, Linux blkback.c), main.py (the process's command
line and exit status) and spawn.py (starting it as a child of the pvboot process).

Run it by hand as::

    python -m pvboot.emu.xen.blkback --xenstore SOCK --guest-memory /proc/PID/fd/N \\
        --grant-table-address 0x40C0000 --evtchn-page-address 0x40C1000 \\
        --evtchn-fd 5 --frontend-evtchn-fd 6 --devid 51712
"""

from .main import EXIT_INTERNAL, EXIT_OK, EXIT_SETUP, EXIT_USAGE, main
from .spawn import blkback_args, start_blkback
from .xenbus import Blkback

__all__ = ["main", "Blkback", "start_blkback", "blkback_args", "EXIT_OK", "EXIT_INTERNAL",
           "EXIT_USAGE", "EXIT_SETUP"]
