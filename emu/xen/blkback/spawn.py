"""Starting blkback from the pvboot process: a forked child running main.serve.

The child keeps the guest memory memfd and its event channel eventfds and nothing else
(backend_process.fork_main), so it reaches InitWait without an interpreter start-up.
"""

import types

from ..backend_process import fork_main
from .main import serve


def blkback_args(*, xenstore, guest_memory_fd, guest_memory_size, grant_table_address,
                 grant_table_frames, evtchn_page_address, evtchn_fd, frontend_evtchn_fd,
                 devid, evtchn_waker=0, frontend_domid=1, backend_domid=0, read_only=False,
                 persist=False, verbose=False, run_dir=None, save_overlay=None, lock=True):
    """The command line of main() for a backend with inherited descriptors."""
    args = ["--xenstore", str(xenstore),
            "--guest-memory-fd", str(guest_memory_fd),
            "--guest-memory-size", str(guest_memory_size),
            "--grant-table-address", hex(grant_table_address),
            "--grant-table-frames", str(grant_table_frames),
            "--evtchn-page-address", hex(evtchn_page_address),
            "--evtchn-fd", str(evtchn_fd),
            "--frontend-evtchn-fd", str(frontend_evtchn_fd),
            "--evtchn-waker", str(evtchn_waker),
            "--frontend-domid", str(frontend_domid),
            "--backend-domid", str(backend_domid),
            "--devid", str(devid)]
    if read_only:
        args.append("--read-only")
    if persist:
        args.append("--persist")
    if verbose:
        args.append("--verbose")
    if run_dir is not None:
        args += ["--run-dir", str(run_dir)]
    if save_overlay is not None:
        args += ["--save-overlay", str(save_overlay)]
    if not lock:
        args.append("--no-lock")
    return args


def start_blkback(mem, grant_table, evtchn, xenstore, devid, *, frontend_domid=1,
                  backend_domid=0, read_only=False, persist=False, verbose=False,
                  stderr=None, run_dir=None, save_overlay=None, lock=True):
    """Start blkback for vbd ``devid`` as a child process of the pvboot process.

    ``mem`` is the GuestMemory, ``grant_table`` the guest's GrantTable, ``evtchn`` the
    hypervisor's EventChannels (holding both domains' eventfds), ``xenstore`` the
    daemon's socket path.  Each backend gets its own waker eventfd (several backends
    share dom0).  The child keeps the memfd and the eventfds and nothing else.

    The child is forked from this process and runs main.serve (backend_process.fork_main:
    no interpreter start-up before InitWait).  Returns it as a ForkedProcess; the
    backend is ready once its xenstore state is InitWait.  Stop it with terminate()
    (SIGTERM) and wait()."""
    waker, backend_fd = evtchn.new_waker()
    fds = (mem.fd, backend_fd, evtchn.eventfd(frontend_domid))
    options = dict(
        xenstore=xenstore, guest_memory_fd=mem.fd, guest_memory_size=mem.size,
        grant_table_address=grant_table.base, grant_table_frames=grant_table.nr_frames,
        evtchn_page_address=evtchn.address, evtchn_fd=fds[1], frontend_evtchn_fd=fds[2],
        evtchn_waker=waker, devid=devid, frontend_domid=frontend_domid, backend_domid=backend_domid,
        read_only=read_only, persist=persist, verbose=verbose, run_dir=run_dir,
        save_overlay=save_overlay, lock=lock)
    # The child gets the options as main() would have parsed them (no parser to build
    # on its way to InitWait); blkback_args is the same backend as a command line.
    parsed = types.SimpleNamespace(
        xenstore=str(xenstore), guest_memory=None, guest_memory_fd=mem.fd,
        guest_memory_size=mem.size, grant_table_address=grant_table.base,
        grant_table_frames=grant_table.nr_frames, evtchn_page_address=evtchn.address,
        evtchn_fd=fds[1], frontend_evtchn_fd=fds[2], evtchn_waker=waker, devid=devid,
        frontend_domid=frontend_domid, backend_domid=backend_domid, read_only=read_only,
        persist=persist, verbose=verbose, run_dir=None if run_dir is None else str(run_dir),
        save_overlay=None if save_overlay is None else str(save_overlay), no_lock=not lock)
    return fork_main(lambda _argv: serve(parsed), blkback_args(**options), fds, stderr)
