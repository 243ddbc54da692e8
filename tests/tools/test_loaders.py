"""Real boot loaders end to end: GRUB 2 (FAT16 and ext2) and SYSLINUX (behind its own
MBR and behind install-mbr's), built by tools/mkimage.py from Debian's packages, boot
through the Xen PV disk path to their markers, print a file from their file system
and power off through APM; each also boots with the firmware's plain driver through
the `pvboot boot` command line.

The images are built once per session (per xdist worker).  A missing Debian package
skips the tests that need it with its name; CI installs them all (.ci/run).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pvboot.tools import mkimage, runner

REPO = Path(__file__).resolve().parents[2]
KINDS = tuple(mkimage.IMAGE_KINDS)
# Each of these boots takes well under a second here; the bound catches a loader that
# falls into a real-time wait (an un-fast-forwarded timeout) long before --timeout.
BOOT_SECONDS = 10.0


def loader_of(kind):
    return kind.split("-")[0]          # "grub" or "syslinux"


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """f(kind) -> path of the default image of that kind, built on first use."""
    folder = tmp_path_factory.mktemp("loaders")
    built = {}

    def get(kind):
        if kind not in built:
            try:
                built[kind] = mkimage.build_image(kind, folder / f"{kind}.img")
            except mkimage.MissingTool as exc:
                built[kind] = exc
        if isinstance(built[kind], mkimage.MissingTool):
            pytest.skip(str(built[kind]))
        return str(built[kind])
    return get


def assert_markers_in_order(text, markers):
    position = -1
    for marker in markers:
        found = text.find(marker, position + 1)
        assert found > position, f"{marker!r} missing or out of order in {text!r}"
        position = found


def check_transcript(kind, console, screen):
    """The markers and hello.txt on the serial line in order, and on the screen."""
    start, end = mkimage.SERIAL_MARKERS[loader_of(kind)]
    hello = mkimage.HELLO_TEXT.strip()
    assert_markers_in_order(console, (start, hello, end))
    assert_markers_in_order(screen, mkimage.SCREEN_MARKERS[loader_of(kind)])
    assert hello in screen
    # GRUB reports a failed command as "error: ..." and goes on.
    assert "error" not in console.lower(), console


@pytest.mark.parametrize("kind", KINDS)
def test_loader_boots_through_the_pv_path(images, kind):
    image = images(kind)
    result = runner.boot([image], timeout=30)
    assert result.stop.reason == "poweroff", (result.stop, result.console, result.stop.report)
    assert result.exit_code == runner.EXIT_SUCCESS
    check_transcript(kind, result.console, result.screen)
    # Every sector came through the blkif ring, and the backend saw nothing wrong.
    assert result.counters["ring_requests"] == result.counters["ring_responses"] > 0
    assert result.messages == []
    assert result.counters["sectors_read"] > 0
    if loader_of(kind) == "grub":
        # GRUB calibrates its TSC with a 55 ms channel-2 one-shot (grub_pit_wait): its
        # polls idle (emu/devices/sysctl.py), ~80 port reads instead of 55,000.
        assert result.counters["port61_idle_polls"] > 0
        assert result.counters["port_reads"] < 10_000


@pytest.mark.parametrize("kind", KINDS)
def test_loader_boots_with_the_host_driver_from_the_command_line(images, kind):
    image = images(kind)
    proc = subprocess.run([sys.executable, "-m", "pvboot.tools", "boot", image, "--driver", "host",
                           "--json", "--timeout", "30"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == runner.EXIT_SUCCESS, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["reason"], result["exit_code"]) == ("poweroff", 0)
    check_transcript(kind, result["console"], result["screen"])
    assert "ring_requests" not in result["counters"]
    assert result["counters"]["sectors_read"] > 0


def test_boot_loader_runs_are_deterministic(images):
    # GRUB times itself with the BIOS tick count (no TSC is offered): two runs, one
    # transcript.
    image = images("grub-fat")
    first = runner.boot([image], driver="host", timeout=30)
    second = runner.boot([image], driver="host", timeout=30)
    assert first.stop.reason == second.stop.reason == "poweroff"
    assert (first.console, first.screen) == (second.console, second.screen)


def guest_seconds(result):
    return result.counters["virtual_seconds"]


def boot_to_poweroff(build, path, config):
    """Builds an image at `path` with `config` (skips when a tool is missing), boots it
    and checks it powered off; returns the run's result."""
    try:
        image = build(path, config=config)
    except mkimage.MissingTool as exc:
        pytest.skip(str(exc))
    result = runner.boot([str(image)], timeout=30)
    assert result.stop.reason == "poweroff", result.console
    return result


def test_grub_sleep_and_menu_timeout_take_guest_time_not_real_time(tmp_path):
    """`sleep 3` and a 5 s menu countdown on a serial console: GRUB waits 8 s of guest
    time (it reads the BIOS tick count for every character it sends to the serial port,
    which must not count as waiting), and the run does not take 8 s."""
    config = mkimage.default_config("grub").replace("cat /hello.txt\n", "").replace(
        "echo PVBOOT-GRUB-END\nhalt\n", "")
    config += ("sleep 3\n"
               "set timeout=5\n"
               "menuentry pvboot {\n  cat /hello.txt\n  echo PVBOOT-GRUB-END\n  halt\n}\n")
    result = boot_to_poweroff(mkimage.build_grub_image, tmp_path / "menu.img", config)
    assert_markers_in_order(result.console, ["executed automatically in 5s"] +
                            [f"executed automatically in {n}s" for n in range(4, -1, -1)] +
                            [mkimage.HELLO_TEXT.strip(), mkimage.SERIAL_MARKERS["grub"][1]])
    assert 8.0 <= guest_seconds(result)
    assert 0 < result.counters["skipped_seconds"] <= 8.0 + 3.0    # idle waits skipped, none overshot


def test_syslinux_prompt_timeout_takes_guest_time_not_real_time(tmp_path):
    """A 3 s boot prompt: SYSLINUX idles with `hlt` in protected mode between keyboard
    polls and counts ticks in its INT 1Ch hook; 3 s of its time is 3 s of guest time."""
    config = mkimage.default_config("syslinux").replace("PROMPT 0", "PROMPT 1").replace(
        "TIMEOUT 1", "TIMEOUT 30")
    result = boot_to_poweroff(mkimage.build_syslinux_image, tmp_path / "prompt.img", config)
    # The prompt timed out (ONTIMEOUT: the end stage) without running DEFAULT.
    assert_markers_in_order(result.console, ("boot:", mkimage.SERIAL_MARKERS["syslinux"][1]))
    assert mkimage.HELLO_TEXT.strip() not in result.console
    assert 3.0 <= guest_seconds(result)
    assert 0 < result.counters["skipped_seconds"] <= 3.0 + 1.0    # idle waits skipped, none overshot


def test_mkimage_command_line_with_a_config_and_files(tmp_path):
    """`pvboot mkimage` with --config and --file: a GRUB on ext2 that prints a file the
    user supplied, from a subdirectory."""
    note = tmp_path / "note.txt"
    note.write_text("a note from the user\n")
    config = tmp_path / "grub.cfg"
    config.write_text(mkimage.default_config("grub").replace(
        "cat /hello.txt\n", "cat /hello.txt\ncat /docs/note.txt\n"))
    image = tmp_path / "custom.img"
    proc = mkimage_cli("grub-ext2", str(image), "--config", str(config),
                       "--file", f"docs/note.txt={note}", "--size", "16")
    if proc.returncode == 2 and "Debian package" in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    assert image.stat().st_size == 16 << 20
    result = runner.boot([str(image)], timeout=30)
    assert result.stop.reason == "poweroff", result.console
    assert_markers_in_order(result.console, (mkimage.HELLO_TEXT.strip(), "a note from the user",
                                             mkimage.SERIAL_MARKERS["grub"][1]))


def mkimage_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pvboot.tools", "mkimage", *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO, env=env)


def assert_one_line_missing(proc, tool, package):
    assert proc.returncode == runner.EXIT_USAGE, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert tool in lines[0] and f"Debian package {package}" in lines[0], lines[0]


def test_missing_tool_is_one_line_naming_the_package(tmp_path):
    out = tmp_path / "never.img"
    assert_one_line_missing(mkimage_cli("grub-fat", str(out), env=dict(os.environ, PATH="")),
                            "sfdisk", "fdisk")
    assert not out.exists()      # checked before anything ran


def test_missing_install_mbr_names_package_mbr(tmp_path):
    # Everything the syslinux-mbr image needs but install-mbr.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sfdisk", "mkfs.fat", "mmd", "mcopy", "mattrib", "syslinux"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} not installed (Debian package {mkimage.PACKAGES[tool]})")
        (bin_dir / tool).symlink_to(found)
    out = tmp_path / "never.img"
    proc = mkimage_cli("syslinux-mbr", str(out), env=dict(os.environ, PATH=str(bin_dir)))
    assert_one_line_missing(proc, "install-mbr", "mbr")
    assert not out.exists()


def test_missing_tool_names_program_and_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(mkimage.MissingTool) as info:
        mkimage.build_syslinux_image(tmp_path / "x.img", mbr="install-mbr")
    assert (info.value.tool, info.value.package) == ("sfdisk", "fdisk")
    # Each program maps to the package that ships it.
    assert mkimage.PACKAGES["install-mbr"] == "mbr"
    assert mkimage.PACKAGES["grub-mkimage"] == "grub-common"
    assert mkimage.PACKAGES[str(mkimage.GRUB_DIR)] == "grub-pc-bin"


def test_default_configs_and_bad_arguments():
    assert "halt" in mkimage.default_config("grub")
    assert "serial --unit=0 --speed=115200" in mkimage.default_config("grub")
    assert "SERIAL 0 115200" in mkimage.default_config("syslinux")
    with pytest.raises(ValueError):
        mkimage.default_config("lilo")
    with pytest.raises(ValueError):
        mkimage.build_image("lilo", "/nonexistent/x.img")
    with pytest.raises(ValueError):
        mkimage.build_grub_image("/nonexistent/x.img", fs="ntfs")
    with pytest.raises(ValueError):
        mkimage.build_syslinux_image("/nonexistent/x.img", mbr="grub")
