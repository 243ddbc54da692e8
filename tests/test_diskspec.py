"""--disk specifications: defaults, every key, and one clear error per malformed spec."""
import pytest

from tools.diskspec import DiskSpec, DiskSpecError, parse_disk_spec


@pytest.mark.parametrize("text,expected", [
    ("a.img", DiskSpec("a.img")),
    ("a.img,type=xenbus,path=bounce", DiskSpec("a.img", "xenbus", "bounce")),
    ("a.img,path=direct", DiskSpec("a.img", path="direct")),
    ("a.img,type=ioemu", DiskSpec("a.img", type="ioemu")),
    ("a.img,ro", DiskSpec("a.img", access="ro")),
    ("a.img,read-only", DiskSpec("a.img", access="ro")),
    ("a.img,access=ro,persist", DiskSpec("a.img", access="ro", writes="persist")),
    ("target=b.img,format=raw,writes=persist", DiskSpec("b.img", writes="persist")),
    (" a.img , type=ioemu ", DiskSpec("a.img", type="ioemu")),
])
def test_valid_specs(text, expected):
    spec = parse_disk_spec(text)
    assert spec == expected
    assert spec.read_only == (expected.access == "ro")
    assert parse_disk_spec(spec.describe()) == spec       # describe() round-trips


@pytest.mark.parametrize("text,names", [
    ("", "empty"),
    ("a.img,colour=red", "'colour'"),
    ("a.img,type=scsi", "'type'"),
    ("a.img,path=zero-copy", "'path'"),
    ("a.img,access=rwx", "'access'"),
    ("a.img,format=qcow2", "'format'"),
    ("a.img,type=xenbus,type=ioemu", "'type' given twice"),
    ("a.img,type=ioemu,path=direct", "'path' applies to type=xenbus only"),
    ("type=xenbus", "no image"),
    ("a.img,,ro", "empty item"),
    ("a.img,target=b.img", "'target'"),
    ("a.img,bogus", "'bogus'"),
])
def test_malformed_specs_name_the_bad_key(text, names):
    with pytest.raises(DiskSpecError) as info:
        parse_disk_spec(text)
    message = str(info.value)
    assert names in message and "\n" not in message
