"""pytest plugin (entry point `pvboot` in group pytest11): the `pvboot` fixture, which
boots images from a test (runner.boot's keywords), and image smoke tests collected from
`pvboot-*.toml` / `*.pvboot.toml` manifests.  Everything heavy is imported when a boot
runs.  docs/tools.md and the README describe the manifest keys.
"""
import pytest

# The manifest format and the checks live in tools/manifest.py (pvboot batch uses them
# too); re-exported here for the plugin's users.
from pvboot.tools.manifest import (  # noqa: F401
    ManifestError, all_markers_regex, load_manifest, problems_of, run_boot, run_entry,
    _boot_name)

MANIFEST_PREFIX, MANIFEST_SUFFIX = "pvboot-", ".toml"
MANIFEST_DOUBLE_SUFFIX = ".pvboot.toml"

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
def is_manifest(name):
    return (name.startswith(MANIFEST_PREFIX) and name.endswith(MANIFEST_SUFFIX)) or \
        name.endswith(MANIFEST_DOUBLE_SUFFIX)


def pytest_collect_file(file_path, parent):
    if is_manifest(file_path.name):
        return ManifestFile.from_parent(parent, path=file_path)
    return None


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
        try:
            result, problems = run_entry(self.entry)
        except runner.InputError as exc:
            raise ManifestError(f"{self.name}: {exc}") from None
        self.user_properties.append(("reason", result.stop.reason))
        self.user_properties.append(("exit_code", result.exit_code))
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
