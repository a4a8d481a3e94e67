"""Durability and restart of `logstore serve` under real SIGKILLs, seen through real Kafka clients.

Every test runs the broker as a child process (broker.pytest_plugin.start_broker) on a free port
of 127.0.0.1 with its log dir in tmp_path, kills it with SIGKILL and restarts it on the same port
and dir, and checks with unmodified clients (confluent-kafka, aiokafka) or, where a
producer's exact retries matter, hand-built requests (tests/test_server.RawClient):

- an idempotent producer's retry after a restart stays a duplicate (answered with the first
  offset, nothing appended) even when other producers rolled segments before the retry came;
- producer snapshots left by a roll above a lost tail (a power cut after the kill: the snapshot
  is fsynced at the roll, the sealed data later) are not trusted once new data passes them: a
  retry of a lost batch is never answered as stored at an offset that holds another record;
- CreateTopics / DeleteTopics / CreatePartitions from confluent-kafka's AdminClient while the
  broker is SIGKILLed: after each restart the topic set is one the acknowledged operations allow,
  every listed partition takes and serves records, a deleted topic can be created again and holds
  none of the old topic's records;
- DeleteRecords, then the topic deleted and created again: the new topic starts at offset 0, and
  its acknowledged records survive a SIGKILL (the old topic's log start offset must not come back
  from the checkpoints);
- SIGKILL at random moments of start-up (recovery of torn tails, index rebuilds, group loading),
  several times in a row: the next start serves every acknowledged record, an aiokafka group
  member resumes exactly at the committed offsets, and the idempotent producer carries on;
- aiokafka's idempotent acks=all producer on a topic with `flush.messages=1` and tiny segments (a
  roll every few batches) while the broker is SIGKILLed: every acknowledged record once, in order;
- a second `logstore serve` on a running broker's log dir exits non-zero at once with one line
  naming the dir and the owner's pid, changes no file, and the first broker serves on;
- DeleteTopics and CreateTopics of one name running at once (a client pipelining them): the new
  topic gets empty partitions of its own that survive a reopen (store level, the race made
  certain with tests/crash/faultfs.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import sys
import threading
import time

import pytest

from broker.pytest_plugin import BrokerProcess, free_port, start_broker
from logstore import records as R

from tests.test_server import RawClient, req

QUIET = {"log_level": 3}  # librdkafka: errors only (every kill logs connection failures otherwise)


# -- helpers -----------------------------------------------------------------------------------------
def wait_until(pred, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def raw_create_topic(port: int, name: str, partitions: int = 1, configs: dict | None = None) -> None:
    with RawClient(port) as c:
        r = c.call(req(19, 7, topics=[{"name": name, "num_partitions": partitions, "replication_factor": 1,
                                       "assignments": [], "configs": [{"name": k, "value": v}
                                                                      for k, v in (configs or {}).items()]}],
                       timeout=10000, validate_only=False))
        assert int(r.topics[0].error_code) == 0, r.topics[0]


def init_producer_id(c: RawClient) -> int:
    r = c.call(req(22, 4, transactional_id=None, transaction_timeout=60000, producer_id=-1, producer_epoch=-1))
    assert int(r.error_code) == 0
    return int(r.producer_id)


def raw_produce(c: RawClient, topic: str, data: bytes, partition: int = 0) -> tuple[int, int]:
    """(error code, base offset) of an acks=all Produce v9 of `data` (record batches)."""
    body = req(0, 9, transactional_id=None, acks=-1, timeout=10000,
               topic_data=[{"name": topic, "partition_data": [{"index": partition, "records": data}]}])
    r = c.call(body).responses[0].partition_responses[0]
    return int(r.error_code), int(r.base_offset)


def end_offsets(port: int, topic: str, partitions: int, earliest: bool = False) -> list[int]:
    """ListOffsets: the log end offsets (or, `earliest`, the log start offsets) of a topic."""
    ts = -2 if earliest else -1
    with RawClient(port, timeout=10) as c:
        body = req(2, 7, replica_id=-1, isolation_level=0, topics=[
            {"name": topic, "partitions": [{"partition_index": p, "timestamp": ts} for p in range(partitions)]}])
        parts = c.call(body).topics[0].partitions
        assert all(int(p.error_code) == 0 for p in parts), parts
        return [int(p.offset) for p in parts]


def fetch_records(port: int, topic: str, partition: int, start: int = 0) -> list[R.Record]:
    """Every record of a partition from `start` up to the high watermark (Fetch v11, raw)."""
    out: list[R.Record] = []
    offset = start
    with RawClient(port, timeout=20) as c:
        while True:
            body = req(1, 11, replica_id=-1, max_wait=0, min_bytes=0, max_bytes=8 << 20, isolation_level=0,
                       session_id=0, session_epoch=-1, topics=[{"topic": topic, "partitions": [
                           {"partition": partition, "current_leader_epoch": -1, "fetch_offset": offset,
                            "log_start_offset": -1, "partition_max_bytes": 8 << 20}]}],
                       forgotten_topics_data=[], rack_id="")
            pr = c.call(body).responses[0].partitions[0]
            assert int(pr.error_code) == 0, f"fetch {topic}-{partition}@{offset}: error {pr.error_code}"
            hw = int(pr.high_watermark)
            if offset >= hw:
                return out
            got = [r for r in R.decode_batches(bytes(pr.records or b"")) if r.offset >= offset]
            assert got, f"fetch of {topic}-{partition} at {offset} below the high watermark {hw} returned nothing"
            out += got
            offset = got[-1].offset + 1


def restart(b: BrokerProcess, overrides: dict | None = None) -> BrokerProcess:
    """SIGKILL `b` and start a broker on the same dir and port."""
    b.kill()
    return start_broker(b.data_dir, port=b.port, overrides=overrides)


# -- idempotent producer state across SIGKILL ------------------------------------------------------------
def test_idempotent_retry_after_restart_stays_a_duplicate_when_other_producers_rolled_segments(tmp_path):
    """A producer's batches are appended, the broker is SIGKILLed before the producer hears of the
    last ones, and after the restart other (non-idempotent) producers fill and roll a few segments
    before the retries arrive, as happens when they reconnect first. Kafka rebuilds the state of
    every producer in the log at load, so a retry is a duplicate answered with its first offset.
    Here the state loads lazily; the first rolls must not push the retried batches out of what
    that load scans. Two partitions: on `after-append` the kill comes after the last append; on
    `inside-a-roll` it lands in a roll, after the new (empty) segment was created and before its
    producer snapshot was written (reproduced after the kill by removing the snapshot and the
    batch that came after the roll), so the restart finds an empty last segment and no snapshot."""
    from confluent_kafka import Producer

    ov = {"offsets.topic.num.partitions": "1"}
    b = start_broker(str(tmp_path / "data"), overrides=ov)
    cases = {0: "after-append", 1: "inside-a-roll"}
    try:
        t = "dup-after-roll"
        raw_create_topic(b.port, t, 2, {"segment.bytes": "2048"})
        batches: dict[int, list[bytes]] = {}
        with RawClient(b.port) as c:
            for part in cases:
                pid = init_producer_id(c)
                batches[part] = [R.build_batch([(b"idem", b"idem-%d" % i)], producer_id=pid, producer_epoch=0,
                                               base_sequence=i) for i in range(6)]
                assert [raw_produce(c, t, x, part) for x in batches[part][:5]] == [(0, i) for i in range(5)]
            assert raw_produce(c, t, R.build_batch([(None, b"z" * 1900)]), 1) == (0, 5)  # rolls at 5
        b.kill()
        rolled = os.path.join(b.data_dir, f"{t}-1")
        assert os.path.exists(os.path.join(rolled, f"{5:020d}.log"))
        for f in os.listdir(rolled):
            if f.endswith(".snapshot"):
                os.unlink(os.path.join(rolled, f))
        os.truncate(os.path.join(rolled, f"{5:020d}.log"), 0)
        b = start_broker(b.data_dir, port=b.port, overrides=ov)
        assert end_offsets(b.port, t, 2) == [5, 5]
        p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": False, "acks": "all",
                      "linger.ms": 0, **QUIET})
        for i in range(60):  # 60 x ~100 bytes, a batch each: three or more rolls of 2 KiB segments
            for part in cases:
                p.produce(t, value=b"other-%03d-" % i + b"x" * 64, partition=part)
            p.flush(10)
        assert p.flush(10) == 0
        assert end_offsets(b.port, t, 2) == [65, 65]
        for part, case in cases.items():
            assert len([f for f in os.listdir(os.path.join(b.data_dir, f"{t}-{part}")) if f.endswith(".log")]) >= 3
            with RawClient(b.port) as c:
                for i in (3, 4):  # the retries (max.in.flight 5: any of the last five may come back)
                    assert raw_produce(c, t, batches[part][i], part) == (0, i), \
                        f"{case}: the retry of sequence {i} after the restart"
                assert end_offsets(b.port, t, 2)[part] == 65, f"{case}: a retried batch was appended twice"
                assert raw_produce(c, t, batches[part][5], part) == (0, 65), case
            values = [r.value for r in fetch_records(b.port, t, part)]
            assert [v for v in values if v.startswith(b"idem")] == [b"idem-%d" % i for i in range(6)], case
    finally:
        b.stop()


def _cut_after(part_dir: str, keep: int) -> int:
    """Simulate the power cut that follows a SIGKILL of a broker that had not yet fsynced its tail:
    keep the first `keep` batches of the partition, tear the next one in half and drop every later
    segment (data and indexes). Producer snapshots stay: they were fsynced at the rolls. Returns
    the number of records kept."""
    logs = sorted(f for f in os.listdir(part_dir) if f.endswith(".log"))
    seen = 0
    kept_records = 0
    cut_done = False
    for name in logs:
        path = os.path.join(part_dir, name)
        if cut_done:
            for ext in (".log", ".index", ".timeindex"):
                p = path[: -len(".log")] + ext
                if os.path.exists(p):
                    os.unlink(p)
            continue
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            h = R.read_header(data, pos)
            if seen == keep:
                os.truncate(path, pos + h.size // 2)
                cut_done = True
                break
            seen += 1
            kept_records += h.record_count
            pos += h.size
    assert cut_done
    return kept_records


def test_producer_snapshot_above_a_lost_tail_is_not_trusted_later(tmp_path):
    """A roll fsyncs `<offset>.snapshot` before the sealed segment's data (that flush is deferred),
    so a power cut after a SIGKILL can keep a snapshot of records the log lost. Recovery cuts the
    log below it. A non-idempotent producer then carries the log end past the snapshot's offset
    (without a roll) before the idempotent producer's retries come. The snapshot must not be taken
    for the state of the recovered log (Kafka's loader deletes snapshots above the recovered log
    end): a retry of a lost batch must never be answered as stored at an offset that holds another
    producer's record; OUT_OF_ORDER_SEQUENCE_NUMBER tells the producer of the loss, as Kafka does."""
    from confluent_kafka import Producer

    ov = {"offsets.topic.num.partitions": "1"}
    b = start_broker(str(tmp_path / "data"), overrides=ov)
    try:
        t = "stale-snap"
        raw_create_topic(b.port, t, 1, {"segment.bytes": "2048"})
        with RawClient(b.port) as c:
            pid = init_producer_id(c)
            batches = [R.build_batch([(b"idem", b"idem-%02d-" % i + b"y" * 40)], producer_id=pid,
                                     producer_epoch=0, base_sequence=i) for i in range(50)]
            assert [raw_produce(c, t, x) for x in batches] == [(0, i) for i in range(50)]
        b.kill()
        part = os.path.join(b.data_dir, f"{t}-0")
        snaps = sorted(int(f.split(".")[0]) for f in os.listdir(part) if f.endswith(".snapshot"))
        bases = sorted(int(f.split(".")[0]) for f in os.listdir(part) if f.endswith(".log"))
        assert len(snaps) >= 2 and snaps[-1] in bases, (snaps, bases)
        stale = snaps[-1]
        prev = bases[bases.index(stale) - 1]  # the segment the snapshot sealed: the cut goes there
        keep = prev + 3
        assert _cut_after(part, keep) == keep  # one record per batch: offsets = batch numbers
        b = start_broker(b.data_dir, port=b.port, overrides=ov)
        assert end_offsets(b.port, t, 1)[0] == keep
        # one batch of small records: the log end passes the stale snapshot inside the same segment
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 200, **QUIET})
        for i in range(stale + 5 - keep):
            p.produce(t, value=b"o%d" % i, partition=0)
        assert p.flush(20) == 0
        leo = end_offsets(b.port, t, 1)[0]
        assert leo == stale + 5
        assert sorted(int(f.split(".")[0]) for f in os.listdir(part) if f.endswith(".log"))[-1] == prev, \
            "the fill rolled a segment: the test no longer covers a log end passing the snapshot unloaded"
        with RawClient(b.port) as c:  # the producer's last batches before that roll, retried
            answers = {i: raw_produce(c, t, batches[i]) for i in range(stale - 5, stale)}
        by_offset = {r.offset: r.value for r in fetch_records(b.port, t, 0)}
        for i, (err, off) in answers.items():
            if err == 0:
                assert by_offset.get(off, b"").startswith(b"idem-%02d-" % i), (
                    f"the retry of sequence {i} was answered as stored at offset {off}, which holds "
                    f"{by_offset.get(off)!r}")
            else:
                assert err == 45, (i, err)  # OUT_OF_ORDER_SEQUENCE_NUMBER: the producer learns of the loss
    finally:
        b.stop()


# -- topic metadata operations cut by SIGKILL -------------------------------------------------------------
class TopicModel:
    """The states (None: absent, or a partition count) a topic may be in after a sequence of
    admin operations whose answers were seen; an operation without a definite answer may or may
    not have happened. `apply` raises AssertionError when an answer contradicts every state."""

    def __init__(self) -> None:
        self.possible: set[int | None] = {None}
        self.last_create_gen = -1   # generation of the last create the broker acknowledged

    def apply(self, name: str, op: str, n: int | None, code: int | None, gen: int) -> None:
        before = set(self.possible)
        present = {s for s in before if s is not None}
        if op == "create":
            if code == 0:
                assert None in before, f"create {name} succeeded, but it existed ({before})"
                self.possible = {n}
                self.last_create_gen = gen
            elif code == 36:
                assert present, f"create {name}: TOPIC_ALREADY_EXISTS, but it was absent"
                self.possible = present
            elif code is None:
                self.possible = before | {n}
        elif op == "delete":
            if code == 0:
                assert present, f"delete {name} succeeded, but it was absent"
                self.possible = {None}
            elif code == 3:
                assert None in before, f"delete {name}: UNKNOWN_TOPIC_OR_PARTITION, but it existed ({before})"
                self.possible = {None}
            elif code is None:
                self.possible = before | {None}
        elif op == "grow":
            if code == 0:
                assert any(s < n for s in present), f"grow {name} to {n} succeeded from {before}"
                self.possible = {n}
            elif code == 37:
                assert any(s >= n for s in present), f"grow {name} to {n}: INVALID_PARTITIONS from {before}"
                self.possible = {s for s in present if s >= n}
            elif code == 3:
                assert None in before, f"grow {name}: UNKNOWN_TOPIC_OR_PARTITION, but it existed ({before})"
                self.possible = {None}
            elif code is None:
                self.possible = before | {n for s in present if s < n}


_DEFINITE = {0, 3, 36, 37}


class AdminChurn(threading.Thread):
    """Creates, deletes and grows its own topics with confluent-kafka's AdminClient, one operation
    at a time; after each acknowledged create, an acks=all record tagged with the create's
    generation goes to partition 0. Pauses between operations when `pause` is set."""

    def __init__(self, ident: int, bootstrap: str, pause: threading.Event, stop: threading.Event):
        super().__init__(daemon=True, name=f"admin-churn-{ident}")
        self.num, self.bootstrap, self.pause, self.stop_ev = ident, bootstrap, pause, stop
        self.names = [f"churn{ident}-{i}" for i in range(4)]
        self.models = {n: TopicModel() for n in self.names}
        self.idle = threading.Event()
        self.ops = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        from confluent_kafka import KafkaException, Producer
        from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
        rng = random.Random(self.num)
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 5000,
                             "reconnect.backoff.max.ms": 200, **QUIET})
        prod = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "message.timeout.ms": 4000,
                         "reconnect.backoff.max.ms": 200, "linger.ms": 0, **QUIET})
        gen = 0
        try:
            while not self.stop_ev.is_set():
                if self.pause.is_set():
                    self.idle.set()
                    time.sleep(0.02)
                    continue
                self.idle.clear()
                name = rng.choice(self.names)
                op = rng.choice(["create", "create", "delete", "grow"])
                n = rng.randint(1, 3) if op == "create" else rng.randint(2, 6) if op == "grow" else None
                gen += 1
                try:
                    if op == "create":
                        fut = admin.create_topics([NewTopic(name, n, 1)], operation_timeout=5, request_timeout=8)[name]
                    elif op == "delete":
                        fut = admin.delete_topics([name], operation_timeout=5, request_timeout=8)[name]
                    else:
                        fut = admin.create_partitions([NewPartitions(name, n)], operation_timeout=5,
                                                      request_timeout=8)[name]
                    fut.result(15)
                    code: int | None = 0
                except KafkaException as e:
                    code = e.args[0].code()
                    code = code if code in _DEFINITE else None
                self.models[name].apply(name, op, n, code, gen)
                self.ops += 1
                if op == "create" and code == 0:
                    give_up = time.monotonic() + 5
                    while True:
                        try:
                            prod.produce(name, value=f"{name}:{gen}".encode(), partition=0)
                            break
                        except KafkaException:  # librdkafka still has it cached as deleted
                            if time.monotonic() > give_up:
                                break           # no marker this time: the checks do without
                            prod.poll(0.1)
                    if prod.flush(8) != 0:   # a kill: whether it landed is unknown, never later
                        prod.purge()
                        prod.flush(1)
        except BaseException as e:  # noqa: BLE001 (surfaced by the test)
            self.failure = e
        finally:
            self.idle.set()


def _check_topics(b: BrokerProcess, churns: list[AdminChurn]) -> dict[str, int]:
    """The broker's topic set against the models; every partition of every topic takes a record
    and serves it back; no record of an earlier incarnation of a topic is served."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    md = AdminClient({"bootstrap.servers": b.bootstrap, **QUIET}).list_topics(timeout=15)
    topics = {t: len(m.partitions) for t, m in md.topics.items() if not t.startswith("__")}
    for c in churns:
        for name, model in c.models.items():
            assert topics.get(name) in model.possible, (
                f"after SIGKILLs, topic {name} is {topics.get(name)} partitions; the acknowledged "
                f"operations allow only {model.possible}")
    models = {name: m for c in churns for name, m in c.models.items()}
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "message.timeout.ms": 10000, **QUIET})
    failed: list = []
    for t, n in topics.items():
        for i in range(n):  # tagged with the generation of the topic's last acknowledged create
            p.produce(t, value=b"probe:%d" % models[t].last_create_gen, partition=i,
                      on_delivery=lambda err, msg: failed.append((msg.topic(), msg.partition(), err)) if err else None)
    assert p.flush(30) == 0 and not failed, f"topics that exist but cannot be produced to: {failed}"
    for t, n in topics.items():
        for i in range(n):
            values = [r.value for r in fetch_records(b.port, t, i)]
            assert values and values[-1] == b"probe:%d" % models[t].last_create_gen, (t, i, values)
            old = [v for v in values if int(v.split(b":")[1]) < models[t].last_create_gen]
            assert not old, f"{t}-{i} serves records of a deleted incarnation of the topic: {old}"
    return topics


def run_admin_churn(tmp_path, kills: int, epochs: int) -> dict:
    ov = {"offsets.topic.num.partitions": "1", "auto.create.topics.enable": "false"}
    b = start_broker(str(tmp_path / "data"), overrides=ov)
    pause, stop = threading.Event(), threading.Event()
    churns = [AdminChurn(i, b.bootstrap, pause, stop) for i in range(2)]
    rng = random.Random(7)
    logs: list[str] = []
    try:
        for c in churns:
            c.start()
        for epoch in range(epochs):
            for _ in range(kills):
                wait_until(lambda: all(c.ops for c in churns) or any(c.failure for c in churns), 30,
                           "admin operations")
                time.sleep(rng.uniform(0.05, 0.6))   # a random moment of the churn, not a condition
                logs.append(b.log())
                b = restart(b, ov)
                for c in churns:
                    assert c.failure is None, f"{c.name}: {c.failure!r}"
                    c.ops = 0
            pause.set()
            wait_until(lambda: all(c.idle.is_set() for c in churns), 60, "the admin threads to pause")
            topics = _check_topics(b, churns)   # the broker restarted after the last random kill
            pause.clear()
        stop.set()
        for c in churns:
            c.join(60)
            assert c.failure is None, f"{c.name}: {c.failure!r}"
        # deletions acknowledged before a SIGKILL stay done, and every name can be created again,
        # empty
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": b.bootstrap, **QUIET})
        names = [n for c in churns for n in c.names]
        for n, fut in admin.delete_topics([n for n in names if n in topics], operation_timeout=10).items():
            fut.result(20)
        logs.append(b.log())
        b = restart(b, ov)
        admin = AdminClient({"bootstrap.servers": b.bootstrap, **QUIET})
        left = {t for t in admin.list_topics(timeout=15).topics if not t.startswith("__")}
        assert not left, f"topics deleted before the SIGKILL are back: {left}"
        for n, fut in admin.create_topics([NewTopic(n, 2, 1) for n in names], operation_timeout=10).items():
            fut.result(20)
        assert all(end_offsets(b.port, n, 2) == [0, 0] for n in names), "a re-created topic is not empty"
        logs.append(b.log())
        adopted = [line for text in logs for line in text.splitlines() if "adopted partition directory" in line]
        assert not adopted, f"partition directories without a metadata record after a SIGKILL: {adopted[:3]}"
        return {"ops": sum(len(c.models) for c in churns), "restarts": len(logs)}
    finally:
        stop.set()
        pause.clear()
        b.stop()


def test_sigkill_during_topic_admin_keeps_the_topic_set_consistent(tmp_path):
    run_admin_churn(tmp_path, kills=2, epochs=1)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sigkill_during_topic_admin_long(tmp_path):
    run_admin_churn(tmp_path, kills=6, epochs=5)


# -- aiokafka idempotent producer, flush.messages=1, a roll every few batches ------------------------------
def _aio_send(bootstrap: str, topic: str, n: int, parts: int, out: dict) -> None:
    """aiokafka's idempotent acks=all producer sends `n` keyed records round-robin over `parts`
    partitions; `out` gets {partition: [(offset, value)]} of the acknowledged ones and the errors."""
    async def run() -> None:
        from aiokafka import AIOKafkaProducer
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=2,
                             request_timeout_ms=15000, retry_backoff_ms=50, max_batch_size=512)
        await p.start()
        futs = []
        try:
            for i in range(n):
                v = b"aio-%05d" % i
                for _attempt in range(600):  # send() itself fails while the broker is down
                    try:
                        futs.append((i % parts, v, await p.send(topic, key=v, value=v, partition=i % parts)))
                        break
                    except Exception:  # noqa: BLE001
                        await asyncio.sleep(0.05)
                else:
                    out["errors"].append(f"{v!r} could not be sent")
                if i % 20 == 0:
                    await asyncio.sleep(0.005)  # paced: records stay in flight across the kills
            for part, v, f in futs:
                try:
                    out["acked"].setdefault(part, []).append(((await f).offset, v))
                except Exception as e:  # noqa: BLE001
                    out["errors"].append(repr(e))
        finally:
            await p.stop()

    try:
        asyncio.run(run())
    except BaseException as e:  # noqa: BLE001
        out["errors"].append(repr(e))


def run_aio_kills(tmp_path, n: int, kills: int) -> dict:
    ov = {"offsets.topic.num.partitions": "1"}
    b = start_broker(str(tmp_path / "data"), overrides=ov)
    t, parts = "aio-roll", 2
    try:
        raw_create_topic(b.port, t, parts, {"flush.messages": "1", "segment.bytes": "1024"})
        out: dict = {"acked": {}, "errors": []}
        sender = threading.Thread(target=_aio_send, args=(b.bootstrap, t, n, parts, out), daemon=True)
        sender.start()
        done = 0
        deadline = time.monotonic() + 120
        while done < kills:
            assert time.monotonic() < deadline, f"only {done} of {kills} kills: the producer made no progress"
            assert sender.is_alive(), f"the producer finished before kill {done + 1}: {out['errors'][:3]}"
            try:
                leo = sum(end_offsets(b.port, t, parts))
            except (OSError, ConnectionError, AssertionError):
                leo = 0
            if leo >= (done + 1) * n // (kills + 2):
                b = restart(b, ov)
                done += 1
            else:
                time.sleep(0.02)
        sender.join(180)
        assert not sender.is_alive(), "the producer did not finish"
        assert not out["errors"], out["errors"][:5]
        b = restart(b, ov)   # the last acknowledged records survive one more kill
        for part in range(parts):
            acked = out["acked"][part]
            stored = [(r.offset, r.value) for r in fetch_records(b.port, t, part)]
            assert stored == sorted(acked), (
                f"partition {part}: {len(acked)} acknowledged, {len(stored)} stored; first difference at "
                f"{next((x for x in zip(stored, sorted(acked)) if x[0] != x[1]), None)}")
            values = [v for _, v in stored]
            assert values == sorted(values), f"partition {part}: records out of the producer's order"
        segs = len([f for f in os.listdir(os.path.join(b.data_dir, f"{t}-0")) if f.endswith(".log")])
        assert segs > 5, f"only {segs} segments: the kills did not come among rolls"
        return {"records": n, "kills": kills + 1, "segments": segs}
    finally:
        b.stop()


def test_aiokafka_idempotent_producer_across_sigkill_with_flush_per_message_and_tiny_segments(tmp_path):
    run_aio_kills(tmp_path, n=600, kills=2)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_aiokafka_idempotent_producer_across_sigkill_long(tmp_path):
    run_aio_kills(tmp_path, n=8000, kills=10)


# -- a second broker on a running broker's log dir -----------------------------------------------------
def _tree_digest(root: str) -> dict[str, str]:
    out = {}
    for d, _dirs, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_second_broker_on_the_same_log_dir_exits_at_once_and_touches_nothing(tmp_path):
    """Kafka refuses a second broker on a log dir in use (its `.lock`); here too: `logstore serve`
    on a running broker's dir (another port) exits non-zero within seconds
    with one line naming the dir and the owner's pid, changes no file, and the first broker keeps
    serving every record, old and new."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    ov = {"offsets.topic.num.partitions": "1"}
    a = start_broker(str(tmp_path / "data"), overrides=ov)
    try:
        raw_create_topic(a.port, "owned", 1)
        p = Producer({"bootstrap.servers": a.bootstrap, "acks": "all", "linger.ms": 1, **QUIET})
        for i in range(50):
            p.produce("owned", value=b"r%d" % i, partition=0)
        assert p.flush(20) == 0
        c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "owner", "enable.auto.commit": False, **QUIET})
        c.commit(offsets=[TopicPartition("owned", 0, 20)], asynchronous=False)
        c.close()
        # the first broker is idle now: nothing it does on its own changes files within seconds
        before = _tree_digest(a.data_dir)
        for port in (free_port(),):
            cmd = [sys.executable, "-m", "broker.cli", "serve", "--override", f"listeners=PLAINTEXT://127.0.0.1:{port}",
                   "--override", f"log.dirs={a.data_dir}"] + [x for k, v in ov.items() for x in ("--override", f"{k}={v}")]
            started = time.monotonic()
            second = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=os.getcwd())
            took = time.monotonic() - started
            assert second.returncode != 0, (second.returncode, second.stdout, second.stderr)
            assert "listening on" not in second.stdout
            lines = [line for line in second.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
            assert a.data_dir in lines[0] and "already open" in lines[0] and f"pid {a.pid}" in lines[0], lines[0]
            assert took < 30, f"the second broker took {took:.1f}s to give up"
        assert _tree_digest(a.data_dir) == before, "the refused second broker changed files of the log dir"
        assert a.alive()
        with open(os.path.join(a.data_dir, ".lock")) as f:
            assert f.read().strip() == str(a.pid)
        for i in range(50, 60):
            p.produce("owned", value=b"r%d" % i, partition=0)
        assert p.flush(20) == 0
        assert [r.value for r in fetch_records(a.port, "owned", 0)] == [b"r%d" % i for i in range(60)]
        c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "owner", **QUIET})
        assert [tp.offset for tp in c.committed([TopicPartition("owned", 0)], timeout=15)] == [20]
        c.close()
    finally:
        a.stop()


# -- SIGKILL during start-up, again and again ------------------------------------------------------------
def run_startup_kills(tmp_path, attempts: int, seed: int) -> dict:
    from confluent_kafka import Consumer, Producer, TopicPartition

    ov = {"offsets.topic.num.partitions": "1", "group.initial.rebalance.delay.ms": "0"}
    t, parts, n = "boot", 4, 2000
    t0 = time.monotonic()
    b = start_broker(str(tmp_path / "data"), overrides=ov)
    start_s = time.monotonic() - t0
    acked: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(parts)}
    try:
        raw_create_topic(b.port, t, parts, {"segment.bytes": "8192"})
        p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 5,
                      "batch.size": 4096,  # small batches: kills land among many rolls
                      "reconnect.backoff.max.ms": 100, **QUIET})

        def cb(err, msg) -> None:
            assert err is None, err
            acked[msg.partition()].append((msg.offset(), msg.value()))

        for i in range(n):
            p.produce(t, key=b"%d" % i, value=b"boot-%05d-" % i + b"v" * 60, partition=i % parts, on_delivery=cb)
            if i % 500 == 0:
                p.poll(0)
        assert p.flush(30) == 0
        commits = {q: 10 * (q + 1) for q in range(parts)}
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "boot-g", "enable.auto.commit": False, **QUIET})
        c.commit(offsets=[TopicPartition(t, q, o) for q, o in commits.items()], asynchronous=False)
        c.close()
        b.kill()
        rng = random.Random(seed)
        for q in range(parts):  # a torn tail on every partition: the first recovery must cut it
            d = os.path.join(b.data_dir, f"{t}-{q}")
            last = sorted(f for f in os.listdir(d) if f.endswith(".log"))[-1]
            with open(os.path.join(d, last), "ab") as f:
                f.write(os.urandom(rng.randint(1, 60)))
        interrupted = 0
        for _ in range(attempts):
            # a random moment of start-up: imports, store open and recovery, group loading, listen
            delay = rng.uniform(0.3, 1.1) * start_s
            try:
                up = start_broker(b.data_dir, port=b.port, overrides=ov, timeout=delay)
            except RuntimeError:  # start_broker SIGKILLs a broker that does not answer in time
                interrupted += 1
                continue
            up.kill()
        b = start_broker(b.data_dir, port=b.port, overrides=ov)
        assert "Traceback" not in b.log(), b.log()[-3000:]
        for q in range(parts):
            stored = [(r.offset, r.value) for r in fetch_records(b.port, t, q)]
            assert stored == acked[q], f"partition {q}: {len(acked[q])} acknowledged, {len(stored)} stored"
        assert _aio_group_first_offsets(b.bootstrap, t, "boot-g", parts) == commits, \
            "an aiokafka group member did not resume at the committed offsets"
        for i in range(n, n + 40):  # the same idempotent producer carries on
            p.produce(t, key=b"%d" % i, value=b"boot-%05d-" % i, partition=i % parts, on_delivery=cb)
        assert p.flush(30) == 0
        assert end_offsets(b.port, t, parts) == [len(acked[q]) for q in range(parts)]
        return {"interrupted": interrupted, "attempts": attempts}
    finally:
        b.stop()


def _aio_group_first_offsets(bootstrap: str, topic: str, group: str, parts: int) -> dict[int, int]:
    """The offset of the first record an aiokafka member of `group` subscribed to `topic` gets
    from each partition (it resumes at the group's committed offsets)."""
    async def run() -> dict[int, int]:
        from aiokafka import AIOKafkaConsumer
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500)
        await c.start()
        first: dict[int, int] = {}
        try:
            deadline = time.monotonic() + 30
            while len(first) < parts and time.monotonic() < deadline:
                for tp, msgs in (await c.getmany(timeout_ms=500)).items():
                    if msgs:
                        first.setdefault(tp.partition, msgs[0].offset)
        finally:
            await c.stop()
        return first

    return asyncio.run(run())


def test_sigkill_during_start_up_again_and_again_loses_nothing(tmp_path):
    run_startup_kills(tmp_path, attempts=2, seed=1)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("seed", range(5))
def test_sigkill_during_start_up_long(tmp_path, seed):
    res = run_startup_kills(tmp_path, attempts=12, seed=seed)
    assert res["interrupted"] >= 1, res


# -- a topic deleted and created again: its old log start offset is not the new one's -------------------
def test_recreated_topic_starts_at_zero_and_keeps_its_records_across_sigkill(tmp_path):
    """DeleteRecords moves a topic's log start offset (checkpointed at once); the topic is deleted
    and created again, as test suites and re-provisioning do. Kafka's new topic is a new log
    starting at offset 0, whose acknowledged records survive a crash. Here the log start offset of
    the deleted topic lived on, in the checkpoint read at open and in the checkpoint file: the
    re-created topic started at the old offset, or, after a SIGKILL, reopened with a log start
    offset above its log end, and every record of it, acknowledged and flushed, was deleted."""
    from confluent_kafka import Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    ov = {"offsets.topic.num.partitions": "1"}
    b = start_broker(str(tmp_path / "data"), overrides=ov)
    try:
        def admin() -> AdminClient:
            return AdminClient({"bootstrap.servers": b.bootstrap, **QUIET})

        def produce(topic: str, values: list[bytes]) -> list[int]:
            p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 1, **QUIET})
            offsets: list[int] = []
            for v in values:
                p.produce(topic, value=v, partition=0,
                          on_delivery=lambda err, msg: offsets.append(-1 if err else msg.offset()))
            assert p.flush(20) == 0
            return offsets

        def cycle(topic: str) -> None:
            a = admin()
            a.create_topics([NewTopic(topic, 1, 1, config={"flush.messages": "1"})])[topic].result(20)
            assert produce(topic, [b"old-%d" % i for i in range(100)]) == list(range(100))
            a.delete_records([TopicPartition(topic, 0, 50)])[TopicPartition(topic, 0, 50)].result(20)

        def recreate(topic: str) -> list[int]:
            a = admin()
            a.delete_topics([topic])[topic].result(20)
            a.create_topics([NewTopic(topic, 1, 1, config={"flush.messages": "1"})])[topic].result(20)
            return produce(topic, [b"new-%d" % i for i in range(10)])

        cycle("before-restart")            # its log start offset is in the checkpoint read at open
        b = restart(b, ov)
        cycle("same-run")                  # its log start offset is only in the checkpoint file
        assert recreate("same-run") == list(range(10))
        recreated_at = recreate("before-restart")
        b = restart(b, ov)
        assert [(r.offset, r.value) for r in fetch_records(b.port, "same-run", 0)] == \
            [(i, b"new-%d" % i) for i in range(10)], "acknowledged records of the re-created topic lost to a SIGKILL"
        assert recreated_at == list(range(10)), "the re-created topic did not start at offset 0"
        for topic in ("before-restart", "same-run"):
            assert [(r.offset, r.value) for r in fetch_records(b.port, topic, 0)] == \
                [(i, b"new-%d" % i) for i in range(10)], topic
            assert end_offsets(b.port, topic, 1, earliest=True) == [0], topic
        assert "restarts empty" not in b.log(), b.log()[-2000:]
    finally:
        b.stop()


# -- DeleteTopics and CreateTopics of one name at once ----------------------------------------------------
def test_topic_created_while_its_namesake_is_deleted_gets_new_empty_partitions(tmp_path):
    """A client pipelines DeleteTopics and CreateTopics of one name (confluent-kafka's AdminClient
    does when the futures are not awaited in between); the broker runs both at once in worker
    threads. The new topic must be new: empty partitions of its own, whose records survive a
    reopen. The deletion used to rename the partition directories after releasing the store lock,
    so a create waiting for that lock opened the old topic's directories (serving its records as
    the new topic's), and the renames then took them away from under the new topic. The race is
    made certain with the fault-injection layer (tests/crash/faultfs.py): the deletion's first
    rename waits (0.5 s at most) for the create to finish."""
    import logstore
    from tests.crash.faultfs import FaultFS

    parts = 8
    root = str(tmp_path / "data")
    created = threading.Event()
    deleter = threading.current_thread()

    waited: list[bool] = []

    def on_event(_fs, kind: str, path: str) -> None:
        if kind == "rename" and os.path.basename(path).startswith("dc-") and \
                threading.current_thread() is deleter and not waited:
            waited.append(created.wait(0.5))

    failure: list[BaseException] = []

    def create(store) -> None:
        try:
            deadline = time.monotonic() + 30
            while store.has_topic("dc"):  # the moment the deletion is visible
                assert time.monotonic() < deadline, "the delete never became visible"
            store.create_topic("dc", parts)
        except BaseException as e:  # noqa: BLE001
            failure.append(e)
        finally:
            created.set()

    os.makedirs(root)
    with FaultFS(root, on_event):
        s = logstore.open(root, background=False)
        try:
            s.create_topic("dc", parts)
            for q in range(parts):
                s.partition("dc", q).append([(None, b"old")])
            th = threading.Thread(target=create, args=(s,))
            th.start()
            s.delete_topic("dc")
            th.join(60)
            assert waited, "the deletion renamed no partition directory"
            assert not failure, f"the create failed: {failure[0]!r}"
            stale = [q for q in range(parts) if s.partition("dc", q).log_end_offset != 0]
            assert not stale, f"the new topic serves the old one's records in partitions {stale}"
            gone = [q for q in range(parts) if not os.path.isdir(os.path.join(root, f"dc-{q}"))]
            assert not gone, f"the new topic's partition directories were removed: {gone}"
            for q in range(parts):
                s.partition("dc", q).append([(None, b"new")])
        finally:
            s.close()
    s = logstore.open(root, background=False)
    try:
        lost = [q for q in range(parts) if [r.value for r in s.partition("dc", q).iter_records()] != [b"new"]]
        assert not lost, f"partitions whose records did not survive a reopen: {lost}"
    finally:
        s.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pipelined_delete_and_create_topics_through_the_broker(tmp_path):
    """The same race through a real broker and raw pipelined requests: DeleteTopics and, a few
    milliseconds later, CreateTopics of one name on one connection, again and again (timing-based,
    so only in the slow run); the new topic is always empty, keeps its directories, and its records
    survive a SIGKILL."""
    ov = {"offsets.topic.num.partitions": "1"}
    b = start_broker(str(tmp_path / "data"), overrides=ov)
    parts, t = 100, "pipelined"
    try:
        raw_create_topic(b.port, t, parts)
        created = 0
        for rnd in range(12):
            with RawClient(b.port) as c:
                for q in range(parts):
                    assert raw_produce(c, t, R.build_batch([(None, b"old-%d" % rnd)]), q)[0] == 0
                c.send(req(20, 4, topic_names=[t], timeout=10000))
                time.sleep(0.002 * rnd)
                c.send(req(19, 7, topics=[{"name": t, "num_partitions": parts, "replication_factor": 1,
                                           "assignments": [], "configs": []}], timeout=10000, validate_only=False))
                _c, deleted = c.recv(20, 4)
                _c, made = c.recv(19, 7)
            assert int(deleted.responses[0].error_code) == 0
            if int(made.topics[0].error_code) != 0:
                assert int(made.topics[0].error_code) == 36   # ran before the delete: it existed
                raw_create_topic(b.port, t, parts)
                continue
            created += 1
            assert end_offsets(b.port, t, parts) == [0] * parts, f"round {rnd}: the new topic has old records"
            gone = [q for q in range(parts) if not os.path.isdir(os.path.join(b.data_dir, f"{t}-{q}"))]
            assert not gone, f"round {rnd}: directories of the new topic removed: {gone[:5]}"
        assert created >= 3, f"CreateTopics ran after the DeleteTopics in only {created} rounds"
        with RawClient(b.port) as c:
            for q in range(parts):
                assert raw_produce(c, t, R.build_batch([(None, b"last")]), q)[0] == 0
        b = restart(b, ov)
        lost = [q for q in range(parts) if [r.value for r in fetch_records(b.port, t, q)] != [b"last"]]
        assert not lost, f"partitions whose records did not survive the SIGKILL: {lost[:10]}"
    finally:
        b.stop()
