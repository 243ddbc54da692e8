"""A 16550 UART (COM1): transmitted bytes become console output; received bytes come
from scripted input.  Transmission is instantaneous, so THR/TSR always read as empty.

No interrupt line is raised, but IIR reports what would be pending (received data, a
THR-empty event after a write or after the guest enables that interrupt), because
firmware and loaders detect a UART by enabling the THR-empty interrupt and reading IIR
back (SeaBIOS's detect_serial does exactly that)."""
from pvboot.emu.ioport import PortDevice

RBR_THR, IER, IIR_FCR, LCR, MCR, LSR, MSR, SCR = range(8)
LCR_DLAB = 0x80
LSR_DR, LSR_THRE, LSR_TEMT = 0x01, 0x20, 0x40
IER_ERBFI, IER_ETBEI = 0x01, 0x02
IIR_NO_INT, IIR_THRE, IIR_RDA, IIR_FIFO = 0x01, 0x02, 0x04, 0xC0


class Uart16550(PortDevice):
    def __init__(self, base, transmit):
        self.base = base
        self.ports = tuple(range(base, base + 8))
        self._transmit = transmit
        self.rx = bytearray()
        self.ier = 0
        self.lcr = 0x03
        self.mcr = 0
        self.scr = 0
        self.divisor = 1
        self.fcr = 0
        self._thre_event = False   # THR-empty interrupt pending until IIR reports it

    def feed(self, data):
        """Queue bytes as if they arrived on the line."""
        self.rx.extend(data)

    def read(self, port, size):
        reg = port - self.base
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR:
            if dlab:
                return self.divisor & 0xFF
            return self.rx.pop(0) if self.rx else 0
        if reg == IER:
            return (self.divisor >> 8) if dlab else self.ier
        if reg == IIR_FCR:
            fifo = IIR_FIFO if self.fcr & 1 else 0
            if self.ier & IER_ERBFI and self.rx:
                return fifo | IIR_RDA
            if self.ier & IER_ETBEI and self._thre_event:
                self._thre_event = False   # reading IIR clears a THR-empty interrupt
                return fifo | IIR_THRE
            return fifo | IIR_NO_INT
        if reg == LCR:
            return self.lcr
        if reg == MCR:
            return self.mcr
        if reg == LSR:
            return LSR_THRE | LSR_TEMT | (LSR_DR if self.rx else 0)
        if reg == MSR:
            # Loopback reflects MCR; otherwise report CTS, DSR and DCD as a cable would.
            if self.mcr & 0x10:
                m = self.mcr
                return ((m & 0x02) << 3) | ((m & 0x01) << 5) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
            return 0xB0
        return self.scr

    def write(self, port, size, value):
        reg = port - self.base
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            elif self.mcr & 0x10:      # loopback: what is sent comes back
                self.rx.append(value)
                self._thre_event = True
            else:
                self._transmit(value)
                self._thre_event = True
        elif reg == IER:
            if dlab:
                self.divisor = (self.divisor & 0xFF) | (value << 8)
            else:
                if value & IER_ETBEI and not self.ier & IER_ETBEI:
                    self._thre_event = True    # THR is always empty: enabling fires at once
                self.ier = value & 0x0F
        elif reg == IIR_FCR:
            self.fcr = value
            if value & 0x02:
                self.rx.clear()
        elif reg == LCR:
            self.lcr = value
        elif reg == MCR:
            self.mcr = value & 0x1F
        elif reg == SCR:
            self.scr = value
