"""Consumer-group offsets and group metadata in the compacted `__consumer_offsets` topic.

Owns the byte layout of the records Apache Kafka's group coordinator writes there, the mapping
group → offsets partition, and `GroupOffsetStore`: the in-memory view of those records, rebuilt
at open by replaying the topic, and the writer of new ones. The broker's group coordinator
(broker/coordinator) and the embedded consumer both use it, so an application can switch
between embedding the log and serving it to Kafka clients without losing its place.

Partition of a group: abs(javaHashCode(group_id)) % partitions (Kafka's `Utils.abs`, which maps
Integer.MIN_VALUE to 0), so our files and a Kafka broker's agree on where a group lives.

Record layouts (big-endian; `string` = i16 length + UTF-8, -1 = null; `bytes` = i32 length;
flexible versions use compact forms: uvarint(length + 1), and end each struct with tagged fields):

    key   = i16 key_version + fields
      key_version 0 or 1: OffsetCommitKey    group string, topic string, partition i32
      key_version 2:      GroupMetadataKey   group string
    value = i16 value_version + fields, or null (a tombstone: the offset / group is deleted)
      OffsetCommitValue  v0: offset i64, metadata string, commit_timestamp i64
                         v1: v0 + expire_timestamp i64
                         v2: as v0
                         v3: offset i64, leader_epoch i32, metadata string, commit_timestamp i64
                         v4: v3, flexible                              (we write v3)
      GroupMetadataValue protocol_type string, generation i32, protocol string?, leader string?,
                         current_state_timestamp i64 (v2+), members [MemberMetadata]
                         MemberMetadata: member_id string, group_instance_id string? (v3+),
                           client_id string, client_host string, rebalance_timeout i32 (v1+),
                           session_timeout i32, subscription bytes, assignment bytes
                         v4: v3, flexible                              (we write v3)

Invariants: the in-memory view equals the replay of the topic (every change is appended before
it is applied); all records of one group live in one partition, and one commit is one batch, so
a commit of many partitions is all-or-nothing; a deleted group or offset is a tombstone, which
compaction keeps for `delete.retention.ms`, then drops.

Durability: `commit` returns once the batch is appended (written to the file, so it survives a
kill -9 of the process, as Kafka acks after the append); it also fsyncs the partition first,
which makes it survive power loss, with `fsync=True` or when the offsets topic's own flush
policy asks (`flush.messages`, e.g. 1; otherwise `flush.ms` flushes in the background). Costs: commit O(partitions committed);
fetch O(partitions asked); open O(records in the topic).
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .errors import CorruptRecordError, LogStoreError, UnknownTopicOrPartitionError
from .records import build_batch

if TYPE_CHECKING:
    from .log import Log
    from .store import LogStore

log = logging.getLogger("logstore.groups")

OFFSETS_TOPIC = "__consumer_offsets"
DEFAULT_OFFSETS_PARTITIONS = 50
# Kafka's internal-topic settings (offsets.topic.segment.bytes, compact cleanup policy).
OFFSETS_TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.bytes": "104857600"}

OFFSET_COMMIT_KEY_VERSION = 1
GROUP_METADATA_KEY_VERSION = 2
OFFSET_COMMIT_VALUE_VERSION = 3
GROUP_METADATA_VALUE_VERSION = 3

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


def java_string_hash(s: str) -> int:
    """Java's `String.hashCode()`: sum of UTF-16 code units * 31^(n-1-i), as a signed int32."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_group(group_id: str, partitions: int) -> int:
    """The `__consumer_offsets` partition that holds `group_id` (Kafka's placement)."""
    h = java_string_hash(group_id)
    return 0 if h == -(1 << 31) else abs(h) % partitions


# -- records -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OffsetCommitKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True)
class GroupMetadataKey:
    group: str


@dataclass(frozen=True)
class OffsetAndMetadata:
    """A committed offset. `leader_epoch` -1 = unknown; `expire_timestamp` -1 = none (v1 only)."""

    offset: int
    metadata: str = ""
    commit_timestamp: int = -1
    leader_epoch: int = -1
    expire_timestamp: int = -1


@dataclass(frozen=True)
class MemberMetadata:
    member_id: str
    client_id: str
    client_host: str
    session_timeout: int
    rebalance_timeout: int
    subscription: bytes
    assignment: bytes
    group_instance_id: str | None = None


@dataclass(frozen=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int = -1
    members: tuple[MemberMetadata, ...] = field(default_factory=tuple)


class _Writer:
    __slots__ = ("buf", "flexible")

    def __init__(self, flexible: bool = False) -> None:
        self.buf = bytearray()
        self.flexible = flexible

    def i16(self, v: int) -> None:
        self.buf += _I16.pack(v)

    def i32(self, v: int) -> None:
        self.buf += _I32.pack(v)

    def i64(self, v: int) -> None:
        self.buf += _I64.pack(v)

    def uvarint(self, v: int) -> None:
        while v > 0x7F:
            self.buf.append((v & 0x7F) | 0x80)
            v >>= 7
        self.buf.append(v)

    def string(self, s: str | None) -> None:
        if s is None:
            if self.flexible:
                self.uvarint(0)
            else:
                self.i16(-1)
            return
        b = s.encode()
        if self.flexible:
            self.uvarint(len(b) + 1)
        else:
            self.i16(len(b))
        self.buf += b

    def bytes_(self, b: bytes) -> None:
        if self.flexible:
            self.uvarint(len(b) + 1)
        else:
            self.i32(len(b))
        self.buf += b

    def array_len(self, n: int) -> None:
        if self.flexible:
            self.uvarint(n + 1)
        else:
            self.i32(n)

    def tags(self) -> None:
        if self.flexible:
            self.uvarint(0)


class _Reader:
    __slots__ = ("buf", "pos", "flexible", "what")

    def __init__(self, buf: bytes, what: str) -> None:
        self.buf = buf
        self.pos = 0
        self.flexible = False
        self.what = what

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise CorruptRecordError(f"{self.what}: truncated at byte {self.pos} (need {n} more of {len(self.buf)})")

    def i16(self) -> int:
        self._need(2)
        v = _I16.unpack_from(self.buf, self.pos)[0]
        self.pos += 2
        return v

    def i32(self) -> int:
        self._need(4)
        v = _I32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return v

    def i64(self) -> int:
        self._need(8)
        v = _I64.unpack_from(self.buf, self.pos)[0]
        self.pos += 8
        return v

    def uvarint(self) -> int:
        shift = v = 0
        while True:
            self._need(1)
            b = self.buf[self.pos]
            self.pos += 1
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7
            if shift > 35:
                raise CorruptRecordError(f"{self.what}: varint too long at byte {self.pos}")

    def _len(self, nullable_i32: bool = False) -> int:
        if self.flexible:
            return self.uvarint() - 1
        return self.i32() if nullable_i32 else self.i16()

    def string(self) -> str | None:
        n = self._len()
        if n < 0:
            return None
        self._need(n)
        s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8", "replace")
        self.pos += n
        return s

    def bytes_(self) -> bytes:
        n = self._len(True)
        if n < 0:
            return b""
        self._need(n)
        b = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return b

    def array_len(self) -> int:
        return self.uvarint() - 1 if self.flexible else self.i32()

    def skip_tags(self) -> None:
        if not self.flexible:
            return
        for _ in range(self.uvarint()):
            self.uvarint()
            n = self.uvarint()
            self._need(n)
            self.pos += n


def encode_offset_key(group: str, topic: str, partition: int) -> bytes:
    g, t = group.encode(), topic.encode()
    return struct.pack(f">hh{len(g)}sh{len(t)}si", OFFSET_COMMIT_KEY_VERSION, len(g), g, len(t), t, partition)


def encode_group_key(group: str) -> bytes:
    w = _Writer()
    w.i16(GROUP_METADATA_KEY_VERSION)
    w.string(group)
    return bytes(w.buf)


def decode_key(key: bytes, where: str = "__consumer_offsets key") -> OffsetCommitKey | GroupMetadataKey | None:
    """The key of a `__consumer_offsets` record; None for record types other than these two
    (Kafka's newer consumer/share/streams group records), which we skip as Kafka skips
    unknown ones."""
    r = _Reader(key, where)
    version = r.i16()
    if version in (0, 1):
        group, topic, partition = r.string(), r.string(), r.i32()
        if group is None or topic is None:
            raise CorruptRecordError(f"{where}: null group or topic in offset commit key")
        return OffsetCommitKey(group, topic, partition)
    if version == 2:
        group = r.string()
        if group is None:
            raise CorruptRecordError(f"{where}: null group in group metadata key")
        return GroupMetadataKey(group)
    return None


def encode_offset_value(v: OffsetAndMetadata, version: int | None = None) -> bytes:
    """OffsetCommitValue; v1 when an expire timestamp is set (as Kafka does), else v3."""
    if version is None:
        version = 1 if v.expire_timestamp >= 0 else OFFSET_COMMIT_VALUE_VERSION
    if version == 3:  # what we write: one struct call
        m = (v.metadata or "").encode()
        return struct.pack(f">hqih{len(m)}sq", 3, v.offset, v.leader_epoch, len(m), m, v.commit_timestamp)
    if not 0 <= version <= 4:
        raise ValueError(f"OffsetCommitValue version {version} is not 0-4")
    w = _Writer(flexible=version >= 4)
    w.i16(version)
    w.i64(v.offset)
    if version >= 3:
        w.i32(v.leader_epoch)
    w.string(v.metadata or "")
    w.i64(v.commit_timestamp)
    if version == 1:
        w.i64(v.expire_timestamp)
    w.tags()
    return bytes(w.buf)


def decode_offset_value(value: bytes, where: str = "__consumer_offsets value") -> OffsetAndMetadata:
    r = _Reader(value, where)
    version = r.i16()
    if not 0 <= version <= 4:
        raise CorruptRecordError(f"{where}: unknown OffsetCommitValue version {version}")
    r.flexible = version >= 4
    offset = r.i64()
    epoch = r.i32() if version >= 3 else -1
    metadata = r.string() or ""
    ts = r.i64()
    expire = r.i64() if version == 1 else -1
    r.skip_tags()
    return OffsetAndMetadata(offset, metadata, ts, epoch, expire)


def encode_group_value(g: GroupMetadataValue, version: int = GROUP_METADATA_VALUE_VERSION) -> bytes:
    if not 0 <= version <= 4:
        raise ValueError(f"GroupMetadataValue version {version} is not 0-4")
    w = _Writer(flexible=version >= 4)
    w.i16(version)
    w.string(g.protocol_type)
    w.i32(g.generation)
    w.string(g.protocol)
    w.string(g.leader)
    if version >= 2:
        w.i64(g.current_state_timestamp)
    w.array_len(len(g.members))
    for m in g.members:
        w.string(m.member_id)
        if version >= 3:
            w.string(m.group_instance_id)
        w.string(m.client_id)
        w.string(m.client_host)
        if version >= 1:
            w.i32(m.rebalance_timeout)
        w.i32(m.session_timeout)
        w.bytes_(m.subscription)
        w.bytes_(m.assignment)
        w.tags()
    w.tags()
    return bytes(w.buf)


def decode_group_value(value: bytes, where: str = "__consumer_offsets value") -> GroupMetadataValue:
    r = _Reader(value, where)
    version = r.i16()
    if not 0 <= version <= 4:
        raise CorruptRecordError(f"{where}: unknown GroupMetadataValue version {version}")
    r.flexible = version >= 4
    protocol_type = r.string() or ""
    generation = r.i32()
    protocol = r.string()
    leader = r.string()
    ts = r.i64() if version >= 2 else -1
    members = []
    for _ in range(max(r.array_len(), 0)):
        member_id = r.string() or ""
        instance = r.string() if version >= 3 else None
        client_id = r.string() or ""
        host = r.string() or ""
        session = r.i32()
        rebalance = session
        if version >= 1:
            rebalance, session = session, r.i32()
        subscription = r.bytes_()
        assignment = r.bytes_()
        r.skip_tags()
        members.append(MemberMetadata(member_id, client_id, host, session, rebalance, subscription,
                                      assignment, instance))
    r.skip_tags()
    return GroupMetadataValue(protocol_type, generation, protocol, leader, ts, tuple(members))


# -- the store -----------------------------------------------------------------------------------

TopicPartition = tuple[str, int]
_registry: dict[int, "GroupOffsetStore"] = {}  # id(store) → its GroupOffsetStore
_registry_lock = threading.Lock()


class GroupOffsetStore:
    """Committed offsets and group metadata of every group, backed by `__consumer_offsets` in
    `store`. Thread-safe. Creates the topic (compacted, `partitions` partitions) if missing; an
    existing topic keeps its partition count, since that is where its groups already live."""

    def __init__(self, store: "LogStore", partitions: int = DEFAULT_OFFSETS_PARTITIONS, *,
                 fsync: bool = False, segment_bytes: int | None = None) -> None:
        if partitions < 1:
            raise ValueError(f"offsets.topic.num.partitions must be at least 1, not {partitions}")
        self.store = store
        self.fsync = fsync
        self._lock = threading.RLock()
        if store.has_topic(OFFSETS_TOPIC):
            have = store.topic(OFFSETS_TOPIC).partitions
            if have != partitions:
                log.warning("%s has %d partitions, not the configured %d: keeping %d", OFFSETS_TOPIC,
                            have, partitions, have)
            partitions = have
        else:
            conf = dict(OFFSETS_TOPIC_CONFIG)
            if segment_bytes is not None:
                conf["segment.bytes"] = str(segment_bytes)
            store.create_topic(OFFSETS_TOPIC, partitions, conf, internal=True)
        self.partitions = partitions
        self._offsets: dict[str, dict[TopicPartition, OffsetAndMetadata]] = {}
        self._groups: dict[str, GroupMetadataValue] = {}
        self._logs: dict[int, "Log"] = {}
        self._partition_of: dict[str, int] = {}
        self.loaded_records = 0
        for p in range(partitions):
            self._load(p)

    @classmethod
    def of(cls, store: "LogStore", partitions: int = DEFAULT_OFFSETS_PARTITIONS, *,
           segment_bytes: int | None = None) -> "GroupOffsetStore":
        """The one GroupOffsetStore of `store` in this process, opened at first use. Everything
        that commits offsets in a process (the broker's coordinator, embedded consumers) should
        share it, so that their in-memory views cannot diverge."""
        with _registry_lock:
            for key in [k for k, g in _registry.items() if getattr(g.store, "closed", False)]:
                del _registry[key]  # closed stores are let go
            gos = _registry.get(id(store))
            if gos is None or gos.store is not store:
                gos = _registry[id(store)] = cls(store, partitions, segment_bytes=segment_bytes)
            return gos

    # -- loading ---------------------------------------------------------------------------------
    def _load(self, p: int) -> None:
        for rec in self.store.partition(OFFSETS_TOPIC, p).iter_records():
            self._apply(rec.key, rec.value, f"{OFFSETS_TOPIC}-{p} offset {rec.offset}")
            self.loaded_records += 1

    def _apply(self, key: bytes | None, value: bytes | None, where: str) -> None:
        if key is None:
            raise CorruptRecordError(f"{where}: record without a key in {OFFSETS_TOPIC}")
        k = decode_key(key, f"{where} key")
        if isinstance(k, OffsetCommitKey):
            tp = (k.topic, k.partition)
            if value is None:
                offs = self._offsets.get(k.group)
                if offs is not None:
                    offs.pop(tp, None)
                    if not offs:
                        del self._offsets[k.group]
            else:
                self._offsets.setdefault(k.group, {})[tp] = decode_offset_value(value, f"{where} value")
        elif isinstance(k, GroupMetadataKey):
            if value is None:
                self._groups.pop(k.group, None)
            else:
                self._groups[k.group] = decode_group_value(value, f"{where} value")

    # -- writing ---------------------------------------------------------------------------------
    def partition_for(self, group: str) -> int:
        p = self._partition_of.get(group)
        if p is None:
            if len(self._partition_of) > 100_000:
                self._partition_of.clear()
            p = self._partition_of[group] = partition_for_group(group, self.partitions)
        return p

    def _log(self, group: str) -> "Log":
        p = self.partition_for(group)
        lg = self._logs.get(p)
        if lg is None or lg.closed:
            lg = self._logs[p] = self.store.partition(OFFSETS_TOPIC, p)
        return lg

    def _append(self, group: str, records: list[tuple[bytes, bytes | None]], fsync: bool | None) -> None:
        lg = self._log(group)
        info = lg.append_batches(build_batch(records), flush=False)
        # fsync when asked, or when the topic's own flush policy (flush.messages) says so
        if fsync or (fsync is None and (self.fsync or info.flush_needed)):
            lg.flush(info.last_offset + 1)

    def sync_commits(self) -> bool:
        """True when a commit is fsynced before it returns: `fsync=True`, or `flush.messages=1`
        set on the offsets topic (Kafka's per-topic flush policy)."""
        if self.fsync:
            return True
        try:
            return self.store.topic_config(OFFSETS_TOPIC).flush_messages <= 1
        except UnknownTopicOrPartitionError:
            return False

    def commit(self, group: str, offsets: Mapping[TopicPartition, int | OffsetAndMetadata], *,
               fsync: bool | None = None) -> None:
        """Commit offsets of `group` as one batch. Values are an offset or an OffsetAndMetadata;
        a missing commit timestamp is now."""
        if not group:
            raise LogStoreError("a group id must be a non-empty string")
        if not offsets:
            return
        now = int(time.time() * 1000)
        items: list[tuple[TopicPartition, OffsetAndMetadata]] = []
        for (topic, partition), v in offsets.items():
            om = v if isinstance(v, OffsetAndMetadata) else OffsetAndMetadata(int(v))
            if om.commit_timestamp < 0:
                om = OffsetAndMetadata(om.offset, om.metadata, now, om.leader_epoch, om.expire_timestamp)
            items.append(((topic, partition), om))
        records = [(encode_offset_key(group, t, p), encode_offset_value(om)) for (t, p), om in items]
        with self._lock:
            self._append(group, records, fsync)
            offs = self._offsets.setdefault(group, {})
            for tp, om in items:
                offs[tp] = om

    def fetch(self, group: str, partitions: Iterable[TopicPartition] | None = None
              ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Committed offsets of `group`: all of them, or those of `partitions` that have one."""
        with self._lock:
            offs = self._offsets.get(group, {})
            if partitions is None:
                return dict(offs)
            return {tp: offs[tp] for tp in partitions if tp in offs}

    def committed(self, group: str, topic: str, partition: int) -> int | None:
        """The committed offset of one partition, or None."""
        om = self._offsets.get(group, {}).get((topic, partition))
        return None if om is None else om.offset

    def delete_offsets(self, group: str, partitions: Iterable[TopicPartition], *,
                       fsync: bool | None = None) -> list[TopicPartition]:
        """Tombstone the committed offsets of `partitions`; returns those that had one."""
        with self._lock:
            offs = self._offsets.get(group, {})
            gone = [tp for tp in partitions if tp in offs]
            if gone:
                self._append(group, [(encode_offset_key(group, t, p), None) for t, p in gone], fsync)
                for tp in gone:
                    del offs[tp]
                if not offs:
                    self._offsets.pop(group, None)
            return gone

    def store_group(self, group: str, value: GroupMetadataValue, *, fsync: bool | None = None) -> None:
        """Record a group's metadata (generation, protocol, leader, members with assignments)."""
        with self._lock:
            self._append(group, [(encode_group_key(group), encode_group_value(value))], fsync)
            self._groups[group] = value

    def delete_group(self, group: str, *, fsync: bool | None = None) -> int:
        """Tombstone a group's metadata and all its offsets in one batch; returns the number of
        offsets removed."""
        with self._lock:
            offs = self._offsets.pop(group, {})
            records: list[tuple[bytes, bytes | None]] = [(encode_offset_key(group, t, p), None) for t, p in offs]
            if group in self._groups or records:
                records.append((encode_group_key(group), None))
                self._append(group, records, fsync)
            self._groups.pop(group, None)
            return len(offs)

    def remove_topic(self, topic: str) -> int:
        """Tombstone every group's offsets of a deleted topic; returns how many were removed."""
        n = 0
        with self._lock:
            for group in list(self._offsets):
                n += len(self.delete_offsets(group, [tp for tp in self._offsets[group] if tp[0] == topic]))
        return n

    def expire(self, now_ms: int, retention_ms: int, *, eligible: Any = None) -> dict[str, list[TopicPartition]]:
        """Tombstone offsets older than `retention_ms`. `eligible(group) -> base timestamp | None`
        decides per group: None keeps the group's offsets (it is active); a timestamp (e.g. when
        the group became empty) expires all its offsets once `now - base >= retention`; without
        `eligible`, each offset's own commit timestamp is the base. Returns what was removed."""
        removed: dict[str, list[TopicPartition]] = {}
        with self._lock:
            for group, offs in list(self._offsets.items()):
                base = None
                if eligible is not None:
                    base = eligible(group)
                    if base is None:
                        continue
                old = [tp for tp, om in offs.items()
                       if (om.expire_timestamp >= 0 and now_ms >= om.expire_timestamp)
                       or now_ms - (om.commit_timestamp if base is None or base < 0 else base) >= retention_ms]
                if old:
                    removed[group] = self.delete_offsets(group, old)
        return removed

    # -- views -----------------------------------------------------------------------------------
    def groups(self) -> list[str]:
        """Groups with committed offsets or stored metadata, sorted."""
        with self._lock:
            return sorted(set(self._offsets) | set(self._groups))

    def topics(self) -> set[str]:
        """Topics that some group has a committed offset of."""
        with self._lock:
            return {t for offs in self._offsets.values() for t, _p in offs}

    def group_metadata(self, group: str) -> GroupMetadataValue | None:
        return self._groups.get(group)

    def has_offsets(self, group: str) -> bool:
        return bool(self._offsets.get(group))

    def flush(self) -> None:
        for p in range(self.partitions):
            try:
                self.store.partition(OFFSETS_TOPIC, p).flush()
            except UnknownTopicOrPartitionError:
                return


__all__ = [
    "OFFSETS_TOPIC", "DEFAULT_OFFSETS_PARTITIONS", "GroupOffsetStore", "OffsetAndMetadata", "OffsetCommitKey",
    "GroupMetadataKey", "GroupMetadataValue", "MemberMetadata", "java_string_hash", "partition_for_group",
    "encode_offset_key", "encode_group_key", "decode_key", "encode_offset_value", "decode_offset_value",
    "encode_group_value", "decode_group_value",
]
