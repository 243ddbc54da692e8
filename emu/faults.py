"""Crash and timeout reports: registers, CS:IP, a capstone disassembly around the code,
the last interrupts (Machine.interrupt_history), the last POST codes and whatever the
firmware adds through Machine.report_sections (its last disk operations)."""
import functools

from pvboot.emu.cpu import CR0_PE, I_CS, I_DS, I_EAX, I_EBX, I_ECX, I_EDI, I_EDX, I_EIP, I_ES, I_ESI


@functools.lru_cache(maxsize=None)
def _engine(mode32):
    # capstone costs ~20 ms to import and only reports need it: load it on first use.
    import capstone
    return capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32 if mode32 else capstone.CS_MODE_16)


def disassemble(mem, linear, count=8, mode32=False, mark=None):
    """Lines 'addr: bytes  mnemonic operands' for `count` instructions at `linear`."""
    engine = _engine(bool(mode32))
    if linear < 0 or linear >= mem.size:
        return ["  (outside guest memory)"]
    code = mem.read(linear, min(count * 15, mem.size - linear))
    lines = []
    for insn in engine.disasm(code, linear):
        arrow = "=>" if insn.address == mark else "  "
        lines.append(f"{arrow} {insn.address:08x}: {insn.bytes.hex():<16} {insn.mnemonic} {insn.op_str}")
        if len(lines) >= count:
            break
    return lines or ["  (no decodable instruction)"]


def fault_report(machine):
    cpu = machine.cpu
    regs = cpu.snapshot()
    protected = bool(regs["cr0"] & CR0_PE)
    ip = regs["eip"]
    linear = (regs["cs"] << 4) + ip if not protected else ip
    lines = [f"CS:IP {regs['cs']:04x}:{ip:04x} (linear {linear:#x}, {'protected' if protected else 'real'} mode)"]
    names = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp")
    lines.append(" ".join(f"{n}={regs[n]:08x}" for n in names))
    lines.append(" ".join(f"{n}={regs[n]:04x}" for n in ("cs", "ds", "es", "ss", "fs", "gs")) +
                 f" eflags={regs['eflags']:08x} cr0={regs['cr0']:08x}")
    # Start a little before CS:IP and resynchronise so the faulting instruction is shown in context.
    start = max(0, linear - 16)
    window = disassemble(machine.mem, start, 12, protected, mark=linear)
    if not any(line.startswith("=>") for line in window):
        window = disassemble(machine.mem, linear, 8, protected, mark=linear)
    lines.append("code:")
    lines.extend(window)
    history = getattr(machine, "interrupt_history", None)
    if history:
        lines.append(f"last {len(history)} interrupts (oldest first):")
        lines.extend(interrupt_history_lines(history))
    postcode = getattr(machine, "devices", {}).get("postcode")
    if postcode is not None and postcode.codes:
        lines.append("POST codes (port 80h): " + " ".join(f"{code:02x}" for code in postcode.codes))
    for section in getattr(machine, "report_sections", ()):
        try:
            lines.extend(section())
        except Exception as exc:    # a report must never hide the stop it explains
            lines.append(f"(report section failed: {type(exc).__name__}: {exc})")
    return "\n".join(lines)


def interrupt_history_lines(history):
    """One line per entry of Machine.interrupt_history: number, vector, kind, registers,
    and the CS:IP the interrupt came from (after an `int n`, on a faulting instruction)."""
    lines = []
    for number, vector, kind, state in history:
        ax, bx, cx, dx, si, di, ds, es, cs, ip = (
            state[i] & 0xFFFF for i in (I_EAX, I_EBX, I_ECX, I_EDX, I_ESI, I_EDI, I_DS, I_ES, I_CS, I_EIP))
        lines.append(f"  #{number:<7d} {kind:<9} {vector:02x} ax={ax:04x} bx={bx:04x} cx={cx:04x} "
                     f"dx={dx:04x} si={si:04x} di={di:04x} ds={ds:04x} es={es:04x} "
                     f"from {cs:04x}:{ip:04x}")
    return lines
