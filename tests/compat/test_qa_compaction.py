"""Retention and log compaction as a Kafka user sees them, through real broker processes and
unmodified clients (confluent-kafka, kafka-python, kcat), and through the embedded API.

Compared with Apache Kafka (LogCleaner / Cleaner / LogCleanerManager, UnifiedLog retention):
- a consumer reading a compacted partition from the beginning sees at least the newest value
  of every key, in offset order, offsets preserved (gaps allowed), headers intact, whatever
  the codec; tombstones stay for delete.retention.ms after the cleaning that keeps them;
- the active segment and segments younger than min.compaction.lag.ms are never cleaned; a key
  produced after its tombstone survives;
- segments whose every record was compacted away must not stall or break a consumer
  (librdkafka treats a fetch answer that holds no record as a sign of a too-small fetch size);
- compact,delete: both apply; retention.ms / retention.bytes: OFFSET_OUT_OF_RANGE and
  auto.offset.reset for consumers left behind, ListOffsets earliest moves, config changes at
  run time apply without a restart;
- an idempotent producer's retry of its last batch is still a duplicate after a cleaning;
- SIGKILL of the broker while it cleans a large partition, in a loop: no record Kafka would
  keep is lost, no offset twice, no `.cleaned` / `.swap` leftovers.

Bugs these tests found (cleaner.py fixes, or a patch for a file owned elsewhere):
- a fetch answered with nothing but a cleaned segment's trailing empty batch made librdkafka
  report MSG_SIZE_TOO_LARGE (kcat exits): /tmp/qa_compaction/read_slice_skips_empty_tail.patch;
- an idempotent producer's last batch was compacted away, so after a crash its retry was
  stored again (Kafka keeps that batch, empty);
- after an unclean restart an idle compacted partition was never cleaned again (its recovered
  segments waited for an fsync only a later roll would bring);
- cleaned segments got a fresh mtime, restarting the retention clock of records without
  timestamps.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

import logstore
from broker.pytest_plugin import start_broker

NOW = int(time.time() * 1000)


def _ck_read_all(bootstrap: str, topic: str, timeout: float = 20.0, **conf) -> tuple[list, list]:
    """confluent-kafka: every message of partition 0 from the beginning up to the end of the
    partition (enable.partition.eof). Returns (messages, errors)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"qa-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 50, **conf})
    msgs: list = []
    errors: list = []
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    break
                errors.append(m.error().code())
                continue
            msgs.append((m.offset(), m.key(), m.value(), m.headers() or []))
        else:
            raise AssertionError(f"no end of partition within {timeout}s; got {len(msgs)} messages, errors {errors}")
    finally:
        c.close()
    return msgs, errors


# ------------------------------------------------------------------ fully compacted segments

def _hot_key_log(path: str, segments: int = 30) -> dict[bytes, tuple[int, bytes]]:
    """A compacted partition of a few hot keys, cleaned once: every sealed segment but the last
    loses all of its records. Returns key → (newest offset, value)."""
    newest: dict[bytes, tuple[int, bytes]] = {}
    with logstore.open(path, background=False) as s:
        s.create_topic("hot", 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0",
                                  "segment.bytes": "1000"})
        lg = s.partition("hot", 0)
        i = 0
        while len(lg.segments) <= segments:  # full segments: a cleaning groups none of them together
            k = b"k%d" % (i % 3)
            v = b"v%d" % i
            newest[k] = (lg.append([(k, v, [("h", b"%d" % i)], NOW)]), v)
            i += 1
        lg.roll()
        s.run_cleaner(now_ms=NOW)
        emptied = [seg for seg in list(lg.segments.values())[:-2] if seg.size < 100]
        assert len(emptied) >= segments - 2, "the workload should empty most segments"
    return newest


def test_fully_compacted_segments_do_not_break_librdkafka_consumers(tmp_path):
    """Kafka's cleaner drops a batch that loses every record; logstore keeps it as an empty batch
    (recordCount 0) ending its segment. A fetch from a segment holding nothing else answered with
    that empty batch alone: librdkafka takes an answer without a record for a too-small fetch
    size, doubles it, and after ten in a row reports MSG_SIZE_TOO_LARGE ("Message at offset N
    might be too large to fetch") — kcat stops there with an error."""
    data = str(tmp_path / "data")
    newest = _hot_key_log(data)
    b = start_broker(data)
    try:
        msgs, errors = _ck_read_all(b.bootstrap, "hot")
        assert errors == [], f"consumer errors: {errors}"
        assert {k: (o, v) for o, k, v, _h in msgs} == newest
        offs = [o for o, *_ in msgs]
        assert offs == sorted(set(offs))
        if shutil.which("kcat"):
            out = subprocess.run(["kcat", "-b", b.bootstrap, "-C", "-t", "hot", "-p", "0", "-o", "beginning",
                                  "-e", "-q", "-f", "%o %k %s\\n"], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr[-1000:]
            got = [line.split(" ") for line in out.stdout.splitlines() if line]
            assert {k.encode(): (int(o), v.encode()) for o, k, v in got} == newest
    finally:
        b.stop()


# ------------------------------------------------------------------ idempotent producers

def _pid_batch(keys: list[bytes], tag: bytes, pid: int, seq: int) -> bytes:
    from logstore.records import build_batch
    return build_batch([(k, tag + k, (), NOW) for k in keys], producer_id=pid, producer_epoch=0,
                       base_sequence=seq, timestamp=NOW)


def test_a_producers_last_batch_survives_cleaning_so_its_retry_stays_a_duplicate(tmp_path):
    """Kafka's cleaner keeps the batch holding an active producer's last sequence, as an empty
    batch when every record of it is compacted away (Cleaner: isBatchLastRecordOfProducer,
    RETAIN_EMPTY): the producer state rebuilt from the log after a crash still knows that
    sequence, so a retry of the batch is a duplicate answered with its first offsets. Without
    it, the state comes back from an older snapshot, the retry looks like the next batch and
    its records are stored twice."""
    from logstore.errors import DuplicateSequenceError
    pid = 4242
    keys = [b"a", b"b", b"c"]
    d = tmp_path / "d"
    s = logstore.open(d, background=False)
    s.create_topic("c", 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0"})
    lg = s.partition("c", 0)
    lg.append_batch(_pid_batch(keys, b"p0-", pid, 0))
    lg.roll()  # a producer snapshot at offset 3 holds sequences 0-2
    last = _pid_batch(keys, b"p1-", pid, 3)
    first = lg.append_batch(last)  # sequences 3-5 at offsets 3-5: only in the log
    lg.flush()
    crashed = tmp_path / "crashed"
    shutil.copytree(d, crashed)  # as a kill -9 leaves it: no clean close, no snapshot at the log end
    s.close()

    with logstore.open(crashed, background=False) as s:
        lg = s.partition("c", 0)
        lg.append([(k, b"other-" + k, (), NOW) for k in keys])  # another producer (not idempotent)
        lg.roll()
        s.run_cleaner(now_ms=NOW)
        assert {r.key: r.value for r in lg.iter_records()} == {k: b"other-" + k for k in keys}
        crashed2 = tmp_path / "crashed2"
        shutil.copytree(crashed, crashed2)
        with pytest.raises(DuplicateSequenceError) as e:  # the producer retries, this process
            lg.append_batch(last)
        assert e.value.first_offset == first
    with logstore.open(crashed2, background=False) as s:  # and after another crash
        lg = s.partition("c", 0)
        with pytest.raises(DuplicateSequenceError) as e:
            lg.append_batch(last)
        assert e.value.first_offset == first
        assert lg.log_end_offset == 9


def _cleaner_checkpoint(data_dir: str, topic: str) -> int:
    from logstore import checkpoint as ckpt
    try:
        return ckpt.read_checkpoint(os.path.join(data_dir, ckpt.CLEANER_OFFSET_FILE)).get((topic, 0), -1)
    except Exception:  # being replaced at this moment
        return -1


def _wait_cleaned_past(data_dir: str, topic: str, offset: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while _cleaner_checkpoint(data_dir, topic) < offset:
        assert time.monotonic() < deadline, f"{topic} not cleaned past {offset} within {timeout}s"
        time.sleep(0.05)


def test_idempotent_retry_after_sigkill_and_cleaning_is_a_duplicate_through_the_broker(tmp_path):
    """The producer's last batch went to the log, the broker was killed, and after the restart a
    plain producer overwrote its keys and the cleaner ran before the idempotent producer's retry
    came: Kafka answers the retry with the first append's offset (it kept that batch, empty)."""
    from tests.test_server import RawClient, req
    data = str(tmp_path / "data")
    overrides = {"log.cleaner.backoff.ms": "50", "offsets.topic.num.partitions": "1"}
    b = start_broker(data, overrides=overrides)
    port = b.port
    t = "idem-compacted"

    def produce(c, batch):
        body = req(0, 9, transactional_id=None, acks=-1, timeout=5000,
                   topic_data=[{"name": t, "partition_data": [{"index": 0, "records": batch}]}])
        r = c.call(body).responses[0].partition_responses[0]
        return int(r.error_code), r.base_offset

    try:
        with RawClient(port) as c:
            r = c.call(req(19, 7, topics=[{"name": t, "num_partitions": 1, "replication_factor": 1, "assignments": [],
                                           "configs": [{"name": "cleanup.policy", "value": "compact"},
                                                       {"name": "segment.bytes", "value": "1000"},
                                                       {"name": "min.cleanable.dirty.ratio", "value": "0.01"}]}],
                           timeout=5000, validate_only=False))
            assert int(r.topics[0].error_code) == 0
            pid = c.call(req(22, 4, transactional_id=None, transaction_timeout=60000, producer_id=-1,
                             producer_epoch=-1)).producer_id
            keys = [b"a", b"b", b"c"]
            big = [b"%s-%d" % (k, i) for i in range(4) for k in keys]  # ~1 KB: the next batch rolls
            from logstore.records import build_batch
            b0 = build_batch([(k, b"x" * 60, (), NOW) for k in big], producer_id=pid, producer_epoch=0,
                             base_sequence=0, timestamp=NOW)
            assert produce(c, b0) == (0, 0)
            last = _pid_batch(keys, b"p1-", pid, len(big))
            assert produce(c, last) == (0, len(big))
        b.kill()
        b = start_broker(data, port=port, overrides=overrides)
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": False, "linger.ms": 0})
        for i in range(40):  # overwrite the producer's keys, fill and roll segments
            p.produce(t, key=keys[i % 3], value=b"plain-%d" % i + b"y" * 60)
            p.flush()
        _wait_cleaned_past(data, t, len(big) + len(keys))
        with RawClient(port) as c:
            assert produce(c, last) == (0, len(big)), "the retry was stored again"
        msgs, errors = _ck_read_all(b.bootstrap, t)
        assert errors == [] and not [m for m in msgs if m[2].startswith(b"p1-")]
    finally:
        b.stop()


# ------------------------------------------------------------------ compaction through the broker

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def _kp_read_all(bootstrap: str, topic: str, end: int, timeout: float = 20.0) -> list:
    """kafka-python: every record of partition 0 from the beginning until offset `end - 1`."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        out: list = []
        deadline = time.monotonic() + timeout
        while c.position(tp) < end:
            assert time.monotonic() < deadline, f"kafka-python stuck at {c.position(tp)} of {end}"
            for recs in c.poll(timeout_ms=200).values():
                out += [(r.offset, r.key, r.value, [(k, v) for k, v in r.headers]) for r in recs]
        return out
    finally:
        c.close()


def test_compacted_topics_of_each_codec_through_the_broker(tmp_path):
    """confluent-kafka produces updates with headers, tombstones and a key produced again after
    its tombstone, in each codec; the broker's own cleaner (log.cleaner.backoff.ms) compacts.
    confluent-kafka and kafka-python then read, from the beginning: offsets increasing, every
    record as it was produced at that offset, every key's newest record, the tombstones while
    delete.retention.ms runs and none after; the active segment whole."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    data = str(tmp_path / "data")
    b = start_broker(data, overrides={"log.cleaner.backoff.ms": "50", "offsets.topic.num.partitions": "1"})
    retention_ms = 6000
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        topics = {codec: f"cmp-{codec}" for codec in CODECS}
        futures = admin.create_topics([NewTopic(t, 1, 1, config={
            "cleanup.policy": "compact", "segment.bytes": "4000", "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": str(retention_ms)}) for t in topics.values()])
        for f in futures.values():
            f.result(20)
        written: dict[str, dict[int, tuple]] = {t: {} for t in topics.values()}
        tomb_sent: dict[str, float] = {}
        for codec, t in topics.items():
            p = Producer({"bootstrap.servers": b.bootstrap, "compression.type": codec, "linger.ms": 5,
                          "enable.idempotence": True})
            rounds = []
            for r in range(8):  # incompressible values, several batches: segments roll in every codec
                rounds.append([(b"key-%02d" % k, b"%s-r%d-" % (codec.encode(), r) + os.urandom(40).hex().encode(),
                                [("round", b"%d" % r), ("n", None)]) for k in range(30)])
            rounds.append([(b"key-%02d" % k, None, [("tomb", b"1")]) for k in range(5)]
                          + [(b"key-00", b"revived", [])])  # produced after its tombstone: it stays
            rounds += [[(b"fill-%d" % i, os.urandom(150).hex().encode(), [])] for i in range(30)]

            def ack(err, msg, t=t, h=None):
                assert err is None, err
                written[t][msg.offset()] = (msg.key(), msg.value(), h)
            for i, batch in enumerate(rounds):
                if i == 8:
                    tomb_sent[t] = time.monotonic()  # no cleaning can stamp an earlier delete horizon
                for k, v, h in batch:
                    p.produce(t, key=k, value=v, headers=h, on_delivery=lambda e, m, t=t, h=h: ack(e, m, t, h))
                assert p.flush(20) == 0
        ends = {t: max(w) + 1 for t, w in written.items()}
        newest = {t: {} for t in topics.values()}
        for t, w in written.items():
            for off in sorted(w):
                newest[t][w[off][0]] = off
        tomb_offsets = {t: [o for k, o in newest[t].items() if written[t][o][1] is None] for t in topics.values()}
        for t in topics.values():
            assert len(tomb_offsets[t]) == 4  # key-01 .. key-04 (key-00 came back)
            _wait_cleaned_past(data, t, max(tomb_offsets[t]) + 1)

        def check(t: str, msgs: list, tombstones: bool | None) -> None:
            offs = [m[0] for m in msgs]
            assert offs == sorted(set(offs)), f"{t}: offsets not increasing or repeated"
            for off, k, v, h in msgs:
                wk, wv, wh = written[t][off]
                assert (k, v) == (wk, wv), (t, off)
                assert [(a, bytes(x) if x is not None else None) for a, x in h] == wh, (t, off)
            by_key = {m[1]: m[0] for m in msgs}
            live = {k: o for k, o in newest[t].items() if written[t][o][1] is not None}
            for k, o in live.items():
                assert by_key.get(k) == o, f"{t}: key {k!r} lost its newest record {o}"
            assert len(msgs) < len(written[t]), f"{t}: nothing was compacted"
            last_log = max(int(n[:20]) for n in os.listdir(os.path.join(data, f"{t}-0")) if n.endswith(".log"))
            assert set(offs) >= {o for o in written[t] if o >= last_log}, "the active segment lost records"
            if tombstones is True:
                assert {o for o in tomb_offsets[t]} <= set(offs), f"{t}: a tombstone went before delete.retention.ms"
            if tombstones is False:
                assert not [m for m in msgs if m[2] is None], f"{t}: tombstones outlived delete.retention.ms"
                assert set(by_key) == set(live)

        for t in topics.values():
            msgs, errors = _ck_read_all(b.bootstrap, t)
            assert errors == []
            # the tombstones must be there unless delete.retention.ms ran out meanwhile
            check(t, msgs, True if time.monotonic() < tomb_sent[t] + retention_ms / 1000 - 0.3 else None)
            check(t, _kp_read_all(b.bootstrap, t, ends[t]), None)
        deadline = time.monotonic() + 25
        for t in topics.values():
            while True:
                msgs, errors = _ck_read_all(b.bootstrap, t)
                if not [m for m in msgs if m[2] is None] or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            check(t, msgs, False)
    finally:
        b.stop()


# ------------------------------------------------------------------ retention through the broker

def _earliest(admin, topic: str) -> int:
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec
    fut = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()})
    return list(fut.values())[0].result(10).offset


def _alter(admin, topic: str, **configs: str) -> None:
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(10)


def _segments(data: str, topic: str) -> list[tuple[int, int]]:
    d = os.path.join(data, f"{topic}-0")
    return sorted((int(n[:20]), os.path.getsize(os.path.join(d, n))) for n in os.listdir(d) if n.endswith(".log"))


def test_retention_at_run_time_through_the_broker(tmp_path):
    """retention.ms then retention.bytes set with IncrementalAlterConfigs on a running broker apply
    at the next log.retention.check.interval.ms, by each segment's largest timestamp (a segment
    holding a future timestamp stops time retention, as in Kafka), whole segments, never the
    active one; ListOffsets earliest follows; consumers left below it get OFFSET_OUT_OF_RANGE
    and reset per auto.offset.reset."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    data = str(tmp_path / "data")
    b = start_broker(data, overrides={"log.retention.check.interval.ms": "100", "offsets.topic.num.partitions": "1"})
    t = "ret"
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in admin.create_topics([NewTopic(t, 1, 1, config={"segment.bytes": "1000",
                                                                "file.delete.delay.ms": "0"})]).values():
            f.result(20)
        p = KafkaProducer(bootstrap_servers=b.bootstrap, linger_ms=0, acks="all")
        now = int(time.time() * 1000)
        stamps = [now - 7_200_000] * 60 + [now] * 20 + [now + 86_400_000] * 10 + [now] * 30
        offsets = [p.send(t, key=b"k%d" % i, value=b"v" * 40, timestamp_ms=ts).get(10).offset
                   for i, ts in enumerate(stamps)]
        p.close()
        assert offsets == list(range(len(stamps)))
        time.sleep(0.3)  # a few retention checks with the default retention.ms (7 days)
        assert _earliest(admin, t) == 0

        _alter(admin, t, retention_ms="3600000")
        segs = _segments(data, t)
        # the segments whose every record is 2 h old go; the first holding a young record stays
        want = max(base for base, _ in segs if base <= 60)
        deadline = time.monotonic() + 15
        while _earliest(admin, t) != want:
            assert time.monotonic() < deadline, (_earliest(admin, t), want, segs)
            time.sleep(0.05)
        time.sleep(0.3)  # more checks: the future-timestamp segment stops the rule; nothing else goes
        assert _earliest(admin, t) == want
        assert _segments(data, t) == [s for s in segs if s[0] >= want]

        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "ret-e", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(t, 0, 3)])
        m = None
        deadline = time.monotonic() + 15
        while m is None or m.error():
            assert time.monotonic() < deadline
            m = c.poll(0.5)
        assert m.offset() == want
        c.close()
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "ret-n", "auto.offset.reset": "error",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(t, 0, 3)])
        m = None
        deadline = time.monotonic() + 15
        while m is None:
            assert time.monotonic() < deadline
            m = c.poll(0.5)
        assert m.error() and m.error().code() == KafkaError._AUTO_OFFSET_RESET and "out of range" in m.error().str().lower()
        c.close()
        kc = KafkaConsumer(bootstrap_servers=b.bootstrap, auto_offset_reset="latest", enable_auto_commit=False)
        kc.assign([KTP(t, 0)])
        kc.seek(KTP(t, 0), 3)
        kc.poll(timeout_ms=2000)
        deadline = time.monotonic() + 15
        while kc.position(KTP(t, 0)) != len(stamps):
            assert time.monotonic() < deadline, kc.position(KTP(t, 0))
            kc.poll(timeout_ms=200)
        kc.close()

        limit = 2500
        _alter(admin, t, retention_bytes=str(limit))
        deadline = time.monotonic() + 15
        while True:
            segs = _segments(data, t)
            total = sum(size for _, size in segs)
            if total - segs[0][1] < limit:
                break
            assert time.monotonic() < deadline, segs
            time.sleep(0.05)
        assert total >= limit and len(segs) >= 2  # whole segments; the active one stays
        assert _earliest(admin, t) == segs[0][0]
        assert segs[-1][0] <= offsets[-1]
    finally:
        b.stop()


def test_compact_delete_topic_compacts_and_expires_through_the_broker(tmp_path):
    """cleanup.policy=compact,delete: retention.ms removes the segments of old records and the
    cleaner, once min.cleanable.dirty.ratio is lowered at run time, keeps each key's newest
    record of the rest; both on the broker's own schedule."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    data = str(tmp_path / "data")
    b = start_broker(data, overrides={"log.cleaner.backoff.ms": "50", "log.retention.check.interval.ms": "100",
                                      "offsets.topic.num.partitions": "1"})
    t = "cd"
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in admin.create_topics([NewTopic(t, 1, 1, config={
                "cleanup.policy": "compact,delete", "retention.ms": "3600000", "segment.bytes": "1500",
                "min.cleanable.dirty.ratio": "1.0", "file.delete.delay.ms": "0"})]).values():
            f.result(20)
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
        now = int(time.time() * 1000)
        written = {}

        def ack(err, msg):
            assert err is None
            written[msg.offset()] = (msg.key(), msg.value())
        for i in range(80):  # 2 h old
            p.produce(t, key=b"old-%d" % (i % 4), value=b"o%d" % i + b"x" * 40, timestamp=now - 7_200_000,
                      on_delivery=ack)
            p.flush()
        for i in range(80):
            p.produce(t, key=b"new-%d" % (i % 4), value=b"n%d" % i + b"y" * 40, on_delivery=ack)
            p.flush()
        segs = _segments(data, t)
        want = max(base for base, _ in segs if base < 80)  # the first segment with a young record
        deadline = time.monotonic() + 15
        while _earliest(admin, t) != want:
            assert time.monotonic() < deadline, (_earliest(admin, t), want)
            time.sleep(0.05)
        active = _segments(data, t)[-1][0]
        _alter(admin, t, min_cleanable_dirty_ratio="0.01")
        _wait_cleaned_past(data, t, active)
        newest = {}
        for off in sorted(written):
            newest[written[off][0]] = off
        msgs, errors = _ck_read_all(b.bootstrap, t)
        assert errors == []
        offs = [m[0] for m in msgs]
        assert offs == sorted(set(offs)) and offs[0] >= want
        for off, k, v, _h in msgs:
            assert written[off] == (k, v)
        cleaned = [m[1] for m in msgs if m[0] < active]
        assert len(cleaned) == len(set(cleaned)), "a key twice in the cleaned part"
        for k, off in newest.items():
            if off >= want:
                assert (off, k) in [(m[0], m[1]) for m in msgs], f"{k!r} lost its newest record"
    finally:
        b.stop()


def test_min_compaction_lag_holds_young_records_through_the_broker(tmp_path):
    """min.compaction.lag.ms: a sealed segment whose largest timestamp is younger than the lag is
    not cleaned (every update stays readable); once the lag passes, the broker's cleaner
    compacts it."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    data = str(tmp_path / "data")
    b = start_broker(data, overrides={"log.cleaner.backoff.ms": "50", "offsets.topic.num.partitions": "1"})
    t = "lag"
    lag_ms = 3000
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in admin.create_topics([NewTopic(t, 1, 1, config={
                "cleanup.policy": "compact", "segment.bytes": "1500", "min.cleanable.dirty.ratio": "0.01",
                "min.compaction.lag.ms": str(lag_ms)})]).values():
            f.result(20)
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
        stamp = int(time.time() * 1000)
        for i in range(100):
            p.produce(t, key=b"k%d" % (i % 5), value=b"v%d" % i + b"z" * 40, timestamp=stamp)
            p.flush()
        active = _segments(data, t)[-1][0]
        assert active > 0
        while (time.time() * 1000) - stamp < lag_ms - 500:
            assert _cleaner_checkpoint(data, t) < 0, "cleaned before min.compaction.lag.ms"
            time.sleep(0.05)
        msgs, errors = _ck_read_all(b.bootstrap, t)
        if (time.time() * 1000) - stamp < lag_ms:
            assert [m[0] for m in msgs] == list(range(100))
        _wait_cleaned_past(data, t, active)
        msgs, errors = _ck_read_all(b.bootstrap, t)
        assert errors == []
        below = [m[1] for m in msgs if m[0] < active]
        assert len(below) == len(set(below)) and len(msgs) < 100
        assert {m[1]: m[2][:3] for m in msgs} == {b"k%d" % k: b"v%d" % (95 + k) for k in range(5)}
    finally:
        b.stop()


# ------------------------------------------------------------------ SIGKILL while the broker cleans

def test_sigkill_while_the_broker_cleans_a_large_partition(tmp_path):
    """A large compacted partition (several cleaner passes: a small dedupe buffer) cleaned by the
    broker's own cleaner; the broker is SIGKILLed while `.cleaned` / `.swap` files exist, then
    restarted and given new updates, a few times in a row. After each restart consumers see
    every key's newest record (tombstones included), each record as written at its offset,
    offsets increasing; at the end nothing temporary is left and the partition is compacted."""
    import random

    from confluent_kafka import Producer
    data = str(tmp_path / "data")
    rng = random.Random(11)
    n = 60_000
    # each third of the log updates its own 700 keys: a key map of ~900 keys takes about a third
    # of the log per pass, so the cleaning takes several passes (a checkpoint between each)
    keys = [(o // 20_000) * 700 + rng.randrange(700) for o in range(n)]
    written = {o: (b"key-%05d" % k, None if o % 997 == 0 else b"%d" % o) for o, k in enumerate(keys)}
    with logstore.open(data, background=False) as s:
        s.create_topic("big", 1, {"cleanup.policy": "compact", "segment.bytes": str(64 * 1024),
                                  "min.cleanable.dirty.ratio": "0.01"})
        lg = s.partition("big", 0)
        for start in range(0, n, 500):
            lg.append([(*written[o], (), NOW) for o in range(start, start + 500)], flush=False)
        lg.flush()
        assert len(lg.segments) >= 6
    overrides = {"log.cleaner.backoff.ms": "50", "log.cleaner.dedupe.buffer.size": str(24 * 1000),
                 "offsets.topic.num.partitions": "1"}
    part = os.path.join(data, "big-0")

    def newest() -> dict:
        out = {}
        for o in sorted(written):
            out[written[o][0]] = o
        return out

    def check(bootstrap: str) -> list:
        msgs, errors = _ck_read_all(bootstrap, "big", timeout=25)
        assert errors == []
        offs = [m[0] for m in msgs]
        assert offs == sorted(set(offs)), "offsets repeated or out of order"
        for off, k, v, _h in msgs:
            assert (k, v) == written[off], off
        assert {m[1]: m[0] for m in msgs} == newest(), "a key lost its newest record"
        return msgs

    def cleaning() -> bool:
        return bool([x for x in os.listdir(part) if x.endswith((".cleaned", ".swap"))])

    kills = 0
    b = start_broker(data, overrides=overrides)
    try:
        for round_ in range(3):
            deadline = time.monotonic() + 15
            while not cleaning() and time.monotonic() < deadline:
                time.sleep(0.002)
            if cleaning():
                time.sleep(rng.random() * 0.03)
                os.kill(b.pid, signal.SIGKILL)
                b.proc.wait()
                kills += 1
                b = start_broker(data, overrides=overrides)
            check(b.bootstrap)  # while the restarted broker cleans again
            p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5, "enable.idempotence": True})

            def ack(err, msg):
                assert err is None
                written[msg.offset()] = (msg.key(), msg.value())
            for i in range(3000):  # new dirt for the next round
                p.produce("big", key=b"key-%05d" % rng.randrange(2100), value=b"r%d-%d" % (round_, i),
                          on_delivery=ack)
            assert p.flush(20) == 0
        active = _segments(data, "big")[-1][0]
        _wait_cleaned_past(data, "big", active, timeout=30)
        cleaned = [m[1] for m in check(b.bootstrap) if m[0] < active]
        assert len(cleaned) == len(set(cleaned)) <= 2100
    finally:
        b.stop()
    print(f"\n{kills} kills while cleaning")
    assert kills >= 2, "the cleaning was seldom caught in progress"
    left = [x for x in os.listdir(part) if x.endswith((".cleaned", ".swap"))]
    assert not left, left
    with logstore.open(data, background=False) as s:
        got = {r.key: r.offset for r in s.partition("big", 0).iter_records()}
        assert got == newest()


def test_cleaning_resumes_after_an_unclean_restart_without_new_appends(tmp_path):
    """After kill -9 the recovery point comes from a checkpoint older than the last rolls, so the
    recovered sealed segments count as unflushed, and the cleaner (which waits for a sealed
    segment's fsync before cleaning it) waited for a flush that only a later roll would bring:
    an idle compacted partition was never cleaned again. Kafka cleans it at once. The cleaner now
    fsyncs such segments itself when no flush came for a backoff, then cleans."""
    d = tmp_path / "d"
    s = logstore.open(d, background=False)
    s.create_topic("c", 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0", "segment.bytes": "2000"})
    lg = s.partition("c", 0)
    for i in range(300):
        lg.append([(b"k%d" % (i % 7), b"v%d" % i + b"x" * 30, (), NOW)])
    assert len(lg.segments) > 3
    crashed = tmp_path / "crashed"
    shutil.copytree(d, crashed)  # no clean close: recovery-point checkpoint from before the rolls
    s.close()
    with logstore.open(crashed, {"log.cleaner.backoff.ms": "50"}) as s:  # its background cleaner
        lg = s.partition("c", 0)
        assert lg.recovery_point < lg.active_segment.base_offset
        active = lg.active_segment.base_offset
        deadline = time.monotonic() + 20
        while s.log_cleaner.checkpoints.get(("c", 0), 0) < active:
            assert time.monotonic() < deadline, "the partition was never cleaned after the restart"
            time.sleep(0.05)
        recs = list(lg.iter_records())
        cleaned = [r.key for r in recs if r.offset < active]
        assert len(cleaned) == len(set(cleaned))
        assert lg.recovery_point >= active  # made durable before it was cleaned


def test_cleaning_keeps_the_retention_clock_of_segments_without_timestamps(tmp_path):
    """Time retention judges a segment without record timestamps by its file's modification time
    (Kafka: largestTimestamp falls back on lastModified). Kafka gives a cleaned segment the
    modification time of the segments it replaces; a cleaned file with a fresh mtime made such
    records young again at every cleaning, so compact,delete never expired them."""
    with logstore.open(tmp_path / "d", background=False) as s:
        s.create_topic("c", 1, {"cleanup.policy": "compact,delete", "retention.ms": "3600000", "segment.bytes": "1000",
                                "min.cleanable.dirty.ratio": "0", "file.delete.delay.ms": "0"})
        lg = s.partition("c", 0)
        for i in range(60):
            lg.append([(b"k%d" % (i % 3), b"v" * 30, (), -1)])  # no timestamp
        lg.roll()
        old = time.time() - 7200
        for seg in list(lg.segments.values())[:-1]:
            assert seg.max_timestamp < 0
            os.utime(seg.log_path, (old, old))
        assert s.run_cleaner(now_ms=NOW)
        for seg in list(lg.segments.values())[:-1]:
            assert os.path.getmtime(seg.log_path) == pytest.approx(old, abs=1)
        res = s.run_retention(now_ms=int(time.time() * 1000))
        assert res.by_time > 0
        assert len(lg.segments) == 1 and list(lg.iter_records()) == []
