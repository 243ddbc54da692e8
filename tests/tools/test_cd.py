"""tools/cd.py: the CD options' input checks and xl's cdrom disk spec forms."""
import pytest

from pvboot.tools import cd, cli


@pytest.mark.parametrize("spec", ["a.iso,devtype=cdrom", "a.iso,hdc:cdrom", "a.iso,raw,hdc,r,cdrom",
                                  "target=a.iso,devtype=cdrom"])
def test_xl_cdrom_forms(spec):
    assert cd.split_cdrom_specs(["d.img", spec]) == (["d.img"], "a.iso", "xenbus")


def test_ioemu_cdrom():
    assert cd.split_cdrom_specs(["a.iso,devtype=cdrom,type=ioemu"]) == ([], "a.iso", "ioemu")


def test_two_cdroms_refused():
    with pytest.raises(cd.CdInputError):
        cd.split_cdrom_specs(["a.iso,cdrom", "b.iso,cdrom"])


def test_boot_cd_without_cdrom_is_usage_error(tmp_path, capsys):
    disk = tmp_path / "d.img"
    disk.write_bytes(b"\0" * 510 + b"\x55\xAA")
    assert cli.run(["boot", str(disk), "--boot", "cd", "-q"]) == 2
    assert "--boot cd needs --cdrom" in capsys.readouterr().err


def test_missing_iso_is_usage_error(capsys):
    assert cli.run(["boot", "--cdrom", "/nonexistent.iso", "-q"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cd_tool_without_run(tmp_path, capsys):
    assert cli.run(["cd", "eject", str(tmp_path)]) == 2
    assert "no pvboot run there" in capsys.readouterr().err


def test_cd_tool_insert_needs_iso(tmp_path, capsys):
    assert cli.run(["cd", "insert", str(tmp_path)]) == 2
    assert "insert needs an ISO" in capsys.readouterr().err


def test_xenstore_socket_checked(tmp_path, capsys):
    iso = tmp_path / "a.iso"
    iso.write_bytes(b"\0" * 2048)
    assert cli.run(["boot", "--cdrom", str(iso), "-q", "--xenstore-socket",
                    str(tmp_path / "nodir" / "xs")]) == 2
    assert "no directory" in capsys.readouterr().err
    assert cli.run(["boot", "--cdrom", str(iso), "-q", "--xenstore-socket", str(iso)]) == 2
    assert "already exists" in capsys.readouterr().err
