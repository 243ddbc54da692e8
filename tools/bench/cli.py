"""`pvboot bench` (also `python -m pvboot.tools.bench`): pvboot against QEMU + SeaBIOS
and a bare Unicorn, in one run on one machine; medians of whole processes, wall and
CPU time.  It only measures: no timing is asserted anywhere (docs/tools.md).
"""
import datetime
import json
import sys
import tempfile
import time

from pvboot.tools import options
from pvboot.tools.bench import batch
from pvboot.tools.bench.measure import GROUPS, Bench
from pvboot.tools.bench.processes import QEMU_MEMORY_MB, RSS_POLL_SECONDS
from pvboot.tools.bench.table import (CLOCK_TEXT, loadavg, legend_lines, machine_description,
                                      machine_lines, table_lines)


# Sizes of the runs: the small run of a pair only cancels start-up.
# The IDE pair (pvboot's ata, QEMU's IDE) moves data by PIO at a few MiB/s: its big
# run is bulk_pio_mib, so that five rounds of it take seconds, not minutes.
FULL_SIZES = {"bulk_small_mib": 1, "bulk_big_mib": 256, "bulk_pio_mib": 8,
              "int_small": 1000, "int_big": 30000,
              "cpu_small": 1_000_000, "cpu_big": 1_000_000_000, "batch_images": 100}
QUICK_SIZES = {"bulk_small_mib": 1, "bulk_big_mib": 3, "bulk_pio_mib": 2,
               "int_small": 100, "int_big": 3000,
               "cpu_small": 1_000_000, "cpu_big": 100_000_000, "batch_images": 6}



# -- command line -----------------------------------------------------------------------
def build_parser(prog="pvboot bench"):
    parser = options.OneLineParser(prog=prog, description=__doc__.split("\n\n")[0].replace("\n", " ").strip('"'))
    parser.add_argument("--runs", type=options.BENCH_RUNS, default=5, metavar="N",
                        help="rounds of each measurement; medians over them (default 5, "
                             "at most 1000)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and one round: proves the benchmark works in seconds "
                             "(the figures mean nothing)")
    parser.add_argument("--json", metavar="FILE", help="write every raw sample, the medians and "
                        "the machine description to FILE")
    parser.add_argument("--only", metavar="GROUPS", default=",".join(GROUPS),
                        help=f"comma list of groups to run (default: all of {','.join(GROUPS)})")
    parser.add_argument("--bulk-mib", type=options.BENCH_BULK_MIB, metavar="MIB",
                        help="size of the big bulk-read run (default 256; quick: 3; the PIO "
                             "pair ata / QEMU IDE: 8)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time the figures use: wall (default) or the processes' user + "
                             "system CPU time (steadier on a busy machine; both are in the JSON)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv=None, prog="pvboot bench"):
    args = build_parser(prog).parse_args(argv)
    groups = tuple(g.strip() for g in args.only.split(",") if g.strip())
    unknown = set(groups) - set(GROUPS)
    if unknown or not groups:
        print(f"{prog}: error: unknown group {sorted(unknown)[0] if unknown else '(none)'!r} "
              f"(use {', '.join(GROUPS)})", file=sys.stderr)
        return 2
    runs = 1 if args.quick else args.runs
    sizes = dict(QUICK_SIZES if args.quick else FULL_SIZES)
    sizes["batch_jobs"] = batch.jobs()
    if args.bulk_mib:
        if args.bulk_mib <= sizes["bulk_small_mib"]:
            print(f"{prog}: error: --bulk-mib must be above {sizes['bulk_small_mib']}",
                  file=sys.stderr)
            return 2
        sizes["bulk_big_mib"] = args.bulk_mib

    json_out = None
    if args.json:
        try:       # opened now: a path that cannot be written fails before the runs
            json_out = open(args.json, "w")
        except OSError as exc:
            print(f"{prog}: error: --json {args.json}: {exc.strerror}", file=sys.stderr)
            return 2

    def log(line):
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    machine = machine_description()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="pvboot-bench-") as tmp:
        bench = Bench(runs, sizes, tmp, log=log, groups=groups)
        bench.run()
    machine["loadavg_end"] = loadavg()
    duration = time.time() - started
    other = "cpu" if args.clock == "wall" else "wall"
    rows = bench.rows(args.clock)
    rows_other = bench.rows(other)
    lines = table_lines(rows)
    lines_other = table_lines(rows_other)
    print(f"pvboot bench: {runs} round(s), pvboot and its peer alternating; medians of "
          f"{args.clock} time" + (" (--quick: sizes too small to mean anything)" if args.quick else ""))
    for line in machine_lines(machine):
        print(line)
    print()
    for line in lines:
        print(line)
    print()
    for line in legend_lines(sizes):
        print(line)
    print()
    print(f"The same runs timed by {CLOCK_TEXT[other]}:")
    for line in lines_other:
        print(line)
    if args.json:
        report = {
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(duration, 1),
            "machine": machine,
            "config": {"runs": runs, "quick": args.quick, "groups": list(groups),
                       "clock": args.clock, "pvboot_bytecode": "cached (PYTHONPYCACHEPREFIX, "
                       "warmed up by one unmeasured run)",
                       "sizes": sizes, "qemu_memory_mb": QEMU_MEMORY_MB,
                       "rss_poll_s": RSS_POLL_SECONDS},
            "rows": rows,
            "table": lines,
            f"rows_{other}": rows_other,
            f"table_{other}": lines_other,
            "runs": bench.records,
        }
        with json_out:
            json.dump(report, json_out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
