"""Bootstrap, after SeaBIOS's boot.c: INT 19h loads the first bootable drive's sector 0
to 0:7C00 and jumps there with DL = drive; INT 18h is the end of the line."""
BOOT_ADDR = 0x7C00


def handle_19(bios, regs):
    """INT 19h: try each drive in boot order; the first with a 55 AA signature boots."""
    failures = []
    for drive in bios.block.boot_order():
        booter = getattr(bios.block.get_drive(drive), "boot", None)
        if booter is not None:
            # A drive with its own boot protocol (a CD: El Torito, firmware/cdrom.py).
            failure = booter(bios, regs)
            if failure is None:
                return
            bios.warn(failure)
            failures.append(failure)
            continue
        sector = bios.block.read_boot_sector(drive)
        if sector is None:
            failures.append(f"drive {drive:02x}h: read error")
            continue
        if sector[510:512] != b"\x55\xAA":
            failures.append(f"drive {drive:02x}h: no boot signature (55 AA) in sector 0")
            continue
        bios.mem.write(BOOT_ADDR, sector)
        # Registers as SeaBIOS's boot_disk() hands them over: DL = drive, segments 0.
        regs.edx = drive
        regs.ds = 0
        regs.es = 0
        regs.set_return_address(0, BOOT_ADDR)
        regs.set_return_flags(0x0202)   # IF on, as after SeaBIOS's farcall
        bios.boot_drive = drive
        bios.trace(f"boot: drive {drive:02x}h")
        return
    bios.boot_failures = failures
    # Returning makes the POST stub call INT 18h.


def handle_18(bios, regs):
    """INT 18h: no bootable device (or the boot code gave up)."""
    failures = getattr(bios, "boot_failures", None)
    detail = "; ".join(failures) if failures else "boot code called INT 18h"
    bios.stop("no-boot", detail)
