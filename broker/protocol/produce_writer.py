"""A dedicated Produce response writer: the whole frame from plain tuples, without kio entities.

kio's generic writer needs one entity object per partition (plus an ErrorCode enum and a
datetime), which costs more than the append itself when a request carries hundreds of small
partitions. This writer packs the same bytes directly; tests/test_produce_writer.py checks it
byte for byte against kio's encoding for every served version.

Layout of ProduceResponse (versions 3-11; big-endian; v9+ flexible: compact arrays/strings are
uvarint(len+1), nullable strings uvarint(0) for null, and each struct ends with tagged fields,
written here as an empty set 0x00 — the v10+ tagged current_leader / node_endpoints are only
sent with NOT_LEADER errors, which a single broker never gives):

    responses: [ name: string
                 partition_responses: [ index i32, error_code i16, base_offset i64,
                                        log_append_time_ms i64, v5+: log_start_offset i64,
                                        v8+: record_errors [batch_index i32, message nullable string],
                                        v8+: error_message nullable string ] ]
    throttle_time_ms i32

Response header: v0 (correlation id) below v9, v1 (plus empty tagged fields) from v9.
"""

from __future__ import annotations

import struct
from typing import Sequence

MIN_VERSION = 3
MAX_VERSION = 11

_i16 = struct.Struct(">h").pack
_i32 = struct.Struct(">i").pack
_part = struct.Struct(">ihqq").pack          # index, error_code, base_offset, log_append_time_ms
_i64 = struct.Struct(">q").pack
_hdr0 = struct.Struct(">ii").pack            # size, correlation id
_hdr1 = struct.Struct(">iiB").pack           # size, correlation id, empty tagged fields

# one partition's outcome: (index, error_code, base_offset, log_append_time_ms, log_start_offset,
# error_message or None)
PartitionOutcome = tuple


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def write_produce_response(version: int, correlation_id: int,
                           topics: Sequence[tuple[str, Sequence[PartitionOutcome]]],
                           throttle_time_ms: int = 0) -> bytes:
    """The whole response frame (size prefix and response header included)."""
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"Produce v{version} is not written here")
    flexible = version >= 9
    v5 = version >= 5
    v8 = version >= 8
    out = bytearray(9 if flexible else 8)     # header, filled in at the end
    out += _uvarint(len(topics) + 1) if flexible else _i32(len(topics))
    for name, parts in topics:
        nb = name.encode()
        out += (_uvarint(len(nb) + 1) if flexible else _i16(len(nb))) + nb
        out += _uvarint(len(parts) + 1) if flexible else _i32(len(parts))
        for index, error, base, append_time, lso, message in parts:
            out += _part(index, error, base, append_time)
            if v5:
                out += _i64(lso)
            if v8:
                out += b"\x01" if flexible else b"\x00\x00\x00\x00"     # no record errors
                if message is None:
                    out += b"\x00" if flexible else b"\xff\xff"
                else:
                    mb = message.encode()
                    out += (_uvarint(len(mb) + 1) if flexible else _i16(len(mb))) + mb
            if flexible:
                out += b"\x00"
        if flexible:
            out += b"\x00"
    out += _i32(throttle_time_ms)
    if flexible:
        out += b"\x00"
        out[0:9] = _hdr1(len(out) - 4, correlation_id, 0)
    else:
        out[0:8] = _hdr0(len(out) - 4, correlation_id)
    return bytes(out)


__all__ = ["MAX_VERSION", "MIN_VERSION", "write_produce_response"]
