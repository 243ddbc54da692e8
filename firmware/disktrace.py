"""What the block layer remembers of the operations it ran: the recent ones for crash
reports and --trace disk (DiskTraceEntry), and, for `pvboot compare --paths`, a CRC-32
of each operation's data (OpDigest)."""
import zlib
from typing import NamedTuple

from pvboot.firmware.diskop import CMD_READ, CMD_WRITE, COMMAND_NAMES

# How many recent operations bios.disk_trace keeps for crash reports.
DISK_TRACE_LENGTH = 32


class DiskTraceEntry(NamedTuple):
    """One finished operation, as kept in bios.disk_trace and printed by --trace disk."""
    time: float
    command: int
    drive: int
    lba: int
    requested: int
    done: int
    buf_addr: int
    status: int

    def __str__(self):
        name = COMMAND_NAMES.get(self.command, f"cmd{self.command:02x}")
        return (f"[{self.time:10.6f}] disk {name} drive {self.drive:02x}h lba {self.lba} "
                f"count {self.done}/{self.requested} buf {self.buf_addr:#x} status {self.status:02x}")


class OpDigest(NamedTuple):
    """One disk operation as `pvboot compare --paths` compares it across firmware paths
    (config.op_digests): command, BIOS drive, LBA, sectors asked and done, status, and
    the CRC-32 (zlib.crc32) of the bytes transferred (reads and writes; None otherwise)."""
    command: int
    drive: int
    lba: int
    requested: int
    done: int
    status: int
    digest: int

    def describe(self):
        name = COMMAND_NAMES.get(self.command, f"cmd{self.command:02x}")
        digest = "-" if self.digest is None else f"{self.digest:08X}"
        return (f"{name} drive {self.drive:02x}h lba {self.lba} count {self.done}/{self.requested} "
                f"status {self.status:02x} crc32 {digest}")


def process_op_with_digest(process_op, block, op):
    """process_op, then an OpDigest of it: for a read the CRC-32 of the bytes in guest
    memory after it (the sectors done), for a write of the bytes it took."""
    command, number, lba, requested, buf_addr = op.command, op.drive.number, op.lba, op.count, op.buf_addr
    status = process_op(block, op)
    digest = None
    if command in (CMD_READ, CMD_WRITE):
        digest = zlib.crc32(block.mem.view(buf_addr, op.count * op.drive.blksize))
    block.op_digests.append(OpDigest(command, number, lba, requested, op.count, status, digest))
    return status
