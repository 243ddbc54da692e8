"""pytest plugin (entry point `pvboot` in group pytest11): the `pvboot` fixture, which
boots images from a test (runner.boot's keywords), and image smoke tests collected from
`pvboot-*.toml` / `*.pvboot.toml` manifests.  Everything heavy is imported when a boot
runs.  docs/tools.md and the README describe the manifest keys.
"""
import dataclasses
import inspect
import os
import re
import sys

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:                               # pragma: no cover - Python 3.10
    import tomli as tomllib

MANIFEST_PREFIX, MANIFEST_SUFFIX = "pvboot-", ".toml"
MANIFEST_DOUBLE_SUFFIX = ".pvboot.toml"

CHECK_KEYS = ("expect", "screen", "reason", "exit")
META_KEYS = ("name", "image", "skip", "xfail")
PATH_KEYS = ("image", "floppy", "expect_kernel")
# runner.boot keywords a manifest may not set (the plugin owns them; --disk specs and op
# digests are command-line and compare features: a manifest gives `image` and `driver`).
_NOT_FROM_MANIFEST = {"images", "expect", "echo", "trace", "trace_out", "persist", "disks",
                      "op_digests"}

_results_key = pytest.StashKey[list]()


# -- checks -----------------------------------------------------------------------------
class BootFailure(Exception):
    """A boot that did not do what was expected: the failed checks and the Result."""

    def __init__(self, name, problems, result):
        super().__init__(f"{name}: " + "; ".join(problems))
        self.name = name
        self.problems = problems
        self.result = result

    def text(self):
        from pvboot.tools import report
        # The first line is what JUnit readers show as the failure's message.
        return (f"pvboot boot {self.name}: {'; '.join(self.problems)}\n" +
                report.failure_text(self.result, self.problems))


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


# -- the fixture ------------------------------------------------------------------------
class PvbootFixture:
    """The `pvboot` fixture: call it to boot; `check` to assert on a result."""

    def __init__(self, results):
        self._results = results

    def __call__(self, image=None, **options):
        options.setdefault("echo", None)
        result = run_boot(image, **options)
        self._results.append((_boot_name(image, options), result))
        return result

    def check(self, result, expect=(), screen=(), reason=None, exit=None):
        """Fail the test unless every check holds (see problems_of): the failure lists
        the checks that did not hold, the boot's whole story is its report section."""
        problems = problems_of(result, expect, screen, reason, exit)
        if problems:
            from pvboot.tools import report
            name = next((n for n, r in self._results if r is result), "image")
            pytest.fail("\n".join([f"pvboot boot {name}: {report.summary(result)}"] +
                                   [f"  - {p}" for p in problems] +
                                   [f"(the boot's report is in the section 'pvboot boot {name}')"]),
                        pytrace=False)
        return result


@pytest.fixture
def pvboot(request):
    """Boot disk images: `pvboot(image, **runner.boot options) -> runner.Result`."""
    results = []
    request.node.stash[_results_key] = results
    return PvbootFixture(results)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        from pvboot.tools import report as reports
        for name, result in item.stash.get(_results_key, ()):
            report.sections.append((f"pvboot boot {name}", reports.failure_text(result)))


# -- manifests --------------------------------------------------------------------------
class ManifestError(Exception):
    """A manifest that cannot be read: one line, shown as the collection error."""


def is_manifest(name):
    return (name.startswith(MANIFEST_PREFIX) and name.endswith(MANIFEST_SUFFIX)) or \
        name.endswith(MANIFEST_DOUBLE_SUFFIX)


def pytest_collect_file(file_path, parent):
    if is_manifest(file_path.name):
        return ManifestFile.from_parent(parent, path=file_path)
    return None


def _boot_keywords():
    from pvboot.tools import runner
    params = inspect.signature(runner.boot).parameters
    return {name for name in params if name not in _NOT_FROM_MANIFEST}


def load_manifest(path):
    """[(name, entry dict)] of a manifest, defaults merged, paths made absolute."""
    from pvboot.tools import options          # imported when a manifest is collected
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
        for key in ("expect", "screen"):
            for marker in _as_list(entry.get(key)):
                try:
                    re.compile(marker)
                except (re.error, TypeError) as exc:
                    raise ManifestError(f"{where}: {key} {marker!r}: bad regular expression: {exc}") \
                        from None
        if "exit" in entry and not isinstance(entry["exit"], int):
            raise ManifestError(f"{where}: exit must be an integer")
        for keyword in set(entry) & set(options.BOOT_KEYWORDS):
            try:
                options.check(keyword, entry[keyword])
            except ValueError as exc:
                raise ManifestError(f"{where}: {keyword}: {exc}") from None
        name = entry.pop("name", None) or _boot_name(entry.get("image", []),
                                                     {"floppy": entry.get("floppy")})
        if name in names:
            raise ManifestError(f"{where}: a second entry named {name!r} (give each a name)")
        names.add(name)
        entries.append((name, entry))
    return entries


class ManifestFile(pytest.File):
    def collect(self):
        for name, entry in load_manifest(str(self.path)):
            yield BootItem.from_parent(self, name=name, entry=entry)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, ManifestError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class BootItem(pytest.Item):
    """One [[boot]] entry of a manifest."""

    def __init__(self, *, entry, **kwargs):
        super().__init__(**kwargs)
        self.entry = dict(entry)
        if "skip" in self.entry:
            self.add_marker(pytest.mark.skip(reason=str(self.entry["skip"])))
        if "xfail" in self.entry:
            self.add_marker(pytest.mark.xfail(reason=str(self.entry["xfail"]), strict=True))

    def runtest(self):
        from pvboot.tools import runner
        options = {k: v for k, v in self.entry.items() if k not in CHECK_KEYS + META_KEYS}
        checks = {k: self.entry[k] for k in CHECK_KEYS if k in self.entry}
        if ("reason" not in checks and "exit" not in checks) or \
                "expected" in _as_list(checks.get("reason")):
            # Stop as soon as every marker has appeared.
            options["expect"] = all_markers_regex(_as_list(checks.get("expect")))
        options["echo"] = None
        try:
            result = run_boot(self.entry.get("image"), **options)
        except runner.InputError as exc:
            raise ManifestError(f"{self.name}: {exc}") from None
        # The markers are reported one by one, not as the combined regex.
        result = dataclasses.replace(result, expect=None, expect_met=None)
        self.user_properties.append(("reason", result.stop.reason))
        self.user_properties.append(("exit_code", result.exit_code))
        problems = problems_of(result, **checks)
        if problems:
            raise BootFailure(self.name, problems, result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, BootFailure):
            return excinfo.value.text()
        if isinstance(excinfo.value, ManifestError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, 0, f"pvboot boot {self.name}"   # a line is needed for skips
