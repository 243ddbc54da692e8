"""A bare Unicorn running a boot sector's code: the peer of the CPU-loop benchmark.

    python -m pvboot.tools.bench.rawcpu IMAGE START END

Maps 1 MiB of RAM, copies IMAGE's first sector to 0x7C00, sets the registers a BIOS
leaves (CS=DS=SS=0, SP=0x7C00) and runs from START to END (linear addresses) with one
emu_start: no hooks, no timeout, default TLB, nothing of pvboot imported. It prints
the seconds emu_start took; the bench times the whole process, as it times pvboot's.
"""
import sys
import time

import unicorn as uc_mod
from unicorn import x86_const as X


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    path, start, end = argv[0], int(argv[1], 0), int(argv[2], 0)
    with open(path, "rb") as f:
        code = f.read(512)
    uc = uc_mod.Uc(uc_mod.UC_ARCH_X86, uc_mod.UC_MODE_16)
    uc.mem_map(0, 1 << 20)
    uc.mem_write(0x7C00, code)
    for reg in (X.UC_X86_REG_CS, X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_SS):
        uc.reg_write(reg, 0)
    uc.reg_write(X.UC_X86_REG_SP, 0x7C00)
    began = time.perf_counter()
    uc.emu_start(start, end)
    took = time.perf_counter() - began
    print(f"{took:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
