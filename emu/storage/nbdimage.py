"""A disk image served by the QEMU block layer: a qemu-storage-daemon child and an NBD
connection to it, behind the same BlockImage interface as a raw file.

The layer the guest writes to is chosen here:

* persist: the image itself, opened read-write through its own format;
* read-only: the image, read-only (the export refuses writes);
* otherwise: a qcow2 overlay whose backing file is the image (backing format explicit,
  so nothing is probed again; QEMU opens backing files read-only).  It lives in the
  run's private directory and goes with it, unless `save_overlay` names where to keep
  it: then it is a valid qcow2 that `qemu-img commit` folds back into the image.
"""
import os
import shutil
import tempfile

from pvboot.emu.diskimage import SECTOR_SIZE, BlockImage, DiskImageError
from pvboot.emu.storage.daemon import StorageDaemon, StorageError, file_node
from pvboot.emu.storage.nbd import NbdClient, NbdError
from pvboot.emu.storage.probe import qemu_img
from pvboot.emu.storage.readahead import ReadAhead


class NbdImage(BlockImage):
    """``path`` in format ``fmt`` (already checked with probe.resolve_format)."""

    def __init__(self, path, fmt, *, read_only=False, persist=False, run_dir=None,
                 save_overlay=None, kind="hd"):
        self._describe(path, read_only, persist, kind)
        self.format = fmt
        self.overlay = None
        self.save_overlay = save_overlay
        self._daemon = self._client = None
        self._keep_overlay = False
        # Unix socket paths are limited to 107 bytes: a short private directory.
        self._dir = tempfile.mkdtemp(prefix="sd-", dir=run_dir)
        try:
            blockdev = self._top_layer()
            self._daemon = StorageDaemon(blockdev, self._dir, writable=not read_only)
            self._client = NbdClient.connect_unix(self._daemon.nbd_path)
        except (StorageError, NbdError, OSError) as e:
            self.close()
            raise DiskImageError(f"disk image {self.path}: {e}") from None
        except BaseException:
            self.close()
            raise
        self._keep_overlay = save_overlay is not None
        self.size = self._client.size
        self.sectors = self.size // SECTOR_SIZE
        self._ahead = ReadAhead(self.sectors)
        self._onward = False           # the next window's read is due (_read_ahead)
        if self.size % SECTOR_SIZE:
            self.notes.append(f"disk image {self.path}: virtual size {self.size} is not a "
                              f"multiple of {SECTOR_SIZE}; the tail is not part of the disk")

    def _top_layer(self):
        image = os.path.abspath(self.path)
        if self.persist:
            return {"driver": self.format, "file": file_node(image, False)}
        if self.read_only and self.save_overlay is None:
            return {"driver": self.format, "read-only": True, "file": file_node(image, True)}
        if self.save_overlay is not None:
            overlay = os.path.abspath(self.save_overlay)
            if os.path.lexists(overlay):
                raise StorageError(f"--save-overlay {self.save_overlay}: exists already "
                                   "(not overwriting it)")
        else:
            overlay = os.path.join(self._dir, "overlay.qcow2")
        qemu_img(["create", "-q", "-f", "qcow2", "-b", image, "-F", self.format, overlay])
        self.overlay = overlay
        return {"driver": "qcow2", "read-only": self.read_only,
                "file": file_node(overlay, self.read_only)}

    @property
    def daemon(self):
        return self._daemon

    # -- data path ---------------------------------------------------------------------
    def read_into_parts(self, lba, parts):
        """Consecutive sectors spread over several buffers, filled in order: one NBD read
        (or a copy out of the read-ahead window)."""
        error = self.read_batch([(lba, parts)])[0]
        if error is not None:
            raise error

    def read_batch(self, reads):
        """[(lba, parts)]: the reads the read-ahead window holds are copied out of it, a
        read that reaches into the read-ahead in flight waits for it and is copied out
        of that, the others are in flight at once (one NBD command each, the first
        sequential one also refilling the window; replies taken in whatever order the
        server sends them).  When a sequential read filled the window, the next
        window's read is due: pump() sends it once the caller has answered (blkback,
        right after pushing its responses), or the next call does first.  One entry
        per read: None or the error that failed it alone; raises NbdError if the
        connection broke."""
        if self._onward:
            self._read_ahead()
        errors = [None] * len(reads)
        ahead = self._ahead
        client = self._client
        commands, indexes = [], []
        refill = None                  # index into commands of the refilling read
        onward = False                 # a sequential window filled: send the next one
        for index, (lba, parts) in enumerate(reads):
            try:
                parts, total = self._parts(lba, parts)
            except ValueError as e:
                errors[index] = e
                continue
            sectors = total // SECTOR_SIZE
            follows = ahead.sequential(lba, sectors)
            if ahead.hit(lba, parts, sectors):
                continue
            if ahead.holds(lba, sectors) and ahead.take(lba, parts, sectors,
                                                        client.take(ahead.handle) is None):
                onward = onward or follows
                continue
            if follows and refill is None:
                extra = ahead.refill(lba, sectors)
                if extra is not None:
                    refill = len(commands)
                    parts = parts + [extra]
            commands.append((lba * SECTOR_SIZE, parts))
            indexes.append(index)
        try:
            results = client.read_batch(commands)
        except BaseException:
            ahead.filled(False)
            raise
        if refill is not None:
            ahead.filled(results[refill] is None)
            if results[refill] is not None:
                # The failure may lie in the read-ahead part: the request alone decides.
                lba, parts = reads[indexes[refill]]
                results[refill] = client.read_batch(
                    [(lba * SECTOR_SIZE, self._parts(lba, parts)[0])])[0]
            else:
                onward = True
        for index, error in zip(indexes, results):
            errors[index] = error
        # Not sent now: the daemon it wakes would compete with this call's answer
        # for the CPU (measured: docs/storage.md).
        self._onward = self._onward or onward
        return errors

    def _read_ahead(self):
        """Send the read of the window after this one, not waiting for it; first take
        in the reply of an earlier one still out (one read-ahead at a time)."""
        ahead = self._ahead
        self._onward = False
        try:
            if ahead.handle is not None:
                self._client.take(ahead.handle)
                ahead.settled()
            window = ahead.next_window()
            if window is not None:
                lba, buffer = window
                ahead.went_out(self._client.send_read(lba * SECTOR_SIZE, [buffer]))
        except NbdError:
            # The guest's reads are done; a broken connection fails the next command.
            ahead.handle = None

    def pump(self):
        """Between requests (blkback calls this while it looks for the next one): send
        the read-ahead that is due, then take in what has arrived of it, without
        waiting; True while there is more.  The daemon can only send as much as its
        socket buffer holds (about 200 KiB) before someone reads."""
        if self._client is None:
            return False                # closed
        if self._onward:
            self._read_ahead()
            return True
        if self._ahead.handle is None:
            return False
        try:
            return self._client.pump()
        except NbdError:
            return False            # the connection broke: the next command says so

    def write_from_parts(self, lba, parts):
        if self.read_only:
            raise DiskImageError(f"disk image {self.path}: read-only")
        parts, _total = self._parts(lba, parts)
        self._ahead.drop()
        self._client.write_from(lba * SECTOR_SIZE, parts)

    def flush(self):
        self._client.flush()

    def close(self):
        """Disconnect, stop the daemon, drop the throwaway overlay (a saved one stays)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if getattr(self, "_ahead", None) is not None:
            self._ahead.close()
        if self._daemon is not None:
            self._daemon.stop()
            self._daemon = None
        if self.overlay is not None and not self._keep_overlay:
            try:
                os.unlink(self.overlay)           # a --save-overlay file we made in vain
            except FileNotFoundError:
                pass
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __repr__(self):
        mode = "read-only" if self.read_only else ("persist" if self.persist else "overlay")
        return f"NbdImage({self.path!r}, {self.format}, {self.sectors} sectors, {mode})"
