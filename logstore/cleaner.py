"""Log compaction: keep only the newest record of each key (Apache Kafka's LogCleaner).

Owns the key → offset map, the choice of which partition to clean, the rewrite of its segments
and the `cleaner-offset-checkpoint`. It runs on its own thread (`LogCleaner.start`), woken every
`log.cleaner.backoff.ms`, or one pass on demand with `LogStore.run_cleaner()`.

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
3. Swap each cleaned group in (`Log.replace_segments`), then checkpoint `end` as first dirty.

A partition is cleaned when its dirty share of bytes `dirty / (clean + dirty)` exceeds
`min.cleanable.dirty.ratio`, when its oldest dirty record is older than `max.compaction.lag.ms`,
or when a tombstone's delete horizon has passed.

Tombstones (Kafka's KIP-534): the first cleaning that keeps a tombstone rewrites its batch with
the delete-horizon attribute bit (0x40) set and `baseTimestamp = now + delete.retention.ms`
(record timestamp deltas are re-based, so every record keeps its timestamp). A later cleaning
after the horizon drops it. Consumers that read the topic within `delete.retention.ms` of the
first cleaning see the delete.

Kept batches: untouched batches are copied byte for byte. A batch that loses records is rebuilt
with the same baseOffset, lastOffsetDelta (so offsets and the batch's last offset never change;
holes are normal), producer id/epoch/sequence, attributes and compression codec; maxTimestamp
is that of the kept records. A batch that loses every record is dropped, except the last batch
of a group, which stays as an empty batch (recordCount 0): a cleaned segment therefore always
ends at the offset its group ended, which is what lets recovery tell, from the `.swap` file
alone, which old segments it replaces (`Log._complete_swap`). Control batches are kept.

Key map (`OffsetMap`): one preallocated numpy buffer of `log.cleaner.dedupe.buffer.size` bytes,
24 bytes per slot, laid out as three arrays of `slots` entries:
    h1  u64   Python's keyed SipHash of the key (`hash(bytes)`, per-process random seed)
    h2  u64   CRC-32 of the key (upper 32 bits zero)
    off i64   latest offset of the key; -1 = empty slot
Together 96 bits of key digest (Kafka stores 128 bits of MD5, which costs 4x more per key here;
either way a collision could drop a live record, with probability ~ keys^2 / 2^97). Open
addressing with double hashing over a prime number of slots, filled to at most 90% (Kafka's
load factor). Lookups and inserts run for a whole chunk of records at a time in numpy.
Memory of a cleaning = the map (fixed) + one read chunk (`IO_CHUNK`) and its decoded records;
it does not grow with the number of keys.

Costs: records are decoded twice (map, rewrite), in Python, a chunk of batches at a time;
O(records) Python work plus O(records) vectorised numpy; bytes copied once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from . import checkpoint as ckpt
from . import records as R
from .errors import CorruptRecordError, LogStoreError
from .log import Log
from .retention import largest_timestamp
from .segment import CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, SWAP_SUFFIX, TIMEINDEX_SUFFIX, LogSegment

if TYPE_CHECKING:
    from .store import LogStore

logger = logging.getLogger("logstore.cleaner")

ENTRY_BYTES = 24
MAX_LOAD_FACTOR = 0.9
IO_CHUNK = 1 << 20  # bytes of log read (and written) at a time: the cleaner's I/O buffer
_WRITE_CHUNK = 1 << 20
_MAX_REL_OFFSET = 0x7FFFFFFF
_EMPTY_BATCH_LENGTH = R.HEADER_SIZE - R.LOG_OVERHEAD

StepHook = Callable[[str], None]


# ------------------------------------------------------------------------------ the key map

def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    i = 3
    while i * i <= n:
        if n % i == 0:
            return False
        i += 2
    return True


def _prime_at_most(n: int) -> int:
    while n > 2 and not _is_prime(n):
        n -= 1
    return max(n, 2)


def hash_keys(keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The map's two digests (h1, h2) of each key, as uint64 arrays. O(total key bytes)."""
    n = len(keys)
    h1 = np.fromiter(map(hash, keys), dtype=np.int64, count=n).view(np.uint64)
    h2 = np.fromiter(map(zlib.crc32, keys), dtype=np.uint64, count=n)
    return h1, h2


class OffsetMap:
    """key digest → latest offset, in a fixed buffer of `memory` bytes (see module docstring).

    `put_many` O(n log n) for n records (sort to deduplicate) plus ~1/(1-load) probe rounds;
    `get_many` O(n) plus probe rounds. Not thread-safe: one cleaning at a time uses it.
    """

    def __init__(self, memory: int, load_factor: float = MAX_LOAD_FACTOR):
        slots = memory // ENTRY_BYTES
        if slots < 3:
            raise ValueError(f"dedupe buffer of {memory} bytes holds fewer than 3 entries of {ENTRY_BYTES} bytes")
        self.slots = _prime_at_most(slots)
        self._buf = np.empty(self.slots * 3, dtype=np.uint64)
        s = self.slots
        self._h1 = self._buf[:s]
        self._h2 = self._buf[s:2 * s]
        self._off = self._buf[2 * s:].view(np.int64)
        self.capacity = max(1, int(self.slots * load_factor))
        self.size = 0
        self.latest_offset = -1
        self.clear()

    @property
    def nbytes(self) -> int:
        """Bytes the map occupies: always <= the memory it was given."""
        return self._buf.nbytes

    def clear(self) -> None:
        self._off.fill(-1)
        self.size = 0
        self.latest_offset = -1

    @property
    def utilization(self) -> float:
        return self.size / self.slots

    def _probe_start(self, h1: np.ndarray, h2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.slots
        return (h1 % np.uint64(s)).astype(np.int64), (h2 % np.uint64(s - 1)).astype(np.int64) + 1

    def get_many(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        """Latest offset of each key digest, -1 where absent."""
        n = len(h1)
        out = np.full(n, -1, dtype=np.int64)
        if n == 0 or self.size == 0:
            return out
        S = self.slots
        H1, H2, OFF = self._h1, self._h2, self._off
        p, st = self._probe_start(h1, h2)
        q1, q2, idx = h1, h2, np.arange(n)
        while True:
            o = OFF[p]
            empty = o < 0
            hit = ~empty & (H1[p] == q1) & (H2[p] == q2)
            if hit.any():
                out[idx[hit]] = o[hit]
            go = ~(empty | hit)
            if not go.any():
                return out
            q1, q2, idx, st = q1[go], q2[go], idx[go], st[go]
            p = p[go] + st
            p[p >= S] -= S

    def put_many(self, h1: np.ndarray, h2: np.ndarray, offsets: np.ndarray) -> int:
        """Put (digest, offset) pairs, given in offset order, until the map is full: returns how
        many of them (a prefix) went in. `latest_offset` becomes the last one put."""
        n = len(h1)
        if n == 0:
            return 0
        order = np.lexsort((h2, h1))  # stable: equal keys stay in offset order
        s1, s2 = h1[order], h2[order]
        starts = np.empty(n, dtype=bool)
        starts[0] = True
        np.not_equal(s1[1:], s1[:-1], out=starts[1:])
        starts[1:] |= s2[1:] != s2[:-1]
        first = np.zeros(n, dtype=bool)
        first[order[starts]] = True
        present = self.get_many(h1, h2) >= 0
        new = first & ~present
        room = self.capacity - self.size
        take = n
        if int(new.sum()) > room:
            take = int(np.searchsorted(np.cumsum(new), room, side="right"))
            if take == 0:
                return 0
            h1, h2, offsets = h1[:take], h2[:take], offsets[:take]
            order = np.lexsort((h2, h1))
            s1, s2 = h1[order], h2[order]
            starts = np.empty(take, dtype=bool)
            starts[0] = True
            np.not_equal(s1[1:], s1[:-1], out=starts[1:])
            starts[1:] |= s2[1:] != s2[:-1]
        # the last of each run of equal keys is that key's newest offset
        ends = np.empty(len(order), dtype=bool)
        ends[-1] = True
        ends[:-1] = starts[1:]
        last = order[ends]
        self._insert(h1[last], h2[last], offsets[last])
        self.latest_offset = int(offsets[take - 1])
        return take

    def _insert(self, q1: np.ndarray, q2: np.ndarray, qo: np.ndarray) -> None:
        """Upsert distinct digests."""
        S = self.slots
        H1, H2, OFF = self._h1, self._h2, self._off
        p, st = self._probe_start(q1, q2)
        while len(q1):
            o = OFF[p]
            empty = o < 0
            hit = ~empty & (H1[p] == q1) & (H2[p] == q2)
            if hit.any():
                OFF[p[hit]] = qo[hit]
            placed = np.zeros(len(q1), dtype=bool)
            ei = np.flatnonzero(empty)
            if len(ei):
                # several keys may reach the same empty slot this round: the first one wins,
                # the others see it occupied next round and probe on
                _, firsts = np.unique(p[ei], return_index=True)
                win = ei[firsts]
                slots = p[win]
                H1[slots] = q1[win]
                H2[slots] = q2[win]
                OFF[slots] = qo[win]
                placed[win] = True
                self.size += len(win)
            left = ~(hit | placed)
            if not left.any():
                return
            advance = (~empty)[left]
            q1, q2, qo, st, p = q1[left], q2[left], qo[left], st[left], p[left]
            p[advance] += st[advance]
            p[p >= S] -= S


# ------------------------------------------------------------------------------ records

def scan_records(data: bytes, pos: int, count: int, keys: list, deltas: list, stamps: list | None,
                 tombs: list | None, bounds: list | None) -> int:
    """Walk `count` records from data[pos]: append each one's key (None if absent), offset delta
    and, when the lists are given, its timestamp delta, whether its value is null, and its start
    position (plus the end of the last). Returns the end position. Raises IndexError/ValueError
    on malformed records (the caller names the batch)."""
    ka, da = keys.append, deltas.append
    sa = stamps.append if stamps is not None else None
    ta = tombs.append if tombs is not None else None
    ba = bounds.append if bounds is not None else None
    dv = R.decode_varint
    for _ in range(count):
        if ba is not None:
            ba(pos)
        b = data[pos]
        if b < 0x80:
            end = pos + 1 + ((b >> 1) ^ -(b & 1))
            pos += 2  # length byte and the record's attributes byte
        else:
            length, pos = dv(data, pos)
            end = pos + length
            pos += 1
        b = data[pos]
        if b < 0x80:
            if sa is not None:
                sa((b >> 1) ^ -(b & 1))
            pos += 1
        else:
            ts, pos = dv(data, pos)
            if sa is not None:
                sa(ts)
        b = data[pos]
        if b < 0x80:
            da((b >> 1) ^ -(b & 1))
            pos += 1
        else:
            od, pos = dv(data, pos)
            da(od)
        b = data[pos]
        if b < 0x80:
            kl = (b >> 1) ^ -(b & 1)
            pos += 1
        else:
            kl, pos = dv(data, pos)
        if kl < 0:
            ka(None)
        else:
            ka(data[pos:pos + kl])
            pos += kl
        if ta is not None:
            ta(data[pos] == 1)  # value length varint -1: a tombstone
        if end > len(data) or end <= pos:
            raise ValueError(f"record length runs past the batch at position {pos}")
        pos = end
    if ba is not None:
        ba(pos)
    return pos


def _rebase_timestamp(rec: bytes, old_base: int, new_base: int) -> bytes:
    """One encoded record with its timestamp delta moved from `old_base` to `new_base`."""
    _length, p = R.decode_varint(rec, 0)
    attrs = rec[p]
    delta, q = R.decode_varint(rec, p + 1)
    body = bytearray([attrs])
    R.encode_varint(old_base + delta - new_base, body)
    body += rec[q:]
    out = bytearray()
    R.encode_varint(len(body), out)
    out += body
    return bytes(out)


def _batch_bytes(h: R.BatchHeader, attributes: int, base_ts: int, max_ts: int, count: int,
                 payload: bytes) -> bytes:
    out = bytearray(R.HEADER_SIZE + len(payload))
    R.HEADER.pack_into(out, 0, h.base_offset, _EMPTY_BATCH_LENGTH + len(payload), h.leader_epoch, R.MAGIC, 0,
                       attributes, h.last_offset_delta, base_ts, max_ts, h.producer_id, h.producer_epoch,
                       h.base_sequence, count)
    out[R.HEADER_SIZE:] = payload
    R._U32.pack_into(out, 17, R.crc32c(memoryview(out)[R.CRC_START:]))
    return bytes(out)


def empty_batch(h: R.BatchHeader) -> bytes:
    """A batch with no records that keeps `h`'s offsets: what remains of a fully cleaned batch
    that must still mark where its segment ends."""
    attrs = h.attributes & ~(0x07 | R.DELETE_HORIZON_BIT)
    return _batch_bytes(h, attrs, h.base_timestamp, h.max_timestamp, 0, b"")


def _iter_chunks(seg: LogSegment, position: int = 0, *, validate: bool = True) -> Iterator[tuple[bytes, list[tuple[int, R.BatchHeader]]]]:
    """(chunk, [(position in chunk, header)]) over whole batches from `position`, IO_CHUNK at a
    time (one batch at a time when a batch is larger). CRCs are checked; a bad batch raises
    CorruptRecordError naming the file and position."""
    end = seg.size
    pos = position
    next_offset = seg.base_offset
    while pos < end:
        chunk = seg.pread(min(IO_CHUNK, end - pos), pos)
        batches = list(R.iter_headers(chunk))
        if not batches:
            h = R.read_header(chunk) if len(chunk) >= R.HEADER_SIZE else None
            if h is None or h.batch_length < _EMPTY_BATCH_LENGTH or pos + h.size > end:
                raise CorruptRecordError(f"truncated or unreadable batch at position {pos} of {seg.log_path}",
                                         path=seg.log_path, position=pos)
            chunk = seg.pread(h.size, pos)
            batches = [(0, h)]
        if validate:
            for p, h in batches:
                R.validate_batch(chunk, p, h, path=seg.log_path, base=pos)
                if h.base_offset < next_offset:
                    raise CorruptRecordError(
                        f"batch at position {pos + p} of {seg.log_path} has offset {h.base_offset}, expected at "
                        f"least {next_offset}", path=seg.log_path, position=pos + p)
                next_offset = h.last_offset + 1
        yield chunk, batches
        p, h = batches[-1]
        pos += p + h.size


def _records_of(chunk: bytes, p: int, h: R.BatchHeader, where: str) -> tuple[bytes, int]:
    """(buffer, start) of the encoded records of the batch at chunk[p]."""
    codec = h.attributes & 0x07
    if not codec:
        return chunk, p + R.HEADER_SIZE
    try:
        return R.decompress(codec, chunk[p + R.HEADER_SIZE:p + h.size]), 0
    except Exception as e:  # the codec libraries raise their own types
        raise CorruptRecordError(f"cannot decompress batch at {where}: {e}") from None


# ------------------------------------------------------------------------------ cleaning

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


class _Writer:
    """Appends whole batches to the cleaned segment, a write chunk at a time, and remembers the
    largest timestamp so the time index ends with it."""

    def __init__(self, seg: LogSegment, on_write: Callable[[], None] | None = None):
        self.seg = seg
        self.on_write = on_write
        self.buf = bytearray()
        self.info: list[tuple[int, int, int]] = []
        self.last_offset = -1
        self.max_ts = -1
        self.max_ts_offset = seg.base_offset
        self.written = 0

    def add(self, data: bytes | memoryview, h: R.BatchHeader, max_ts: int) -> None:
        self.info.append((len(self.buf), h.last_offset, max_ts))
        self.buf += data
        self.last_offset = h.last_offset
        if max_ts > self.max_ts:
            self.max_ts, self.max_ts_offset = max_ts, h.last_offset
        if len(self.buf) >= _WRITE_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.seg.append(self.buf, self.info)
            self.written += len(self.buf)
            self.buf = bytearray()
            self.info = []
            if self.on_write is not None:
                self.on_write()

    def finish(self) -> None:
        self.flush()
        if self.max_ts >= 0:
            self.seg.time_index.append(self.max_ts, self.max_ts_offset)
        self.seg.seal()


class CleanerAborted(LogStoreError):
    """A cleaning stopped because the store is closing or the partition changed under it."""


class LogCleaner:
    """Cleans the compacted partitions of one store. `run()` is one pass over all of them;
    `start()` runs passes on a thread every `log.cleaner.backoff.ms` while `log.cleaner.enable`.

    `step_hook(name)` is called after each file operation of the swap protocol (crash tests stop
    the process there)."""

    def __init__(self, store: "LogStore", *, dedupe_buffer_size: int | None = None,
                 step_hook: StepHook | None = None):
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
        key = (log.topic, log.partition)
        first_dirty = self.checkpoints.get(key, lso)
        if first_dirty < lso or first_dirty > leo:
            first_dirty = lso
        uncleanable = segs[-1].base_offset
        sealed = segs[:-1]
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
                for _chunk, batches in _iter_chunks(s, validate=False):
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
            stats: list[CleanerStats] = []
            now = int(time.time() * 1000) if now_ms is None else now_ms
            todo = []
            for log in (self.store.logs() if logs is None else logs):
                if log.closed or not log.config.compact:
                    continue
                c = self.cleanable(log, now)
                if self._should_clean(c):
                    todo.append(c)
            todo.sort(key=lambda c: c.ratio, reverse=True)
            for c in todo:
                self._check_stop()
                try:
                    stats.extend(self.clean_log(c.log, now, first=c))
                except CorruptRecordError as e:
                    # Kafka marks such a partition uncleanable until restart; so do we
                    self.uncleanable[(c.log.topic, c.log.partition)] = str(e)
                    logger.error("cannot clean %s: %s", c.log.name, e)
                except (OSError, LogStoreError):
                    if c.log.closed:
                        continue  # the topic was deleted under the cleaner
                    raise
            self.last_stats = stats
            return stats

    def clean_log(self, log: Log, now_ms: int, first: Cleanable | None = None) -> list[CleanerStats]:
        """Clean one partition in passes until its dirty section is done."""
        out = []
        c = first or self.cleanable(log, now_ms)
        while True:
            s = self.clean_pass(log, c, now_ms)
            out.append(s)
            if s.end_offset <= c.first_dirty or not s.map_full:
                break
            c = self.cleanable(log, now_ms)
            if c.first_dirty >= c.first_uncleanable:
                break
        return out

    def clean_pass(self, log: Log, c: Cleanable, now_ms: int) -> CleanerStats:
        """One cleaning: map [first dirty, ...) until the map fills, then rewrite and swap."""
        t0 = time.perf_counter()
        st = CleanerStats(log.topic, log.partition, first_dirty=c.first_dirty)
        m = self.offset_map()
        m.clear()
        end = self._build_map(log, c.first_dirty, c.first_uncleanable, m, st)
        st.map_seconds = time.perf_counter() - t0
        st.map_records = m.size
        st.end_offset = end
        with log.lock:
            segs = [s for s in list(log.segments.values())[:-1] if s.base_offset < end or
                    (end <= c.first_dirty and s.base_offset < c.first_dirty)]
        st.segments_before = len(segs)
        horizon_min: int | None = None
        for group in self._groups(log, segs):
            self._check_stop()
            if not any(s.size for s in group):
                continue
            cleaned, h = self._clean_group(log, group, m, end, now_ms, st)
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

    def write_checkpoint(self) -> None:
        live = {(lg.topic, lg.partition) for lg in self.store.logs()}
        self.checkpoints = {k: v for k, v in self.checkpoints.items() if k in live}
        ckpt.write_checkpoint(self.checkpoint_path, self.checkpoints)

    # -- step 1: the key map ---------------------------------------------------------------------
    def _build_map(self, log: Log, first_dirty: int, uncleanable: int, m: OffsetMap, st: CleanerStats) -> int:
        """Fill `m` from `first_dirty` on; returns the end of the mapped range (exclusive)."""
        with log.lock:
            segs = [s for s in list(log.segments.values())[:-1]
                    if s.next_offset > first_dirty and s.base_offset < uncleanable]
        end = first_dirty
        for seg in segs:
            self._check_stop()
            found = seg.find_position(first_dirty) if seg.base_offset < first_dirty else None
            start_pos = found[0] if found is not None else 0
            for chunk, batches in _iter_chunks(seg, start_pos):
                st.map_bytes_read += len(chunk)
                keys: list = []
                offs: list = []
                for p, h in batches:
                    if h.is_control or not h.record_count:
                        continue
                    buf, start = _records_of(chunk, p, h, f"position {p} of {seg.log_path}")
                    n0 = len(offs)
                    try:
                        scan_records(buf, start, h.record_count, keys, offs, None, None, None)
                    except (IndexError, ValueError) as e:
                        raise CorruptRecordError(f"malformed records in batch at offset {h.base_offset} of "
                                                 f"{seg.log_path}: {e}", path=seg.log_path) from None
                    b = h.base_offset
                    for i in range(n0, len(offs)):
                        offs[i] += b
                last_h = batches[-1][1]
                if keys:
                    offsets = np.fromiter(offs, dtype=np.int64, count=len(offs))
                    sel = offsets >= first_dirty
                    keyed = np.fromiter((k is not None for k in keys), dtype=bool, count=len(keys))
                    sel &= keyed
                    if not sel.all():
                        idx = np.flatnonzero(sel)
                        keys = [keys[i] for i in idx]
                        offsets = offsets[idx]
                    h1, h2 = hash_keys(keys)
                    took = m.put_many(h1, h2, offsets)
                    if took < len(keys):
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
                     st: CleanerStats) -> tuple[LogSegment, int | None]:
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
        w = _Writer(out, lambda: self._step(f"write:{base}"))
        last_h: R.BatchHeader | None = None
        try:
            for seg in group:
                for chunk, batches in _iter_chunks(seg):
                    self._check_stop()
                    st.bytes_read += len(chunk)
                    last_h = batches[-1][1]
                    h_pending = self._filter_chunk(chunk, batches, seg, m, latest, now_ms, horizon, w, st)
                    if h_pending is not None:
                        pending = h_pending if pending is None else min(pending, h_pending)
            if last_h is not None and w.last_offset < last_h.last_offset:
                w.add(empty_batch(last_h), last_h, last_h.max_timestamp)
            w.finish()
        except BaseException:
            out.delete_files()
            raise
        st.bytes_written += w.written
        return out, pending

    def _filter_chunk(self, chunk: bytes, batches: list[tuple[int, R.BatchHeader]], seg: LogSegment,
                      m: OffsetMap, latest: int, now_ms: int, horizon: int, w: _Writer,
                      st: CleanerStats) -> int | None:
        """Write the kept part of each batch of one chunk; returns the earliest delete horizon of
        the tombstones kept, if any."""
        keys: list = []
        deltas: list = []
        stamps: list = []
        tombs: list = []
        bounds_all: list[list[int]] = []
        spans: list[tuple[int, int, Any, int]] = []  # (first record index, count, records buffer, start)
        for p, h in batches:
            if h.is_control or not h.record_count:
                spans.append((len(keys), 0, None, 0))
                bounds_all.append([])
                continue
            buf, start = _records_of(chunk, p, h, f"position {p} of {seg.log_path}")
            bounds: list[int] = []
            n0 = len(keys)
            try:
                scan_records(buf, start, h.record_count, keys, deltas, stamps, tombs, bounds)
            except (IndexError, ValueError) as e:
                raise CorruptRecordError(f"malformed records in batch at offset {h.base_offset} of "
                                         f"{seg.log_path}: {e}", path=seg.log_path) from None
            spans.append((n0, h.record_count, buf, start))
            bounds_all.append(bounds)
        n = len(keys)
        st.records_read += n
        if n:
            counts = np.fromiter((s[1] for s in spans), dtype=np.int64, count=len(spans))
            bases = np.fromiter((h.base_offset for _p, h in batches), dtype=np.int64, count=len(batches))
            offsets = np.repeat(bases, counts) + np.fromiter(deltas, dtype=np.int64, count=n)
            keyed = np.fromiter((k is not None for k in keys), dtype=bool, count=n)
            found = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)  # keyless: never kept
            if keyed.all():
                h1, h2 = hash_keys(keys)
                found = m.get_many(h1, h2)
            elif keyed.any():
                idx = np.flatnonzero(keyed)
                h1, h2 = hash_keys([keys[i] for i in idx])
                found[idx] = m.get_many(h1, h2)
            tomb = np.fromiter(tombs, dtype=bool, count=n)
            has_horizon = np.fromiter((bool(h.attributes & R.DELETE_HORIZON_BIT) for _p, h in batches),
                                      dtype=bool, count=len(batches))
            expired = np.fromiter((h.base_timestamp <= now_ms for _p, h in batches), dtype=bool,
                                  count=len(batches)) & has_horizon
            drop_tomb = np.repeat(expired, counts) & tomb
            keep = (offsets > latest) | ((offsets >= found) & ~drop_tomb)
            st.tombstones_dropped += int((drop_tomb & (offsets >= found) & (offsets <= latest)).sum())
        pending: int | None = None
        for bi, (p, h) in enumerate(batches):
            i0, cnt, buf, start = spans[bi]
            if buf is None:
                if h.record_count or h.is_control:
                    w.add(memoryview(chunk)[p:p + h.size], h, h.max_timestamp)
                continue
            k = keep[i0:i0 + cnt]
            nk = int(k.sum())
            if nk == 0:
                continue
            kept_tomb = bool((tomb[i0:i0 + cnt] & k).any())
            batch_horizon = bool(h.attributes & R.DELETE_HORIZON_BIT)
            set_horizon = kept_tomb and not batch_horizon
            if kept_tomb:
                hz = horizon if set_horizon else h.base_timestamp
                pending = hz if pending is None else min(pending, hz)
            st.records_kept += nk
            if nk == cnt and not set_horizon:
                w.add(memoryview(chunk)[p:p + h.size], h, h.max_timestamp)
                continue
            bounds = bounds_all[bi]
            idx = np.flatnonzero(k).tolist()
            if set_horizon:
                parts = [_rebase_timestamp(buf[bounds[i]:bounds[i + 1]], h.base_timestamp, horizon) for i in idx]
                base_ts = horizon
                attrs = h.attributes | R.DELETE_HORIZON_BIT
            else:
                parts = [buf[bounds[i]:bounds[i + 1]] for i in idx]
                base_ts = h.base_timestamp
                attrs = h.attributes
            if h.log_append_time:
                max_ts = h.max_timestamp
            else:
                max_ts = h.base_timestamp + max(stamps[i0 + i] for i in idx)
            payload = b"".join(parts)
            codec = h.attributes & 0x07
            if codec:
                payload = R.compress(codec, payload)
            w.add(_batch_bytes(h, attrs, base_ts, max_ts, nk, payload), h, max_ts)
            st.batches_rewritten += 1
        return pending


def install(store: "LogStore") -> None:
    """Give the store its cleaner; wake it every `log.cleaner.backoff.ms` when enabled. The cleaner
    thread starts at the first wake-up (so a store opened with background=False runs none)."""
    cleaner = LogCleaner(store)
    store.log_cleaner = cleaner  # type: ignore[attr-defined]
    if store.config.cleaner_enable:
        store.add_periodic(max(store.config.cleaner_backoff_ms, 10) / 1000, cleaner.wake)
