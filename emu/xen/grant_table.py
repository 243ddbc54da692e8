"""Grant table v1 in guest RAM, shared by the guest side (grant / end access, in the
pvboot process) and a backend process (map / unmap, with the checks of Xen's
map_grant_ref).  Python has no cross-process cmpxchg: every flags update is one aligned
16-bit store, re-checked after the store (the remaining window: docs/pv-block.md).
"""

import mmap
import os

from pvboot.emu.memmap import is_ram_frame

from .abi import (GNTST_bad_gntref, GNTST_bad_page, GNTST_general_error, GNTST_okay,
                  GRANT_ENTRY_V1_SIZE, GTF_permit_access, GTF_reading, GTF_readonly,
                  GTF_sub_page, GTF_type_mask, GTF_writing, NR_RESERVED_ENTRIES,
                  XEN_PAGE_SIZE)

__all__ = ["GrantTable", "GuestFrames", "GrantError", "grant_table_frames",
           "is_ram_frame", "NR_RESERVED_ENTRIES"]

GRANT_ENTRIES_PER_FRAME = XEN_PAGE_SIZE // GRANT_ENTRY_V1_SIZE    # 512

# Offsets inside one grant_entry_v1, in units of the view they are read through.
_FLAGS_U16 = 0      # flags is u16 #0 of the entry
_DOMID_U16 = 1      # domid is u16 #1
_FRAME_U32 = 1      # frame is u32 #1


class GrantError(Exception):
    """A guest-side grant operation on a ref outside the table."""


def grant_table_frames(base, nr_frames):
    """The guest frame numbers holding a grant table at ``base``."""
    first = base // XEN_PAGE_SIZE
    return range(first, first + nr_frames)


class GuestFrames:
    """The backend's own mapping of the guest's RAM memfd (what blkback maps frames from).

    ``source`` is a path another process may open (``GuestMemory.path_for_other_process``,
    i.e. /proc/<pid>/fd/<n>) or an inherited file descriptor number.  Only ``buf``,
    ``size`` and ``fd`` are used by the grant and event channel code, the same
    attributes ``emu.memory.GuestMemory`` has, so either can back a GrantTable.
    """

    def __init__(self, source, size):
        if isinstance(source, int):
            self.fd = os.dup(source)
        else:
            self.fd = os.open(source, os.O_RDWR | os.O_CLOEXEC)
        try:
            actual = os.fstat(self.fd).st_size
            if size is None:
                size = actual
            if size <= 0 or size % XEN_PAGE_SIZE or size > actual:
                raise ValueError("guest memory of %d bytes cannot be mapped as %d bytes"
                                 % (actual, size))
            self.mmap = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise
        self.size = size
        self.buf = memoryview(self.mmap)

    def view(self, addr, length):
        return self.buf[addr:addr + length]

    def close(self):
        try:
            self.buf.release()
            self.mmap.close()
        except BufferError:
            pass    # a frame view is still held; the mapping goes with it
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class GrantTable:
    """A v1 grant table of ``nr_frames`` frames at guest-physical ``base``.

    ``mem`` is anything with ``buf`` (a writable memoryview of all guest memory) and
    ``size``: ``emu.memory.GuestMemory`` in the pvboot process, ``GuestFrames`` in a
    backend.  The constructor clears the table (a fresh domain's table); a backend
    attaching to a live table uses ``GrantTable.attach``.
    """

    def __init__(self, mem, base, nr_frames=1, *, clear=True):
        if base % XEN_PAGE_SIZE:
            raise ValueError("grant table base %#x is not page aligned" % base)
        if nr_frames < 1:
            raise ValueError("a grant table has at least one frame")
        length = nr_frames * XEN_PAGE_SIZE
        if base < 0 or base + length > mem.size:
            raise ValueError("grant table %#x+%#x lies outside guest memory" % (base, length))
        self.mem = mem
        self.base = base
        self.nr_frames = nr_frames
        self.nr_entries = nr_frames * GRANT_ENTRIES_PER_FRAME
        self.table = mem.buf[base:base + length]
        self._u16 = self.table.cast("H")
        self._u32 = self.table.cast("I")
        # Frames that are the hypervisor's, not guest RAM: a backend must not map them.
        self.hypervisor_frames = set(grant_table_frames(base, nr_frames))
        # Guest side: refs handed out by alloc_ref (reserved ones are never handed out).
        self.free_refs = list(range(self.nr_entries - 1, NR_RESERVED_ENTRIES - 1, -1))
        # Backend side: ref -> [read-only pins, writable pins], like Xen's active entries.
        self._pins = {}
        if clear:
            self.table[:] = bytes(length)

    @classmethod
    def attach(cls, mem, base, nr_frames=1, hypervisor_frames=()):
        """The backend's handle on a table the guest already uses (nothing is cleared).
        ``hypervisor_frames`` adds frames (e.g. the event channel page) it must refuse."""
        table = cls(mem, base, nr_frames, clear=False)
        table.hypervisor_frames.update(hypervisor_frames)
        table.free_refs = []
        return table

    # ------------------------------------------------------------------ entries

    def entry(self, ref):
        """(flags, domid, frame) of ``ref`` as currently in shared memory."""
        self._check_ref(ref)
        return (self._u16[ref * 4 + _FLAGS_U16], self._u16[ref * 4 + _DOMID_U16],
                self._u32[ref * 2 + _FRAME_U32])

    def flags(self, ref):
        self._check_ref(ref)
        return self._u16[ref * 4 + _FLAGS_U16]

    def _check_ref(self, ref):
        if not 0 <= ref < self.nr_entries:
            raise GrantError("grant ref %d outside the table (%d entries)" % (ref, self.nr_entries))

    # ------------------------------------------------------------------ guest side

    def alloc_ref(self):
        """A free grant ref (never one of the reserved refs 0..7)."""
        if not self.free_refs:
            raise GrantError("no free grant refs")
        return self.free_refs.pop()

    def release_ref(self, ref):
        """Give a ref back to the allocator (its access must have been ended)."""
        if ref < NR_RESERVED_ENTRIES or ref >= self.nr_entries:
            raise GrantError("grant ref %d was not allocated" % ref)
        self.free_refs.append(ref)

    def grant_access(self, ref, domid, frame, readonly):
        """Let domain ``domid`` map guest frame ``frame`` through ``ref``."""
        self._check_ref(ref)
        self._u16[ref * 4 + _DOMID_U16] = domid
        self._u32[ref * 2 + _FRAME_U32] = frame
        # Flags last: the backend may look at the entry as soon as the type is valid.
        self._u16[ref * 4 + _FLAGS_U16] = GTF_permit_access | (GTF_readonly if readonly else 0)

    def end_access(self, ref):
        """Revoke ``ref``; False (nothing changed) while the backend still maps it."""
        self._check_ref(ref)
        i = ref * 4 + _FLAGS_U16
        flags = self._u16[i]
        if flags & (GTF_reading | GTF_writing):
            return False
        self._u16[i] = 0
        # A backend that loaded the flags before our store may just have stored them
        # back with GTF_reading: then the page is in use after all.
        if self._u16[i] & (GTF_reading | GTF_writing):
            return False
        return True

    def grant(self, domid, frame, readonly):
        """alloc_ref + grant_access: returns the ref."""
        ref = self.alloc_ref()
        self.grant_access(ref, domid, frame, readonly)
        return ref

    def end_and_release(self, ref):
        """end_access and, if that worked, give the ref back to the allocator."""
        if not self.end_access(ref):
            return False
        self.release_ref(ref)
        return True

    # ------------------------------------------------------------------ backend side

    def map_grant(self, ref, domid=0, writable=False):
        """Map ``ref`` for domain ``domid``: (GNTST_* status, memoryview of the frame or None).

        A read-only mapping returns a read-only view, so the backend cannot write
        into a page the guest only lent for reading."""
        if not 0 <= ref < self.nr_entries:
            return GNTST_bad_gntref, None
        i = ref * 4 + _FLAGS_U16
        pins = self._pins.get(ref)
        flags = self._u16[i]
        if pins is None:
            if ((flags & (GTF_type_mask | GTF_sub_page)) != GTF_permit_access
                    or self._u16[ref * 4 + _DOMID_U16] != domid):
                return GNTST_general_error, None
            if writable and flags & GTF_readonly:
                return GNTST_general_error, None
            frame = self._u32[ref * 2 + _FRAME_U32]
            if frame in self.hypervisor_frames or not is_ram_frame(frame, self.mem.size):
                return GNTST_bad_page, None
            new = flags | GTF_reading | (GTF_writing if writable else 0)
            self._u16[i] = new
            # The guest revoked or changed the entry between our load and store.
            if (self._u16[i] != new or self._u16[ref * 4 + _DOMID_U16] != domid
                    or self._u32[ref * 2 + _FRAME_U32] != frame):
                self._u16[i] = self._u16[i] & ~(GTF_reading | GTF_writing)
                return GNTST_general_error, None
            pins = self._pins[ref] = [0, 0, frame]
        else:
            frame = pins[2]
            if writable and not pins[1]:
                # First writable pin of a ref already mapped read-only.
                if flags & GTF_readonly:
                    return GNTST_general_error, None
                self._u16[i] = flags | GTF_reading | GTF_writing
        pins[1 if writable else 0] += 1
        start = frame * XEN_PAGE_SIZE
        view = self.mem.buf[start:start + XEN_PAGE_SIZE]
        return GNTST_okay, (view if writable else view.toreadonly())

    def unmap_grant(self, ref, writable=False):
        """Drop one mapping made by map_grant; clears GTF_writing / GTF_reading when the
        last writable / last mapping of ``ref`` goes.  Returns a GNTST_* status."""
        pins = self._pins.get(ref)
        if pins is None or not pins[1 if writable else 0]:
            return GNTST_general_error
        pins[1 if writable else 0] -= 1
        clear = 0
        if not pins[1]:
            clear |= GTF_writing
        if not pins[0] and not pins[1]:
            clear |= GTF_reading
            del self._pins[ref]
        if clear:
            i = ref * 4 + _FLAGS_U16
            self._u16[i] = self._u16[i] & ~clear
        return GNTST_okay

    def mapped_refs(self):
        """Refs this process currently maps (a backend unmaps them all at disconnect)."""
        return dict((ref, (p[0], p[1])) for ref, p in self._pins.items())

    def close(self):
        for view in (self._u16, self._u32, self.table):
            try:
                view.release()
            except BufferError:
                pass
