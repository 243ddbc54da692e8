"""String port I/O served a string at a time: `rep insw`/`rep outsw` (and the dword
forms) at a device that can move a whole block in one step, instead of one port hook
call per element.

Details: docs/string-io.md.
"""
from pvboot.emu.cpu import (CR0_PE, I_CR0, I_CS, I_DS, I_ECX, I_EDI, I_EFLAGS, I_ES, I_ESI,
                            I_EIP, I_FS, I_GS, I_SS)

FLAG_DF = 1 << 10
OP_INSW, OP_OUTSW = 0x6D, 0x6F          # INSW/INSD and OUTSW/OUTSD (66h selects dwords)
PREFIX_REP, PREFIX_REPNE = 0xF3, 0xF2   # both repeat INS/OUTS (no flag test)
PREFIX_OPSIZE, PREFIX_ADDRSIZE = 0x66, 0x67
SEGMENT_PREFIXES = {0x26: I_ES, 0x2E: I_CS, 0x36: I_SS, 0x3E: I_DS, 0x64: I_FS, 0x65: I_GS}
MAX_PREFIXES = 14                       # an x86 instruction is at most 15 bytes
SEGMENT_SIZE = 0x10000


def read_string(bus, port, size, count):
    """`rep ins` of `count` elements of `size` bytes from `port` on `bus`: the bytes read.
    A device with take_in serves as many as it has ready in one exit; the rest go one
    element at a time through the bus, exactly as IN would."""
    device = bus.device_at(port)
    take = getattr(device, "take_in", None)
    out = bytearray()
    left = count
    while left:
        chunk = take(port, size, left) if take is not None else b""
        if chunk:
            bus.reads += 1
            out += chunk
            left -= len(chunk) // size
            continue
        out += bus.read(port, size).to_bytes(size, "little")
        left -= 1
    return bytes(out)


def write_string(bus, port, size, data):
    """`rep outs` of `data` (whole elements of `size` bytes) to `port` on `bus`."""
    device = bus.device_at(port)
    take = getattr(device, "take_out", None)
    view = memoryview(data).cast("B")
    at, end = 0, len(view) - len(view) % size
    while at < end:
        taken = take(port, size, view[at:end]) if take is not None else 0
        if taken:
            bus.writes += 1
            at += taken * size
            continue
        bus.write(port, size, int.from_bytes(view[at:at + size], "little"))
        at += size


class RepString:
    """The `rep ins`/`rep outs` at CS:IP as far as string service needs it."""

    __slots__ = ("opcode", "size", "segment")

    def __init__(self, opcode, size, segment):
        self.opcode = opcode
        self.size = size
        self.segment = segment          # the I_* index of the source segment (OUTS)


def decode_rep_string(code, at):
    """The real-mode `rep insw/insd/outsw/outsd` with 16-bit addressing at linear `at`
    of `code` (a buffer), or None for anything else."""
    rep = False
    size = 2
    segment = I_DS
    for offset in range(MAX_PREFIXES + 1):
        if at + offset >= len(code):
            return None
        byte = code[at + offset]
        if byte in (PREFIX_REP, PREFIX_REPNE):
            rep = True
        elif byte == PREFIX_OPSIZE:
            size = 4
        elif byte == PREFIX_ADDRSIZE:
            return None                 # ECX/EDI/ESI addressing: left to the CPU
        elif byte in SEGMENT_PREFIXES:
            segment = SEGMENT_PREFIXES[byte]
        elif byte in (OP_INSW, OP_OUTSW) and rep:
            return RepString(byte, size, segment)
        else:
            return None
    return None


class RepStrings:
    """Serves a guest's `rep insw`/`rep outsw` at a device's data port a string at a
    time, from inside the IN/OUT hook of its first element."""

    def __init__(self, cpu, mem):
        self.cpu = cpu
        self.mem = mem
        self.checks = 0                 # instructions looked at
        self.strings = 0                # strings served in one step
        self.elements = 0               # elements they moved

    def _string(self, opcode, size, index):
        """(state, insn, offset, count) for the rep string at CS:IP if it is `opcode`
        moving `size`-byte elements in real mode, forwards: `offset` its DI or SI (the
        register at `index`) and `count` the elements before CX runs out or the offset
        wraps its segment.  None for anything else, or fewer than two elements."""
        self.checks += 1
        state = self.cpu.read_state()
        if state[I_CR0] & CR0_PE or state[I_EFLAGS] & FLAG_DF:
            return None
        insn = decode_rep_string(self.mem.buf, (state[I_CS] << 4) + (state[I_EIP] & 0xFFFF))
        if insn is None or insn.opcode != opcode or insn.size != size:
            return None
        offset = state[index] & 0xFFFF
        count = min(state[I_ECX] & 0xFFFF, (SEGMENT_SIZE - offset) // size)
        if count < 2:
            return None
        return state, insn, offset, count

    def _served(self, register, state, offset, size, moved):
        """`moved` elements went in one step: the CPU adds `size` to DI (SI) and takes 1
        from CX after this hook call, so leave both one element short of that."""
        if moved > 1:
            self.cpu.set(register, offset + (moved - 1) * size)
            self.cpu.set("cx", (state[I_ECX] & 0xFFFF) - (moved - 1))
        self.strings += 1
        self.elements += moved

    def ins(self, port, size, take_in):
        """The element for this IN of a `rep ins`, having put the ones after it that the
        device had ready straight into ES:DI; None when per-element service must do."""
        found = self._string(OP_INSW, size, I_EDI)
        if found is None:
            return None
        state, _insn, di, count = found
        dest = (state[I_ES] << 4) + di
        if not self.mem.is_writable_ram(dest, count * size):
            return None
        data = take_in(port, size, count)
        moved = len(data) // size
        if not moved:
            return None
        if moved > 1:
            # The CPU stores this element at DI itself.  The write drops translated code
            # there (a sector loaded over old code).
            self.mem.write(dest + size, data[size:moved * size])
        self._served("di", state, di, size, moved)
        return int.from_bytes(data[:size], "little")

    def outs(self, port, size, value, take_out):
        """Give the device this OUT's element and the ones after it at DS:SI (or the
        override segment); False when per-element service must do."""
        found = self._string(OP_OUTSW, size, I_ESI)
        if found is None:
            return False
        state, insn, si, count = found
        source = (state[insn.segment] << 4) + si
        if source + count * size > self.mem.size:
            return False
        data = value.to_bytes(size, "little") + self.mem.read(source + size, (count - 1) * size)
        moved = take_out(port, size, data)
        if not moved:
            return False
        self._served("si", state, si, size, moved)
        return True
