"""The pytest plugin (entry point pvboot in pytest11): the `pvboot` fixture and manifest
smoke tests, run by pytester in a subprocess under pytest-xdist (-n 2) on guest boot
programs built here."""
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

import pytest

from tests.cli import print_then_spin
from tests.conftest import assemble16
from tests.guests import build
from pvboot.tools import pytest_plugin

if sys.version_info >= (3, 11):
    import tomllib
else:                               # pragma: no cover
    import tomli as tomllib

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.skipif(not build.tools_available(), reason="GNU as/ld not installed")

ROOT = Path(__file__).resolve().parents[2]
CI_DIR = Path(__file__).resolve().parents[1] / "ci"

SPIN = print_then_spin("BOOTING\\r\\nMENU\\r\\n")


def plugin_args():
    """-p for the plugin when pvboot is not installed (its entry point then is not seen);
    with it installed, the entry point loads it (and a second -p would clash)."""
    installed = any(ep.name == "pvboot" for ep in metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "pvboot.tools.pytest_plugin"]


@pytest.fixture
def ci_dir(pytester, monkeypatch):
    """pytester's folder with the guest images, the manifest and the fixture tests."""
    path = pytester.path
    for name in ("disk_rw", "keys", "video"):
        assert build.build_disk(name, path) == path / f"{name}.img"
    (path / "spin.img").write_bytes(assemble16(SPIN) + bytes(512 * 15))
    (path / "crash.img").write_bytes(assemble16("ud2") + bytes(512 * 15))
    shutil.copy(CI_DIR / "smoke.toml", path / "pvboot-smoke.toml")
    shutil.copy(CI_DIR / "fixture_tests.py", path / "test_fixture.py")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return path


def test_manifest_and_fixture_under_xdist(pytester, ci_dir):
    junit = ci_dir / "junit.xml"
    result = pytester.runpytest_subprocess(*plugin_args(), "-n", "2", "-p", "no:cacheprovider",
                                           "-W", "ignore", f"--junitxml={junit}", "-rA",
                                           timeout=300)
    out = result.stdout.str()
    result.assert_outcomes(passed=7, failed=3, skipped=1)
    assert "[gw0]" in out or "[gw1]" in out          # the items ran on xdist workers
    for name in ("disk_rw", "keys", "video-screen", "banner", "waiting-at-menu",
                 "crash-expected"):
        assert f"PASSED pvboot-smoke.toml::{name}" in out, name
    assert "PASSED test_fixture.py::test_boot_with_the_fixture" in out

    # The failing entries show the checks that failed and the machine's report.
    assert ("pvboot boot hangs: exit code 1 (timeout); console has no match for "
            "'NEVER PRINTED'") in out
    hangs = out[out.index("pvboot boot hangs:"):]
    for part in ("report:", "CS:IP 0000:7c", "=> ", "jmp", "interrupts (oldest first)",
                 "disk read drive 80h lba 0", "console (last 2 lines):", "BOOTING"):
        assert part in hangs, part
    crashes = out[out.index("pvboot boot crashes:"):]
    assert "invalid-opcode" in crashes and "=> 00007c00: 0f0b" in crashes and "ud2" in crashes
    # The fixture's check fails with the problems; the boot's report is a section.
    assert "pvboot boot spin.img: timeout: no result within 2 s" in out
    assert "- console has no match for 'NEVER PRINTED'" in out
    assert "pvboot boot spin.img ----" in out

    # pytest's own JUnit XML carries the same story for CI.
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    failure = cases["hangs"].find("failure")
    assert failure.get("message").startswith("pvboot boot hangs: exit code 1 (timeout)")
    assert "CS:IP" in failure.text and "interrupts (oldest first)" in failure.text
    assert cases["disk_rw"].find("failure") is None


def test_a_bad_manifest_is_one_clear_collection_error(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.makefile(".pvboot.toml", broken='[[boot]]\nimage = "x.img"\nexpected = ["typo"]\n')
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "-W", "ignore")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*broken.pvboot.toml: boot #1: unknown key 'expected'*"])
    assert "Traceback" not in result.stdout.str()


def test_a_missing_image_fails_its_entry_in_one_line(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.makefile(".toml", **{"pvboot-missing": '[[boot]]\nimage = "nope.img"\n'})
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "-W", "ignore")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*nope.img: no such file*"])


def test_manifest_loading(tmp_path):
    path = tmp_path / "pvboot-x.toml"
    path.write_text('[defaults]\ntimeout = 5\n\n'
                    '[[boot]]\nimage = "a.img"\nexpect = "ONE"\n\n'
                    '[[boot]]\nname = "second"\nimage = ["b.img", "c.img"]\ntimeout = 9\n'
                    'floppy = "fd.img"\nserial_input = "x"\n')
    (first_name, first), (second_name, second) = pytest_plugin.load_manifest(str(path))
    assert first_name == "a.img" and first["timeout"] == 5
    assert first["image"] == [str(tmp_path / "a.img")]
    assert second_name == "second" and second["timeout"] == 9
    assert second["image"] == [str(tmp_path / "b.img"), str(tmp_path / "c.img")]
    assert second["floppy"] == str(tmp_path / "fd.img")
    path.write_text('[[boot]]\nimage = "a.img"\n[[boot]]\nimage = "a.img"\n')
    with pytest.raises(pytest_plugin.ManifestError, match="second entry named 'a.img'"):
        pytest_plugin.load_manifest(str(path))
    path.write_text('[[boot]]\nimage = "a.img"\nexpect = ["("]\n')
    with pytest.raises(pytest_plugin.ManifestError, match="bad regular expression"):
        pytest_plugin.load_manifest(str(path))
    for line, fragment in (("timeout = nan", "timeout: NaN"), ("timeout = inf", "out of range"),
                           ("memory_mib = 0", "--memory: 0 is out of range"),
                           ("max_insns = 1.5", "not an integer")):
        path.write_text(f'[defaults]\n{line}\n[[boot]]\nimage = "a.img"\n')
        with pytest.raises(pytest_plugin.ManifestError, match=fragment):
            pytest_plugin.load_manifest(str(path))


def test_manifest_names():
    assert pytest_plugin.is_manifest("pvboot-smoke.toml")
    assert pytest_plugin.is_manifest("grub.pvboot.toml")
    assert not pytest_plugin.is_manifest("pyproject.toml")
    assert not pytest_plugin.is_manifest("smoke.toml")


@pytest.mark.parametrize("markers,text,matches", [
    (["A", "B"], "xxB\r\nA", True),
    (["A", "B"], "A only", False),
    (["^BOOT"], "BOOT\r\n", True),
    (["^BOOT"], "x\nBOOT\r\n", False),          # as re.search: ^ is the text's start
    (["a.b"], "a\nb", False),                   # . keeps its meaning (no DOTALL)
])
def test_all_markers_regex_is_all_of_re_search(markers, text, matches):
    import re
    pattern = pytest_plugin.all_markers_regex(markers)
    assert bool(re.search(pattern, text)) == matches == all(re.search(m, text) for m in markers)


def test_markers_that_cannot_be_combined_are_not():
    assert pytest_plugin.all_markers_regex(["(?i)grub", "x"]) is None
    assert pytest_plugin.all_markers_regex([r"(a)\1"]) is None
    assert pytest_plugin.all_markers_regex([]) is None


def test_entry_point_is_declared():
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["entry-points"]["pytest11"] == {"pvboot": "pvboot.tools.pytest_plugin"}
