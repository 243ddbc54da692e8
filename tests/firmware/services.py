"""Shared by the BIOS service tests: each boots a small program on the full machine
(Machine + Bios + a disk), lets it call the BIOS and store what it got at 0000:0600,
then checks it against the PC's documented behaviour (SeaBIOS, Ralf Brown's list)."""
import struct

MiB = 1 << 20
OUT = 0x600                     # where the guest programs store their results
EXIT_OK = "mov al, 0\nout 0xf4, al\n"
# EXIT_OK, then the label `fail:` a program jumps to when a call returns CF=1 (exit 1)
EXIT_OK_OR_FAIL = EXIT_OK + "fail: mov al, 1\nout 0xf4, al\n"


def words(mem, addr, count):
    return list(struct.unpack_from(f"<{count}H", mem.buf, addr))


def assert_exit_ok(stop):
    assert (stop.reason, stop.exit_value) == ("exit", 0), stop
