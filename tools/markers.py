"""Console markers of a run: ordered --expect markers, --fail patterns, and the stages.

The console is what `--expect` has always watched: the bytes the guest sends out of
COM1 while it runs, and the final text screen when the run is over (a loader that
prints through INT 10h only is judged on its last screen).  Markers must appear in the
order given, each after the end of the previous one's match.  A --fail pattern ends the
run at once with exit code 1.  Every match records the wall seconds and the guest's
virtual seconds (emu.clock: what its BIOS tick count says) since power-on; the stages
are power-on, the first instruction of the boot sector at 0:7C00, each marker, end.
No guest instructions are counted: that would need a hook on every instruction.
"""
import dataclasses
import re
import time

BOOT_SECTOR_ADDRESS = 0x7C00
# Search on line ends and every SEARCH_STRIDE bytes: a full search per byte is quadratic.
SEARCH_STRIDE = 64


class MarkerError(ValueError):
    """A pattern that is not a regular expression (one line, for the user)."""


def _patterns(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _compile(option, patterns):
    compiled = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise MarkerError(f"{option} {pattern!r}: not a string")
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise MarkerError(f"{option} {pattern!r}: bad regular expression: {exc}") from None
    return compiled


@dataclasses.dataclass
class Hit:
    """One match: which pattern, what it matched, where, and when since power-on."""
    kind: str            # "expect" or "fail"
    pattern: str
    text: str
    source: str          # "console" (while running) or "screen" (the final screen)
    wall_seconds: float
    virtual_seconds: float

    def to_json(self):
        return {"kind": self.kind, "pattern": self.pattern, "text": self.text,
                "source": self.source, "wall_seconds": round(self.wall_seconds, 6),
                "virtual_seconds": round(self.virtual_seconds, 6)}


class Markers:
    """Watches a Machine's console for ordered `expect` markers and `fail` patterns.

    attach() before the run; power_on() just before it starts; finish() after it, with
    the final screen.  `on_all_met` callbacks run when the last marker matches during
    the run (the runner stops the machine there); a fail match stops the machine itself
    with reason "fail-pattern"."""

    def __init__(self, expect=(), fail=()):
        self.expect = _patterns(expect)
        self.fail = _patterns(fail)
        self._expect_re = _compile("--expect", self.expect)
        self._fail_re = _compile("--fail", self.fail)
        self.hits = []               # Hits, in the order they happened
        self.failed = None           # the fail Hit that ended the run
        self.on_all_met = []
        self._next = 0               # index of the next marker to look for
        self._position = 0           # console offset after the last marker's match
        self._searched = 0
        self._machine = None
        self._power_on = None
        self._boot_sector = None     # (wall, virtual) of the first instruction at 0:7C00
        self._end = None
        self._watch = None

    @property
    def active(self):
        return bool(self._expect_re or self._fail_re)

    @property
    def all_met(self):
        return self._next == len(self._expect_re)

    def attach(self, machine):
        self._machine = machine
        if self.active:
            machine.console_listeners.append(self._on_byte)
        self._watch = machine.watch_code(BOOT_SECTOR_ADDRESS, self._on_boot_sector)

    def power_on(self):
        self._power_on = time.monotonic()

    def _now(self):
        return (time.monotonic() - self._power_on if self._power_on is not None else 0.0,
                self._machine.clock.now())

    def _on_boot_sector(self):
        if self._boot_sector is None:
            self._boot_sector = self._now()
            self._machine.unwatch(self._watch)

    def _on_byte(self, byte):
        console = self._machine.console
        if byte != 0x0A and len(console) - self._searched < SEARCH_STRIDE:
            return
        self._searched = len(console)
        self._search(console.decode("latin-1"), "console", live=True)

    def _search(self, text, source, live=False):
        """Look for fail patterns anywhere in `text` and for the next markers in order."""
        if self.failed is None:
            for pattern, regex in zip(self.fail, self._fail_re):
                match = regex.search(text)
                if match:
                    self.failed = self._hit("fail", pattern, match, source, live)
                    if live:
                        self._machine.stop("fail-pattern", f"console matched --fail {pattern!r}")
                    return
        start = self._position if source == "console" else self._screen_start(text)
        while self._next < len(self._expect_re):
            match = self._expect_re[self._next].search(text, start)
            if not match:
                return
            self._hit("expect", self.expect[self._next], match, source, live)
            start = match.end()
            if source == "console":
                self._position = start
            self._next += 1
            if self.all_met and live:
                for callback in self.on_all_met:
                    callback()

    def _screen_start(self, text):
        """Where the screen's search for the next marker starts: after the screen's own
        matches of the markers met on the console, in order (where the screen still
        shows them), so a marker on the screen only counts after those before it."""
        start = 0
        for regex in self._expect_re[:self._next]:
            match = regex.search(text, start)
            if match:
                start = match.end()
        return start

    def _hit(self, kind, pattern, match, source, live):
        wall, virtual = self._now() if live else self._end
        hit = Hit(kind, pattern, match.group(), source, wall, virtual)
        self.hits.append(hit)
        return hit

    def finish(self, console, screen):
        """After the run: the last console bytes, then the final screen for what is
        still missing (the screen is one picture, so its markers get the end's time)."""
        self._end = self._now()
        if self.active:
            self._searched = len(console)
            self._search(console, "console")
            if self.failed is None or not self.all_met:
                self._search(screen, "screen")

    def stages(self, reason):
        """power-on -> boot sector -> each marker -> end, each with its times and the
        time since the previous stage."""
        points = [("power-on", None, (0.0, 0.0))]
        if self._boot_sector is not None:
            points.append(("boot-sector", None, self._boot_sector))
        for hit in self.hits:
            points.append((hit.kind, hit.pattern, (hit.wall_seconds, hit.virtual_seconds)))
        points.append(("end", reason, self._end or self._now()))
        stages, previous = [], (0.0, 0.0)
        for name, detail, (wall, virtual) in points:
            stage = {"stage": name, "wall_seconds": round(wall, 6),
                     "virtual_seconds": round(virtual, 6),
                     "wall_delta": round(wall - previous[0], 6),
                     "virtual_delta": round(virtual - previous[1], 6)}
            if detail is not None:
                stage["detail"] = detail
            stages.append(stage)
            previous = (wall, virtual)
        return stages

    def markers_json(self):
        return [hit.to_json() for hit in self.hits]
