"""`pvboot compare --with-qemu`: the same images under QEMU + SeaBIOS and under pvboot
(`--paths`, the firmware read paths side by side: tests/tools/test_compare_paths.py).

Agreement on the guest test programs and on real GRUB / SYSLINUX images, a difference
found (a program that prints a BIOS-specific value), one-line usage errors, and the
pieces: key names for QEMU, the transcript display, the ending classes.
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import assemble16
from tests.guests import build
from pvboot.tools import qemu, sides
from pvboot.tools.cli import main

needs_qemu = pytest.mark.skipif(
    not qemu.qemu_available(),
    reason=f"{qemu.QEMU} not installed (Debian package {qemu.QEMU_PACKAGE})")
needs_binutils = pytest.mark.skipif(not build.tools_available(),
                                    reason="GNU as / ld not installed (Debian package binutils)")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Writes the NUL-terminated string at [si] to COM1's data port.
PUTS = """
puts:
    lodsb
    test al, al
    jz 9f
    mov dx, 0x3f8
    out dx, al
    jmp puts
9:  ret
"""


def program(tmp_path, source, name="prog.img"):
    path = tmp_path / name
    path.write_bytes(assemble16(source + PUTS) + bytes(512 * 63))
    return str(path)


def run_json(capsys, *args):
    code = main(["compare", "--with-qemu", "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# -- agreement -------------------------------------------------------------------------
@needs_qemu
@needs_binutils
@pytest.mark.parametrize("name", ["e820", "chain", "disk_rw", "floppy", "keys"])
def test_guest_programs_agree(name, tmp_path, capsys):
    image = str(build.build_image(name, tmp_path))
    before = digest(image)
    args = ["--floppy", image] if build.PROGRAMS[name]["media"] == "floppy" else [image]
    if name == "keys":
        # The same keystrokes build.KEYS types in the QEMU tests, in pvboot's syntax.
        args += ["--keys", "hiA1{f1}{up}{enter}", "--keys-after", build.KEYS_READY]
    code, result = run_json(capsys, *args)
    assert (code, result["verdict"]) == (0, "agree"), result["diff"]
    assert result["qemu"]["serial"] == build.EXPECTED_SERIAL[name]
    assert result["pvboot"]["serial"] == build.EXPECTED_SERIAL[name]
    for side in ("qemu", "pvboot"):
        assert (result[side]["ended"], result[side]["exit_value"]) == ("exit", 0)
    # Neither run wrote to the image (disk_rw and floppy write sectors).
    assert digest(image) == before


@needs_qemu
@needs_binutils
def test_verdict_and_exit_code(tmp_path, capsys):
    image = str(build.build_image("chain", tmp_path))
    assert main(["compare", "--with-qemu", image]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"pvboot compare: AGREE: {image}: identical serial output "
                      f"({len(build.EXPECTED_SERIAL['chain'])} bytes), both exit 0 (port 0xF4)")
    assert out[1].startswith("  qemu+seabios: exit 0") and out[2].startswith("  pvboot:")
    assert len(out) == 3


@needs_qemu
def test_power_off_and_reset_agree(tmp_path, capsys):
    apm = program(tmp_path, """
    lea si, [msg]
    call puts
    mov ax, 0x5301          # APM real-mode connect
    xor bx, bx
    int 0x15
    mov ax, 0x530e          # driver version 1.2
    xor bx, bx
    mov cx, 0x0102
    int 0x15
    mov ax, 0x5307          # all devices: off
    mov bx, 1
    mov cx, 3
    int 0x15
    cli
    hlt
msg: .asciz "power off\\r\\n"
""", "apm.img")
    code, result = run_json(capsys, apm)
    assert code == 0, result["diff"]
    assert result["qemu"]["serial"] == "power off\r\n"
    assert result["qemu"]["ended"] == result["pvboot"]["ended"] == "poweroff"

    reset = program(tmp_path, """
    lea si, [msg]
    call puts
    mov al, 1               # port 92h bit 0: fast reset
    out 0x92, al
    cli
1:  hlt
    jmp 1b
msg: .asciz "reset\\r\\n"
""", "reset.img")
    code, result = run_json(capsys, reset)
    assert code == 0, result["diff"]
    assert result["qemu"]["ended"] == result["pvboot"]["ended"] == "reset"


@needs_qemu
def test_a_guest_that_never_ends_is_bounded(tmp_path, capsys):
    hang = program(tmp_path, """
    lea si, [msg]
    call puts
    cli
    hlt
msg: .asciz "halted\\r\\n"
""", "hang.img")
    code, result = run_json(capsys, hang, "--timeout", "1.5")
    assert code == 0, result["diff"]
    assert result["qemu"]["ended"] == result["pvboot"]["ended"] == "no-end"
    assert result["qemu"]["detail"] == "still running at the timeout, killed"
    assert result["pvboot"]["detail"].startswith("halted")
    assert result["qemu"]["serial"] == "halted\r\n"


# -- a difference ----------------------------------------------------------------------
# Prints INT 12h's AX and every E820 entry (20 bytes, in hex) and exits 0.  The maps
# genuinely differ: SeaBIOS reserves the top 128 KiB of RAM for its tables and lists
# the BIOS ROM alias below 4 GiB; pvboot reserves its Xen area (grant table, rings).
E820_DUMP = """
    xor ax, ax
    mov ds, ax
    mov es, ax
    lea si, [int12]
    call puts
    int 0x12
    call hex16
    lea si, [crlf]
    call puts
    xor ebx, ebx
next:
    mov eax, 0xe820
    mov edx, 0x534d4150
    mov ecx, 20
    mov di, 0x600
    int 0x15
    jc done
    push ebx
    lea si, [e820]
    call puts
    mov si, 0x600
    mov cx, 20
1:  lodsb
    push cx
    mov ah, al
    call hex8
    pop cx
    loop 1b
    lea si, [crlf]
    call puts
    pop ebx
    test ebx, ebx
    jnz next
done:
    lea si, [end]
    call puts
    mov al, 0
    out 0xf4, al
    cli
    hlt
hex16:                      # AX in four hex digits
    push ax
    call hex8
    pop ax
    mov ah, al
hex8:                       # AH in two hex digits
    mov cx, 2
2:  rol ah, 4
    mov al, ah
    and al, 15
    add al, 0x30
    cmp al, 0x3a
    jb 3f
    add al, 7
3:  mov dx, 0x3f8
    out dx, al
    loop 2b
    ret
int12: .asciz "INT12 AX="
e820: .asciz "E820 "
crlf: .asciz "\\r\\n"
end: .asciz "END\\r\\n"
"""


@needs_qemu
def test_bios_specific_output_differs(tmp_path, capsys):
    image = program(tmp_path, E820_DUMP, "e820dump.img")
    assert main(["compare", "--with-qemu", image]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"pvboot compare: DIFFER: {image}: serial output differs from byte ")
    assert lines[1].startswith("  qemu+seabios: exit 0")
    assert lines[2].startswith("  pvboot:       exit 0")
    assert lines[3:5] == ["--- qemu+seabios", "+++ pvboot"]
    assert lines[5].startswith("@@ ")
    removed = [line for line in lines if line.startswith("-E820 ")]
    added = [line for line in lines if line.startswith("+E820 ")]
    assert removed and added
    # Control bytes are shown escaped, the CR LF included.
    assert all(line.endswith("\\r\\n") for line in removed + added)
    # The JSON form carries the same diff and both transcripts, which end alike.
    code, result = run_json(capsys, image)
    assert (code, result["verdict"], result["endings_equal"]) == (1, "differ", True)
    assert result["diff"] == "\n".join(lines[3:])
    for side in ("qemu", "pvboot"):
        assert result[side]["serial"].startswith("INT12 AX=")
        assert result[side]["serial"].endswith("\r\nEND\r\n")


# -- real boot loaders (tools/mkimage.py) ----------------------------------------------
@needs_qemu
@pytest.mark.parametrize("kind", ["grub-fat", "grub-ext2", "syslinux", "syslinux-mbr"])
def test_boot_loader_images_agree(kind, tmp_path, capsys):
    mkimage = pytest.importorskip("pvboot.tools.mkimage", reason="tools/mkimage.py is not there")
    try:
        image = str(mkimage.build_image(kind, tmp_path / f"{kind}.img"))
    except mkimage.MissingTool as exc:
        pytest.skip(str(exc))
    code, result = run_json(capsys, image, "--timeout", "30")
    assert (code, result["verdict"]) == (0, "agree"), result["diff"]
    # The file the loader read from its file system went out on the serial line, and the
    # transcripts are whole up to the power-off (QEMU's ends with the guest's last byte,
    # the end marker printed just before the power-off included).
    serial = result["qemu"]["serial"]
    assert mkimage.HELLO_TEXT.strip() in serial
    markers = getattr(mkimage, "SERIAL_MARKERS", {}).get(kind.split("-")[0], ())
    for marker in markers:
        assert marker in serial
    assert result["qemu"]["ended"] == result["pvboot"]["ended"] == "poweroff"


# -- usage errors ----------------------------------------------------------------------
def assert_one_line_error(capsys, args, *fragments):
    try:
        code = main(["compare", *args])
    except SystemExit as exc:          # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert out == ""
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def boot_sector(tmp_path):
    image = tmp_path / "boot.img"
    image.write_bytes(bytes(510) + b"\x55\xAA")
    return str(image)


def test_usage_errors(tmp_path, boot_sector, capsys):
    assert_one_line_error(capsys, ["--paths", "bogus", boot_sector], "unknown path 'bogus'")
    assert_one_line_error(capsys, ["--with-qemu", "--paths", "seabios", boot_sector],
                          "--with-qemu and --paths exclude each other")
    assert_one_line_error(capsys, ["--with-qemu", str(tmp_path / "nope.img")],
                          "nope.img: no such file")
    assert_one_line_error(capsys, ["--with-qemu", "--timeout", "0", boot_sector], "--timeout")
    assert_one_line_error(capsys, ["--with-qemu"], "nothing to boot")
    assert_one_line_error(capsys, ["--with-qemu", boot_sector, "--keys", "a"],
                          "--keys needs --keys-after")
    assert_one_line_error(capsys, ["--with-qemu", boot_sector, "--keys", "{nokey}",
                                   "--keys-after", "x"], "unknown key {nokey}")


def test_qemu_missing_is_a_usage_error(tmp_path, boot_sector, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))          # nothing on PATH
    assert_one_line_error(capsys, ["--with-qemu", boot_sector], "qemu-system-i386 not found",
                          "install the Debian package qemu-system-x86")
    # The seabios path needs QEMU too (checked before any boot).
    assert_one_line_error(capsys, ["--paths", "pv-bounce,seabios", boot_sector],
                          "qemu-system-i386 not found")


def test_command_line_entry_point(boot_sector):
    # The real process: `python -m pvboot.tools compare` with a usage error.
    proc = subprocess.run([sys.executable, "-m", "pvboot.tools", "compare", "--paths", "ata,scsi",
                           boot_sector], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pvboot: error: --paths: unknown path 'scsi' (use ata, pv-bounce, pv-direct, seabios)"]


# -- the pieces ------------------------------------------------------------------------
def test_key_names_for_qemu():
    assert sides.qemu_key_names("hiA1{f1}{up}{enter}") == build.KEYS
    assert sides.qemu_key_names("Z!_ {{}}|~`\t\n\x01\x7f{del}{f11}{ins}{pgdn}{esc}\b") == [
        "shift-z", "shift-1", "shift-minus", "spc", "shift-bracket_left",
        "shift-bracket_right", "shift-bracket_right", "shift-backslash", "shift-grave_accent",
        "grave_accent", "tab", "ret", "ctrl-a", "ctrl-backspace", "delete", "f11", "insert",
        "pgdn", "esc", "backspace"]
    with pytest.raises(ValueError, match="unknown key"):
        sides.qemu_key_names("{nokey}")


def test_transcript_lines_show_every_byte():
    data = b"A\\b\r\n\x1b[2J\x1b[5;3Hmenu\x1b[6;3Hnext\tx\x00\xff"
    lines = sides.transcript_lines(data)
    assert lines == ["A\\\\b\\r\\n", "\\e[2J", "\\e[5;3Hmenu", "\\e[6;3Hnext\\tx\\x00\\xff"]
    assert sides.transcript_lines(b"") == []
    assert sides.first_difference(b"ab\ncd", b"ab\ncx") == (4, 2)


def test_endings():
    def side(ended, value=None):
        return sides.Side("x", b"", ended, value)

    assert sides.endings_agree(side("exit", 0), side("exit", 0))
    assert not sides.endings_agree(side("exit", 0), side("exit", 1))
    assert not sides.endings_agree(side("poweroff"), side("reset"))
    assert sides.endings_agree(side("stopped"), side("reset"))
    assert not sides.endings_agree(side("stopped"), side("no-end"))
    assert not sides.endings_agree(side("no-end"), side("crash"))
