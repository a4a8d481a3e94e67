"""The admin APIs through every real client's admin interface (confluent-kafka AdminClient,
kafka-python KafkaAdminClient, aiokafka AIOKafkaAdminClient) against a real broker process, with
good and bad input, compared with what Apache Kafka 3.x/4.x (KRaft) answers: error codes, which
error wins when a request is wrong in several ways, and the shape of the results (config sources,
synonyms, authorized operations, ListOffsets' "nothing found").

The Kafka behaviour each check stands for is named beside it (ReplicationControlManager,
ControllerApis, ConfigAdminManager, ConfigHelper, ReplicaManager, AuthHelper)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

confluent_admin = pytest.importorskip("confluent_kafka.admin")
kafka = pytest.importorskip("kafka")
aiokafka_admin = pytest.importorskip("aiokafka.admin")

from confluent_kafka import KafkaException, Producer, TopicCollection, TopicPartition  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient, AlterConfigOpType,
    ConfigEntry, ConfigResource, ConfigSource, NewPartitions, NewTopic, OffsetSpec, ResourcePatternType,
    ResourceType)
from kafka import KafkaAdminClient  # noqa: E402
from kafka import errors as kerr  # noqa: E402
from kafka.admin import ConfigResource as KConfigResource  # noqa: E402
from kafka.admin import ConfigResourceType as KConfigResourceType  # noqa: E402
from kafka.admin import NewPartitions as KNewPartitions  # noqa: E402
from kafka.admin import NewTopic as KNewTopic  # noqa: E402
from kafka.admin import AlterConfigOp, OffsetSpec as KOffsetSpec  # noqa: E402
from kafka.structs import TopicPartition as KTopicPartition  # noqa: E402

from broker.pytest_plugin import start_broker  # noqa: E402

from tests.test_server import RawClient, req  # noqa: E402

TIMEOUT = 20.0   # seconds any single admin call may take on a loaded machine

# Kafka's error codes
OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_OR_PARTITION, INVALID_TOPIC = 1, 3, 17
UNSUPPORTED_VERSION, TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS = 35, 36, 37
INVALID_REPLICATION_FACTOR, INVALID_REPLICA_ASSIGNMENT, INVALID_CONFIG, INVALID_REQUEST = 38, 39, 40, 42
MISMATCHED_ENDPOINT_TYPE, UNSUPPORTED_ENDPOINT_TYPE = 114, 115


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(str(tmp_path_factory.mktemp("qa-admin") / "data"),
                     overrides={"offsets.topic.num.partitions": "1", "group.initial.rebalance.delay.ms": "0"})
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def ck(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


@pytest.fixture(scope="module")
def kp(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=int(TIMEOUT * 1000))
    try:
        yield a
    finally:
        a.close()


@pytest.fixture
def raw(broker):
    with RawClient(broker.port, timeout=TIMEOUT) as c:
        yield c


def _name(prefix: str = "qa") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ck_code(fut) -> int:
    """The Kafka error code a confluent-kafka future fails with (0 when it succeeds)."""
    try:
        fut.result(TIMEOUT)
    except KafkaException as e:
        return e.args[0].code()
    return 0


def ck_create(ck, *topics, validate_only: bool = False) -> dict[str, int]:
    fs = ck.create_topics(list(topics), validate_only=validate_only, request_timeout=TIMEOUT)
    return {name: ck_code(f) for name, f in fs.items()}


def kp_codes(response) -> dict[str, int]:
    """topic → error code of a kafka-python create/delete topics answer (raise_errors=False)."""
    return {t["name"]: t["error_code"] for t in response["topics"]}


def no_traceback(broker) -> None:
    assert broker.alive(), broker.log()[-3000:]
    assert "Traceback" not in broker.log(), broker.log()[-3000:]


# -- CreateTopics ------------------------------------------------------------------------------
def test_create_topic_exists_wins_over_every_other_error(broker, ck, kp) -> None:
    """Kafka checks the name, then existence, then configs, then partitions / replication factor
    (ReplicationControlManager.createTopics): creating an existing topic is TOPIC_ALREADY_EXISTS
    even when the request also asks for 3 replicas or carries a bad config (the usual
    "create if missing" call of an application written for a 3-broker cluster)."""
    t = _name()
    assert ck_create(ck, NewTopic(t, 2, 1)) == {t: 0}
    assert ck_create(ck, NewTopic(t, 2, 1)) == {t: TOPIC_ALREADY_EXISTS}
    assert ck_create(ck, NewTopic(t, 6, 3)) == {t: TOPIC_ALREADY_EXISTS}
    assert ck_create(ck, NewTopic(t, 0, 1)) == {t: TOPIC_ALREADY_EXISTS}
    assert ck_create(ck, NewTopic(t, 1, 1, config={"retention.ms": "abc"})) == {t: TOPIC_ALREADY_EXISTS}
    r = kp.create_topics([KNewTopic(t, 1, 3)], raise_errors=False)
    assert kp_codes(r) == {t: TOPIC_ALREADY_EXISTS}
    assert r["topics"][0]["error_message"] == f"Topic '{t}' already exists."
    # a bad name is reported before anything else; a bad config before the replication factor
    assert ck_create(ck, NewTopic("bad name!", 1, 3)) == {"bad name!": INVALID_TOPIC}
    u = _name()
    assert ck_create(ck, NewTopic(u, 1, 3, config={"segment.bytes": "10"})) == {u: INVALID_CONFIG}
    assert ck_create(ck, NewTopic(u, 1, 3)) == {u: INVALID_REPLICATION_FACTOR}
    assert u not in ck.list_topics(timeout=TIMEOUT).topics
    no_traceback(broker)


def test_create_topic_bad_input(broker, ck, kp) -> None:
    t = _name()
    assert ck_create(ck, NewTopic(t, 0, 1)) == {t: INVALID_PARTITIONS}
    assert ck_create(ck, NewTopic(t, 1, 0)) == {t: INVALID_REPLICATION_FACTOR}
    assert ck_create(ck, NewTopic(t, 1, 2)) == {t: INVALID_REPLICATION_FACTOR}
    assert ck_create(ck, NewTopic(t, 1, 1, config={"cleanup.policy": "sometimes"})) == {t: INVALID_CONFIG}
    assert ck_create(ck, NewTopic(t, 1, 1, config={"no.such.config": "1"})) == {t: INVALID_CONFIG}
    for bad in ("..", ".", "x" * 250, "a/b"):
        assert ck_create(ck, NewTopic(bad, 1, 1)) == {bad: INVALID_TOPIC}
    # kafka-python lets through what librdkafka refuses client-side
    codes = {"neg-p": KNewTopic(t, -3, 1), "neg-rf": KNewTopic(t, 1, -3),
             "null-config": KNewTopic(t, 1, 1, topic_configs={"retention.ms": None})}
    got = {k: kp_codes(kp.create_topics([v], raise_errors=False))[t] for k, v in codes.items()}
    assert got == {"neg-p": INVALID_PARTITIONS, "neg-rf": INVALID_REPLICATION_FACTOR, "null-config": INVALID_CONFIG}
    # the same name twice in one request: INVALID_REQUEST for it (ControllerApis.createTopics)
    r = kp.create_topics([KNewTopic(t, 1, 1), KNewTopic(t, 1, 1)], raise_errors=False)
    assert set(kp_codes(r).values()) == {INVALID_REQUEST}
    # the metadata log's name is prohibited with INVALID_REQUEST, as in KRaft
    assert kp_codes(kp.create_topics([KNewTopic("__cluster_metadata", 1, 1)], raise_errors=False)) == \
        {"__cluster_metadata": INVALID_REQUEST}
    assert ck_create(ck, NewTopic("__consumer_offsets", 1, 1)) == {"__consumer_offsets": TOPIC_ALREADY_EXISTS}
    # validate_only: answers as a create would, creates nothing
    assert ck_create(ck, NewTopic(t, 4, 1, config={"cleanup.policy": "compact"}), validate_only=True) == {t: 0}
    r = kp.create_topics([KNewTopic(t, 4, 1)], validate_only=True, raise_errors=False)
    assert r["topics"][0]["error_code"] == 0 and r["topics"][0]["num_partitions"] == 4
    assert t not in ck.list_topics(timeout=TIMEOUT).topics
    # defaults (-1, -1) and the broker's num.partitions
    assert kp_codes(kp.create_topics([KNewTopic(t, -1, -1)], raise_errors=False)) == {t: 0}
    assert len(ck.list_topics(t, timeout=TIMEOUT).topics[t].partitions) == 1
    no_traceback(broker)


def test_create_topic_manual_assignments(broker, kp) -> None:
    """ReplicationControlManager.createTopic / validateManualPartitionAssignment."""
    def code(**kw) -> int:
        t = _name()
        return kp_codes(kp.create_topics([KNewTopic(t, **kw)], raise_errors=False))[t]

    assert code(num_partitions=-1, replication_factor=-1, replica_assignments={0: [0], 1: [0]}) == 0
    assert code(num_partitions=2, replication_factor=-1, replica_assignments={0: [0]}) == INVALID_REQUEST
    assert code(num_partitions=-1, replication_factor=1, replica_assignments={0: [0]}) == INVALID_REQUEST
    bad = [{0: [0], 2: [0]}, {0: [7]}, {0: [0, 0]}, {0: []}]
    assert [code(num_partitions=-1, replication_factor=-1, replica_assignments=a) for a in bad] == \
        [INVALID_REPLICA_ASSIGNMENT] * len(bad)


# -- CreatePartitions --------------------------------------------------------------------------
def test_create_partitions(broker, ck, kp) -> None:
    t = _name()
    assert ck_create(ck, NewTopic(t, 2, 1)) == {t: 0}

    def ck_grow(n: int, replica_assignment=None, validate_only: bool = False) -> int:
        np = NewPartitions(t, n) if replica_assignment is None else NewPartitions(t, n, replica_assignment)
        return ck_code(ck.create_partitions([np], validate_only=validate_only, request_timeout=TIMEOUT)[t])

    def kp_grow(parts: dict, **kw) -> list[int]:
        r = kp.create_partitions(parts, raise_errors=False, **kw)
        return [x.error_code for x in r.results]

    assert ck_grow(1) == INVALID_PARTITIONS           # "... 1 would not be an increase."
    assert ck_grow(2) == INVALID_PARTITIONS           # "Topic already has 2 partition(s)."
    assert ck_grow(5, replica_assignment=[[1], [0], [0]]) == INVALID_REPLICA_ASSIGNMENT
    assert kp_grow({"no-such-topic-" + uuid.uuid4().hex[:6]: KNewPartitions(3)}) == [UNKNOWN_TOPIC_OR_PARTITION]
    # one assignment per new partition, or INVALID_REPLICA_ASSIGNMENT (Kafka: "Attempted to add 2
    # additional partition(s), but only 1 assignment(s) were specified.")
    assert kp_grow({t: KNewPartitions(4, [[0]])}) == [INVALID_REPLICA_ASSIGNMENT]
    assert len(ck.list_topics(t, timeout=TIMEOUT).topics[t].partitions) == 2
    assert ck_grow(3, validate_only=True) == 0
    assert len(ck.list_topics(t, timeout=TIMEOUT).topics[t].partitions) == 2
    assert kp_grow({t: KNewPartitions(4, [[0], [0]])}) == [0]
    assert ck_grow(5) == 0
    assert len(ck.list_topics(t, timeout=TIMEOUT).topics[t].partitions) == 5
    no_traceback(broker)


def test_create_partitions_same_topic_twice_is_invalid_request(broker, raw) -> None:
    t = _name()
    assert int(raw.call(req(19, 7, topics=[{"name": t, "num_partitions": 1, "replication_factor": 1,
                                            "assignments": [], "configs": []}],
                            timeout=5000, validate_only=False)).topics[0].error_code) == 0
    r = raw.call(req(37, 3, topics=[{"name": t, "count": 2, "assignments": None},
                                    {"name": t, "count": 3, "assignments": None}],
                     timeout=5000, validate_only=False))
    assert {int(x.error_code) for x in r.results} == {INVALID_REQUEST}
    r = raw.call(req(3, 12, topics=[{"name": t, "topic_id": None}], allow_auto_topic_creation=False,
                     include_topic_authorized_operations=False))
    assert len(r.topics[0].partitions) == 1


# -- DeleteTopics ------------------------------------------------------------------------------
def test_delete_topics(broker, ck, kp) -> None:
    t, u = _name(), _name()
    assert ck_create(ck, NewTopic(t, 1, 1), NewTopic(u, 1, 1)) == {t: 0, u: 0}
    assert ck_code(ck.delete_topics(["no-such-" + t], request_timeout=TIMEOUT)["no-such-" + t]) == \
        UNKNOWN_TOPIC_OR_PARTITION
    # a name given twice is INVALID_REQUEST and the topic stays (ControllerApis.deleteTopics)
    r = kp.delete_topics([u, u], raise_errors=False)
    assert set(kp_codes(r).values()) == {INVALID_REQUEST}
    assert u in kp.list_topics()
    assert ck_code(ck.delete_topics([t], request_timeout=TIMEOUT)[t]) == 0
    assert kp_codes(kp.delete_topics([u], raise_errors=False)) == {u: 0}
    # the coordinator's topic is not deletable here (Kafka would delete it; logstore refuses)
    assert ck_code(ck.delete_topics(["__consumer_offsets"], request_timeout=TIMEOUT)["__consumer_offsets"]) != 0
    names = ck.list_topics(timeout=TIMEOUT).topics
    assert t not in names and u not in names and "__consumer_offsets" in names
    no_traceback(broker)


def test_delete_topics_v6_name_and_id_rules(broker, raw) -> None:
    t = _name()
    r = raw.call(req(19, 7, topics=[{"name": t, "num_partitions": 1, "replication_factor": 1, "assignments": [],
                                     "configs": []}], timeout=5000, validate_only=False))
    tid = r.topics[0].topic_id
    zero = uuid.UUID(int=0)
    r = raw.call(req(20, 6, topics=[{"name": None, "topic_id": zero}, {"name": t, "topic_id": tid},
                                    {"name": None, "topic_id": uuid.uuid4()}], timeout=5000))
    assert [int(x.error_code) for x in r.responses] == [INVALID_REQUEST, INVALID_REQUEST, 100]
    r = raw.call(req(20, 6, topics=[{"name": None, "topic_id": tid}], timeout=5000))
    assert [int(x.error_code) for x in r.responses] == [0] and r.responses[0].name == t


# -- ListOffsets / DeleteRecords ---------------------------------------------------------------
@pytest.fixture(scope="module")
def ten_records(broker, ck):
    """A topic whose partition 0 holds offsets 0..9 with timestamps 1000, 1100, ... 1900;
    partition 1 is empty."""
    t = _name("lo")
    assert ck_create(ck, NewTopic(t, 2, 1)) == {t: 0}
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(10):
        p.produce(t, value=b"v%d" % i, partition=0, timestamp=1000 + 100 * i)
    assert p.flush(TIMEOUT) == 0
    return t


def test_list_offsets_confluent(broker, ck, ten_records) -> None:
    t = ten_records

    def lo(spec, partition: int = 0):
        tp = TopicPartition(t, partition)
        return ck.list_offsets({tp: spec}, request_timeout=TIMEOUT)[tp].result(TIMEOUT)

    assert (lo(OffsetSpec.earliest()).offset, lo(OffsetSpec.latest()).offset) == (0, 10)
    r = lo(OffsetSpec.max_timestamp())
    assert (r.offset, r.timestamp) == (9, 1900)
    r = lo(OffsetSpec.for_timestamp(1250))    # first record at or after: offset 3, its own timestamp
    assert (r.offset, r.timestamp) == (3, 1300)
    r = lo(OffsetSpec.for_timestamp(1000))
    assert (r.offset, r.timestamp) == (0, 1000)
    # nothing at or after the timestamp: offset -1, timestamp -1, and no leader epoch (Kafka
    # answers an unknown epoch, -1, which the client turns into None)
    r = lo(OffsetSpec.for_timestamp(10_000))
    assert (r.offset, r.timestamp, r.leader_epoch) == (-1, -1, None)
    r = lo(OffsetSpec.max_timestamp(), partition=1)
    assert (r.offset, r.timestamp, r.leader_epoch) == (-1, -1, None)
    assert (lo(OffsetSpec.earliest(), 1).offset, lo(OffsetSpec.latest(), 1).offset) == (0, 0)


def test_list_offsets_kafka_python_specs(broker, kp, ten_records) -> None:
    tp = KTopicPartition(ten_records, 0)

    def lo(spec):
        return kp.list_partition_offsets({tp: spec})[tp]

    assert lo(KOffsetSpec.EARLIEST).offset == 0 and lo(KOffsetSpec.LATEST).offset == 10
    assert lo(KOffsetSpec.EARLIEST_LOCAL).offset == 0           # everything is local
    assert (lo(KOffsetSpec.MAX_TIMESTAMP).offset, lo(KOffsetSpec.MAX_TIMESTAMP).timestamp) == (9, 1900)
    assert lo(1550).offset == 6
    # LATEST_TIERED without tiered storage: -1 (UnifiedLog.fetchOffsetByTimestamp), not an offset
    r = lo(KOffsetSpec.LATEST_TIERED)
    assert (r.offset, r.timestamp) == (-1, -1)
    with pytest.raises(kerr.UnknownTopicOrPartitionError):
        kp.list_partition_offsets({KTopicPartition(ten_records, 99): KOffsetSpec.LATEST})


def test_list_offsets_unsupported_timestamps_and_duplicates(broker, raw, ten_records) -> None:
    """ReplicaManager.fetchOffset: a special timestamp newer than the request's version, or an
    unknown negative one, is UNSUPPORTED_VERSION; a partition asked twice is INVALID_REQUEST."""
    def lo(v: int, parts: list) -> list[tuple[int, int]]:
        r = raw.call(req(2, v, replica_id=-1, isolation_level=0, timeout_ms=5000,
                         topics=[{"name": ten_records, "partitions": [
                             {"partition_index": p, "timestamp": ts, "current_leader_epoch": -1, "max_num_offsets": 1}
                             for p, ts in parts]}]))
        return [(int(p.error_code), p.offset) for p in r.topics[0].partitions]

    assert lo(9, [(0, -3)]) == [(0, 9)]
    assert lo(6, [(0, -3)]) == [(UNSUPPORTED_VERSION, -1)]      # MAX_TIMESTAMP needs v7
    assert lo(7, [(0, -4)]) == [(UNSUPPORTED_VERSION, -1)]      # EARLIEST_LOCAL needs v8
    assert lo(9, [(0, -7)]) == [(UNSUPPORTED_VERSION, -1)]
    assert lo(9, [(0, -1), (0, -2), (1, -1)]) == [(INVALID_REQUEST, -1), (INVALID_REQUEST, -1), (0, 0)]


def test_delete_records(broker, ck, kp) -> None:
    t = _name("dr")
    assert ck_create(ck, NewTopic(t, 1, 1)) == {t: 0}
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(6):
        p.produce(t, value=b"%d" % i, partition=0)
    assert p.flush(TIMEOUT) == 0
    tp = TopicPartition(t, 0)

    def dr(offset: int):
        return ck.delete_records([TopicPartition(t, 0, offset)], request_timeout=TIMEOUT)[TopicPartition(t, 0, offset)]

    assert ck_code(dr(7)) == OFFSET_OUT_OF_RANGE                # beyond the high watermark
    assert dr(2).result(TIMEOUT).low_watermark == 2
    assert dr(1).result(TIMEOUT).low_watermark == 2             # never moves back
    assert ck.list_offsets({tp: OffsetSpec.earliest()})[tp].result(TIMEOUT).offset == 2
    assert kp.delete_records({KTopicPartition(t, 0): -1})[KTopicPartition(t, 0)]["low_watermark"] == 6
    with pytest.raises(kerr.OffsetOutOfRangeError):
        kp.delete_records({KTopicPartition(t, 0): 99})
    no_traceback(broker)


# -- DescribeConfigs ---------------------------------------------------------------------------
def test_describe_configs_topic(broker, ck, kp) -> None:
    t = _name("dc")
    assert ck_create(ck, NewTopic(t, 1, 1, config={"retention.ms": "12345"})) == {t: 0}
    res = ConfigResource(ResourceType.TOPIC, t)
    cfg = ck.describe_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)
    r = cfg["retention.ms"]
    assert (r.value, r.source, r.is_default, r.is_read_only) == \
        ("12345", ConfigSource.DYNAMIC_TOPIC_CONFIG.value, False, False)
    assert [(s.name, s.value, s.source) for s in r.synonyms.values()][0] == \
        ("retention.ms", "12345", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    c = cfg["cleanup.policy"]
    assert (c.value, c.source, c.is_default) == ("delete", ConfigSource.DEFAULT_CONFIG.value, True)
    assert ("log.cleanup.policy", "delete") in [(s.name, s.value) for s in c.synonyms.values()]
    # configuration keys: a list selects, an EMPTY list means every key (ConfigHelper)
    got = kp.describe_configs([KConfigResource(KConfigResourceType.TOPIC, t, {"retention.ms": None})],
                              config_filter="all")["topic"][t]
    assert list(got) == ["retention.ms"] and got["retention.ms"]["config_type"] == "LONG"
    got = kp.describe_configs([KConfigResource(KConfigResourceType.TOPIC, t, {})], config_filter="all")["topic"][t]
    assert len(got) == len(cfg) and got["compression.gzip.level"]["config_type"] == "INT"
    # an invalid name is INVALID_TOPIC_EXCEPTION, a missing topic UNKNOWN_TOPIC_OR_PARTITION
    for name, code in (("bad name", INVALID_TOPIC), ("no-such-" + t, UNKNOWN_TOPIC_OR_PARTITION)):
        r = ConfigResource(ResourceType.TOPIC, name)
        assert ck_code(ck.describe_configs([r], request_timeout=TIMEOUT)[r]) == code


def test_describe_configs_broker(broker, ck, kp, raw) -> None:
    res = ConfigResource(ResourceType.BROKER, "0")
    cfg = ck.describe_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)
    assert cfg["node.id"].value == "0" and cfg["broker.id"].value == "0"
    d = cfg["log.dirs"]
    assert (d.value, d.source, d.is_read_only) == (broker.data_dir, ConfigSource.STATIC_BROKER_CONFIG.value, True)
    o = cfg["offsets.topic.num.partitions"]
    assert (o.value, o.source) == ("1", ConfigSource.STATIC_BROKER_CONFIG.value)
    n = cfg["num.partitions"]
    assert (n.value, n.is_default) == ("1", True)
    # synonyms as Kafka lists them for a broker key: its static value, then its default
    # (confluent-kafka keys synonyms by name, so kafka-python shows the list)
    got = kp.describe_configs([KConfigResource(KConfigResourceType.BROKER, "0", ["log.dirs", "num.partitions"])],
                              include_synonyms=True, config_filter="all")["broker"]["0"]
    assert [(s["name"], s["value"], s["source"]) for s in got["log.dirs"]["synonyms"]] == \
        [("log.dirs", broker.data_dir, "STATIC_BROKER_CONFIG"), ("log.dirs", "./data", "DEFAULT_CONFIG")]
    assert [(s["name"], s["value"], s["source"]) for s in got["num.partitions"]["synonyms"]] == \
        [("num.partitions", "1", "DEFAULT_CONFIG")]
    got = kp.describe_configs([KConfigResource(KConfigResourceType.BROKER, "0", {"message.max.bytes": None})],
                              include_synonyms=True, config_filter="all")["broker"]["0"]
    assert got["message.max.bytes"]["value"] == "1048588" and got["message.max.bytes"]["config_type"] == "INT"
    # another broker id is INVALID_REQUEST; "" is the cluster-wide dynamic defaults (none here)
    r = raw.call(req(32, 4, resources=[{"resource_type": 4, "resource_name": "7", "configuration_keys": None},
                                       {"resource_type": 4, "resource_name": "", "configuration_keys": None},
                                       {"resource_type": 4, "resource_name": "x", "configuration_keys": None}],
                     include_synonyms=False, include_documentation=False))
    assert [(int(x.error_code), len(x.configs)) for x in r.results] == \
        [(INVALID_REQUEST, 0), (0, 0), (INVALID_REQUEST, 0)]


# -- AlterConfigs / IncrementalAlterConfigs ----------------------------------------------------
def _topic_cfg(ck, t: str) -> dict[str, tuple[str, int]]:
    res = ConfigResource(ResourceType.TOPIC, t)
    return {k: (e.value, e.source) for k, e in ck.describe_configs([res])[res].result(TIMEOUT).items()}


def test_incremental_alter_list_config(broker, ck) -> None:
    t = _name("ia")
    assert ck_create(ck, NewTopic(t, 1, 1)) == {t: 0}

    def inc(*ops, validate_only: bool = False) -> int:
        res = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=op) for k, op, v in ops])
        return ck_code(ck.incremental_alter_configs([res], validate_only=validate_only,
                                                    request_timeout=TIMEOUT)[res])

    S, D, A, X = AlterConfigOpType.SET, AlterConfigOpType.DELETE, AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT
    topic = ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert inc(("cleanup.policy", S, "compact")) == 0
    assert _topic_cfg(ck, t)["cleanup.policy"] == ("compact", topic)
    assert inc(("cleanup.policy", A, "delete")) == 0
    assert _topic_cfg(ck, t)["cleanup.policy"] == ("compact,delete", topic)
    assert inc(("cleanup.policy", X, "compact")) == 0
    assert _topic_cfg(ck, t)["cleanup.policy"] == ("delete", topic)
    assert inc(("cleanup.policy", D, None)) == 0
    assert _topic_cfg(ck, t)["cleanup.policy"] == ("delete", ConfigSource.DEFAULT_CONFIG.value)
    assert inc(("retention.ms", S, "777"), validate_only=True) == 0
    assert _topic_cfg(ck, t)["retention.ms"][0] == "604800000"
    assert inc(("retention.ms", A, "5")) == INVALID_CONFIG      # "Can't APPEND to key ... not LIST."
    assert inc(("retention.ms", S, "x")) == INVALID_CONFIG
    assert inc(("no.such.config", S, "1")) == INVALID_CONFIG
    assert inc(("retention.ms", S, "1000"), ("segment.ms", S, "bad")) == INVALID_CONFIG
    assert _topic_cfg(ck, t)["retention.ms"][0] == "604800000"     # nothing of a failed request lands
    res = ConfigResource(ResourceType.TOPIC, "no-such-" + t, incremental_configs=[
        ConfigEntry("retention.ms", "1", incremental_operation=S)])
    assert ck_code(ck.incremental_alter_configs([res])[res]) == UNKNOWN_TOPIC_OR_PARTITION
    res = ConfigResource(ResourceType.BROKER, "0", incremental_configs=[
        ConfigEntry("log.retention.ms", "1", incremental_operation=S)])
    assert ck_code(ck.incremental_alter_configs([res])[res]) == INVALID_REQUEST
    no_traceback(broker)


def test_alter_configs_null_values_and_duplicates_are_invalid_request(broker, ck, kp) -> None:
    """ConfigAdminManager.preprocess: a null value (other than DELETE) and a resource named twice
    are INVALID_REQUEST, and nothing changes. A null in the legacy AlterConfigs used to be dropped
    silently, taking the override away."""
    t = _name("ac")
    assert ck_create(ck, NewTopic(t, 1, 1, config={"retention.ms": "5000"})) == {t: 0}
    R = KConfigResourceType.TOPIC
    got = kp.alter_configs([KConfigResource(R, t, {"retention.ms": None})], incremental=False,
                           raise_on_unknown=False)["topic"][t]
    assert got.startswith("[Error 42]"), got
    got = kp.alter_configs([KConfigResource(R, t, {"retention.ms": (AlterConfigOp.SET, None)})], incremental=True,
                           raise_on_unknown=False)["topic"][t]
    assert got.startswith("[Error 42]"), got
    got = kp.alter_configs([KConfigResource(R, t, {"retention.ms": "1"}), KConfigResource(R, t, {"segment.ms": "1"})],
                           incremental=True, raise_on_unknown=False)["topic"][t]
    assert got.startswith("[Error 42]"), got
    assert _topic_cfg(ck, t)["retention.ms"] == ("5000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert _topic_cfg(ck, t)["segment.ms"][0] == "604800000"
    # the legacy API replaces the whole override set (confluent-kafka sends it as given)
    res = ConfigResource(ResourceType.TOPIC, t, set_config={"segment.ms": "60000"})
    with pytest.warns(DeprecationWarning):
        assert ck_code(ck.alter_configs([res], request_timeout=TIMEOUT)[res]) == 0
    cfg = _topic_cfg(ck, t)
    assert cfg["segment.ms"] == ("60000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert cfg["retention.ms"] == ("604800000", ConfigSource.DEFAULT_CONFIG.value)
    res = ConfigResource(ResourceType.TOPIC, t, set_config={"retention.ms": "-5"})
    with pytest.warns(DeprecationWarning):
        assert ck_code(ck.alter_configs([res])[res]) == INVALID_CONFIG


def test_alter_configs_duplicate_keys_and_bad_operations(broker, raw) -> None:
    t = _name("ak")
    assert int(raw.call(req(19, 7, topics=[{"name": t, "num_partitions": 1, "replication_factor": 1,
                                            "assignments": [], "configs": []}],
                            timeout=5000, validate_only=False)).topics[0].error_code) == 0

    def inc(name: str, configs: list) -> int:
        r = raw.call(req(44, 1, resources=[{"resource_type": 2, "resource_name": name, "configs": configs}],
                         validate_only=False))
        return int(r.responses[0].error_code)

    set_ = {"name": "retention.ms", "config_operation": 0, "value": "1000"}
    assert inc(t, [set_, set_]) == INVALID_REQUEST           # "Error due to duplicate config keys"
    assert inc(t, [{"name": "retention.ms", "config_operation": 9, "value": "1"}]) == INVALID_REQUEST
    assert inc(t, [{"name": "retention.ms", "config_operation": 1, "value": None}]) == 0
    assert inc("", [set_]) == INVALID_REQUEST                # "Default topic resources are not allowed."
    assert inc("bad name", [set_]) == INVALID_TOPIC
    assert inc(t, [set_]) == 0


# -- Metadata / DescribeCluster ----------------------------------------------------------------
TOPIC_OPS = {"READ", "WRITE", "CREATE", "DESCRIBE", "DELETE", "ALTER", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}
CLUSTER_OPS = {"CREATE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE", "ALTER",
               "DESCRIBE"}


def test_authorized_operations_when_asked(broker, ck, kp) -> None:
    """No authorizer: Kafka answers every operation the resource type supports
    (AuthHelper.authorizedOperations); when not asked, nothing."""
    t = _name("ops")
    assert ck_create(ck, NewTopic(t, 2, 1)) == {t: 0}
    d = ck.describe_topics(TopicCollection([t]), include_authorized_operations=True,
                           request_timeout=TIMEOUT)[t].result(TIMEOUT)
    assert {o.name for o in d.authorized_operations} == TOPIC_OPS
    assert [p.id for p in d.partitions] == [0, 1] and d.is_internal is False
    assert ck.describe_topics(TopicCollection([t]))[t].result(TIMEOUT).authorized_operations is None
    c = ck.describe_cluster(include_authorized_operations=True, request_timeout=TIMEOUT).result(TIMEOUT)
    assert {o.name for o in c.authorized_operations} == CLUSTER_OPS
    assert c.controller.id == 0 and [n.port for n in c.nodes] == [broker.port]
    assert ck.describe_cluster().result(TIMEOUT).authorized_operations is None
    assert set(kp.describe_cluster()["authorized_operations"]) == CLUSTER_OPS
    missing = "no-such-" + t
    assert ck_code(ck.describe_topics(TopicCollection([missing]))[missing]) == UNKNOWN_TOPIC_OR_PARTITION
    assert missing not in ck.list_topics(timeout=TIMEOUT).topics   # describing does not create


def test_describe_cluster_endpoint_type(broker, raw) -> None:
    """AuthHelper.computeDescribeClusterResponse: a broker asked as a controller answers
    MISMATCHED_ENDPOINT_TYPE, an unknown endpoint type UNSUPPORTED_ENDPOINT_TYPE."""
    codes = [int(raw.call(req(60, 1, include_cluster_authorized_operations=False, endpoint_type=e)).error_code)
             for e in (1, 2, 9)]
    assert codes == [0, MISMATCHED_ENDPOINT_TYPE, UNSUPPORTED_ENDPOINT_TYPE]


# -- aiokafka ----------------------------------------------------------------------------------
def test_aiokafka_admin(broker) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions as ANewPartitions, NewTopic as ANewTopic
    from aiokafka.admin import RecordsToDelete
    from aiokafka.admin.config_resource import ConfigResource as AConfigResource
    from aiokafka.admin.config_resource import ConfigResourceType as AType
    from aiokafka.errors import InvalidPartitionsError
    from aiokafka.structs import TopicPartition as ATopicPartition

    t = _name("aio")

    async def main() -> None:
        a = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=int(TIMEOUT * 1000))
        await a.start()
        try:
            async def w(coro):
                return await asyncio.wait_for(coro, TIMEOUT)

            r = await w(a.create_topics([ANewTopic(t, 2, 1, topic_configs={"cleanup.policy": "compact,delete"})]))
            assert [e[1] for e in r.topic_errors] == [0]
            r = await w(a.create_topics([ANewTopic(t, 2, 3)]))
            assert [e[1] for e in r.topic_errors] == [TOPIC_ALREADY_EXISTS]
            with pytest.raises(InvalidPartitionsError):
                await w(a.create_partitions({t: ANewPartitions(1)}))
            await w(a.create_partitions({t: ANewPartitions(3)}))
            (desc,) = await w(a.describe_topics([t]))
            assert len(desc["partitions"]) == 3
            (r,) = await w(a.describe_configs([AConfigResource(AType.TOPIC, t, {"cleanup.policy": None})],
                                              include_synonyms=True))
            entry = r.resources[0][4][0]
            assert entry[:2] == ("cleanup.policy", "compact,delete") and entry[3] == 1   # DYNAMIC_TOPIC_CONFIG
            (r,) = await w(a.describe_configs([AConfigResource(AType.TOPIC, "bad name")]))
            assert r.resources[0][0] == INVALID_TOPIC
            (r,) = await w(a.alter_configs([AConfigResource(AType.TOPIC, t, {"retention.ms": "-5"})]))
            assert r.resources[0][0] == INVALID_CONFIG
            low = await w(a.delete_records({ATopicPartition(t, 0): RecordsToDelete(0)}))
            assert low == {ATopicPartition(t, 0): 0}
            r = await w(a.delete_topics([t]))
            assert [e[1] for e in r.topic_error_codes] == [0]
            assert t not in await w(a.list_topics())
        finally:
            await a.close()

    asyncio.run(main())
    no_traceback(broker)


# -- APIs the broker does not advertise --------------------------------------------------------
def test_unadvertised_apis_fail_cleanly_in_the_client(broker, ck, kp) -> None:
    """Clients see at once, from ApiVersions, that the broker lacks the API: a clean client-side
    error, no hang, nothing logged as a broker bug."""
    from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType
    from kafka.admin import ResourcePatternFilter, ResourceType as KResourceType

    acl_filter = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                  AclPermissionType.ANY)
    futures = [ck.describe_acls(acl_filter, request_timeout=TIMEOUT),
               ck.describe_user_scram_credentials(request_timeout=TIMEOUT)]
    futures += list(ck.create_acls([AclBinding(ResourceType.TOPIC, "x", ResourcePatternType.LITERAL, "User:u", "*",
                                               AclOperation.READ, AclPermissionType.ALLOW)],
                                   request_timeout=TIMEOUT).values())
    for f in futures:
        with pytest.raises(KafkaException) as e:
            f.result(TIMEOUT)
        assert e.value.args[0].name() == "_UNSUPPORTED_FEATURE"
    calls = [lambda: kp.describe_acls(ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                                                permission_type=ACLPermissionType.ANY,
                                                resource_pattern=ResourcePatternFilter(
                                                    KResourceType.ANY, None, ACLResourcePatternType.ANY))),
             lambda: kp.describe_user_scram_credentials(),
             lambda: kp.describe_metadata_quorum(),
             lambda: kp.list_partition_reassignments(),
             lambda: kp.elect_leaders(0, [KTopicPartition("x", 0)])]
    for call in calls:
        with pytest.raises(kerr.IncompatibleBrokerVersion):
            call()
    assert ck.list_topics(timeout=TIMEOUT).brokers    # still serving
    no_traceback(broker)


GROUP_OPS = {"READ", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}


def test_group_authorized_operations_when_asked(broker, ck) -> None:
    """DescribeGroups and ConsumerGroupDescribe return the group operations (AclEntry's for GROUP)
    only when asked, as Metadata does for topics."""
    from confluent_kafka import Consumer, TopicPartition
    t, g = _name("gops"), _name("gops-group")
    assert ck_create(ck, NewTopic(t, 1, 1)) == {t: 0}
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": g, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(t, 0, 0)], asynchronous=False)  # an Empty classic group
    finally:
        c.close()
    d = ck.describe_consumer_groups([g], include_authorized_operations=True, request_timeout=TIMEOUT)[g].result(TIMEOUT)
    assert {o.name for o in d.authorized_operations} == GROUP_OPS
    assert ck.describe_consumer_groups([g])[g].result(TIMEOUT).authorized_operations is None
