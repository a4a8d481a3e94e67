"""The broker's APIs over real sockets, with kio-encoded requests: Produce (acks, per-partition
errors, CRC/magic/size checks, idempotent sequences), Fetch (limits, KIP-74, long polling,
OFFSET_OUT_OF_RANGE, by topic id), ListOffsets, Metadata (auto-create, invalid names), CreateTopics,
DeleteTopics, CreatePartitions, configs, DeleteRecords, DescribeCluster, InitProducerId; and the
byte-for-byte agreement between what the broker stores and what the embedded API reads."""

from __future__ import annotations

import struct
import threading
import time
import uuid

import pytest

from broker.server import BrokerThread
from logstore.records import build_batch, decode_batches

from .broker_helpers import module_broker
from .test_server import RawClient, req


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with module_broker(tmp_path_factory, "apis", {"num.partitions": "3"}) as b:
        yield b


@pytest.fixture
def client(broker):
    with RawClient(broker.port) as c:
        yield c


def _topic() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def create(c: RawClient, name: str, partitions: int = 1, rf: int = 1, configs: dict | None = None,
           validate_only: bool = False, version: int = 7) -> object:
    r = c.call(req(19, version, topics=[{"name": name, "num_partitions": partitions, "replication_factor": rf,
                                         "assignments": [], "configs": [{"name": k, "value": v}
                                                                        for k, v in (configs or {}).items()]}],
                   timeout=5000, validate_only=validate_only))
    return r.topics[0]


def produce(c: RawClient, topic: str, data: bytes | None, partition: int = 0, acks: int = -1, version: int = 9):
    body = req(0, version, transactional_id=None, acks=acks, timeout=5000,
               topic_data=[{"name": topic, "partition_data": [{"index": partition, "records": data}]}])
    if acks == 0:
        c.send(body)
        return None
    return c.call(body).responses[0].partition_responses[0]


def fetch(c: RawClient, topic: str, offset: int, partition: int = 0, version: int = 12, max_wait: int = 0,
          min_bytes: int = 1, max_bytes: int = 1 << 20, part_max: int = 1 << 20, topic_id=None):
    t = {"topic": topic, "topic_id": topic_id,
         "partitions": [{"partition": partition, "fetch_offset": offset, "partition_max_bytes": part_max}]}
    r = c.call(req(1, version, max_wait=max_wait, min_bytes=min_bytes, max_bytes=max_bytes, isolation_level=0,
                   session_id=0, session_epoch=-1, topics=[t], forgotten_topics_data=[], rack_id=""))
    return r.responses[0].partitions[0]


def list_offset(c: RawClient, topic: str, ts: int, partition: int = 0, version: int = 9):
    r = c.call(req(2, version, replica_id=-1, isolation_level=0, topics=[
        {"name": topic, "partitions": [{"partition_index": partition, "timestamp": ts}]}]))
    return r.topics[0].partitions[0]


# -- produce ---------------------------------------------------------------------------------------
def test_produce_fetch_round_trip_every_version(broker, client) -> None:
    t = _topic()
    assert int(create(client, t).error_code) == 0
    expected = []
    now = int(time.time() * 1000)
    for v in range(3, 12):
        batch = build_batch([(b"k%d" % v, b"v%d" % v, [("h", b"x")], now + v)])
        p = produce(client, t, batch, version=v)
        assert int(p.error_code) == 0 and p.base_offset == v - 3
        expected.append(batch)
    for v in range(4, 17):
        tid = broker.store.topic(t).topic_id if v >= 13 else None
        p = fetch(client, t, 0, version=v, topic_id=tid)
        assert int(p.error_code) == 0 and p.high_watermark == 9
        recs = list(decode_batches(p.records))
        assert [r.value for r in recs] == [b"v%d" % v for v in range(3, 12)]
        assert [r.offset for r in recs] == list(range(9))
        assert all(r.headers == (("h", b"x"),) for r in recs)


def test_broker_writes_are_read_byte_for_byte_by_the_embedded_api(broker, client) -> None:
    t = _topic()
    create(client, t)
    batch = build_batch([(b"key", b"value" * 50, [("a", b"1"), ("b", None)], 1234), (None, b"x", [], 1235)],
                        compression="zstd")
    assert produce(client, t, batch).base_offset == 0
    stored = broker.store.partition(t, 0).read_bytes(0)
    expected = bytearray(batch)
    expected[12:16] = struct.pack(">i", 0)   # the broker sets the partition leader epoch; CRC does not cover it
    assert stored == bytes(expected)
    assert fetch(client, t, 0).records == stored
    recs = broker.store.partition(t, 0).read(0)
    assert [(r.key, r.value, r.headers, r.timestamp) for r in recs] == [
        (b"key", b"value" * 50, (("a", b"1"), ("b", None)), 1234), (None, b"x", (), 1235)]


def test_embedded_appends_are_fetched(broker, client) -> None:
    t = _topic()
    create(client, t)
    lg = broker.store.partition(t, 0)
    lg.append([(b"e", b"mbedded", [("h", b"v")], 777)])
    p = fetch(client, t, 0)
    recs = list(decode_batches(p.records))
    assert [(r.key, r.value, r.headers, r.timestamp) for r in recs] == [(b"e", b"mbedded", (("h", b"v"),), 777)]


def test_produce_errors_are_per_partition(broker, client) -> None:
    t = _topic()
    create(client, t, configs={"max.message.bytes": "2000"})
    good = build_batch([(b"k", b"v")])
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF
    magic1 = bytearray(good)
    magic1[16] = 1
    big = build_batch([(b"k", b"x" * 5000)])
    assert int(produce(client, t, bytes(corrupt)).error_code) == 2          # CORRUPT_MESSAGE (CRC)
    assert int(produce(client, t, bytes(magic1)).error_code) == 87         # INVALID_RECORD: magic 1, as Kafka
    assert int(produce(client, t, b"").error_code) == 87                   # INVALID_RECORD: no batch, as Kafka
    assert int(produce(client, t, big).error_code) == 10                   # MESSAGE_TOO_LARGE
    small_segments = _topic()
    create(client, small_segments, configs={"segment.bytes": "1000"})
    huge = build_batch([(b"k", b"x" * 3000)])
    assert int(produce(client, small_segments, huge).error_code) == 0      # kept (Kafka 3: 18; see log.py)
    assert broker.store.partition(small_segments, 0).log_end_offset == 1
    assert int(produce(client, t, good, partition=7).error_code) == 3      # UNKNOWN_TOPIC_OR_PARTITION
    assert int(produce(client, "no-such-topic-x", good).error_code) == 3
    assert int(produce(client, t, good, acks=2).error_code) == 21          # INVALID_REQUIRED_ACKS
    assert int(produce(client, "__consumer_offsets", good).error_code) == 17
    # one request, two partitions, one bad: the good one is appended
    body = req(0, 9, transactional_id=None, acks=1, timeout=5000, topic_data=[
        {"name": t, "partition_data": [{"index": 0, "records": good}, {"index": 1, "records": good}]}])
    r = client.call(body).responses[0].partition_responses
    assert [int(p.error_code) for p in r] == [0, 3]
    assert broker.store.partition(t, 0).log_end_offset == 1


def test_acks_zero_gets_no_response_but_keeps_order(broker, client) -> None:
    t = _topic()
    create(client, t)
    for i in range(5):
        produce(client, t, build_batch([(None, b"%d" % i)]), acks=0)
    r = list_offset(client, t, -1)       # answered after the acks=0 requests, with nothing in between
    assert r.offset == 5
    # a failed acks=0 produce has no response to carry the error: the connection is closed
    produce(client, "no-such-topic-w", build_batch([(None, b"x")]), acks=0)
    assert client.closed_by_peer()


def test_idempotent_sequences(broker, client) -> None:
    t = _topic()
    create(client, t)
    pid = client.call(req(22, 4, transactional_id=None, transaction_timeout=60000, producer_id=-1,
                          producer_epoch=-1)).producer_id
    assert pid > 0
    b0 = build_batch([(None, b"a"), (None, b"b")], producer_id=pid, producer_epoch=0, base_sequence=0)
    b1 = build_batch([(None, b"c")], producer_id=pid, producer_epoch=0, base_sequence=2)
    gap = build_batch([(None, b"d")], producer_id=pid, producer_epoch=0, base_sequence=9)
    assert produce(client, t, b0).base_offset == 0
    assert produce(client, t, b1).base_offset == 2
    dup = produce(client, t, b0)          # a retry: success with the original offset, nothing appended
    assert int(dup.error_code) == 0 and dup.base_offset == 0
    assert int(produce(client, t, gap).error_code) == 45
    assert broker.store.partition(t, 0).log_end_offset == 3
    # transactional ids are refused, not half-served
    r = client.call(req(22, 4, transactional_id="tx", transaction_timeout=60000, producer_id=-1, producer_epoch=-1))
    assert int(r.error_code) != 0
    pid2 = client.call(req(22, 0, transactional_id=None, transaction_timeout=60000)).producer_id
    assert pid2 != pid


def test_acks_all_with_flush_messages_waits_for_the_flush(broker, client) -> None:
    t = _topic()
    create(client, t, configs={"flush.messages": "1"})
    lg = broker.store.partition(t, 0)
    for i in range(3):
        p = produce(client, t, build_batch([(None, b"%d" % i)]), acks=-1)
        assert int(p.error_code) == 0
        assert lg.recovery_point >= p.base_offset + 1


# -- fetch -----------------------------------------------------------------------------------------
def test_fetch_limits_and_kip74(broker, client) -> None:
    t = _topic()
    create(client, t)
    big = build_batch([(None, b"x" * 3000)])
    for _ in range(3):
        produce(client, t, big)
    # smaller limits than one batch still return one whole batch (KIP-74)
    p = fetch(client, t, 0, part_max=100)
    assert len(p.records) >= len(big) and len(list(decode_batches(p.records[:len(big)]))) == 1
    p = fetch(client, t, 0, max_bytes=10)
    assert len(p.records) >= len(big)
    # the partition limit is honoured beyond the first batch
    p = fetch(client, t, 0, part_max=len(big) * 2)
    assert len(p.records) <= len(big) * 2
    # fetch from the middle of the log; offset past the end is OFFSET_OUT_OF_RANGE with the bounds
    p = fetch(client, t, 1)
    assert list(decode_batches(p.records))[0].offset == 1
    p = fetch(client, t, 3)
    assert int(p.error_code) == 0 and not p.records and p.high_watermark == 3
    p = fetch(client, t, 99)
    assert int(p.error_code) == 1 and p.high_watermark == 3 and p.log_start_offset == 0
    p = fetch(client, "no-such-topic-y", 0)
    assert int(p.error_code) == 3
    p = fetch(client, "", 0, version=13, topic_id=uuid.uuid4())
    assert int(p.error_code) == 100


def test_long_poll_waits_for_max_wait_and_wakes_on_append(broker, client) -> None:
    t = _topic()
    create(client, t)
    t0 = time.monotonic()
    p = fetch(client, t, 0, max_wait=400)
    waited = time.monotonic() - t0
    assert not p.records and 0.35 <= waited < 3.0

    def later() -> None:
        time.sleep(0.3)
        with RawClient(broker.port) as other:
            produce(other, t, build_batch([(None, b"wake")]))

    th = threading.Thread(target=later)
    th.start()
    t0 = time.monotonic()
    p = fetch(client, t, 0, max_wait=20000)
    waited = time.monotonic() - t0
    th.join()
    assert [r.value for r in decode_batches(p.records)] == [b"wake"]
    assert 0.25 <= waited < 5.0

    # an append through the embedded API from another thread wakes a parked fetch too
    th = threading.Thread(target=lambda: (time.sleep(0.3), broker.store.partition(t, 0).append([(None, b"emb")])))
    th.start()
    t0 = time.monotonic()
    p = fetch(client, t, 1, max_wait=20000)
    th.join()
    assert [r.value for r in decode_batches(p.records)] == [b"emb"] and time.monotonic() - t0 < 5.0


def test_a_parked_fetch_answers_at_once_when_its_topic_is_deleted(broker, client) -> None:
    """Kafka completes a delayed fetch whose partition went away; it used to wait out max.wait."""
    t = _topic()
    create(client, t)

    def later() -> None:
        time.sleep(0.5)
        with RawClient(broker.port) as other:
            r = other.call(req(20, 6, topics=[{"name": t, "topic_id": None}], timeout=5000))
            assert int(r.responses[0].error_code) == 0

    th = threading.Thread(target=later)
    th.start()
    t0 = time.monotonic()
    p = fetch(client, t, 0, max_wait=30000)
    waited = time.monotonic() - t0
    th.join()
    assert not p.records and int(p.error_code) == 3  # UNKNOWN_TOPIC_OR_PARTITION
    assert 0.4 <= waited < 5.0


# -- list offsets ----------------------------------------------------------------------------------
def test_list_offsets(broker, client) -> None:
    t = _topic()
    create(client, t)
    for i, ts in enumerate([1000, 5000, 3000]):
        produce(client, t, build_batch([(None, b"%d" % i, [], ts)]))
    assert list_offset(client, t, -2).offset == 0
    assert list_offset(client, t, -1).offset == 3
    r = list_offset(client, t, -3)
    assert (r.offset, r.timestamp) == (1, 5000)
    r = list_offset(client, t, 2000)
    assert (r.offset, r.timestamp) == (1, 5000)
    r = list_offset(client, t, 1000)
    assert (r.offset, r.timestamp) == (0, 1000)
    assert list_offset(client, t, 9000).offset == -1
    assert list_offset(client, t, -1, version=1).offset == 3
    assert int(list_offset(client, "no-such-topic-z", -1).error_code) == 3


# -- metadata ----------------------------------------------------------------------------------------
def test_metadata_auto_create_and_errors(broker, client) -> None:
    t = _topic()
    r = client.call(req(3, 12, topics=[{"name": t, "topic_id": None}, {"name": "bad name!", "topic_id": None}],
                        allow_auto_topic_creation=True, include_topic_authorized_operations=False))
    assert int(r.topics[0].error_code) == 0 and len(r.topics[0].partitions) == 3
    assert r.topics[0].topic_id == broker.store.topic(t).topic_id
    assert int(r.topics[1].error_code) == 17
    assert r.brokers[0].port == broker.port and r.brokers[0].host == "127.0.0.1"
    t2 = _topic()
    r = client.call(req(3, 12, topics=[{"name": t2, "topic_id": None}], allow_auto_topic_creation=False,
                        include_topic_authorized_operations=False))
    assert int(r.topics[0].error_code) == 3 and not broker.store.has_topic(t2)
    r = client.call(req(3, 0, topics=[]))        # v0: empty list = all topics
    assert t in {x.name for x in r.topics}
    r = client.call(req(3, 12, topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False))
    internal = [x for x in r.topics if x.name == "__consumer_offsets"]
    assert internal and internal[0].is_internal


def test_metadata_auto_create_disabled(tmp_path) -> None:
    with BrokerThread({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path / "d"),
                       "auto.create.topics.enable": "false"}) as b, RawClient(b.port) as c:
        r = c.call(req(3, 12, topics=[{"name": "nope", "topic_id": None}], allow_auto_topic_creation=True,
                       include_topic_authorized_operations=False))
        assert int(r.topics[0].error_code) == 3


# -- admin -------------------------------------------------------------------------------------------
def test_create_topics_errors(broker, client) -> None:
    t = _topic()
    r = create(client, t, partitions=-1, configs={"retention.ms": "1000"})
    assert int(r.error_code) == 0 and r.num_partitions == 3 and r.replication_factor == 1
    assert {c.name: c.value for c in r.configs}["retention.ms"] == "1000"
    assert int(create(client, t).error_code) == 36
    assert int(create(client, _topic(), partitions=0).error_code) == 37
    assert int(create(client, _topic(), rf=2).error_code) == 38
    assert int(create(client, _topic(), configs={"no.such.config": "1"}).error_code) == 40
    assert int(create(client, _topic(), configs={"retention.ms": "abc"}).error_code) == 40
    assert int(create(client, "bad/name").error_code) == 17
    v = _topic()
    assert int(create(client, v, validate_only=True).error_code) == 0 and not broker.store.has_topic(v)
    for version in range(2, 8):
        assert int(create(client, _topic(), version=version).error_code) == 0


def test_delete_topics_by_name_and_id_then_recreate(broker, client) -> None:
    a, b = _topic(), _topic()
    create(client, a)
    create(client, b)
    produce(client, a, build_batch([(None, b"old")]))
    tid = broker.store.topic(b).topic_id
    r = client.call(req(20, 6, topics=[{"name": a, "topic_id": uuid.UUID(int=0)}, {"name": None, "topic_id": tid},
                                       {"name": "no-such-topic-q", "topic_id": uuid.UUID(int=0)}], timeout=5000))
    assert [int(x.error_code) for x in r.responses] == [0, 0, 3]
    assert not broker.store.has_topic(a) and not broker.store.has_topic(b)
    r = client.call(req(20, 1, topic_names=["__consumer_offsets"], timeout=5000))
    assert int(r.responses[0].error_code) != 0
    create(client, a)
    p = produce(client, a, build_batch([(None, b"new")]))
    assert p.base_offset == 0
    assert [r.value for r in decode_batches(fetch(client, a, 0).records)] == [b"new"]


def test_create_partitions(broker, client) -> None:
    t = _topic()
    create(client, t, partitions=1)
    r = client.call(req(37, 3, topics=[{"name": t, "count": 4, "assignments": None}], timeout=5000,
                        validate_only=False))
    assert int(r.results[0].error_code) == 0 and broker.store.topic(t).partitions == 4
    r = client.call(req(37, 3, topics=[{"name": t, "count": 2, "assignments": None}], timeout=5000,
                        validate_only=False))
    assert int(r.results[0].error_code) == 37
    r = client.call(req(37, 0, topics=[{"name": "no-such-topic-r", "count": 2, "assignments": None}], timeout=5000,
                        validate_only=False))
    assert int(r.results[0].error_code) == 3


def test_configs_describe_alter_incremental(broker, client) -> None:
    t = _topic()
    create(client, t, configs={"retention.ms": "1000"})

    def describe(keys=None, version=4):
        r = client.call(req(32, version, resources=[{"resource_type": 2, "resource_name": t,
                                                      "configuration_keys": keys}], include_synonyms=True,
                            include_documentation=False))
        return {c.name: (c.value, c.config_source) for c in r.results[0].configs}

    d = describe()
    assert d["retention.ms"] == ("1000", 1) and d["segment.bytes"][1] == 5
    assert set(describe(["retention.ms"])) == {"retention.ms"}
    r = client.call(req(33, 2, resources=[{"resource_type": 2, "resource_name": t, "configs": [
        {"name": "segment.bytes", "value": "1048576"}]}], validate_only=False))
    assert int(r.responses[0].error_code) == 0
    d = describe()
    assert d["segment.bytes"] == ("1048576", 1) and d["retention.ms"][1] == 5   # AlterConfigs replaces
    r = client.call(req(44, 1, resources=[{"resource_type": 2, "resource_name": t, "configs": [
        {"name": "retention.ms", "config_operation": 0, "value": "5000"},
        {"name": "segment.bytes", "config_operation": 1, "value": None},
        {"name": "cleanup.policy", "config_operation": 2, "value": "compact"}]}], validate_only=False))
    assert int(r.responses[0].error_code) == 0
    d = describe()
    assert d["retention.ms"] == ("5000", 1) and d["segment.bytes"][1] == 5
    assert sorted(d["cleanup.policy"][0].split(",")) == ["compact", "delete"]
    assert broker.store.topic_config(t).get("retention.ms") == 5000
    r = client.call(req(44, 0, resources=[{"resource_type": 2, "resource_name": t, "configs": [
        {"name": "nope.nope", "config_operation": 0, "value": "1"}]}], validate_only=False))
    assert int(r.responses[0].error_code) == 40
    r = client.call(req(33, 0, resources=[{"resource_type": 2, "resource_name": "no-such-topic-s", "configs": []}],
                        validate_only=False))
    assert int(r.responses[0].error_code) == 3
    # the broker resource is described, read-only
    r = client.call(req(32, 1, resources=[{"resource_type": 4, "resource_name": "0", "configuration_keys": None}],
                        include_synonyms=False))
    cfg = {c.name: c.value for c in r.results[0].configs}
    assert cfg["num.partitions"] == "3" and cfg["log.dirs"]
    r = client.call(req(44, 1, resources=[{"resource_type": 4, "resource_name": "0", "configs": [
        {"name": "num.partitions", "config_operation": 0, "value": "1"}]}], validate_only=False))
    assert int(r.responses[0].error_code) != 0


def test_delete_records(broker, client) -> None:
    t = _topic()
    create(client, t)
    for i in range(5):
        produce(client, t, build_batch([(None, b"%d" % i)]))
    r = client.call(req(21, 2, topics=[{"name": t, "partitions": [{"partition_index": 0, "offset": 3}]}],
                        timeout=5000))
    p = r.topics[0].partitions[0]
    assert int(p.error_code) == 0 and p.low_watermark == 3
    assert list_offset(client, t, -2).offset == 3
    assert int(fetch(client, t, 0).error_code) == 1
    r = client.call(req(21, 0, topics=[{"name": t, "partitions": [{"partition_index": 0, "offset": 99}]}],
                        timeout=5000))
    assert int(r.topics[0].partitions[0].error_code) == 1
    r = client.call(req(21, 1, topics=[{"name": t, "partitions": [{"partition_index": 0, "offset": -1}]}],
                        timeout=5000))
    assert r.topics[0].partitions[0].low_watermark == 5


def test_describe_cluster(broker, client) -> None:
    for v in (0, 1):
        r = client.call(req(60, v, include_cluster_authorized_operations=False, endpoint_type=1))
        assert int(r.error_code) == 0 and r.brokers[0].port == broker.port and r.cluster_id


def test_fetch_response_budget_across_partitions(broker, client) -> None:
    t = _topic()
    create(client, t, partitions=2)
    big = build_batch([(None, b"y" * 4000)])
    produce(client, t, big, partition=0)
    produce(client, t, big, partition=1)
    parts = [{"partition": p, "fetch_offset": 0, "partition_max_bytes": 1 << 20} for p in (0, 1)]
    r = client.call(req(1, 12, max_wait=0, min_bytes=1, max_bytes=5000, isolation_level=0, session_id=0,
                        session_epoch=-1, topics=[{"topic": t, "partitions": parts}], forgotten_topics_data=[],
                        rack_id=""))
    p0, p1 = r.responses[0].partitions
    assert p0.records == broker.store.partition(t, 0).read_bytes(0)   # the first one whole (KIP-74)
    assert not p1.records and p1.high_watermark == 1                  # no partial batch for the second
    r = client.call(req(1, 12, max_wait=0, min_bytes=1, max_bytes=1 << 20, isolation_level=0, session_id=0,
                        session_epoch=-1, topics=[{"topic": t, "partitions": parts}], forgotten_topics_data=[],
                        rack_id=""))
    assert all(len(p.records) == len(big) for p in r.responses[0].partitions)


def test_fetch_answers_a_partition_asked_twice_once_and_caps_max_bytes(tmp_path_factory) -> None:
    """Kafka keys a fetch by partition (a repeated one is answered once, not once per copy: a
    small request could make the broker read a partition's data thousands of times) and caps
    what one answer carries at the broker's fetch.max.bytes, whatever the client's max_bytes."""
    with module_broker(tmp_path_factory, "fetchcap", {"fetch.max.bytes": "4096"}) as b, RawClient(b.port) as c:
        t = _topic()
        create(c, t, partitions=2)
        for p in (0, 1):
            for i in range(8):
                assert int(produce(c, t, build_batch([(b"k", b"%0900d" % i)]), partition=p).error_code) == 0
        parts = [{"partition": p, "fetch_offset": 0, "partition_max_bytes": 1 << 20} for p in (0, 1, 0, 0, 1)]
        r = c.call(req(1, 12, max_wait=0, min_bytes=1, max_bytes=50 << 20, isolation_level=0, session_id=0,
                       session_epoch=-1, topics=[{"topic": t, "topic_id": None, "partitions": parts}],
                       forgotten_topics_data=[], rack_id=""))
        got = r.responses[0].partitions
        assert [int(p.partition_index) for p in got] == [0, 1]
        sizes = [len(p.records or b"") for p in got]
        assert 0 < sum(sizes) <= 4096, sizes      # not 50 MB's worth: 16 batches of ~1 KB exist
        assert [r.value for r in decode_batches(got[0].records)][0] == b"%0900d" % 0
