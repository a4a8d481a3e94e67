"""The batch-level I/O of a cleaning: read a segment's batches a chunk at a time, decode their
records to numpy arrays, rebuild the batches that lose records, and write the kept batches to
the cleaned segment.

Reading (`iter_chunks`): whole batches from a file position, `IO_CHUNK` bytes at a time (one
batch at a time when a batch is larger); CRCs and offset order are checked, a bad batch raises
CorruptRecordError naming the file and position.

Decoding (`ChunkRecords`): a chunk's batches are decompressed into one buffer; the only Python
loop per record follows the record-length chain; every other field is decoded for all records
at once with numpy, and the keys are hashed in place (offset_map.hash_spans) without making
Python objects. The record layout it reads (Kafka's record v2, after the batch header):
    length          zigzag varint   bytes of the record after this field
    attributes      i8              unused
    timestampDelta  zigzag varint   against the batch's baseTimestamp
    offsetDelta     zigzag varint   against the batch's baseOffset
    keyLength       zigzag varint   -1 = null key (keyless record)
    key             keyLength bytes
    valueLength     zigzag varint   -1 = null value (tombstone): the byte is 0x01
    value, headers  (not decoded)

Rebuilding (`batch_bytes`, `rebase_timestamp`, `empty_batch`): a batch that loses records keeps
its baseOffset, lastOffsetDelta (so offsets and the batch's last offset never change; holes are
normal), leader epoch, producer id/epoch/sequence, attributes and compression codec; its header
(records.HEADER) is packed anew with the kept record count and maxTimestamp, and its CRC-32C
recomputed over the bytes from `attributes` on. `rebase_timestamp` moves one record's timestamp
delta to a new baseTimestamp (the delete horizon), so every record keeps its timestamp. An
empty batch (recordCount 0, no payload, codec and delete-horizon bits cleared) keeps the
offsets of the batch it replaces.

Writing (`BatchWriter`): whole batches appended to the cleaned segment `WRITE_CHUNK` bytes at a
time; the time index ends with the largest timestamp written.

Memory: one read chunk, its decoded arrays and the write buffer; none grows with the number of
keys or the log's size.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from . import records as R
from .errors import CorruptRecordError
from .offset_map import KEY_PAD, hash_spans
from .segment import LogSegment

IO_CHUNK = 1 << 20  # bytes of log read (and written) at a time: the cleaner's I/O buffer
WRITE_CHUNK = 1 << 20
EMPTY_BATCH_LENGTH = R.HEADER_SIZE - R.LOG_OVERHEAD  # batchLength of a batch with no records

_U64 = np.uint64

Chunk = tuple[bytes, list[tuple[int, R.BatchHeader]], int]  # (bytes, [(position in chunk, header)], file position)


# ------------------------------------------------------------------------------ reading

def iter_chunks(seg: LogSegment, position: int = 0, *, validate: bool = True) -> Iterator[Chunk]:
    """(chunk, [(position in chunk, header)], chunk's file position) over whole batches from
    `position`, IO_CHUNK at a time (one batch at a time when a batch is larger). With `validate`,
    CRCs and offset order are checked; a bad batch raises CorruptRecordError naming the file and
    position (headers alone are always read, and a truncated batch always raises)."""
    end = seg.size
    pos = position
    next_offset = seg.base_offset
    while pos < end:
        chunk = seg.pread(min(IO_CHUNK, end - pos), pos)
        batches = list(R.iter_headers(chunk))
        if not batches:
            h = R.read_header(chunk) if len(chunk) >= R.HEADER_SIZE else None
            if h is None or h.batch_length < EMPTY_BATCH_LENGTH or pos + h.size > end:
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


# ------------------------------------------------------------------------------ decoding

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
    then `KEY_PAD` zero bytes; `arr` is the same as uint8. Per batch of `batches`: `first[i]`,
    `count[i]` (0 for control and empty batches). Per record: `start`/`end` in buf, `offset`,
    `ts_delta`, `keyed`, `tomb` (null value), and the key digests `h1`/`h2` (keyed records only,
    in record order, `key_index` maps record → digest row, -1 when keyless)."""

    __slots__ = ("buf", "arr", "first", "count", "start", "end", "offset", "ts_delta", "keyed", "tomb",
                 "h1", "h2", "key_index", "n")

    def __init__(self, chunk: bytes, batches: list[tuple[int, R.BatchHeader]], path: str, base: int) -> None:
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
        parts.append(bytes(KEY_PAD))
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


# ------------------------------------------------------------------------------ rebuilding

def rebase_timestamp(rec: bytes, old_base: int, new_base: int) -> bytes:
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


def batch_bytes(h: R.BatchHeader, attributes: int, base_ts: int, max_ts: int, count: int,
                payload: bytes) -> bytes:
    """`h`'s batch with new attributes, baseTimestamp, maxTimestamp, recordCount and records
    (`payload`, already compressed with the codec `attributes` names); the CRC is recomputed."""
    out = bytearray(R.HEADER_SIZE + len(payload))
    R.HEADER.pack_into(out, 0, h.base_offset, EMPTY_BATCH_LENGTH + len(payload), h.leader_epoch, R.MAGIC, 0,
                       attributes, h.last_offset_delta, base_ts, max_ts, h.producer_id, h.producer_epoch,
                       h.base_sequence, count)
    out[R.HEADER_SIZE:] = payload
    R._U32.pack_into(out, 17, R.crc32c(memoryview(out)[R.CRC_START:]))
    return bytes(out)


def empty_batch(h: R.BatchHeader) -> bytes:
    """A batch with no records that keeps `h`'s offsets: what remains of a fully cleaned batch
    that must still mark where its segment ends."""
    attrs = h.attributes & ~(0x07 | R.DELETE_HORIZON_BIT)
    return batch_bytes(h, attrs, h.base_timestamp, h.max_timestamp, 0, b"")


# ------------------------------------------------------------------------------ writing

class BatchWriter:
    """Appends whole batches to the cleaned segment, a write chunk at a time, and remembers the
    largest timestamp so the time index ends with it."""

    def __init__(self, seg: LogSegment, on_write: Callable[[], None] | None = None) -> None:
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
        if len(self.buf) >= WRITE_CHUNK:
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
