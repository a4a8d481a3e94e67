"""Log compaction: keep only the newest record of each key (Apache Kafka's LogCleaner).

Owns the choice of which partition to clean, the cleaning pass that rewrites its segments, the
`cleaner-offset-checkpoint` (first dirty offset per partition; file format in checkpoint.py) and
the cleaner thread. It runs on its own thread (`LogCleaner.start`), woken every
`log.cleaner.backoff.ms`, or one pass on demand with `LogStore.run_cleaner()`.
The key map lives in offset_map.py; reading, decoding, rebuilding and writing batches in
cleaner_batches.py (both re-exported here).

A cleaning of one partition, in Kafka's terms:
    clean section   [log start, first dirty)          cleaned before; `cleaner-offset-checkpoint`
    dirty section   [first dirty, first uncleanable)  appended since
    uncleanable     [first uncleanable, log end)      the active segment, and any segment younger
                                                      than `min.compaction.lag.ms`
1. Build the key map over the dirty section, batch by batch. If the map fills, stop there: this
   pass ends at the last offset put in the map (`end`), the next pass goes on from `end`.
2. Rewrite every sealed segment with base offset < `end`, grouped so a group fits one segment
   (`segment.bytes`, `segment.index.bytes`, 2^31 relative offsets) — small cleaned segments
   merge. A record is kept when its offset > the map's latest offset, or it is at or after its
   key's offset in the map; a tombstone (null value) only until its batch's delete horizon.
   Keyless records in the cleaned range are dropped (the topic was not compacted when they came).
   Each group is written to `.cleaned` files (leftovers of an abandoned cleaning removed first).
3. Swap each cleaned group in (`Log.replace_segments`: `.cleaned → .swap → live`), then
   checkpoint `end` as first dirty. A group whose segments changed meanwhile (retention,
   truncation) is not swapped, and the pass does not move the checkpoint.

A partition is cleaned when its dirty share of bytes `dirty / (clean + dirty)` exceeds
`min.cleanable.dirty.ratio`, when its oldest dirty record is older than `max.compaction.lag.ms`,
or when a tombstone's delete horizon has passed. Sealed segments not yet fsynced are left for
later (their newer records could vanish at a power cut after older ones were cleaned away); when
no flush comes for `log.cleaner.backoff.ms` (after an unclean open nothing but a later roll
would bring one) the cleaner fsyncs them itself (`_flush_if_stalled`).

Tombstones (Kafka's KIP-534): the first cleaning that keeps a tombstone rewrites its batch with
the delete-horizon attribute bit (0x40) set and `baseTimestamp = now + delete.retention.ms`
(record timestamp deltas are re-based, so every record keeps its timestamp). A later cleaning
after the horizon drops it. Consumers that read the topic within `delete.retention.ms` of the
first cleaning see the delete.

Kept batches: untouched batches are copied byte for byte. A batch that loses records is rebuilt
with the same offsets (cleaner_batches.batch_bytes); maxTimestamp is that of the kept records.
A batch that loses every record is dropped, except
- the last batch of a group, which stays as an empty batch (recordCount 0): a cleaned segment
  therefore always ends at the offset its group ended, which is what lets recovery tell, from
  the `.swap` file alone, which old segments it replaces (`Log._complete_swap`);
- the batch holding an idempotent producer's last sequence (the newest batch of a producer id
  in the partition's producer state), kept as an empty batch as Kafka keeps it
  (Cleaner: isBatchLastRecordOfProducer, RETAIN_EMPTY): producer state rebuilt from the log
  after a crash (a snapshot older than that batch plus a header replay) still holds that
  sequence, so a retry of the batch stays a duplicate rather than being stored again.
Control batches are kept.

Memory of a cleaning = the map (fixed, `log.cleaner.dedupe.buffer.size`) + one read chunk
(`IO_CHUNK`), its decoded arrays and the write buffer; it does not grow with the number of keys
or the log's size.

Costs: records are decoded twice (map, rewrite), a chunk of batches at a time: O(records) of a
short Python loop plus O(records) vectorised numpy; bytes copied once; kept batches that lose no
record are copied as they are.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from . import checkpoint as ckpt
from . import records as R
from .cleaner_batches import (IO_CHUNK, BatchWriter, ChunkRecords, batch_bytes, empty_batch, iter_chunks,
                              rebase_timestamp)
from .errors import CorruptRecordError, LogStoreError
from .log import Log
from .offset_map import ENTRY_BYTES, MAX_LOAD_FACTOR, MAX_VECTOR_KEY, OffsetMap, hash_keys, hash_spans
from .retention import largest_timestamp
from .segment import CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, SWAP_SUFFIX, TIMEINDEX_SUFFIX, LogSegment

if TYPE_CHECKING:
    from .store import LogStore

__all__ = [
    "LogCleaner", "CleanerStats", "Cleanable", "CleanerAborted", "StepHook", "install",
    # re-exported from offset_map.py and cleaner_batches.py (their old home was this module)
    "OffsetMap", "hash_keys", "hash_spans", "ENTRY_BYTES", "MAX_LOAD_FACTOR", "MAX_VECTOR_KEY",
    "ChunkRecords", "IO_CHUNK", "empty_batch",
]

_batch_bytes = batch_bytes  # its name before the split (tests/test_cleaner.py imports it)

logger = logging.getLogger("logstore.cleaner")

_MAX_REL_OFFSET = 0x7FFFFFFF

StepHook = Callable[[str], None]


def _sealed(log: Log) -> list[LogSegment]:
    """The partition's segments but the active one, as they are now."""
    with log.lock:
        return list(log.segments.values())[:-1]


@dataclass
class CleanerStats:
    """What one cleaning pass of one partition did."""

    topic: str
    partition: int
    first_dirty: int = 0
    end_offset: int = 0
    map_records: int = 0
    map_full: bool = False
    bytes_read: int = 0
    bytes_written: int = 0
    records_read: int = 0
    records_kept: int = 0
    batches_rewritten: int = 0
    tombstones_dropped: int = 0
    segments_before: int = 0
    segments_after: int = 0
    groups_aborted: int = 0
    seconds: float = 0.0
    map_seconds: float = 0.0
    map_bytes_read: int = 0


@dataclass
class Cleanable:
    """The cleanable state of one compacted partition at one moment."""

    log: Log
    first_dirty: int
    first_uncleanable: int
    clean_bytes: int
    dirty_bytes: int
    needs_now: bool = False  # max.compaction.lag.ms passed, or a tombstone's horizon has

    @property
    def ratio(self) -> float:
        total = self.clean_bytes + self.dirty_bytes
        return self.dirty_bytes / total if total else 0.0


class CleanerAborted(LogStoreError):
    """A cleaning stopped because the store is closing or the partition changed under it."""


class LogCleaner:
    """Cleans the compacted partitions of one store. `run()` is one pass over all of them;
    `start()` runs passes on a thread every `log.cleaner.backoff.ms` while `log.cleaner.enable`.

    `step_hook(name)` is called after each file operation of the swap protocol (crash tests stop
    the process there)."""

    def __init__(self, store: "LogStore", *, dedupe_buffer_size: int | None = None,
                 step_hook: StepHook | None = None) -> None:
        self.store = store
        self.dedupe_buffer_size = dedupe_buffer_size or store.config.dedupe_buffer_size
        self.step_hook = step_hook
        self.checkpoint_path = os.path.join(store.path, ckpt.CLEANER_OFFSET_FILE)
        self._map: OffsetMap | None = None
        self._run_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._horizons: dict[tuple[str, int], int | None] = {}  # earliest pending tombstone horizon
        self.uncleanable: dict[tuple[str, int], str] = {}  # partitions a corrupt batch stopped
        self.last_stats: list[CleanerStats] = []
        self._forget: set[str] = set()  # topics deleted since the last pass
        self._pass_segments: list[LogSegment] = []  # the sealed segments when the pass began
        # partitions seen with unflushed sealed segments: (recovery point, when first seen)
        self._unflushed: dict[tuple[str, int], tuple[int, float]] = {}
        try:
            self.checkpoints = ckpt.read_checkpoint(self.checkpoint_path)
        except LogStoreError as e:
            logger.error("%s; every compacted partition will be cleaned from its start", e)
            self.checkpoints = {}

    # -- scheduling ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the cleaner thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"logstore-cleaner:{self.store.path}",
                                            daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self.start()
        self._wake.set()

    def shutdown(self) -> None:
        """Stop the thread; a cleaning in progress is abandoned (its `.cleaned` files removed)."""
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(max(self.store.config.cleaner_backoff_ms / 1000, 0.01))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run()
            except CleanerAborted:
                pass
            except Exception:
                logger.exception("log cleaner pass failed")

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise CleanerAborted("the log cleaner is shutting down")

    def _step(self, name: str) -> None:
        if self.step_hook is not None:
            self.step_hook(name)

    # -- choosing ----------------------------------------------------------------------------
    def offset_map(self) -> OffsetMap:
        if self._map is None:
            self._map = OffsetMap(self.dedupe_buffer_size)
        return self._map

    def cleanable(self, log: Log, now_ms: int) -> Cleanable:
        """Where the dirty section of `log` is and how dirty it is."""
        cfg = log.config
        with log.lock:
            segs = list(log.segments.values())
            lso = log.log_start_offset
            leo = log.log_end_offset
            rp = log.recovery_point
        key = (log.topic, log.partition)
        first_dirty = self.checkpoints.get(key, lso)
        if first_dirty < lso or first_dirty > leo:
            first_dirty = lso
        uncleanable = segs[-1].base_offset
        sealed = segs[:-1]
        for s in sealed:
            # a sealed segment not yet flushed (a roll leaves its fsync to a later flush) is not
            # cleanable: its newer records of a key could vanish at a power cut after the older,
            # flushed ones were cleaned away
            if s.next_offset > rp:
                uncleanable = min(uncleanable, s.base_offset)
                break
        if cfg.min_compaction_lag_ms > 0:
            for s in sealed:
                if s.next_offset <= first_dirty:
                    continue
                if largest_timestamp(s) > now_ms - cfg.min_compaction_lag_ms:
                    uncleanable = min(uncleanable, s.base_offset)
                    break
        clean = dirty = 0
        needs_now = False
        for s in sealed:
            if s.base_offset < first_dirty:
                clean += s.size
            if s.base_offset < uncleanable and s.next_offset > first_dirty:
                dirty += s.size
                if not needs_now and cfg.max_compaction_lag_ms < R.LONG_MAX_TS and s.size and \
                        now_ms - s.rolling_timestamp > cfg.max_compaction_lag_ms:
                    needs_now = True
        if dirty == 0 or first_dirty >= uncleanable:
            dirty = 0
            needs_now = False
        horizon = self._pending_horizon(log, sealed, first_dirty)
        if horizon is not None and horizon <= now_ms:
            needs_now = True
        return Cleanable(log, first_dirty, uncleanable, clean, dirty, needs_now)

    def _pending_horizon(self, log: Log, sealed: list[LogSegment], first_dirty: int) -> int | None:
        key = (log.topic, log.partition)
        if key not in self._horizons:
            # first look since open: the clean section's batches say (headers only)
            best: int | None = None
            for s in sealed:
                if s.base_offset >= first_dirty:
                    break
                for _chunk, batches, _at in iter_chunks(s, validate=False):
                    for _p, h in batches:
                        if h.attributes & R.DELETE_HORIZON_BIT and not h.is_control and h.record_count:
                            best = h.base_timestamp if best is None else min(best, h.base_timestamp)
            self._horizons[key] = best
        return self._horizons[key]

    def _should_clean(self, c: Cleanable) -> bool:
        if (c.log.topic, c.log.partition) in self.uncleanable or not c.log.config.compact or c.log.closed:
            return False
        return (c.dirty_bytes > 0 and c.ratio > c.log.config.min_cleanable_dirty_ratio) or c.needs_now

    # -- running -------------------------------------------------------------------------------
    def run(self, now_ms: int | None = None, logs: Sequence[Log] | None = None) -> list[CleanerStats]:
        """Clean, filthiest first, every compacted partition that needs it, each until its dirty
        section is done (several passes when the key map fills). Returns the passes' stats."""
        with self._run_lock:
            self._apply_forget()
            stats: list[CleanerStats] = []
            now = int(time.time() * 1000) if now_ms is None else now_ms
            todo = []
            for log in (self.store.logs() if logs is None else logs):
                if log.closed or not log.config.compact:
                    continue
                self._flush_if_stalled(log)
                c = self.cleanable(log, now)
                if self._should_clean(c):
                    todo.append(c)
            todo.sort(key=lambda c: c.ratio, reverse=True)
            for c in todo:
                self._check_stop()
                try:
                    stats.extend(self.clean_log(c.log, now, first=c))
                except (OSError, LogStoreError) as e:
                    if isinstance(e, CleanerAborted):
                        raise
                    if c.log.closed or self._table_changed(c.log):
                        # the topic was deleted, or retention / truncation removed a segment we
                        # were reading (its file may be gone): nothing is wrong with the data
                        logger.info("cleaning of %s abandoned, the partition changed: %s", c.log.name, e)
                        continue
                    if isinstance(e, CorruptRecordError):
                        # Kafka marks such a partition uncleanable until restart; so do we
                        self.uncleanable[(c.log.topic, c.log.partition)] = str(e)
                        logger.error("cannot clean %s: %s", c.log.name, e)
                        continue
                    raise
            self.last_stats = stats
            return stats

    def _flush_if_stalled(self, log: Log) -> None:
        """Sealed segments above the recovery point are not cleaned until fsynced (`cleanable`).
        A roll schedules that fsync; but after an unclean open the recovery point comes from a
        checkpoint older than the last rolls, and nothing would fsync the recovered segments
        before the partition's next roll (an idle partition: never), where Kafka cleans them at
        once. So when the recovery point has not moved for `log.cleaner.backoff.ms` since a pass
        first saw such segments, fsync them here; the next `cleanable` then includes them."""
        key = (log.topic, log.partition)
        with log.lock:
            rp = log.recovery_point
            active_base = log.segments.peekitem(-1)[0]
        if rp >= active_base or log.failed:
            self._unflushed.pop(key, None)
            return
        now = time.monotonic()
        seen = self._unflushed.get(key)
        if seen is None or seen[0] != rp:
            self._unflushed[key] = (rp, now)
            return
        if now - seen[1] < self.store.config.cleaner_backoff_ms / 1000:
            return
        try:
            log.flush(active_base)
        except (OSError, LogStoreError) as e:  # the partition is offline now (log.py): not ours to fix
            logger.error("cannot flush %s before cleaning it: %s", log.name, e)
        self._unflushed.pop(key, None)

    def _table_changed(self, log: Log) -> bool:
        """Whether a segment the current pass started with has left the partition."""
        with log.lock:
            return any(log.segments.get(s.base_offset) is not s for s in self._pass_segments)

    def clean_log(self, log: Log, now_ms: int, first: Cleanable | None = None) -> list[CleanerStats]:
        """Clean one partition in passes until its dirty section is done."""
        out = []
        c = first or self.cleanable(log, now_ms)
        while True:
            s = self.clean_pass(log, c, now_ms)
            out.append(s)
            if s.end_offset <= c.first_dirty or not s.map_full or s.groups_aborted or log.closed:
                break
            c = self.cleanable(log, now_ms)
            if c.first_dirty >= c.first_uncleanable:
                break
        return out

    def clean_pass(self, log: Log, c: Cleanable, now_ms: int) -> CleanerStats:
        """One cleaning: map [first dirty, ...) until the map fills, then rewrite and swap."""
        t0 = time.perf_counter()
        st = CleanerStats(log.topic, log.partition, first_dirty=c.first_dirty)
        self._pass_segments = _sealed(log)
        m = self.offset_map()
        m.clear()
        end = self._build_map(log, c.first_dirty, c.first_uncleanable, m, st)
        st.map_seconds = time.perf_counter() - t0
        st.map_records = m.size
        st.end_offset = end
        # every sealed segment below `end`: with nothing mapped (end == first dirty), the clean
        # section alone, which drops the tombstones whose horizon has passed
        segs = [s for s in _sealed(log) if s.base_offset < end]
        st.segments_before = len(segs)
        horizon_min: int | None = None
        producers = _LazyProducers(log)
        for group in self._groups(log, segs):
            self._check_stop()
            if not any(s.size for s in group):
                continue
            cleaned, h = self._clean_group(log, group, m, end, now_ms, st, producers)
            if h is not None:
                horizon_min = h if horizon_min is None else min(horizon_min, h)
            self._step(f"cleaned:{group[0].base_offset}")
            new = log.replace_segments(cleaned, group, step=self._step)
            if new is None:
                st.groups_aborted += 1
                continue
            self._step(f"replaced:{group[0].base_offset}")
        with log.lock:
            st.segments_after = len(log.segments) - 1
        if st.groups_aborted:
            # retention or truncation changed the partition meanwhile: clean this range again
            self._horizons.pop((log.topic, log.partition), None)
            return st
        self._horizons[(log.topic, log.partition)] = horizon_min
        self.checkpoints[(log.topic, log.partition)] = max(end, c.first_dirty)
        self.write_checkpoint()
        self._step("checkpoint")
        st.seconds = time.perf_counter() - t0
        return st

    # -- cleaner-offset-checkpoint ---------------------------------------------------------------
    def on_topic_change(self, topic: str, change: str) -> None:
        """A deleted topic's cleaner state goes, so a new topic of the same name starts dirty.
        Never waits for a cleaning in progress: then the next pass forgets it."""
        if change != "delete":
            return
        self._forget.add(topic)
        if self._run_lock.acquire(blocking=False):
            try:
                if self._apply_forget():
                    self.write_checkpoint()
            finally:
                self._run_lock.release()

    def _apply_forget(self) -> bool:
        changed = False
        while self._forget:
            topic = self._forget.pop()
            for d in (self.checkpoints, self._horizons, self.uncleanable, self._unflushed):
                for key in [k for k in d if k[0] == topic]:
                    del d[key]  # type: ignore[attr-defined]
                    changed = True
        return changed

    def write_checkpoint(self) -> None:
        """Write the first dirty offset of every partition that still exists (checkpoint.py)."""
        live = {(lg.topic, lg.partition) for lg in self.store.logs()}
        self.checkpoints = {k: v for k, v in self.checkpoints.items() if k in live}
        ckpt.write_checkpoint(self.checkpoint_path, self.checkpoints)

    # -- step 1: the key map ---------------------------------------------------------------------
    def _build_map(self, log: Log, first_dirty: int, uncleanable: int, m: OffsetMap, st: CleanerStats) -> int:
        """Fill `m` from `first_dirty` on; returns the end of the mapped range (exclusive)."""
        segs = [s for s in _sealed(log) if s.next_offset > first_dirty and s.base_offset < uncleanable]
        end = first_dirty
        for seg in segs:
            self._check_stop()
            found = seg.find_position(first_dirty) if seg.base_offset < first_dirty else None
            start_pos = found[0] if found is not None else 0
            for chunk, batches, at in iter_chunks(seg, start_pos):
                st.map_bytes_read += len(chunk)
                recs = ChunkRecords(chunk, batches, seg.log_path, at)
                last_h = batches[-1][1]
                if recs.n:
                    sel = recs.offset >= first_dirty
                    sel &= recs.keyed
                    rows = recs.key_index[sel]
                    offsets = recs.offset[sel]
                    took = m.put_many(recs.h1[rows], recs.h2[rows], offsets)
                    if took < len(rows):
                        st.map_full = True
                        return max(m.latest_offset + 1, first_dirty) if took else max(end, first_dirty)
                end = max(end, last_h.last_offset + 1)
        return end

    # -- step 2: rewriting -------------------------------------------------------------------------
    def _groups(self, log: Log, segs: list[LogSegment]) -> list[list[LogSegment]]:
        """Consecutive segments whose sum fits one segment (Kafka's groupSegmentsBySize)."""
        cfg = log.config
        max_index = cfg.segment_index_bytes
        groups: list[list[LogSegment]] = []
        i = 0
        while i < len(segs):
            group = [segs[i]]
            size = segs[i].size
            idx = segs[i].index.entries * 8
            tidx = segs[i].time_index.entries * 12
            i += 1
            while i < len(segs):
                s = segs[i]
                if (size + s.size > cfg.segment_bytes or idx + s.index.entries * 8 > max_index
                        or tidx + (s.time_index.entries + 1) * 12 > max_index
                        or s.next_offset - 1 - group[0].base_offset > _MAX_REL_OFFSET):
                    break
                group.append(s)
                size += s.size
                idx += s.index.entries * 8
                tidx += s.time_index.entries * 12
                i += 1
            groups.append(group)
        return groups

    def _clean_group(self, log: Log, group: list[LogSegment], m: OffsetMap, end: int, now_ms: int,
                     st: CleanerStats, producers: "_LazyProducers") -> tuple[LogSegment, int | None]:
        cfg = log.config
        base = group[0].base_offset
        stem = os.path.join(log.dir, f"{base:020d}")
        for ext in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX):
            for suffix in (CLEANED_SUFFIX, SWAP_SUFFIX):
                try:
                    os.unlink(stem + ext + suffix)  # leftovers of an abandoned cleaning
                except FileNotFoundError:
                    pass
        out = LogSegment(log.dir, base, index_interval_bytes=cfg.index_interval_bytes,
                         max_index_bytes=cfg.segment_index_bytes, active=True, create=True, suffix=CLEANED_SUFFIX)
        latest = end - 1  # records after the mapped range are kept as they are
        horizon = now_ms + cfg.delete_retention_ms
        pending: int | None = None
        w = BatchWriter(out, lambda: self._step(f"write:{base}"))
        last_h: R.BatchHeader | None = None
        try:
            for seg in group:
                for chunk, batches, at in iter_chunks(seg):
                    self._check_stop()
                    st.bytes_read += len(chunk)
                    last_h = batches[-1][1]
                    h_pending = self._filter_chunk(chunk, batches, at, seg, m, latest, now_ms, horizon, w, st,
                                                   producers)
                    if h_pending is not None:
                        pending = h_pending if pending is None else min(pending, h_pending)
            if last_h is not None and w.last_offset < last_h.last_offset:
                w.add(empty_batch(last_h), last_h, last_h.max_timestamp)
            w.finish()
            # the group's newest modification time, as Kafka gives a cleaned segment: retention
            # by time falls back on it for a segment without record timestamps (retention.py),
            # which a cleaning must not make young again
            mtime = max(os.stat(seg.log_path).st_mtime_ns for seg in group)
            os.utime(out.log_path, ns=(mtime, mtime))
        except BaseException:
            out.delete_files()
            raise
        st.bytes_written += w.written
        return out, pending

    def _filter_chunk(self, chunk: bytes, batches: list[tuple[int, R.BatchHeader]], at: int, seg: LogSegment,
                      m: OffsetMap, latest: int, now_ms: int, horizon: int, w: BatchWriter,
                      st: CleanerStats, producers: "_LazyProducers") -> int | None:
        """Write the kept part of each batch of one chunk; returns the earliest delete horizon of
        the tombstones kept, if any. `producers`: producer id → last offset of its newest batch
        (that batch stays, empty if it keeps no record)."""
        recs = ChunkRecords(chunk, batches, seg.log_path, at)
        n = recs.n
        st.records_read += n
        if n:
            offsets = recs.offset
            if recs.keyed.all():
                found = m.get_many(recs.h1, recs.h2)
            else:
                found = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)  # keyless: never kept
                found[recs.keyed] = m.get_many(recs.h1, recs.h2)
            tomb = recs.tomb
            counts = np.array(recs.count, dtype=np.int64)
            expired = np.fromiter((bool(h.attributes & R.DELETE_HORIZON_BIT) and h.base_timestamp <= now_ms
                                   for _p, h in batches), dtype=bool, count=len(batches))
            drop_tomb = np.repeat(expired, counts) & tomb
            latest_for_key = offsets >= found
            keep = (offsets > latest) | (latest_for_key & ~drop_tomb)
            st.tombstones_dropped += int((drop_tomb & latest_for_key & (offsets <= latest)).sum())
        pending: int | None = None
        mv = memoryview(chunk)
        for bi, (p, h) in enumerate(batches):
            cnt = recs.count[bi]
            last_of_producer = h.producer_id >= 0 and producers.get(h.producer_id) == h.last_offset
            if not cnt:
                if h.is_control or last_of_producer:
                    w.add(mv[p:p + h.size], h, h.max_timestamp)
                continue  # an empty batch from an earlier cleaning: rewritten only if it ends a group
            i0 = recs.first[bi]
            k = keep[i0:i0 + cnt]
            nk = int(np.count_nonzero(k))
            if nk == 0:
                if last_of_producer:  # Kafka's RETAIN_EMPTY: the producer's last sequence stays
                    w.add(empty_batch(h), h, h.max_timestamp)
                    st.batches_rewritten += 1
                continue
            kept_tomb = bool((tomb[i0:i0 + cnt] & k).any())
            set_horizon = kept_tomb and not h.attributes & R.DELETE_HORIZON_BIT
            if kept_tomb:
                hz = horizon if set_horizon else h.base_timestamp
                pending = hz if pending is None else min(pending, hz)
            st.records_kept += nk
            if nk == cnt and not set_horizon:
                w.add(mv[p:p + h.size], h, h.max_timestamp)
                continue
            idx = (np.flatnonzero(k) + i0).tolist()
            if set_horizon:
                parts = [rebase_timestamp(recs.record_bytes(i), h.base_timestamp, horizon) for i in idx]
                base_ts = horizon
                attrs = h.attributes | R.DELETE_HORIZON_BIT
            else:
                buf, starts, ends = recs.buf, recs.start, recs.end
                parts = [buf[a:b] for a, b in zip(starts[idx].tolist(), ends[idx].tolist())]
                base_ts = h.base_timestamp
                attrs = h.attributes
            if h.log_append_time:
                max_ts = h.max_timestamp
            else:
                max_ts = h.base_timestamp + int(recs.ts_delta[idx].max())
            payload = b"".join(parts)
            codec = h.attributes & 0x07
            if codec:
                payload = R.compress(codec, payload)
            w.add(batch_bytes(h, attrs, base_ts, max_ts, nk, payload), h, max_ts)
            st.batches_rewritten += 1
        return pending


class _LazyProducers:
    """Producer id -> last offset of its newest batch, read from the partition's producer state the
    first time a cleaning meets a batch with a producer id. Loading an unloaded state (snapshot plus
    a header replay, under the Log's lock: appends wait) is then paid only by partitions that hold
    idempotent batches, not by every compacted partition (`__consumer_offsets` has none)."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self._map: dict[int, int] | None = None

    def get(self, pid: int) -> int | None:
        if self._map is None:
            self._map = _last_offsets_of_producers(self.log)
        return self._map.get(pid)


def _last_offsets_of_producers(log: Log) -> dict[int, int]:
    """Producer id → last offset of its newest batch, from the partition's producer state (loaded
    from its snapshot and the log first if nothing has loaded it since open: a cleaning may
    remove the batches that replay would find)."""
    ps = getattr(log, "producer_state", None)
    if ps is None:
        return {}
    with log.lock:
        return ps.last_offsets()


def install(store: "LogStore") -> None:
    """Give the store its cleaner; wake it every `log.cleaner.backoff.ms` when enabled. The cleaner
    thread starts at the first wake-up (so a store opened with background=False runs none)."""
    cleaner = LogCleaner(store)
    store.log_cleaner = cleaner  # type: ignore[attr-defined]
    store.add_topic_listener(cleaner.on_topic_change)
    if store.config.cleaner_enable:
        store.add_periodic(max(store.config.cleaner_backoff_ms, 10) / 1000, cleaner.wake)
