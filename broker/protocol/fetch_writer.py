"""A dedicated Fetch response writer that never copies record data.

The response is returned as a list of buffers: encoded prefix, then each partition's record
bytes as handed in (bytes / memoryview of a file region), then the rest. The server hands that
list to `transport.writelines`. kio's generic writer would need the records concatenated into
one object first; this writer only encodes the small fixed fields.

Layout of FetchResponse (versions 4-16; big-endian; v12+ flexible: compact arrays/strings are
uvarint(len+1), and each struct ends with tagged fields, written here as an empty set 0x00):

    throttle_time_ms i32
    v7+: error_code i16, session_id i32
    responses: [ topic: string (v<13) | topic_id: uuid (v13+)
                 partitions: [ partition_index i32, error_code i16, high_watermark i64,
                               last_stable_offset i64, v5+: log_start_offset i64,
                               aborted_transactions: nullable [producer_id i64, first_offset i64],
                               v11+: preferred_read_replica i32,
                               records: nullable bytes ] ]

Response header: v0 (correlation id) below v12, v1 (plus empty tagged fields) from v12.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

MIN_VERSION = 4
MAX_VERSION = 16

_i16 = struct.Struct(">h").pack
_i32 = struct.Struct(">i").pack
_part_fixed = struct.Struct(">ihqq").pack      # partition, error, hw, lso
_i64 = struct.Struct(">q").pack


@dataclass(slots=True)
class PartitionResult:
    partition: int
    error_code: int = 0
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    records: list[Any] = field(default_factory=list)   # buffers; their total size is the records length
    records_size: int = 0


@dataclass(slots=True)
class TopicResult:
    name: str
    topic_id: uuid.UUID | None
    partitions: list[PartitionResult]


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def write_fetch_response(version: int, correlation_id: int, topics: Sequence[TopicResult], *,
                         error_code: int = 0, session_id: int = 0, throttle_time_ms: int = 0) -> list[Any]:
    """The whole response frame (size prefix included) as a list of buffers."""
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"Fetch v{version} is not written here")
    flexible = version >= 12
    parts: list[Any] = []
    cur = bytearray()
    if flexible:
        cur += b"\x00"  # response header v1 tagged fields (after the correlation id below)
    cur += _i32(throttle_time_ms)
    if version >= 7:
        cur += _i16(error_code) + _i32(session_id)
    cur += _uvarint(len(topics) + 1) if flexible else _i32(len(topics))
    total = 0
    for t in topics:
        if version >= 13:
            cur += (t.topic_id or uuid.UUID(int=0)).bytes
        else:
            name = t.name.encode()
            cur += (_uvarint(len(name) + 1) if flexible else _i16(len(name))) + name
        cur += _uvarint(len(t.partitions) + 1) if flexible else _i32(len(t.partitions))
        for p in t.partitions:
            cur += _part_fixed(p.partition, p.error_code, p.high_watermark, p.last_stable_offset)
            if version >= 5:
                cur += _i64(p.log_start_offset)
            cur += b"\x01" if flexible else b"\x00\x00\x00\x00"   # empty aborted transactions
            if version >= 11:
                cur += b"\xff\xff\xff\xff"                       # preferred_read_replica -1
            size = p.records_size
            cur += _uvarint(size + 1) if flexible else _i32(size)
            if size:
                total += len(cur)
                parts.append(cur)
                parts.extend(p.records)
                total += size
                cur = bytearray()
            if flexible:
                cur += b"\x00"
        if flexible:
            cur += b"\x00"
    if flexible:
        cur += b"\x00"
    total += len(cur)
    parts.append(cur)
    parts.insert(0, _i32(total + 4) + _i32(correlation_id))
    return parts
