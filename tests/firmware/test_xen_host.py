"""A batch worker's long-lived dom0 (emu/xen/host.py XenHost): guest after guest on one
xenstore daemon and one blkback server, each guest a domain of its own that is
destroyed at its end, each served its own disk; a backend that dies is replaced."""
import os
import signal

from pvboot.emu.machine import Machine
from pvboot.emu.xen.host import XenHost
from pvboot.emu.xen.platform import XenPlatform
from pvboot.firmware.bios import Bios, BiosConfig
from pvboot.tools.diskpattern import pattern_sector
from tests.firmware.test_xenblk import disk, edd_program

LBA, COUNT = 300, 16
BUFFER = 0x100000               # FFFF:0010


def _read_program(before=""):
    return edd_program(0x42, LBA, COUNT, buffer_seg=0xFFFF, buffer_off=0x10, before=before)


def _disk_with(tmp_path, name, fill=None, before=""):
    path = disk(tmp_path, _read_program(before), name=name)
    if fill is not None:
        with open(path, "r+b") as f:
            f.seek(LBA * 512)
            f.write(fill * (COUNT * 512))
    return path


def _boot(host, image, pv_timeout=5.0, on_start=None):
    """Boot `image` as one guest of `host`: (stop, the sectors read, domid)."""
    machine = Machine()
    platform = XenPlatform(machine.mem, host=host)
    try:
        platform.attach_disk(str(image))
        bios = Bios(machine, BiosConfig(xen=platform.guest_interface(), pv_timeout=pv_timeout))
        if on_start is not None:
            on_start(machine, platform)
        stop = machine.run(timeout=20)
        data = machine.mem.read(BUFFER, COUNT * 512)
        bios.shutdown()
        return stop, data, platform.domid
    finally:
        platform.close()
        machine.close()


def _nodes_of(host, domid):
    return sorted(path for path in host.daemon.snapshot()
                  if path.startswith("/local/domain/%d" % domid)
                  or path.startswith("/local/domain/0/backend/vbd/%d" % domid))


def test_one_blkback_server_serves_successive_guests_each_its_own_disk(tmp_path):
    ours = _disk_with(tmp_path, "a.img")
    theirs = _disk_with(tmp_path, "b.img", fill=b"\xbb")
    host = XenHost()
    try:
        server = host.idle[0].proc.pid
        first = _boot(host, ours)
        second = _boot(host, theirs)
        third = _boot(host, ours)
        for stop, _data, _domid in (first, second, third):
            assert (stop.reason, stop.exit_value) == ("exit", 0)
        expected = b"".join(pattern_sector(lba) for lba in range(LBA, LBA + COUNT))
        assert first[1] == third[1] == expected
        assert second[1] == b"\xbb" * (COUNT * 512)
        # One server process did it all, and is idle again for the next guest.
        assert host.started == 1 and [s.proc.pid for s in host.idle] == [server]
        assert len({first[2], second[2], third[2]}) == 3
    finally:
        host.close()


def test_a_guest_finds_nothing_of_the_guests_before_it(tmp_path):
    image = _disk_with(tmp_path, "a.img")
    host = XenHost()
    try:
        def leave_traces(machine, platform):
            xs = platform.guest_interface().xs
            xs.write("/local/domain/%d/data/secret" % platform.domid, "first guest's")
            xs.watch("/local/domain/%d/data" % platform.domid, "mine")
        stop, _data, first = _boot(host, image, on_start=leave_traces)
        assert stop.exit_value == 0
        # Destroyed: no node of it, none it owns, no watch or connection of it.
        assert _nodes_of(host, first) == []
        assert first not in host.daemon.nodes_owned()
        assert all(domid != first and not path.startswith("/local/domain/%d" % first)
                   for domid, path, _token in host.daemon.watches())
        assert host.daemon.connection_count == 1          # the toolstack's own
        # The domain id comes round again (1, 2, 3, 1): that guest starts empty.
        seen = []
        for _ in range(3):
            def look(machine, platform):
                seen.append((platform.domid, _nodes_of(host, platform.domid)))
            assert _boot(host, image, on_start=look)[0].exit_value == 0
        domid, nodes = seen[-1]
        assert domid == first
        assert not any("secret" in path for path in nodes)
        assert "/local/domain/%d/device/vbd/51712" % domid in nodes
        assert _nodes_of(host, first) == []
    finally:
        host.close()


def test_a_dead_blkback_server_is_noticed_and_replaced(tmp_path):
    image = _disk_with(tmp_path, "a.img")
    expected = b"".join(pattern_sector(lba) for lba in range(LBA, LBA + COUNT))
    host = XenHost()
    try:
        # Dead while idle: the next guest gets a new server.
        idle = host.idle[0].proc
        idle.kill()
        idle.wait()
        stop, data, _domid = _boot(host, image)
        assert (stop.exit_value, data) == (0, expected)
        assert host.started == 2
        host.refill()
        assert host.started == 3 and len(host.idle) == 1 and host.idle[0].alive()

        # Dead in the middle of a guest: that guest's read fails, the next one is served.
        def kill_on_go(machine, platform):
            server = platform.backends[0][1].server.proc
            machine.console_listeners.append(
                lambda byte: byte == ord("g") and os.kill(server.pid, signal.SIGKILL))
        go = "mov dx, 0x3f8\n mov al, 'g'\n out dx, al\n mov al, 10\n out dx, al\n"
        stop, _data, _domid = _boot(host, _disk_with(tmp_path, "go.img", before=go),
                                    pv_timeout=1.0, on_start=kill_on_go)
        assert (stop.reason, stop.exit_value) == ("exit", 0x80)
        assert host.idle == []          # the dead one was not taken back
        host.refill()
        stop, data, _domid = _boot(host, image)
        assert (stop.exit_value, data) == (0, expected)
        assert host.started == 4
    finally:
        host.close()


def test_a_vbd_that_cannot_be_served_is_that_guests_error_only(tmp_path):
    """A vbd whose image cannot be opened: its guest's platform reports the backend's
    error (the server's stderr for that vbd is the guest's own), and the same server
    then serves the next guest."""
    image = _disk_with(tmp_path, "a.img")
    host = XenHost()
    try:
        machine = Machine()
        platform = XenPlatform(machine.mem, host=host)
        try:
            devid = platform.attach_disk(str(tmp_path / "gone.img"))
            reason = platform.wait_backend(devid, 5.0)
            assert reason is not None and "gone.img" in reason
            lease = platform.backends[0][1]
            assert lease.wait(5.0) == 3                  # blkback's EXIT_SETUP, for this vbd
            assert any("gone.img" in line for line in platform.backend_errors())
        finally:
            platform.close()
            machine.close()
        stop, data, _domid = _boot(host, image)
        assert stop.exit_value == 0
        assert data == b"".join(pattern_sector(lba) for lba in range(LBA, LBA + COUNT))
        assert host.started == 1
    finally:
        host.close()


def test_a_guest_with_two_disks_leaves_two_servers_for_the_next(tmp_path):
    first, second = _disk_with(tmp_path, "a.img"), _disk_with(tmp_path, "b.img", b"\xbb")
    host = XenHost()
    try:
        for round_ in range(2):
            machine = Machine()
            platform = XenPlatform(machine.mem, host=host)
            try:
                devids = [platform.attach_disk(str(first)), platform.attach_disk(str(second))]
                assert [platform.wait_backend(devid, 5.0) for devid in devids] == [None, None]
            finally:
                platform.close()
                machine.close()
            # The first guest needed a server forked for it (retired with it); refill
            # keeps two from then on, and the second guest forks none.
            assert host.started == (2 if round_ == 0 else 3)
            host.refill()
            assert len(host.idle) == 2 and host.started == 3
    finally:
        host.close()
