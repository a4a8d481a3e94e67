"""The produce/fetch data path against unmodified clients (confluent-kafka, kafka-python, aiokafka,
kcat) at its edges, checked against what Apache Kafka does:

- a record batch over the topic's `max.message.bytes`: MESSAGE_TOO_LARGE (10) for every client,
  nothing appended, the same producer goes on;
- fetch limits smaller than one batch (`max.partition.fetch.bytes`, `fetch.max.bytes`): every
  consumer still progresses (KIP-74);
- a position below the log start (after DeleteRecords): OFFSET_OUT_OF_RANGE, then
  `auto.offset.reset` earliest / latest / none as each client documents it;
- `isolation.level=read_committed` on non-transactional data reads everything;
- LogAppendTime topics, null header values, empty vs null keys and values, each client's codec
  read by every other client (kcat `-z` included);
- an idempotent producer whose batch is retried gets the first append's offset and, on a
  LogAppendTime topic, its append time (Kafka answers a duplicate with the original batch's
  timestamp);
- idempotent producers across SIGKILL of the broker: the producer state comes back from the log
  and snapshots, so retried batches are duplicates (not OUT_OF_ORDER_SEQUENCE) and every record
  is stored once, in order;
- 200 partitions, several producer processes with acks 0 / 1 / all: every acked record read
  back once, in per-partition order, keys and values intact.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import subprocess
import time

import pytest

from broker.pytest_plugin import start_broker
from logstore.records import build_batch

from tests.broker_helpers import module_broker
from tests.broker_helpers import unique_topic as _topic
from tests.test_server import RawClient, req

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with module_broker(tmp_path_factory, "qa-datapath", {"group.initial.rebalance.delay.ms": "0"}) as b:
        yield b


def _raw_produce(c: RawClient, topic: str, data: bytes, partition: int = 0, version: int = 9):
    body = req(0, version, transactional_id=None, acks=-1, timeout=5000,
               topic_data=[{"name": topic, "partition_data": [{"index": partition, "records": data}]}])
    return c.call(body).responses[0].partition_responses[0]


def _ck_consume(bs: str, assignments: list[tuple[str, int, int]], n: int, timeout: float = 20.0, **conf) -> list:
    """confluent-kafka: up to `n` messages (or errors) as (partition, offset, key, value, headers, ts, ts type)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bs, "group.id": "qa-unused", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 100, **conf})
    try:
        c.assign([TopicPartition(t, p, o) for t, p, o in assignments])
        got: list = []
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                got.append(("error", m.error().code()))
                continue
            got.append((m.partition(), m.offset(), m.key(), m.value(), m.headers() or [], m.timestamp()[1],
                        m.timestamp()[0]))
        return got
    finally:
        c.close()


def _assign(c, tps: list, start: int | None) -> list:
    """Assign `tps` to the kafka-python or aiokafka consumer `c`, each at offset `start`; returns
    the partitions left to seek to the beginning (all of them when `start` is None)."""
    c.assign(tps)
    if start is None:
        return tps
    for tp in tps:
        c.seek(tp, start)
    return []


def _rows(batches: dict) -> list:
    """A kafka-python or aiokafka poll's records as (partition, offset, key, value, headers, ts, ts type)."""
    return [(tp.partition, m.offset, m.key, m.value, list(m.headers), m.timestamp, m.timestamp_type)
            for tp, msgs in sorted(batches.items()) for m in msgs]


def _kp_consume(bs: str, topic: str, partitions: list[int], start: int | None, n: int, timeout: float = 20.0,
                **conf) -> list:
    """kafka-python: (partition, offset, key, value, headers, ts, ts type); an exception is appended
    as ("error", its class name) and ends the read."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100, **conf)
    try:
        for tp in _assign(c, [TopicPartition(topic, p) for p in partitions], start):
            c.seek_to_beginning(tp)
        got: list = []
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            try:
                batches = c.poll(timeout_ms=200)
            except Exception as e:  # noqa: BLE001 (auto_offset_reset="none" raises from poll)
                got.append(("error", type(e).__name__))
                break
            got += _rows(batches)
        return got
    finally:
        c.close()


def _aio_consume(bs: str, topic: str, partitions: list[int], start: int | None, n: int, timeout: float = 20.0,
                 **conf) -> list:
    """aiokafka, same shape as `_kp_consume`."""
    async def run() -> list:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        c = AIOKafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False, fetch_max_wait_ms=100, **conf)
        await c.start()
        try:
            for tp in _assign(c, [TopicPartition(topic, p) for p in partitions], start):
                await c.seek_to_beginning(tp)
            got: list = []
            deadline = time.monotonic() + timeout
            while len(got) < n and time.monotonic() < deadline:
                try:
                    batches = await c.getmany(timeout_ms=200)
                except Exception as e:  # noqa: BLE001
                    got.append(("error", type(e).__name__))
                    break
                got += _rows(batches)
            return got
        finally:
            await c.stop()
    return asyncio.run(run())


# -- MESSAGE_TOO_LARGE ---------------------------------------------------------------------------------
def test_message_too_large_with_each_client(broker) -> None:
    from confluent_kafka import Producer
    from kafka import KafkaProducer
    from kafka.errors import MessageSizeTooLargeError

    bs = broker.bootstrap
    t = _topic("big")
    broker.store.create_topic(t, 1, config={"max.message.bytes": "4000"})
    lg = broker.store.partition(t, 0)

    reports: list = []
    p = Producer({"bootstrap.servers": bs, "linger.ms": 0, "compression.type": "none"})
    p.produce(t, value=b"x" * 8000, partition=0, on_delivery=lambda e, m: reports.append(e))
    assert p.flush(20) == 0
    p.produce(t, value=b"fits", partition=0, on_delivery=lambda e, m: reports.append(e))
    assert p.flush(20) == 0
    assert reports[0] is not None and reports[0].code() == 10 and reports[1] is None   # MSG_SIZE_TOO_LARGE

    # kafka-python's idempotent producer (its default) turns a non-retriable error fatal, against
    # Kafka as here: without idempotence the same producer goes on
    kp = KafkaProducer(bootstrap_servers=bs, linger_ms=0, enable_idempotence=False)
    with pytest.raises(MessageSizeTooLargeError):
        kp.send(t, b"x" * 8000, partition=0).get(20)
    assert kp.send(t, b"fits", partition=0).get(20).offset == 1
    kp.close()

    async def aio() -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import MessageSizeTooLargeError as AioTooLarge
        ap = AIOKafkaProducer(bootstrap_servers=bs)
        await ap.start()
        try:
            with pytest.raises(AioTooLarge):
                await ap.send_and_wait(t, b"x" * 8000, partition=0)
            assert (await ap.send_and_wait(t, b"fits", partition=0)).offset == 2
        finally:
            await ap.stop()
    asyncio.run(aio())
    assert [r.value for r in lg.read(0)] == [b"fits"] * 3          # nothing of the refused batches


# -- KIP-74: limits smaller than one batch ------------------------------------------------------------
def test_fetch_limits_smaller_than_a_batch_still_progress(broker) -> None:
    bs = broker.bootstrap
    t = _topic("kip74")
    broker.store.create_topic(t, 2)
    expected = {}
    for p in (0, 1):
        lg = broker.store.partition(t, p)
        for i in range(4):
            lg.append([(b"k%d-%d" % (i, j), bytes([65 + i]) * 3000) for j in range(8)])   # ~24 KB batches
        expected[p] = [(r.offset, r.key, r.value) for r in lg.read(0, 1 << 24)]
    n = sum(map(len, expected.values()))

    def check(got: list) -> None:
        assert not [g for g in got if g[0] == "error"], got[:3]
        for p in (0, 1):
            assert [(g[1], g[2], g[3]) for g in got if g[0] == p] == expected[p]

    check(_ck_consume(bs, [(t, 0, 0), (t, 1, 0)], n, **{
        "max.partition.fetch.bytes": 1000, "fetch.max.bytes": 2000, "message.max.bytes": 1000,
        "receive.message.max.bytes": 200_000}))
    check(_kp_consume(bs, t, [0, 1], None, n, max_partition_fetch_bytes=1000, fetch_max_bytes=2000))
    check(_aio_consume(bs, t, [0, 1], None, n, max_partition_fetch_bytes=1000, fetch_max_bytes=2000))


# -- below the log start: OFFSET_OUT_OF_RANGE and auto.offset.reset --------------------------------------
def test_position_below_log_start_resets_as_configured(broker) -> None:
    bs = broker.bootstrap
    t = _topic("oor")
    broker.store.create_topic(t, 1)
    lg = broker.store.partition(t, 0)
    for i in range(30):
        lg.append([(b"k%d" % i, b"v%d" % i)])
    lg.delete_records(20)
    assert (lg.log_start_offset, lg.log_end_offset) == (20, 30)

    got = _ck_consume(bs, [(t, 0, 5)], 3, timeout=10, **{"auto.offset.reset": "earliest"})
    assert [(g[1], g[3]) for g in got] == [(20, b"v20"), (21, b"v21"), (22, b"v22")]
    from confluent_kafka import KafkaError
    got = _ck_consume(bs, [(t, 0, 5)], 1, timeout=10, **{"auto.offset.reset": "error"})
    assert got == [("error", KafkaError._AUTO_OFFSET_RESET)]

    assert [g[1] for g in _kp_consume(bs, t, [0], 5, 10, auto_offset_reset="earliest")] == list(range(20, 30))
    assert _kp_consume(bs, t, [0], 5, 1, auto_offset_reset="none") == [("error", "OffsetOutOfRangeError")]
    assert [g[1] for g in _aio_consume(bs, t, [0], 5, 10, auto_offset_reset="earliest")] == list(range(20, 30))
    assert _aio_consume(bs, t, [0], 5, 1, auto_offset_reset="none") == [("error", "OffsetOutOfRangeError")]

    # latest: the position moves to the log end, and only what comes after is read
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bs, group_id=None, auto_offset_reset="latest", fetch_max_wait_ms=100)
    try:
        tp = TopicPartition(t, 0)
        c.assign([tp])
        c.seek(tp, 5)
        deadline = time.monotonic() + 10
        while c.position(tp) != 30:
            assert c.poll(timeout_ms=200) == {} and time.monotonic() < deadline
        lg.append([(b"k30", b"v30")])
        got = []
        while not got and time.monotonic() < deadline + 10:
            got = [(m.offset, m.value) for ms in c.poll(timeout_ms=200).values() for m in ms]
        assert got == [(30, b"v30")]
    finally:
        c.close()


# -- read_committed on non-transactional data ---------------------------------------------------------------
def test_read_committed_consumers_read_plain_data(broker) -> None:
    bs = broker.bootstrap
    t = _topic("rc")
    broker.store.create_topic(t, 2)
    for p in (0, 1):
        broker.store.partition(t, p).append([(None, b"v%d" % i) for i in range(10)])
    got = _ck_consume(bs, [(t, 0, 0), (t, 1, 0)], 20, **{"isolation.level": "read_committed"})
    assert len(got) == 20 and all(g[0] != "error" for g in got)
    assert len(_kp_consume(bs, t, [0, 1], None, 20, isolation_level="read_committed")) == 20
    assert len(_aio_consume(bs, t, [0, 1], None, 20, isolation_level="read_committed")) == 20


# -- LogAppendTime, null headers, empty vs null, every codec across clients ---------------------------------
def test_each_clients_codecs_read_by_every_client_on_a_log_append_time_topic(broker) -> None:
    from confluent_kafka import Producer
    from kafka import KafkaProducer
    bs = broker.bootstrap
    t = _topic("x")
    broker.store.create_topic(t, 1, config={"message.timestamp.type": "LogAppendTime"})
    lg = broker.store.partition(t, 0)
    old_ts = 1_000_000     # what producers ask for; a LogAppendTime topic replaces it
    expected: list[tuple] = []       # (key, value, headers)
    t0 = int(time.time() * 1000)

    reports: list = []
    for codec in CODECS:
        p = Producer({"bootstrap.servers": bs, "compression.type": codec, "linger.ms": 5})
        for key, value, headers in [(b"", b"", [("h", None), ("e", b"")]), (None, None, []),
                                    (b"ck-" + codec.encode(), b"v" * 300, [("c", codec.encode())])]:
            p.produce(t, key=key, value=value, headers=headers, timestamp=old_ts, partition=0,
                      on_delivery=lambda e, m: reports.append((e, m.timestamp())))
            expected.append((key, value, headers))
        assert p.flush(20) == 0
    assert all(e is None and ts[0] == 2 and ts[1] >= t0 for e, ts in reports)   # TIMESTAMP_LOG_APPEND_TIME

    for codec in CODECS:
        kp = KafkaProducer(bootstrap_servers=bs, compression_type=None if codec == "none" else codec, linger_ms=5)
        for key, value, headers in [(b"", b"", [("e", b"")]), (b"kp-" + codec.encode(), b"w" * 300, [])]:
            md = kp.send(t, key=key, value=value, headers=headers, timestamp_ms=old_ts, partition=0).get(20)
            assert md.timestamp >= t0
            expected.append((key, value, headers))
        kp.close()

    async def aio() -> None:
        from aiokafka import AIOKafkaProducer
        for codec in CODECS:
            ap = AIOKafkaProducer(bootstrap_servers=bs, compression_type=None if codec == "none" else codec)
            await ap.start()
            try:
                for key, value, headers in [(b"", b"", [("h", None)]), (b"aio-" + codec.encode(), b"a" * 300, [])]:
                    md = await ap.send_and_wait(t, key=key, value=value, headers=headers, timestamp_ms=old_ts,
                                                partition=0)
                    assert md.timestamp >= t0 and md.timestamp_type == 1
                    expected.append((key, value, headers))
            finally:
                await ap.stop()
    asyncio.run(aio())

    assert shutil.which("kcat"), "kcat is not installed"
    for codec in CODECS:
        r = subprocess.run(["kcat", "-b", bs, "-P", "-t", t, "-p", "0", "-z", codec, "-K", "\t", "-H", "k=" + codec],
                           input=f"kc-{codec}\tkcat-{codec}\n", capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        expected.append((f"kc-{codec}".encode(), f"kcat-{codec}".encode(), [("k", codec.encode())]))
    t1 = int(time.time() * 1000)

    stored = lg.read(0, 1 << 24)
    assert [(r.key, r.value, [(k, v) for k, v in r.headers]) for r in stored] == expected
    stamps = [r.timestamp for r in stored]
    assert all(t0 <= ts <= t1 for ts in stamps)
    n = len(expected)

    def check(got: list) -> None:
        assert [(g[2], g[3], [(k, None if v is None else bytes(v)) for k, v in g[4]]) for g in got] == expected
        assert [g[1] for g in got] == list(range(n)) and [g[5] for g in got] == stamps

    got = _ck_consume(bs, [(t, 0, 0)], n)
    assert all(g[6] == 2 for g in got)
    check(got)
    got = _kp_consume(bs, t, [0], None, n)
    assert all(g[6] == 1 for g in got)
    check(got)
    got = _aio_consume(bs, t, [0], None, n)
    assert all(g[6] == 1 for g in got)
    check(got)
    r = subprocess.run(["kcat", "-b", bs, "-C", "-t", t, "-p", "0", "-e", "-o", "beginning",
                        "-f", "%o\x1f%K\x1f%S\x1f%h\x1f%T\x1e"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [x.split("\x1f") for x in r.stdout.split("\x1e") if x.strip("\n")]
    assert [int(x[0]) for x in rows] == list(range(n)) and [int(x[4]) for x in rows] == stamps
    # key / value sizes: -1 for null, 0 for empty
    assert [(int(x[1]), int(x[2])) for x in rows] == [
        (-1 if k is None else len(k), -1 if v is None else len(v)) for k, v, _h in expected]


# -- idempotent duplicates ---------------------------------------------------------------------------------
def test_duplicate_batch_on_log_append_time_topic_gets_the_first_append_time(broker) -> None:
    t = _topic("dupl")
    broker.store.create_topic(t, 1, config={"message.timestamp.type": "LogAppendTime"})
    ct = _topic("dupc")
    broker.store.create_topic(ct, 1)
    with RawClient(broker.port) as c:
        pid = c.call(req(22, 4, transactional_id=None, transaction_timeout=60000, producer_id=-1,
                         producer_epoch=-1)).producer_id
        for seq in (0, 1):
            batch = build_batch([(None, b"a%d" % seq)], producer_id=pid, producer_epoch=0, base_sequence=seq,
                                timestamp=1000)
            first = _raw_produce(c, t, batch)
            assert int(first.error_code) == 0 and first.log_append_time is not None
            deadline = time.monotonic() + 5
            while int(time.time() * 1000) <= first.log_append_time.timestamp() * 1000 + 5:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            again = _raw_produce(c, t, batch)          # the retry of a batch whose answer was lost
            assert int(again.error_code) == 0 and again.base_offset == first.base_offset == seq
            assert again.log_append_time == first.log_append_time     # as Kafka: the original batch's time
        assert broker.store.partition(t, 0).log_end_offset == 2
        # CreateTime: -1 (None) both times
        batch = build_batch([(None, b"c")], producer_id=pid, producer_epoch=0, base_sequence=0, timestamp=1000)
        first, again = _raw_produce(c, ct, batch), _raw_produce(c, ct, batch)
        assert first.base_offset == again.base_offset == 0
        assert first.log_append_time is None and again.log_append_time is None


def test_idempotent_producer_state_survives_sigkill(tmp_path) -> None:
    """After kill -9 and a restart, resending any of a producer's last five batches is a duplicate
    answered with its first offsets, the next sequence is appended, and an older one is
    OUT_OF_ORDER_SEQUENCE_NUMBER (45), as Kafka answers from its recovered producer state."""
    b = start_broker(str(tmp_path / "data"), overrides={"offsets.topic.num.partitions": "1"})
    port = b.port
    try:
        t = "idem-kill"
        with RawClient(port) as c:
            r = c.call(req(19, 7, topics=[{"name": t, "num_partitions": 1, "replication_factor": 1,
                                           "assignments": [], "configs": [{"name": "segment.bytes", "value": "2000"}]}],
                           timeout=5000, validate_only=False))
            assert int(r.topics[0].error_code) == 0
            pid = c.call(req(22, 4, transactional_id=None, transaction_timeout=60000, producer_id=-1,
                             producer_epoch=-1)).producer_id
            batches = [build_batch([(b"k", b"v%d-%d" % (i, j)) for j in range(3)], producer_id=pid,
                                   producer_epoch=0, base_sequence=3 * i) for i in range(40)]
            offsets = [_raw_produce(c, t, x).base_offset for x in batches]
            assert offsets == [3 * i for i in range(40)]
        for round_ in range(2):
            b.kill()
            b = start_broker(str(tmp_path / "data"), port=port, overrides={"offsets.topic.num.partitions": "1"})
            with RawClient(port) as c:
                for i in range(len(batches) - 5, len(batches)):
                    r = _raw_produce(c, t, batches[i])
                    assert (int(r.error_code), r.base_offset) == (0, offsets[i]), i
                nxt = build_batch([(b"k", b"next%d" % round_)], producer_id=pid, producer_epoch=0,
                                  base_sequence=120 + round_)
                r = _raw_produce(c, t, nxt)
                assert (int(r.error_code), r.base_offset) == (0, 120 + round_)
                batches.append(nxt)
                offsets.append(r.base_offset)
                assert int(_raw_produce(c, t, batches[10]).error_code) == 45
        with RawClient(port) as c:
            body = req(2, 7, replica_id=-1, isolation_level=0, topics=[
                {"name": t, "partitions": [{"partition_index": 0, "timestamp": -1}]}])
            assert c.call(body).topics[0].partitions[0].offset == 3 * 40 + 2
    finally:
        b.stop()


def _confluent_idempotent_sender(bs: str, topic: str, n: int, partitions: int, q) -> None:
    from confluent_kafka import Producer
    errors: list = []
    acked = [0]

    def cb(err, msg) -> None:
        if err:
            errors.append(str(err))
        else:
            acked[0] += 1

    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "linger.ms": 2, "batch.num.messages": 100,
                  "message.timeout.ms": 60000, "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
                  "retry.backoff.ms": 20})
    for i in range(n):
        while True:
            try:
                p.produce(topic, key=b"k%d" % i, value=b"%d" % i, partition=i % partitions, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.01)
        if i % 200 == 0:
            p.poll(0)
            time.sleep(0.02)      # paced, so the broker can be killed twice while records are in flight
    left = p.flush(60)
    q.put((left, errors[:5], len(errors), acked[0]))


def test_confluent_idempotent_producer_across_sigkill(tmp_path) -> None:
    """librdkafka's idempotent producer keeps sending while the broker is killed twice and restarted:
    no fatal error, every record delivered, stored once and in order."""
    ov = {"offsets.topic.num.partitions": "1", "num.partitions": "3"}
    b = start_broker(str(tmp_path / "data"), overrides=ov)
    port = b.port
    try:
        t, n, parts = "idem-ck", 15000, 3
        with RawClient(port) as c:
            r = c.call(req(19, 7, topics=[{"name": t, "num_partitions": parts, "replication_factor": 1,
                                           "assignments": [], "configs": []}], timeout=5000, validate_only=False))
            assert int(r.topics[0].error_code) == 0
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        proc = ctx.Process(target=_confluent_idempotent_sender, args=(b.bootstrap, t, n, parts, q), daemon=True)
        proc.start()
        try:
            kills = 0
            deadline = time.monotonic() + 40
            while kills < 2 and time.monotonic() < deadline and proc.is_alive():
                # kill once some records are in, while the producer still has more to send
                leo = _end_offsets(port, t, parts)
                if leo is not None and sum(leo) >= (kills + 1) * n // 4:
                    b.kill()
                    kills += 1
                    b = start_broker(str(tmp_path / "data"), port=port, overrides=ov)
                else:
                    time.sleep(0.02)
            left, errors, nerrors, acked = q.get(timeout=90)
        finally:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        assert kills == 2, "the producer finished before the broker could be killed twice"
        assert (left, nerrors, acked) == (0, 0, n), errors
        got = _ck_consume(b.bootstrap, [(t, p, 0) for p in range(parts)], n, timeout=40)
        for p in range(parts):
            values = [int(g[3]) for g in got if g[0] == p]
            assert values == list(range(p, n, parts)), (p, len(values))
    finally:
        b.stop()


def _end_offsets(port: int, topic: str, partitions: int) -> list[int] | None:
    try:
        with RawClient(port, timeout=5) as c:
            body = req(2, 7, replica_id=-1, isolation_level=0, topics=[
                {"name": topic, "partitions": [{"partition_index": p, "timestamp": -1} for p in range(partitions)]}])
            return [int(p.offset) for p in c.call(body).topics[0].partitions]
    except (OSError, ConnectionError):
        return None


# -- many partitions, several producer processes, acks 0 / 1 / all --------------------------------------
PARTS = 200


def _mixed_sender(bs: str, topic: str, ident: int, client: str, acks: str, seconds: float, q,
                  limit: int = 150_000) -> None:
    """Sends for `seconds` (at most `limit` records, so reading them back stays short)."""
    acked: dict[int, list[bytes]] = {}
    errors: list[str] = []
    sent = 0
    end = time.monotonic() + seconds
    if client == "confluent":
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": bs, "acks": acks, "linger.ms": 5, "enable.idempotence": acks == "all"})

        def cb(err, msg) -> None:
            if err:
                errors.append(str(err))
            else:
                acked.setdefault(msg.partition(), []).append(msg.value())

        while time.monotonic() < end and sent < limit:
            v = b"p%d-%d" % (ident, sent)
            try:
                p.produce(topic, key=v[::-1], value=v, partition=sent % PARTS, on_delivery=cb)
                sent += 1
            except BufferError:
                p.poll(0.01)
            if sent % 500 == 0:
                p.poll(0)
        p.flush(60)
    else:
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=bs, acks={"all": "all", "1": 1, "0": 0}[acks], linger_ms=5)
        futs = []
        while time.monotonic() < end and sent < limit:
            v = b"p%d-%d" % (ident, sent)
            futs.append((sent % PARTS, v, p.send(topic, key=v[::-1], value=v, partition=sent % PARTS)))
            sent += 1
            if sent % 1000 == 0:
                time.sleep(0.005)
        p.flush(60)
        for part, v, f in futs:
            try:
                f.get(0)
                acked.setdefault(part, []).append(v)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        p.close()
    q.put((ident, acks, sent, errors[:3], len(errors), acked))


def test_many_partitions_and_producer_processes_every_acked_record_once_in_order(tmp_path) -> None:
    import psutil
    b = start_broker(str(tmp_path / "data"), overrides={"offsets.topic.num.partitions": "1"})
    try:
        t = "many"
        with RawClient(b.port) as c:
            r = c.call(req(19, 7, topics=[{"name": t, "num_partitions": PARTS, "replication_factor": 1,
                                           "assignments": [], "configs": []}], timeout=5000, validate_only=False))
            assert int(r.topics[0].error_code) == 0
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        specs = [(0, "confluent", "all"), (1, "confluent", "1"), (2, "confluent", "0"), (3, "kafka-python", "all")]
        procs = [ctx.Process(target=_mixed_sender, args=(b.bootstrap, t, i, cl, acks, 5.0, q), daemon=True)
                 for i, cl, acks in specs]
        for p in procs:
            p.start()
        broker_proc = psutil.Process(b.pid)
        rss0 = broker_proc.memory_info().rss
        peak = rss0
        results = []
        deadline = time.monotonic() + 120
        while len(results) < len(procs):
            assert time.monotonic() < deadline, "producers did not finish"
            try:
                results.append(q.get(timeout=0.5))
            except Exception:  # noqa: BLE001 (queue.Empty)
                pass
            peak = max(peak, broker_proc.memory_info().rss)
        for p in procs:
            p.join(30)
        assert peak < rss0 + (400 << 20), (rss0, peak)     # bounded: no per-record or per-request growth

        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "qa-unused", "enable.auto.commit": False})
        got: dict[int, list[bytes]] = {}
        total_acked = sum(sum(len(v) for v in r[5].values()) for r in results)
        try:
            c.assign([TopicPartition(t, p, 0) for p in range(PARTS)])
            n = 0
            deadline = time.monotonic() + 60
            while n < total_acked and time.monotonic() < deadline:
                for m in c.consume(5000, 0.5):
                    assert m.error() is None, m.error()
                    assert m.key() == m.value()[::-1]
                    got.setdefault(m.partition(), []).append(m.value())
                    n += 1
        finally:
            c.close()
        for ident, acks, sent, errs, nerr, acked in results:
            assert nerr == 0, (ident, errs)
            assert sum(map(len, acked.values())) == sent > 0
            prefix = b"p%d-" % ident
            for part in range(PARTS):
                mine = [v for v in got.get(part, []) if v.startswith(prefix)]
                # acks=0 has no acknowledgement to hold the broker to, but it still has no duplicates
                assert mine == acked.get(part, []) if acks != "0" else len(set(mine)) == len(mine), (ident, part)
    finally:
        b.stop()


# -- record timestamps: Kafka checks every record, not only the first -------------------------------------
def test_timestamp_before_max_ms_checks_every_record(broker) -> None:
    from confluent_kafka import Producer
    t = _topic("tsb")
    broker.store.create_topic(t, 1, config={"message.timestamp.before.max.ms": "3600000"})
    now = int(time.time() * 1000)
    reports: list = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 200})
    # one batch: a fresh first record, then one two hours old -> Kafka: INVALID_TIMESTAMP (32)
    p.produce(t, value=b"new", timestamp=now, partition=0, on_delivery=lambda e, m: reports.append(e))
    p.produce(t, value=b"old", timestamp=now - 7_200_000, partition=0, on_delivery=lambda e, m: reports.append(e))
    assert p.flush(20) == 0
    assert [e.code() if e else 0 for e in reports] == [32, 32]
    assert broker.store.partition(t, 0).log_end_offset == 0
