"""The embedded Producer and Consumer over a real log dir in tmp_path."""

from __future__ import annotations

import threading
import time

import pytest

import logstore
from logstore.client import Consumer, Producer, partition_for_key
from logstore.groups import OFFSETS_TOPIC, OffsetCommitKey, decode_key, decode_offset_value


@pytest.fixture
def store(tmp_path):
    s = logstore.open(str(tmp_path / "data"))
    yield s
    s.close()


def test_keyed_records_land_where_the_java_client_puts_them(store) -> None:
    store.create_topic("t", 5)
    with Producer(store) as p:
        futs = {f"user-{i}".encode(): p.send("t", b"v", key=f"user-{i}") for i in range(50)}
    for key, fut in futs.items():
        md = fut.get()
        assert md.partition == partition_for_key(key, 5)
        recs = store.partition("t", md.partition).read(md.offset, max_records=1)
        assert recs[0].key == key


def test_send_buffers_until_flush_then_one_batch_per_partition(store) -> None:
    store.create_topic("t", 1)
    p = Producer(store, batch_size=1 << 20)
    futs = [p.send("t", f"v{i}".encode(), timestamp=1000 + i) for i in range(10)]
    assert store.partition("t", 0).log_end_offset == 0  # still buffered
    assert not futs[0].done()
    p.flush()
    assert [f.get().offset for f in futs] == list(range(10))
    data = store.partition("t", 0).read_bytes(0)
    headers = list(logstore.iter_headers(data))
    assert len(headers) == 1 and headers[0][1].record_count == 10
    assert [r.timestamp for r in store.partition("t", 0).read(0)] == [1000 + i for i in range(10)]


def test_future_get_flushes(store) -> None:
    store.create_topic("t", 1)
    p = Producer(store)
    md = p.send("t", b"x", headers=[("h", b"1")]).get()
    assert md.offset == 0
    rec = store.partition("t", 0).read(0)[0]
    assert rec.headers == (("h", b"1"),)


def test_null_keys_stick_to_one_partition_per_batch(store) -> None:
    store.create_topic("t", 8)
    p = Producer(store, batch_size=10_000)
    parts = {p.send("t", b"x" * 10).partition for _ in range(50)}  # 50 * ~26 bytes < one batch
    assert len(parts) == 1
    for _ in range(2000):
        p.send("t", b"x" * 100)
    p.flush()
    used = [i for i in range(8) if store.partition("t", i).log_end_offset]
    assert len(used) > 1


def test_explicit_partition_and_errors(store) -> None:
    store.create_topic("t", 2)
    p = Producer(store)
    assert p.send("t", b"a", partition=1).get().partition == 1
    with pytest.raises(logstore.UnknownTopicOrPartitionError, match="no partition 2"):
        p.send("t", b"a", partition=2)
    with pytest.raises(logstore.UnknownTopicOrPartitionError, match="unknown topic 'nope'"):
        p.send("nope", b"a")
    with pytest.raises(TypeError, match="value must be bytes"):
        p.send("t", 12)


def test_custom_partitioner(store) -> None:
    store.create_topic("t", 4)
    p = Producer(store, partitioner=lambda key, n: n - 1)
    assert p.send("t", b"a", key=b"k").get().partition == 3


def test_consumer_earliest_latest_and_iteration(store) -> None:
    store.create_topic("t", 3)
    with Producer(store) as p:
        for i in range(30):
            p.send("t", str(i).encode(), key=str(i).encode())
    latest = Consumer(store, "t")
    assert latest.poll() == []
    earliest = Consumer(store, ["t"], auto_offset_reset="earliest", consumer_timeout_ms=300)
    got = list(earliest)
    assert sorted(int(r.value) for r in got) == list(range(30))
    for part in range(3):
        offs = [r.offset for r in got if r.partition == part]
        assert offs == sorted(offs) == list(range(len(offs)))
    with Producer(store) as p:
        p.send("t", b"new", key=b"1")
    assert [r.value for r in latest.poll()] == [b"new"]


def test_poll_waits_for_an_append(store) -> None:
    store.create_topic("t", 1)
    c = Consumer(store, "t")
    t = threading.Timer(0.3, lambda: store.partition("t", 0).append([(None, b"late")]))
    t.start()
    start = time.monotonic()
    recs = c.poll(timeout=10)
    assert [r.value for r in recs] == [b"late"]
    assert time.monotonic() - start < 5
    assert c.poll(timeout=0.1) == []


def test_commit_and_resume_in_consumer_offsets_format(tmp_path) -> None:
    path = str(tmp_path / "d")
    with logstore.open(path) as s:
        s.create_topic("t", 2)
        with Producer(s) as p:
            for i in range(10):
                p.send("t", b"v", partition=i % 2)
        c = Consumer(s, "t", group_id="g", auto_offset_reset="earliest")
        assert len(c.poll(max_records=3)) == 3
        c.commit()
        positions = {tp: c.position(tp) for tp in c.assignment()}
        assert sum(positions.values()) == 3
        c.close()
        # the records in __consumer_offsets are Kafka's OffsetCommitKey / OffsetCommitValue
        found = {}
        for part in range(s.topic(OFFSETS_TOPIC).partitions):
            for rec in s.partition(OFFSETS_TOPIC, part).read(0):
                k = decode_key(rec.key)
                if isinstance(k, OffsetCommitKey) and rec.value is not None:
                    found[(k.group, k.topic, k.partition)] = decode_offset_value(rec.value).offset
        assert found == {("g", t, p): o for (t, p), o in positions.items()}
    with logstore.open(path) as s:  # a new process resumes from the committed offsets
        c = Consumer(s, "t", group_id="g", auto_offset_reset="earliest")
        assert {tp: c.position(tp) for tp in c.assignment()} == positions
        assert len(c.poll()) == 7


def test_seek_position_and_committed(store) -> None:
    store.create_topic("t", 1)
    store.partition("t", 0).append([(None, str(i).encode()) for i in range(10)])
    c = Consumer(store, "t", group_id="g2", auto_offset_reset="earliest")
    assert c.position(("t", 0)) == 0
    c.seek(("t", 0), 7)
    assert [r.value for r in c.poll()] == [b"7", b"8", b"9"]
    assert c.committed(("t", 0)) is None
    c.commit({("t", 0): 8})
    assert c.committed(("t", 0)) == 8
    c.seek_to_beginning()
    assert c.position(("t", 0)) == 0
    c.seek_to_end()
    assert c.position(("t", 0)) == 10
    with pytest.raises(logstore.UnknownTopicOrPartitionError):
        c.position(("t", 1))


def test_reset_when_position_falls_below_log_start(store) -> None:
    store.create_topic("t", 1, {"segment.bytes": "200"})
    lg = store.partition("t", 0)
    for i in range(20):
        lg.append([(None, b"x" * 50)])
    c = Consumer(store, "t", auto_offset_reset="earliest")
    store.delete_records("t", 0, 10)
    recs = c.poll()
    assert recs[0].offset >= 10


def test_auto_offset_reset_none_and_unknown_topic(store) -> None:
    store.create_topic("t", 1)
    with pytest.raises(logstore.OffsetOutOfRangeError, match="no committed offset"):
        Consumer(store, "t", group_id="fresh", auto_offset_reset="none")
    with pytest.raises(logstore.UnknownTopicOrPartitionError, match="nope"):
        Consumer(store, "nope")
    with pytest.raises(ValueError, match="auto_offset_reset"):
        Consumer(store, "t", auto_offset_reset="smallest")


def test_consumer_picks_up_new_partitions(store) -> None:
    store.create_topic("t", 1)
    c = Consumer(store, "t", auto_offset_reset="earliest")
    store.create_partitions("t", 3)
    store.partition("t", 2).append([(None, b"p2")])
    assert [(r.partition, r.value) for r in c.poll()] == [(2, b"p2")]


@pytest.mark.parametrize("codec", ["brotli", "GZIP", 7])
def test_an_unknown_compression_type_is_refused_naming_the_valid_ones(tmp_path, codec):
    """As Kafka's producer does at construction; Log.append refuses it too, appending nothing."""
    with logstore.open(str(tmp_path / "d"), background=False) as store:
        store.create_topic("t")
        with pytest.raises(logstore.InvalidConfigError, match="must be one of: none, gzip, snappy, lz4, zstd"):
            Producer(store, compression_type=codec)
        lg = store.partition("t", 0)
        with pytest.raises(logstore.InvalidConfigError, match=f"Invalid value {codec!r} for configuration compression.type"):
            lg.append([(None, b"v")], compression=codec)
        assert lg.log_end_offset == 0
