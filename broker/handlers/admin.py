"""Admin APIs: ListOffsets (2), CreateTopics (19), DeleteTopics (20), DeleteRecords (21),
InitProducerId (22), DescribeConfigs (32), AlterConfigs (33), CreatePartitions (37),
IncrementalAlterConfigs (44).

Everything that changes the store (topic metadata is an fsynced log) or scans data (timestamp
lookups) runs in a worker thread, never on the event loop. Error codes follow Kafka's:
INVALID_TOPIC_EXCEPTION 17, TOPIC_ALREADY_EXISTS 36, INVALID_PARTITIONS 37,
INVALID_REPLICATION_FACTOR 38, INVALID_REPLICA_ASSIGNMENT 39, INVALID_CONFIG 40,
INVALID_REQUEST 42, UNKNOWN_TOPIC_OR_PARTITION 3, OFFSET_OUT_OF_RANGE 1, UNKNOWN_TOPIC_ID 100,
UNSUPPORTED_VERSION 35 (a ListOffsets special timestamp too new for the request's version),
POLICY_VIOLATION 44 (DeleteRecords on a topic whose cleanup.policy lacks delete; on an internal
topic it is INVALID_TOPIC_EXCEPTION).
When a request is wrong in several ways, the error is the one Kafka checks first (e.g. CreateTopics
of an existing topic is TOPIC_ALREADY_EXISTS whatever its partition count or replication factor),
and the messages of the controller-side checks are Kafka's own.

Config resources: topics (type 2) can be described and altered; the broker (type 4, named by its
id; "" is the cluster-wide dynamic defaults, empty here) can be described, read-only. Config sources as Kafka numbers them: DYNAMIC_TOPIC_CONFIG 1,
STATIC_BROKER_CONFIG 4, DEFAULT_CONFIG 5.

Producer ids (InitProducerId) are allocated from the wall clock (ms << 8, then counting up), so
ids handed out after a restart never collide with ids whose sequence state is still in the logs.
Transactional ids are refused (no transaction coordinator here).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

from logstore.config import BROKER_TOPIC_ALIASES, LIST_TOPIC_CONFIGS, TOPIC_CONFIGS, parse_topic_config
from logstore.errors import LogStoreError, TopicAlreadyExistsError
from logstore.store import METADATA_TOPIC, validate_topic_name

from ..config import BROKER_KEYS
from ._util import INTERNAL_TOPICS, NO_AUTH_OPS, error_of, make, response_module, version

UNKNOWN_TOPIC_OR_PARTITION = 3
OFFSET_OUT_OF_RANGE = 1
INVALID_TOPIC = 17
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_REPLICA_ASSIGNMENT = 39
INVALID_CONFIG = 40
INVALID_REQUEST = 42
POLICY_VIOLATION = 44
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
UNKNOWN_TOPIC_ID = 100

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
SRC_TOPIC, SRC_STATIC_BROKER, SRC_DEFAULT = 1, 4, 5
_TOPIC_TO_BROKER_KEY = {t: b for b, t in BROKER_TOPIC_ALIASES.items()}
# Kafka's ConfigType numbering (DescribeConfigs v3+)
_CONFIG_TYPE = {"cleanup.policy": 7, "message.timestamp.type": 2, "compression.type": 2,
                "leader.replication.throttled.replicas": 7, "follower.replication.throttled.replicas": 7,
                "min.cleanable.dirty.ratio": 6, "preallocate": 1, "unclean.leader.election.enable": 1,
                "remote.storage.enable": 1, "message.downconversion.enable": 1,
                "segment.bytes": 3, "segment.index.bytes": 3, "index.interval.bytes": 3,
                "max.message.bytes": 3, "min.insync.replicas": 3, "compression.gzip.level": 3,
                "compression.lz4.level": 3, "compression.zstd.level": 3}


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# -- ListOffsets (2) ---------------------------------------------------------------------------
# The special timestamps and the first version that may carry each (ReplicaManager's
# timestampMinSupportedVersion); any other negative timestamp, or one too new for the request's
# version, is UNSUPPORTED_VERSION.
_SPECIAL_TIMESTAMP_MIN_VERSION = {-1: 1, -2: 1, -3: 7, -4: 8, -5: 9}


def _list_offset(store: Any, topic: str, p: int, ts: int) -> tuple[int, int, int, int]:
    """(error, timestamp, offset, leader epoch); -1, -1, -1 when nothing matches, as Kafka."""
    try:
        lg = store.partition(topic, p)
    except LogStoreError:
        return UNKNOWN_TOPIC_OR_PARTITION, -1, -1, -1
    if ts == -1:
        return 0, -1, lg.log_end_offset, 0
    if ts in (-2, -4):          # EARLIEST, EARLIEST_LOCAL (all data is local)
        return 0, -1, lg.log_start_offset, 0
    if ts == -5:                # LATEST_TIERED: no remote storage, so no tiered offset
        return 0, -1, -1, -1
    if ts == -3:
        found = lg.max_timestamp_offset()
    else:
        found = lg.offset_for_timestamp(ts)
    return (0, found[1], found[0], 0) if found else (0, -1, -1, -1)


async def list_offsets(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    v = version(request)
    store = ctx.server.store
    seen: set[tuple[str, int]] = set()
    dup: set[tuple[str, int]] = set()
    for t in request.topics:
        for p in t.partitions:
            key = (t.name, int(p.partition_index))
            (dup if key in seen else seen).add(key)
    queries = []
    for t in request.topics:
        for p in t.partitions:
            ts = int(p.timestamp)
            if (t.name, int(p.partition_index)) in dup:
                queries.append((INVALID_REQUEST, t.name, int(p.partition_index), ts))
            elif ts < 0 and v < _SPECIAL_TIMESTAMP_MIN_VERSION.get(ts, 1 << 16):
                queries.append((UNSUPPORTED_VERSION, t.name, int(p.partition_index), ts))
            else:
                queries.append((0, t.name, int(p.partition_index), ts))

    def run() -> list[tuple[int, int, int, int]]:
        return [_list_offset(store, topic, p, ts) if not err else (err, -1, -1, -1)
                for err, topic, p, ts in queries]

    if all(ts in (-1, -2) for _, _, _, ts in queries):
        answers = run()
    else:
        answers = await _in_thread(run)
    it = iter(answers)
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            err, ts, off, epoch = next(it)
            parts.append(make(mod.ListOffsetsPartitionResponse, partition_index=p.partition_index, error_code=err,
                              timestamp=ts, offset=off, leader_epoch=epoch if not err else -1))
        topics.append(make(mod.ListOffsetsTopicResponse, name=t.name, partitions=tuple(parts)))
    return make(mod.ListOffsetsResponse, topics=tuple(topics))


# -- CreateTopics (19) --------------------------------------------------------------------------
def _describe_entries(server: Any, cfg: Any, keys: Any, synonyms: bool, docs: bool, mod: Any,
                      entry_cls: str, synonym_cls: str | None, v: int) -> tuple:
    out = []
    for key, value, source in cfg.items():
        if keys is not None and key not in keys:
            continue
        src = SRC_TOPIC if source == "topic" else SRC_STATIC_BROKER if source == "broker" else SRC_DEFAULT
        syns: tuple = ()
        if synonyms and synonym_cls is not None:
            lst = []
            if source == "topic":
                lst.append(make(getattr(mod, synonym_cls), name=key, value=value, source=SRC_TOPIC))
            bkey = _TOPIC_TO_BROKER_KEY.get(key)
            if bkey:
                bval = server.config.store_config.get(bkey)
                if bval is not None:
                    lst.append(make(getattr(mod, synonym_cls), name=bkey, value=bval, source=SRC_STATIC_BROKER))
                lst.append(make(getattr(mod, synonym_cls), name=bkey, value=TOPIC_CONFIGS[key].default,
                                source=SRC_DEFAULT))
            elif source != "topic":
                lst.append(make(getattr(mod, synonym_cls), name=key, value=value, source=src))
            syns = tuple(lst)
        out.append(make(getattr(mod, entry_cls), name=key, value=value, read_only=False, config_source=src,
                        is_default=src == SRC_DEFAULT, is_sensitive=False, synonyms=syns,
                        config_type=_CONFIG_TYPE.get(key, 5),
                        documentation=TOPIC_CONFIGS[key].doc if docs and key in TOPIC_CONFIGS else None))
    return tuple(out)


def _manual_assignment_error(broker_ids: Any, node_id: int, rf: int | None) -> str | None:
    """Kafka's validateManualPartitionAssignment, for a cluster of one broker."""
    ids = sorted(int(b) for b in broker_ids or ())
    if not ids:
        return "The manual partition assignment includes an empty replica list."
    prev = None
    for b in ids:
        if b != node_id:
            return f"The manual partition assignment includes broker {b}, but no such broker is registered."
        if b == prev:
            return f"The manual partition assignment includes the broker {b} more than once."
        prev = b
    if rf is not None and len(ids) != rf:
        return (f"The manual partition assignment includes a partition with {len(ids)} replica(s), but this is "
                f"not consistent with previous partitions, which have {rf} replica(s).")
    return None


def _create_one(server: Any, t: Any, validate_only: bool, v: int) -> tuple[int, str | None, Any]:
    """One topic of a CreateTopics request, checked in Kafka's order (ReplicationControlManager):
    the name, then whether it exists, then its configs, then assignments / replication factor /
    partition count; so e.g. an existing topic is TOPIC_ALREADY_EXISTS whatever else is asked."""
    store = server.store
    name = t.name
    try:
        validate_topic_name(name)
    except LogStoreError as e:
        return INVALID_TOPIC, str(e), None
    if name == METADATA_TOPIC:
        return INVALID_REQUEST, f"Creation of internal topic {name} is prohibited.", None
    if store.has_topic(name):
        return TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.", None
    nulls = [c.name for c in t.configs if c.value is None]
    if nulls:
        return INVALID_CONFIG, "Null value not supported for topic configs: " + ",".join(nulls), None
    config: dict[str, str] = {c.name: c.value for c in t.configs}
    try:
        parse_topic_config(config)
    except LogStoreError as e:
        return (*error_of(e), None)
    n = int(t.num_partitions)
    rf = int(t.replication_factor)
    assignments = tuple(t.assignments or ())
    if assignments:
        if rf != -1:
            return INVALID_REQUEST, "A manual partition assignment was specified, but replication factor was " \
                                    "not set to -1.", None
        if n != -1:
            return INVALID_REQUEST, "A manual partition assignment was specified, but numPartitions was not " \
                                    "set to -1.", None
        indexes: set[int] = set()
        replicas: int | None = None
        for a in assignments:
            if int(a.partition_index) in indexes:
                return INVALID_REPLICA_ASSIGNMENT, "Found multiple manual partition assignments for partition " \
                                                   f"{int(a.partition_index)}", None
            bad = _manual_assignment_error(a.broker_ids, server.node_id, replicas)
            if bad:
                return INVALID_REPLICA_ASSIGNMENT, bad, None
            replicas = len(a.broker_ids)
            indexes.add(int(a.partition_index))
        if indexes != set(range(len(indexes))):
            return INVALID_REPLICA_ASSIGNMENT, "partitions should be a consecutive 0-based integer sequence", None
        n = len(assignments)
    elif rf < -1 or rf == 0:
        return INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0, or -1 to use the default " \
                                           "value.", None
    elif n < -1 or n == 0:
        return INVALID_PARTITIONS, "Number of partitions was set to an invalid non-positive value.", None
    else:
        if n == -1:
            n = server.config["num.partitions"]
        if rf == -1:
            rf = server.config["default.replication.factor"] or 1
        if rf > 1:
            return INVALID_REPLICATION_FACTOR, f"Unable to replicate the partition {rf} time(s): The target " \
                                               f"replication factor of {rf} cannot be reached because only 1 " \
                                               "broker(s) are registered.", None
    try:
        info = store.create_topic(name, n, config, validate_only=validate_only)
    except TopicAlreadyExistsError:   # created meanwhile by another request
        return TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.", None
    except LogStoreError as e:
        return (*error_of(e), None)
    return 0, None, info


async def create_topics(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    v = version(request)
    server = ctx.server
    names = [t.name for t in request.topics]
    dup = {n for n in names if names.count(n) > 1}
    validate_only = bool(getattr(request, "validate_only", False))

    def run() -> list[tuple[int, str | None, Any]]:
        out = []
        for t in request.topics:
            if t.name in dup:
                out.append((INVALID_REQUEST, "Duplicate topic name.", None))
            else:
                out.append(_create_one(server, t, validate_only, v))
        return out

    results = await _in_thread(run)
    topics = []
    for t, (err, msg, info) in zip(request.topics, results):
        kw: dict[str, Any] = dict(name=t.name, error_code=err, error_message=msg, topic_config_error_code=0,
                                  topic_id=info.topic_id if info else uuid.UUID(int=0),
                                  num_partitions=info.partitions if info else -1,
                                  replication_factor=1 if info else -1, configs=None)
        if info and v >= 5:
            cfg = server.store.config.log_config(info.config)
            kw["configs"] = _describe_entries(server, cfg, None, False, False, mod, "CreatableTopicConfigs", None, v)
        topics.append(make(mod.CreatableTopicResult, **kw))
    return make(mod.CreateTopicsResponse, topics=tuple(topics))


# -- DeleteTopics (20) --------------------------------------------------------------------------
async def delete_topics(ctx: Any, request: Any) -> Any:
    """Kafka's checks first (ControllerApis.deleteTopics): a name given twice, an id given twice,
    an entry with both or neither name and id are INVALID_REQUEST; then each topic is deleted."""
    mod = response_module(request)
    v = version(request)
    store = ctx.server.store
    zero = uuid.UUID(int=0)
    if v >= 6:
        wanted = [(t.name, None if t.topic_id in (None, zero) else t.topic_id) for t in request.topics]
    else:
        wanted = [(n, None) for n in request.topic_names]
    names = [n for n, tid in wanted if n is not None and tid is None]
    ids = [tid for n, tid in wanted if n is None and tid is not None]
    dup_names = {n for n in names if names.count(n) > 1}
    dup_ids = {i for i in ids if ids.count(i) > 1}

    def run() -> list[tuple[str | None, Any, int, str | None]]:
        out = []
        for name, tid in wanted:
            if name is None and tid is None:
                out.append((None, tid, INVALID_REQUEST, "Neither topic name nor id were specified."))
                continue
            if name is not None and tid is not None:
                out.append((name, tid, INVALID_REQUEST, "You may not specify both topic name and topic id."))
                continue
            if name in dup_names:
                out.append((name, None, INVALID_REQUEST, "Duplicate topic name."))
                continue
            if tid in dup_ids:
                out.append((None, tid, INVALID_REQUEST, "Duplicate topic id."))
                continue
            if name is None:
                try:
                    name = store.topic_by_id(tid).name
                except LogStoreError:
                    out.append((None, tid, UNKNOWN_TOPIC_ID, f"unknown topic id {tid}"))
                    continue
            if name in INTERNAL_TOPICS:
                out.append((name, tid, INVALID_TOPIC, f"internal topic {name} cannot be deleted"))
                continue
            try:
                info = store.topic(name)
                store.delete_topic(name)
                out.append((name, info.topic_id, 0, None))
            except LogStoreError as e:
                out.append((name, tid, *error_of(e)))
        return out

    res = await _in_thread(run)
    return make(mod.DeleteTopicsResponse, responses=tuple(
        make(mod.DeletableTopicResult, name=n, topic_id=tid or zero, error_code=err, error_message=msg)
        for n, tid, err, msg in res))


# -- DeleteRecords (21) -------------------------------------------------------------------------
async def delete_records(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    store = ctx.server.store

    def one(topic: str, p: int, offset: int) -> tuple[int, int]:
        """Kafka's order (KafkaApis, ReplicaManager.deleteRecordsOnLocalLog, Partition): an
        unknown partition, an internal topic (INVALID_TOPIC_EXCEPTION: committed offsets are not
        the client's to delete), a topic whose cleanup.policy lacks delete (POLICY_VIOLATION),
        then the offset."""
        try:
            lg = store.partition(topic, p)
            if topic in INTERNAL_TOPICS:
                return INVALID_TOPIC, -1
            if not lg.config.delete:
                return POLICY_VIOLATION, -1
            return 0, store.delete_records(topic, p, offset)
        except LogStoreError as e:
            return error_of(e)[0], -1

    def run() -> list[list[tuple[int, int]]]:
        return [[one(t.name, int(p.partition_index), int(p.offset)) for p in t.partitions] for t in request.topics]

    res = await _in_thread(run)
    return make(mod.DeleteRecordsResponse, topics=tuple(
        make(mod.DeleteRecordsTopicResult, name=t.name, partitions=tuple(
            make(mod.DeleteRecordsPartitionResult, partition_index=p.partition_index, low_watermark=lw,
                 error_code=err) for p, (err, lw) in zip(t.partitions, r)))
        for t, r in zip(request.topics, res)))


# -- InitProducerId (22) ------------------------------------------------------------------------
class ProducerIds:
    """Unique producer ids: wall-clock ms << 8, counting up; never below one handed out before."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = int(time.time() * 1000) << 8

    def allocate(self) -> int:
        with self._lock:
            self._next = max(self._next, int(time.time() * 1000) << 8)
            pid = self._next
            self._next += 1
            return pid


async def init_producer_id(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    server = ctx.server
    if request.transactional_id is not None:
        return make(mod.InitProducerIdResponse, error_code=TRANSACTIONAL_ID_AUTHORIZATION_FAILED, producer_id=-1,
                    producer_epoch=-1)
    return make(mod.InitProducerIdResponse, error_code=0, producer_id=server.producer_ids.allocate(),
                producer_epoch=0)


# -- configs (32, 33, 44) -----------------------------------------------------------------------
# Kafka's ConfigType of the broker keys reported here (DescribeConfigs v3+); aliases of topic
# configs take the topic config's type.
_BROKER_CONFIG_TYPE = {"listeners": 2, "advertised.listeners": 2, "log.dirs": 2, "log.dir": 2, "node.id": 3,
                       "broker.id": 3, "num.partitions": 3, "default.replication.factor": 3,
                       "auto.create.topics.enable": 1, "delete.topic.enable": 1, "offsets.topic.num.partitions": 3,
                       "offsets.topic.replication.factor": 4, "offsets.topic.segment.bytes": 3,
                       "offsets.retention.minutes": 3, "offsets.retention.check.interval.ms": 5,
                       "offset.metadata.max.bytes": 3, "group.initial.rebalance.delay.ms": 3,
                       "group.min.session.timeout.ms": 3, "group.max.session.timeout.ms": 3, "group.max.size": 3,
                       "socket.request.max.bytes": 3, "fetch.max.bytes": 3, "connections.max.idle.ms": 5,
                       "transaction.state.log.replication.factor": 4, "transaction.state.log.min.isr": 3}


def _broker_entries(server: Any, mod: Any, keys: Any, synonyms: bool) -> tuple:
    """The broker's own configs, read-only (no dynamic broker configs here). A key set in
    server.properties is STATIC_BROKER_CONFIG, else DEFAULT_CONFIG; with synonyms, Kafka lists the
    key's static value then its default (ConfigHelper.configSynonyms)."""
    cfg = server.config
    items: dict[str, tuple[str | None, str | None, int]] = {}   # key -> (static, default, type)
    for k, (default, _p) in BROKER_KEYS.items():
        items[k] = (cfg.raw.get(k), default, _BROKER_CONFIG_TYPE.get(k, 0))
    node = str(server.node_id)
    for k in ("node.id", "broker.id"):     # report the id in use, not an unset default
        static = cfg.raw.get("node.id") or cfg.raw.get("broker.id")
        items[k] = (node if static is not None else None, node, 3)
    for bkey, tkey in BROKER_TOPIC_ALIASES.items():
        items[bkey] = (cfg.store_config.get(bkey), TOPIC_CONFIGS[tkey].default, _CONFIG_TYPE.get(tkey, 5))
    out = []
    for k in sorted(items):
        if keys is not None and k not in keys:
            continue
        static, default, ctype = items[k]
        src = SRC_STATIC_BROKER if static is not None else SRC_DEFAULT
        syns: tuple = ()
        if synonyms:
            lst = []
            if static is not None:
                lst.append(make(mod.DescribeConfigsSynonym, name=k, value=static, source=SRC_STATIC_BROKER))
            if default is not None:
                lst.append(make(mod.DescribeConfigsSynonym, name=k, value=default, source=SRC_DEFAULT))
            syns = tuple(lst)
        out.append(make(mod.DescribeConfigsResourceResult, name=k, value=static if static is not None else default,
                        read_only=True, config_source=src, is_default=src == SRC_DEFAULT, is_sensitive=False,
                        synonyms=syns, config_type=ctype, documentation=None))
    return tuple(out)


async def describe_configs(ctx: Any, request: Any) -> Any:
    """Kafka's ConfigHelper.describeConfigs: null or empty configuration_keys mean every key; a
    topic's name is validated (INVALID_TOPIC_EXCEPTION) before it is looked up; the broker is
    named by its id ("0"), and the empty name means the cluster-wide dynamic defaults, of which
    there are none here."""
    mod = response_module(request)
    v = version(request)
    server = ctx.server
    synonyms = bool(getattr(request, "include_synonyms", False))
    docs = bool(getattr(request, "include_documentation", False))
    results = []
    for r in request.resources:
        rtype, rname = int(r.resource_type), r.resource_name
        keys = set(r.configuration_keys) if r.configuration_keys else None
        err, msg, configs = 0, None, ()
        if rtype == RESOURCE_TOPIC:
            try:
                validate_topic_name(rname)
                cfg = server.store.topic_config(rname)
                configs = _describe_entries(server, cfg, keys, synonyms, docs, mod, "DescribeConfigsResourceResult",
                                            "DescribeConfigsSynonym", v)
            except LogStoreError as e:
                err, msg = error_of(e)
        elif rtype == RESOURCE_BROKER:
            if not rname:
                configs = ()
            elif not rname.lstrip("-").isdigit():
                err, msg = INVALID_REQUEST, f"Broker id must be an integer, but it is: {rname}"
            elif int(rname) != server.node_id:
                err, msg = INVALID_REQUEST, f"Unexpected broker id, expected {server.node_id} or empty string, " \
                                            f"but received {rname}"
            else:
                configs = _broker_entries(server, mod, keys, synonyms)
        else:
            err, msg = INVALID_REQUEST, f"Unsupported resource type: {rtype}"
        results.append(make(mod.DescribeConfigsResult, error_code=err, error_message=msg, resource_type=rtype,
                            resource_name=rname, configs=configs))
    return make(mod.DescribeConfigsResponse, results=tuple(results))


def _alter_check(server: Any, r: Any, incremental: bool, dup_resources: set) -> tuple[int, str | None]:
    """Kafka's checks of one AlterConfigs / IncrementalAlterConfigs resource before any change
    (ConfigAdminManager.preprocess, ControllerConfigurationValidator): a resource named twice, a
    key given twice, a null value (other than DELETE) are INVALID_REQUEST; a topic must have a
    valid name, then exist."""
    rtype, rname = int(r.resource_type), r.resource_name
    if (rtype, rname) in dup_resources:
        return INVALID_REQUEST, "Each resource must appear at most once."
    names = [c.name for c in r.configs]
    if len(set(names)) != len(names):
        return INVALID_REQUEST, "Error due to duplicate config keys"
    nulls = [c.name for c in r.configs if c.value is None and not (incremental and int(c.config_operation) == 1)]
    if nulls:
        return INVALID_REQUEST, "Null value not supported for : " + ", ".join(nulls)
    if incremental:
        for c in r.configs:
            if int(c.config_operation) not in _OPS:
                return INVALID_REQUEST, f"Unknown operations type {int(c.config_operation)}"
    if rtype == RESOURCE_BROKER:
        if rname and (not rname.lstrip("-").isdigit() or int(rname) != server.node_id):
            return INVALID_REQUEST, f"Unexpected broker id, expected {server.node_id}, but received {rname}"
        return INVALID_REQUEST, "broker configs are read-only here: set them in server.properties"
    if rtype != RESOURCE_TOPIC:
        return INVALID_REQUEST, f"Unknown resource type {rtype}"
    if not rname:
        return INVALID_REQUEST, "Default topic resources are not allowed."
    try:
        validate_topic_name(rname)
    except LogStoreError as e:
        return INVALID_TOPIC, str(e)
    if incremental:
        for c in r.configs:
            op = _OPS[int(c.config_operation)]
            if op in ("append", "subtract") and c.name in TOPIC_CONFIGS and c.name not in LIST_TOPIC_CONFIGS:
                return INVALID_CONFIG, f"Can't {op.upper()} to key {c.name} because its type is not LIST."
    if not server.store.has_topic(rname):
        return UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {rname!r}"
    return 0, None


async def _alter_each(ctx: Any, request: Any, response: str, apply: Any, incremental: bool) -> Any:
    """AlterConfigs and IncrementalAlterConfigs: check each resource, `apply(server, name,
    resource, validate_only)` to the topics that pass, answer per resource."""
    mod = response_module(request)
    server = ctx.server
    validate_only = bool(request.validate_only)
    ids = [(int(r.resource_type), r.resource_name) for r in request.resources]
    dup_resources = {i for i in ids if ids.count(i) > 1}

    def run() -> list[tuple[int, str | None]]:
        out = []
        for r in request.resources:
            err, msg = _alter_check(server, r, incremental, dup_resources)
            if not err:
                try:
                    apply(server, r.resource_name, r, validate_only)
                except LogStoreError as e:
                    err, msg = error_of(e)
            out.append((err, msg))
        return out

    res = await _in_thread(run)
    return make(getattr(mod, response), responses=tuple(
        make(mod.AlterConfigsResourceResponse, error_code=err, error_message=msg, resource_type=r.resource_type,
             resource_name=r.resource_name) for r, (err, msg) in zip(request.resources, res)))


def _replace(server: Any, name: str, resource: Any, validate_only: bool) -> None:
    server.store.set_topic_config(name, {c.name: c.value for c in resource.configs}, validate_only=validate_only)


async def alter_configs(ctx: Any, request: Any) -> Any:
    return await _alter_each(ctx, request, "AlterConfigsResponse", _replace, False)


_OPS = {0: "set", 1: "delete", 2: "append", 3: "subtract"}  # AlterConfigOp.OpType


def _incremental(server: Any, name: str, resource: Any, validate_only: bool) -> None:
    ops = [(_OPS[int(c.config_operation)], c.name, c.value) for c in resource.configs]
    server.store.incremental_alter_topic_config(name, ops, validate_only=validate_only)


async def incremental_alter_configs(ctx: Any, request: Any) -> Any:
    return await _alter_each(ctx, request, "IncrementalAlterConfigsResponse", _incremental, True)


# -- CreatePartitions (37) ----------------------------------------------------------------------
def _grow_one(server: Any, t: Any, validate_only: bool) -> tuple[int, str | None]:
    """Kafka's ReplicationControlManager.createPartitions checks, in its order: the topic exists,
    the count is an increase, one assignment per new partition, each assignment valid."""
    try:
        current = server.store.topic(t.name).partitions
    except LogStoreError:
        return UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition."
    count = int(t.count)
    if count == current:
        return INVALID_PARTITIONS, f"Topic already has {current} partition(s)."
    if count < current:
        return INVALID_PARTITIONS, f"The topic {t.name} currently has {current} partition(s); {count} would " \
                                   "not be an increase."
    if t.assignments is not None:
        additional = count - current
        if len(t.assignments) != additional:
            return INVALID_REPLICA_ASSIGNMENT, f"Attempted to add {additional} additional partition(s), but only " \
                                               f"{len(t.assignments)} assignment(s) were specified."
        for a in t.assignments:
            bad = _manual_assignment_error(a.broker_ids, server.node_id, 1)
            if bad:
                return INVALID_REPLICA_ASSIGNMENT, bad
    try:
        server.store.create_partitions(t.name, count, validate_only=validate_only)
    except LogStoreError as e:
        return error_of(e)
    return 0, None


async def create_partitions(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    server = ctx.server
    validate_only = bool(request.validate_only)
    names = [t.name for t in request.topics]
    dup = {n for n in names if names.count(n) > 1}

    def run() -> list[tuple[int, str | None]]:
        return [(INVALID_REQUEST, "Duplicate topic name.") if t.name in dup else _grow_one(server, t, validate_only)
                for t in request.topics]

    res = await _in_thread(run)
    return make(mod.CreatePartitionsResponse, results=tuple(
        make(mod.CreatePartitionsTopicResult, name=t.name, error_code=err, error_message=msg)
        for t, (err, msg) in zip(request.topics, res)))


def register(registry: Any) -> None:
    registry.register(2, list_offsets, min_version=1, max_version=9)
    registry.register(19, create_topics, min_version=2, max_version=7)
    registry.register(20, delete_topics, min_version=1, max_version=6)
    registry.register(21, delete_records, min_version=0, max_version=2)
    registry.register(22, init_producer_id, min_version=0, max_version=5)
    registry.register(32, describe_configs, min_version=1, max_version=4)
    registry.register(33, alter_configs, min_version=0, max_version=2)
    registry.register(37, create_partitions, min_version=0, max_version=3)
    registry.register(44, incremental_alter_configs, min_version=0, max_version=1)


__all__ = ["register", "ProducerIds", "NO_AUTH_OPS"]
