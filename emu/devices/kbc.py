"""The 8042 keyboard controller (data port 0x60, status/command port 0x64) with a PS/2
keyboard behind it.

Boot code talks to it for two reasons: the A20 gate (output port bit 1, commands D0h/D1h
and the DDh/DFh shortcuts) and reset (pulsing output port bit 0: command FEh).  It also
resets and probes the keyboard, so the common controller and keyboard commands answer
as hardware does.  The input buffer is always empty (the controller takes commands at
once).  Scripted keys reach the guest through the BIOS's INT 16h buffer, not through
this port.  A20 state is shared with port 0x92 (`SystemControlA.a20`).
"""
import collections

from pvboot.emu.devices.sysctl import reset_machine
from pvboot.emu.ioport import PortDevice

PORT_PS2_DATA = 0x60
PORT_PS2_STATUS = 0x64

# Status register, named as SeaBIOS's hw/ps2port.h.
I8042_STR_PARITY = 0x80
I8042_STR_TIMEOUT = 0x40
I8042_STR_AUXDATA = 0x20
I8042_STR_KEYLOCK = 0x10      # set: keyboard not inhibited by the key lock
I8042_STR_CMDDAT = 0x08       # the last write was to the command port
I8042_STR_SYSFLAG = 0x04
I8042_STR_IBF = 0x02
I8042_STR_OBF = 0x01

# Controller command byte ("CTR").
I8042_CTR_KBDINT = 0x01
I8042_CTR_AUXINT = 0x02
I8042_CTR_SYSFLAG = 0x04
I8042_CTR_KBDDIS = 0x10
I8042_CTR_AUXDIS = 0x20
I8042_CTR_XLATE = 0x40

# Output port.
OUTPORT_RESET = 0x01          # active low: 0 holds the CPU in reset
OUTPORT_A20 = 0x02
OUTPORT_ONES = 0xCC           # bits QEMU reports as set
OUTPORT_OBF_KBD = 0x10
OUTPORT_OBF_AUX = 0x20

# Controller commands.
CCMD_READ_CTR = 0x20
CCMD_WRITE_CTR = 0x60
CCMD_AUX_DISABLE = 0xA7
CCMD_AUX_ENABLE = 0xA8
CCMD_AUX_TEST = 0xA9
CCMD_SELF_TEST = 0xAA
CCMD_KBD_TEST = 0xAB
CCMD_KBD_DISABLE = 0xAD
CCMD_KBD_ENABLE = 0xAE
CCMD_READ_INPORT = 0xC0
CCMD_READ_OUTPORT = 0xD0
CCMD_WRITE_OUTPORT = 0xD1
CCMD_WRITE_KBD_OBUF = 0xD2
CCMD_WRITE_AUX_OBUF = 0xD3
CCMD_WRITE_AUX = 0xD4
CCMD_DISABLE_A20 = 0xDD
CCMD_ENABLE_A20 = 0xDF
CCMD_READ_TEST_INPUTS = 0xE0
CCMD_PULSE_FIRST = 0xF0       # F0-FF: pulse output port bits whose command bit is 0

# Keyboard commands and replies.
ATKBD_CMD_SETLEDS = 0xED
ATKBD_CMD_ECHO = 0xEE
ATKBD_CMD_SSCANSET = 0xF0
ATKBD_CMD_GETID = 0xF2
ATKBD_CMD_SETREP = 0xF3
ATKBD_CMD_RESET_BAT = 0xFF
ATKBD_RET_ACK = 0xFA
ATKBD_RET_BAT_OK = 0xAA
ATKBD_RET_ECHO = 0xEE
ATKBD_ID = (0xAB, 0x41)       # MF2 keyboard, as seen through translation
SELF_TEST_OK = 0x55
INTERFACE_TEST_OK = 0x00


class KeyboardController(PortDevice):
    ports = (PORT_PS2_DATA, PORT_PS2_STATUS)

    def __init__(self, machine, a20_gate):
        self.machine = machine
        self.a20_gate = a20_gate                  # SystemControlA: owner of the A20 state
        # As SeaBIOS leaves it after POST: keyboard on with IRQ1 and translation, no mouse.
        self.ctr = I8042_CTR_KBDINT | I8042_CTR_SYSFLAG | I8042_CTR_AUXDIS | I8042_CTR_XLATE
        self.queue = collections.deque()          # (byte, from_aux)
        self.last = 0
        self._pending = None                      # controller command awaiting its data byte
        self._kbd_pending = None                  # keyboard command awaiting its parameter
        self._last_was_command = False
        self.scancode_set = 2

    # -- state ------------------------------------------------------------------------
    def output_port(self):
        obf = 0
        if self.queue:
            obf = OUTPORT_OBF_AUX if self.queue[0][1] else OUTPORT_OBF_KBD
        return OUTPORT_ONES | OUTPORT_RESET | (OUTPORT_A20 if self.a20_gate.a20 else 0) | obf

    def _write_output_port(self, value):
        self.a20_gate.a20 = bool(value & OUTPORT_A20)
        if not value & OUTPORT_RESET:
            reset_machine(self.machine, "keyboard controller")

    def _reply(self, byte, aux=False):
        self.queue.append((byte & 0xFF, aux))

    def status(self):
        value = I8042_STR_KEYLOCK
        if self.ctr & I8042_CTR_SYSFLAG:
            value |= I8042_STR_SYSFLAG
        if self._last_was_command:
            value |= I8042_STR_CMDDAT
        if self.queue:
            value |= I8042_STR_OBF
            if self.queue[0][1]:
                value |= I8042_STR_AUXDATA
        return value

    # -- ports ------------------------------------------------------------------------
    def read(self, port, size):
        if port == PORT_PS2_STATUS:
            return self.status()
        if self.queue:
            self.last = self.queue.popleft()[0]
        # With nothing new the 8042 hands out the last byte again.
        return self.last

    def write(self, port, size, value):
        value &= 0xFF
        if port == PORT_PS2_STATUS:
            self._last_was_command = True
            self._command(value)
        else:
            self._last_was_command = False
            self._data(value)

    def _command(self, cmd):
        self._pending = None
        if cmd == CCMD_READ_CTR:
            self._reply(self.ctr)
        elif cmd in (CCMD_WRITE_CTR, CCMD_WRITE_OUTPORT, CCMD_WRITE_KBD_OBUF,
                     CCMD_WRITE_AUX_OBUF, CCMD_WRITE_AUX):
            self._pending = cmd
        elif cmd == CCMD_AUX_DISABLE:
            self.ctr |= I8042_CTR_AUXDIS
        elif cmd == CCMD_AUX_ENABLE:
            self.ctr &= ~I8042_CTR_AUXDIS
        elif cmd == CCMD_AUX_TEST or cmd == CCMD_KBD_TEST:
            self._reply(INTERFACE_TEST_OK)
        elif cmd == CCMD_SELF_TEST:
            self.ctr |= I8042_CTR_SYSFLAG
            self._reply(SELF_TEST_OK)
        elif cmd == CCMD_KBD_DISABLE:
            self.ctr |= I8042_CTR_KBDDIS
        elif cmd == CCMD_KBD_ENABLE:
            self.ctr &= ~I8042_CTR_KBDDIS
        elif cmd == CCMD_READ_INPORT:
            self._reply(0x80)                     # keyboard not inhibited
        elif cmd == CCMD_READ_OUTPORT:
            self._reply(self.output_port())
        elif cmd == CCMD_DISABLE_A20:
            self.a20_gate.a20 = False
        elif cmd == CCMD_ENABLE_A20:
            self.a20_gate.a20 = True
        elif cmd == CCMD_READ_TEST_INPUTS:
            self._reply(0x00)
        elif cmd >= CCMD_PULSE_FIRST:
            if not cmd & OUTPORT_RESET:
                reset_machine(self.machine, "keyboard controller")
        # Anything else is ignored, as by an 8042 that does not know it.

    def _data(self, value):
        pending, self._pending = self._pending, None
        if pending == CCMD_WRITE_CTR:
            self.ctr = value
        elif pending == CCMD_WRITE_OUTPORT:
            self._write_output_port(value)
        elif pending == CCMD_WRITE_KBD_OBUF:
            self._reply(value)
        elif pending == CCMD_WRITE_AUX_OBUF:
            self._reply(value, aux=True)
        elif pending == CCMD_WRITE_AUX:
            pass                                  # no mouse: the byte goes nowhere
        else:
            self._keyboard(value)

    def _keyboard(self, value):
        """A byte for the keyboard itself."""
        param_for, self._kbd_pending = self._kbd_pending, None
        if param_for is not None:
            self._reply(ATKBD_RET_ACK)
            if param_for == ATKBD_CMD_SSCANSET:
                if value == 0:
                    # Through translation the host sees set 2 reported as 0x41.
                    self._reply({1: 0x43, 2: 0x41, 3: 0x3F}[self.scancode_set])
                elif value in (1, 2, 3):
                    self.scancode_set = value
            return
        if value in (ATKBD_CMD_SETLEDS, ATKBD_CMD_SETREP, ATKBD_CMD_SSCANSET):
            self._kbd_pending = value
            self._reply(ATKBD_RET_ACK)
        elif value == ATKBD_CMD_ECHO:
            self._reply(ATKBD_RET_ECHO)
        elif value == ATKBD_CMD_GETID:
            self._reply(ATKBD_RET_ACK)
            for byte in ATKBD_ID:
                self._reply(byte)
        elif value == ATKBD_CMD_RESET_BAT:
            self.queue.clear()
            self._reply(ATKBD_RET_ACK)
            self._reply(ATKBD_RET_BAT_OK)
        else:
            # F4 enable, F5 disable, F6 defaults, F7-FD typematic modes, FE resend...
            self._reply(ATKBD_RET_ACK)
