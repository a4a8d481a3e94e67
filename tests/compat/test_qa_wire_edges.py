"""Edges of the produce / fetch / list-offsets / metadata path, through raw requests and
unmodified clients (confluent-kafka, kafka-python, aiokafka), checked against Apache Kafka's code
(KafkaApis.handleProduceRequest, ProduceRequest.validateRecords, UnifiedLog, LogValidator):

- what a client may not put in a batch header: more than one batch per partition, zstd below
  Produce v7, a control batch, a baseOffset other than 0, a record count that disagrees with
  lastOffsetDelta, a producer id without a sequence; each refused with Kafka's error, in Kafka's
  order when a batch is wrong in several ways, nothing appended;
- transactional records in a request without a transactional id: the whole request fails with
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED (acks=0: the connection closes);
- max.message.bytes at its exact boundary, lowered and raised at runtime through the admin API,
  seen by each client; a 5 MB record with the limits raised, read by each client with CRC checks
  on and default fetch limits (KIP-74);
- header keys empty, repeated, non-ASCII; null header values; null vs empty key and value, byte
  for byte across clients (kcat's JSON output included);
- message.timestamp.after.max.ms (INVALID_TIMESTAMP), ignored on a LogAppendTime topic;
- ListOffsets MAX_TIMESTAMP with out-of-order and tied timestamps (first record holding the
  largest), a timestamp past the last record (-1);
- invalid topic names, missing topics and partitions with auto.create.topics.enable=false;
  the store's own metadata log is not a topic; a negative fetch offset is OFFSET_OUT_OF_RANGE;
- Fetch with max_bytes 0: only the KIP-74 batch of the first partition with data;
- DeleteRecords: INVALID_TOPIC_EXCEPTION on an internal topic, POLICY_VIOLATION on a compact-only
  topic;
- ApiVersions v3+: a client software name or version outside Kafka's pattern is INVALID_REQUEST;
- many partitions, fetch limits below one batch: every partition is read, none starves.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import time

import pytest

from logstore.records import build_batch, crc32c, decode_batches

from tests.broker_helpers import module_broker
from tests.broker_helpers import unique_topic as _topic
from tests.test_server import RawClient, req


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with module_broker(tmp_path_factory, "qa-wire-edges", {"auto.create.topics.enable": "false"}) as b:
        yield b


def _produce(c: RawClient, topic: str, data: bytes | None, partition: int = 0, acks: int = -1,
             version: int = 9) -> tuple[int, int, str | None]:
    body = req(0, version, transactional_id=None, acks=acks, timeout=5000,
               topic_data=[{"name": topic, "partition_data": [{"index": partition, "records": data}]}])
    p = c.call(body).responses[0].partition_responses[0]
    return int(p.error_code), int(p.base_offset), getattr(p, "error_message", None)


def _fetch(c: RawClient, topic: str, offset: int, partition: int = 0):
    r = c.call(req(1, 12, max_wait=0, min_bytes=1, max_bytes=1 << 20, isolation_level=0, session_id=0,
                   session_epoch=-1, topics=[{"topic": topic, "partitions": [
                       {"partition": partition, "fetch_offset": offset, "partition_max_bytes": 1 << 20}]}],
                   forgotten_topics_data=[], rack_id=""))
    return r.responses[0].partitions[0]


_HEADER_FIELDS = {"base_offset": (0, ">q"), "last_offset_delta": (23, ">i"), "producer_id": (43, ">q"),
                  "base_sequence": (53, ">i"), "record_count": (57, ">i")}


def _rewrite(batch: bytes, *, fix_crc: bool = True, **fields: int) -> bytes:
    """`batch` with header fields replaced; the CRC recomputed unless `fix_crc` is False."""
    b = bytearray(batch)
    for name, value in fields.items():
        pos, fmt = _HEADER_FIELDS[name]
        struct.pack_into(fmt, b, pos, value)
    if fix_crc:
        struct.pack_into(">I", b, 17, crc32c(bytes(b[21:])))
    return bytes(b)


# -- what a client may not write -----------------------------------------------------------------
def test_batch_headers_a_client_may_not_send_are_refused_as_kafka_refuses_them(broker) -> None:
    t = _topic("hdr")
    broker.store.create_topic(t, 1, config={"max.message.bytes": "2000"})
    lg = broker.store.partition(t, 0)
    good = build_batch([(b"k", b"v")])
    big = build_batch([(b"k", b"x" * 3000)])
    with RawClient(broker.port) as c:
        # ProduceRequest.validateRecords: exactly one batch per partition in v3+, zstd only from v7
        for v in (3, 9, 11):
            code, _, msg = _produce(c, t, good + good, version=v)
            assert code == 87, (v, code)                           # INVALID_RECORD
        assert "exactly one record batch" in msg
        zstd = build_batch([(b"k", b"z")], compression="zstd")
        assert [_produce(c, t, zstd, version=v)[0] for v in (3, 4, 5, 6)] == [76] * 4   # UNSUPPORTED_COMPRESSION_TYPE
        assert lg.log_end_offset == 0
        assert _produce(c, t, zstd, version=7)[:2] == (0, 0)

        # LogValidator.validateBatch, origin CLIENT
        control = build_batch([(b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00")], control=True,
                              producer_id=5, producer_epoch=0)
        no_seq = build_batch([(b"k", b"v")], producer_id=9, producer_epoch=0, base_sequence=-1)
        gap = _rewrite(good, last_offset_delta=5)                  # one record claiming six offsets
        no_count = _rewrite(good, record_count=0)
        for bad, words in [(control, "control records"), (no_seq, "Invalid sequence number"),
                           (gap, "Inconsistent batch offset range"), (no_count, "Invalid reported count")]:
            code, base, msg = _produce(c, t, bad)
            assert (code, base) == (87, -1) and words in msg, (words, code, msg)
        # UnifiedLog.analyzeAndValidateRecords: baseOffset 0 is checked first, before size and CRC
        code, _, msg = _produce(c, t, _rewrite(good, base_offset=7))
        assert code == 87 and "should be 0, but it is 7" in msg
        assert _produce(c, t, _rewrite(big, base_offset=7))[0] == 87
        # ... and the size and CRC checks before LogValidator's
        assert _produce(c, t, _rewrite(good, last_offset_delta=5, fix_crc=False))[0] == 2   # CORRUPT_MESSAGE
        assert _produce(c, t, _rewrite(big, last_offset_delta=5))[0] == 10                  # MESSAGE_TOO_LARGE
        assert lg.log_end_offset == 1

        # KafkaApis: an unknown partition first, then the request's record checks, then acks
        assert _produce(c, t, good + good, partition=3)[0] == 3
        assert _produce(c, t, good + good, acks=2)[0] == 87
        assert _produce(c, t, good, acks=2)[0] == 21               # INVALID_REQUIRED_ACKS
        assert _produce(c, "__consumer_offsets", good, acks=2)[0] == 21
        assert _produce(c, "__consumer_offsets", good + good)[0] == 87

        # the same connection goes on, and only the accepted batches were stored
        assert _produce(c, t, good)[:2] == (0, 1)
        p = _fetch(c, t, 0)
        assert [(r.offset, r.value) for r in decode_batches(p.records)] == [(0, b"z"), (1, b"v")]
        assert p.high_watermark == 2


def test_transactional_records_without_a_transactional_id_fail_the_whole_request(broker) -> None:
    t = _topic("txn")
    broker.store.create_topic(t, 2)
    plain = build_batch([(None, b"plain")])
    txn = build_batch([(None, b"txn")], transactional=True, producer_id=77, producer_epoch=0, base_sequence=0)
    body = {"transactional_id": None, "timeout": 5000, "topic_data": [{"name": t, "partition_data": [
        {"index": 0, "records": plain}, {"index": 1, "records": txn}]}]}
    with RawClient(broker.port) as c:
        r = c.call(req(0, 9, acks=-1, **body))
        assert [int(p.error_code) for p in r.responses[0].partition_responses] == [53, 53]
        assert [broker.store.partition(t, p).log_end_offset for p in (0, 1)] == [0, 0]
        c.send(req(0, 9, acks=0, **body))            # no response to carry the error: the connection closes
        assert c.closed_by_peer()
    assert [broker.store.partition(t, p).log_end_offset for p in (0, 1)] == [0, 0]
    with RawClient(broker.port) as c:                # a plain batch of an idempotent producer is fine
        assert _produce(c, t, build_batch([(None, b"idem")], producer_id=78, producer_epoch=0, base_sequence=0),
                        partition=1)[:2] == (0, 0)


# -- max.message.bytes -----------------------------------------------------------------------------
def _alter(bs: str, topic: str, **configs: str) -> None:
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
    a = AdminClient({"bootstrap.servers": bs})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])
    for fut in a.incremental_alter_configs([res]).values():
        fut.result(20)


def test_max_message_bytes_boundary_and_runtime_changes_with_each_client(broker) -> None:
    from confluent_kafka import Producer
    from kafka import KafkaProducer
    from kafka.errors import MessageSizeTooLargeError
    bs = broker.bootstrap
    t = _topic("mmb")
    broker.store.create_topic(t, 2, config={"max.message.bytes": "1000"})
    # the limit is the whole batch's size: equal is accepted, one byte more is not (UnifiedLog)
    pad = 1000 - len(build_batch([(None, b"")], timestamp=1))
    while len(build_batch([(None, b"e" * pad)], timestamp=1)) > 1000:   # the value's length is a varint
        pad -= 1
    with RawClient(broker.port) as c:
        exact = build_batch([(None, b"e" * pad)], timestamp=1)
        assert len(exact) == 1000 and _produce(c, t, exact)[0] == 0
        assert _produce(c, t, build_batch([(None, b"e" * (pad + 1))], timestamp=1))[0] == 10

    _alter(bs, t, max_message_bytes="300")          # lowered at runtime: takes effect at once
    reports: list = []
    p = Producer({"bootstrap.servers": bs, "linger.ms": 0, "compression.type": "none"})
    p.produce(t, b"m" * 500, partition=0, on_delivery=lambda e, m: reports.append((m.partition(), e)))
    p.produce(t, b"small", partition=1, on_delivery=lambda e, m: reports.append((m.partition(), e)))
    assert p.flush(30) == 0
    assert sorted((part, e.code() if e else 0) for part, e in reports) == [(0, 10), (1, 0)]
    kp = KafkaProducer(bootstrap_servers=bs, linger_ms=0, enable_idempotence=False, max_request_size=6 << 20)
    try:
        with pytest.raises(MessageSizeTooLargeError):
            kp.send(t, b"m" * 500, partition=0).get(30)
        assert kp.send(t, b"small", partition=0).get(30).offset == 1

        _alter(bs, t, max_message_bytes=str(6 << 20))  # raised: a 5 MB record now fits
        big = os.urandom(5 << 20)
        assert kp.send(t, big, partition=0).get(60).offset == 2
    finally:
        kp.close()
    reports.clear()
    p = Producer({"bootstrap.servers": bs, "linger.ms": 0, "message.max.bytes": 6 << 20})
    p.produce(t, big[::-1], key=b"ck", partition=0, on_delivery=lambda e, m: reports.append((e, m.offset())))
    assert p.flush(60) == 0 and reports == [(None, 3)]
    assert [r.value for r in broker.store.partition(t, 0).iter_records(0, 1 << 24)] == \
        [b"e" * pad, b"small", big, big[::-1]]

    # each consumer, CRC checks on, default per-partition limit (1 MiB): the 5 MB batch still comes
    # whole (KIP-74), out of the broker by sendfile
    want = [(2, big), (3, big[::-1])]
    assert [(o, v) for o, _k, v, _h in _ck_read(bs, t, 0, 2, 2, **{"check.crcs": True})] == want
    assert [(o, v) for o, _k, v, _h in _kp_read(bs, t, 0, 2, 2, check_crcs=True)] == want
    assert [(o, v) for o, _k, v, _h in _aio_read(bs, t, 0, 2, 2, check_crcs=True)] == want


# -- consumers: (offset, key, value, headers) -----------------------------------------------------
def _ck_read(bs: str, topic: str, partition: int, start: int, n: int, **conf) -> list:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bs, "group.id": "wire-edges", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 100, **conf})
    try:
        c.assign([TopicPartition(topic, partition, start)])
        got: list = []
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None:
                assert m.error() is None, m.error()
                got.append((m.offset(), m.key(), m.value(), [(k, v) for k, v in (m.headers() or [])]))
        return got
    finally:
        c.close()


def _kp_read(bs: str, topic: str, partition: int, start: int, n: int, **conf) -> list:
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100, **conf)
    try:
        tp = TopicPartition(topic, partition)
        c.assign([tp])
        c.seek(tp, start)
        got: list = []
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            got += [(m.offset, m.key, m.value, list(m.headers)) for ms in c.poll(timeout_ms=200).values() for m in ms]
        return got
    finally:
        c.close()


def _aio_read(bs: str, topic: str, partition: int, start: int, n: int, **conf) -> list:
    async def run() -> list:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        c = AIOKafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False, fetch_max_wait_ms=100, **conf)
        await c.start()
        try:
            tp = TopicPartition(topic, partition)
            c.assign([tp])
            c.seek(tp, start)
            got: list = []
            deadline = time.monotonic() + 30
            while len(got) < n and time.monotonic() < deadline:
                got += [(m.offset, m.key, m.value, list(m.headers))
                        for ms in (await c.getmany(timeout_ms=200)).values() for m in ms]
            return got
        finally:
            await c.stop()
    return asyncio.run(run())


# -- headers, null and empty ------------------------------------------------------------------------
HEADERS = [("", b"empty key"), ("dup", b"1"), ("dup", b"2"), ("ключ", b"\x00\xff\x00"), ("nul", None), ("e", b"")]
RECORDS = [(None, b""), (b"", None), (None, None), (b"\x00k", b"\x00v"), (b"k", b"v")]


def test_headers_and_null_vs_empty_round_trip_byte_for_byte_across_clients(broker) -> None:
    from confluent_kafka import Producer
    from kafka import KafkaProducer
    bs = broker.bootstrap
    t = _topic("hdrs")
    broker.store.create_topic(t, 1)
    expected: list = []
    p = Producer({"bootstrap.servers": bs, "linger.ms": 0})
    for key, value in RECORDS:
        p.produce(t, key=key, value=value, headers=HEADERS, partition=0)
        expected.append((key, value, HEADERS))
    assert p.flush(30) == 0
    kp_headers = [(k, v) for k, v in HEADERS if v is not None]   # kafka-python's headers are bytes only
    kp = KafkaProducer(bootstrap_servers=bs, linger_ms=0)
    for key, value in RECORDS:
        if key is None and value is None:
            continue                                                  # kafka-python refuses it in the client
        kp.send(t, key=key, value=value, headers=kp_headers, partition=0).get(30)
        expected.append((key, value, kp_headers))
    kp.close()

    async def aio() -> None:
        from aiokafka import AIOKafkaProducer
        ap = AIOKafkaProducer(bootstrap_servers=bs)
        await ap.start()
        try:
            for key, value in RECORDS:
                if key is None and value is None:
                    continue                                          # as kafka-python, refused in the client
                await ap.send_and_wait(t, key=key, value=value, headers=HEADERS, partition=0)
                expected.append((key, value, HEADERS))
        finally:
            await ap.stop()
    asyncio.run(aio())

    stored = broker.store.partition(t, 0).read(0, 1 << 24)
    assert [(r.key, r.value, list(r.headers)) for r in stored] == expected
    n = len(expected)
    want = [(i, k, v, h) for i, (k, v, h) in enumerate(expected)]
    assert _ck_read(bs, t, 0, 0, n) == want
    assert _kp_read(bs, t, 0, 0, n) == want
    assert _aio_read(bs, t, 0, 0, n) == want
    assert shutil.which("kcat"), "kcat is not installed"
    r = subprocess.run(["kcat", "-b", bs, "-C", "-t", t, "-p", "0", "-e", "-o", "beginning", "-J"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr

    def raw(s: str | None) -> bytes | None:   # kcat -J writes the bytes as they are, escaping only JSON's
        return None if s is None else s.encode("utf-8", "surrogateescape")

    rows = [json.loads(line.decode("utf-8", "surrogateescape")) for line in r.stdout.splitlines() if line.strip()]
    assert [(x["offset"], raw(x["key"]), raw(x["payload"]),
             [(k, raw(v)) for k, v in zip(x["headers"][::2], x["headers"][1::2])]) for x in rows] == want


# -- timestamps ---------------------------------------------------------------------------------------
def test_timestamp_after_max_ms_and_log_append_time_topics(broker) -> None:
    from confluent_kafka import Producer
    from kafka import KafkaProducer
    from kafka.errors import InvalidTimestampError
    bs = broker.bootstrap
    t = _topic("tsa")
    lat = _topic("tsa-lat")
    broker.store.create_topic(t, 1, config={"message.timestamp.after.max.ms": "3600000"})
    broker.store.create_topic(lat, 1, config={"message.timestamp.after.max.ms": "3600000",
                                              "message.timestamp.type": "LogAppendTime"})
    ahead = int(time.time() * 1000) + 7_200_000
    reports: list = []
    p = Producer({"bootstrap.servers": bs, "linger.ms": 0})
    p.produce(t, b"future", timestamp=ahead, partition=0, on_delivery=lambda e, m: reports.append(e))
    assert p.flush(30) == 0                                         # its own batch
    p.produce(t, b"now", partition=0, on_delivery=lambda e, m: reports.append(e))
    # Kafka validates CreateTime only: a LogAppendTime topic stamps the batch and accepts it
    p.produce(lat, b"future", timestamp=ahead, partition=0,
              on_delivery=lambda e, m: reports.append((e, m.timestamp())))
    assert p.flush(30) == 0
    assert reports[0].code() == 32 and reports[1] is None           # INVALID_TIMESTAMP
    err, (ts_type, ts) = reports[2]
    assert err is None and ts_type == 2 and ts < ahead - 3_600_000  # TIMESTAMP_LOG_APPEND_TIME
    kp = KafkaProducer(bootstrap_servers=bs, linger_ms=0, enable_idempotence=False)
    try:
        with pytest.raises(InvalidTimestampError):
            kp.send(t, b"future", timestamp_ms=ahead, partition=0).get(30)
    finally:
        kp.close()
    assert [r.value for r in broker.store.partition(t, 0).read(0)] == [b"now"]
    assert [r.timestamp for r in broker.store.partition(lat, 0).read(0)] == [ts]


def test_list_offsets_max_timestamp_with_out_of_order_and_tied_timestamps(broker) -> None:
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec
    from kafka.admin import KafkaAdminClient
    from kafka.admin import OffsetSpec as KOffsetSpec
    from kafka import TopicPartition as KTP
    bs = broker.bootstrap
    t = _topic("maxts")
    broker.store.create_topic(t, 1)
    lg = broker.store.partition(t, 0)
    # the largest timestamp, 9000, first appears at offset 2 (inside a batch, after a smaller one),
    # again at offsets 3 (same batch) and 5 (a later, compressed batch): Kafka answers the first
    lg.append([(None, b"a", [], 4000), (None, b"b", [], 1000), (None, b"c", [], 9000), (None, b"d", [], 9000)])
    lg.append([(None, b"e", [], 2000), (None, b"f", [], 9000), (None, b"g", [], 3000)], compression="lz4")

    a = AdminClient({"bootstrap.servers": bs})
    tp = TopicPartition(t, 0)

    def ck(spec) -> tuple[int, int]:
        r = a.list_offsets({tp: spec}, request_timeout=20)[tp].result(20)
        return r.offset, r.timestamp

    assert ck(OffsetSpec.max_timestamp()) == (2, 9000)
    assert ck(OffsetSpec.for_timestamp(3500)) == (0, 4000)
    assert ck(OffsetSpec.for_timestamp(9001)) == (-1, -1)       # nothing at or after it
    assert ck(OffsetSpec.earliest())[0] == 0 and ck(OffsetSpec.latest())[0] == 7

    ka = KafkaAdminClient(bootstrap_servers=bs)
    try:
        ktp = KTP(t, 0)
        r = ka.list_partition_offsets({ktp: KOffsetSpec.MAX_TIMESTAMP})[ktp]
        assert (r.offset, r.timestamp) == (2, 9000)
        r = ka.list_partition_offsets({ktp: 9001})[ktp]
        assert r.offset == -1
    finally:
        ka.close()


# -- names, missing topics and partitions ------------------------------------------------------------
def test_invalid_and_missing_topics_with_auto_create_disabled(broker) -> None:
    from confluent_kafka import Producer
    bs = broker.bootstrap
    one = _topic("one")
    broker.store.create_topic(one, 1)
    before = set(broker.store.topics())
    missing = _topic("missing")
    bad_names = ["bad name", "..", "x" * 250]
    reports: dict = {}
    p = Producer({"bootstrap.servers": bs, "message.timeout.ms": 20000, "topic.metadata.propagation.max.ms": 500})
    for name in bad_names + [missing]:
        p.produce(name, b"v", on_delivery=lambda e, m, name=name: reports.setdefault(name, e))
    p.produce(one, b"v", partition=3, on_delivery=lambda e, m: reports.setdefault("p3", e))
    assert p.flush(30) == 0
    # TOPIC_EXCEPTION, UNKNOWN_TOPIC_OR_PART, and librdkafka's own _UNKNOWN_PARTITION
    assert {k: v.code() for k, v in reports.items()} == {**{n: 17 for n in bad_names}, missing: 3, "p3": -190}

    with RawClient(broker.port) as c:
        # Kafka's produce answers UNKNOWN_TOPIC_OR_PARTITION for any name its metadata lacks
        good = build_batch([(None, b"v")])
        for name in bad_names + [missing, "__cluster_metadata"]:
            assert _produce(c, name, good)[0] == 3, name
        assert _produce(c, one, good, partition=3)[0] == 3
        r = c.call(req(3, 12, topics=[{"name": n, "topic_id": None} for n in bad_names + [missing]],
                       allow_auto_topic_creation=True, include_topic_authorized_operations=False))
        assert [int(x.error_code) for x in r.topics] == [17, 17, 17, 3]
        # the store's metadata log is not a topic: not fetched, not listed
        assert int(_fetch(c, "__cluster_metadata", 0).error_code) == 3
        r = c.call(req(2, 9, replica_id=-1, isolation_level=0, topics=[
            {"name": "__cluster_metadata", "partitions": [{"partition_index": 0, "timestamp": -1}]}]))
        assert int(r.topics[0].partitions[0].error_code) == 3
        r = c.call(req(3, 12, topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False))
        assert "__cluster_metadata" not in {x.name for x in r.topics}
        assert int(_fetch(c, one, -5).error_code) == 1             # a negative offset is out of range
    assert set(broker.store.topics()) == before


# -- ApiVersions ---------------------------------------------------------------------------------------
def test_api_versions_checks_the_client_software_name_and_version(broker) -> None:
    """Kafka's ApiVersionsRequest.isValid (v3+): INVALID_REQUEST with no ranges for a name or
    version outside [a-zA-Z0-9](?:[a-zA-Z0-9-.]*[a-zA-Z0-9])?; the connection goes on."""
    with RawClient(broker.port) as c:
        for v in (3, 4):
            for name, ver in [("bad name", "1"), ("x", "1.0-"), ("", "1"), ("-x", "1"), ("x", "1+build")]:
                r = c.call(req(18, v, client_software_name=name, client_software_version=ver))
                assert (int(r.error_code), len(r.api_keys)) == (42, 0), (v, name, ver)
            r = c.call(req(18, v, client_software_name="apache-kafka-java", client_software_version="3.9.0"))
            assert int(r.error_code) == 0 and len(r.api_keys) > 10
        assert int(c.call(req(18, 2)).error_code) == 0               # v0-2 carry no software name


# -- DeleteRecords ---------------------------------------------------------------------------------------
def test_delete_records_refuses_internal_and_compact_only_topics(broker) -> None:
    """Kafka: INVALID_TOPIC_EXCEPTION for an internal topic (committed offsets stay), and
    POLICY_VIOLATION where cleanup.policy lacks delete; compact,delete is fine."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient
    from kafka.admin import KafkaAdminClient
    from kafka.errors import PolicyViolationError
    from kafka import TopicPartition as KTP
    bs = broker.bootstrap
    cmp, both = _topic("cmp"), _topic("cmpdel")
    broker.store.create_topic(cmp, 1, config={"cleanup.policy": "compact"})
    broker.store.create_topic(both, 1, config={"cleanup.policy": "compact,delete"})
    for t in (cmp, both):
        broker.store.partition(t, 0).append([(b"k%d" % i, b"v") for i in range(5)])
    group = _topic("dr-group")
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(both, 0, 4)], asynchronous=False)
    c.close()
    offsets_log = broker.store.partition("__consumer_offsets", 0)
    before = (offsets_log.log_start_offset, offsets_log.log_end_offset)
    assert before[1] > 0

    a = AdminClient({"bootstrap.servers": bs})

    def ck(topic: str, offset: int):
        tp = TopicPartition(topic, 0, offset)
        try:
            return a.delete_records([tp])[tp].result(20).low_watermark
        except KafkaException as e:
            return e.args[0].code()

    assert ck(cmp, 3) == 44                                      # POLICY_VIOLATION
    assert ck("__consumer_offsets", -1) == 17                   # TOPIC_EXCEPTION
    assert ck(both, 3) == 3                                     # the new low watermark
    ka = KafkaAdminClient(bootstrap_servers=bs)
    try:
        with pytest.raises(PolicyViolationError):
            ka.delete_records({KTP(cmp, 0): 2})
    finally:
        ka.close()
    assert broker.store.partition(cmp, 0).log_start_offset == 0
    assert (offsets_log.log_start_offset, offsets_log.log_end_offset) == before
    c = Consumer({"bootstrap.servers": bs, "group.id": group})
    try:
        assert c.committed([TopicPartition(both, 0)], timeout=20)[0].offset == 4
    finally:
        c.close()


# -- many partitions, tiny fetch limits ----------------------------------------------------------------
def test_fetch_max_bytes_zero_is_one_batch_not_unlimited(broker) -> None:
    """Kafka (ReplicaManager.readFromLog) reads with a response limit of 0 as it is: the first
    partition with data gives its first batch (KIP-74), the others nothing."""
    t = _topic("zero")
    broker.store.create_topic(t, 2)
    for part in (0, 1):
        for i in range(3):
            broker.store.partition(t, part).append([(None, b"%d-%d" % (part, i))])
    parts = [{"partition": p, "fetch_offset": 0, "partition_max_bytes": 1 << 20} for p in (0, 1)]
    with RawClient(broker.port) as c:
        for v in (4, 12):
            r = c.call(req(1, v, replica_id=-1, max_wait=0, min_bytes=1, max_bytes=0, isolation_level=0,
                           session_id=0, session_epoch=-1, topics=[{"topic": t, "partitions": parts}],
                           forgotten_topics_data=[], rack_id=""))
            p0, p1 = r.responses[0].partitions
            assert [x.value for x in decode_batches(p0.records)] == [b"0-0"], v
            assert not p1.records and p1.high_watermark == 3, v


def test_many_partitions_with_tiny_fetch_limits_none_starves(broker) -> None:
    bs = broker.bootstrap
    t = _topic("fair")
    n = 24
    broker.store.create_topic(t, n)
    for part in range(n):
        lg = broker.store.partition(t, part)
        for i in range(40 if part == 0 else 3):
            lg.append([(b"%d" % part, b"%d-%d-" % (part, i) + b"x" * 2000)])
    total = 40 + 3 * (n - 1)

    def check(order: list[int], client: str) -> None:
        assert len(order) == total, (client, len(order))
        first_seen = max(order.index(part) for part in range(n))
        # every partition's first record came before most of partition 0's backlog
        assert order[:first_seen].count(0) <= n // 2, (client, order[:first_seen + 1])

    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bs, "group.id": "wire-edges", "enable.auto.commit": False,
                  "fetch.max.bytes": 1000, "message.max.bytes": 1000, "max.partition.fetch.bytes": 1,
                  "fetch.wait.max.ms": 100})
    order: list[int] = []
    try:
        c.assign([TopicPartition(t, part, 0) for part in range(n)])
        deadline = time.monotonic() + 60
        while len(order) < total and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None:
                assert m.error() is None, m.error()
                order.append(m.partition())
    finally:
        c.close()
    check(order, "confluent")

    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    k = KafkaConsumer(bootstrap_servers=bs, group_id=None, fetch_max_bytes=1, max_partition_fetch_bytes=1,
                      fetch_max_wait_ms=100)
    order = []
    try:
        k.assign([KTP(t, part) for part in range(n)])
        k.seek_to_beginning()
        deadline = time.monotonic() + 60
        while len(order) < total and time.monotonic() < deadline:
            for tp, ms in k.poll(timeout_ms=200).items():
                order += [tp.partition] * len(ms)
    finally:
        k.close()
    check(order, "kafka-python")

    async def aio() -> list[int]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka import TopicPartition as ATP
        a = AIOKafkaConsumer(bootstrap_servers=bs, fetch_max_bytes=1, max_partition_fetch_bytes=1,
                             fetch_max_wait_ms=100)
        await a.start()
        got: list[int] = []
        try:
            a.assign([ATP(t, part) for part in range(n)])
            await a.seek_to_beginning()
            deadline = time.monotonic() + 60
            while len(got) < total and time.monotonic() < deadline:
                for tp, ms in (await a.getmany(timeout_ms=200)).items():
                    got += [tp.partition] * len(ms)
        finally:
            await a.stop()
        return got
    check(asyncio.run(aio()), "aiokafka")
