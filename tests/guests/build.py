"""Builds the guest test programs (tests/guests/*.S) and the disk images they boot from.

The programs are the ground truth for pvboot's BIOS: they pass under QEMU +
SeaBIOS (tests/tools/test_guests_qemu.py) and pvboot must boot the same images to the
same serial output (EXPECTED_SERIAL below).

A program is assembled with GNU as (`as --32`, the sources say `.code16`) and
linked by ld into a flat binary loaded at 0x7C00. Each program is given its
disk's size as the absolute symbol DISK_SECTORS (plus any PROGRAMS defsyms),
so the image and the program always agree. Image layout (tools/diskpattern.py):
the program at LBA 0.., pattern_sector(lba) from PATTERN_START on, and for
chain the VBR moved out of the program to its partition's first LBA.
"""
import functools
from pathlib import Path

from pvboot.roms import ROMS_DIR
from pvboot.tools import gnuas
from pvboot.tools.diskpattern import PATTERN_START, SECTOR_SIZE, WRITE_SALT, disk_image, pattern_sector

GUEST_DIR = Path(__file__).resolve().parent
LOAD_ADDRESS = 0x7C00

FLOPPY_1440K = 1474560
# 8 MiB: QEMU gives it 16 cylinders of 16 heads x 63 sectors, enough for CHS
# reads on other heads and cylinders and for sectors beyond the CHS range.
DEFAULT_DISK_SECTORS = 16384

# chain.S: the VBR is the program's last reserved sector; the image holds it
# at the start of the partition instead (the MBR's partition table says where).
CHAIN_VBR_OFFSET = (PATTERN_START - 1) * SECTOR_SIZE
CHAIN_VBR_LBA = 63

# name -> media ("disk" or "floppy") and extra absolute symbols for `as`.
PROGRAMS = {
    "disk_rw": {"media": "disk"},
    "disk_errors": {"media": "disk"},
    "int13_hook": {"media": "disk"},
    "chain": {"media": "disk", "defsyms": {"VBR_LBA": CHAIN_VBR_LBA}},
    "pmode": {"media": "disk"},
    "buffers": {"media": "disk"},
    "e820": {"media": "disk"},
    "video": {"media": "disk"},
    "keys": {"media": "disk"},
    "floppy": {"media": "floppy"},
}

# Sectors each program writes, with the salt it writes them with: the test
# checks the image afterwards (the data reached the disk, nothing else did).
WRITTEN_SECTORS = {
    "disk_rw": {lba: WRITE_SALT for lba in (30, 31, 300, 301, 302)},
    "floppy": {40: WRITE_SALT},
}

# Keys typed into keys.S (QEMU sendkey names) once it prints KEYS_READY.
KEYS_READY = "KEYS READY"
KEYS = ["h", "i", "shift-a", "1", "f1", "up", "ret"]

# Every program exits with this through port 0xF4 when all its checks pass.
EXPECTED_EXIT = 0


def _lines(*lines):
    return "".join(line + "\r\n" for line in lines)


# The exact serial output of each program under QEMU + SeaBIOS (CR LF line
# ends); keys.S's depends on KEYS. pvboot must print the same.
EXPECTED_SERIAL = {
    "disk_rw": _lines(
        "DISK_RW START",
        "AH08 GEOMETRY OK",
        "AH41 EDD PRESENT OK",
        "AH48 SECTOR COUNT OK",
        "CHS READ CYL 0 HEAD 0 OK",
        "CHS READ END OF TRACK OK",
        "CHS READ ACROSS HEADS OK",
        "CHS READ HEAD 1 OK",
        "CHS READ CYL 1 OK",
        "CHS READ CYL 2 LAST HEAD OK",
        "CHS READ LAST CYLINDER OK",
        "EDD READ LBA 16 OK",
        "EDD READ 8 SECTORS OK",
        "EDD READ 128 SECTORS OK",
        "EDD READ LAST SECTOR OK",
        "CHS WRITE OK",
        "EDD WRITE OK",
        "PASS",
    ),
    "disk_errors": _lines(
        "DISK_ERRORS START",
        "CHS READ COUNT 0 AH=01 CF=1 OK",
        "CHS READ COUNT 129 AH=01 CF=1 OK",
        "CHS READ SECTOR 0 AH=01 CF=1 OK",
        "CHS READ SECTOR PAST TRACK AH=01 CF=1 OK",
        "CHS READ HEAD PAST END AH=01 CF=1 OK",
        "CHS READ CYLINDER PAST END AH=01 CF=1 OK",
        "AH01 LAST STATUS AH=01 CF=1 OK",
        "AH01 AFTER SUCCESS AH=00 CF=0 OK",
        "EDD READ LBA PAST END AH=01 CF=1 OK",
        "EDD READ LBA ABOVE 4G AH=01 CF=1 OK",
        "EDD WRITE LBA PAST END AH=01 CF=1 OK",
        "EDD READ 129 SECTORS AH=09 CF=1 OK",
        "EDD READ 129 SECTORS PACKET COUNT 0 OK",
        "AH01 LAST STATUS AH=09 CF=1 OK",
        "EDD READ 0 SECTORS AH=00 CF=0 OK",
        "AH77 UNKNOWN FUNCTION AH=01 CF=1 OK",
        "AH01 LAST STATUS AH=01 CF=1 OK",
        "AH16 ON HARD DISK AH=01 CF=1 OK",
        "CHS READ DRIVE 81 AH=01 CF=1 OK",
        "AH48 BUFFER 25 BYTES AH=01 CF=1 OK",
        "AH00 RESET CLEARS STATUS OK",
        "AH10 AH0D AH11 OK",
        "AH04 VERIFY OK",
        "AH15 FIXED DISK SECTOR COUNT OK",
        "AH41 BX=AA55 CX BIT 0 OK",
        "AH48 SECTOR COUNT OK",
        "AH08 DRIVE COUNT OK",
        "PASS",
    ),
    "int13_hook": _lines(
        "INT13_HOOK START",
        "HOOK INSTALLED",
        "EDD READ THROUGH HOOK OK",
        "CHS READ THROUGH HOOK OK",
        "EDD READ PAST END THROUGH HOOK AH=01 CF=1 OK",
        "AH01 THROUGH HOOK AH=01 CF=1 OK",
        "HOOK SAW 4 CALLS OK",
        "HOOK REMOVED OK",
        "PASS",
    ),
    "chain": _lines(
        "CHAIN MBR AT 7C00",
        "MBR RUNNING AT 0600 OK",
        "MBR ACTIVE PARTITION AT LBA 0000003F",
        "MBR LOADED VBR, JUMPING TO 0000:7C00",
        "VBR: HELLO FROM THE PARTITION BOOT SECTOR",
        "VBR RUNNING AT 7C00 OK",
        "VBR DL=80 OK",
        "VBR DS:SI PARTITION ENTRY OK",
        "VBR EDD READ OK",
        "PASS",
    ),
    "pmode": _lines(
        "PMODE START",
        "A20 ON OK",
        "REAL MODE READ 1 OK",
        "PROTECTED MODE COPY TO 2 MIB DONE",
        "REAL MODE READ 2 OK",
        "REAL MODE READ 3 OK",
        "PROTECTED MODE COMPARE ABOVE 1 MIB OK",
        "HIGH COPY ROUND TRIP OK",
        "REAL MODE READ 4 OK",
        "PASS",
    ),
    "buffers": _lines(
        "BUFFERS START",
        "EDD READ TO 1000:0001 OK",
        "CHS READ TO 2000:0003 OK",
        "EDD READ TO 1FF0:0000 ACROSS 64 KIB BOUNDARY OK",
        "CHS READ TO 1FE0:0180 ACROSS 64 KIB BOUNDARY OK",
        "EDD READ TO 1000:FF00 PAST SEGMENT END: LINEAR, NO WRAP OK",
        "CHS READ TO 1000:FF00 PAST SEGMENT END: LINEAR, NO WRAP OK",
        "EDD READ 128 SECTORS TO 1000:0200 OK",
        "CHS READ 128 SECTORS TO 2000:0000 OK",
        "EDD READ 129 SECTORS AH=09 CF=1 OK",
        "CHS READ 129 SECTORS AH=01 CF=1 OK",
        "PASS",
    ),
    "e820": _lines(
        "E820 START",
        "E820 SIGNATURE AND ENTRY SIZES OK",
        "E820 CONTINUATION ENDS WITH EBX=0 OK",
        "E820 USABLE RAM FROM 0 TO 9F000 OK",
        "E820 USABLE RAM FROM 1 MIB, 16 MIB OR MORE OK",
        "E820 NOTHING USABLE IN A0000-FFFFF OK",
        "E801 CONSISTENT WITH E820 OK",
        "AH88 CONSISTENT WITH E820 OK",
        "INT12 BASE MEMORY OK",
        "PASS",
    ),
    "video": _lines(
        "VIDEO START",
        "AH0F MODE=03 COLUMNS=50",
        "AH03 ROW=01 COL=00 OK",
        "AH03 ROW=05 COL=0A OK",
        "AH03 ROW=0A COL=1A OK",
        "AH08 ROW=00 COL=00 CHAR=48 ATTR=07 OK",
        "AH08 ROW=00 COL=07 CHAR=70 ATTR=07 OK",
        "AH08 ROW=05 COL=0A CHAR=58 ATTR=1E OK",
        "AH08 ROW=05 COL=0C CHAR=58 ATTR=1E OK",
        "AH08 ROW=05 COL=0D CHAR=20 ATTR=07 OK",
        "AH08 ROW=0A COL=14 CHAR=70 ATTR=2F OK",
        "AH08 ROW=0A COL=19 CHAR=74 ATTR=2F OK",
        "AH06 SCROLLED ROWS 5-10 UP BY 1",
        "AH08 ROW=05 COL=0A CHAR=20 ATTR=07 OK",
        "AH08 ROW=09 COL=14 CHAR=70 ATTR=2F OK",
        "AH08 ROW=09 COL=19 CHAR=74 ATTR=2F OK",
        "AH08 ROW=0A COL=14 CHAR=20 ATTR=70 OK",
        "AH08 ROW=00 COL=00 CHAR=48 ATTR=07 OK",
        "AH06 CLEARED ROW 0",
        "AH08 ROW=00 COL=00 CHAR=20 ATTR=1F OK",
        "AH08 ROW=01 COL=00 CHAR=20 ATTR=07 OK",
        "PASS",
    ),
    "keys": _lines(
        "KEYS START",
        "KEYS READY",
        "KEY SCAN=23 ASCII=68",
        "KEY SCAN=17 ASCII=69",
        "KEY SCAN=1E ASCII=41",
        "KEY SCAN=02 ASCII=31",
        "KEY SCAN=3B ASCII=00",
        "KEY SCAN=48 ASCII=00",
        "KEY SCAN=1C ASCII=0D",
        "AH01 BUFFER EMPTY OK",
        "AH02 SHIFT CTRL ALT=00",
        "PASS",
    ),
    "floppy": _lines(
        "FLOPPY START",
        "BOOT DRIVE 00 OK",
        "AH08 TYPE 04, 80 CYLINDERS, 2 HEADS, 18 SECTORS OK",
        "AH15 AH=01 CF=0 OK",
        "CHS READ C0 H0 S17 OK",
        "CHS READ TRACK C0 H1 OK",
        "CHS READ C1 H0 S5 OK",
        "CHS READ C79 H1 S18 OK",
        "CHS WRITE OK",
        "CHS READ ACROSS 64 KIB DMA BOUNDARY AH=09 CF=1 OK",
        "AH01 LAST STATUS AH=09 CF=1 OK",
        "AH41 ON FLOPPY AH=01 CF=1 OK",
        "CHS READ AFTER ERRORS OK, AH01 AH=00 CF=0",
        "PASS",
    ),
}


BuildError = gnuas.AssemblerError
tools_available = gnuas.available


def assemble(source, defsyms=None, include_dirs=(), base=LOAD_ADDRESS):
    """Assemble one .S file (GNU as, 16-bit) into a flat binary linked at `base`.
    roms/ is on the include path: guests share its pieces (pm_call.inc)."""
    return gnuas.assemble(source, base=base, defsyms=defsyms,
                          include_dirs=(ROMS_DIR, *include_dirs))


def _media_sectors(name, sectors):
    if sectors is not None:
        return sectors
    if PROGRAMS[name]["media"] == "floppy":
        return FLOPPY_1440K // SECTOR_SIZE
    return DEFAULT_DISK_SECTORS


@functools.lru_cache(maxsize=None)
def _build_cached(name, sectors):
    spec = PROGRAMS[name]
    defsyms = {"DISK_SECTORS": sectors, **spec.get("defsyms", {})}
    return assemble(GUEST_DIR / f"{name}.S", defsyms)


def build_program(name, sectors=None):
    """The flat binary of tests/guests/<name>.S, built for a disk of `sectors` sectors."""
    if name not in PROGRAMS:
        raise KeyError(f"unknown guest program {name!r}")
    return _build_cached(name, _media_sectors(name, sectors))


def image_bytes(name, sectors=None):
    """The whole raw image for program `name` (disk or floppy by PROGRAMS)."""
    sectors = _media_sectors(name, sectors)
    program = build_program(name, sectors)
    extra = {}
    if name == "chain":
        extra[CHAIN_VBR_LBA] = program[CHAIN_VBR_OFFSET:CHAIN_VBR_OFFSET + SECTOR_SIZE]
        program = program[:CHAIN_VBR_OFFSET]
    return bytes(disk_image(program, sectors, extra))


def build_disk(name, tmpdir, sectors=None):
    """Write the hard-disk image of program `name` into `tmpdir`; return its path."""
    if PROGRAMS[name]["media"] != "disk":
        raise ValueError(f"{name} boots from a floppy: use build_floppy")
    return _write(name, tmpdir, image_bytes(name, sectors))


def build_floppy(name, tmpdir, size=FLOPPY_1440K):
    """Write the floppy image of program `name` into `tmpdir`; return its path."""
    if PROGRAMS[name]["media"] != "floppy":
        raise ValueError(f"{name} boots from a hard disk: use build_disk")
    return _write(name, tmpdir, image_bytes(name, size // SECTOR_SIZE))


def build_image(name, tmpdir):
    """build_disk or build_floppy, whichever the program needs."""
    if PROGRAMS[name]["media"] == "floppy":
        return build_floppy(name, tmpdir)
    return build_disk(name, tmpdir)


def _write(name, tmpdir, data):
    path = Path(tmpdir) / f"{name}.img"
    path.write_bytes(data)
    return path


def expected_video_screen():
    """The 80x25 text screen (char, attr pairs; 4000 bytes at 0xB8000) video.S leaves.

    Row 0 blanked with attribute 1F, "pvboot" (attr 2F) scrolled up to row 9
    column 20, row 10 blanked with 70, everything else blank with 07.
    """
    screen = bytearray(b"\x20\x07" * (80 * 25))
    def put(row, col, text, attr):
        for i, ch in enumerate(text):
            screen[(row * 80 + col + i) * 2:(row * 80 + col + i) * 2 + 2] = bytes((ord(ch), attr))
    put(0, 0, " " * 80, 0x1F)
    put(9, 20, "pvboot", 0x2F)
    put(10, 0, " " * 80, 0x70)
    return bytes(screen)


def expected_image_after(name, sectors=None):
    """The image as it must look after the program ran: its writes applied."""
    image = bytearray(image_bytes(name, sectors))
    for lba, salt in WRITTEN_SECTORS.get(name, {}).items():
        image[lba * SECTOR_SIZE:(lba + 1) * SECTOR_SIZE] = pattern_sector(lba, salt)
    return bytes(image)

