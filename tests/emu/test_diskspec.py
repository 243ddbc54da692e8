"""--disk specifications: defaults, every key, and one clear error per malformed spec,
from the parser and from the real command line (`python -m pvboot.tools boot --disk ...`)."""
import os
import subprocess
import sys

import pytest

from pvboot.emu.diskspec import DiskSpec, DiskSpecError, parse_disk_spec


@pytest.mark.parametrize("text,expected", [
    ("a.img", DiskSpec("a.img")),
    ("a.img,type=xenbus,path=bounce", DiskSpec("a.img", "xenbus", "bounce")),
    ("a.img,path=direct", DiskSpec("a.img", path="direct")),
    ("a.img,type=ioemu", DiskSpec("a.img", type="ioemu")),
    ("a.img,ro", DiskSpec("a.img", access="ro")),
    ("a.img,read-only", DiskSpec("a.img", access="ro")),
    ("a.img,access=ro,persist", DiskSpec("a.img", access="ro", writes="persist")),
    ("target=b.img,format=raw,writes=persist", DiskSpec("b.img", writes="persist", format="raw")),
    # xl's format= key, its aliases and its legacy prefixes
    ("a.img,format=qcow2", DiskSpec("a.img", format="qcow2")),
    ("a.vhd,format=vhd", DiskSpec("a.vhd", format="vpc")),
    ("tap:aio:a.img", DiskSpec("a.img", format="raw")),
    ("tap:qcow2:a.qcow2", DiskSpec("a.qcow2", format="qcow2")),
    ("tap:vhd:a.vhd", DiskSpec("a.vhd", format="vpc")),
    ("qcow2:a.qcow2,format=qcow2", DiskSpec("a.qcow2", format="qcow2")),
    ("raw:a.img", DiskSpec("a.img", format="raw")),
    ("aio:/x/a.img", DiskSpec("/x/a.img", format="raw")),
    ("notaprefix:a.img", DiskSpec("notaprefix:a.img")),
    # CD-ROMs: key, flag and xl's vdev form; always read-only
    ("a.iso,devtype=cdrom", DiskSpec("a.iso", access="ro", devtype="cdrom")),
    ("a.iso,cdrom", DiskSpec("a.iso", access="ro", devtype="cdrom")),
    ("a.iso,hdc:cdrom", DiskSpec("a.iso", access="ro", devtype="cdrom", vdev="hdc")),
    ("a.iso,vdev=hdc:cdrom,format=raw", DiskSpec("a.iso", access="ro", devtype="cdrom",
                                                 vdev="hdc", format="raw")),
    # xl's positional TARGET,FORMAT,VDEV,ACCESS
    ("a.iso,raw,hdc,r,cdrom", DiskSpec("a.iso", access="ro", devtype="cdrom", vdev="hdc",
                                       format="raw")),
    ("d.qcow2,qcow2,xvda,w", DiskSpec("d.qcow2", format="qcow2", vdev="xvda")),
    # A comma in the path is doubled, as QEMU escapes it
    ("my,,disk.img,ro", DiskSpec("my,disk.img", access="ro")),
    ("a,,,,b.img", DiskSpec("a,,b.img")),
    ("target=x,,y.qcow2,format=qcow2", DiskSpec("x,y.qcow2", format="qcow2")),
    (" a.img , type=ioemu ", DiskSpec("a.img", type="ioemu")),
])
def test_valid_specs(text, expected):
    spec = parse_disk_spec(text)
    assert spec == expected
    assert spec.read_only == (expected.access == "ro")
    assert parse_disk_spec(spec.describe()) == spec       # describe() round-trips


MALFORMED = [
    ("", "empty"),
    ("a.img,colour=red", "'colour'"),
    ("a.img,type=scsi", "'type'"),
    ("a.img,path=zero-copy", "'path'"),
    ("a.img,access=rwx", "'access'"),
    ("a.img,format=qed", "'format'"),
    ("qcow2:a.img,format=raw", "prefix says format qcow2"),
    ("a.iso,cdrom,access=rw", "cdrom is read-only"),
    ("a.iso,devtype=cdrom,persist", "cdrom is read-only"),
    ("a.iso,devtype=floppy", "'devtype'"),
    ("a.img,vdev=zz9", "'vdev'"),
    ("a.img,format=raw,format=qcow2", "'format' given twice"),
    ("a.img,type=xenbus,type=ioemu", "'type' given twice"),
    ("a.img,type=ioemu,path=direct", "'path' applies to type=xenbus only"),
    ("type=xenbus", "no image"),
    ("a.img,ro,", "empty item"),
    ("a.img,target=b.img", "'target'"),
    ("a.img,bogus", "'bogus'"),
]


@pytest.mark.parametrize("text,names", MALFORMED)
def test_malformed_specs_name_the_bad_key(text, names):
    with pytest.raises(DiskSpecError) as info:
        parse_disk_spec(text)
    message = str(info.value)
    assert names in message and "\n" not in message


def test_defaults_fill_what_the_spec_leaves_out():
    defaults = {"path": "direct", "access": "ro", "writes": "overlay"}
    assert parse_disk_spec("a.img", defaults) == DiskSpec("a.img", path="direct", access="ro")
    # What the spec says wins; path means nothing to an emulated disk.
    assert parse_disk_spec("a.img,path=bounce,rw", defaults) == DiskSpec("a.img")
    assert parse_disk_spec("a.img,type=ioemu", defaults) == DiskSpec("a.img", type="ioemu",
                                                                     access="ro")


# -- through the command line ------------------------------------------------------------
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pvboot_boot(*args):
    return subprocess.run([sys.executable, "-m", "pvboot.tools", "boot", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def assert_one_line_usage_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert lines[0].startswith("pvboot: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def boot_image(tmp_path):
    path = tmp_path / "a.img"
    path.write_bytes(bytes(510) + b"\x55\xAA" + bytes(512 * 63))
    return str(path)


@pytest.mark.parametrize("text,names", MALFORMED)
def test_cli_malformed_spec_is_one_line_and_exit_2(text, names, boot_image):
    # The spec's image is a real file, so only the spec itself can be wrong.
    text = text.replace("a.img", boot_image)
    assert_one_line_usage_error(pvboot_boot("--disk", text), names)


def test_cli_disk_combination_errors(boot_image, tmp_path):
    assert_one_line_usage_error(pvboot_boot(boot_image, "--disk", boot_image),
                                "either as IMAGEs or as --disk")
    assert_one_line_usage_error(pvboot_boot("--driver", "ata", "--disk", boot_image),
                                "--driver ata applies to positional IMAGEs")
    third = f"{boot_image},type=ioemu"
    assert_one_line_usage_error(pvboot_boot("--disk", third, "--disk", third, "--disk", third),
                                "type=ioemu", "holds two disks", "third")
    assert_one_line_usage_error(pvboot_boot("--disk", f"{boot_image},ro,persist"),
                                "access=ro and writes=persist")
    assert_one_line_usage_error(pvboot_boot("--disk", str(tmp_path / "nope.img")),
                                "nope.img: no such file")


# -- property: any image path survives describe() and parse (commas doubled) -------------
from hypothesis import given, strategies as st  # noqa: E402

_PATHS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda p: p.strip() == p and p.strip() and "=" not in p and ":" not in p)


@given(_PATHS, st.sampled_from([None, "raw", "qcow2", "vpc"]), st.booleans())
def test_describe_round_trips_any_path(image, fmt, cdrom):
    spec = DiskSpec(image, format=fmt, access="ro" if cdrom else "rw",
                    devtype="cdrom" if cdrom else "disk")
    assert parse_disk_spec(spec.describe()) == spec
