"""Serial and printer services (INT 14h, INT 17h), after SeaBIOS's src/serial.c.

INT 14h drives the UART through its ports, as SeaBIOS does, so a character sent with
AH=01h is console output like one the guest writes to 3F8h itself, and AH=02h takes
what is queued on the UART's receive side.  The machine has no parallel port: INT 17h
finds no LPT address in the BDA and fails, as SeaBIOS does for an absent printer.
"""
from pvboot.emu.clock import TICK_HZ
from pvboot.firmware import bda

SEROFF_DATA = 0
SEROFF_DLL = 0
SEROFF_DLH = 1
SEROFF_LCR = 3
SEROFF_LSR = 5
SEROFF_MSR = 6
LSR_DR = 0x01
LSR_THRE_TEMT = 0x60
STATUS_TIMEOUT = 0x80

COM_TIMEOUT = 0x47C                 # BDA com_timeout[4]
LPT_TIMEOUT = 0x478                 # BDA lpt_timeout[4]
SERIAL_TIMEOUT_TICKS = 0x0A         # SeaBIOS's serial_setup default
LPT_TIMEOUT_TICKS = 0x14

# INT 17h status bits.
LPT_TIMEOUT_BIT = 0x01


def serial_setup(bios):
    """POST part (SeaBIOS serial_setup / lpt_setup): timeouts for the ports the BDA lists."""
    mem = bios.mem
    for i in range(4):
        if mem.read_u16(bda.PORT_COM + 2 * i):
            mem.write_u8(COM_TIMEOUT + i, SERIAL_TIMEOUT_TICKS)
    for i in range(3):
        if mem.read_u16(bda.PORT_LPT + 2 * i):
            mem.write_u8(LPT_TIMEOUT + i, LPT_TIMEOUT_TICKS)


def _com_address(bios, regs):
    """The port of COM(DX+1), or None after setting CF (SeaBIOS getComAddr)."""
    dx = regs.dx
    if dx >= 4:
        regs.cf = True
        return None
    addr = bios.mem.read_u16(bda.PORT_COM + 2 * dx)
    if not addr:
        regs.cf = True
        return None
    return addr


# -- INT 14h ----------------------------------------------------------------------------
def handle_1400(bios, regs):
    """Initialise: AL bits 7-5 baud rate, 4-0 line control."""
    addr = _com_address(bios, regs)
    if addr is None:
        return
    ports = bios.machine.ports
    al = regs.al
    ports.write(addr + SEROFF_LCR, 1, ports.read(addr + SEROFF_LCR, 1) | 0x80)
    divisor = 0x417 if not al & 0xE0 else 0x600 >> ((al & 0xE0) >> 5)    # 110 baud .. 9600
    ports.write(addr + SEROFF_DLL, 1, divisor & 0xFF)
    ports.write(addr + SEROFF_DLH, 1, divisor >> 8)
    ports.write(addr + SEROFF_LCR, 1, al & 0x1F)
    regs.ax = (ports.read(addr + SEROFF_LSR, 1) << 8) | ports.read(addr + SEROFF_MSR, 1)
    regs.cf = False


def handle_1401(bios, regs):
    """Send AL."""
    addr = _com_address(bios, regs)
    if addr is None:
        return
    lsr = _lsr_or_timeout(bios, regs, addr, LSR_THRE_TEMT)
    if lsr is not None:
        bios.machine.ports.write(addr + SEROFF_DATA, 1, regs.al)
        regs.ah = lsr
    regs.cf = False


def handle_1402(bios, regs):
    """Receive into AL; AH bit 7 set if nothing arrived within the port's timeout."""
    addr = _com_address(bios, regs)
    if addr is None:
        return
    lsr = _lsr_or_timeout(bios, regs, addr, LSR_DR)
    if lsr is not None:
        regs.ax = (lsr << 8) | bios.machine.ports.read(addr + SEROFF_DATA, 1)
    regs.cf = False


def _lsr_or_timeout(bios, regs, addr, ready):
    """The LSR when all of its `ready` bits are set; otherwise None after the port's
    timeout, with AH = LSR | STATUS_TIMEOUT.  Nothing can change while the guest waits,
    so the timeout is spent in virtual time."""
    ports = bios.machine.ports
    lsr = ports.read(addr + SEROFF_LSR, 1)
    if lsr & ready == ready:
        return lsr
    _wait_timeout(bios, regs.dx)
    regs.ah = ports.read(addr + SEROFF_LSR, 1) | STATUS_TIMEOUT
    return None


def handle_1403(bios, regs):
    addr = _com_address(bios, regs)
    if addr is None:
        return
    ports = bios.machine.ports
    regs.ax = (ports.read(addr + SEROFF_LSR, 1) << 8) | ports.read(addr + SEROFF_MSR, 1)
    regs.cf = False


def _wait_timeout(bios, index):
    ticks = bios.mem.buf[COM_TIMEOUT + index]
    bios.clock.wait(ticks / TICK_HZ)


def handle_14XX(bios, regs):
    regs.cf = True


_FUNCTIONS_14 = {0x00: handle_1400, 0x01: handle_1401, 0x02: handle_1402, 0x03: handle_1403}


def handle_14(bios, regs):
    """INT 14h entry."""
    _FUNCTIONS_14.get(regs.ah, handle_14XX)(bios, regs)


# -- INT 17h ----------------------------------------------------------------------------
def handle_17(bios, regs):
    """INT 17h entry.  There is no parallel port, so every function fails: CF set (as
    SeaBIOS's getLptAddr does for a port the BDA does not list) and AH = time-out with
    "selected" clear, which is what callers that only look at AH take as no printer."""
    regs.ah = LPT_TIMEOUT_BIT
    regs.cf = True
