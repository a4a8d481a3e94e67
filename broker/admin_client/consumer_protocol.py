"""The consumer protocol's byte layouts and Kafka's range assignor, as pure functions.

Owns: ConsumerProtocolSubscription v0 and ConsumerProtocolAssignment v0 (the opaque `metadata`
of JoinGroup and `assignment` of SyncGroup / DescribeGroups for protocol type "consumer"), and
`range_assign`. No I/O.

Invariants: encoders write version 0 with null user_data, byte-for-byte what the Java client
(and kafka-python) write; decoders accept any version's v0 prefix and return [] for data too
short to hold a header, as a member that has not synced yet has none.
"""

from __future__ import annotations

import struct
from typing import Iterable


def group_by_topic(tps: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    """[(topic, partition)] → {topic: [partition]}, topics and partitions in order of appearance."""
    by_topic: dict[str, list[int]] = {}
    for t, p in tps:
        by_topic.setdefault(t, []).append(p)
    return by_topic


def _w_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _r_str(data: bytes, pos: int) -> tuple[str, int]:
    (ln,) = struct.unpack_from(">h", data, pos)
    pos += 2
    return data[pos:pos + ln].decode(), pos + ln


def _r_i32(data: bytes, pos: int) -> tuple[int, int]:
    return struct.unpack_from(">i", data, pos)[0], pos + 4


def encode_subscription(topics: list[str]) -> bytes:
    """ConsumerProtocolSubscription v0: version i16, topics [string], user_data bytes (null)."""
    out = struct.pack(">hi", 0, len(topics)) + b"".join(_w_str(t) for t in topics)
    return out + struct.pack(">i", -1)


def decode_subscription(data: bytes) -> list[str]:
    """The topics of a ConsumerProtocolSubscription."""
    if len(data) < 6:
        return []
    n, pos = _r_i32(data, 2)
    topics = []
    for _ in range(max(n, 0)):
        topic, pos = _r_str(data, pos)
        topics.append(topic)
    return topics


def encode_assignment(tps: list[tuple[str, int]]) -> bytes:
    """ConsumerProtocolAssignment v0: version i16, [topic string, partitions [i32]], user_data bytes."""
    by_topic = group_by_topic(tps)
    out = bytearray(struct.pack(">hi", 0, len(by_topic)))
    for t, ps in by_topic.items():
        out += _w_str(t) + struct.pack(">i", len(ps)) + b"".join(struct.pack(">i", p) for p in sorted(ps))
    out += struct.pack(">i", -1)
    return bytes(out)


def decode_assignment(data: bytes) -> list[tuple[str, int]]:
    """The (topic, partition)s of a ConsumerProtocolAssignment, in the order written."""
    if len(data) < 6:
        return []
    n, pos = _r_i32(data, 2)
    out = []
    for _ in range(max(n, 0)):
        topic, pos = _r_str(data, pos)
        np_, pos = _r_i32(data, pos)
        for _ in range(max(np_, 0)):
            p, pos = _r_i32(data, pos)
            out.append((topic, p))
    return out


def range_assign(members: dict[str, list[str]], partitions: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
    """Kafka's RangeAssignor: per topic, members sorted by id get contiguous ranges, the first
    `n % members` one partition more."""
    out: dict[str, list[tuple[str, int]]] = {m: [] for m in members}
    topics = sorted({t for ts in members.values() for t in ts})
    for t in topics:
        subs = sorted(m for m, ts in members.items() if t in ts)
        n = partitions.get(t, 0)
        if not subs:
            continue
        per, extra = divmod(n, len(subs))
        start = 0
        for i, m in enumerate(subs):
            count = per + (1 if i < extra else 0)
            out[m].extend((t, p) for p in range(start, start + count))
            start += count
    return out
