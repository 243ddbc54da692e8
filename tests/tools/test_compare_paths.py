"""`pvboot compare --paths`: the same image through emulated IDE, the PV bounce page and
PV direct grants (and QEMU + SeaBIOS) returns the same bytes for the same INT 13h
calls; the counters show each path's design; a path that returns other bytes is caught
at its first differing operation; per-operation digests cost nothing when off."""
import json

import pytest

from pvboot.firmware import xenblk
from pvboot.firmware.block import CMD_READ
from tests.fakebios import FakeBios
from pvboot.tools import comparedisk, qemu, runner
from pvboot.tools.cli import main

needs_qemu = pytest.mark.skipif(not qemu.qemu_available(),
                                reason=f"{qemu.QEMU} not installed (Debian package "
                                       f"{qemu.QEMU_PACKAGE})")
PVBOOT = "ata,pv-bounce,pv-direct"
TITLES = ("INT 13h calls", "sectors", "ring requests", "notifications", "grant ops",
          "bytes copied", "port exits", "wall time", "verdict")


@pytest.fixture(scope="module")
def compare_img(tmp_path_factory):
    return str(comparedisk.write_compare_disk(tmp_path_factory.mktemp("cmp") / "compare.img"))


@pytest.fixture(scope="module")
def grub_img(tmp_path_factory):
    from pvboot.tools import mkimage
    try:
        return str(mkimage.build_image("grub-fat", tmp_path_factory.mktemp("grub") / "grub.img"))
    except mkimage.MissingTool as exc:
        pytest.skip(str(exc))          # names the Debian package to install


def run_cli(capsys, *args):
    code = main(["compare", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(out):
    """{path: {column title: cell}} from the printed table (wall time "0.123 s")."""
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("path "))
    rows = {}
    for line in lines[head + 2:]:
        if not line or line.startswith(" "):
            break
        cells = line.split()
        assert len(cells) == 1 + 7 + 2 + 1, line
        rows[cells[0]] = dict(zip(TITLES[:7], cells[1:8]), wall=cells[8], verdict=cells[10])
    return rows


def number(cell):
    return int(cell.replace(",", ""))


def assert_counters_follow_the_design(rows):
    ata, bounce, direct = rows["ata"], rows["pv-bounce"], rows["pv-direct"]
    # Same calls, same sectors on every path.
    for title in ("INT 13h calls", "sectors"):
        assert number(ata[title]) == number(bounce[title]) == number(direct[title]) > 0
    # Bounce: one ring request (and notification) per 8-sector chunk; direct: up to 11
    # pages a request and one notification per batch.
    assert number(bounce["ring requests"]) > number(direct["ring requests"]) > 0
    for pv in (bounce, direct):          # the ring's notify check can only save some
        assert 0 < number(pv["notifications"]) <= number(pv["ring requests"])
    assert number(ata["ring requests"]) == number(ata["grant ops"]) == 0
    # Direct grants every page it lends; bounce grants its two pages once (and ends them).
    assert number(direct["grant ops"]) > number(bounce["grant ops"]) == 4
    # Bounce copies every sector; direct only the buffers it cannot grant.
    assert number(bounce["bytes copied"]) == 512 * number(bounce["sectors"])
    assert number(direct["bytes copied"]) < number(bounce["bytes copied"])
    # IDE: the same guest's port accesses as on the PV paths, plus per sector one string
    # exit at the data port (emu/stringio.py), not one per word, and the task file and
    # status accesses of each command (a guest's own port I/O, such as GRUB timing
    # its TSC against the PIT, is the same on every path).
    ide_exits = number(ata["port exits"]) - number(bounce["port exits"])
    assert number(ata["sectors"]) < ide_exits < 256 * number(ata["sectors"])


def test_the_three_pvboot_paths_agree_on_the_comparison_disk(compare_img, capsys):
    code, out, _err = run_cli(capsys, "--paths", PVBOOT, compare_img)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"pvboot compare: AGREE: {compare_img}: 3 pvboot paths "
                               "(ata, pv-bounce, pv-direct), 51 disk operations, identical bytes")
    for title in TITLES:
        assert title in lines[1]
    rows = table_rows(out)
    assert list(rows) == ["ata", "pv-bounce", "pv-direct"]
    assert [rows[p]["verdict"] for p in rows] == ["agree", "reference", "agree"]
    assert_counters_follow_the_design(rows)
    # The comparison program's own transcript is right on every path (the digests agree
    # with each other AND with the image).
    result = json.loads(run_cli(capsys, "--paths", PVBOOT, "--json", compare_img)[1])
    for path in result["paths"]:
        assert path["serial"] == comparedisk.expected_transcript()
        assert path["ended"] == "exit" and path["exit_value"] == 0
        reads = [op for op in path["operations"] if op["command"] == "read"]
        assert len(reads) == 51 and all(op["crc32"] for op in reads)


def test_the_three_pvboot_paths_agree_on_a_grub_image(grub_img, capsys):
    code, out, _err = run_cli(capsys, "--paths", PVBOOT, "--timeout", "30", grub_img)
    assert code == 0, out
    rows = table_rows(out)
    assert [rows[p]["verdict"] for p in rows] == ["agree", "reference", "agree"]
    assert_counters_follow_the_design(rows)
    result = json.loads(run_cli(capsys, "--paths", PVBOOT, "--json", "--timeout", "30",
                                grub_img)[1])
    assert result["verdict"] == "agree"
    from pvboot.tools import mkimage
    for path in result["paths"]:
        assert mkimage.HELLO_TEXT.strip() in path["serial"]
        assert path["ended"] == "poweroff"


def test_a_path_that_returns_other_bytes_is_caught(compare_img, capsys, monkeypatch):
    # A deliberately broken pv-direct: after its read of LBA 1000 it flips one byte of the
    # caller's buffer (in process: compare boots every path in this process).  That is
    # operation 6: POST's boot sector, the program's stage 1, then its OPs 01-04.
    real = xenblk.XenBlkFront._direct

    def broken(self, op, operation):
        status = real(self, op, operation)
        if op.lba == 1000 and op.command == CMD_READ:
            self.mem.buf[op.buf_addr + 100] ^= 0x40
        return status
    monkeypatch.setattr(xenblk.XenBlkFront, "_direct", broken)
    code, out, _err = run_cli(capsys, "--paths", PVBOOT, compare_img)
    assert code == 1, out
    rows = table_rows(out)
    assert [rows[p]["verdict"] for p in rows] == ["agree", "reference", "DIFFER"]
    assert out.splitlines()[0].startswith(f"pvboot compare: DIFFER: {compare_img}")
    problems = [line for line in out.splitlines() if line.startswith("  pv-direct: ")]
    assert problems[0].startswith("  pv-direct: disk operation 6 differs: read drive 80h "
                                  "lba 1000 count 8/8 status 00 crc32 ")
    assert "(reference pv-bounce: read drive 80h lba 1000 count 8/8 status 00 crc32 " in problems[0]
    assert "serial output differs" in problems[1]            # the program saw it too
    result = json.loads(run_cli(capsys, "--paths", PVBOOT, "--json", compare_img)[1])
    assert result["exit_code"] == 1
    direct = result["paths"][2]
    first = direct["first_difference"]
    assert first["operation"] == 6 and first["this"]["lba"] == 1000
    assert first["this"]["crc32"] != first["reference"]["crc32"]
    assert result["paths"][0]["first_difference"] is None


@needs_qemu
def test_seabios_compares_the_transcript(compare_img, capsys):
    # On virtio-blk SeaBIOS returns the same bytes; on its default IDE disk its 16-bit
    # driver puts buffers above 1 MiB 1 MiB lower: the transcripts differ, and say where.
    code, out, _err = run_cli(capsys, "--paths", "pv-bounce,seabios", "--qemu-disk", "virtio",
                              compare_img)
    assert code == 0, out
    rows = table_rows(out)
    assert rows["seabios"]["verdict"] == "agree"
    assert rows["seabios"]["ring requests"] == "-"
    code, out, _err = run_cli(capsys, "--paths", "seabios", compare_img)
    assert code == 1
    rows = table_rows(out)
    assert list(rows) == ["pv-bounce", "seabios"]             # the default path as reference
    assert rows["seabios"]["verdict"] == "DIFFER"
    assert "-OP 28 FAIL DATA WRAPPED TO 0000A000\\r\\n" in out


def test_usage_errors(compare_img, capsys):
    for args, fragment in (
            (["--paths", "ata,floppy", compare_img], "--paths: unknown path 'floppy'"),
            (["--paths", ",", compare_img], "--paths: no path given"),
            (["--with-qemu", "--paths", "seabios", compare_img], "exclude each other"),
            (["--driver", "host", compare_img], "--driver goes with --with-qemu"),
            (["--paths", "ata", compare_img, compare_img, compare_img], "holds two disks"),
            (["--paths", "ata"], "nothing to boot")):
        code, out, err = run_cli(capsys, *args)
        assert code == 2, (args, out, err)
        assert out == "" and len(err.strip().splitlines()) == 1
        assert fragment in err, (args, err)


def test_digests_are_off_by_default_and_cost_nothing(compare_img):
    # Off: the block layer's process_op is the plain method, no per-operation wrapper.
    fake = FakeBios([])
    assert "process_op" not in vars(fake.block) and fake.block.op_digests is None
    result = runner.boot([compare_img], timeout=20)
    assert result.op_digests is None and "int13_calls" not in result.counters
    result = runner.boot([compare_img], timeout=20, op_digests=True)
    assert len(result.op_digests) == 51 and result.counters["int13_calls"] == 51
