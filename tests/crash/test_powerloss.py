"""Power loss at random points of a real workload: every reopen keeps the durability contract.

The engine runs in this process over `faultfs.FaultFS` (tests/crash/faultfs.py), which records
every write and sync under the log dir. The workload appends (three topics: fsync per append,
flush on demand with size retention, compacted), rolls, flushes, checkpoints, runs retention,
delete-records and the cleaner, creates and deletes topics, and closes and reopens the store.
Before random file operations it takes a power-loss image (only synced data is sure to be
there; unsynced pages are kept, dropped or reordered, names survive only as far as a directory
fsync or a journal prefix carries them), and at a random one it cuts the power for good: the
workload goes on from that image, so recovery itself runs on the fault layer too.

Each image is opened with the real engine and must satisfy DESIGN.md's contract:
- it opens; the topics are those whose creation returned, minus those whose deletion returned
  (topics created or deleted in flight may go either way);
- each partition holds exactly what was appended at each offset it holds (no torn or corrupt
  batch: every read checks CRCs), without holes unless compacted, up to at least everything a
  returned flush (or roll, or close) covered, from a start offset no later than one we moved to;
- compacted: for each key the newest flushed record, or a newer one, is there;
- indexes agree with the log: reading from sampled offsets lands on the right record, sealed
  segments' indexes pass `check_indexes`, time lookups find the first record at a timestamp;
- recovery scanned only the segments from the checkpointed recovery point on (none after a
  clean shutdown), apart from rebuilding damaged indexes.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field

import pytest

import logstore
from logstore import checkpoint as ckpt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/crash has no __init__.py
from faultfs import Crash, FaultFS  # noqa: E402

T0 = int(time.time() * 1000) - 60_000

TOPICS = {
    # fsync per append: every returned append is durable
    "a": (2, {"flush.messages": "1", "segment.bytes": "2048", "index.interval.bytes": "256",
              "segment.index.bytes": "160"}),
    # flushed only on demand; size retention deletes old segments; tiny indexes force rolls
    "b": (1, {"segment.bytes": "3000", "retention.bytes": "7000", "index.interval.bytes": "128",
              "segment.index.bytes": "64", "file.delete.delay.ms": "0"}),
    # compacted: the newest record of each key must survive
    "c": (1, {"cleanup.policy": "compact", "segment.bytes": "1800", "min.cleanable.dirty.ratio": "0.01",
              "delete.retention.ms": "86400000", "index.interval.bytes": "200", "flush.messages": "4",
              "file.delete.delay.ms": "0"}),
}
KEYS_C = [b"k%d" % i for i in range(8)]


@dataclass
class Expect:
    """What any crash image taken now must show."""

    records: dict  # (topic, p) → {offset: (key, value, timestamp)}  appended, or being appended
    flushed: dict  # (topic, p) → every offset below is durable
    lso_bound: dict  # (topic, p) → the log start offset may not be beyond this
    sure: frozenset  # topics that must exist
    maybe: frozenset  # topics that may exist
    compact: frozenset


@dataclass
class Counts:
    images: int = 0
    hard_crashes: int = 0
    ops: int = 0
    records_checked: int = 0
    records_lost: int = 0
    events: int = 0
    pages_dirty: int = 0
    pages_lost: int = 0
    pages_torn: int = 0
    ns_ops_lost: int = 0
    truncated_bytes: int = 0
    problems: list = field(default_factory=list)


def read_all(lg) -> list:
    return list(lg.iter_records())


def _segments_in(d: str) -> list[int]:
    """Base offsets of the segments an open will load: `.log` files, and `.log.swap` files (a
    cleaning whose swap the open completes; its segment replaces those it covers)."""
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    bases = {int(f.split(".")[0]) for f in names
             if (f.endswith(".log") or f.endswith(".log.swap")) and f.split(".")[0].isdigit()}
    return sorted(bases)


def verify_image(path: str, exp: Expect, rng: random.Random, counts: Counts, where: str) -> dict:
    """Open the image at `path` with the real engine and check the contract. Returns
    (topic, p) → its records, for a workload that goes on from this image."""
    # what recovery may scan, decided from the image's files before the engine touches them
    clean = os.path.exists(os.path.join(path, ".kafka_cleanshutdown"))
    try:
        rps = ckpt.read_checkpoint(os.path.join(path, ckpt.RECOVERY_POINT_FILE))
        rp_ok = True
    except logstore.CorruptRecordError:
        rps, rp_ok = {}, False
    allowed: dict = {}
    for name in os.listdir(path):
        tp = logstore.log.parse_partition_dir(name)
        if tp is None:
            continue
        bases = _segments_in(os.path.join(path, name))
        if clean and rp_ok:
            allowed[tp] = 0
        elif not rp_ok:
            allowed[tp] = len(bases)
        else:
            rp = rps.get(tp, 0)
            first = max([b for b in bases if b <= rp], default=bases[0] if bases else 0)
            allowed[tp] = len([b for b in bases if b >= first])
    if os.environ.get("POWERLOSS_KEEP"):
        shutil.copytree(path, path + "-pristine")
    where = f"{where} ({'after a clean shutdown' if clean else 'unclean'})"
    try:
        store = logstore.open(path, background=False)
    except Exception as e:
        raise AssertionError(f"{where}: the crash image does not open: {e!r}") from e
    out: dict = {}
    try:
        topics = set(store.topics())
        missing = exp.sure - topics
        assert not missing, f"{where}: topics {sorted(missing)} were created (returned) but are gone"
        extra = topics - exp.maybe
        assert not extra, f"{where}: topics {sorted(extra)} exist but were deleted or never created"
        for t in sorted(topics):
            for p in range(store.topic(t).partitions):
                tp = (t, p)
                lg = store.partition(t, p)
                w = f"{where}: {t}-{p}"
                model = exp.records.get(tp, {})
                lso, leo = lg.log_start_offset, lg.log_end_offset
                st = lg.stats
                counts.truncated_bytes += st.bytes_truncated
                scanned = st.segments_scanned - st.indexes_rebuilt
                assert scanned <= allowed.get(tp, 0), (
                    f"{w}: recovery scanned {scanned} segments, but only {allowed.get(tp, 0)} lie at or after the "
                    f"recovery point {rps.get(tp)} (clean shutdown: {clean}); problems: {st.problems}")
                try:
                    recs = read_all(lg)
                except logstore.CorruptRecordError as e:
                    raise AssertionError(f"{w}: a corrupt batch is visible after recovery: {e}") from e
                offs = [r.offset for r in recs]
                assert offs == sorted(set(offs)), f"{w}: offsets not strictly increasing"
                assert all(lso <= o < leo for o in offs), f"{w}: records outside [{lso}, {leo})"
                for r in recs:
                    want = model.get(r.offset)
                    got = (r.key, r.value, r.timestamp)
                    assert want == got, f"{w}: offset {r.offset} holds {got!r}, but {want!r} was appended there"
                counts.records_checked += len(recs)
                flushed = exp.flushed.get(tp, 0)
                if leo < flushed:
                    counts.records_lost += flushed - leo
                assert leo >= flushed, (f"{w}: log ends at {leo}, but everything below {flushed} was flushed "
                                        f"(lost {flushed - leo} durable records); problems: {st.problems}")
                assert lso <= exp.lso_bound.get(tp, 0), (
                    f"{w}: log start offset {lso} is beyond anything retention or delete-records moved it to "
                    f"({exp.lso_bound.get(tp, 0)})")
                if t in exp.compact:
                    newest: dict = {}
                    for o, (k, _v, _ts) in model.items():
                        if o < flushed and o >= lso:
                            newest[k] = max(newest.get(k, -1), o)
                    have: dict = {}
                    for r in recs:
                        have[r.key] = r.offset
                    for k, o in newest.items():
                        assert have.get(k, -1) >= o, (
                            f"{w}: key {k!r}: its newest flushed record (offset {o}) is gone "
                            f"(newest present: {have.get(k)})")
                else:
                    assert offs == list(range(lso, leo)), (
                        f"{w}: holes in an uncompacted log: expected offsets {lso}..{leo - 1}, "
                        f"got {offs[:5]}...{offs[-5:]}")
                # indexes agree with the log
                for seg in list(lg.segments.values())[:-1]:
                    problem = seg.check_indexes()
                    assert problem is None, f"{w}: after recovery {problem}"
                    # time retention trusts a sealed segment's largest timestamp (its time index's
                    # last entry): it must be the largest timestamp of the segment's records
                    # (compaction may keep an emptied batch's header, and with it a dropped record's)
                    in_seg = [r.timestamp for r in recs if seg.base_offset <= r.offset < seg.next_offset]
                    if in_seg:
                        hi = seg.max_timestamp if t in exp.compact else max(in_seg)
                        assert max(in_seg) <= seg.max_timestamp <= hi, (
                            f"{w}: sealed segment {seg.log_path} says its largest timestamp is "
                            f"{seg.max_timestamp}, its records' is {max(in_seg)}")
                if recs:
                    sample = {lso, leo - 1, *(rng.randrange(lso, leo) for _ in range(12))}
                    for o in sorted(sample):
                        first = next(r for r in recs if r.offset >= o)
                        got_r = lg.read(o, 1, max_records=1)
                        assert got_r and got_r[0].offset == first.offset, (
                            f"{w}: read from offset {o} gives {got_r[:1]}, expected offset {first.offset}")
                    for r in rng.sample(recs, min(4, len(recs))):
                        want_o = next(x.offset for x in recs if x.timestamp >= r.timestamp)
                        found = lg.offset_for_timestamp(r.timestamp)
                        assert found is not None and found[0] == want_o, (
                            f"{w}: offset_for_timestamp({r.timestamp}) = {found}, expected offset {want_o}")
                out[tp] = {r.offset: (r.key, r.value, r.timestamp) for r in recs}
                out[(tp, "lso")] = lso
                out[(tp, "leo")] = leo
        out["topics"] = topics
    finally:
        store.close()
    return out


class Campaign:
    """One randomized workload with snapshots and hard crashes. See the module docstring."""

    def __init__(self, base: str, seed: int, *, ops: int, generations: int, snap_prob: float):
        self.base = base
        self.rng = random.Random(seed)
        self.seed = seed
        self.n_ops = ops
        self.generations = generations
        self.snap_prob = snap_prob
        self.counts = Counts()
        self.ts = T0
        self.img_seq = 0
        self.ephemeral = 0
        self.has_retention = hasattr(logstore.LogStore, "run_retention")
        self.has_cleaner = hasattr(logstore.LogStore, "run_cleaner")
        self.trace: list[str] = []
        # even seeds seal rolled segments without fsync, as a store with a background thread does
        # (Log.roll_flusher); the queued flushes run at random later steps
        self.defer_rolls = seed % 2 == 0
        self.roll_flushes: list = []

    # -- the expectation ---------------------------------------------------------------------
    def fresh_expect(self) -> None:
        self.records: dict = {}
        self.flushed: dict = {}
        self.lso_bound: dict = {}
        self.sure: set = set()
        self.maybe: set = set()

    def expect(self) -> Expect:
        return Expect(self.records, dict(self.flushed), dict(self.lso_bound), frozenset(self.sure),
                      frozenset(self.maybe), frozenset(t for t in self.maybe if t == "c"))

    # -- images --------------------------------------------------------------------------------
    def _image_dir(self) -> str:
        self.img_seq += 1
        return os.path.join(self.base, f"img-{self.img_seq}")

    def on_event(self, fs: FaultFS, kind: str, path: str) -> None:
        if self.crash_at is not None and fs.stats.events >= self.crash_at:
            d = self._image_dir()
            fs.crash_image(d, self.rng)
            self.crash_image = (d, self.expect())
            self.trace.append(f"  POWER CUT before {kind} {path} -> {d}")
            fs.crash()
        if self.rng.random() < self.snap_prob:
            d = self._image_dir()
            fs.crash_image(d, self.rng)
            self.pending.append((d, self.expect(), f"seed {self.seed} image {self.img_seq} before {kind} {path}"))
            self.trace.append(f"  image {d} before {kind} {path}")

    def check_pending(self) -> None:
        for d, exp, where in self.pending:
            self.verify(d, exp, where)
            self.counts.images += 1
            shutil.rmtree(d)
        self.pending.clear()

    # -- the workload ------------------------------------------------------------------------------
    def run(self) -> Counts:
        root = os.path.join(self.base, "gen-0")
        os.makedirs(root)
        self.fresh_expect()
        for gen in range(self.generations):
            last = gen == self.generations - 1
            root = self.run_generation(root, gen, hard_crash=not last)
        return self.counts

    def run_generation(self, root: str, gen: int, *, hard_crash: bool) -> str:
        self.trace.append(f"generation {gen} on {root}")
        self.pending: list = []
        self.roll_flushes = []
        self.crash_image = None
        fs = FaultFS(root, self.on_event)
        # events of this generation at which the power is cut for good
        self.crash_at = self.rng.randint(20, 40 * self.n_ops) if hard_crash else None
        store = None
        try:
            with fs:
                store = self.open(root)
                for _ in range(self.n_ops):
                    store = self.step(store, root)
                    self.counts.ops += 1
                    self.check_pending()
                if hard_crash:
                    # the crash point was not reached: cut the power now
                    self.crash_at = 0
                    self.store_op_noop(store)
                else:
                    store.close()
                    store = None
                    d = self._image_dir()
                    fs.crash_image(d, self.rng)
                    self.pending.append((d, self.expect(), f"seed {self.seed} after the final close"))
        except Crash:
            pass
        finally:
            store = None  # a dead engine's objects close their own files when collected
            fs.abandon()
            self.c_events(fs)
        self.check_pending()
        if self.crash_image is None:
            return root
        # hard crash: verify a copy, then go on from the image itself (its recovery runs on faultfs)
        d, exp = self.crash_image
        probe = d + "-probe"
        shutil.copytree(d, probe)
        if os.environ.get("POWERLOSS_KEEP"):
            shutil.copytree(d, d + "-orig")
        state = self.verify(probe, exp, f"seed {self.seed} hard crash {gen} ({d})")
        shutil.rmtree(probe)
        self.counts.images += 1
        self.counts.hard_crashes += 1
        self.adopt(state)
        return d

    def verify(self, d: str, exp: Expect, where: str) -> dict:
        try:
            return verify_image(d, exp, self.rng, self.counts, where)
        except AssertionError as e:
            trace = "\n  ".join(self.trace[-60:])
            raise AssertionError(f"{e}\n(image {d}: kept with POWERLOSS_KEEP=1); the last operations were:\n  {trace}") from None

    def c_events(self, fs: FaultFS) -> None:
        s = fs.stats
        c = self.counts
        c.events += s.events
        c.pages_dirty += s.pages_dirty
        c.pages_lost += s.pages_lost
        c.pages_torn += s.pages_torn
        c.ns_ops_lost += s.ns_ops_lost

    def store_op_noop(self, store) -> None:
        lg = store.partition("a", 0)
        lg.append([(None, b"tail")], timestamp=self.next_ts())  # an event, so the crash fires

    def adopt(self, state: dict) -> None:
        """After a hard crash the image is the disk: what it holds is durable from now on."""
        self.fresh_expect()
        topics = state["topics"]
        self.sure = set(topics)
        self.maybe = set(topics)
        for key, val in state.items():
            if isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], int):
                self.records[key] = dict(val)
                self.flushed[key] = state[(key, "leo")]
                self.lso_bound[key] = state[(key, "lso")]

    def next_ts(self) -> int:
        self.ts += self.rng.randint(0, 3)
        return self.ts

    def open(self, root: str):
        store = logstore.open(root, {"log.cleaner.enable": "false", "segment.index.bytes": "4096"}, background=False)
        for t, (n, cfg) in TOPICS.items():
            if not store.has_topic(t):
                self.maybe.add(t)
                store.create_topic(t, n, cfg)
                self.sure.add(t)
        for t in store.topics():
            for p in range(store.topic(t).partitions):
                tp = (t, p)
                self.records.setdefault(tp, {})
                self.flushed.setdefault(tp, 0)
                self.lso_bound[tp] = max(self.lso_bound.get(tp, 0), store.partition(t, p).log_start_offset)
        return store

    def all_flushed(self, store) -> None:
        for t in store.topics():
            for p in range(store.topic(t).partitions):
                tp = (t, p)
                self.flushed[tp] = max(self.flushed.get(tp, 0), store.partition(t, p).log_end_offset)

    def _queue_roll_flush(self, lg, offset: int) -> None:
        self.trace.append(f"  roll of {lg.name} queued a flush to {offset}")
        self.roll_flushes.append((lg, offset))

    def _deferred_rolls(self, store) -> None:
        for t in store.topics():
            for p in range(store.topic(t).partitions):
                lg = store.partition(t, p)
                if lg.roll_flusher is None:
                    lg.roll_flusher = self._queue_roll_flush
        if self.roll_flushes and self.rng.random() < 0.3:
            queued, self.roll_flushes = self.roll_flushes, []
            for lg, off in queued:
                if not lg.closed:
                    self.trace.append(f"queued roll flush {lg.name} to {off}")
                    lg.flush(off)
                    tp = (lg.topic, lg.partition)
                    self.flushed[tp] = max(self.flushed.get(tp, 0), off)

    def step(self, store, root: str):
        rng = self.rng
        if self.defer_rolls:
            self._deferred_rolls(store)
        r = rng.random()
        topics = store.topics()
        note = self.trace.append
        if r < 0.55:
            t = rng.choice(["a", "a", "b", "b", "c"] + [x for x in topics if x.startswith("e")])
            p = rng.randrange(store.topic(t).partitions)
            self.append(store, t, p)
        elif r < 0.62:
            t = rng.choice(topics)
            lg = store.partition(t, rng.randrange(store.topic(t).partitions))
            leo = lg.log_end_offset
            note(f"roll {lg.name} at {leo}")
            lg.roll()
            if lg.roll_flusher is None:  # a roll without a flusher fsyncs what it sealed
                self.flushed[(t, lg.partition)] = max(self.flushed[(t, lg.partition)], leo)
        elif r < 0.70:
            t = rng.choice(topics)
            lg = store.partition(t, rng.randrange(store.topic(t).partitions))
            leo = lg.log_end_offset
            note(f"flush {lg.name} at {leo}")
            lg.flush()
            self.flushed[(t, lg.partition)] = max(self.flushed[(t, lg.partition)], leo)
        elif r < 0.74:
            leos = {tp: store.partition(*tp).log_end_offset for tp in self.records if tp[0] in topics}
            note("store.flush")
            store.flush()
            for tp, leo in leos.items():
                self.flushed[tp] = max(self.flushed[tp], leo)
        elif r < 0.78:
            note("store.checkpoint")
            store.checkpoint()
        elif r < 0.83 and self.has_retention:
            lg = store.partition("b", 0)
            self.lso_bound[("b", 0)] = lg.log_end_offset  # while it runs
            note(f"retention (b-0 {lg.log_start_offset}..{lg.log_end_offset}, {len(lg.segments)} segments)")
            res = store.run_retention()
            note(f"  -> {res}")
            self.lso_bound[("b", 0)] = lg.log_start_offset
        elif r < 0.86:
            lg = store.partition("b", 0)
            if lg.log_end_offset > lg.log_start_offset:
                to = rng.randint(lg.log_start_offset, lg.log_end_offset)
                self.lso_bound[("b", 0)] = max(self.lso_bound[("b", 0)], to)
                note(f"delete_records b-0 before {to}")
                store.delete_records("b", 0, to)
        elif r < 0.91 and self.has_cleaner:
            note("run_cleaner")
            res = store.run_cleaner()
            note(f"  -> {res}")
        elif r < 0.95:
            note("close + reopen")
            store.close()
            self.all_flushed(store)
            store = self.open(root)
        elif r < 0.975:
            self.ephemeral += 1
            name = f"e{self.seed}x{self.ephemeral}"
            self.maybe.add(name)
            note(f"create_topic {name}")
            store.create_topic(name, rng.randint(1, 2), {"segment.bytes": "1024"})
            self.sure.add(name)
            for p in range(store.topic(name).partitions):
                self.records[(name, p)] = {}
                self.flushed[(name, p)] = 0
                self.lso_bound[(name, p)] = 0
        else:
            eph = [x for x in topics if x.startswith("e")]
            if eph:
                name = rng.choice(eph)
                self.sure.discard(name)
                note(f"delete_topic {name}")
                store.delete_topic(name)
                self.maybe.discard(name)
        return store

    def append(self, store, t: str, p: int) -> None:
        rng = self.rng
        lg = store.partition(t, p)
        n = rng.choice((1, 1, 2, 3, 7))
        recs = []
        for _ in range(n):
            if t == "c":
                key = rng.choice(KEYS_C)
                value = None if rng.random() < 0.1 else rng.randbytes(rng.randint(5, 120))
            else:
                key = rng.randbytes(4) if rng.random() < 0.5 else None
                value = rng.randbytes(rng.randint(1, 300))
            recs.append((key, value, (), self.next_ts()))
        leo = lg.log_end_offset
        model = self.records[(t, p)]
        for i, (k, v, _h, ts) in enumerate(recs):
            model[leo + i] = (k, v, ts)
        self.trace.append(f"append {n} to {t}-{p} at {leo}")
        rp = lg.recovery_point
        first = lg.append(recs)
        assert first == leo, f"append to {t}-{p} returned offset {first}, the log end was {leo}"
        if lg.roll_flusher is None:
            # a roll inside the append sealed (fsynced) everything before the new segment; with a
            # flusher, only the queued flush will (and the roll may lower the recovery point)
            rp = max(rp, lg.active_segment.base_offset)
            self.flushed[(t, p)] = max(self.flushed[(t, p)], lg.active_segment.base_offset)
        # flush.messages: an append that leaves that many records above the recovery point fsyncs
        # them before it returns
        if leo + n - rp >= lg.config.flush_messages:
            self.flushed[(t, p)] = max(self.flushed[(t, p)], leo + n)


def scratch_dir(tmp_path) -> str:
    """Where a campaign runs: tmpfs when there is one. The fault layer is the disk here (what a
    power cut keeps is decided by its model, not by the kernel), so real fsyncs would only cost
    time — several times the whole run on a loaded machine."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return tempfile.mkdtemp(prefix="powerloss-", dir="/dev/shm")
    return str(tmp_path)


def run_campaigns(tmp_path, seeds, *, ops: int, generations: int, snap_prob: float) -> Counts:
    total = Counts()
    scratch = scratch_dir(tmp_path)
    try:
        for seed in seeds:
            base = os.path.join(scratch, f"s{seed}")
            os.makedirs(base)
            c = Campaign(base, seed, ops=ops, generations=generations, snap_prob=snap_prob).run()
            for k, v in vars(c).items():
                if isinstance(v, int):
                    setattr(total, k, getattr(total, k) + v)
            shutil.rmtree(base, ignore_errors=True)
    finally:
        if scratch != str(tmp_path) and not os.environ.get("POWERLOSS_KEEP"):
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\npower loss: {total.images} crash images verified ({total.hard_crashes} hard crashes), "
          f"{total.ops} workload ops, {total.events} file events, {total.pages_dirty} unsynced pages "
          f"({total.pages_lost} lost, {total.pages_torn} torn), {total.ns_ops_lost} unsynced name ops lost, "
          f"{total.truncated_bytes} bytes of torn tail truncated, {total.records_checked} records checked, "
          f"records lost: {total.records_lost}")
    return total


def test_power_loss_random_points(tmp_path):
    c = run_campaigns(tmp_path, range(1, 4), ops=150, generations=4, snap_prob=0.02)
    assert c.images >= 200, f"only {c.images} crash points were exercised"
    assert c.pages_lost > 0 and c.ns_ops_lost > 0, "the fault layer dropped nothing: the test proves nothing"
    assert c.records_lost == 0


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_power_loss_random_points_long(tmp_path):
    c = run_campaigns(tmp_path, range(100, 110), ops=300, generations=6, snap_prob=0.03)
    assert c.images >= 3000
    assert c.records_lost == 0


def test_sealed_index_rebuilt_by_recovery_survives_power_loss_after_clean_close(tmp_path):
    """Recovery rebuilds a sealed segment's indexes; the store is then closed cleanly and the power
    fails. The clean-shutdown marker makes the next open trust the index files, so they must be
    durable in their trimmed state: a sealed time index read with its preallocated zero tail says
    the segment's largest timestamp is 0, and time retention deletes fresh records."""
    now = int(time.time() * 1000)
    gen0, gen1, gen2 = (str(tmp_path / n) for n in ("gen0", "gen1", "gen2"))
    os.makedirs(gen0)
    cfg = {"segment.bytes": "1200", "index.interval.bytes": "100", "retention.ms": "3600000"}
    with FaultFS(gen0) as fs:
        store = logstore.open(gen0, background=False)
        store.create_topic("t", 1, cfg)
        lg = store.partition("t", 0)
        for i in range(30):  # several sealed segments, each fsynced and trimmed at its roll
            lg.append([(b"k", b"v%03d" % i + b"." * 60, (), now + i)])
        lg.flush()
        leo = lg.log_end_offset
        # power cut before any recovery-point checkpoint: the next open recovers every segment
        fs.crash_image(gen1, worst=True)
        store = lg = None
        fs.abandon()
    with FaultFS(gen1) as fs:
        store = logstore.open(gen1, background=False)
        assert store.partition("t", 0).log_end_offset == leo
        store.close()
        fs.crash_image(gen2, worst=True)  # power cut right after the clean close
    with logstore.open(gen2, background=False) as store:
        lg = store.partition("t", 0)
        for seg in list(lg.segments.values())[:-1]:
            # read first thing, as a sealed segment's largest timestamp is: its time index's last entry
            assert seg.max_timestamp >= now, (
                f"sealed segment {seg.log_path} reports largest timestamp {seg.max_timestamp}: its time index "
                f"({os.path.getsize(seg.time_index.path)} bytes) was never fsynced after recovery trimmed it")
            assert seg.check_indexes() is None, seg.check_indexes()
        assert [r.offset for r in read_all(lg)] == list(range(leo))
        assert lg.offset_for_timestamp(now + 3) == (3, now + 3)
        store.run_retention()
        assert lg.log_start_offset == 0, f"time retention deleted fresh records: log starts at {lg.log_start_offset}"


def test_power_cut_during_topic_deletion_never_shows_a_half_deleted_topic(tmp_path):
    """delete_topic fsyncs the metadata tombstone, then removes the partition directories one by
    one. A power cut in between (the directory operations journaled, as ext4 does) must not bring
    the topic back with some partitions emptied: once the tombstone is durable the topic is gone,
    and a topic that is there holds its data."""
    root, image = str(tmp_path / "live"), str(tmp_path / "image")
    os.makedirs(root)
    taken: list = []

    def on_event(fs: FaultFS, kind: str, path: str) -> None:
        # the first file operation on partition 1 comes after partition 0's directory went
        if not taken and "/gone-1" in path and not os.path.exists(os.path.join(root, "gone-0")):
            fs.crash_image(image, worst=True, all_names=True)
            taken.append(path)

    with FaultFS(root, on_event) as fs:
        store = logstore.open(root, background=False)
        store.create_topic("gone", 2)
        for p in (0, 1):
            store.partition("gone", p).append([(b"k", b"v%d" % i) for i in range(5)])
        store.flush()
        store.delete_topic("gone")
        store.close()
    assert taken, "the deletion never reached partition 1"
    with logstore.open(image, background=False) as store:
        if "gone" in store.topics():
            ends = [store.partition("gone", p).log_end_offset for p in range(store.topic("gone").partitions)]
            assert ends == [5, 5], (
                f"topic 'gone' was deleted (its tombstone is durable) but came back with log ends {ends}: "
                "a partition directory left by the interrupted deletion was adopted as a new topic")


def test_active_segment_indexes_are_trimmed_durably_by_a_clean_close(tmp_path):
    """A clean close trims the active segment's preallocated indexes, then writes the clean-shutdown
    marker, which makes the next open trust them. A trim lost to a power cut left a zero tail that
    the next open read as one phantom (0, 0) entry, wrong for a first batch of several records."""
    gen0, gen1 = str(tmp_path / "gen0"), str(tmp_path / "gen1")
    os.makedirs(gen0)
    with FaultFS(gen0) as fs:
        store = logstore.open(gen0, {"segment.index.bytes": "4096"}, background=False)
        store.create_topic("t", 1)
        lg = store.partition("t", 0)
        lg.append([(b"k%d" % i, b"v") for i in range(3)])  # one batch: offsets 0-2
        lg.flush()
        logstore.log.fsync_dir(lg.dir)  # the index files' names are durable, as after any later dir fsync
        store.close()
        fs.crash_image(gen1, worst=True)  # every unsynced change lost
    assert os.path.exists(os.path.join(gen1, ".kafka_cleanshutdown"))
    for ext in (".index", ".timeindex"):
        size = os.path.getsize(os.path.join(gen1, "t-0", "0" * 20 + ext))
        assert size < 4096, f"the {ext} trim at close was not durable: {size} bytes, preallocated"
    with logstore.open(gen1, background=False) as store:
        lg = store.partition("t", 0)
        assert lg.active_segment.index.entries == 0
        assert [r.key for r in lg.read(0)] == [b"k0", b"k1", b"k2"]
