"""pvboot's command line, the boot runner, and host-side tools (demo disk, image builders)."""
import gc
import os
import sys

from pvboot.tools import serve_client


def console_main():
    """The `pvboot` command (also `python -m pvboot` and `python -m pvboot.tools`).

    The cyclic garbage collector stays off while the command line's ~150 modules load:
    their classes and functions are long-lived, and the collections their creation
    triggers (~25 per start) cost ~2% of a demo boot's host instructions.  Frozen, they are not scanned
    again, nor copied into the forked backend by a collection touching them.

    First, if a `pvboot serve` of this user's runs, the command goes to it instead
    (tools/serve_client.py): it starts from there with everything loaded."""
    try:
        code = serve_client.run_through_server(sys.argv[1:])
    except KeyboardInterrupt:       # Ctrl-C before the server said which process runs it
        print("pvboot: interrupted", file=sys.stderr)
        code = 130                  # a command it started sees the connection close and stops
    if code is not None:            # the command ran in a `pvboot serve` process
        sys.stderr.flush()
        os._exit(code)
    gc.disable()
    from pvboot.tools import cli
    gc.freeze()
    gc.enable()
    cli.console_main()
