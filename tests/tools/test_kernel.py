"""A loader loading a kernel: tools/kernel.py's Linux boot protocol test kernel, and
`--stop-at kernel-entry` / `--expect-kernel FILE` (did my loader load my kernel, byte
for byte, and jump to it?).

The GRUB tests boot a FAT16 GRUB image (tools/mkimage.py) whose grub.cfg runs
`linux /kernel ...` and `boot`, through the default Xen PV disk path.  They need
Debian's grub-pc-bin grub-common mtools dosfstools fdisk (CI installs them) and GNU
as/ld (binutils) for the kernel; without them they are skipped, naming the package.
"""
import json
import os
import struct
import subprocess
import sys

import pytest

from pvboot.tools import kernel, runner
from pvboot.tools.kernel import (DEFAULT_PM_SIZE, ENTRY_MARKER, LOAD_ADDRESS, SETUP_MARKER,
                          KernelError, build_kernel, compare_memory, expected_console,
                          read_header)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PVBOOT = [sys.executable, "-m", "pvboot.tools"]
CMDLINE = "pvboot.test=1 console=ttyS0"
GRUB_CMDLINE = f"BOOT_IMAGE=/kernel {CMDLINE}"
FLIP_OFFSET = 0x1234            # a byte of the filler pattern in the protected-mode part
GRUB_MARKER = "PVBOOT-GRUB-LINUX"

needs_binutils = pytest.mark.skipif(not kernel.tools_available(),
                                    reason="GNU as/ld not installed (Debian package binutils)")


def boot(image, **kw):
    kw.setdefault("timeout", 60)
    return runner.boot([str(image)], **kw)


def kernel_output(console):
    """The kernel's lines: from its first marker to the end of the console."""
    starts = [console.find(m) for m in (SETUP_MARKER, ENTRY_MARKER) if m in console]
    return console[min(starts):] if starts else ""


# -- the kernel file ------------------------------------------------------------------
@needs_binutils
def test_kernel_layout_follows_the_boot_protocol():
    data = build_kernel()
    header = read_header(data)
    assert data[0x1FE:0x200] == b"\x55\xAA" and data[0x202:0x206] == b"HdrS"
    assert header.version == 0x020A and header.loaded_high
    assert header.setup_sects == 4 and header.pm_offset == 5 * 512
    assert header.code32_start == LOAD_ADDRESS == 0x100000
    assert header.pm_size == DEFAULT_PM_SIZE == 64 * 1024
    assert len(data) == header.pm_offset + header.pm_size
    assert header.syssize * 16 == header.pm_size
    assert header.init_size >= header.pm_size and header.init_size % 4096 == 0
    # The jump at 0x200 (EB xx) gives the header's end: GRUB copies 0x202 + xx bytes and
    # refuses headers past 0x290; the setup code starts right there.
    assert data[0x200] == 0xEB and 0x202 + data[0x201] == kernel.HEADER_END <= 0x290
    # kernel_version: the string's offset - 0x200, inside the setup sectors.
    version_at = struct.unpack_from("<H", data, 0x20E)[0] + 0x200
    assert data[version_at:data.index(b"\0", version_at)] == kernel.VERSION_STRING.encode()
    assert version_at < header.pm_offset
    # Not relocatable; loaded at pref_address = code32_start.
    assert data[0x234] == 0 and struct.unpack_from("<Q", data, 0x258)[0] == LOAD_ADDRESS
    pm = data[header.pm_offset:]
    assert sum(struct.unpack(f"<{len(pm) // 4}I", pm)) % 2**32 == 0      # self-check
    assert kernel.pattern(0x8000) in pm and pm.count(b"PVK:") > 4000      # filler


@needs_binutils
def test_kernel_build_is_deterministic_and_parametrised():
    once = build_kernel.__wrapped__()
    assert once == build_kernel.__wrapped__() == build_kernel()
    for setup_sects, size in ((1, 4096), (17, 128 * 1024)):
        data = build_kernel(setup_sects=setup_sects, pm_size=size)
        header = read_header(data)
        assert (header.setup_sects, header.pm_offset, header.pm_size) == \
            (setup_sects, (setup_sects + 1) * 512, size)
    other = build_kernel(variant=1)
    pm0, pm1 = build_kernel()[2560:], other[2560:]
    assert len(pm0) == len(pm1) and pm0 != pm1
    with pytest.raises(ValueError):
        build_kernel(setup_sects=0)
    with pytest.raises(ValueError):
        build_kernel(setup_sects=65)


def test_read_header_rejects_what_is_not_a_bzimage():
    good = bytearray(1024 + 512)
    good[0x1F1] = 1
    good[0x1FE:0x200] = b"\x55\xAA"
    good[0x202:0x206] = b"HdrS"
    struct.pack_into("<HB", good, 0x206, 0x020A, 0)
    good[0x211] = 1
    struct.pack_into("<I", good, 0x214, 0x100000)
    header = read_header(bytes(good))
    assert (header.pm_offset, header.pm_size, header.code32_start) == (1024, 512, 0x100000)
    # setup_sects 0 means 4 (boot.rst note 1).
    zero = bytearray(good) + bytes(2048)
    zero[0x1F1] = 0
    assert read_header(bytes(zero)).pm_offset == 5 * 512
    for patch, message in (((0x1FE, b"\0\0"), "boot_flag"), ((0x202, b"HdrX"), "HdrS"),
                           ((0x211, b"\0"), "LOADED_HIGH")):
        bad = bytearray(good)
        bad[patch[0]:patch[0] + len(patch[1])] = patch[1]
        with pytest.raises(KernelError, match=message):
            read_header(bytes(bad))
    with pytest.raises(KernelError, match="no protected-mode part"):
        read_header(bytes(good[:1024]))
    with pytest.raises(KernelError, match="too short"):
        read_header(b"\0" * 100)


def test_compare_memory_reports_first_difference_and_counts():
    expected = bytes(range(256)) * 40
    buf = bytearray(0x200000)
    buf[0x100000:0x100000 + len(expected)] = expected
    assert compare_memory(buf, 0x100000, expected)["verified"]
    buf[0x100000 + 5000] ^= 1
    buf[0x100000 + 9000] ^= 1
    c = compare_memory(buf, 0x100000, expected)
    assert (c["verified"], c["first_mismatch"], c["mismatched_bytes"]) == (False, 5000, 2)
    assert (c["guest_byte"], c["file_byte"]) == (expected[5000] ^ 1, expected[5000])
    # Bytes past the end of RAM count as differing.
    c = compare_memory(buf, len(buf) - 100, expected[:300])
    assert c["mismatched_bytes"] >= 200 and not c["verified"]


# -- the mechanism, without a loader ----------------------------------------------------
# A boot program that plays loader: protected mode, 16 bytes of "kernel" copied to
# 0x100000, first a call there with %esi = 0 (not a hand-over: the code returns), then
# the hand-over proper with %esi -> a boot_params with "HdrS" at +0x202.
STUB = bytes.fromhex("85f6" "7501" "c3" "b000" "e6f4" "f4") + b"PVK-STUB!"
assert len(STUB) == 19
STUB_PROGRAM = """
        cli
        xor ax, ax
        mov ds, ax
        lgdt [gdtr]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        jmp 0x08:pm
.code32
pm:     mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov esp, 0x7000
        cld
        mov esi, offset stub
        mov edi, 0x100000
        mov ecx, 19
        rep movsb
        xor esi, esi
        mov eax, 0x100000
        call eax                       # other code at the entry: not the kernel's entry
        mov dword ptr [0x8202], 0x53726448
        mov esi, 0x8000
        xor ebx, ebx
        xor ebp, ebp
        xor edi, edi
        jmp eax                        # the hand-over
        .balign 8
gdt:    .quad 0
        .quad 0x00CF9A000000FFFF
        .quad 0x00CF92000000FFFF
gdtr:   .word 23
        .long gdt
stub:   .byte """ + ", ".join(str(b) for b in STUB) + "\n"


def stub_kernel(tmp_path, pm=STUB, name="stub-kernel"):
    """A kernel file (1 setup sector) whose protected-mode part is `pm`."""
    real = bytearray(1024)
    real[0x1F1] = 1
    real[0x1FE:0x200] = b"\x55\xAA"
    real[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", real, 0x206, 0x020A)
    real[0x211] = 1
    struct.pack_into("<I", real, 0x214, LOAD_ADDRESS)
    path = tmp_path / name
    path.write_bytes(bytes(real) + pm)
    return str(path)


def test_entry_is_the_hand_over_not_any_code_at_the_address(boot_program, tmp_path):
    image = boot_program(STUB_PROGRAM)
    result = boot(image, expect_kernel=stub_kernel(tmp_path), timeout=10)
    assert (result.stop.reason, result.stop.exit_value, result.exit_code) == ("exit", 0, 0)
    k = result.kernel
    assert (k["reached"], k["verified"], k["other_runs"], k["ok"]) == (True, True, 1, True)
    assert (k["entry"], k["esi"], k["protected_mode"], k["size"]) == (0x100000, 0x8000, True, 19)
    assert k["first_mismatch"] is None and k["mismatched_bytes"] == 0


def test_stop_at_kernel_entry_stops_before_the_first_kernel_instruction(boot_program, tmp_path):
    result = boot(boot_program(STUB_PROGRAM), stop_at="kernel-entry",
                  expect_kernel=stub_kernel(tmp_path), timeout=10)
    # The stub's `out 0xf4` never ran: the run ended on its first instruction.
    assert (result.stop.reason, result.stop.exit_value, result.exit_code) == \
        ("kernel-entry", None, runner.EXIT_SUCCESS)
    assert "0x100000" in result.stop.detail and result.kernel["verified"]
    # Without a file the entry is 0x100000 and nothing is compared.
    result = boot(boot_program(STUB_PROGRAM), stop_at="kernel-entry", timeout=10)
    assert (result.stop.reason, result.exit_code) == ("kernel-entry", 0)
    assert (result.kernel["reached"], result.kernel["verified"]) == (True, None)


def test_one_byte_off_is_reported_with_its_offset(boot_program, tmp_path):
    pm = bytearray(STUB)
    pm[15] ^= 0x20
    result = boot(boot_program(STUB_PROGRAM), expect_kernel=stub_kernel(tmp_path, bytes(pm)),
                  timeout=10)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0)     # the guest is happy
    assert result.exit_code == runner.EXIT_TEST_FAILURE                   # pvboot is not
    k = result.kernel
    assert (k["verified"], k["first_mismatch"], k["mismatched_bytes"], k["ok"]) == \
        (False, 15, 1, False)
    assert "1 of 19 bytes" in k["summary"] and "offset 0xf" in k["summary"]


def test_entry_never_reached_fails_the_run(boot_program, tmp_path):
    image = boot_program("mov al, 0\nout 0xf4, al")
    result = boot(image, expect_kernel=stub_kernel(tmp_path), timeout=10)
    assert (result.stop.reason, result.exit_code) == ("exit", runner.EXIT_TEST_FAILURE)
    assert (result.kernel["reached"], result.kernel["verified"]) == (False, None)
    assert "never reached" in result.kernel["summary"]
    result = boot(image, stop_at="kernel-entry", timeout=10)
    assert (result.stop.reason, result.exit_code) == ("exit", runner.EXIT_TEST_FAILURE)
    # Nothing asked about the kernel: no "kernel" object, the guest's 0 is a success.
    result = boot(image, timeout=10)
    assert (result.kernel, result.exit_code) == (None, 0)


def test_bad_kernel_files_are_usage_errors(tmp_path, boot_program):
    image = boot_program("hlt")
    with pytest.raises(runner.InputError, match="no such file"):
        boot(image, expect_kernel=str(tmp_path / "nope"))
    junk = tmp_path / "junk"
    junk.write_bytes(bytes(4096))
    with pytest.raises(runner.InputError, match="boot_flag"):
        boot(image, expect_kernel=str(junk))
    with pytest.raises(runner.InputError, match="--stop-at"):
        boot(image, stop_at="vbr")
    proc = subprocess.run(PVBOOT + ["boot", image, "--expect-kernel", str(junk)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--expect-kernel" in proc.stderr and "Traceback" not in proc.stderr


# -- GRUB: `linux /kernel` and `boot` ----------------------------------------------------
def _grub_module_files(*names):
    """GRUB modules (and what they depend on) not linked into mkimage's core.img, as
    files for /boot/grub/i386-pc/, where GRUB's `insmod` looks ($prefix/i386-pc)."""
    from pvboot.tools import mkimage
    deps = {}
    for line in (mkimage.GRUB_DIR / "moddep.lst").read_text().splitlines():
        name, _, rest = line.partition(":")
        deps[name.strip()] = rest.split()

    def closure(roots):
        seen, todo = set(), list(roots)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(deps.get(name, ()))
        return seen

    wanted = closure(names) - closure(mkimage.GRUB_MODULES)
    return {f"boot/grub/i386-pc/{name}.mod": (mkimage.GRUB_DIR / f"{name}.mod").read_bytes()
            for name in sorted(wanted)}


def grub_config(command="linux", cmdline=CMDLINE):
    return ("serial --unit=0 --speed=115200\n"
            "terminal_output serial console\n"
            "terminal_input serial console\n"
            f"insmod {command}\n"
            f"echo {GRUB_MARKER}\n"
            f"{command} /kernel {cmdline}\n"
            "boot\n")


@pytest.fixture(scope="module")
def grub(tmp_path_factory):
    """f(name, kernel_bytes, command="linux") -> a GRUB FAT16 image booting it (cached)."""
    if not kernel.tools_available():
        pytest.skip("GNU as/ld not installed (Debian package binutils)")
    from pvboot.tools import mkimage
    tmp = tmp_path_factory.mktemp("grub-kernel")
    made = {}

    def make(name, data, command="linux"):
        if name not in made:
            files = {"kernel": data, **_grub_module_files(command)}
            try:
                made[name] = mkimage.build_grub_image(tmp / f"{name}.img", fs="fat16",
                                                      config=grub_config(command), files=files)
            except mkimage.MissingTool as exc:
                pytest.skip(str(exc))
        return made[name]
    return make


@pytest.fixture(scope="module")
def kernel_file(tmp_path_factory):
    if not kernel.tools_available():
        pytest.skip("GNU as/ld not installed (Debian package binutils)")
    path = tmp_path_factory.mktemp("kernel") / "kernel"
    path.write_bytes(build_kernel())
    return path


def flipped_kernel():
    data = bytearray(build_kernel())
    data[read_header(data).pm_offset + FLIP_OFFSET] ^= 0xFF
    return bytes(data)


def test_grub_loads_the_kernel_stop_at_entry_verified(grub, kernel_file):
    """(a) GRUB's `linux` + `boot`, stopped at the 32-bit entry: the 64 KiB there are the
    file's protected-mode part, byte for byte."""
    image = grub("good", kernel_file.read_bytes())
    result = boot(image, stop_at="kernel-entry", expect_kernel=kernel_file)
    assert result.stop.reason == "kernel-entry", (result.stop, result.console[-500:])
    assert result.exit_code == runner.EXIT_SUCCESS
    k = result.kernel
    assert (k["reached"], k["verified"], k["ok"]) == (True, True, True)
    assert (k["entry"], k["size"], k["file_offset"]) == (0x100000, 64 * 1024, 0xA00)
    assert k["protected_mode"] and 0x10000 <= k["esi"] < 0xA0000    # boot_params, low memory
    assert (k["first_mismatch"], k["mismatched_bytes"]) == (None, 0)
    # GRUB got there (its marker) and the kernel has not run a single instruction.
    assert GRUB_MARKER in result.console and ENTRY_MARKER not in result.console


def test_grub_boots_the_kernel_to_its_exit(grub, kernel_file):
    """(b) No stop: the kernel runs, checks itself and boot_params, prints GRUB's command
    line and exits through port 0xF4 with 0."""
    image = grub("good", kernel_file.read_bytes())
    result = boot(image)
    assert (result.stop.reason, result.stop.exit_value, result.exit_code) == ("exit", 0, 0), \
        result.console[-500:]
    assert kernel_output(result.console) == expected_console(GRUB_CMDLINE)
    assert result.kernel is None
    # The same with --expect-kernel: checked at the entry, then the run goes on.
    result = boot(image, expect_kernel=kernel_file)
    assert (result.stop.reason, result.stop.exit_value, result.exit_code) == ("exit", 0, 0)
    assert kernel_output(result.console) == expected_console(GRUB_CMDLINE)
    assert (result.kernel["reached"], result.kernel["verified"]) == (True, True)


def test_grub_corrupted_kernel_is_caught_at_the_entry(grub, kernel_file):
    """(c) The image's kernel has one byte flipped: the stop reports that byte."""
    image = grub("flipped", flipped_kernel())
    result = boot(image, stop_at="kernel-entry", expect_kernel=kernel_file)
    assert result.stop.reason == "kernel-entry"
    assert result.exit_code == runner.EXIT_TEST_FAILURE
    k = result.kernel
    assert (k["reached"], k["verified"], k["ok"]) == (True, False, False)
    assert (k["first_mismatch"], k["mismatched_bytes"]) == (FLIP_OFFSET, 1)
    assert f"first difference at offset {FLIP_OFFSET:#x}" in k["summary"]
    assert "1 of 65536 bytes" in k["summary"]


def test_grub_other_valid_kernel_is_caught_though_it_runs_fine(grub, kernel_file):
    """(c) The image holds a different, self-consistent kernel (another filler variant):
    it runs and exits 0, and the run still fails because it is not FILE."""
    image = grub("variant", build_kernel(variant=1))
    result = boot(image, expect_kernel=kernel_file)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0)
    assert kernel_output(result.console) == expected_console(GRUB_CMDLINE)
    assert result.exit_code == runner.EXIT_TEST_FAILURE
    k = result.kernel
    assert not k["verified"] and k["first_mismatch"] is not None
    assert kernel.pattern(k["first_mismatch"] & ~15) in kernel_file.read_bytes()[0xA00:]


def test_grub_expect_match_before_the_entry_waits_for_it(grub, kernel_file):
    """--expect matching GRUB's echo (before `linux`) must not end the run before the
    kernel entry was checked: the run ends at the entry, expectation met."""
    image = grub("good", kernel_file.read_bytes())
    result = boot(image, expect=GRUB_MARKER, expect_kernel=kernel_file)
    assert (result.stop.reason, result.expect_met, result.exit_code) == ("expected", True, 0)
    assert result.kernel["verified"] and ENTRY_MARKER not in result.console


def test_grub_linux16_runs_the_real_mode_setup(grub, kernel_file):
    """GRUB's `linux16`: the 16-bit protocol enters the setup code at seg+0x20:0, which
    switches to protected mode itself and jumps to code32_start."""
    image = grub("linux16", kernel_file.read_bytes(), command="linux16")
    result = boot(image, expect_kernel=kernel_file)
    assert (result.stop.reason, result.stop.exit_value, result.exit_code) == ("exit", 0, 0), \
        result.console[-500:]
    assert kernel_output(result.console) == expected_console(GRUB_CMDLINE, setup=True)
    assert result.kernel["verified"]


def test_cli_stop_at_kernel_entry_json(grub, kernel_file):
    """(a) through the command line."""
    image = grub("good", kernel_file.read_bytes())
    proc = subprocess.run(PVBOOT + ["boot", str(image), "--stop-at", "kernel-entry",
                                    "--expect-kernel", str(kernel_file), "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["reason"], result["exit_code"]) == ("kernel-entry", 0)
    assert result["kernel"]["verified"] is True and result["kernel"]["entry"] == 0x100000
    assert result["kernel"]["first_mismatch"] is None


def test_cli_mismatch_message(grub, kernel_file):
    image = grub("flipped", flipped_kernel())
    proc = subprocess.run(PVBOOT + ["boot", str(image), "--stop-at", "kernel-entry",
                                    "--expect-kernel", str(kernel_file)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "pvboot: kernel-entry" in proc.stderr
    assert f"first difference at offset {FLIP_OFFSET:#x}" in proc.stderr
    assert "1 of 65536 bytes" in proc.stderr


# -- the reference: QEMU + SeaBIOS ---------------------------------------------------------
def _qemu():
    from pvboot.tools import qemu
    if not qemu.qemu_available():
        pytest.skip(f"{qemu.QEMU} not installed (Debian package {qemu.QEMU_PACKAGE})")
    return qemu


def test_qemu_loads_the_kernel_itself(kernel_file):
    """QEMU's own -kernel loader (the 16-bit protocol, through the setup code) agrees
    that this is a Linux boot protocol kernel."""
    qemu = _qemu()
    run = qemu.run(extra_args=["-kernel", str(kernel_file), "-append", CMDLINE], timeout=20)
    assert (run.outcome, run.exit_value) == (qemu.EXIT, 0), run.serial_text
    assert kernel_output(run.serial_text) == expected_console(CMDLINE, setup=True)


def test_qemu_grub_image_prints_what_pvboot_prints(grub, kernel_file):
    qemu = _qemu()
    image = grub("good", kernel_file.read_bytes())
    run = qemu.run([str(image)], timeout=30, snapshot=True)
    assert (run.outcome, run.exit_value) == (qemu.EXIT, 0), run.serial_text
    assert kernel_output(run.serial_text) == expected_console(GRUB_CMDLINE)
    assert kernel_output(boot(image).console) == kernel_output(run.serial_text)


@needs_binutils
def test_kernel_booted_directly_says_so(tmp_path):
    path = tmp_path / "kernel.img"
    path.write_bytes(build_kernel())
    result = boot(path, timeout=10)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 1)
    assert result.console == kernel.DIRECT_BOOT_MARKER



def test_pvboot_compare_agrees_with_qemu_on_the_kernel_image(grub, kernel_file, capsys):
    """`pvboot compare --with-qemu` on the GRUB + kernel image: the whole serial
    transcripts (GRUB's and the kernel's) are byte for byte the same."""
    import json
    from pvboot.tools.cli import main
    _qemu()
    image = grub("good", kernel_file.read_bytes())
    code = main(["compare", "--with-qemu", "--json", "--timeout", "30", str(image)])
    result = json.loads(capsys.readouterr().out)
    assert (code, result["verdict"]) == (0, "agree"), result["diff"]
    assert kernel.ENTRY_MARKER in result["qemu"]["serial"]
