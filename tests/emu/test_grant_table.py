"""Grant table v1: the guest-side publish/revoke protocol and the checks a backend's
map_grant makes (Xen's map_grant_ref), including from another process."""

import os
import subprocess
import sys
import textwrap

import pytest

from pvboot.emu import memory
from pvboot.emu.memory import GuestMemory
from pvboot.emu.xen import grant_table as gt
from pvboot.emu.xen.abi import (GNTST_bad_gntref, GNTST_bad_page, GNTST_general_error, GNTST_okay,
                         GTF_permit_access, GTF_reading, GTF_readonly, GTF_sub_page,
                         GTF_writing, NR_RESERVED_ENTRIES, XEN_PAGE_SIZE)
from pvboot.emu.xen.grant_table import GrantError, GrantTable, GuestFrames

BACKEND = 0
PAGE = XEN_PAGE_SIZE


@pytest.fixture
def table(mem):
    t = GrantTable(mem, mem.xen_area_base, 1)
    yield t
    t.close()


def data_frame(mem, n=4):
    return mem.xen_area_base // PAGE + n


def test_layout_matches_guest_memory():
    m = GuestMemory(2)
    try:
        for frame in range(m.size // PAGE + 2):
            addr = frame * PAGE
            expected = m.is_writable_ram(addr, PAGE) and not (memory.VGA_BASE <= addr < memory.VGA_END)
            assert gt.is_ram_frame(frame, m.size) == expected, hex(addr)
    finally:
        m.close()


def test_allocator_skips_reserved_refs(table):
    assert table.nr_entries == 512
    first = table.alloc_ref()
    assert first == NR_RESERVED_ENTRIES == 8
    assert table.alloc_ref() == 9
    table.release_ref(first)
    assert table.alloc_ref() == first
    with pytest.raises(GrantError):
        table.release_ref(3)
    refs = set()
    while table.free_refs:
        refs.add(table.alloc_ref())
    assert min(refs) >= NR_RESERVED_ENTRIES and max(refs) == 511
    with pytest.raises(GrantError):
        table.alloc_ref()


def test_grant_access_writes_a_v1_entry(mem, table):
    table.grant_access(10, BACKEND, 0x1234, readonly=True)
    raw = bytes(mem.buf[table.base + 10 * 8:table.base + 11 * 8])
    assert raw == (GTF_permit_access | GTF_readonly).to_bytes(2, "little") + \
        BACKEND.to_bytes(2, "little") + (0x1234).to_bytes(4, "little")
    assert table.entry(10) == (GTF_permit_access | GTF_readonly, BACKEND, 0x1234)
    with pytest.raises(GrantError):
        table.grant_access(512, BACKEND, 1, False)
    assert table.end_access(10)
    assert table.entry(10)[0] == 0


def test_map_checks_like_xen(mem, table):
    frame = data_frame(mem)
    ref = table.grant(BACKEND, frame, readonly=False)
    # ref outside the table
    assert table.map_grant(512, BACKEND, False) == (GNTST_bad_gntref, None)
    assert table.map_grant(0xFFFFFFFF, BACKEND, True) == (GNTST_bad_gntref, None)
    # never granted
    assert table.map_grant(100, BACKEND, False) == (GNTST_general_error, None)
    # granted to someone else
    other = table.grant(2, frame, readonly=False)
    assert table.map_grant(other, BACKEND, False)[0] == GNTST_general_error
    # read-only grant mapped for writing; fine for reading
    ro = table.grant(BACKEND, frame, readonly=True)
    assert table.map_grant(ro, BACKEND, writable=True)[0] == GNTST_general_error
    status, view = table.map_grant(ro, BACKEND, writable=False)
    assert status == GNTST_okay and view.readonly and len(view) == PAGE
    view.release()
    assert table.unmap_grant(ro, writable=False) == GNTST_okay
    # sub-page grants cannot be mapped
    table.grant_access(20, BACKEND, frame, False)
    mem.buf[table.base + 20 * 8] |= GTF_sub_page & 0xFF
    mem.buf[table.base + 20 * 8 + 1] |= GTF_sub_page >> 8
    assert table.map_grant(20, BACKEND, False)[0] == GNTST_general_error
    # frames that are not guest RAM
    for bad_frame in (0xA0, 0xB8, 0xC0, 0xF0, 0xFF, mem.size // PAGE, 0xFFFFFFFF,
                      table.base // PAGE):
        r = table.grant(BACKEND, bad_frame, readonly=False)
        assert table.map_grant(r, BACKEND, False) == (GNTST_bad_page, None), hex(bad_frame)
        assert table.entry(r)[0] & (GTF_reading | GTF_writing) == 0
    # and RAM below 640 KiB and above 1 MiB is fine
    for good_frame in (0, 0x9F, 0x100, mem.size // PAGE - 1):
        r = table.grant(BACKEND, good_frame, readonly=False)
        status, view = table.map_grant(r, BACKEND, True)
        assert status == GNTST_okay, hex(good_frame)
        view.release()
        table.unmap_grant(r, True)
    status, view = table.map_grant(ref, BACKEND, True)
    assert status == GNTST_okay
    view.release()


def test_flags_while_mapped_and_end_access(mem, table):
    frame = data_frame(mem)
    ref = table.grant(BACKEND, frame, readonly=False)
    status, view = table.map_grant(ref, BACKEND, writable=True)
    assert status == GNTST_okay
    view[:5] = b"hello"
    assert mem.read(frame * PAGE, 5) == b"hello"
    assert table.flags(ref) == GTF_permit_access | GTF_reading | GTF_writing
    assert not table.end_access(ref)               # still mapped: refused, unchanged
    assert table.flags(ref) & GTF_permit_access
    # a second, read-only mapping of the same ref
    status, view2 = table.map_grant(ref, BACKEND, writable=False)
    assert status == GNTST_okay
    assert table.unmap_grant(ref, writable=True) == GNTST_okay
    assert table.flags(ref) == GTF_permit_access | GTF_reading   # writer gone, reader left
    assert not table.end_access(ref)
    assert table.unmap_grant(ref, writable=False) == GNTST_okay
    assert table.flags(ref) == GTF_permit_access
    assert table.unmap_grant(ref, writable=False) == GNTST_general_error   # not mapped
    view.release()
    view2.release()
    assert table.end_and_release(ref)
    assert table.map_grant(ref, BACKEND, False)[0] == GNTST_general_error  # revoked


def test_upgrade_read_mapping_to_write(mem, table):
    frame = data_frame(mem)
    ref = table.grant(BACKEND, frame, readonly=False)
    _, v1 = table.map_grant(ref, BACKEND, False)
    _, v2 = table.map_grant(ref, BACKEND, True)
    assert table.flags(ref) & GTF_writing
    ro = table.grant(BACKEND, frame, readonly=True)
    _, v3 = table.map_grant(ro, BACKEND, False)
    assert table.map_grant(ro, BACKEND, True)[0] == GNTST_general_error
    for v in (v1, v2, v3):
        v.release()
    table.unmap_grant(ref, False)
    table.unmap_grant(ref, True)
    table.unmap_grant(ro, False)
    assert table.mapped_refs() == {}
    assert table.end_access(ref) and table.end_access(ro)


def test_attach_keeps_entries_and_refuses_hypervisor_frames(mem, table):
    evtchn_frame = table.base // PAGE + 1
    ref = table.grant(BACKEND, evtchn_frame, readonly=False)
    backend = GrantTable.attach(mem, table.base, 1, hypervisor_frames=(evtchn_frame,))
    assert backend.entry(ref) == table.entry(ref)
    assert backend.map_grant(ref, BACKEND, False)[0] == GNTST_bad_page
    with pytest.raises(ValueError):
        GrantTable(mem, table.base + 1, 1)
    with pytest.raises(ValueError):
        GrantTable(mem, mem.size, 1)


def test_backend_in_another_process(mem, table, tmp_path):
    """A child maps the memfd by /proc path, maps our grants and fills the frame."""
    frame = data_frame(mem, 6)
    ref = table.grant(BACKEND, frame, readonly=False)
    ro_ref = table.grant(BACKEND, frame + 1, readonly=True)
    mem.write((frame + 1) * PAGE, b"guest data")
    script = textwrap.dedent("""
        import sys
        from pvboot.emu.xen.grant_table import GrantTable, GuestFrames
        path, size, base, ref, ro_ref = sys.argv[1], *map(int, sys.argv[2:])
        frames = GuestFrames(path, size)
        t = GrantTable.attach(frames, base, 1)
        st, view = t.map_grant(ref, 0, writable=True)
        assert st == 0, st
        st2, ro_view = t.map_grant(ro_ref, 0, writable=False)
        assert st2 == 0, st2
        view[:16] = bytes(ro_view[:10]) + b" back!"
        print(t.map_grant(ro_ref, 0, writable=True)[0])
        sys.stdout.flush()
        sys.stdin.readline()          # parent checks the flags while we hold the maps
        view.release(); ro_view.release()
        t.unmap_grant(ref, True); t.unmap_grant(ro_ref, False)
        print("unmapped")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, mem.path_for_other_process,
                             str(mem.size), str(table.base), str(ref), str(ro_ref)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        assert proc.stdout.readline().strip() == str(GNTST_general_error)
        assert table.flags(ref) == GTF_permit_access | GTF_reading | GTF_writing
        assert table.flags(ro_ref) == GTF_permit_access | GTF_readonly | GTF_reading
        assert not table.end_access(ref)
        assert mem.read(frame * PAGE, 16) == b"guest data back!"
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "unmapped"
    finally:
        proc.stdin.close()
        proc.wait(10)
    assert proc.returncode == 0
    assert table.end_access(ref) and table.end_access(ro_ref)


def test_guest_frames_checks(mem, tmp_path):
    frames = GuestFrames(mem.fd, None)
    assert frames.size == mem.size
    frames.close()
    with pytest.raises(ValueError):
        GuestFrames(mem.fd, mem.size + PAGE)
    with pytest.raises(ValueError):
        GuestFrames(mem.fd, 100)
    with pytest.raises(OSError):
        GuestFrames(str(tmp_path / "missing"), PAGE)
