"""Small boot programs written inline by tests (tests/guests/lib.inc runtime), built
into disk images: a guest that prints and spins forever, and the like."""
from pvboot.tools.diskpattern import disk_image
from tests.guests import build

SECTORS = 64

# Prints a stage line and a failure message, then spins forever (incw %ax; jmp):
# without --fail or a debugger the run only ends at its timeout.
SPINNER = """
        .include "lib.inc"
main:
        PUTLN "stage one"
        PUTLN "error: no such partition"
1:      incw %ax
        jmp 1b
"""
SPIN_LOOP = bytes.fromhex("40ebfd")       # inc %ax / %eax; jmp back to it


def build_guest(tmp_path, name, source):
    """(image path, program bytes) of `source` assembled at 0x7C00."""
    path = tmp_path / f"{name}.S"
    path.write_text(source)
    program = build.assemble(path, {"DISK_SECTORS": SECTORS}, include_dirs=(build.GUEST_DIR,))
    image = tmp_path / f"{name}.img"
    image.write_bytes(bytes(disk_image(program, SECTORS)))
    return str(image), program


def loop_address(program):
    """Linear address of the spin loop in `program`."""
    return 0x7C00 + program.index(SPIN_LOOP)
