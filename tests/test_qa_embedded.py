"""QA of the embedded API as an application uses it: `logstore.Producer` / `logstore.Consumer`
against kafka-python's semantics (as README's "Embedded use" promises them), `Log` under
concurrent appends, reads, delete-records, retention, compaction and close, and the store's
lifecycle. Real files in tmp_path, real threads and processes; every join is bounded."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time

import pytest

import logstore
from logstore import Consumer, Producer

JOIN = 60  # seconds: a thread still alive after this is a deadlock, not a slow machine


@pytest.fixture
def bg_store(tmp_path):
    """A store with its background thread (deferred roll flushes, flush.ms, cleaner)."""
    s = logstore.open(str(tmp_path / "bg"), background=True)
    try:
        yield s
    finally:
        if not s.closed:
            s.close()


def _run(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.start()


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(JOIN)
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still running (deadlock?): {alive}"


# -- Producer ---------------------------------------------------------------------------------------
def test_keyed_records_land_where_kafka_python_puts_them(store) -> None:
    kp = pytest.importorskip("kafka.partitioner.default")
    store.create_topic("t", partitions=7)
    rng = random.Random(7)
    keys = [rng.randbytes(rng.randrange(0, 40)) for _ in range(300)] + [b"", b"user-1", "ключ".encode()]
    with Producer(store) as p:
        futs = [(k, p.send("t", b"v", key=k)) for k in keys]
    for k, f in futs:
        assert logstore.murmur2(k) & 0x7FFFFFFF == kp.murmur2(k) & 0x7FFFFFFF
        assert f.get().partition == (kp.murmur2(k) & 0x7FFFFFFF) % 7, k


def test_null_keys_stick_to_a_partition_for_a_batch_then_move(store) -> None:
    store.create_topic("t", partitions=4)
    p = Producer(store, batch_size=1000)
    parts = [p.send("t", b"x" * 84).partition for _ in range(40)]  # 100 bytes each as counted
    p.close()
    runs = [parts[0]]
    for x in parts[1:]:
        if x != runs[-1]:
            runs.append(x)
    assert parts[:10] == [parts[0]] * 10
    assert len(runs) >= 3 and all(a != b for a, b in zip(runs, runs[1:]))


def test_a_bytes_header_key_is_stored_as_its_text_not_its_repr(store) -> None:
    store.create_topic("t")
    with Producer(store) as p:
        off = p.send("t", b"v", headers=[(b"trace", b"1"), ("span", None)]).get().offset
        off2 = p.send("t", b"w", headers={"a": b"b"}).get().offset
    recs = store.partition("t", 0).read(off)
    assert recs[0].headers == (("trace", b"1"), ("span", None))
    assert recs[off2 - off].headers == (("a", b"b"),)


@pytest.mark.parametrize("headers, match", [
    ("ab", "headers must be a list"),
    ([("a", b"1", b"2")], "pairs"),
    (["ab"], "pairs"),
    ([("a", 1)], "header 'a' must be bytes"),
    ([(1, b"x")], "header key must be str"),
    ([(b"\xff", b"x")], "not UTF-8"),
])
def test_malformed_headers_are_refused_naming_the_header(store, headers, match) -> None:
    store.create_topic("t")
    p = Producer(store)
    with pytest.raises(TypeError, match=match):
        p.send("t", b"v", headers=headers)
    p.close()
    assert store.partition("t", 0).log_end_offset == 0


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"timestamp": -5}, ValueError, "invalid timestamp -5"),
    ({"timestamp": 1 << 63}, ValueError, "invalid timestamp"),
    ({"timestamp": 1.5}, TypeError, "timestamp must be an int"),
    ({"partition": "1"}, TypeError, "partition must be an int"),
    ({"partition": True}, TypeError, "partition must be an int"),
    ({"partition": 2}, logstore.UnknownTopicOrPartitionError, "no partition 2"),
    ({"partition": -1}, logstore.UnknownTopicOrPartitionError, "no partition -1"),
    ({"value": 5}, TypeError, "value must be bytes"),
    ({"key": 5}, TypeError, "key must be bytes"),
])
def test_bad_send_arguments_fail_at_once_naming_the_argument(store, kwargs, exc, match) -> None:
    store.create_topic("t", partitions=2)
    p = Producer(store)
    args = {"value": b"v", **kwargs}
    with pytest.raises(exc, match=match):
        p.send("t", **args)
    p.close()
    assert [store.partition("t", i).log_end_offset for i in range(2)] == [0, 0]


def test_bad_producer_arguments(store) -> None:
    store.create_topic("t")
    with pytest.raises(TypeError, match="batch_size"):
        Producer(store, batch_size="16k")
    with pytest.raises(TypeError, match="partitioner"):
        Producer(store, partitioner=5)
    with pytest.raises(logstore.UnknownTopicOrPartitionError, match="'nope'"):
        Producer(store).send("nope", b"v")
    with pytest.raises(TypeError, match="partitioner chose"):
        Producer(store, partitioner=lambda k, n: "0").send("t", b"v")


def test_get_raises_only_its_own_partitions_error(store) -> None:
    """A future's get() appends its own batch; another partition's failure is not its error."""
    store.create_topic("compacted", config={"cleanup.policy": "compact"})
    store.create_topic("plain")
    p = Producer(store)
    bad = p.send("compacted", b"no key")      # refused: a compacted topic needs keys
    good = p.send("plain", b"fine")
    assert good.get().offset == 0
    with pytest.raises(logstore.InvalidRecordError, match="needs a key"):
        bad.get()
    assert bad.done()
    p.close()


def test_flush_tries_every_partition_and_close_closes_even_when_it_fails(store) -> None:
    store.create_topic("compacted", config={"cleanup.policy": "compact"})
    store.create_topic("plain", partitions=2)
    p = Producer(store)
    a = p.send("plain", b"a", partition=0)
    bad = p.send("compacted", b"no key")
    b = p.send("plain", b"b", partition=1)
    with pytest.raises(logstore.InvalidRecordError):
        p.flush()
    # the batches after the failed one were appended by that flush, not left in the buffer
    assert store.partition("plain", 1).log_end_offset == 1
    assert (a.done(), b.done(), bad.done()) == (True, True, True)
    p.send("compacted", b"again")
    with pytest.raises(logstore.InvalidRecordError):
        p.close()
    with pytest.raises(logstore.LogStoreError, match="producer is closed"):
        p.send("plain", b"late")
    p.close()  # idempotent, nothing left to fail


def test_close_flushes_is_idempotent_and_send_after_close_raises(store) -> None:
    store.create_topic("t")
    p = Producer(store, batch_size=1 << 20)
    futs = [p.send("t", b"%d" % i) for i in range(5)]
    assert store.partition("t", 0).log_end_offset == 0  # buffered
    p.close()
    assert [f.get().offset for f in futs] == [0, 1, 2, 3, 4]
    p.close()
    with pytest.raises(logstore.LogStoreError, match="closed"):
        p.send("t", b"x")


def test_producer_used_from_many_threads(store) -> None:
    store.create_topic("t", partitions=3)
    p = Producer(store, batch_size=300)
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(tid: int) -> None:
        try:
            futs = [(p.send("t", f"{tid}-{i}".encode(), key=b"%d" % (i % 11)), f"{tid}-{i}".encode())
                    for i in range(400)]
            if tid % 2:
                p.flush()
            results[tid] = [(f.get(), v) for f, v in futs]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,), name=f"send-{i}") for i in range(4)]
    _run(threads)
    _join(threads)
    p.close()
    assert not errors
    by_tp: dict[tuple[int, int], bytes] = {}
    for lst in results.values():
        for meta, v in lst:
            assert (meta.partition, meta.offset) not in by_tp
            by_tp[(meta.partition, meta.offset)] = v
    for part in range(3):
        lg = store.partition("t", part)
        got = {r.offset: r.value for r in lg.iter_records()}
        mine = {o: v for (pp, o), v in by_tp.items() if pp == part}
        assert got == mine
        assert sorted(got) == list(range(lg.log_end_offset))


def test_send_to_a_closed_store_fails_the_future(tmp_path) -> None:
    s = logstore.open(str(tmp_path / "d"), background=False)
    s.create_topic("t")
    p = Producer(s)
    f = p.send("t", b"v")
    s.close()
    with pytest.raises(logstore.StoreClosedError):
        f.get()


# -- Consumer ---------------------------------------------------------------------------------------
def test_group_resumes_from_committed_offsets_across_reopen(tmp_path) -> None:
    d = str(tmp_path / "d")
    with logstore.open(d, background=False) as s:
        s.create_topic("t", partitions=3)
        with Producer(s) as p:
            for i in range(30):
                p.send("t", b"%d" % i, partition=i % 3)
        c = Consumer(s, "t", group_id="g", auto_offset_reset="earliest")
        first = c.poll(max_records=7)
        assert len(first) == 7
        c.commit()
        c.close()
    with logstore.open(d, background=False) as s:
        c = Consumer(s, "t", group_id="g", auto_offset_reset="none")
        rest = []
        while True:
            got = c.poll()
            if not got:
                break
            rest += got
        seen = {(r.partition, r.offset) for r in first + rest}
        assert len(first) + len(rest) == 30 == len(seen)
        assert {(r.partition, r.offset) for r in first}.isdisjoint({(r.partition, r.offset) for r in rest})
        assert c.committed(("t", 0)) == max([r.offset for r in first if r.partition == 0], default=-1) + 1


def test_commit_after_close_raises_and_commits_nothing(store) -> None:
    store.create_topic("t")
    store.partition("t", 0).append([(None, b"%d" % i) for i in range(5)])
    c = Consumer(store, "t", group_id="g", auto_offset_reset="earliest")
    c.poll(max_records=2)
    c.commit()
    c.poll()
    c.close()
    with pytest.raises(logstore.LogStoreError, match="consumer is closed"):
        c.commit()
    with pytest.raises(logstore.LogStoreError, match="consumer is closed"):
        c.poll()
    assert Consumer(store, "t", group_id="g").position(("t", 0)) == 2


def test_commit_refuses_unknown_partitions_and_bad_offsets(store) -> None:
    store.create_topic("t")
    c = Consumer(store, "t", group_id="g")
    with pytest.raises(logstore.UnknownTopicOrPartitionError, match="no partition 7"):
        c.commit({("t", 7): 3})
    with pytest.raises(logstore.UnknownTopicOrPartitionError, match="'nope'"):
        c.commit({("nope", 0): 3})
    with pytest.raises(ValueError, match="invalid offset -3"):
        c.commit({("t", 0): -3})
    with pytest.raises(TypeError, match="offset"):
        c.commit({("t", 0): "3"})
    assert c.committed(("t", 0)) is None
    c.commit({("t", 0): 1000})  # beyond the end is allowed, as Kafka allows it
    assert c.committed(("t", 0)) == 1000
    with pytest.raises(logstore.LogStoreError, match="group_id"):
        Consumer(store, "t").commit()


def test_auto_commit_gives_at_least_once_not_at_most_once(tmp_path) -> None:
    """With auto commit a poll's records count as processed when the application polls again
    (Kafka commits the previous poll's positions): a crash while processing gets them again."""
    d = str(tmp_path / "d")
    with logstore.open(d, background=False) as s:
        s.create_topic("t")
        s.partition("t", 0).append([(None, b"%d" % i) for i in range(10)])
        c = Consumer(s, "t", group_id="g", auto_offset_reset="earliest", enable_auto_commit=True)
        assert [r.offset for r in c.poll(max_records=4)] == [0, 1, 2, 3]
        assert [r.offset for r in c.poll(max_records=4)] == [4, 5, 6, 7]   # 0-3 processed
        # the application dies while processing 4-7: no close, no further poll
    with logstore.open(d, background=False) as s:
        c = Consumer(s, "t", group_id="g", auto_offset_reset="none", enable_auto_commit=True)
        assert [r.offset for r in c.poll()] == [4, 5, 6, 7, 8, 9]
        c.close()  # commits what that poll handed out
        assert Consumer(s, "t", group_id="g", auto_offset_reset="none").position(("t", 0)) == 10


def test_iteration_stops_after_consumer_timeout_ms(store) -> None:
    store.create_topic("t")
    store.partition("t", 0).append([(None, b"a"), (None, b"b")])
    c = Consumer(store, "t", auto_offset_reset="earliest", consumer_timeout_ms=0)
    t0 = time.monotonic()
    assert [r.value for r in c] == [b"a", b"b"]
    # a 0 ms timeout must not wait the iterator's internal 0.5 s poll step
    assert time.monotonic() - t0 < 0.45

    c = Consumer(store, "t", auto_offset_reset="earliest", consumer_timeout_ms=300)

    def later() -> None:
        time.sleep(0.05)
        store.partition("t", 0).append([(None, b"c")])

    t = threading.Thread(target=later)
    t.start()
    got = [r.value for r in c]
    t.join(JOIN)
    assert got == [b"a", b"b", b"c"]


def test_max_poll_records_and_bad_values(store) -> None:
    store.create_topic("t", partitions=2)
    for p in range(2):
        store.partition("t", p).append([(None, b"%d" % i) for i in range(5)])
    c = Consumer(store, "t", auto_offset_reset="earliest", max_poll_records=3)
    sizes = []
    while True:
        got = c.poll()
        if not got:
            break
        sizes.append(len(got))
    assert sum(sizes) == 10 and max(sizes) == 3
    with pytest.raises(ValueError, match="max_poll_records"):
        Consumer(store, "t", max_poll_records=0)
    with pytest.raises(ValueError, match="max_records"):
        c.poll(max_records=0)


def test_seek_position_and_committed(store) -> None:
    store.create_topic("t")
    lg = store.partition("t", 0)
    lg.append([(None, b"%d" % i) for i in range(10)])
    c = Consumer(store, "t", group_id="g", auto_offset_reset="latest")
    tp = ("t", 0)
    assert c.position(tp) == 10 and c.committed(tp) is None
    c.seek(tp, 4)
    assert [r.offset for r in c.poll()] == list(range(4, 10))
    c.seek(tp, 50)  # past the end: reset by auto_offset_reset (latest) at the next poll
    assert c.poll() == [] and c.position(tp) == 10
    with pytest.raises(ValueError, match="non-negative"):
        c.seek(tp, -1)
    with pytest.raises(TypeError, match="offset must be an int"):
        c.seek(tp, 1.5)
    with pytest.raises(logstore.UnknownTopicOrPartitionError, match="not assigned"):
        c.seek(("t", 1), 0)
    c.seek_to_beginning()
    assert c.position(tp) == 0
    c.seek_to_end()
    assert c.position(tp) == 10
    assert Consumer(store, "t").committed(tp) is None  # no group: nothing committed


def test_auto_offset_reset_none_without_commit(store) -> None:
    store.create_topic("t")
    with pytest.raises(logstore.OffsetOutOfRangeError, match="t-0 of group 'g'"):
        Consumer(store, "t", group_id="g", auto_offset_reset="none")
    with pytest.raises(logstore.OffsetOutOfRangeError, match="it has no group_id"):
        Consumer(store, "t", auto_offset_reset="none")


def test_partitions_added_while_a_consumer_polls(store) -> None:
    store.create_topic("t", 1)
    c = Consumer(store, "t", auto_offset_reset="earliest")
    got: list = []
    done = threading.Event()

    def consume() -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(got) < 3:
            got.extend(c.poll(timeout=0.05))
        done.set()

    t = threading.Thread(target=consume)
    t.start()
    store.create_partitions("t", 3)
    for p in range(3):
        store.partition("t", p).append([(None, b"p%d" % p)])
    t.join(JOIN)
    assert done.is_set()
    assert sorted((r.partition, r.value) for r in got) == [(0, b"p0"), (1, b"p1"), (2, b"p2")]
    assert c.assignment() == [("t", 0), ("t", 1), ("t", 2)]


def test_topic_deleted_and_recreated_under_a_consumer(store) -> None:
    """A deleted topic's partitions leave the assignment (a Kafka consumer reads nothing from a
    deleted topic); recreated, the topic is new: read from its start, not from stale positions."""
    store.create_topic("t", partitions=2)
    store.create_topic("u")
    for p in range(2):
        store.partition("t", p).append([(None, b"old") for _ in range(5)])
    c = Consumer(store, ["t", "u"], auto_offset_reset="earliest")
    assert len(c.poll()) + len(c.poll()) == 10
    store.delete_topic("t")
    store.partition("u", 0).append([(None, b"u")])
    assert [r.value for r in c.poll()] == [b"u"]
    assert c.assignment() == [("u", 0)]
    store.create_topic("t", partitions=1)
    store.partition("t", 0).append([(None, b"new")])
    got = c.poll()
    assert [(r.topic, r.partition, r.offset, r.value) for r in got] == [("t", 0, 0, b"new")]
    assert c.assignment() == [("t", 0), ("u", 0)]
    c.close()
    assert store.partition("t", 0).listeners == []  # close lets go of every Log


# -- Log: reads -------------------------------------------------------------------------------------
def test_read_edges(store) -> None:
    store.create_topic("t", config={"segment.bytes": "1000"})
    lg = store.partition("t", 0)
    for i in range(30):
        lg.append([(None, b"x" * 40, (), 1000 + 10 * i), (b"k", b"y" * 40, (), 1005 + 10 * i)])
    assert len(lg.segments) > 2
    assert [r.offset for r in lg.read(0, 1)] == [0, 1]        # less than a batch: one whole batch
    assert [r.offset for r in lg.read(1, 0)] == [1]
    assert [r.offset for r in lg.read(0, 1, max_records=1)] == [0]
    assert lg.read(lg.log_end_offset) == []
    with pytest.raises(logstore.OffsetOutOfRangeError, match="61 is out of range .* 0 to 60"):
        lg.read(61)
    assert lg.delete_records(10) == 10
    with pytest.raises(logstore.OffsetOutOfRangeError, match="offset 9 is out of range for partition t-0: "
                                                             "valid offsets are 10 to 60"):
        lg.read(9)
    with pytest.raises(logstore.OffsetOutOfRangeError, match="valid offsets are 10 to 60"):
        list(lg.iter_records(0))
    assert [r.offset for r in lg.iter_records()] == list(range(10, 60))
    # offset_for_timestamp: first record with timestamp >= t, at or after the log start
    assert lg.offset_for_timestamp(0) == (10, 1050)
    assert lg.offset_for_timestamp(1051) == (11, 1055)
    assert lg.offset_for_timestamp(1295) == (59, 1295)
    assert lg.offset_for_timestamp(1296) is None
    store.create_topic("e")
    assert store.partition("e", 0).offset_for_timestamp(0) is None
    with pytest.raises(logstore.OffsetOutOfRangeError, match="valid offsets are 10 to 60"):
        lg.delete_records(61)


# -- Log: concurrency --------------------------------------------------------------------------------
def test_concurrent_appends_reads_delete_records_retention_and_compaction(tmp_path) -> None:
    # background=False: rolls fsync inline. With the background thread a deferred roll flush can
    # race a segment's deletion (test_deferred_roll_flush_racing_segment_deletion below).
    s = logstore.open(str(tmp_path / "d"), background=False)
    small = {"segment.bytes": "2000", "file.delete.delay.ms": "5000"}
    s.create_topic("t", partitions=2, config={**small, "retention.bytes": "6000"})
    s.create_topic("c", config={**small, "cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01",
                                "delete.retention.ms": "0"})
    appended: dict[tuple[str, int, int], tuple] = {}
    lock = threading.Lock()
    errors: list[str] = []
    stop = threading.Event()
    seen: list[tuple] = []

    def guard(fn):
        def run(*a):
            try:
                fn(*a)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(f"{fn.__name__}{a}: {type(e).__name__}: {e}")
        return run

    @guard
    def appender(tid: int, topic: str, p: int) -> None:
        rng = random.Random(tid)
        lg = s.partition(topic, p)
        for i in range(150):
            recs = [(f"{tid}-{i % 7}".encode(), f"{tid}-{i}-{j}".encode() * rng.randint(1, 5))
                    for j in range(rng.randint(1, 4))]
            first = lg.append(recs)
            with lock:
                for j, r in enumerate(recs):
                    assert (topic, p, first + j) not in appended
                    appended[(topic, p, first + j)] = r

    @guard
    def reader(topic: str, p: int) -> None:
        rng = random.Random(p)
        lg = s.partition(topic, p)
        while not stop.is_set():
            try:
                off = rng.randint(lg.log_start_offset, lg.log_end_offset)
                seen.extend((topic, p, r.offset, r.key, r.value) for r in lg.read(off, rng.choice([1, 100, 5000])))
                seen.extend((topic, p, r.offset, r.key, r.value) for r in lg.iter_records(None, 500))
                lg.offset_for_timestamp(0)
            except logstore.OffsetOutOfRangeError:
                pass  # fell below the start while reading: documented

    @guard
    def deleter() -> None:
        lg = s.partition("t", 1)
        rng = random.Random(3)
        while not stop.is_set():
            # Log.delete_records: the store's also rewrites the start-offset checkpoint, and two
            # threads writing a checkpoint at once race on its .tmp file (store_checkpoint_lock.patch)
            lg.delete_records(rng.randint(lg.log_start_offset, lg.log_end_offset))
            time.sleep(0.002)

    @guard
    def maintenance() -> None:
        while not stop.is_set():
            s.run_retention()
            s.run_cleaner()
            s.flush()

    writers = [threading.Thread(target=appender, args=(i, "t", i % 2)) for i in range(4)]
    writers += [threading.Thread(target=appender, args=(10 + i, "c", 0)) for i in range(2)]
    others = [threading.Thread(target=reader, args=a) for a in (("t", 0), ("t", 1), ("c", 0))]
    others += [threading.Thread(target=deleter), threading.Thread(target=maintenance)]
    _run(writers + others)
    _join(writers)
    stop.set()
    _join(others)
    assert not errors, errors[:3]
    assert seen
    wrong = [x for x in seen if appended.get(x[:3]) != x[3:]]
    assert not wrong, wrong[:3]
    for topic, n in (("t", 2), ("c", 1)):
        for p in range(n):
            offs = sorted(o for (t, pp, o) in appended if (t, pp) == (topic, p))
            assert offs == list(range(len(offs)))  # contiguous and unique
    s.close()
    with logstore.open(str(tmp_path / "d"), background=False) as s2:
        for p in range(2):
            for r in s2.partition("t", p).iter_records():
                assert appended[("t", p, r.offset)] == (r.key, r.value)
        latest: dict[bytes, bytes] = {}
        for (t, _p, _o), (k, v) in sorted(appended.items()):
            if t == "c":
                latest[k] = v
        kept: dict[bytes, bytes] = {}
        for r in s2.partition("c", 0).iter_records():
            assert appended[("c", 0, r.offset)] == (r.key, r.value)
            kept[r.key] = r.value
        assert kept == latest  # compaction kept the newest record of every key


def test_deferred_roll_flush_racing_segment_deletion_keeps_the_partition_online(bg_store) -> None:
    """A roll with the background thread seals without fsync and queues the flush; when
    delete-records (or retention) renames the sealed segment `.deleted` between that flush's
    exists() and open() of an index file, the flush failed and took the partition offline."""
    s = bg_store
    s.create_topic("t", config={"segment.bytes": "1024"})
    lg = s.partition("t", 0)
    stop = threading.Event()
    errors: list[BaseException] = []

    def delete() -> None:
        while not stop.is_set():
            try:
                s.delete_records("t", 0, -1)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    t = threading.Thread(target=delete)
    t.start()
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 6 and not errors:
            lg.append([(None, b"v" * 600)])  # every append rolls
            assert lg.failed is None, lg.failed
    finally:
        stop.set()
        _join([t])
    assert not errors


# -- Store lifecycle ----------------------------------------------------------------------------------
def test_open_close_reopen_many_times(tmp_path) -> None:
    d = str(tmp_path / "d")
    with logstore.open(d, background=False) as s:
        s.create_topic("t")
    for i in range(25):
        with logstore.open(d, background=(i % 2 == 0)) as s:
            assert s.clean_open
            assert s.partition("t", 0).append([(None, b"%d" % i)]) == i
    with logstore.open(d, background=False) as s:
        assert [r.value for r in s.partition("t", 0).iter_records()] == [b"%d" % i for i in range(25)]


def test_a_second_open_from_another_process_fails_at_once(tmp_path) -> None:
    d = str(tmp_path / "d")
    with logstore.open(d, background=False) as s:
        s.create_topic("t")
        code = ("import logstore, sys\n"
                "try:\n    logstore.open(sys.argv[1])\n"
                "except logstore.LogDirLockedError as e:\n    print(e); sys.exit(3)\n")
        r = subprocess.run([sys.executable, "-c", code, d], capture_output=True, text=True, timeout=60)
        assert r.returncode == 3, r.stderr
        assert d in r.stdout and f"pid {os.getpid()}" in r.stdout
        with pytest.raises(logstore.LogDirLockedError, match="already open"):
            logstore.open(d)


def test_producer_and_consumer_over_a_closed_store_fail_clearly(tmp_path) -> None:
    s = logstore.open(str(tmp_path / "d"), background=False)
    s.create_topic("t")
    s.partition("t", 0).append([(None, b"a")])
    c = Consumer(s, "t", auto_offset_reset="earliest")
    s.close()
    with pytest.raises(logstore.StoreClosedError):
        Producer(s).send("t", b"v").get()
    with pytest.raises(logstore.StoreClosedError):
        s.create_topic("u")


def test_store_refuses_delete_records_and_consumers_stop_after_close(tmp_path) -> None:
    d = str(tmp_path / "d")
    s = logstore.open(d, background=False)
    s.create_topic("t")
    s.partition("t", 0).append([(None, b"%d" % i) for i in range(5)])
    c = Consumer(s, "t", auto_offset_reset="earliest")
    s.close()
    ckpt = os.path.join(d, "log-start-offset-checkpoint")
    before = open(ckpt).read()
    with pytest.raises(logstore.StoreClosedError):
        s.delete_records("t", 0, 3)
    assert open(ckpt).read() == before  # no write to a log dir this store no longer owns
    with pytest.raises(logstore.StoreClosedError):
        c.poll()  # not records read through a descriptor reopened after close


def test_a_log_used_after_store_close_changes_nothing(tmp_path) -> None:
    d = str(tmp_path / "d")
    s = logstore.open(d, background=False)
    s.create_topic("t", config={"segment.bytes": "1000"})
    lg = s.partition("t", 0)
    for _ in range(30):
        lg.append([(None, b"x" * 40), (b"k", b"y" * 40)])
    s.close()
    files = sorted(os.listdir(os.path.join(d, "t-0")))
    for op in (lambda: lg.append([(None, b"z")]), lambda: lg.delete_records(30),
               lambda: lg.truncate_to(40), lambda: lg.truncate_fully(5), lambda: lg.roll(),
               lambda: lg.read(0), lambda: lg.offset_for_timestamp(0)):
        with pytest.raises(logstore.StoreClosedError, match="t-0 is closed"):
            op()
    assert sorted(os.listdir(os.path.join(d, "t-0"))) == files
    with logstore.open(d, background=False) as s2:
        lg2 = s2.partition("t", 0)
        assert (lg2.log_start_offset, lg2.log_end_offset) == (0, 60)


def test_a_stale_log_of_a_deleted_topic_cannot_touch_the_recreated_topic(tmp_path) -> None:
    d = str(tmp_path / "d")
    s = logstore.open(d, background=False)
    s.create_topic("t", config={"segment.bytes": "1000"})
    old = s.partition("t", 0)
    for _ in range(30):
        old.append([(None, b"x" * 40)])
    s.delete_topic("t")
    s.create_topic("t")
    new = s.partition("t", 0)
    new.append([(None, b"new")])
    for op in (lambda: old.append([(None, b"z")]), lambda: old.read(0), lambda: old.delete_records(0),
               lambda: old.truncate_to(0), lambda: old.truncate_fully(0)):
        with pytest.raises(logstore.StoreClosedError, match="t-0 is closed"):
            op()
    s.close()
    with logstore.open(d, background=False) as s2:
        assert [r.value for r in s2.partition("t", 0).iter_records()] == [b"new"]


def test_log_append_refuses_an_int_value_instead_of_storing_zero_bytes(store) -> None:
    store.create_topic("t")
    lg = store.partition("t", 0)
    for bad in ([(None, 5)], [(b"k", 3)], [(7, b"v")], [(None, [1, 2])], [(None, b"ok", [("h", 4)])]):
        with pytest.raises(TypeError, match="must be bytes-like"):
            lg.append(bad)
    assert lg.log_end_offset == 0
