"""The numbers and texts a user types on pvboot's command lines, each with its range.

One place says what every numeric option accepts (docs/tools.md lists the ranges): the
argparse types here refuse NaN, infinities, out-of-range and unparsable values with one
line (argparse's exit code 2), and `check` applies the same ranges to runner.boot's
keyword arguments.
"""
import argparse
import math
import os

from pvboot.firmware import kbd

_MAX_DIGITS = 40            # far beyond every range; keeps int() away from huge strings


EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr, exit code 2 (no usage dump)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class Range:
    """A closed interval [low, high] of ints (`integer`) or finite floats, with a unit
    and the reason for its bounds."""

    def __init__(self, name, low, high, integer, unit="", low_open=False, why=""):
        self.name, self.low, self.high = name, low, high
        self.integer, self.unit, self.low_open, self.why = integer, unit, low_open, why

    def describe(self):
        unit = f" {self.unit}" if self.unit else ""
        low = f"greater than {_fmt(self.low)}" if self.low_open else f"at least {_fmt(self.low)}"
        return f"{low} and at most {_fmt(self.high)}{unit}" + (f" ({self.why})" if self.why else "")

    def parse(self, text):
        """The value of `text`, or ValueError with the reason (one line)."""
        text = str(text).strip()
        if len(text) > _MAX_DIGITS:
            raise ValueError(f"{text[:20]!r}...: {len(text)} characters is no number in range "
                             f"({self.describe()})")
        try:
            value = int(text, 0) if self.integer else float(text)
        except ValueError:
            kind = "an integer" if self.integer else "a number"
            raise ValueError(f"not {kind}: {text!r}") from None
        return self.check(value)

    def check(self, value):
        """`value` if it is in range (ints for integer ranges), else ValueError."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not a number")
        if self.integer and not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer")
        if isinstance(value, float) and math.isnan(value):
            raise ValueError("NaN is not a number")
        if value > self.high or value < self.low or (self.low_open and value == self.low):
            shown = f"{value:g}" if isinstance(value, float) else _short(value)
            raise ValueError(f"{shown} is out of range: must be {self.describe()}")
        return value

    def __call__(self, text):
        """argparse type."""
        return _argparse_type(self.parse, text)


def _fmt(value):
    return f"{value:,g}" if isinstance(value, float) else f"{value:,}"


def _short(value):
    text = str(value)
    return text if len(text) <= 24 else f"{text[:10]}...({len(text)} digits)"


DAY = 24 * 3600.0

# The whole RAM (1 MiB + MIB) stays below 3 GiB: a PC's 32-bit PCI hole starts there
# (QEMU's i440FX puts no RAM above it below 4 GiB), and the BIOS reports no RAM above
# 4 GiB; the top 256 KiB of it is the reserved Xen area.
MEMORY_MIB = Range("--memory", 1, 3071, True, "MiB",
                   why="RAM above 1 MiB; a PC's RAM below its 3 GiB PCI hole")
TIMEOUT = Range("--timeout", 0, DAY, False, "seconds", low_open=True)
BACKEND_TIMEOUT = Range("--backend-timeout", 0, 3600.0, False, "seconds", low_open=True)
MAX_INSNS = Range("--max-insns", 1, 2**63 - 1, True, "instructions",
                  why="a signed 64-bit count")
BENCH_RUNS = Range("--runs", 1, 1000, True, "runs")
BENCH_BULK_MIB = Range("--bulk-mib", 1, 1024, True, "MiB",
                       why="the bulk-read disk is a sparse file this size")
MKIMAGE_SIZE_MIB = Range("--size", 8, 2048, True, "MiB",
                         why="FAT16 needs ~4100 clusters and holds at most 2 GiB")
KERNEL_SETUP_SECTS = Range("--setup-sects", 1, 64, True, "sectors",
                           why="GRUB refuses more setup sectors")
KERNEL_PM_SIZE = Range("--size", 1024, 16 << 20, True, "bytes")
KERNEL_VARIANT = Range("--variant", 0, 255, True)
FUZZ_RUNS = Range("RUNS", 1, 10**9, True, "runs")
FUZZ_SEED = Range("--seed", 0, 2**64 - 1, True)
FUZZ_MAX_INSNS = Range("--max-insns", 1, 10**9, True, "instructions")

# runner.boot keyword -> its range.
BOOT_KEYWORDS = {"memory_mib": MEMORY_MIB, "timeout": TIMEOUT,
                 "backend_timeout": BACKEND_TIMEOUT, "max_insns": MAX_INSNS}


def check(keyword, value):
    """`value` for runner.boot's `keyword`, checked against its option's range;
    ValueError naming the option."""
    rng = BOOT_KEYWORDS[keyword]
    try:
        return rng.check(value)
    except ValueError as exc:
        raise ValueError(f"{rng.name}: {exc}") from None


def check_keys(text):
    """`text` if the BIOS keyboard can type it (firmware/kbd.py's key script), else
    ValueError; a character no key produces (non-ASCII) gets the reason."""
    try:
        kbd.parse_keys(text)
    except ValueError:
        bad = next((ch for ch in text if ord(ch) > 0x7F), None)
        if bad is not None:
            raise ValueError(f"{bad!r} (U+{ord(bad):04X}) is not a key: the BIOS keyboard (a US "
                             "PC keyboard) types printable ASCII and the {named} keys only") from None
        raise
    return text


def key_script(text):
    """argparse type for --keys."""
    return _argparse_type(check_keys, text)


def _argparse_type(parse, text):
    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def serial_bytes(text):
    """--serial-input as bytes: the argument's own bytes (UTF-8 for non-ASCII text, as a
    terminal sends it; bytes that are not UTF-8 pass through unchanged)."""
    if isinstance(text, bytes):
        return text
    return os.fsencode(text)
