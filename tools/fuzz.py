"""`pvboot fuzz`: boot random boot sectors, each run bounded, and report every run that
broke a promise: exit code 4 (a pvboot bug), an exception, or a changed image.

Each run's sector comes from its own seed (the base seed + the run's index), so a
report line's seed reproduces it: `pvboot fuzz 1 --seed SEED`.  docs/tools.md says how
the sectors are made.
"""
import collections
import hashlib
import os
import random
import sys
import tempfile
import traceback

from pvboot.tools import blkif_fuzz, options, runner

SECTOR = 512
DISK_SECTORS = 64                 # the fuzzed disk: the sector, then random data
DOCUMENTED_EXITS = {runner.EXIT_SUCCESS, runner.EXIT_TEST_FAILURE, runner.EXIT_CRASH}
EXIT_PROBLEM = 1                  # `pvboot fuzz`: at least one run broke a promise

# Pieces a random boot sector is made of: what boot code does (load registers, call
# the BIOS, touch ports, jump around) and plain random bytes.  Raw x86 encodings.
_BIOS_VECTORS = (0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A)
_MOV_IMM16 = (0xB8, 0xB9, 0xBA, 0xBB, 0xBC, 0xBD, 0xBE, 0xBF)     # mov r16, imm16
_SEG_LOADS = (b"\x8e\xc0", b"\x8e\xd8", b"\x8e\xd0")               # mov es/ds/ss, ax


def _piece(rng):
    kind = rng.randrange(10)
    if kind < 3:
        return bytes([rng.choice(_MOV_IMM16)]) + rng.randbytes(2)
    if kind == 3:
        return rng.choice(_SEG_LOADS)
    if kind < 6:
        vector = rng.choice(_BIOS_VECTORS) if rng.random() < 0.9 else rng.randrange(256)
        return bytes([0xCD, vector])                                    # int n
    if kind == 6:
        return bytes([rng.choice((0xE4, 0xE5, 0xE6, 0xE7)), rng.randrange(256)])  # in/out imm8
    if kind == 7:
        return bytes([rng.choice((0xEC, 0xED, 0xEE, 0xEF, 0xFA, 0xFB, 0xF4))])    # in/out dx, cli, sti, hlt
    if kind == 8:
        return bytes([0xEB, rng.randrange(256)])                        # jmp short
    return rng.randbytes(rng.randrange(1, 5))


def boot_sector(seed):
    """The random boot sector of `seed`: 510 bytes of pieces, then 55 AA."""
    rng = random.Random(seed)
    code = bytearray()
    while len(code) < SECTOR - 2:
        code += _piece(rng)
    return bytes(code[:SECTOR - 2]) + b"\x55\xAA"


def disk_image(seed):
    """The fuzzed disk of `seed`: its boot sector, then random sectors to read."""
    rng = random.Random(seed ^ 0x5A5A5A5A)
    return boot_sector(seed) + rng.randbytes((DISK_SECTORS - 1) * SECTOR)


def run_one(seed, path, max_insns, timeout, driver):
    """Boot the sector of `seed` from `path`; returns (exit code or None, what broke a
    promise or None, stop reason)."""
    data = disk_image(seed)
    with open(path, "wb") as f:
        f.write(data)
    try:
        result = runner.boot([path], max_insns=max_insns, timeout=timeout, driver=driver)
    except runner.InputError as exc:
        return runner.EXIT_USAGE, f"refused its own image: {exc}", None
    except Exception:                      # a pvboot bug: keep the traceback's last line
        return None, "exception: " + traceback.format_exc().strip().splitlines()[-1], None
    with open(path, "rb") as f:
        changed = hashlib.sha256(f.read()).digest() != hashlib.sha256(data).digest()
    code = result.exit_code
    if changed:
        return code, "the image file changed (no --persist was given)", result.stop.reason
    if code not in DOCUMENTED_EXITS:
        return code, f"exit code {code}: {result.stop.reason}: {result.stop.detail}", result.stop.reason
    return code, None, result.stop.reason


def build_parser(prog="pvboot fuzz"):
    parser = options.OneLineParser(prog=prog, description=(
        "Boot RUNS random boot sectors, each within --max-insns guest instructions and "
        "--timeout seconds, and report every run that ends with exit code 4 (a pvboot "
        "bug), raises, or changes its image (`pvboot fuzz blkif N` fuzzes blkback's "
        "requests instead).  Exit code 0: every run ended as "
        "documented; 1: some did not (their seeds are printed); 2: usage error."))
    parser.add_argument("runs", type=options.FUZZ_RUNS, metavar="RUNS",
                        help="how many boot sectors (1 to 10**9)")
    parser.add_argument("--seed", type=options.FUZZ_SEED, default=None,
                        help="base seed (default: random, printed); run i uses SEED + i")
    parser.add_argument("--max-insns", type=options.FUZZ_MAX_INSNS, default=200_000,
                        help="instruction bound of each run (default 200000)")
    parser.add_argument("--timeout", type=options.TIMEOUT, default=10.0, metavar="SECONDS",
                        help="wall-clock bound of each run (default 10)")
    parser.add_argument("--driver", choices=("xen", "host", "ata"), default="xen",
                        help="how the disk is attached (default xen: blkback and the PV ring)")
    parser.add_argument("--quiet", "-q", action="store_true", help="only the problems and the summary")
    return parser


def main(argv=None, prog="pvboot fuzz"):
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["blkif"]:
        return blkif_fuzz.main(argv[1:], prog=prog + " blkif")
    args = build_parser(prog).parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"{prog}: {args.runs} runs from seed {seed}, each within {args.max_insns} "
          f"instructions and {args.timeout:g} s, driver {args.driver}", flush=True)
    reasons, exits, problems = collections.Counter(), collections.Counter(), []
    with tempfile.TemporaryDirectory(prefix="pvboot-fuzz-") as tmp:
        path = os.path.join(tmp, "fuzz.img")
        for index in range(args.runs):
            run_seed = (seed + index) % 2**64
            code, problem, reason = run_one(run_seed, path, args.max_insns, args.timeout,
                                            args.driver)
            exits[code] += 1
            reasons[reason or "-"] += 1
            if problem:
                problems.append(run_seed)
                print(f"PROBLEM seed {run_seed}: {problem} (reproduce: pvboot fuzz 1 --seed "
                      f"{run_seed} --max-insns {args.max_insns} --driver {args.driver})",
                      flush=True)
            elif not args.quiet:
                print(f"run {index + 1}/{args.runs} seed {run_seed}: exit {code} ({reason})",
                      flush=True)
    print(f"{prog}: {args.runs} runs, {len(problems)} problem(s); exit codes "
          + ", ".join(f"{c}: {n}" for c, n in sorted(exits.items(), key=str))
          + "; stop reasons " + ", ".join(f"{r}: {n}" for r, n in reasons.most_common()))
    return EXIT_PROBLEM if problems else runner.EXIT_SUCCESS


if __name__ == "__main__":
    sys.exit(main())
