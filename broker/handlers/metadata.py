"""Metadata (3) and DescribeCluster (60).

One broker, leader of every partition, replicas = ISR = [node id], leader epoch 0. Topics are
listed by name (all versions) or by id (v10+). A requested topic that does not exist is created
when `auto.create.topics.enable` and the request allows it (v4+ flag), with `num.partitions`,
except internal topics; otherwise UNKNOWN_TOPIC_OR_PARTITION (3). A bad name gets
INVALID_TOPIC_EXCEPTION (17). `__consumer_offsets` is reported with is_internal=True.

Authorized operations (Metadata v8+, DescribeCluster): there is no authorizer, so when a client
asks for them the answer is what Kafka gives without one, every operation the resource type
supports (AuthHelper.authorizedOperations); when it does not ask, Int.MinValue as in the schema.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from logstore.errors import LogStoreError, TopicAlreadyExistsError
from logstore.store import validate_topic_name

from ._util import INTERNAL_TOPICS, NO_AUTH_OPS, error_of, make, response_module, version

UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC = 17
UNKNOWN_TOPIC_ID = 100
ZERO_UUID = uuid.UUID(int=0)
MISMATCHED_ENDPOINT_TYPE = 114
UNSUPPORTED_ENDPOINT_TYPE = 115
ENDPOINT_BROKER = 1

# AclOperation codes (READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9,
# DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12) per resource type, as Kafka's
# AclEntry.supportedOperations lists them; the bit field has bit `code` set for each.
TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))
CLUSTER_OPERATIONS = sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12))


def cluster_id(server: Any) -> str:
    meta = getattr(server.store, "meta", None) or {}
    return server.config.get("cluster.id") or meta.get("cluster.id") or "logstore"


async def ensure_topic(server: Any, name: str) -> tuple[int, str | None]:
    """Auto-create `name` (metadata-path semantics). Returns (error code, message)."""
    try:
        validate_topic_name(name)
    except LogStoreError as e:
        return INVALID_TOPIC, str(e)
    if server.store.has_topic(name):
        return 0, None
    if name in INTERNAL_TOPICS or not server.config["auto.create.topics.enable"]:
        return UNKNOWN_TOPIC_OR_PARTITION, None
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, lambda: server.store.create_topic(name, server.config["num.partitions"]))
    except TopicAlreadyExistsError:
        pass
    except Exception as e:  # noqa: BLE001
        return error_of(e)
    return 0, None


def _topic_entry(mod: Any, server: Any, name: str | None, topic_id: uuid.UUID | None, error: int,
                 ops: int = NO_AUTH_OPS) -> Any:
    node = server.node_id
    parts: tuple = ()
    internal = name in INTERNAL_TOPICS
    if not error:
        try:
            info = server.store.topic(name)
        except LogStoreError:     # deleted meanwhile (admin runs in worker threads)
            return _topic_entry(mod, server, name, topic_id, UNKNOWN_TOPIC_OR_PARTITION, ops)
        topic_id = info.topic_id
        parts = tuple(make(mod.MetadataResponsePartition, error_code=0, partition_index=p, leader_id=node,
                           leader_epoch=0, replica_nodes=(node,), isr_nodes=(node,), offline_replicas=())
                      for p in range(info.partitions))
    return make(mod.MetadataResponseTopic, error_code=error, name=name, topic_id=topic_id or ZERO_UUID,
                is_internal=internal, partitions=parts, topic_authorized_operations=ops)


async def metadata(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    v = version(request)
    server = ctx.server
    store = server.store
    wanted = request.topics
    allow_auto = bool(getattr(request, "allow_auto_topic_creation", True))
    topic_ops = TOPIC_OPERATIONS if getattr(request, "include_topic_authorized_operations", False) else NO_AUTH_OPS
    cluster_ops = CLUSTER_OPERATIONS if getattr(request, "include_cluster_authorized_operations", False) \
        else NO_AUTH_OPS
    topics = []
    if wanted is None or (v == 0 and not wanted):
        for name in store.topics():
            topics.append(_topic_entry(mod, server, name, None, 0, topic_ops))
    else:
        for t in wanted:
            name = t.name
            tid = getattr(t, "topic_id", None)
            if name is None and tid is not None and tid != ZERO_UUID:
                try:
                    name = store.topic_by_id(tid).name
                except LogStoreError:
                    topics.append(make(mod.MetadataResponseTopic, error_code=UNKNOWN_TOPIC_ID, name=None, topic_id=tid,
                                       partitions=(), topic_authorized_operations=NO_AUTH_OPS))
                    continue
            if name is None:
                topics.append(_topic_entry(mod, server, name, tid, INVALID_TOPIC, topic_ops))
                continue
            if store.has_topic(name):
                err = 0
            elif allow_auto:
                err, _ = await ensure_topic(server, name)
            else:
                try:
                    validate_topic_name(name)
                    err = UNKNOWN_TOPIC_OR_PARTITION
                except LogStoreError:
                    err = INVALID_TOPIC
            if err == 0 and not store.has_topic(name):  # deleted meanwhile
                err = UNKNOWN_TOPIC_OR_PARTITION
            topics.append(_topic_entry(mod, server, name, None, err, topic_ops))
    brokers = (make(mod.MetadataResponseBroker, node_id=server.node_id, host=server.advertised_host,
                    port=server.advertised_port, rack=None),)
    return make(mod.MetadataResponse, brokers=brokers, cluster_id=cluster_id(server), controller_id=server.node_id,
                topics=tuple(topics), cluster_authorized_operations=cluster_ops, error_code=0)


async def describe_cluster(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    server = ctx.server
    endpoint = int(getattr(request, "endpoint_type", ENDPOINT_BROKER))
    if endpoint != ENDPOINT_BROKER:   # Kafka's AuthHelper.computeDescribeClusterResponse
        v0 = version(request) == 0
        if endpoint == 2:
            err, msg = (42 if v0 else MISMATCHED_ENDPOINT_TYPE), \
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
        else:
            err, msg = (42 if v0 else UNSUPPORTED_ENDPOINT_TYPE), f"Unsupported endpoint type {endpoint}"
        return make(mod.DescribeClusterResponse, error_code=err, error_message=msg, endpoint_type=ENDPOINT_BROKER,
                    cluster_id="", controller_id=-1, brokers=(), cluster_authorized_operations=NO_AUTH_OPS)
    cluster_ops = CLUSTER_OPERATIONS if getattr(request, "include_cluster_authorized_operations", False) \
        else NO_AUTH_OPS
    brokers = (make(mod.DescribeClusterBroker, broker_id=server.node_id, host=server.advertised_host,
                    port=server.advertised_port, rack=None, is_fenced=False),)
    return make(mod.DescribeClusterResponse, error_code=0, error_message=None, endpoint_type=1,
                cluster_id=cluster_id(server), controller_id=server.node_id, brokers=brokers,
                cluster_authorized_operations=cluster_ops)


def register(registry: Any) -> None:
    registry.register(3, metadata, min_version=0, max_version=12)
    registry.register(60, describe_cluster, min_version=0, max_version=1)
