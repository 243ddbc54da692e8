"""Event channels between domains that live in different OS processes.

The per-port state Xen keeps sits in one shared page of the Xen area of guest memory
(pvboot and blkback map the same memfd); each domain (or each backend process: its
"waker") has an eventfd as its upcall. Operations are named as in Xen's
event_channel.h. The pending bit is set before the eventfd is kicked, so no wake-up
is lost; every value read from the page is range-checked (the guest can scribble on
it). Page layout and wake-up rules: docs/xen.md.
"""

import fcntl
import os
import select
import struct
import time

__all__ = ["EventChannels", "EvtchnError", "EVTCHNSTAT_closed", "EVTCHNSTAT_unbound",
           "EVTCHNSTAT_interdomain", "EVTCHN_PORTS_PER_DOMAIN", "EVTCHN_NR_DOMAINS"]

PAGE_SIZE = 4096

# event_channel.h EVTCHNOP_status values; "closed" doubles as "free".
EVTCHNSTAT_closed = 0
EVTCHNSTAT_unbound = 1
EVTCHNSTAT_interdomain = 2

EVTCHN_PAGE_MAGIC = b"EVCH"
EVTCHN_PAGE_VERSION = 1
EVTCHN_HEADER_SIZE = 64
EVTCHN_ENTRY_SIZE = 16
EVTCHN_NR_DOMAINS = 4                 # domain ids 0..3 (pvboot uses 0 and 1)
EVTCHN_PORTS_PER_DOMAIN = 63          # 4 * 63 * 16 + 64 = 4096

_HEADER = struct.Struct("<4sHHHH")
_ENTRY = struct.Struct("<BBBBHHI4x")  # state, pending, mask, waker, owner, remote dom, remote port
_BINDING = struct.Struct("<HHI")      # owner, remote dom, remote port (at entry offset 4)
# Byte offsets inside an entry.
_STATE, _PENDING, _MASK, _WAKER = 0, 1, 2, 3
MAX_WAKERS = 255

_EVENTFD_ONE = (1).to_bytes(8, "little")


class EvtchnError(OSError):
    """An event channel operation Xen would fail (errno EINVAL, ENOSPC, ESRCH...)."""


def _einval(what):
    return EvtchnError(22, what)     # EINVAL


class EventChannels:
    """Event channel state in a shared page plus one eventfd per domain.

    Use ``create`` in the hypervisor process and ``attach`` in a backend process.
    ``eventfds`` maps domid -> eventfd; a process only needs the eventfds of the
    domains it waits as (``wait``/``poll_pending``) or sends to (``send``).
    """

    def __init__(self, page, eventfds, *, address=0, lock_fd=None, init=False,
                 owns_eventfds=False, wakers=None, own_waker=0):
        if len(page) != PAGE_SIZE:
            raise ValueError("the event channel page must be %d bytes" % PAGE_SIZE)
        self.page = page
        self.eventfds = dict(eventfds)
        self.wakers = dict(wakers or {})      # waker number -> eventfd
        if own_waker and own_waker not in self.wakers:
            raise ValueError("no eventfd for waker %d" % own_waker)
        self.own_waker = own_waker
        self._owns_eventfds = owns_eventfds
        # Guest-physical address of the page (what a backend is told on its command
        # line); with ``lock_fd`` (the memfd) it is also where the allocation lock sits.
        self.address = address
        self._lock_fd = lock_fd
        if init:
            page[:] = bytes(PAGE_SIZE)
            _HEADER.pack_into(page, 0, EVTCHN_PAGE_MAGIC, EVTCHN_PAGE_VERSION,
                              EVTCHN_NR_DOMAINS, EVTCHN_PORTS_PER_DOMAIN, EVTCHN_ENTRY_SIZE)
        else:
            header = _HEADER.unpack_from(page, 0)
            if header != (EVTCHN_PAGE_MAGIC, EVTCHN_PAGE_VERSION, EVTCHN_NR_DOMAINS,
                          EVTCHN_PORTS_PER_DOMAIN, EVTCHN_ENTRY_SIZE):
                raise ValueError("no event channel page here (header %r)" % (header,))

    @classmethod
    def create(cls, mem, address, domids=(0, 1)):
        """Hypervisor side: initialise the page at guest-physical ``address`` of ``mem``
        (a GuestMemory) and create one non-blocking eventfd per domain in ``domids``."""
        _check_page_address(mem, address)
        eventfds = {}
        try:
            for domid in domids:
                _check_domid(domid)
                eventfds[domid] = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except BaseException:
            for fd in eventfds.values():
                os.close(fd)
            raise
        return cls(mem.buf[address:address + PAGE_SIZE], eventfds, address=address,
                   lock_fd=mem.fd, init=True, owns_eventfds=True)

    @classmethod
    def attach(cls, mem, address, eventfds, wakers=None, own_waker=0):
        """Backend side: use the page the hypervisor initialised, with inherited eventfds
        (``{domid: fd}``, and ``{waker: fd}`` with this process's ``own_waker``); they are
        made non-blocking and closed by release()."""
        _check_page_address(mem, address)
        for fd in list(eventfds.values()) + list((wakers or {}).values()):
            os.set_blocking(fd, False)
        return cls(mem.buf[address:address + PAGE_SIZE], eventfds, address=address,
                   lock_fd=mem.fd, owns_eventfds=True, wakers=wakers, own_waker=own_waker)

    def new_waker(self):
        """Hypervisor side: a new eventfd for one more process of some domain; returns
        (waker number, fd) to hand to that process (attach's ``own_waker``)."""
        number = max(self.wakers, default=0) + 1
        if number > MAX_WAKERS:
            raise EvtchnError(24, "too many event channel wakers")      # EMFILE
        self.wakers[number] = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        return number, self.wakers[number]

    def wait_fd(self, dom):
        """The eventfd this process waits on as domain ``dom``."""
        if self.own_waker:
            return self.wakers[self.own_waker]
        return self.eventfds[dom]

    def release(self):
        """Close the eventfds this object owns and drop the page view (the resource
        cleanup; ``close(dom, port)`` is the Xen operation)."""
        if self._owns_eventfds:
            for fd in list(self.eventfds.values()) + list(self.wakers.values()):
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.eventfds = {}
        self.wakers = {}
        try:
            self.page.release()
        except BufferError:
            pass

    def eventfd(self, domid):
        """The eventfd that wakes domain ``domid`` (to pass to another process)."""
        return self.eventfds[domid]

    # ------------------------------------------------------------------ entries

    def _offset(self, domid, port):
        return (EVTCHN_HEADER_SIZE
                + (domid * EVTCHN_PORTS_PER_DOMAIN + port) * EVTCHN_ENTRY_SIZE)

    def _valid(self, domid, port):
        return (0 <= domid < EVTCHN_NR_DOMAINS
                and 0 < port < EVTCHN_PORTS_PER_DOMAIN)

    def status(self, domid, port):
        """(state, owner, remote domid, remote port, pending, masked) of a port."""
        if not self._valid(domid, port):
            raise _einval("port %d of domain %d does not exist" % (port, domid))
        state, pending, mask, _waker, owner, rdom, rport = _ENTRY.unpack_from(
            self.page, self._offset(domid, port))
        return state, owner, rdom, rport, bool(pending), bool(mask)

    def _put(self, domid, port, state, rdom, rport, fresh):
        """Write a port's binding; ``fresh`` (a port just allocated or freed) also clears
        its pending and mask bits, which a rebinding leaves alone, as Xen does."""
        off = self._offset(domid, port)
        if fresh:
            # A port allocated or bound here is woken through this process's eventfd.
            waker = self.own_waker if state != EVTCHNSTAT_closed else 0
            _ENTRY.pack_into(self.page, off, state, 0, 0, waker, domid, rdom, rport)
        else:
            # The owner may be sending on this port right now (no lock on send): the
            # binding must be complete before the state says it is valid.
            _BINDING.pack_into(self.page, off + 4, domid, rdom, rport)
            self.page[off + _STATE] = state

    def _lock(self):
        if self._lock_fd is not None:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_EX, PAGE_SIZE, self.address)

    def _unlock(self):
        if self._lock_fd is not None:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_UN, PAGE_SIZE, self.address)

    def _free_port(self, domid):
        page = self.page
        for port in range(1, EVTCHN_PORTS_PER_DOMAIN):
            if page[self._offset(domid, port) + _STATE] == EVTCHNSTAT_closed:
                return port
        raise EvtchnError(28, "domain %d has no free event channel port" % domid)   # ENOSPC

    # ------------------------------------------------------------------ operations

    def alloc_unbound(self, dom, remote_dom):
        """EVTCHNOP_alloc_unbound: a new port of ``dom`` that ``remote_dom`` may bind."""
        _check_domid(dom)
        _check_domid(remote_dom)
        self._lock()
        try:
            port = self._free_port(dom)
            self._put(dom, port, EVTCHNSTAT_unbound, remote_dom, 0, fresh=True)
        finally:
            self._unlock()
        return port

    def bind_interdomain(self, dom, remote_dom, remote_port):
        """EVTCHNOP_bind_interdomain: connect a new port of ``dom`` to ``remote_dom``'s
        ``remote_port``, which must be unbound and offered to ``dom``."""
        _check_domid(dom)
        _check_domid(remote_dom)
        if not self._valid(remote_dom, remote_port):
            raise _einval("remote port %r of domain %d does not exist" % (remote_port, remote_dom))
        self._lock()
        try:
            state, _, offered_to, _, _, _ = self.status(remote_dom, remote_port)
            if state != EVTCHNSTAT_unbound or offered_to != dom:
                raise _einval("port %d of domain %d is not offered to domain %d"
                              % (remote_port, remote_dom, dom))
            local_port = self._free_port(dom)
            self._put(dom, local_port, EVTCHNSTAT_interdomain, remote_dom, remote_port,
                      fresh=True)
            self._put(remote_dom, remote_port, EVTCHNSTAT_interdomain, dom, local_port,
                      fresh=False)
            # Sends to the unbound port were dropped: make sure the binder looks.
            self.page[self._offset(dom, local_port) + _PENDING] = 1
        finally:
            self._unlock()
        return local_port

    def close(self, dom, port):
        """EVTCHNOP_close: free ``port``; a connected peer's port becomes unbound."""
        if not self._valid(dom, port):
            raise _einval("port %r of domain %d does not exist" % (port, dom))
        self._lock()
        try:
            state, _, rdom, rport, _, _ = self.status(dom, port)
            if state == EVTCHNSTAT_closed:
                raise _einval("port %d of domain %d is not in use" % (port, dom))
            if (state == EVTCHNSTAT_interdomain and self._valid(rdom, rport)
                    and self.status(rdom, rport)[:4] == (EVTCHNSTAT_interdomain, rdom, dom, port)):
                # The peer keeps its port, now waiting for a new connection from us.
                self._put(rdom, rport, EVTCHNSTAT_unbound, dom, 0, fresh=False)
            self._put(dom, port, EVTCHNSTAT_closed, 0, 0, fresh=True)
        finally:
            self._unlock()

    def send(self, dom, port):
        """EVTCHNOP_send: mark the peer's port pending, then wake the peer domain."""
        if not self._valid(dom, port):
            raise _einval("port %r of domain %d does not exist" % (port, dom))
        page = self.page
        # One unpack of the entry (status() without its tuple): both ends send per request.
        state, _, _, _, _, rdom, rport = _ENTRY.unpack_from(page, self._offset(dom, port))
        if state == EVTCHNSTAT_unbound:
            return          # Xen silently drops it
        if state != EVTCHNSTAT_interdomain or not self._valid(rdom, rport):
            raise _einval("port %d of domain %d is not connected" % (port, dom))
        off = self._offset(rdom, rport)
        page[off + _PENDING] = 1
        if page[off + _MASK]:
            return          # pending stays set; unmask() delivers it
        self._wake(rdom, off)

    def _wake(self, dom, off):
        """Kick the eventfd of whoever waits for the port at entry offset ``off``."""
        waker = self.page[off + _WAKER]
        fd = self.wakers.get(waker) if waker else self.eventfds.get(dom)
        if fd is None:
            raise EvtchnError(19, "no eventfd for domain %d (waker %d) in this process"
                              % (dom, waker))      # ENODEV
        try:
            os.write(fd, _EVENTFD_ONE)
        except BlockingIOError:
            pass            # counter saturated: the peer has plenty of wake-ups queued

    def mask(self, dom, port):
        if not self._valid(dom, port):
            raise _einval("port %r of domain %d does not exist" % (port, dom))
        self.page[self._offset(dom, port) + _MASK] = 1

    def unmask(self, dom, port):
        """EVTCHNOP_unmask: a notification that arrived while masked is delivered now."""
        if not self._valid(dom, port):
            raise _einval("port %r of domain %d does not exist" % (port, dom))
        off = self._offset(dom, port)
        self.page[off + _MASK] = 0
        if self.page[off + _PENDING]:
            self._wake(dom, off)

    def is_pending(self, dom, port):
        return bool(self._valid(dom, port) and self.page[self._offset(dom, port) + _PENDING])

    def clear_pending(self, dom, port):
        if self._valid(dom, port):
            self.page[self._offset(dom, port) + _PENDING] = 0

    # ------------------------------------------------------------------ waiting

    def drain(self, dom):
        """Reset ``dom``'s eventfd counter (non-blocking); True if it was non-zero."""
        try:
            os.read(self.wait_fd(dom), 8)
            return True
        except BlockingIOError:
            return False

    def poll_pending(self, dom, ports=None):
        """Pending, unmasked ports of ``dom`` (restricted to ``ports`` if given); clears
        their pending bits and drains the eventfd first.  Never blocks."""
        if self.own_waker or dom in self.eventfds:
            self.drain(dom)
        page = self.page
        found = []
        candidates = range(1, EVTCHN_PORTS_PER_DOMAIN) if ports is None else ports
        for port in candidates:
            if not self._valid(dom, port):
                continue
            off = self._offset(dom, port)
            if page[off + _PENDING] and not page[off + _MASK]:
                page[off + _PENDING] = 0
                found.append(port)
        return found

    def wait(self, dom, timeout, ports=None):
        """Wait up to ``timeout`` seconds for ports of ``dom`` to become pending; returns
        them (pending bits cleared), or [] on timeout."""
        fd = self.wait_fd(dom)
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            found = self.poll_pending(dom, ports)
            if found:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                # One last look: a send may set pending between the poll and now
                # without its eventfd write having reached us (it is on its way).
                return self.poll_pending(dom, ports)


def _check_domid(domid):
    if not (isinstance(domid, int) and 0 <= domid < EVTCHN_NR_DOMAINS):
        raise EvtchnError(3, "no domain %r" % (domid,))      # ESRCH


def _check_page_address(mem, address):
    if address % PAGE_SIZE or address < 0 or address + PAGE_SIZE > mem.size:
        raise ValueError("event channel page address %#x is not a page of guest memory"
                         % address)
