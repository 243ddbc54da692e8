"""The keyboard BIOS (INT 16h), after SeaBIOS's src/kbd.c, fed from a scripted key string
through the BDA's ring buffer, as a PC keeps keys.  When a scripted key is handed over,
how an empty poll lets time pass, and the script syntax: docs/bios-services.md.
"""
import collections

from pvboot.firmware import bda
from pvboot.firmware.clock import tick_on_return

# kbd_flag0 is a u16 at 0x417; kbd_flag1 is the byte at 0x496 (bda.py: KBD_FLAG2).
KBD_FLAG1 = bda.KBD_FLAG2
KF1_RCTRL = 1 << 2
KF1_RALT = 1 << 3
KF1_101KBD = 1 << 4

KBD_BUF_SIZE = 32                     # bytes: 16 key words, one always kept free
# Guest seconds of polling an empty keyboard, with the script used up, after which the
# guest is taken to wait for a key for good (a menu without timeout).  Each empty poll
# is one tick, so this is ~11000 polls: longer than any real menu timeout, and cheap.
WAITING_POLL_LIMIT = 600.0

# -- what each key puts in the buffer (scan code << 8 | ASCII) -------------------------
# The main block of a US 101-key keyboard, by scan code: unshifted, shifted.
_ROWS = (
    (0x02, "1234567890-=", "!@#$%^&*()_+"),
    (0x10, "qwertyuiop[]", "QWERTYUIOP{}"),
    (0x1E, "asdfghjkl;'`", "ASDFGHJKL:\"~"),
    (0x2B, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
)
# Ctrl combinations that produce an ASCII control code (beyond Ctrl+letter).
_CTRL_EXTRA = {0x1C: 0x2B, 0x1D: 0x1B, 0x1E: 0x07, 0x1F: 0x0C}

KEY_ENTER = 0x1C0D
KEY_ESC = 0x011B
KEY_TAB = 0x0F09
KEY_BACKSPACE = 0x0E08
KEY_SPACE = 0x3920
# The grey cursor block sends an E0 prefix; the BIOS stores those keys with ASCII E0h
# (AH=10h/11h show it, AH=00h/01h turn it into 00h), as SeaBIOS's __process_key does.
_GREY = {"home": 0x47, "up": 0x48, "pgup": 0x49, "left": 0x4B, "right": 0x4D, "end": 0x4F,
         "down": 0x50, "pgdn": 0x51, "ins": 0x52, "del": 0x53}
NAMED_KEYS = {"enter": KEY_ENTER, "esc": KEY_ESC, "tab": KEY_TAB,
              "backspace": KEY_BACKSPACE, "space": KEY_SPACE}
NAMED_KEYS.update({name: (scan << 8) | 0xE0 for name, scan in _GREY.items()})
NAMED_KEYS.update({f"f{n}": (0x3A + n) << 8 for n in range(1, 11)})
NAMED_KEYS.update({"f11": 0x8500, "f12": 0x8600})


def _ascii_keycodes():
    codes = {}
    for scan, normal, shifted in _ROWS:
        for i, (lo, hi) in enumerate(zip(normal, shifted)):
            codes[lo] = ((scan + i) << 8) | ord(lo)
            codes[hi] = ((scan + i) << 8) | ord(hi)
    codes[" "] = KEY_SPACE
    codes["\n"] = codes["\r"] = KEY_ENTER
    codes["\t"] = KEY_TAB
    codes["\b"] = KEY_BACKSPACE
    codes["\x1b"] = KEY_ESC
    codes["\x7f"] = 0x0E7F                 # Ctrl+Backspace
    for letter in "abcdefghijklmnopqrstuvwxyz":
        control = chr(ord(letter) - 0x60)
        codes.setdefault(control, codes[letter] & 0xFF00 | ord(control))
    for code, scan in _CTRL_EXTRA.items():
        codes.setdefault(chr(code), (scan << 8) | code)
    return codes


ASCII_KEYCODES = _ascii_keycodes()


def parse_keys(text):
    """The keycodes a key script types, in order; ValueError for what no key produces."""
    codes = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "{":
            if text.startswith("{{", i):
                codes.append(ASCII_KEYCODES["{"])
                i += 2
                continue
            end = text.find("}", i)
            if end < 0:
                raise ValueError(f"key script: '{{' at position {i} is not closed "
                                 "(write '{{' for a literal brace)")
            name = text[i + 1:end].strip().lower()
            if name not in NAMED_KEYS:
                known = " ".join("{" + k + "}" for k in NAMED_KEYS)
                raise ValueError(f"key script: unknown key {{{name}}}; known keys: {known}")
            codes.append(NAMED_KEYS[name])
            i = end + 1
            continue
        code = ASCII_KEYCODES.get(ch)
        if code is None:
            raise ValueError(f"key script: no key types {ch!r} (position {i})")
        codes.append(code)
        i += 1
    return codes


class Keyboard:
    """The scripted keys still to be typed, and the BIOS keyboard buffer they go into."""

    def __init__(self, keys=""):
        self.script = collections.deque(parse_keys(keys or ""))
        self.typed = 0                 # scripted keys handed to the guest
        self._seen_empty = False       # the guest polled an empty buffer since the last key
        self._empty_since = None       # guest time of the first empty poll in a row
        self.mem = None

    def install(self, bios):
        """POST (SeaBIOS kbd_init): empty buffer, 101-key keyboard, no shift states."""
        self.mem = mem = bios.mem
        start = bda.KBD_BUF - bda.BDA
        mem.write_u16(bda.KBD_FLAG0, 0)
        mem.write_u8(KBD_FLAG1, KF1_101KBD)
        mem.write_u8(bda.KBD_LED, 0)
        mem.write_u16(bda.KBD_BUF_HEAD, start)
        mem.write_u16(bda.KBD_BUF_TAIL, start)
        mem.write_u16(bda.KBD_BUF_START_OFFSET, start)
        mem.write_u16(bda.KBD_BUF_END_OFFSET, start + KBD_BUF_SIZE)

    # -- the BDA ring buffer ----------------------------------------------------------
    def enqueue_key(self, keycode):
        """Add a key at the tail; False if the buffer is full (SeaBIOS enqueue_key)."""
        mem = self.mem
        start = mem.read_u16(bda.KBD_BUF_START_OFFSET)
        end = mem.read_u16(bda.KBD_BUF_END_OFFSET)
        head = mem.read_u16(bda.KBD_BUF_HEAD)
        tail = mem.read_u16(bda.KBD_BUF_TAIL)
        new_tail = tail + 2
        if new_tail >= end:
            new_tail = start
        if new_tail == head:
            return False
        mem.write_u16(bda.BDA + tail, keycode)
        mem.write_u16(bda.KBD_BUF_TAIL, new_tail)
        return True

    def buffer_empty(self):
        buf = self.mem.buf
        return buf[bda.KBD_BUF_HEAD:bda.KBD_BUF_HEAD + 2] == buf[bda.KBD_BUF_TAIL:bda.KBD_BUF_TAIL + 2]

    def feed(self):
        """Move the next scripted key into the buffer; False if the script is used up."""
        if not self.script:
            return False
        if not self.enqueue_key(self.script[0]):
            return False
        self.script.popleft()
        self.typed += 1
        self._seen_empty = False
        self._empty_since = None
        return True

    def peek(self):
        mem = self.mem
        return mem.read_u16(bda.BDA + mem.read_u16(bda.KBD_BUF_HEAD))

    def pop(self):
        mem = self.mem
        head = mem.read_u16(bda.KBD_BUF_HEAD)
        keycode = mem.read_u16(bda.BDA + head)
        head += 2
        if head >= mem.read_u16(bda.KBD_BUF_END_OFFSET):
            head = mem.read_u16(bda.KBD_BUF_START_OFFSET)
        mem.write_u16(bda.KBD_BUF_HEAD, head)
        return keycode

    def starved(self, bios, regs):
        """An empty poll: let guest time pass to the next tick (delivered to the guest
        as the call returns); True once the guest has polled for WAITING_POLL_LIMIT
        seconds with nothing left to type (then the run is stopped)."""
        clock = bios.clock
        clock.idle()
        tick_on_return(bios, regs)
        self._seen_empty = True
        if self.script:
            return False
        now = clock.now()
        if self._empty_since is None:
            self._empty_since = now
            return False
        if now - self._empty_since > WAITING_POLL_LIMIT:
            bios.stop("waiting-for-key", f"the guest polled INT 16h for {WAITING_POLL_LIMIT:g} s "
                      "of guest time and the key script is used up")
            return True
        return False


def translate(keycode, extended):
    """What AH=00h/01h (not extended) or AH=10h/11h (extended) report for a stored key."""
    ascii_ = keycode & 0xFF
    if not extended:
        if ascii_ == 0xE0 and keycode & 0xFF00:
            keycode &= 0xFF00
        elif keycode == 0xE00D or keycode == 0xE00A:
            keycode = 0x1C00 | ascii_          # keypad Enter
        elif keycode == 0xE02F:
            keycode = 0x352F                   # keypad '/'
    if ascii_ == 0xF0 and keycode & 0xFF00:
        keycode &= 0xFF00
    return keycode


def dequeue_key(bios, regs, blocking, extended):
    kb = bios.keyboard
    if kb.buffer_empty():
        if blocking:
            bios.clock.idle()
            tick_on_return(bios, regs)
            if not kb.feed():
                bios.stop("waiting-for-key", "INT 16h read with no key queued and the key "
                          "script used up")
                return
        elif not (kb._seen_empty and kb.feed()):
            kb.starved(bios, regs)
            regs.zf = True
            return
    if blocking:
        regs.ax = translate(kb.pop(), extended)
    else:
        regs.ax = translate(kb.peek(), extended)
        regs.zf = False


# -- INT 16h functions ----------------------------------------------------------------
def handle_1600(bios, regs):
    dequeue_key(bios, regs, True, False)


def handle_1601(bios, regs):
    dequeue_key(bios, regs, False, False)


def handle_1602(bios, regs):
    regs.al = bios.mem.buf[bda.KBD_FLAG0]


def handle_1603(bios, regs):
    pass                       # typematic rate: nothing repeats here


def handle_1605(bios, regs):
    regs.al = 0 if bios.keyboard.enqueue_key(regs.cx) else 1


def handle_1609(bios, regs):
    regs.al = 0x30             # AH=0Ah and AH=10h-12h supported


def handle_160a(bios, regs):
    regs.bx = 0x41AB           # MF2 keyboard (ID bytes AB 41)


def handle_1610(bios, regs):
    dequeue_key(bios, regs, True, True)


def handle_1611(bios, regs):
    dequeue_key(bios, regs, False, True)


def handle_1612(bios, regs):
    mem = bios.mem
    flags0 = mem.read_u16(bda.KBD_FLAG0)
    flags1 = mem.buf[KBD_FLAG1]
    right = KF1_RCTRL | KF1_RALT
    regs.ax = (flags0 & ~(right << 8)) | ((flags1 & right) << 8)


def handle_166f(bios, regs):
    if regs.al == 0x08:
        regs.ah = 2            # not a HP Vectra keyboard


def handle_1692(bios, regs):
    regs.ah = 0x80             # AH=10h-12h supported (DOS KEYB's check)


def handle_16XX(bios, regs):
    pass


_FUNCTIONS = {
    0x00: handle_1600, 0x01: handle_1601, 0x02: handle_1602, 0x03: handle_1603,
    0x05: handle_1605, 0x09: handle_1609, 0x0A: handle_160a, 0x10: handle_1610,
    0x11: handle_1611, 0x12: handle_1612, 0x6F: handle_166f, 0x92: handle_1692,
}


def handle_16(bios, regs):
    """INT 16h entry."""
    _FUNCTIONS.get(regs.ah, handle_16XX)(bios, regs)
