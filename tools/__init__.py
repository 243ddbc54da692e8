"""pvboot's command line, the boot runner, and host-side tools (demo disk, image builders)."""


def console_main():
    """The `pvboot` command (also `python -m pvboot` and `python -m pvboot.tools`).

    The cyclic garbage collector stays off while the command line's ~150 modules load:
    their classes and functions are long-lived, and the collections their creation
    triggers (~25 per start) cost ~3% of a short boot.  Frozen, they are not scanned
    again, nor copied into the forked backend by a collection touching them."""
    import gc
    gc.disable()
    from pvboot.tools import cli
    gc.freeze()
    gc.enable()
    cli.console_main()
