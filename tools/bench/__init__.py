"""pvboot's benchmark: `pvboot bench` / `python -m pvboot.tools.bench` (see bench/cli.py).

A package rather than tools/bench.py because it is more than one module: the guest
programs it assembles (bench/*.S) live next to the code that builds them
(bench/guests.py), and the bare-Unicorn peer (bench/rawcpu.py) must be a module of its
own that a fresh process runs without importing anything of pvboot.
"""
