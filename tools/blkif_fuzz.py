"""`pvboot fuzz blkif N`: random blkif requests through the real ring to a real blkback
process, each answer checked against a model of what Linux xen-blkback answers.

The model (expected_status) says OKAY, ERROR or EOPNOTSUPP from the request alone; the
oracle (BlkifOracle) also keeps the disk as blkback should see it (image + overlay
writes) and the guest's data pages, so after every answer it checks that a read put
exactly the disk's bytes into the granted sectors in segment order, that nothing
else in those pages moved, that a write reached the disk and a failed request changed
nothing, and that every grant was unmapped.  tests/emu/test_blkback_properties.py
drives the same oracle with hypothesis.
"""
import dataclasses
import hashlib
import os
import random
import sys
import tempfile
import time

from pvboot.emu.xen.abi import (BLKIF_ABIS, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD,
                                BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ,
                                BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP,
                                BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BLKIF_SECTOR_SIZE,
                                BLKIF_SECTORS_PER_PAGE, NR_RESERVED_ENTRIES, XEN_PAGE_SIZE,
                                XenbusStateInitWait, pack_discard, pack_indirect)
from pvboot.tools import options
from pvboot.tools.blkif_client import (DOMID_BACKEND, FIRST_DATA_FRAME, NR_DATA_PAGES,
                                       BlkifFrontend, FrontendError)

U64 = 1 << 64
DISK_SECTORS = 256                # small, so requests near and over the end are common
EXIT_OK, EXIT_PROBLEM = 0, 1
# How a segment's grant ref is made: a grant the backend may map writable, a read-only
# grant, one to another domain, a free ref never granted, one past the table, a
# reserved ref.
GRANT_KINDS = ("rw", "ro", "other-domain", "never", "beyond", "reserved")
OTHER_DOMID = 2


@dataclasses.dataclass(frozen=True)
class Segment:
    page: int             # data page index (0 .. NR_DATA_PAGES-1); pages may repeat
    first: int            # first_sect and last_sect as sent (u8, may be invalid)
    last: int
    grant: str            # one of GRANT_KINDS


@dataclasses.dataclass(frozen=True)
class Request:
    op: int               # u8, any value
    sector: int           # u64
    segments: tuple       # at most BLKIF_MAX_SEGMENTS_PER_REQUEST Segment
    nr_segments: int      # u8 as sent; may differ from len(segments)
    req_id: int           # u64
    handle: int           # u16
    fill: int             # seed of the bytes the used data pages hold before the request


def expected_status(req, disk_sectors, read_only=False):
    """What Linux xen-blkback answers (dispatch_rw_block_io's checks, in its order)."""
    op = req.op
    if op not in (BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_FLUSH_DISKCACHE):
        return BLKIF_RSP_EOPNOTSUPP        # barrier, discard, indirect: not advertised
    if op == BLKIF_OP_FLUSH_DISKCACHE and read_only:
        return BLKIF_RSP_EOPNOTSUPP
    nseg = req.nr_segments
    if nseg == 0:
        return BLKIF_RSP_OKAY if op == BLKIF_OP_FLUSH_DISKCACHE else BLKIF_RSP_ERROR
    if nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST:
        return BLKIF_RSP_ERROR
    writing = op != BLKIF_OP_READ
    if writing and read_only:
        return BLKIF_RSP_ERROR
    # The ring slot holds BLKIF_MAX_SEGMENTS_PER_REQUEST descriptors; those the request
    # did not fill are zero (gref 0, a reserved ref, sectors 0..0).
    segs = (req.segments + (Segment(0, 0, 0, "reserved"),) * nseg)[:nseg]
    if any(s.last >= BLKIF_SECTORS_PER_PAGE or s.last < s.first for s in segs):
        return BLKIF_RSP_ERROR
    if req.sector + sum(s.last - s.first + 1 for s in segs) > disk_sectors:
        return BLKIF_RSP_ERROR
    mappable = ("rw", "ro") if writing else ("rw",)
    if any(s.grant not in mappable for s in segs):
        return BLKIF_RSP_ERROR
    return BLKIF_RSP_OKAY


def random_request(rng, disk_sectors=DISK_SECTORS):
    """A random request, mostly well-formed, with every field sometimes out of range."""
    roll = rng.random()
    if roll < 0.45:
        op = BLKIF_OP_READ
    elif roll < 0.75:
        op = BLKIF_OP_WRITE
    elif roll < 0.82:
        op = BLKIF_OP_FLUSH_DISKCACHE
    else:
        op = rng.choice((BLKIF_OP_WRITE_BARRIER, 4, BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT,
                         rng.randrange(7, 256)))
    n = rng.randint(1, BLKIF_MAX_SEGMENTS_PER_REQUEST) if rng.random() < 0.95 else 0
    segments = []
    for _ in range(n):
        if rng.random() < 0.98:
            first = rng.randrange(BLKIF_SECTORS_PER_PAGE)
            last = rng.randrange(first, BLKIF_SECTORS_PER_PAGE)
        else:
            first, last = rng.randrange(256), rng.randrange(256)
        grant = "rw" if rng.random() < 0.98 else rng.choice(GRANT_KINDS)
        segments.append(Segment(rng.randrange(NR_DATA_PAGES), first, last, grant))
    nr_segments = n if rng.random() < 0.95 else rng.randrange(256)
    roll = rng.random()
    if roll < 0.85:
        sector = rng.randrange(disk_sectors)
    elif roll < 0.95:
        sector = max(0, disk_sectors + rng.randrange(-12, 5))
    elif roll < 0.98:
        sector = U64 - 1 - rng.randrange(100)
    else:
        sector = rng.randrange(U64)
    return Request(op, sector, tuple(segments), nr_segments, rng.randrange(U64),
                   rng.randrange(1 << 16), rng.randrange(1 << 32))


class BlkifOracle:
    """A connected frontend plus the model of the disk behind it (`disk`: the image's
    bytes, updated by every write blkback accepted)."""

    def __init__(self, frontend, disk_bytes, read_only=False, timeout=5.0):
        self.fe = frontend
        self.disk = bytearray(disk_bytes)
        self.sectors = len(disk_bytes) // BLKIF_SECTOR_SIZE
        self.read_only = read_only
        self.timeout = timeout
        base = (frontend.base_frame + FIRST_DATA_FRAME) * XEN_PAGE_SIZE
        self.data_area = frontend.mem.view(base, NR_DATA_PAGES * XEN_PAGE_SIZE)
        self.ram_digest = self._ram_digest()

    def _ram_digest(self):
        """Digest of guest RAM below the Xen area: no request may touch it."""
        mem = self.fe.mem
        with mem.view(0, mem.xen_area_base) as ram:
            return hashlib.sha256(ram).digest()

    def ram_untouched(self):
        return self._ram_digest() == self.ram_digest

    def _grant(self, seg):
        fe = self.fe
        frame = fe.data_frame(seg.page)
        if seg.grant in ("rw", "ro"):
            return fe.gnttab.grant(DOMID_BACKEND, frame, seg.grant == "ro"), True
        if seg.grant == "other-domain":
            return fe.gnttab.grant(OTHER_DOMID, frame, False), True
        if seg.grant == "never":
            return fe.gnttab.free_refs[0], False       # free: its entry grants nothing
        if seg.grant == "beyond":
            return fe.gnttab.nr_entries + seg.page * 977, False
        return seg.page % NR_RESERVED_ENTRIES, False

    def _queue(self, req, refs):
        ring = self.fe.ring
        if req.op == BLKIF_OP_DISCARD:
            ring.put_request_bytes(pack_discard(ring.abi, req.req_id, req.handle & 1, req.handle,
                                                req.sector, req.nr_segments * 8))
        elif req.op == BLKIF_OP_INDIRECT:
            ring.put_request_bytes(pack_indirect(ring.abi, req.req_id, req.handle & 0xFF,
                                                 req.nr_segments, req.handle, req.sector,
                                                 refs[:8]))
        else:
            ring.put_request(req.req_id, req.op, req.sector,
                             [(ref, s.first, s.last) for ref, s in zip(refs, req.segments)],
                             nr_segments=req.nr_segments, handle=req.handle)
        self.fe.push()

    def check(self, req):
        """Send `req`, wait (bounded) for its answer; None if all is as the model says,
        else what is wrong (one line).  Raises FrontendError if blkback stops answering."""
        fe, area = self.fe, self.data_area
        fill = random.Random(req.fill)
        for page in sorted({s.page for s in req.segments}):
            area[page * XEN_PAGE_SIZE:(page + 1) * XEN_PAGE_SIZE] = fill.randbytes(XEN_PAGE_SIZE)
        before = bytes(area)
        granted = [self._grant(s) for s in req.segments]
        try:
            self._queue(req, [ref for ref, _ in granted])
            resp = fe.wait_response(self.timeout)
        finally:
            still_mapped = [ref for ref, owned in granted
                            if owned and not fe.gnttab.end_and_release(ref)]
        if resp is None:
            alive = fe.proc.poll() is None
            raise FrontendError("no answer within %gs (blkback %s): %s"
                                % (self.timeout, "alive" if alive else "exited", fe.stderr()))
        want = expected_status(req, self.sectors, self.read_only)
        if (resp.id, resp.operation) != (req.req_id, req.op):
            return "answer id %#x op %d for request id %#x op %d" % (
                resp.id, resp.operation, req.req_id, req.op)
        if resp.status != want:
            return "status %d, the model says %d" % (resp.status, want)
        if still_mapped:
            return "grants %s still mapped after the answer" % still_mapped
        expected = bytearray(before)
        if want == BLKIF_RSP_OKAY and req.nr_segments:
            self._apply(req, expected, before)
        if area != expected:
            diff = next(i for i in range(len(expected)) if area[i] != expected[i])
            return "guest data page %d byte %d is %#x, the model says %#x" % (
                diff // XEN_PAGE_SIZE, diff % XEN_PAGE_SIZE, area[diff], expected[diff])
        return None

    def _apply(self, req, expected, before):
        """The effect of an accepted read (into `expected`) or write (into the disk
        model), segment after segment: the order a sequential copy gives."""
        pos = req.sector * BLKIF_SECTOR_SIZE
        for s in req.segments[:req.nr_segments]:
            start = s.page * XEN_PAGE_SIZE + s.first * BLKIF_SECTOR_SIZE
            size = (s.last - s.first + 1) * BLKIF_SECTOR_SIZE
            if req.op == BLKIF_OP_READ:
                expected[start:start + size] = self.disk[pos:pos + size]
            else:
                self.disk[pos:pos + size] = before[start:start + size]
            pos += size

    def close(self):
        self.data_area.release()


def disk_bytes(seed, sectors=DISK_SECTORS):
    """The fuzzed image: random bytes, so a sector read from a wrong offset shows."""
    return random.Random(seed ^ 0xB1C1F).randbytes(sectors * BLKIF_SECTOR_SIZE)


def build_parser(prog="pvboot fuzz blkif"):
    parser = options.OneLineParser(prog=prog, description=(
        "Send N random blkif requests (valid and malformed) through the ring to a blkback "
        "process on a scratch image and check every answer against a model of Linux "
        "xen-blkback: the status, the bytes a read puts in the granted sectors, nothing "
        "else in guest memory or in the image changed, every grant unmapped.  Exit code 0: "
        "all as the model says; 1: a mismatch (the seed and the request are printed); "
        "2: usage error."))
    parser.add_argument("requests", type=options.FUZZ_RUNS, metavar="N",
                        help="how many requests (1 to 10**9)")
    parser.add_argument("--seed", type=options.FUZZ_SEED, default=None,
                        help="seed of the request sequence (default: random, printed)")
    parser.add_argument("--timeout", type=options.TIMEOUT, default=5.0, metavar="SECONDS",
                        help="bound of the wait for each answer (default 5)")
    parser.add_argument("--abi", choices=BLKIF_ABIS, default="x86_64-abi",
                        help="the ring's protocol (default x86_64-abi)")
    parser.add_argument("--persist", action="store_true",
                        help="writes go to the scratch image, which must end equal to the model "
                        "(default: the overlay, and the image must not change)")
    parser.add_argument("--quiet", "-q", action="store_true", help="only problems and the summary")
    return parser


def run(count, seed, timeout, abi, quiet, prog, out=sys.stdout, persist=False):
    """Fuzz `count` requests; returns the exit code."""
    rng = random.Random(seed)
    image_data = disk_bytes(seed)
    statuses = {BLKIF_RSP_OKAY: 0, BLKIF_RSP_ERROR: 0, BLKIF_RSP_EOPNOTSUPP: 0}
    problem = None
    started = time.monotonic()
    done = 0
    with tempfile.TemporaryDirectory(prefix="pvboot-blkfuzz-") as tmp:
        image = os.path.join(tmp, "disk.img")
        with open(image, "wb") as f:
            f.write(image_data)
        with BlkifFrontend(tmp, image, abi=abi, persist=persist) as fe:
            fe.wait_backend_state(XenbusStateInitWait)
            fe.connect()
            oracle = BlkifOracle(fe, image_data, timeout=timeout)
            try:
                for done in range(count):
                    req = random_request(rng)
                    try:
                        problem = oracle.check(req)
                    except FrontendError as exc:
                        problem = str(exc).strip()
                    if problem:
                        print("PROBLEM seed %d request %d: %s\n  %r\n  (reproduce: %s %d --seed %d "
                              "--abi %s)" % (seed, done + 1, problem, req, prog, done + 1, seed, abi),
                              file=out, flush=True)
                        break
                    statuses[expected_status(req, DISK_SECTORS)] += 1
                    if not quiet and (done + 1) % 10000 == 0:
                        print("%d requests, %.0f/s" % (done + 1, (done + 1) / (
                            time.monotonic() - started)), file=out, flush=True)
                else:
                    done = count
            finally:
                oracle.close()
            if problem is None:
                problem = _end_problem(fe, oracle, image, image_data, persist)
                if problem:
                    print("PROBLEM seed %d: %s" % (seed, problem), file=out)
    elapsed = max(time.monotonic() - started, 1e-9)
    print("%s: %d requests from seed %d in %.1f s (%.0f/s), %d problem(s); OKAY %d, ERROR %d, "
          "EOPNOTSUPP %d" % (prog, done, seed, elapsed, done / elapsed, 1 if problem else 0,
                             statuses[BLKIF_RSP_OKAY], statuses[BLKIF_RSP_ERROR],
                             statuses[BLKIF_RSP_EOPNOTSUPP]), file=out, flush=True)
    return EXIT_PROBLEM if problem else EXIT_OK


def _end_problem(fe, oracle, image, image_data, persist):
    """What the run as a whole broke, checked after its last request; or None."""
    if fe.proc.poll() is not None:
        return "blkback exited with %s" % fe.proc.returncode
    if not oracle.ram_untouched():
        return "guest RAM outside the data pages changed"
    if persist:
        fe.stop_backend()          # its writes reach the file before it exits
    with open(image, "rb") as f:
        if f.read() != (oracle.disk if persist else image_data):
            return ("the image file differs from the model (--persist)" if persist
                    else "the image file changed (overlay mode)")
    return None


def main(argv=None, prog="pvboot fuzz blkif"):
    args = build_parser(prog).parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print("%s: %d requests from seed %d, each answer within %g s, %s"
          % (prog, args.requests, seed, args.timeout, args.abi), flush=True)
    return run(args.requests, seed, args.timeout, args.abi, args.quiet, prog,
               persist=args.persist)


if __name__ == "__main__":
    sys.exit(main())
