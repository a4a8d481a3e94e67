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
    h1  u64   first 64 bits of the key's digest
    h2  u64   second 64 bits
    off i64   latest offset of the key; -1 = empty slot
The 128-bit digest (`hash_spans`) is MurmurHash3-x64-128's mixing over the key's 8-byte words,
seeded at random per process (keys over 64 bytes: Python's keyed SipHash plus CRC-32 and length).
Kafka keeps 16 bytes of MD5; either way two keys with the same digest would make the older one's
newest record look superseded (probability ~ keys^2 / 2^129 for the vectorised path). Open
addressing with double hashing over a prime number of slots, filled to at most 90% (Kafka's
load factor). Lookups and inserts run for a whole chunk of records at a time in numpy.

Decoding (`ChunkRecords`): a chunk's batches are decompressed into one buffer; the only Python
loop per record follows the record-length chain; every other field (timestamp and offset
deltas, key span, null value) is decoded for all records at once with numpy, and the keys are
hashed in place without making Python objects.

Memory of a cleaning = the map (fixed) + one read chunk (`IO_CHUNK`), its decoded arrays and the
write buffer (`_WRITE_CHUNK`); it does not grow with the number of keys or the log's size.

Costs: records are decoded twice (map, rewrite), a chunk of batches at a time: O(records) of a
short Python loop plus O(records) vectorised numpy; bytes copied once; kept batches that lose no
record are copied as they are.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from dataclasses import dataclass
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


_U64 = np.uint64
_C1, _C2 = _U64(0x87C37B91114253D5), _U64(0x4CF5AD432745937F)
_F1, _F2 = _U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53)
_N1, _N2, _FIVE = _U64(0x52DCE729), _U64(0x38495AB5), _U64(5)
_SEED1, _SEED2 = (_U64(x) for x in np.frombuffer(os.urandom(16), dtype=np.uint64))  # per process
_BYTE_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
MAX_VECTOR_KEY = 64  # longer keys are hashed one by one in Python
_PAD = 80  # zero bytes after a chunk's records: vectorised reads may run past the last one


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << _U64(r)) | (x >> _U64(64 - r))


def _fmix(h: np.ndarray) -> np.ndarray:
    h ^= h >> _U64(33)
    h *= _F1
    h ^= h >> _U64(33)
    h *= _F2
    h ^= h >> _U64(33)
    return h


def hash_spans(arr: np.ndarray, kp: np.ndarray, kl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The map's two 64-bit digests (h1, h2) of the keys arr[kp:kp+kl] (kl >= 0; `arr` must have
    `_PAD` readable bytes after every key). Keys up to MAX_VECTOR_KEY bytes: MurmurHash3-x64-128's
    mixing over 8-byte words, seeded per process, all keys at once in numpy; longer keys: Python's
    keyed `hash` and CRC-32 with the length. A key always takes the same path, so its digest is
    one function of its bytes."""
    n = len(kp)
    h1 = np.full(n, _SEED1, dtype=np.uint64)
    h2 = np.full(n, _SEED2, dtype=np.uint64)
    if n == 0:
        return h1, h2
    short = kl <= MAX_VECTOR_KEY
    ks = kl[short]
    width = int(ks.max()) if len(ks) else 0
    words = (width + 7) // 8
    if words:
        # every 8-byte window of the buffer as one little-endian u64 (a strided view, no copy)
        u64 = np.ndarray((len(arr) - 7,), dtype="<u8", buffer=arr, strides=(1,))
        kps = kp[short]
        a1, a2 = h1[short], h2[short]
        uniform = bool((ks == width).all())
        with np.errstate(over="ignore"):
            for j in range(words):
                left = ks - 8 * j  # bytes of the key from this word on
                w = u64[kps + 8 * j]
                if not uniform or (width - 8 * j) < 8:
                    w &= _BYTE_MASKS[np.clip(left, 0, 8)]
                k1 = _rotl(w * _C1, 31) * _C2
                k2 = _rotl(w * _C2, 33) * _C1
                n1 = _rotl(a1 ^ k1, 27) * _FIVE + _N1
                n2 = _rotl(a2 ^ k2, 31) * _FIVE + _N2
                if uniform:
                    a1, a2 = n1, n2
                else:
                    live = left > 0
                    a1 = np.where(live, n1, a1)
                    a2 = np.where(live, n2, a2)
        h1[short], h2[short] = a1, a2
    with np.errstate(over="ignore"):
        lens = kl.astype(np.uint64)
        h1 ^= lens
        h2 ^= lens
        h1 += h2
        h2 += h1
        h1 = _fmix(h1)
        h2 = _fmix(h2)
        h1 += h2
        h2 += h1
    if not short.all():
        raw = arr.tobytes() if not isinstance(arr, bytes) else arr
        for i in np.flatnonzero(~short).tolist():
            key = raw[kp[i]:kp[i] + kl[i]]
            h1[i] = hash(key) & 0xFFFFFFFFFFFFFFFF
            h2[i] = zlib.crc32(key) | (len(key) << 32)
    return h1, h2


def hash_keys(keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """`hash_spans` of a list of keys (the same digests the cleaner computes in place)."""
    buf = b"".join(keys) + bytes(_PAD)
    kl = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    kp = np.zeros(len(keys), dtype=np.int64)
    if len(keys) > 1:
        np.cumsum(kl[:-1], out=kp[1:])
    return hash_spans(np.frombuffer(buf, dtype=np.uint8), kp, kl)


class OffsetMap:
    """key digest → latest offset, in a fixed buffer of `memory` bytes (see module docstring).

    Three flat arrays rather than 24-byte rows: numpy gathers 1-D arrays faster, which matters
    more here than the extra cache lines. `put_many` O(n log n) for n records (a sort to
    deduplicate) plus ~1/(1-load) vectorised probe rounds; `get_many` O(n) plus probe rounds.
    Not thread-safe: one cleaning at a time uses it.
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
        self._cleared = False
        self.clear()

    @property
    def nbytes(self) -> int:
        """Bytes the map occupies: always <= the memory it was given."""
        return self._buf.nbytes

    def clear(self) -> None:
        if self.size or not self._cleared:
            self._off.fill(-1)
            self._cleared = True
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
        order, starts = _group(h1, h2)
        distinct = int(np.count_nonzero(starts))
        take = n
        if self.size + distinct > self.capacity:
            # may not all fit: count the keys that are new to the map, in offset order
            first = np.zeros(n, dtype=bool)
            first[order[starts]] = True
            new = first & (self.get_many(h1, h2) < 0)
            room = self.capacity - self.size
            if int(new.sum()) > room:
                take = int(np.searchsorted(np.cumsum(new), room, side="right"))
                if take == 0:
                    return 0
                h1, h2, offsets = h1[:take], h2[:take], offsets[:take]
                order, starts = _group(h1, h2)
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


def _group(h1: np.ndarray, h2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, starts): a stable sort of the digests and where each run of equal ones starts."""
    order = np.argsort(h1, kind="stable")
    s1, s2 = h1[order], h2[order]
    starts = np.empty(len(order), dtype=bool)
    starts[0] = True
    np.not_equal(s1[1:], s1[:-1], out=starts[1:])
    same1 = ~starts[1:]
    if (same1 & (s2[1:] != s2[:-1])).any():
        # equal h1 with different h2 (practically never): sort on both so equal keys are adjacent
        order = np.lexsort((h2, h1))
        s1, s2 = h1[order], h2[order]
        np.not_equal(s1[1:], s1[:-1], out=starts[1:])
        starts[1:] |= s2[1:] != s2[:-1]
    return order, starts


def _vvarint(arr: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode the zigzag varint at each position of `pos` at once: (values, positions after)."""
    raw = arr[pos].astype(np.uint64)
    val = raw & _U64(0x7F)
    size = np.ones(len(pos), dtype=np.int64)
    more = np.flatnonzero(raw & _U64(0x80))
    shift = 7
    while len(more):
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
        b = arr[pos[more] + size[more]].astype(np.uint64)
        val[more] |= (b & _U64(0x7F)) << _U64(shift)
        size[more] += 1
        more = more[(b & _U64(0x80)) != 0]
        shift += 7
    return (val >> _U64(1)).astype(np.int64) ^ -(val & _U64(1)).astype(np.int64), pos + size


class ChunkRecords:
    """The records of the batches of one chunk, decoded to arrays (one entry per record).

    `buf` holds every batch's encoded records back to back (decompressed where the batch was),
    then `_PAD` zero bytes; `arr` is the same as uint8. Per batch of `batches`: `first[i]`,
    `count[i]` (0 for control and empty batches). Per record: `start`/`end` in buf, `offset`,
    `ts_delta`, `keyed`, `tomb` (null value), and the key digests `h1`/`h2` (keyed records only,
    in record order, `key_index` maps record → digest row, -1 when keyless)."""

    __slots__ = ("buf", "arr", "first", "count", "start", "end", "offset", "ts_delta", "keyed", "tomb",
                 "h1", "h2", "key_index", "n")

    def __init__(self, chunk: bytes, batches: list[tuple[int, R.BatchHeader]], path: str, base: int):
        parts: list = []
        areas: list[tuple[int, int, int, R.BatchHeader, int]] = []
        first: list[int] = []
        count: list[int] = []
        total = 0
        n = 0
        mv = memoryview(chunk)
        for p, h in batches:
            first.append(n)
            if h.is_control or not h.record_count:
                count.append(0)
                continue
            codec = h.attributes & 0x07
            body: Any = mv[p + R.HEADER_SIZE:p + h.size]
            if codec:
                try:
                    body = R.decompress(codec, bytes(body))
                except Exception as e:  # the codec libraries raise their own types
                    raise CorruptRecordError(f"cannot decompress batch at position {base + p} of {path}: {e}",
                                             path=path, position=base + p) from None
            parts.append(body)
            areas.append((total, total + len(body), h.record_count, h, base + p))
            total += len(body)
            count.append(h.record_count)
            n += h.record_count
        parts.append(bytes(_PAD))
        buf = b"".join(parts)
        self.buf = buf
        self.n = n
        self.first = first
        self.count = count
        starts: list[int] = []
        ends: list[int] = []
        sa = starts.append
        dv = R.decode_varint
        for a, e, cnt, h, where in areas:
            # the only walk that must be sequential: each record's length says where the next starts
            pos = a
            try:
                for _ in range(cnt):
                    sa(pos)
                    b = buf[pos]
                    if b < 0x80:
                        pos += 1 + ((b >> 1) ^ -(b & 1))
                    else:
                        c = buf[pos + 1]
                        if c < 0x80:
                            v = b & 0x7F | c << 7
                            pos += 2 + ((v >> 1) ^ -(v & 1))
                        else:
                            length, q = dv(buf, pos)
                            pos = q + length
            except (IndexError, ValueError) as err:
                raise CorruptRecordError(f"malformed records in batch at position {where} of {path}: {err}",
                                         path=path, position=where) from None
            if pos != e:
                raise CorruptRecordError(f"malformed records in batch at position {where} of {path}: the "
                                         f"records end {e - pos} bytes before the batch", path=path, position=where)
            ends.extend(starts[len(ends) + 1:])
            ends.append(e)
        arr = np.frombuffer(buf, dtype=np.uint8)
        self.arr = arr
        start = np.array(starts, dtype=np.int64)
        end = np.array(ends, dtype=np.int64)
        self.start, self.end = start, end
        if n and not (end > start).all():  # each batch's records ended at its end, in strictly increasing steps
            i = int(np.flatnonzero(end <= start)[0])
            raise CorruptRecordError(f"malformed records in a batch of {path} near position {base}: record at "
                                     f"{int(start[i])} has a negative length", path=path, position=base)
        bases = np.array([h.base_offset for _a, _e, _c, h, _w in areas], dtype=np.int64)
        counts = np.array([c for _a, _e, c, _h, _w in areas], dtype=np.int64)
        try:
            _, p = _vvarint(arr, start)  # length
            p = p + 1  # attributes
            self.ts_delta, p = _vvarint(arr, p)
            od, p = _vvarint(arr, p)
            kl, p = _vvarint(arr, p)
            kp = p
            p = p + np.maximum(kl, 0)
            bad = (kl < -1) | (p >= end)
            if n and bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"record at position {int(start[i])} has a key running past its end")
            self.tomb = arr[np.minimum(p, len(buf) - 1)] == 1  # value length varint -1
        except (IndexError, ValueError) as err:
            raise CorruptRecordError(f"malformed records in a batch of {path} near position {base}: {err}",
                                     path=path, position=base) from None
        self.offset = np.repeat(bases, counts) + od
        keyed = kl >= 0
        self.keyed = keyed
        if keyed.all():
            self.key_index = np.arange(n)
            self.h1, self.h2 = hash_spans(arr, kp, kl)
        else:
            self.key_index = np.cumsum(keyed) - 1
            self.key_index[~keyed] = -1
            self.h1, self.h2 = hash_spans(arr, kp[keyed], kl[keyed])

    def record_bytes(self, i: int) -> bytes:
        return self.buf[int(self.start[i]):int(self.end[i])]


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


def _iter_chunks(seg: LogSegment, position: int = 0, *,
                 validate: bool = True) -> Iterator[tuple[bytes, list[tuple[int, R.BatchHeader]], int]]:
    """(chunk, [(position in chunk, header)], chunk's file position) over whole batches from `position`, IO_CHUNK at a
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
        yield chunk, batches, pos
        p, h = batches[-1]
        pos += p + h.size


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
        self._forget: set[str] = set()  # topics deleted since the last pass
        self._pass_segments: list[LogSegment] = []  # the sealed segments when the pass began
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
                for _chunk, batches, _at in _iter_chunks(s, validate=False):
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
        with log.lock:
            self._pass_segments = list(log.segments.values())[:-1]
        m = self.offset_map()
        m.clear()
        end = self._build_map(log, c.first_dirty, c.first_uncleanable, m, st)
        st.map_seconds = time.perf_counter() - t0
        st.map_records = m.size
        st.end_offset = end
        with log.lock:
            # every sealed segment below `end`: with nothing mapped (end == first dirty), the clean
            # section alone, which drops the tombstones whose horizon has passed
            segs = [s for s in list(log.segments.values())[:-1] if s.base_offset < end]
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
            for d in (self.checkpoints, self._horizons, self.uncleanable):
                for key in [k for k in d if k[0] == topic]:
                    del d[key]  # type: ignore[attr-defined]
                    changed = True
        return changed

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
            for chunk, batches, at in _iter_chunks(seg, start_pos):
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
                for chunk, batches, at in _iter_chunks(seg):
                    self._check_stop()
                    st.bytes_read += len(chunk)
                    last_h = batches[-1][1]
                    h_pending = self._filter_chunk(chunk, batches, at, seg, m, latest, now_ms, horizon, w, st)
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

    def _filter_chunk(self, chunk: bytes, batches: list[tuple[int, R.BatchHeader]], at: int, seg: LogSegment,
                      m: OffsetMap, latest: int, now_ms: int, horizon: int, w: _Writer,
                      st: CleanerStats) -> int | None:
        """Write the kept part of each batch of one chunk; returns the earliest delete horizon of
        the tombstones kept, if any."""
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
            if not cnt:
                if h.is_control:
                    w.add(mv[p:p + h.size], h, h.max_timestamp)
                continue  # an empty batch from an earlier cleaning: rewritten only if it ends a group
            i0 = recs.first[bi]
            k = keep[i0:i0 + cnt]
            nk = int(np.count_nonzero(k))
            if nk == 0:
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
                parts = [_rebase_timestamp(recs.record_bytes(i), h.base_timestamp, horizon) for i in idx]
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
            w.add(_batch_bytes(h, attrs, base_ts, max_ts, nk, payload), h, max_ts)
            st.batches_rewritten += 1
        return pending


def install(store: "LogStore") -> None:
    """Give the store its cleaner; wake it every `log.cleaner.backoff.ms` when enabled. The cleaner
    thread starts at the first wake-up (so a store opened with background=False runs none)."""
    cleaner = LogCleaner(store)
    store.log_cleaner = cleaner  # type: ignore[attr-defined]
    store.add_topic_listener(cleaner.on_topic_change)
    if store.config.cleaner_enable:
        store.add_periodic(max(store.config.cleaner_backoff_ms, 10) / 1000, cleaner.wake)
