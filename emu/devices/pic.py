"""The two cascaded 8259A interrupt controllers (master 0x20/0x21, slave 0xA0/0xA1).

Guests program them (ICW1-4), mask lines (OCW1), acknowledge interrupts (OCW2 EOI) and
read IRR/ISR back (OCW3); the BIOS's INT 08h stub sends an EOI after every tick.
pvboot has no asynchronous interrupts, so nothing raises lines on its own; the
`raise_irq` / `acknowledge` interface lets the machine route an interrupt through the
controller (honouring masks and priorities) when it delivers one.
"""
from pvboot.emu.ioport import PortDevice

PORT_PIC1_CMD = 0x20
PORT_PIC1_DATA = 0x21
PORT_PIC2_CMD = 0xA0
PORT_PIC2_DATA = 0xA1

ICW1_ICW4 = 0x01          # ICW4 follows
ICW1_SINGLE = 0x02        # no slave, so no ICW3
ICW1_INIT = 0x10
ICW4_AEOI = 0x02
OCW3_SELECT = 0x08        # a command-port write with bit 3 set (and bit 4 clear) is OCW3
OCW3_READ_REG = 0x02
OCW3_READ_ISR = 0x01
OCW3_POLL = 0x04
PIC1_IRQ2 = 1 << 2        # the slave is wired to the master's IRQ2


class I8259:
    """One controller chip."""

    def __init__(self, vector_base):
        self.vector_base = vector_base
        self.imr = 0xFF
        self.irr = 0
        self.isr = 0
        self.auto_eoi = False
        self.read_isr = False
        self.poll = False
        self._init_step = 0       # 0: initialised; 2/3/4: expecting that ICW
        self._icw4 = False
        self._single = False

    def write_command(self, value):
        if value & ICW1_INIT:
            # ICW1 starts initialisation: masks, requests and in-service state reset.
            self.imr = 0
            self.irr = 0
            self.isr = 0
            self.read_isr = False
            self.auto_eoi = False
            self._icw4 = bool(value & ICW1_ICW4)
            self._single = bool(value & ICW1_SINGLE)
            self._init_step = 2
        elif value & OCW3_SELECT:
            if value & OCW3_READ_REG:
                self.read_isr = bool(value & OCW3_READ_ISR)
            self.poll = bool(value & OCW3_POLL)
        else:
            self._ocw2(value)

    def _ocw2(self, value):
        command = value >> 5
        if command == 0b001 or command == 0b101:            # non-specific EOI
            highest = self.highest(self.isr)
            if highest is not None:
                self.isr &= ~(1 << highest)
        elif command == 0b011 or command == 0b111:          # specific EOI
            self.isr &= ~(1 << (value & 7))
        # Rotation and priority changes are accepted; priority stays fixed (IRQ0 highest).

    def write_data(self, value):
        step = self._init_step
        if step == 0:
            self.imr = value
        elif step == 2:
            self.vector_base = value & 0xF8
            self._init_step = 4 if self._single else 3
            if self._single and not self._icw4:
                self._init_step = 0
        elif step == 3:                                      # ICW3: cascade wiring
            self._init_step = 4 if self._icw4 else 0
        else:                                                # ICW4
            self.auto_eoi = bool(value & ICW4_AEOI)
            self._init_step = 0

    def read_command(self):
        if self.poll:
            self.poll = False
            irq = self.highest(self.irr & ~self.imr)
            if irq is None:
                return 0
            self._ack(irq)
            return 0x80 | irq
        return self.isr if self.read_isr else self.irr

    def read_data(self):
        return self.imr

    @staticmethod
    def highest(bits):
        """The highest-priority line set in `bits` (IRQ0 first), or None."""
        if not bits:
            return None
        return (bits & -bits).bit_length() - 1

    def pending(self):
        """The line that would interrupt the CPU now, or None."""
        irq = self.highest(self.irr & ~self.imr)
        if irq is None:
            return None
        in_service = self.highest(self.isr)
        if in_service is not None and in_service <= irq:
            return None
        return irq

    def _ack(self, irq):
        self.irr &= ~(1 << irq)
        if not self.auto_eoi:
            self.isr |= 1 << irq


class Pic(PortDevice):
    """Master and slave, cascaded through the master's IRQ2."""

    ports = (PORT_PIC1_CMD, PORT_PIC1_DATA, PORT_PIC2_CMD, PORT_PIC2_DATA)

    def __init__(self):
        self.master = I8259(0x08)
        self.slave = I8259(0x70)

    def read(self, port, size):
        chip = self.master if port < PORT_PIC2_CMD else self.slave
        return chip.read_data() if port & 1 else chip.read_command()

    def write(self, port, size, value):
        chip = self.master if port < PORT_PIC2_CMD else self.slave
        value &= 0xFF
        if port & 1:
            chip.write_data(value)
        else:
            chip.write_command(value)

    # -- interrupt lines (edge triggered) ---------------------------------------------
    def raise_irq(self, irq):
        if irq >= 8:
            self.slave.irr |= 1 << (irq - 8)
        else:
            self.master.irr |= 1 << irq
        self._cascade()

    def _cascade(self):
        if self.slave.pending() is not None:
            self.master.irr |= PIC1_IRQ2

    def masked(self, irq):
        if irq >= 8:
            return bool(self.slave.imr & (1 << (irq - 8))) or bool(self.master.imr & PIC1_IRQ2)
        return bool(self.master.imr & (1 << irq))

    def acknowledge(self):
        """The CPU takes the highest pending interrupt: returns its vector, or None."""
        irq = self.master.pending()
        if irq is None:
            return None
        self.master._ack(irq)
        if irq == 2:
            slave_irq = self.slave.pending()
            if slave_irq is not None:
                self.slave._ack(slave_irq)
                return self.slave.vector_base + slave_irq
            # Spurious: the slave withdrew its request.
            return self.slave.vector_base + 7
        return self.master.vector_base + irq
