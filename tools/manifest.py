"""Boot manifests (the TOML format of the pytest plugin and `pvboot batch`) and the
checks of one boot against its expectations.

Details: docs/tools.md.
"""
import dataclasses
import inspect
import os
import re
import sys

from pvboot.tools import options as option_ranges

if sys.version_info >= (3, 11):
    import tomllib
else:                               # pragma: no cover - Python 3.10
    import tomli as tomllib

CHECK_KEYS = ("expect", "screen", "reason", "exit")
META_KEYS = ("name", "image", "skip", "xfail")
PATH_KEYS = ("image", "floppy", "expect_kernel")
# runner.boot keywords a manifest may not set (the caller owns them; --disk specs, op
# digests and the debugger are command-line features: a manifest gives `image` and `driver`).
_NOT_FROM_MANIFEST = {"images", "expect", "echo", "trace", "trace_out", "persist", "disks",
                      "op_digests", "gdb", "gdb_wait", "xen_host", "capture_screen"}


def _as_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, (str, int)) else list(value)


def problems_of(result, expect=(), screen=(), reason=None, exit=None):
    """What is wrong with `result`, as lines ([] when every check holds).

    expect / screen: regexes (re.search) that must all match the console / the screen.
    reason: the stop reason required (or a list); exit: the port 0xF4 value required.
    With neither reason nor exit the run must have ended with exit code 0, leaving the
    markers aside (the markers are checked one by one here)."""
    problems = []
    result = dataclasses.replace(result, expect=None, expect_met=None)
    stop = result.stop
    reasons = _as_list(reason)
    if reasons and stop.reason not in reasons:
        problems.append(f"stopped with {stop.reason!r}, expected {' or '.join(map(repr, reasons))}")
    if exit is not None and (stop.reason != "exit" or stop.exit_value != exit):
        got = f"{stop.exit_value:#x}" if stop.reason == "exit" else f"no exit ({stop.reason})"
        problems.append(f"exit value {got}, expected {exit:#x}")
    if not reasons and exit is None and result.exit_code != 0:
        problems.append(f"exit code {result.exit_code} ({stop.reason})")
    for marker in _as_list(expect):
        if not re.search(marker, result.console):
            problems.append(f"console has no match for {marker!r}")
    for marker in _as_list(screen):
        if not re.search(marker, result.screen):
            problems.append(f"screen has no match for {marker!r}")
    return problems


def all_markers_regex(markers):
    """One regex that matches a text where every marker matches (in any order), as
    all(re.search(m, text) for m in markers) does: the runner stops the run as soon as
    the console matches it.  None if it cannot be built: markers with back references
    or global inline flags like (?i) are not combined, and such a run goes on until the
    guest stops or times out."""
    if not markers or any(re.search(r"\\[1-9]|\(\?P=|^\(\?[aiLmsux]+\)", m) for m in markers):
        return None
    pattern = r"\A" + "".join(rf"(?=[\s\S]*?(?:{m}))" for m in markers)
    try:
        re.compile(pattern)
    except re.error:
        return None
    return pattern


def run_boot(images, **options):
    """runner.boot with path-like images and text serial input accepted."""
    from pvboot.tools import runner
    if images is None:
        images = []
    elif isinstance(images, (str, os.PathLike)):
        images = [images]
    images = [os.fspath(path) for path in images]
    for key in ("floppy", "expect_kernel"):
        if options.get(key) is not None:
            options[key] = os.fspath(options[key])
    return runner.boot(images, **options)


def _boot_name(images, options):
    paths = _as_list(images) if not isinstance(images, os.PathLike) else [images]
    if options.get("floppy") is not None:
        paths = paths + [options["floppy"]]
    return " ".join(os.path.basename(os.fspath(p)) for p in paths) or "(nothing)"


class ManifestError(Exception):
    """A manifest that cannot be read: one line, shown as the collection error."""


def _boot_keywords():
    from pvboot.tools import runner
    params = inspect.signature(runner.boot).parameters
    return {name for name in params if name not in _NOT_FROM_MANIFEST}


def _check_regexes(where, key, value):
    for marker in _as_list(value):
        try:
            re.compile(marker)
        except (re.error, TypeError) as exc:
            raise ManifestError(f"{where}: {key} {marker!r}: bad regular expression: {exc}") \
                from None


def load_manifest(path):
    """[(name, entry dict)] of a manifest, defaults merged, paths made absolute."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"defaults", "boot"}
    if unknown:
        raise ManifestError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} "
                            "(use [defaults] and [[boot]])")
    defaults = data.get("defaults", {})
    boots = data.get("boot", [])
    if not isinstance(defaults, dict) or not isinstance(boots, list):
        raise ManifestError(f"{path}: [defaults] must be a table and [[boot]] an array of tables")
    allowed = set(CHECK_KEYS) | set(META_KEYS) | _boot_keywords()
    base = os.path.dirname(os.path.abspath(path))
    entries, names = [], set()
    for number, raw in enumerate(boots, 1):
        entry = {**defaults, **raw}
        where = f"{path}: boot #{number}"
        unknown = set(entry) - allowed
        if unknown:
            raise ManifestError(f"{where}: unknown key {sorted(unknown)[0]!r} "
                                f"(known: {', '.join(sorted(allowed))})")
        if "image" not in entry and "floppy" not in entry:
            raise ManifestError(f"{where}: no image (give image = \"disk.img\" or floppy = ...)")
        for key in PATH_KEYS:
            if key in entry:
                paths = [os.path.join(base, os.path.expanduser(os.path.expandvars(p)))
                         for p in _as_list(entry[key])]
                entry[key] = paths if key == "image" else paths[0]
        if "screen" in entry:
            _check_regexes(where, "screen", entry["screen"])
        if "exit" in entry and not isinstance(entry["exit"], int):
            raise ManifestError(f"{where}: exit must be an integer")
        for key in ("expect", "fail"):
            if key in entry:
                _check_regexes(where, key, entry[key])
        for keyword in set(entry) & set(option_ranges.BOOT_KEYWORDS):
            try:
                option_ranges.check(keyword, entry[keyword])
            except ValueError as exc:
                raise ManifestError(f"{where}: {keyword}: {exc}") from None
        name = entry.pop("name", None) or _boot_name(entry.get("image", []),
                                                     {"floppy": entry.get("floppy")})
        if name in names:
            raise ManifestError(f"{where}: a second entry named {name!r} (give each a name)")
        names.add(name)
        entries.append((name, entry))
    return entries


def run_entry(entry, **run_options):
    """Boot one manifest entry: (runner.Result, problems).  With neither `reason` nor
    `exit` the run stops as soon as every marker has appeared.  Raises
    runner.InputError for an entry that cannot boot (a missing image).  run_options:
    runner.boot keywords of the caller's, not the manifest's (a batch worker's
    xen_host, capture_screen)."""
    options = {k: v for k, v in entry.items() if k not in CHECK_KEYS + META_KEYS}
    options.update(run_options)
    checks = {k: entry[k] for k in CHECK_KEYS if k in entry}
    if ("reason" not in checks and "exit" not in checks) or \
            "expected" in _as_list(checks.get("reason")):
        options["expect"] = all_markers_regex(_as_list(checks.get("expect")))
    options["echo"] = None
    result = run_boot(entry.get("image"), **options)
    # The markers are reported one by one, not as the combined regex.
    result = dataclasses.replace(result, expect=None, expect_met=None)
    return result, problems_of(result, **checks)
