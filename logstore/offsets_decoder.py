"""Decoding `__consumer_offsets` records for `dump-log --offsets-decoder` (logstore/tools.py).

Owns `parse_offsets_record`: a record of the offsets topic (written by logstore/groups.py in
Kafka's layouts) as Kafka's DumpLogSegments prints it with its offsets decoder, the key as
`{"type":"<key version>","data":{...}}` and the payload as `{"version":"<n>","data":{...}}`,
`<DELETE>` for a tombstone. Group metadata payloads carry the consumer protocol's subscription
and assignment bytes, decoded here too (big-endian, non-flexible Kafka fields, `_ProtoReader`).
Read-only and pure: bytes in, text out; a record it cannot parse is printed as base64.
"""

from __future__ import annotations

import struct
from typing import Callable

from . import records as R
from .errors import CorruptRecordError

def _json(obj: object) -> str:
    import json
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _b64(b: bytes | None) -> str | None:
    import base64
    return None if b is None else base64.b64encode(bytes(b)).decode()


class _ProtoReader:
    """Big-endian, non-flexible Kafka protocol fields (the consumer protocol's layouts)."""

    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def _take(self, fmt: str) -> int:
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def i16(self) -> int:
        return self._take(">h")

    def i32(self) -> int:
        return self._take(">i")

    def string(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        if self.pos + n > len(self.buf):
            raise ValueError("string runs past the end")
        s = self.buf[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def nullable_bytes(self) -> bytes | None:
        n = self.i32()
        if n < 0:
            return None
        if self.pos + n > len(self.buf):
            raise ValueError("bytes run past the end")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def array(self, item: Callable[[], object]) -> list:
        n = self.i32()
        if n > len(self.buf):
            raise ValueError(f"array of {n} items is longer than the data")
        return [item() for _ in range(max(n, 0))]


def _topic_partitions(r: _ProtoReader) -> list:
    return r.array(lambda: {"topic": r.string(), "partitions": r.array(r.i32)})


def _subscription_json(data: bytes) -> dict | None:
    """ConsumerProtocolSubscription v0-3 as Kafka's JSON converter writes it; None if unreadable."""
    try:
        r = _ProtoReader(bytes(data))
        version = r.i16()
        if not 0 <= version <= 3:
            return None
        out: dict = {"topics": r.array(r.string), "userData": _b64(r.nullable_bytes())}
        if version >= 1:
            out["ownedPartitions"] = _topic_partitions(r)
        if version >= 2:
            out["generationId"] = r.i32()
        if version >= 3:
            out["rackId"] = r.string()
        return out
    except (struct.error, ValueError, UnicodeDecodeError):
        return None


def _assignment_json(data: bytes) -> dict | None:
    """ConsumerProtocolAssignment v0-3 as Kafka's JSON converter writes it; None if unreadable."""
    try:
        r = _ProtoReader(bytes(data))
        version = r.i16()
        if not 0 <= version <= 3:
            return None
        return {"assignedPartitions": _topic_partitions(r), "userData": _b64(r.nullable_bytes())}
    except (struct.error, ValueError, UnicodeDecodeError):
        return None


def _group_value_json(version: int, g: "object") -> dict:
    from .groups import GroupMetadataValue
    assert isinstance(g, GroupMetadataValue)
    data: dict = {"protocolType": g.protocol_type, "generation": g.generation, "protocol": g.protocol,
                  "leader": g.leader}
    if version >= 2:
        data["currentStateTimestamp"] = g.current_state_timestamp
    members = []
    for m in g.members:
        mj: dict = {"memberId": m.member_id}
        if version >= 3:
            mj["groupInstanceId"] = m.group_instance_id
        mj["clientId"] = m.client_id
        mj["clientHost"] = m.client_host
        if version >= 1:
            mj["rebalanceTimeout"] = m.rebalance_timeout
        mj["sessionTimeout"] = m.session_timeout
        sub: object = _b64(m.subscription)
        asg: object = _b64(m.assignment)
        if g.protocol_type == "consumer":  # as Kafka, the consumer protocol's bytes decoded when they parse
            sub = _subscription_json(m.subscription) or sub
            asg = _assignment_json(m.assignment) or asg
        mj["subscription"] = sub
        mj["assignment"] = asg
        members.append(mj)
    data["members"] = members
    return data


def parse_offsets_record(rec: R.Record) -> tuple[str | None, str | None]:
    """(key, payload) of a `__consumer_offsets` record as Kafka's `--offsets-decoder` prints them:
    `{"type":"1","data":{"group":..,"topic":..,"partition":..}}` and
    `{"version":"3","data":{"offset":..,"leaderEpoch":..,"metadata":..,"commitTimestamp":..}}`,
    `{"type":"2","data":{"group":..}}` and the GroupMetadataValue (consumer-protocol members'
    subscription / assignment decoded), `<DELETE>` for a tombstone. A record that does not decode
    is reported in the key, as Kafka does; a record without a key is an error (CorruptRecordError)."""
    from . import groups as G
    if rec.key is None:
        raise CorruptRecordError(f"Failed to decode message at offset {rec.offset} using the specified decoder "
                                 "(message had a missing key)")
    try:
        key = bytes(rec.key)
        ktype = struct.unpack_from(">h", key)[0]
        k = G.decode_key(key, where=f"key at offset {rec.offset}")
        if k is None:
            return f"Unknown record type {ktype} at offset {rec.offset}, skipping.", None
        if isinstance(k, G.OffsetCommitKey):
            kdata: dict = {"group": k.group, "topic": k.topic, "partition": k.partition}
        else:
            kdata = {"group": k.group}
        key_text = _json({"type": str(ktype), "data": kdata})
        if rec.value is None:
            return key_text, "<DELETE>"
        value = bytes(rec.value)
        vversion = struct.unpack_from(">h", value)[0]
        where = f"value at offset {rec.offset}"
        if isinstance(k, G.OffsetCommitKey):
            om = G.decode_offset_value(value, where)
            vdata: dict = {"offset": om.offset}
            if vversion >= 3:
                vdata["leaderEpoch"] = om.leader_epoch
            vdata["metadata"] = om.metadata
            vdata["commitTimestamp"] = om.commit_timestamp
            if vversion == 1:
                vdata["expireTimestamp"] = om.expire_timestamp
        else:
            vdata = _group_value_json(vversion, G.decode_group_value(value, where))
        return key_text, _json({"version": str(vversion), "data": vdata})
    except (CorruptRecordError, struct.error, ValueError) as e:
        return f"Error at offset {rec.offset}, skipping. {e}", None
