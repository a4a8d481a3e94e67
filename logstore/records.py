"""RecordBatch v2 (magic 2): Apache Kafka's on-disk and on-wire unit of records.

Byte layout of one batch (big-endian; `batchLength` counts the bytes after itself, so a batch
occupies `batchLength + 12` bytes):

    offset  size  field
    0       8     baseOffset            i64   assigned by the log when the batch is appended
    8       4     batchLength           i32
    12      4     partitionLeaderEpoch  i32   set by the log; not covered by the CRC
    16      1     magic                 i8    always 2 here
    17      4     crc                   u32   CRC-32C of bytes [21, end)
    21      2     attributes            i16   bits 0-2 compression (0 none, 1 gzip, 2 snappy,
                                              3 lz4, 4 zstd), bit 3 timestamp type (1 =
                                              LogAppendTime), bit 4 transactional, bit 5 control,
                                              bit 6 delete horizon set
    23      4     lastOffsetDelta       i32
    27      8     baseTimestamp         i64
    35      8     maxTimestamp          i64
    43      8     producerId            i64   -1 when not idempotent
    51      2     producerEpoch         i16
    53      4     baseSequence          i32
    57      4     recordCount           i32
    61      ...   records (compressed as a whole when attributes say so)

Each record (varint = zigzag LEB128 as in protobuf):

    length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
    keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value |
    headerCount varint | (headerKeyLength varint | headerKey utf-8 |
                          headerValueLength varint (-1 = null) | headerValue)*

Because the CRC starts at `attributes`, the log can rewrite `baseOffset` and
`partitionLeaderEpoch` without recomputing it. Hot paths use only the 61-byte header
(`read_header`, `iter_headers`, `validate_batch`); `decode_batch` parses records for the embedded
API and tools. The compression codecs live in compression.py (re-exported here).

`build_batch` encodes the records section with aiokafka's compiled builder when it imports
(optional) and the first record's timestamp is the minimum (aiokafka takes the first as base
timestamp; ours is the minimum); otherwise, or when it refuses an input, the pure loop runs. Both
give identical bytes (tests/test_encode_fast.py).
"""

from __future__ import annotations

import struct
import time
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import crc32c as _crc32c
import msgspec

from .compression import (COMPRESSION_CODES, COMPRESSION_GZIP, COMPRESSION_LZ4, COMPRESSION_NAMES,  # noqa: F401
                          COMPRESSION_NONE, COMPRESSION_SNAPPY, COMPRESSION_ZSTD, compress, compression_code,
                          decompress)
from .encode_uniform import encode_uniform_pairs
from .errors import CorruptRecordError, UnsupportedForMessageFormatError

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = 61
assert HEADER.size == HEADER_SIZE
LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes not counted by batchLength
LONG_MAX_TS = (1 << 63) - 1
CRC_START = 21
MAGIC_OFFSET = 16
MAGIC = 2

TIMESTAMP_TYPE_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20
DELETE_HORIZON_BIT = 0x40

_BASE_OFFSET = struct.Struct(">q")
_LEADER_EPOCH = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_I16 = struct.Struct(">h")

crc32c = _crc32c.crc32c


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def compression(self) -> int:
        return self.attributes & 0x07

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_BIT)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


class Record(msgspec.Struct, frozen=True, gc=False):
    """One decoded record: `offset`, `timestamp` (ms since the epoch, -1 when none), `key`,
    `value` (bytes, or None for null) and `headers`, a tuple of (str, bytes | None) pairs (`()`
    when there are none).

    Immutable and hashable; compares by value. Built in C by msgspec and not tracked by the garbage
    collector (`gc=False`): a read that keeps 10,000 records in a list then costs the collector
    nothing, where tuple records made it run full collections (half of read time, see
    bench/embedded.py). The price: a Record must not be part of a reference cycle (its fields are
    bytes, ints and tuples, so it cannot be unless headers hold something other than bytes).
    `msgspec.structs.replace(rec, value=...)` makes a changed copy.
    """

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def __iter__(self) -> Iterator[Any]:
        """The fields in order, so that `offset, timestamp, key, value, headers = rec` works."""
        return iter(msgspec.structs.astuple(self))


read_header_from = HEADER.unpack_from


def read_header(buf: Any, pos: int = 0) -> BatchHeader:
    """The header of the batch at `pos`. O(1); does not check magic or CRC."""
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


def iter_headers(buf: Any, pos: int = 0, end: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
    """(position, header) of each complete batch in buf[pos:end]; stops at the first incomplete one.

    Reads headers only, O(number of batches). Does not validate CRCs (see `validate_batch`).
    """
    if end is None:
        end = len(buf)
    unpack = HEADER.unpack_from
    make = BatchHeader._make
    while pos + HEADER_SIZE <= end:
        h = make(unpack(buf, pos))
        size = h.batch_length + LOG_OVERHEAD
        if h.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + size > end:
            return
        yield pos, h
        pos += size


def check_header(h: BatchHeader, *, where: str = "", position: int | None = None, path: str | None = None) -> None:
    """Structural checks on a header alone: magic, lengths, counts. Raises CorruptRecordError."""
    if h.magic != MAGIC:
        if h.magic in (0, 1) and path is None:
            # from a producer: an old client. In a file of ours (`path`), only v2 is ever
            # written, so an old magic there is corruption like any other
            raise UnsupportedForMessageFormatError(
                f"message format v{h.magic} is not supported{where}: only RecordBatch v2 (magic 2) is stored")
        raise CorruptRecordError(f"invalid magic byte {h.magic}{where}", path=path, position=position)
    if h.batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptRecordError(f"batch length {h.batch_length} is smaller than a batch header{where}",
                                 path=path, position=position)
    if h.last_offset_delta < 0 or h.record_count < 0 or (h.record_count and h.last_offset_delta < h.record_count - 1):
        raise CorruptRecordError(
            f"inconsistent record count {h.record_count} / last offset delta {h.last_offset_delta}{where}",
            path=path, position=position)


def validate_batch(buf: Any, pos: int = 0, h: BatchHeader | None = None, *, path: str | None = None,
                   base: int = 0) -> BatchHeader:
    """Check the batch at `pos`: complete, magic 2, sane lengths, CRC-32C. Returns its header.

    `path` and `base` (file position of buf[0]) only make the error message say where.
    """
    where = f" at position {base + pos}" + (f" of {path}" if path else "")
    if pos + HEADER_SIZE > len(buf):
        raise CorruptRecordError(f"truncated batch header ({len(buf) - pos} bytes){where}", path=path,
                                 position=base + pos)
    if h is None:
        h = read_header(buf, pos)
    check_header(h, where=where, position=base + pos, path=path)
    end = pos + h.batch_length + LOG_OVERHEAD
    if end > len(buf):
        raise CorruptRecordError(
            f"batch of {h.batch_length + LOG_OVERHEAD} bytes is truncated to {len(buf) - pos}{where}",
            path=path, position=base + pos)
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    actual = crc32c(mv[pos + CRC_START:end])
    if actual != h.crc:
        raise CorruptRecordError(f"CRC mismatch{where}: stored {h.crc:#010x}, computed {actual:#010x}",
                                 path=path, position=base + pos)
    return h


def set_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    _BASE_OFFSET.pack_into(buf, pos, base_offset)


def set_leader_epoch(buf: bytearray | memoryview, pos: int, epoch: int) -> None:
    _LEADER_EPOCH.pack_into(buf, pos + 12, epoch)


def set_log_append_time(buf: bytearray | memoryview, pos: int, timestamp: int) -> None:
    """Stamp LogAppendTime: sets the timestamp-type bit and maxTimestamp, then recomputes the CRC."""
    h = read_header(buf, pos)
    _I16.pack_into(buf, pos + 21, h.attributes | TIMESTAMP_TYPE_BIT)
    _I64.pack_into(buf, pos + 35, timestamp)
    end = pos + h.batch_length + LOG_OVERHEAD
    _U32.pack_into(buf, pos + 17, crc32c(memoryview(buf)[pos + CRC_START:end]))


# ---------------------------------------------------------------------------- varints

def encode_varint(value: int, out: bytearray) -> None:
    """Append a zigzag varint (works for 32- and 64-bit values)."""
    v = (value << 1) ^ (value >> 63)
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def decode_varint(buf: Any, pos: int) -> tuple[int, int]:
    """(value, new position) of the zigzag varint at `pos`."""
    b = buf[pos]
    pos += 1
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos
    result = b & 0x7F
    shift = 7
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError(f"varint longer than 10 bytes at {pos}")


# ---------------------------------------------------------------------------- encode

def _normalise(rec: Any) -> tuple[bytes | None, bytes | None, Sequence, int | None]:
    if isinstance(rec, Record):
        return rec.key, rec.value, rec.headers, rec.timestamp
    n = len(rec)
    if n == 2:
        return rec[0], rec[1], (), None
    if n == 3:
        return rec[0], rec[1], rec[2] or (), None
    if n == 4:
        return rec[0], rec[1], rec[2] or (), rec[3]
    raise ValueError("a record is (key, value[, headers[, timestamp_ms]])")


def _compiled(name: str) -> Any:
    """A class of aiokafka's compiled record codec, or False when it cannot be imported (not
    installed, or built for another interpreter): the pure loops are used then."""
    try:
        from aiokafka.record import _crecords
        return getattr(_crecords, name)
    except Exception:
        return False


_FAST_BUILDER: Any = None  # aiokafka's DefaultRecordBatchBuilder, False when unavailable, None: not tried
_NO_LIMIT = 2**31 - 1


def fast_encode_available() -> bool:
    """True when the compiled record writer (aiokafka's) can be used by `build_batch`."""
    global _FAST_BUILDER
    if _FAST_BUILDER is None:
        _FAST_BUILDER = _compiled("DefaultRecordBatchBuilder")
    return _FAST_BUILDER is not False


_NO_HEADERS: list = []  # handed to aiokafka's builder, which only reads it


def _encode_records_fast(records: Sequence[Any], now: int) -> tuple[bytearray, int, int, int] | None:
    """(whole batch as aiokafka built it, record count, base timestamp, max timestamp) via its
    compiled builder in one pass, or None when it is unavailable or objects to anything (the
    caller then runs the pure loop, which defines the semantics and the error messages). The
    caller overwrites the 61-byte header and the CRC.

    aiokafka takes the first record's timestamp as the base timestamp, so this gives up (None)
    as soon as a record is older than the first; otherwise the bytes are identical to
    `_encode_records`' (tested in tests/test_encode_fast.py)."""
    uniform = encode_uniform_pairs(records)  # pairs of one shape: no per-record call at all
    if uniform is not None:
        return uniform, len(records), now, now
    if not (_FAST_BUILDER or fast_encode_available()) or not records:
        return None
    try:
        builder = _FAST_BUILDER(MAGIC, 0, 0, -1, -1, -1, _NO_LIMIT)
        append = builder.append
        try:
            # the common shape first: every record a (key, value) pair, stamped `now`
            for i, (key, value) in enumerate(records):
                if append(i, now, key, value, _NO_HEADERS) is None:
                    return None
            return builder.build(), len(records), now, now
        except ValueError:  # a record that is not a pair: the general loop, from a new builder
            builder = _FAST_BUILDER(MAGIC, 0, 0, -1, -1, -1, _NO_LIMIT)
            append = builder.append
        base_ts = max_ts = None
        i = 0
        for rec in records:
            if type(rec) is tuple and len(rec) == 2:
                key, value = rec
                headers: Any = _NO_HEADERS
                ts = now
            else:
                key, value, headers, ts = _normalise(rec)
                if ts is None:
                    ts = now
                if type(headers) is not list:
                    headers = list(headers)
            if base_ts is None:
                base_ts = max_ts = ts
            elif ts < base_ts:
                return None
            elif ts > max_ts:
                max_ts = ts
            if append(i, ts, key, value, headers) is None:
                return None
            i += 1
        built = builder.build()
    except Exception:  # noqa: BLE001 (a type it does not take: the pure loop decides)
        return None
    if _I64.unpack_from(built, 27)[0] != base_ts:
        return None
    return built, i, base_ts, max_ts


def _blob(x: Any, what: str, i: int) -> bytes:
    """`x` (bytes-like) as bytes. Not `bytes(x)`: that turns an int n into n zero bytes (and 10**10
    into a MemoryError) and a list of ints into their bytes, silently storing what was not meant."""
    if type(x) is bytes:
        return x
    try:
        return memoryview(x).tobytes()
    except TypeError:
        raise TypeError(f"record {i}: {what} must be bytes-like or None, not {type(x).__name__}") from None


def _encode_records(items: list[tuple[Any, Any, Any, Any]], stamps: list[int], base_ts: int) -> bytes:
    """The records section (what follows the batch header, uncompressed): the pure-Python loop."""
    body = bytearray()
    rec = bytearray()
    for i, ((key, value, headers, _), ts) in enumerate(zip(items, stamps)):
        rec.clear()
        rec.append(0)
        encode_varint(ts - base_ts, rec)
        encode_varint(i, rec)
        if key is None:
            rec.append(1)  # zigzag(-1)
        else:
            key = _blob(key, "key", i)
            encode_varint(len(key), rec)
            rec += key
        if value is None:
            rec.append(1)
        else:
            value = _blob(value, "value", i)
            encode_varint(len(value), rec)
            rec += value
        encode_varint(len(headers), rec)
        for hk, hv in headers:
            hkb = hk.encode() if isinstance(hk, str) else _blob(hk, "header key", i)
            encode_varint(len(hkb), rec)
            rec += hkb
            if hv is None:
                rec.append(1)
            else:
                hvb = hv.encode() if isinstance(hv, str) else _blob(hv, f"header {hk!r}", i)
                encode_varint(len(hvb), rec)
                rec += hvb
        encode_varint(len(rec), body)
        body += rec
    return bytes(body)


def build_batch(records: Iterable[Any], base_offset: int = 0, **options: Any) -> bytes:
    """Encode records into one RecordBatch v2. A record is (key, value[, headers[, timestamp_ms]])
    with bytes-or-None key/value and headers as (str, bytes | None) pairs; a missing timestamp is
    `timestamp` or now. Offsets are base_offset + index. O(total bytes). Options (keywords):
    compression, timestamp, producer_id, producer_epoch, base_sequence, partition_leader_epoch,
    log_append_time, transactional, control, as `build_batch_buffer` takes them.
    """
    return bytes(build_batch_buffer(records, base_offset, **options))


def build_batch_buffer(
    records: Iterable[Any],
    base_offset: int = 0,
    *,
    compression: str | int = "none",
    timestamp: int | None = None,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    log_append_time: bool = False,
    transactional: bool = False,
    control: bool = False,
) -> bytearray:
    """`build_batch` into a new bytearray the caller owns (one copy fewer: `Log.append` hands it to
    `append_batches(..., copy=False)`). Unknown keywords are a TypeError, as for any function."""
    codec = compression_code(compression)
    now = int(time.time() * 1000) if timestamp is None else timestamp
    if not isinstance(records, (list, tuple)):
        records = list(records)
    fast = _encode_records_fast(records, now)
    out: bytearray
    if fast is not None:
        built, n, base_ts, max_ts = fast
        if codec:
            payload = compress(codec, bytes(memoryview(built)[HEADER_SIZE:]))
            out = bytearray(HEADER_SIZE + len(payload))
            out[HEADER_SIZE:] = payload
        else:
            out = built  # aiokafka's header is overwritten below
    else:
        items = [_normalise(r) for r in records]
        if not items:
            raise ValueError("a record batch needs at least one record")
        stamps = [now if ts is None else ts for _, _, _, ts in items]
        base_ts = min(stamps)
        max_ts = max(stamps)
        payload = compress(codec, _encode_records(items, stamps, base_ts))
        n = len(items)
        out = bytearray(HEADER_SIZE + len(payload))
        out[HEADER_SIZE:] = payload
    attributes = codec
    if log_append_time:
        attributes |= TIMESTAMP_TYPE_BIT
    if transactional:
        attributes |= TRANSACTIONAL_BIT
    if control:
        attributes |= CONTROL_BIT
    HEADER.pack_into(out, 0, base_offset, len(out) - LOG_OVERHEAD, partition_leader_epoch,
                     MAGIC, 0, attributes, n - 1, base_ts, max_ts, producer_id, producer_epoch,
                     base_sequence, n)
    _U32.pack_into(out, 17, crc32c(memoryview(out)[CRC_START:]))
    return out


# ---------------------------------------------------------------------------- decode
#
# Two decoders give identical `Record`s. The pure-Python loop (`_decode_records`) is always
# there and defines the semantics. The fast path hands a whole uncompressed batch to aiokafka's
# compiled record reader (`aiokafka.record._crecords`, extra `[fast]`, imported on first use) and
# builds each Record from its record object in one list comprehension (header lists become
# tuples). aiokafka's objects and their header lists are tracked by the garbage collector, but
# each dies as soon as its Record exists, so they never accumulate to trigger collections (the
# Records are untracked). The fast path is trusted only when it raises nothing and its offsets
# agree with the header: any error there (bounds, trailing bytes, bad UTF-8) re-runs the pure
# loop, which either decodes the batch (it tolerates bytes after the last record) or raises the
# CorruptRecordError naming path and position. CRC and header checks run before either decoder.
# Known difference, by design: aiokafka reads the record attributes byte as a varint; Kafka
# writes 0 there (the bits are unused), and a byte >= 0x80 misaligns the record, which its length
# check then rejects. Cost on this project's 2-core box, 100-byte values: pure ~0.3 M records/s,
# fast 1.8-2.6 M records/s through `Log.read` (bench/embedded.py); 10-20% more, measured
# interleaved in one process, than the earlier msgspec.convert(from_attributes) over chunks of
# 128 aiokafka records.

_FAST_BATCH: Any = None  # aiokafka's DefaultRecordBatch, False when unavailable, None: not tried


def fast_decode_available() -> bool:
    """True when the compiled record reader (aiokafka's) can be used by `decode_batch`."""
    global _FAST_BATCH
    if _FAST_BATCH is None:
        _FAST_BATCH = _compiled("DefaultRecordBatch")
    return _FAST_BATCH is not False


def decode_batch(buf: Any, pos: int = 0, *, verify_crc: bool = True, path: str | None = None,
                 base: int = 0, fast: bool = True) -> list[Record]:
    """All records of the batch at `pos`, with absolute offsets and timestamps.

    Control batches (transaction markers) decode to no records. Raises CorruptRecordError on a
    bad batch, naming `path` and the position (`base` + pos) when given. `fast=False` forces the
    pure-Python decoder (the results are the same; see the section comment above).
    O(batch bytes); one Record per record.
    """
    if verify_crc:
        h = validate_batch(buf, pos, path=path, base=base)
    else:
        h = read_header(buf, pos)
        check_header(h, where=f" at position {base + pos}", position=base + pos, path=path)
    if h.attributes & CONTROL_BIT:
        return []
    end = pos + h.batch_length + LOG_OVERHEAD
    codec = h.attributes & 0x07
    if codec:
        try:
            data = decompress(codec, bytes(buf[pos + HEADER_SIZE:end]))
        except CorruptRecordError:
            raise
        except Exception as e:  # the codec libraries raise their own types
            raise CorruptRecordError(
                f"cannot decompress {COMPRESSION_NAMES.get(codec, codec)} batch at position {base + pos}"
                + (f" of {path}" if path else "") + f": {e}", path=path, position=base + pos) from None
        if fast and h.record_count and (_FAST_BATCH or fast_decode_available()):
            # the compiled reader wants a whole batch: a header that says "uncompressed", then data
            whole = HEADER.pack(*h[:5], h.attributes & ~0x07, *h[6:]) + data
            recs = _decode_fast(whole, h)
            if recs is not None:
                return recs
    else:
        if fast and h.record_count and (_FAST_BATCH or fast_decode_available()):
            # bytes are immutable, so a view is safe to hand over; anything else is copied so that
            # no buffer export outlives this call (a bytearray with an export cannot be resized)
            whole = memoryview(buf)[pos:end] if type(buf) is bytes else bytes(memoryview(buf)[pos:end])
            recs = _decode_fast(whole, h)
            if recs is not None:
                return recs
        data = bytes(buf[pos + HEADER_SIZE:end])
    try:
        return _decode_records(data, h)
    except (IndexError, ValueError, UnicodeDecodeError) as e:
        raise CorruptRecordError(
            f"malformed records in batch at position {base + pos}" + (f" of {path}" if path else "") + f": {e}",
            path=path, position=base + pos) from None


def _decode_fast(whole: Any, h: BatchHeader) -> list[Record] | None:
    """Records of the uncompressed batch `whole` (header included) via the compiled reader, or None
    when it objects to anything (the caller then runs the pure loop)."""
    rec = Record
    try:
        out = [rec(r.offset, r.timestamp, r.key, r.value, tuple(hs) if (hs := r.headers) else ())
               for r in _FAST_BATCH(whole)]
    except Exception:
        return None
    if len(out) != h.record_count:
        return None
    # the compiled reader is laxer than Kafka on malformed records (it reads the one-byte record
    # attributes as a varint): offsets that disagree with the header send the batch to the pure loop
    if out and (out[0].offset < h.base_offset or out[-1].offset != h.base_offset + h.last_offset_delta):
        return None
    return out


def _decode_records(data: bytes, h: BatchHeader) -> list[Record]:
    """The pure-Python decoder: the records of the (decompressed) payload `data` of the batch with
    header `h`. Raises IndexError / ValueError / UnicodeDecodeError on malformed records."""
    base_offset = h.base_offset
    base_ts = h.base_timestamp
    fixed_ts = h.max_timestamp if h.attributes & TIMESTAMP_TYPE_BIT else None
    out: list[Record] = []
    append = out.append
    R = Record
    varint = decode_varint
    pos = 0
    n = len(data)
    for _ in range(h.record_count):
        # each varint: the one-byte case inline, longer ones through decode_varint
        b = data[pos]
        if b < 0x80:
            length = (b >> 1) ^ -(b & 1)
            pos += 1
        else:
            length, pos = varint(data, pos)
        rec_end = pos + length
        if length < 0 or rec_end > n:
            raise ValueError(f"record length {length} runs past the batch")
        b = data[pos + 1]  # skip the attributes byte
        if b < 0x80:
            ts_delta = (b >> 1) ^ -(b & 1)
            pos += 2
        else:
            ts_delta, pos = varint(data, pos + 1)
        b = data[pos]
        if b < 0x80:
            off_delta = (b >> 1) ^ -(b & 1)
            pos += 1
        else:
            off_delta, pos = varint(data, pos)
        b = data[pos]
        if b == 1:  # zigzag(-1): null key, by far the most common
            key = None
            pos += 1
        else:
            if b < 0x80:
                klen = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                klen, pos = varint(data, pos)
            if klen < 0:
                key = None
            else:
                key = data[pos:pos + klen]
                pos += klen
        b = data[pos]
        if b < 0x80:
            vlen = (b >> 1) ^ -(b & 1)
            pos += 1
        else:
            vlen, pos = varint(data, pos)
        if vlen < 0:
            value = None
        else:
            value = data[pos:pos + vlen]
            pos += vlen
        if data[pos] == 0:
            headers: Any = ()
            pos += 1
        else:
            nh, pos = varint(data, pos)
            # a header takes at least 2 bytes (two one-byte lengths): a damaged count must not
            # make the loop run (and allocate) far past the record
            if nh < 0 or 2 * nh > rec_end - pos:
                raise ValueError(f"record at offset delta {off_delta} claims {nh} headers in {rec_end - pos} bytes")
            headers = []
            for _h in range(nh):
                hkl, pos = varint(data, pos)
                if hkl < 0:  # would move `pos` backwards
                    raise ValueError(f"negative header key length {hkl} at offset delta {off_delta}")
                hk = data[pos:pos + hkl].decode()
                pos += hkl
                hvl, pos = varint(data, pos)
                if hvl < 0:
                    hv = None
                else:
                    hv = data[pos:pos + hvl]
                    pos += hvl
                headers.append((hk, hv))
            headers = tuple(headers)
        if pos != rec_end:
            raise ValueError(f"record at offset delta {off_delta} has {rec_end - pos} bytes left over")
        append(R(base_offset + off_delta, base_ts + ts_delta if fixed_ts is None else fixed_ts,
                 key, value, headers))
    return out


def decode_batches(buf: Any, *, verify_crc: bool = True, path: str | None = None, base: int = 0) -> Iterator[Record]:
    """Records of every complete batch in buf, in order. A trailing partial batch is ignored
    (a fetch response may end with one)."""
    for pos, _h in iter_headers(buf):
        yield from decode_batch(buf, pos, verify_crc=verify_crc, path=path, base=base)
