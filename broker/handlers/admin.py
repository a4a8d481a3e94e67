"""Admin APIs: ListOffsets (2), CreateTopics (19), DeleteTopics (20), DeleteRecords (21),
InitProducerId (22), DescribeConfigs (32), AlterConfigs (33), CreatePartitions (37),
IncrementalAlterConfigs (44).

Everything that changes the store (topic metadata is an fsynced log) or scans data (timestamp
lookups) runs in a worker thread, never on the event loop. Error codes follow Kafka's:
INVALID_TOPIC_EXCEPTION 17, TOPIC_ALREADY_EXISTS 36, INVALID_PARTITIONS 37,
INVALID_REPLICATION_FACTOR 38, INVALID_REPLICA_ASSIGNMENT 39, INVALID_CONFIG 40,
INVALID_REQUEST 42, UNKNOWN_TOPIC_OR_PARTITION 3, OFFSET_OUT_OF_RANGE 1, UNKNOWN_TOPIC_ID 100.

Config resources: topics (type 2) can be described and altered; the broker (type 4) can be
described, read-only. Config sources as Kafka numbers them: DYNAMIC_TOPIC_CONFIG 1,
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

from logstore.config import BROKER_TOPIC_ALIASES, TOPIC_CONFIGS
from logstore.errors import LogStoreError

from ..config import BROKER_KEYS
from ._util import NO_AUTH_OPS, error_of, make, response_module, version

UNKNOWN_TOPIC_OR_PARTITION = 3
OFFSET_OUT_OF_RANGE = 1
INVALID_TOPIC = 17
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_REPLICA_ASSIGNMENT = 39
INVALID_CONFIG = 40
INVALID_REQUEST = 42
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
UNKNOWN_TOPIC_ID = 100

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
SRC_TOPIC, SRC_STATIC_BROKER, SRC_DEFAULT = 1, 4, 5
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})
_TOPIC_TO_BROKER_KEY = {t: b for b, t in BROKER_TOPIC_ALIASES.items()}
# Kafka's ConfigType numbering (DescribeConfigs v3+)
_CONFIG_TYPE = {"cleanup.policy": 7, "message.timestamp.type": 2, "compression.type": 2,
                "leader.replication.throttled.replicas": 7, "follower.replication.throttled.replicas": 7,
                "min.cleanable.dirty.ratio": 6, "preallocate": 1, "unclean.leader.election.enable": 1,
                "remote.storage.enable": 1, "message.downconversion.enable": 1,
                "segment.bytes": 3, "segment.index.bytes": 3, "index.interval.bytes": 3,
                "max.message.bytes": 3, "min.insync.replicas": 3}


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# -- ListOffsets (2) ---------------------------------------------------------------------------
def _list_offset(store: Any, topic: str, p: int, ts: int) -> tuple[int, int, int]:
    """(error, timestamp, offset)."""
    try:
        lg = store.partition(topic, p)
    except LogStoreError:
        return UNKNOWN_TOPIC_OR_PARTITION, -1, -1
    if ts == -1:
        return 0, -1, lg.log_end_offset
    if ts in (-2, -4, -5):
        return 0, -1, lg.log_start_offset
    if ts == -3:
        found = lg.max_timestamp_offset()
        return (0, found[1], found[0]) if found else (0, -1, -1)
    if ts < 0:
        return INVALID_REQUEST, -1, -1
    found = lg.offset_for_timestamp(ts)
    return (0, found[1], found[0]) if found else (0, -1, -1)


async def list_offsets(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    store = ctx.server.store
    queries = [(t.name, int(p.partition_index), int(p.timestamp)) for t in request.topics for p in t.partitions]

    def run() -> list[tuple[int, int, int]]:
        return [_list_offset(store, *q) for q in queries]

    if all(ts in (-1, -2) for _, _, ts in queries):
        answers = run()
    else:
        answers = await _in_thread(run)
    it = iter(answers)
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            err, ts, off = next(it)
            parts.append(make(mod.ListOffsetsPartitionResponse, partition_index=p.partition_index, error_code=err,
                              timestamp=ts, offset=off, leader_epoch=0 if not err else -1))
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


def _create_one(server: Any, t: Any, validate_only: bool, v: int) -> tuple[int, str | None, Any]:
    store = server.store
    name = t.name
    n = int(t.num_partitions)
    rf = int(t.replication_factor)
    assignments = tuple(t.assignments or ())
    if assignments:
        if n != -1 or rf != -1:
            return INVALID_REQUEST, "give either num_partitions/replication_factor or replica assignments", None
        for i, a in enumerate(sorted(assignments, key=lambda a: a.partition_index)):
            if int(a.partition_index) != i or tuple(a.broker_ids) != (server.node_id,):
                return INVALID_REPLICA_ASSIGNMENT, f"replica assignment must be [{server.node_id}] for partitions " \
                                                   f"0..{len(assignments) - 1}", None
        n = len(assignments)
    if n == -1:
        n = server.config["num.partitions"]
    if n <= 0:
        return INVALID_PARTITIONS, f"number of partitions must be larger than 0, or -1 for the default; got {n}", None
    if rf == -1:
        rf = 1
    if rf <= 0:
        return INVALID_REPLICATION_FACTOR, f"replication factor must be larger than 0, or -1; got {rf}", None
    if rf > 1:
        return INVALID_REPLICATION_FACTOR, f"replication factor {rf} is larger than the number of brokers (1)", None
    config: dict[str, str] = {}
    for c in t.configs:
        if c.value is None:
            return INVALID_CONFIG, f"config {c.name!r} has a null value", None
        config[c.name] = c.value
    try:
        info = store.create_topic(name, n, config, validate_only=validate_only)
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
                out.append((INVALID_REQUEST, f"topic {t.name!r} appears more than once in the request", None))
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
    mod = response_module(request)
    v = version(request)
    store = ctx.server.store
    if v >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(n, None) for n in request.topic_names]

    def run() -> list[tuple[str | None, Any, int, str | None]]:
        out = []
        for name, tid in wanted:
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
        make(mod.DeletableTopicResult, name=n, topic_id=tid or uuid.UUID(int=0), error_code=err, error_message=msg)
        for n, tid, err, msg in res))


# -- DeleteRecords (21) -------------------------------------------------------------------------
async def delete_records(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    store = ctx.server.store

    def one(topic: str, p: int, offset: int) -> tuple[int, int]:
        try:
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
def _broker_entries(server: Any, mod: Any, keys: Any, v: int) -> tuple:
    cfg = server.config
    out = []
    items: dict[str, tuple[str | None, int]] = {}
    for k, (default, _p) in BROKER_KEYS.items():
        raw = cfg.raw.get(k)
        items[k] = (raw, SRC_STATIC_BROKER) if raw is not None else (default, SRC_DEFAULT)
    for bkey, tkey in BROKER_TOPIC_ALIASES.items():
        raw = cfg.store_config.get(bkey)
        items[bkey] = (raw, SRC_STATIC_BROKER) if raw is not None else (TOPIC_CONFIGS[tkey].default, SRC_DEFAULT)
    for k in sorted(items):
        if keys is not None and k not in keys:
            continue
        value, src = items[k]
        out.append(make(mod.DescribeConfigsResourceResult, name=k, value=value, read_only=True, config_source=src,
                        is_default=src == SRC_DEFAULT, is_sensitive=False, synonyms=(), config_type=0,
                        documentation=None))
    return tuple(out)


async def describe_configs(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    v = version(request)
    server = ctx.server
    synonyms = bool(getattr(request, "include_synonyms", False))
    docs = bool(getattr(request, "include_documentation", False))
    results = []
    for r in request.resources:
        rtype, rname = int(r.resource_type), r.resource_name
        keys = None if r.configuration_keys is None else set(r.configuration_keys)
        err, msg, configs = 0, None, ()
        if rtype == RESOURCE_TOPIC:
            try:
                cfg = server.store.topic_config(rname)
                configs = _describe_entries(server, cfg, keys, synonyms, docs, mod, "DescribeConfigsResourceResult",
                                            "DescribeConfigsSynonym", v)
            except LogStoreError as e:
                err, msg = error_of(e)
        elif rtype == RESOURCE_BROKER:
            if rname not in ("", str(server.node_id)):
                err, msg = INVALID_REQUEST, f"unknown broker {rname!r} (this is broker {server.node_id})"
            else:
                configs = _broker_entries(server, mod, keys, v)
        else:
            err, msg = INVALID_REQUEST, f"resource type {rtype} is not supported"
        results.append(make(mod.DescribeConfigsResult, error_code=err, error_message=msg, resource_type=rtype,
                            resource_name=rname, configs=configs))
    return make(mod.DescribeConfigsResponse, results=tuple(results))


def _alter_check(server: Any, rtype: int, rname: str) -> tuple[int, str | None]:
    if rtype == RESOURCE_BROKER:
        return INVALID_REQUEST, "broker configs are read-only here: set them in server.properties"
    if rtype != RESOURCE_TOPIC:
        return INVALID_REQUEST, f"resource type {rtype} is not supported"
    if not server.store.has_topic(rname):
        return UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {rname!r}"
    return 0, None


async def _alter_each(ctx: Any, request: Any, response: str, apply: Any) -> Any:
    """AlterConfigs and IncrementalAlterConfigs: check each resource, `apply(server, name,
    resource, validate_only)` to the topics that pass, answer per resource."""
    mod = response_module(request)
    server = ctx.server
    validate_only = bool(request.validate_only)

    def run() -> list[tuple[int, str | None]]:
        out = []
        for r in request.resources:
            err, msg = _alter_check(server, int(r.resource_type), r.resource_name)
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
    server.store.set_topic_config(name, {c.name: c.value for c in resource.configs if c.value is not None},
                                  validate_only=validate_only)


async def alter_configs(ctx: Any, request: Any) -> Any:
    return await _alter_each(ctx, request, "AlterConfigsResponse", _replace)


_OPS = {0: "set", 1: "delete", 2: "append", 3: "subtract"}  # AlterConfigOp.OpType


def _incremental(server: Any, name: str, resource: Any, validate_only: bool) -> None:
    from logstore.errors import InvalidConfigError
    ops = []
    for c in resource.configs:
        op = _OPS.get(int(c.config_operation))
        if op is None:
            raise InvalidConfigError(f"config {c.name!r}: unknown operation {int(c.config_operation)}")
        ops.append((op, c.name, c.value))
    server.store.incremental_alter_topic_config(name, ops, validate_only=validate_only)


async def incremental_alter_configs(ctx: Any, request: Any) -> Any:
    return await _alter_each(ctx, request, "IncrementalAlterConfigsResponse", _incremental)


# -- CreatePartitions (37) ----------------------------------------------------------------------
async def create_partitions(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    server = ctx.server
    validate_only = bool(request.validate_only)

    def run() -> list[tuple[int, str | None]]:
        out = []
        for t in request.topics:
            if t.assignments and any(tuple(a.broker_ids) != (server.node_id,) for a in t.assignments):
                out.append((INVALID_REPLICA_ASSIGNMENT, f"replica assignment must be [{server.node_id}]"))
                continue
            try:
                server.store.create_partitions(t.name, int(t.count), validate_only=validate_only)
                out.append((0, None))
            except LogStoreError as e:
                out.append(error_of(e))
        return out

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
