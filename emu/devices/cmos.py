"""The MC146818 real-time clock and CMOS RAM (index port 0x70, data port 0x71).

Time and date registers are computed from the machine's virtual clock on every read
(plus an offset the guest sets by writing them), in BCD or binary and 24- or 12-hour
form as status register B says.  An update is never in progress, so status A's UIP
bit reads clear and nobody waits for it.  The configuration bytes (memory sizes,
equipment, drive types) are laid out as QEMU fills them for SeaBIOS.
"""
import datetime

from pvboot.emu.ioport import PortDevice

PORT_CMOS_INDEX = 0x70
PORT_CMOS_DATA = 0x71
NMI_DISABLE_BIT = 0x80

# Register indices, named as SeaBIOS's hw/rtc.h.
CMOS_RTC_SECONDS = 0x00
CMOS_RTC_SECONDS_ALARM = 0x01
CMOS_RTC_MINUTES = 0x02
CMOS_RTC_MINUTES_ALARM = 0x03
CMOS_RTC_HOURS = 0x04
CMOS_RTC_HOURS_ALARM = 0x05
CMOS_RTC_DAY_WEEK = 0x06
CMOS_RTC_DAY_MONTH = 0x07
CMOS_RTC_MONTH = 0x08
CMOS_RTC_YEAR = 0x09
CMOS_STATUS_A = 0x0A
CMOS_STATUS_B = 0x0B
CMOS_STATUS_C = 0x0C
CMOS_STATUS_D = 0x0D
CMOS_RESET_CODE = 0x0F
CMOS_FLOPPY_DRIVE_TYPE = 0x10
CMOS_DISK_DATA = 0x12
CMOS_EQUIPMENT_INFO = 0x14
CMOS_MEM_BASE_LOW = 0x15
CMOS_MEM_BASE_HIGH = 0x16
CMOS_MEM_EXTMEM_LOW_OLD = 0x17
CMOS_MEM_EXTMEM_HIGH_OLD = 0x18
CMOS_CHECKSUM_HIGH = 0x2E
CMOS_CHECKSUM_LOW = 0x2F
CMOS_MEM_EXTMEM_LOW = 0x30
CMOS_MEM_EXTMEM_HIGH = 0x31
CMOS_CENTURY = 0x32
CMOS_MEM_EXTMEM2_LOW = 0x34
CMOS_MEM_EXTMEM2_HIGH = 0x35
CMOS_CENTURY_PS2 = 0x37

RTC_A_UIP = 0x80
RTC_B_SET = 0x80
RTC_B_PIE = 0x40
RTC_B_AIE = 0x20
RTC_B_UIE = 0x10
RTC_B_BIN = 0x04
RTC_B_24HR = 0x02
RTC_B_DSE = 0x01
RTC_D_VRT = 0x80          # valid RAM and time

# The checksummed range of the configuration bytes (IBM AT layout).
CHECKSUM_FIRST = 0x10
CHECKSUM_LAST = 0x2D

_TIME_REGS = frozenset({CMOS_RTC_SECONDS, CMOS_RTC_MINUTES, CMOS_RTC_HOURS, CMOS_RTC_DAY_WEEK,
                        CMOS_RTC_DAY_MONTH, CMOS_RTC_MONTH, CMOS_RTC_YEAR, CMOS_CENTURY,
                        CMOS_CENTURY_PS2})

KiB = 1024
MiB = 1024 * KiB


def to_bcd(value):
    return ((value // 10) << 4) | (value % 10)


def from_bcd(value):
    return (value >> 4) * 10 + (value & 0x0F)


class Cmos(PortDevice):
    ports = (PORT_CMOS_INDEX, PORT_CMOS_DATA)

    def __init__(self, clock, base_kib=640, ram_size=None):
        """`ram_size`: bytes of RAM from address 0 (conventional + extended)."""
        self.clock = clock
        self.index = 0
        self.ram = bytearray(128)
        self.offset = datetime.timedelta(0)   # guest-set time minus the virtual clock
        ram = self.ram
        ram[CMOS_STATUS_A] = 0x26             # 32.768 kHz time base, 1024 Hz rate
        ram[CMOS_STATUS_B] = RTC_B_24HR
        ram[CMOS_STATUS_D] = RTC_D_VRT
        ram[CMOS_EQUIPMENT_INFO] = 0x02       # maths coprocessor present, VGA, no floppies
        ram[CMOS_MEM_BASE_LOW] = base_kib & 0xFF
        ram[CMOS_MEM_BASE_HIGH] = base_kib >> 8
        if ram_size is not None:
            ext_kib = min(max(ram_size - MiB, 0) // KiB, 0xFFFF)
            for low in (CMOS_MEM_EXTMEM_LOW_OLD, CMOS_MEM_EXTMEM_LOW):
                ram[low] = ext_kib & 0xFF
                ram[low + 1] = ext_kib >> 8
            above16 = min(max(ram_size - 16 * MiB, 0) // (64 * KiB), 0xFFFF)
            ram[CMOS_MEM_EXTMEM2_LOW] = above16 & 0xFF
            ram[CMOS_MEM_EXTMEM2_HIGH] = above16 >> 8
        self._update_checksum()

    # -- configuration bytes (for the firmware and the disk layer) --------------------
    def get(self, index):
        return self.read_register(index)

    def set(self, index, value):
        """Set a configuration byte as the platform would (keeps the checksum right)."""
        self.ram[index] = value & 0xFF
        if CHECKSUM_FIRST <= index <= CHECKSUM_LAST:
            self._update_checksum()

    def _update_checksum(self):
        total = sum(self.ram[CHECKSUM_FIRST:CHECKSUM_LAST + 1])
        self.ram[CMOS_CHECKSUM_HIGH] = total >> 8
        self.ram[CMOS_CHECKSUM_LOW] = total & 0xFF

    # -- time ---------------------------------------------------------------------------
    def now(self):
        return self.clock.datetime() + self.offset

    def _encode(self, value):
        return value if self.ram[CMOS_STATUS_B] & RTC_B_BIN else to_bcd(value)

    def _decode(self, value):
        return value if self.ram[CMOS_STATUS_B] & RTC_B_BIN else from_bcd(value)

    def time_field(self, index, now):
        if index == CMOS_RTC_SECONDS:
            return self._encode(now.second)
        if index == CMOS_RTC_MINUTES:
            return self._encode(now.minute)
        if index == CMOS_RTC_HOURS:
            if self.ram[CMOS_STATUS_B] & RTC_B_24HR:
                return self._encode(now.hour)
            hour12 = now.hour % 12 or 12
            return self._encode(hour12) | (0x80 if now.hour >= 12 else 0)
        if index == CMOS_RTC_DAY_WEEK:
            return self._encode(now.isoweekday() % 7 + 1)     # Sunday is 1
        if index == CMOS_RTC_DAY_MONTH:
            return self._encode(now.day)
        if index == CMOS_RTC_MONTH:
            return self._encode(now.month)
        if index == CMOS_RTC_YEAR:
            return self._encode(now.year % 100)
        return self._encode(now.year // 100)                  # century (0x32 and 0x37)

    def _set_time_field(self, index, value):
        """The guest wrote a time register: move the offset so that it reads back."""
        now = self.now()
        if index == CMOS_RTC_DAY_WEEK:
            return          # derived from the date
        if index == CMOS_RTC_HOURS and not self.ram[CMOS_STATUS_B] & RTC_B_24HR:
            pm = bool(value & 0x80)
            hour = self._decode(value & 0x7F) % 12 + (12 if pm else 0)
            fields = {"hour": hour}
        else:
            number = self._decode(value)
            fields = {
                CMOS_RTC_SECONDS: {"second": number},
                CMOS_RTC_MINUTES: {"minute": number},
                CMOS_RTC_HOURS: {"hour": number},
                CMOS_RTC_DAY_MONTH: {"day": number},
                CMOS_RTC_MONTH: {"month": number},
                CMOS_RTC_YEAR: {"year": now.year // 100 * 100 + number},
            }.get(index, {"year": number * 100 + now.year % 100})
        try:
            wanted = now.replace(**fields)
        except ValueError:
            return          # an impossible date (e.g. day 31 in a short month): ignored
        self.offset += wanted - now

    # -- registers ----------------------------------------------------------------------
    def read_register(self, index):
        index &= 0x7F
        if index in _TIME_REGS:
            return self.time_field(index, self.now())
        if index == CMOS_STATUS_C:
            value, self.ram[CMOS_STATUS_C] = self.ram[CMOS_STATUS_C], 0   # read clears
            return value
        return self.ram[index]

    def write_register(self, index, value):
        index &= 0x7F
        value &= 0xFF
        if index in _TIME_REGS:
            self._set_time_field(index, value)
        elif index == CMOS_STATUS_A:
            self.ram[index] = value & ~RTC_A_UIP
        elif index in (CMOS_STATUS_C, CMOS_STATUS_D):
            pass            # read-only
        else:
            self.set(index, value)

    def read(self, port, size):
        if port == PORT_CMOS_INDEX:
            return 0xFF     # the index register is write-only
        return self.read_register(self.index)

    def write(self, port, size, value):
        if port == PORT_CMOS_INDEX:
            # Bit 7 gates NMI, which pvboot never raises.
            self.index = value & 0x7F
        else:
            self.write_register(self.index, value)
