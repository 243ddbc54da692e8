"""The firmware's PV block frontend (firmware/xenblk.py) against a live blkback: the
chunking the design prescribes, status mapping, bounded waits and the shutdown ladder."""
import hashlib
import io
import re
import signal

from pvboot.emu.machine import Machine
from pvboot.emu.xen.abi import (GTF_reading, GTF_writing, XenbusStateInitialising, XenbusStateInitWait)
from pvboot.emu.xen.platform import XenPlatform
from pvboot.firmware.bios import Bios, BiosConfig
from tests.conftest import assemble16
from pvboot.tools import runner
from pvboot.tools.diskpattern import pattern_sector

DISK_SECTORS = 2048
SERIAL_OUT = """
    # print AH (status) as two hex digits, then exit with AH through port 0xF4
report:
    mov bl, ah
    mov dx, 0x3f8
    mov al, bl
    shr al, 4
    call hexdigit
    mov al, bl
    and al, 15
    call hexdigit
    mov al, 10
    out dx, al
    mov al, bl
    out 0xf4, al
hexdigit:
    add al, '0'
    cmp al, '9'
    jbe 1f
    add al, 7
1:  out dx, al
    ret
"""


def edd_program(ah, lba, count, buffer_seg=0x1000, buffer_off=0, before=""):
    """A boot sector that does one INT 13h AH=42h/43h and exits with the status."""
    return assemble16(f"""
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 0x7000
        {before}
        mov si, offset dap
        mov ah, {ah:#x}
        mov dl, 0x80
        int 0x13
        jmp report
    {SERIAL_OUT}
    .align 4
    dap:
        .byte 16, 0
        .word {count}
        .word {buffer_off:#x}, {buffer_seg:#x}
        .quad {lba}
    """)


def disk(tmp_path, program, name="disk.img"):
    path = tmp_path / name
    data = bytearray(b"".join(pattern_sector(lba) for lba in range(DISK_SECTORS)))
    data[:512] = program
    path.write_bytes(bytes(data))
    return path


def test_127_sector_edd_read_is_16_ring_requests_of_at_most_8_sectors(tmp_path):
    image = disk(tmp_path, edd_program(0x42, 100, 127))
    trace = io.StringIO()
    result = runner.boot([str(image)], trace={"disk"}, trace_out=trace, timeout=20)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    requests = re.findall(r"ring: req id (\d+) op read sector (\d+) segs 1 grefs \[(\d+)\] sects 0-(\d+)",
                          trace.getvalue())
    bulk = [(int(sector), int(last) + 1) for _id, sector, _gref, last in requests if int(sector) >= 100]
    assert len(bulk) == 16
    assert [n for _s, n in bulk] == [8] * 15 + [7]
    assert [s for s, _n in bulk] == list(range(100, 227, 8))
    assert len({gref for _i, _s, gref, _l in requests}) == 1      # always the one bounce page
    assert result.counters["ring_requests"] == len(requests)
    assert result.counters["ring_responses"] == len(requests)
    assert result.counters["sectors_read"] >= 127


def test_data_read_through_the_ring_reaches_a_buffer_above_1mib(tmp_path):
    # FFFF:0010 is linear 0x100000: the bounce page's data must land above 1 MiB.
    image = disk(tmp_path, edd_program(0x42, 300, 16, buffer_seg=0xFFFF, buffer_off=0x10))
    machine, platform, bios = pv_machine(image)
    try:
        stop = machine.run(timeout=20)
        assert (stop.reason, stop.exit_value) == ("exit", 0)
        data = machine.mem.read(0x100000, 16 * 512)
        assert data == b"".join(pattern_sector(lba) for lba in range(300, 316))
    finally:
        close(machine, platform, bios)


def test_a_bounce_read_over_code_that_ran_replaces_it_in_every_chunk(tmp_path):
    # The guest runs a stub at 0000:9000 (in the second 4 KiB chunk of its buffer at
    # 0000:8000), reads 16 sectors over it and runs it again: the disk's code must run,
    # not the stub's translation (the frontend drops translations once per call).
    program = assemble16(f"""
        xor ax, ax
        mov ds, ax
        mov ss, ax
        mov sp, 0x7000
        mov word ptr [0x9000], 0x11b4      # mov ah, 0x11
        mov byte ptr [0x9002], 0xc3        # ret
        call 0x9000
        cmp ah, 0x11
        jne report
        mov si, offset dap
        mov ah, 0x42
        mov dl, 0x80
        int 0x13
        jc report
        call 0x9000
        jmp report
    {SERIAL_OUT}
    .align 4
    dap:
        .byte 16, 0
        .word 16
        .word 0x8000, 0
        .quad 600
    """)
    image = disk(tmp_path, program)
    data = bytearray(image.read_bytes())
    data[608 * 512:608 * 512 + 3] = b"\xb4\x5a\xc3"      # mov ah, 0x5a; ret
    image.write_bytes(bytes(data))
    result = runner.boot([str(image)], timeout=20)
    assert result.console.strip() == "5A", result.console


def test_a_bounce_read_running_from_vga_into_rom_fills_only_the_vga_part(tmp_path):
    # BF00:0000, 16 sectors: 4 KiB of the VGA window, then 4 KiB of the VGA BIOS ROM,
    # which keeps its bytes (a buffer not all RAM goes through dma_write chunk by chunk).
    image = disk(tmp_path, edd_program(0x42, 700, 16, buffer_seg=0xBF00))
    machine, platform, bios = pv_machine(image)
    try:
        stop = machine.run(timeout=20)
        assert (stop.reason, stop.exit_value) == ("exit", 0)
        assert machine.mem.read(0xBF000, 4096) == b"".join(pattern_sector(lba) for lba in range(700, 708))
        assert machine.mem.read(0xC0000, 512) != pattern_sector(708)
    finally:
        close(machine, platform, bios)


def test_backend_error_becomes_status_04(tmp_path):
    # 8 sectors starting 4 before the end: the one request runs past the disk.
    image = disk(tmp_path, edd_program(0x42, DISK_SECTORS - 4, 8))
    result = runner.boot([str(image)], timeout=20)
    assert result.console.strip() == "04"
    assert result.stop.exit_value == 0x04


def test_write_to_a_read_only_pv_disk_is_status_03(tmp_path):
    image = disk(tmp_path, edd_program(0x43, 50, 1))
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    result = runner.boot([str(image)], read_only=True, timeout=20)
    assert result.console.strip() == "03"
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before


def test_writes_go_to_the_overlay_unless_persist(tmp_path):
    program = edd_program(0x43, 60, 3)
    image = disk(tmp_path, program)
    before = image.read_bytes()
    assert runner.boot([str(image)], timeout=20).console.strip() == "00"
    assert image.read_bytes() == before
    assert runner.boot([str(image)], persist=True, timeout=20).console.strip() == "00"
    after = image.read_bytes()
    # AH=43 wrote 3 sectors from 1000:0000 (zeros after POST) to LBA 60..62.
    assert after[60 * 512:63 * 512] != before[60 * 512:63 * 512]
    assert after[:60 * 512] == before[:60 * 512] and after[63 * 512:] == before[63 * 512:]


def pv_machine(image, pv_timeout=5.0, read_only=False):
    machine = Machine()
    platform = XenPlatform(machine.mem)
    platform.attach_disk(str(image), read_only=read_only)
    bios = Bios(machine, BiosConfig(xen=platform.guest_interface(), pv_timeout=pv_timeout))
    return machine, platform, bios


def close(machine, platform, bios):
    platform.close()
    machine.close()


def test_a_backend_that_stops_answering_gives_status_80_within_the_timeout(tmp_path):
    # The guest prints "go" on COM1 before its read; the test freezes blkback right then.
    before = """
        mov dx, 0x3f8
        mov al, 'g'
        out dx, al
        mov al, 10
        out dx, al
    """
    image = disk(tmp_path, edd_program(0x42, 10, 8, before=before))
    # Long enough for the handshake on a loaded machine, short enough to keep the test quick.
    machine, platform, bios = pv_machine(image, pv_timeout=2.0)
    backend = platform.backends[0][1]
    machine.console_listeners.append(
        lambda byte: byte == ord("g") and backend.send_signal(signal.SIGSTOP))
    try:
        stop = machine.run(timeout=20)
        assert (stop.reason, stop.exit_value) == ("exit", 0x80)
        assert machine.console.decode().split() == ["g", "80"]
    finally:
        backend.send_signal(signal.SIGCONT)
        close(machine, platform, bios)


def test_a_backend_that_never_connects_is_reported_and_nothing_hangs(tmp_path):
    image = disk(tmp_path, edd_program(0x42, 10, 1))
    machine = Machine()
    platform = XenPlatform(machine.mem)
    try:
        platform.attach_disk(str(image))
        backend = platform.backends[0][1]
        backend.kill()
        backend.wait()
        bios = Bios(machine, BiosConfig(xen=platform.guest_interface(), pv_timeout=0.5))
        stop = machine.run(timeout=20)
        assert stop.reason == "no-boot"
        assert any("did not reach InitWait" in m for m in bios.messages)
    finally:
        close(machine, platform, None)


def test_shutdown_closes_the_connection_and_ends_the_grants(tmp_path):
    image = disk(tmp_path, edd_program(0x42, 10, 8))
    machine, platform, bios = pv_machine(image)
    try:
        stop = machine.run(timeout=20)
        assert (stop.reason, stop.exit_value) == ("exit", 0)
        front = bios.block.pv_fronts[0]
        refs = (front.ring_ref, front.bounce_ref)
        assert refs == (8, 9)          # the first refs after the 8 reserved ones
        frontend, backend = front.frontend_path, front.backend_path
        bios.shutdown()
        assert bios.messages == []
        xs = platform.xs
        assert int(xs.read(frontend + "/state")) == XenbusStateInitialising
        # blkback went Closing -> Closed and is back in InitWait for the next frontend.
        xs.watch(backend + "/state", "t")
        xs.wait_for(lambda: int(xs.read(backend + "/state")) == XenbusStateInitWait, 5, "InitWait")
        for ref in refs:
            assert platform.gnttab.flags(ref) & (GTF_reading | GTF_writing) == 0
            assert platform.gnttab.flags(ref) == 0          # access ended
        assert xs.read(frontend + "/ring-ref") is None
    finally:
        close(machine, platform, bios)


def ring_requests(trace_text):
    """[(id, sector, nr_segments, [grefs])] from --trace disk output."""
    found = re.findall(r"ring: req id (\d+) op \w+ sector (\d+) segs (\d+) grefs \[([\d, ]*)\]", trace_text)
    return [(int(i), int(s), int(n), [int(g) for g in grefs.split(",")]) for i, s, n, grefs in found]


def test_direct_path_grants_the_callers_pages_at_most_11_a_request_one_notification(tmp_path):
    # 127 sectors to 1000:0000 = 16 pages -> ceil(16 / 11) = 2 requests, one batch.
    image = disk(tmp_path, edd_program(0x42, 100, 127))
    trace = io.StringIO()
    result = runner.boot([str(image)], pv_path="direct", trace={"disk"}, trace_out=trace, timeout=20)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    bulk = [r for r in ring_requests(trace.getvalue()) if r[1] >= 100]
    assert [(sector, nsegs) for _i, sector, nsegs, _g in bulk] == [(100, 11), (100 + 88, 5)]
    grefs = [g for r in bulk for g in r[3]]
    assert len(set(grefs)) == 16 and 9 not in grefs        # the caller's pages, not the bounce page
    # POST used 2 requests (geometry, boot sector): this call added 2 requests and at
    # most one notification for its batch.
    assert result.counters["ring_requests"] == 4
    assert result.counters["notifications"] <= 3
    assert result.counters["bytes_copied"] == 0            # the firmware copied nothing
    # Every grant made was ended again: ring + bounce page (granted at POST, ended at
    # shutdown), the boot sector's page and the 16 pages of the call.
    assert result.counters["grant_ops"] == 2 * 2 + 2 * (1 + 16)


def test_direct_path_keeps_persistent_grants_for_a_buffer_read_again(tmp_path):
    """blkback offers feature-persistent: the frontend takes it, and a second read into
    the same buffer reuses the first one's grants (no grant operations at all)."""
    again = "mov si, offset dap\n mov ah, 0x42\n mov dl, 0x80\n int 0x13\n"
    image = disk(tmp_path, edd_program(0x42, 100, 127, before=again))
    trace = io.StringIO()
    result = runner.boot([str(image)], pv_path="direct", trace={"disk"}, trace_out=trace, timeout=20)
    assert (result.stop.reason, result.stop.exit_value) == ("exit", 0), result.console
    assert "persistent grants" in trace.getvalue()
    bulk = [r for r in ring_requests(trace.getvalue()) if r[1] >= 100]
    assert [(sector, nsegs) for _i, sector, nsegs, _g in bulk] == [(100, 11), (188, 5)] * 2
    assert bulk[0][3] + bulk[1][3] == bulk[2][3] + bulk[3][3]
    # As for one read: ring, bounce page, the boot sector's page and the 16 pages, each
    # granted once and ended once at shutdown.
    assert result.counters["grant_ops"] == 2 * 2 + 2 * (1 + 16)


def test_direct_path_data_is_right_and_unaligned_buffers_fall_back(tmp_path):
    for offset, expect_bounce in ((0, False), (1, True), (0x100, True)):
        image = disk(tmp_path, edd_program(0x42, 500, 9, buffer_off=offset), name=f"d{offset}.img")
        machine = Machine()
        platform = XenPlatform(machine.mem)
        devid = platform.attach_disk(str(image))
        trace = io.StringIO()
        bios = Bios(machine, BiosConfig(xen=platform.guest_interface(), pv_paths={devid: "direct"},
                                        trace={"disk"}, trace_out=trace))
        try:
            stop = machine.run(timeout=20)
            assert (stop.reason, stop.exit_value) == ("exit", 0)
            got = machine.mem.read(0x10000 + offset, 9 * 512)
            assert got == b"".join(pattern_sector(lba) for lba in range(500, 509))
            bulk = [r for r in ring_requests(trace.getvalue()) if r[1] >= 500]
            assert all(r[3] == [9] for r in bulk) == expect_bounce
        finally:
            close(machine, platform, bios)
