"""QA of the embedded API as an application developer meets it, from README's "Embedded use"
and the docstrings only: the README example run as written, `Consumer` iteration, use after
close, a store closed under a producer or consumer, a send racing `Producer.close`, batches over
`max.message.bytes`, LogAppendTime metadata, consumers dropped without close, threads producing
while a consumer follows the tail, a second process on the same dir, retention and compaction
set through the API, bad arguments, `tools.verify_dir` on a dir in use, Kafka's coarse time
config names, and the same log dir served afterwards to real Kafka clients (and back). Real
files in tmp_path, real threads, processes and sockets on 127.0.0.1; every wait has a deadline."""

from __future__ import annotations

import gc
import inspect
import os
import subprocess
import sys
import textwrap
import threading
import time
import typing
from pathlib import Path

import pytest

import logstore
from logstore import Consumer, Producer

JOIN = 60  # seconds: a thread still alive after this is a deadlock, not a slow machine
README = Path(__file__).resolve().parent.parent / "README.md"


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(JOIN)
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still running (deadlock?): {alive}"


def _drain(c: Consumer, n: int, deadline_s: float = 20.0) -> list:
    got: list = []
    deadline = time.monotonic() + deadline_s
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {len(got)} of {n} records within {deadline_s}s"
        got += c.poll(timeout=0.2)
    return got


# -- README, exports, signatures ----------------------------------------------------------------------
def _readme_embedded_example() -> str:
    text = README.read_text()
    section = text[text.index("## Embedded use"):]
    start = section.index("```python") + len("```python")
    return textwrap.dedent(section[start:section.index("```", start)])


def test_readme_embedded_example_runs_as_written_and_its_commit_survives(tmp_path) -> None:
    code = _readme_embedded_example()
    assert "logstore.open(\"data\")" in code
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    part, off = map(int, lines[0].split())       # print(meta.partition, meta.offset) of the null-key record
    keyed = logstore.murmur2(b"user-1") & 0x7FFFFFFF
    assert 0 <= part < 3 and off == (1 if part == keyed % 3 else 0)  # get() flushed its own partition only
    printed = sorted(lines[1:3])
    expected = sorted([f"{keyed % 3} 0 b'user-1' b'hello'", f"{part} {1 if part == keyed % 3 else 0} None b'no key'"])
    if part == keyed % 3:  # both in one partition: the keyed batch went first
        expected = sorted([f"{part} 0 b'user-1' b'hello'", f"{part} 1 None b'no key'"])
    assert printed == expected, r.stdout
    with logstore.open(str(tmp_path / "data"), background=False) as s:
        assert s.topic_config("events").retention_ms == 86400000
        c = Consumer(s, "events", group_id="billing", auto_offset_reset="none")
        assert c.poll() == []  # the example's commit() holds: nothing left for the group
        assert sum(c.committed(("events", p)) for p in range(3)) == 2


def test_module_docstring_example_runs(tmp_path, capsys) -> None:
    code = textwrap.dedent(logstore.__doc__.split("\n\n")[1])
    assert "logstore.open(\"data\")" in code
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "<logstore docstring>", "exec"), {})
    finally:
        os.chdir(cwd)
    assert capsys.readouterr().out == "0 b'key' b'value'\n"


def test_readme_names_exist_with_the_parameters_it_lists(store) -> None:
    for name in logstore.__all__:
        assert hasattr(logstore, name), name
    for name in ("open", "Producer", "Consumer", "ConsumerRecord", "RecordMetadata", "Record"):
        assert name in logstore.__all__
    assert list(inspect.signature(Producer).parameters) == ["store", "partitioner", "batch_size", "compression_type"]
    assert list(inspect.signature(Producer.send).parameters) == \
        ["self", "topic", "value", "key", "headers", "partition", "timestamp"]
    cparams = inspect.signature(Consumer).parameters
    for p in ("store", "topics", "group_id", "auto_offset_reset", "enable_auto_commit", "max_poll_records",
              "consumer_timeout_ms"):
        assert p in cparams, p
    assert list(inspect.signature(Consumer.poll).parameters) == ["self", "timeout", "max_records"]
    for m in ("poll", "position", "seek", "seek_to_beginning", "seek_to_end", "committed", "commit", "close"):
        assert callable(getattr(Consumer, m)), m
    store.create_topic("t")
    lg = store.partition("t", 0)
    for m in ("append", "append_batch", "read", "read_bytes", "offset_for_timestamp", "delete_records", "flush"):
        assert callable(getattr(lg, m)), m
    assert logstore.RecordMetadata._fields == ("topic", "partition", "offset", "timestamp")
    assert logstore.ConsumerRecord._fields[:3] == ("topic", "partition", "offset")
    # public functions carry type hints that resolve
    for fn in (Producer.send, Producer.flush, Producer.close, Consumer.poll, Consumer.commit, Consumer.position,
               Consumer.seek, Consumer.committed, logstore.open, logstore.client.FutureRecordMetadata.get):
        hints = typing.get_type_hints(fn)
        assert "return" in hints, fn.__qualname__
    # ConsumerRecord.headers is what it holds: Record's tuple of pairs, () when there are none
    lg.append([(None, b"v")])
    rec = Consumer(store, "t", auto_offset_reset="earliest").poll()[0]
    assert typing.get_origin(typing.get_type_hints(logstore.ConsumerRecord)["headers"]) is tuple
    assert rec.headers == () and isinstance(rec.headers, tuple)


# -- Consumer iteration ---------------------------------------------------------------------------------
def test_breaking_out_of_iteration_loses_none_of_the_polled_records(tmp_path) -> None:
    """kafka-python's iterator moves a partition's position past a record when it yields it. Here
    it jumped to the end of the whole poll: a loop left with `break` and a commit (or a second
    loop) skipped every record the poll had read beyond the one the loop stopped at."""
    d = str(tmp_path / "d")
    with logstore.open(d, background=False) as s:
        s.create_topic("t", partitions=2)
        for p in range(2):
            s.partition("t", p).append([(None, b"%d-%d" % (p, i)) for i in range(10)])
        c = Consumer(s, "t", group_id="g", auto_offset_reset="earliest", consumer_timeout_ms=200)
        seen = []
        for rec in c:
            seen.append((rec.partition, rec.offset))
            if len(seen) == 3:
                break
        p0 = seen[0][0]
        assert seen == [(p0, 0), (p0, 1), (p0, 2)]
        assert c.position(("t", p0)) == 3
        c.commit()
        assert c.committed(("t", p0)) == 3
        again = [(r.partition, r.offset) for r in c]  # a new loop resumes after the last yielded
        assert sorted(again + seen) == sorted((p, i) for p in range(2) for i in range(10))
        c.commit()
        # and a seek in the loop drops the rest of that partition's polled records
        c2 = Consumer(s, "t", auto_offset_reset="earliest", consumer_timeout_ms=200)
        out = []
        for rec in c2:
            out.append((rec.partition, rec.offset))
            if (rec.partition, rec.offset) == (p0, 4):
                c2.seek(("t", p0), 8)
        assert [o for p, o in out if p == p0] == [0, 1, 2, 3, 4, 8, 9]
    with logstore.open(d, background=False) as s:  # the commit made after the break was durable
        c = Consumer(s, "t", group_id="g", auto_offset_reset="none")
        assert [c.committed(("t", p)) for p in range(2)] == [10, 10]


def test_auto_commit_on_close_mid_iteration_commits_only_what_was_yielded(store) -> None:
    store.create_topic("t")
    store.partition("t", 0).append([(None, b"%d" % i) for i in range(20)])
    with Consumer(store, "t", group_id="g", auto_offset_reset="earliest", enable_auto_commit=True) as c:
        for rec in c:
            if rec.offset == 6:
                c.close()  # closing in the loop ends it: nothing after offset 6 is yielded
    assert rec.offset == 6
    c = Consumer(store, "t", group_id="g", auto_offset_reset="none")
    assert c.position(("t", 0)) == 7


def test_a_consumer_following_the_tail_sees_every_record_of_producer_threads(store) -> None:
    """Three threads produce (their own partition, and one shared) while a consumer iterates the
    tail: every record arrives once, in per-partition offset order, each thread's records in its
    send order, and each is seen promptly after its batch was appended (the wait is woken, not a
    0.5 s poll step)."""
    store.create_topic("t", partitions=3)
    n = 300
    producer = Producer(store, batch_size=200)
    c = Consumer(store, "t", auto_offset_reset="earliest", consumer_timeout_ms=5000)
    got: list = []
    late: list[float] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for rec in c:
                got.append(rec)
                late.append(time.monotonic() - int(rec.value.split(b"|")[1]) / 1e9)
                if len(got) == 4 * n:
                    return
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def produce(tid: int) -> None:
        try:
            for i in range(n):
                producer.send("t", b"%d-%d|%d" % (tid, i, time.monotonic_ns()), partition=tid)
                producer.send("t", b"s%d-%d|%d" % (tid, i, time.monotonic_ns()), partition=2)
                if i % 50 == 49:
                    producer.flush()
                    time.sleep(0.01)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=consume, name="tail")]
    threads += [threading.Thread(target=produce, args=(i,), name=f"produce-{i}") for i in range(2)]
    for t in threads:
        t.start()
    _join(threads[1:])
    producer.close()
    _join(threads[:1])
    assert not errors, errors
    assert len(got) == 4 * n
    for p in range(3):
        offs = [r.offset for r in got if r.partition == p]
        assert offs == list(range(len(offs)))  # dense, unique, in order
    for tid in range(2):
        mine = [r.value.split(b"|")[0] for r in got if r.value.startswith(b"%d-" % tid)]
        assert mine == [b"%d-%d" % (tid, i) for i in range(n)]
        shared = [r.value.split(b"|")[0] for r in got if r.value.startswith(b"s%d-" % tid)]
        assert shared == [b"s%d-%d" % (tid, i) for i in range(n)]
    assert sorted(late)[len(late) // 2] < 0.4, "the tail reader was not woken by appends"


# -- close, and a closed store ---------------------------------------------------------------------------
def test_a_closed_consumer_says_so_for_every_call(store) -> None:
    store.create_topic("t")
    c = Consumer(store, "t", group_id="g")
    c.close()
    c.close()  # idempotent
    tp = ("t", 0)
    for call in (lambda: c.position(tp), lambda: c.seek(tp, 0), lambda: c.seek_to_beginning(),
                 lambda: c.seek_to_end(), lambda: c.assignment(), lambda: c.committed(tp), lambda: c.poll(),
                 lambda: c.commit()):
        with pytest.raises(logstore.LogStoreError, match="consumer is closed"):
            call()


def test_poll_and_send_on_a_closed_store_raise_instead_of_waiting_forever(tmp_path) -> None:
    """A consumer that had caught up polled a closed store as an empty one: poll returned [] and
    iteration without consumer_timeout_ms never ended; a send returned a future for a record that
    could never be appended."""
    s = logstore.open(str(tmp_path / "d"), background=False)
    s.create_topic("t")
    s.partition("t", 0).append([(None, b"a")])
    caught_up = Consumer(s, "t", auto_offset_reset="latest")
    p = Producer(s)
    s.close()
    with pytest.raises(logstore.StoreClosedError, match="is closed"):
        caught_up.poll(timeout=5)
    with pytest.raises(logstore.StoreClosedError, match="cannot send to 't'"):
        p.send("t", b"v")
    p.close()


def test_iteration_ends_with_an_error_when_another_thread_closes_the_store(tmp_path) -> None:
    s = logstore.open(str(tmp_path / "d"), background=False)
    s.create_topic("t", partitions=2)
    c = Consumer(s, "t", auto_offset_reset="latest")  # consumer_timeout_ms=None: iterate forever
    outcome: list = []
    waiting = threading.Event()

    def follow() -> None:
        try:
            waiting.set()
            for _ in c:
                pass
            outcome.append("ended")
        except BaseException as e:  # noqa: BLE001 - examined below
            outcome.append(e)

    t = threading.Thread(target=follow, name="follow", daemon=True)  # a regression must fail, not hang
    t.start()
    assert waiting.wait(JOIN)
    time.sleep(0.1)  # let it park in its wait for an append
    t0 = time.monotonic()
    s.close()
    t.join(10)
    assert not t.is_alive(), "iteration over a closed store went on"
    assert isinstance(outcome[0], logstore.StoreClosedError), outcome
    assert time.monotonic() - t0 < 5


def test_a_send_racing_close_is_either_flushed_by_it_or_refused(store) -> None:
    """send checked `closed` before taking the producer's lock: a send that passed the check while
    close() flushed added its record after the flush, and its future was never completed (the
    record was appended only if someone called get(), after close)."""
    store.create_topic("t")
    stranded = sent = 0
    for _ in range(15):
        p = Producer(store, batch_size=1 << 20)
        futs: list = []
        stop = threading.Event()
        started = threading.Barrier(4)

        def work() -> None:
            started.wait(JOIN)
            while not stop.is_set():
                try:
                    futs.append(p.send("t", b"x"))
                except logstore.LogStoreError:  # "producer is closed"
                    return

        threads = [threading.Thread(target=work, name=f"send-{i}") for i in range(3)]
        for t in threads:
            t.start()
        started.wait(JOIN)
        time.sleep(0.005)
        p.close()
        stop.set()
        _join(threads)
        stranded += sum(not f.done() for f in futs)
        sent += len(futs)
    assert stranded == 0
    assert store.partition("t", 0).log_end_offset == sent  # every future returned is an appended record


def test_a_consumer_dropped_without_close_leaves_no_append_listener(store) -> None:
    store.create_topic("t", partitions=2)
    lg = store.partition("t", 0)
    before = len(lg.listeners)
    for _ in range(30):
        Consumer(store, "t", auto_offset_reset="earliest").poll()
    with pytest.raises(logstore.OffsetOutOfRangeError):  # a constructor that fails half-way
        Consumer(store, "t", group_id="nobody", auto_offset_reset="none")
    gc.collect()
    assert len(lg.listeners) == before
    assert len(store.partition("t", 1).listeners) == before


# -- Producer batches -----------------------------------------------------------------------------------
def test_a_batch_over_max_message_bytes_is_split_not_refused(store) -> None:
    """Records that each fit the topic's max.message.bytes but gather into a larger batch (the
    default batch_size 16384 over a topic with max.message.bytes 2000) were all refused with
    RecordTooLargeError; Kafka's producer splits such a batch. A record too large on its own
    still fails, alone."""
    store.create_topic("small", config={"max.message.bytes": "2000"})
    p = Producer(store)
    futs = [p.send("small", b"%03d" % i + b"x" * 47, key=b"k%d" % i) for i in range(100)]
    big = p.send("small", b"y" * 3000)
    after = p.send("small", b"after")
    with pytest.raises(logstore.RecordTooLargeError, match="max.message.bytes 2000"):
        p.flush()
    assert [f.get().offset for f in futs] == list(range(100))
    with pytest.raises(logstore.RecordTooLargeError):
        big.get()
    assert after.get().offset == 100
    recs = store.partition("small", 0).read(0, 1 << 20, max_records=1000)
    assert [r.value[:3] for r in recs[:100]] == [b"%03d" % i for i in range(100)]
    assert recs[100].value == b"after" and len(recs) == 101
    # the same with compression and a batch_size far above the limit
    p2 = Producer(store, batch_size=1 << 20, compression_type="gzip")
    vals = [os.urandom(300) for _ in range(50)]
    f2 = [p2.send("small", v) for v in vals]
    p2.close()
    assert [f.get().offset for f in f2] == list(range(101, 151))
    assert [r.value for r in store.partition("small", 0).read(101, 1 << 20, max_records=1000)] == vals


def test_record_metadata_timestamp_is_the_log_append_time_on_such_a_topic(store) -> None:
    """Kafka's RecordMetadata.timestamp is the broker's append time on a LogAppendTime topic;
    the embedded producer returned the create time it was given, which the log had replaced."""
    store.create_topic("lat", config={"message.timestamp.type": "LogAppendTime"})
    store.create_topic("ct")
    p = Producer(store)
    before = int(time.time() * 1000)
    m = p.send("lat", b"v", timestamp=1000).get()
    m2 = p.send("ct", b"v", timestamp=1000).get()
    stored = store.partition("lat", 0).read(0)[0].timestamp
    assert m.timestamp == stored >= before
    assert m2.timestamp == 1000 == store.partition("ct", 0).read(0)[0].timestamp
    p.close()


# -- bad input -------------------------------------------------------------------------------------------
def test_out_of_range_with_reset_none_names_the_offset_not_a_missing_commit(store) -> None:
    store.create_topic("t")
    store.partition("t", 0).append([(None, b"%d" % i) for i in range(5)])
    c = Consumer(store, "t", group_id="g", auto_offset_reset="earliest")
    c.commit({("t", 0): 2})
    c = Consumer(store, "t", group_id="g", auto_offset_reset="none")
    store.delete_records("t", 0, 4)  # the committed offset 2 is below the log start now
    with pytest.raises(logstore.OffsetOutOfRangeError, match=r"offset 2 is out of range for partition t-0: "
                                                             r"valid offsets are 4 to 5.*auto_offset_reset is 'none'"):
        c.poll()
    c.seek(("t", 0), 4)
    assert [r.offset for r in c.poll()] == [4]


@pytest.mark.parametrize("timeout, exc", [(None, TypeError), ("1", TypeError), (-1, ValueError), (True, TypeError)])
def test_poll_timeout_must_be_a_non_negative_number(store, timeout, exc) -> None:
    store.create_topic("t")
    c = Consumer(store, "t")
    with pytest.raises(exc, match="timeout"):
        c.poll(timeout=timeout)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"topics": b"t"}, TypeError, "topics must be a topic name"),   # was "unknown topic 116"
    ({"topics": 5}, TypeError, "topics must be a topic name"),
    ({"topics": ["t", 7]}, TypeError, "a topic name must be a str, not int"),
    ({"group_id": 5}, TypeError, "group_id must be a str"),         # was AttributeError at first use
    ({"fetch_max_bytes": "1M"}, TypeError, "fetch_max_bytes must be an int"),  # was a TypeError in poll
    ({"consumer_timeout_ms": "100"}, TypeError, "consumer_timeout_ms must be a number"),
])
def test_bad_consumer_arguments_fail_at_construction_naming_the_argument(store, kwargs, exc, match) -> None:
    store.create_topic("t")
    args = {"topics": "t", **kwargs}
    with pytest.raises(exc, match=match):
        Consumer(store, args.pop("topics"), **args)


@pytest.mark.parametrize("cls", [Producer, Consumer])
@pytest.mark.parametrize("given", ["data", "127.0.0.1:9092", Path("data")])
def test_a_path_or_address_instead_of_a_store_is_refused_at_once(cls, given) -> None:
    """`Producer("127.0.0.1:9092")` (a kafka-python habit) or a path made a Producer that failed
    at its first send with AttributeError: 'str' object has no attribute 'topic'."""
    with pytest.raises(TypeError, match=r"store must be a LogStore \(logstore.open\(path\)\), not .*open the log dir"):
        cls(given) if cls is Producer else cls(given, "t")


def test_a_negative_consumer_timeout_never_ends_iteration_as_in_kafka_python(store) -> None:
    """kafka-python: a negative consumer_timeout_ms (its default is inf) means iterate forever;
    here -1 ended the loop as soon as there was nothing to read."""
    store.create_topic("t")
    lg = store.partition("t", 0)
    lg.append([(None, b"%d" % i) for i in range(3)])
    c = Consumer(store, "t", auto_offset_reset="earliest", consumer_timeout_ms=-1)
    assert c.assignment() == [("t", 0)]
    have_three = threading.Event()

    def append_later() -> None:
        have_three.wait(JOIN)
        time.sleep(0.05)
        lg.append([(None, b"3")])

    t = threading.Thread(target=append_later, daemon=True)
    t.start()
    got = []
    for rec in c:
        got.append(rec.value)
        if len(got) == 3:
            have_three.set()
        if len(got) == 4:
            break
    _join([t])
    assert got == [b"0", b"1", b"2", b"3"]
    assert Consumer(store, ["t", "t"]).assignment() == [("t", 0)]


def test_bad_topics_and_partitions_name_what_is_wrong_and_change_nothing(store) -> None:
    store.create_topic("t", partitions=2)
    for bad in ("", "a b", "x" * 250, ".."):
        with pytest.raises(logstore.InvalidTopicError, match="invalid topic name"):
            store.create_topic(bad)
    for n in (0, -1, 10**9):
        with pytest.raises(logstore.InvalidPartitionsError, match="invalid partition count"):
            store.create_topic("u", partitions=n)
    with pytest.raises(logstore.UnknownTopicOrPartitionError, match="unknown topic 'nope'"):
        Consumer(store, ["t", "nope"])
    p = Producer(store)
    for part in (2, -1, 2**40):
        with pytest.raises(logstore.UnknownTopicOrPartitionError, match=f"'t' has no partition {part}"):
            p.send("t", b"v", partition=part)
    store.delete_topic("t")
    with pytest.raises(logstore.UnknownTopicOrPartitionError, match="unknown topic 't'"):
        p.send("t", b"v")
    with pytest.raises(logstore.UnknownTopicOrPartitionError, match="unknown topic 't'"):
        store.partition("t", 0)
    p.close()
    assert store.topics() == []


# -- processes, retention, the broker --------------------------------------------------------------------
_HOLDER = """
import logstore, sys
d = sys.argv[1]
with logstore.open(d, background=False) as s:
    s.create_topic("t")
    p = logstore.Producer(s)
    p.send("t", b"before").get()
    print("ready", flush=True)
    sys.stdin.readline()          # the parent tries its open now
    print(p.send("t", b"after").get().offset, flush=True)
    p.close()
"""


def test_a_second_process_is_refused_and_the_owner_keeps_working(tmp_path) -> None:
    d = str(tmp_path / "d")
    owner = subprocess.Popen([sys.executable, "-c", _HOLDER, d], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert owner.stdout.readline().strip() == "ready"
        with pytest.raises(logstore.LogDirLockedError) as e:
            logstore.open(d)
        assert os.path.abspath(d) in str(e.value) and f"pid {owner.pid}" in str(e.value)
        owner.stdin.write("\n")
        owner.stdin.flush()
        assert owner.stdout.readline().strip() == "1"
        assert owner.wait(60) == 0
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    with logstore.open(d, background=False) as s:
        assert s.clean_open
        assert [r.value for r in s.partition("t", 0).iter_records()] == [b"before", b"after"]


def test_retention_set_through_the_api_runs_in_the_background_and_consumers_follow(tmp_path) -> None:
    s = logstore.open(str(tmp_path / "d"), {"log.retention.check.interval.ms": "50"})
    try:
        s.create_topic("t", config={"segment.bytes": "1024", "file.delete.delay.ms": "0"})
        c = Consumer(s, "t", group_id="g", auto_offset_reset="earliest")
        old = int(time.time() * 1000) - 3_600_000
        with Producer(s, batch_size=0) as p:
            for i in range(40):
                p.send("t", b"%d" % i + b"x" * 100, timestamp=old + i)
        c.commit({("t", 0): 0})
        lg = s.partition("t", 0)
        assert len(lg.segments) > 3 and lg.log_start_offset == 0
        s.alter_topic_config("t", {"retention.ms": "60000"})  # an hour-old data: all of it goes
        deadline = time.monotonic() + 20
        while lg.log_start_offset < 40:
            assert time.monotonic() < deadline, f"retention did not run: start {lg.log_start_offset}"
            time.sleep(0.02)
        with Producer(s) as p:
            p.send("t", b"new")
        # the group's committed 0 is below the start now: reset to earliest, which is the new record
        c2 = Consumer(s, "t", group_id="g", auto_offset_reset="earliest")
        assert [(r.offset, r.value) for r in c2.poll()] == [(40, b"new")]
    finally:
        s.close()


def test_compaction_set_through_the_api_runs_in_the_background(tmp_path) -> None:
    s = logstore.open(str(tmp_path / "d"), {"log.cleaner.backoff.ms": "50"})
    try:
        s.create_topic("c", config={"cleanup.policy": "compact", "segment.bytes": "1000",
                                    "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"})
        latest: dict[bytes, bytes | None] = {}
        with Producer(s, batch_size=0) as p:
            for i in range(60):
                k, v = b"k%d" % (i % 5), b"v%d" % i + b"x" * 40
                p.send("c", v, key=k)
                latest[k] = v
            p.send("c", None, key=b"k0")
            latest[b"k0"] = None
        lg = s.partition("c", 0)
        deadline = time.monotonic() + 20
        while sum(1 for _ in lg.iter_records()) > 20:
            assert time.monotonic() < deadline, "the background cleaner did not compact the topic"
            time.sleep(0.02)
        c = Consumer(s, "c", auto_offset_reset="earliest")
        state: dict[bytes, bytes | None] = {}
        while c.position(("c", 0)) < lg.log_end_offset:
            for r in c.poll(timeout=1):
                state[r.key] = r.value
        assert state == latest  # the newest record of every key survived, the tombstone last
    finally:
        s.close()


def test_embedded_data_and_commits_served_to_a_kafka_client_and_back(tmp_path, capsys) -> None:
    """What the embedded API wrote (keys, headers with a null value, explicit timestamps, every
    codec) and the group offsets it committed are what a real Kafka client gets from `logstore serve`
    on the same dir; what that client produces and commits the embedded API reads back."""
    ck = pytest.importorskip("confluent_kafka")
    from broker.cli import main as cli_main
    from broker.pytest_plugin import start_broker

    d = str(tmp_path / "data")
    sent = [(b"k%d" % i if i % 3 else None, bytes([i]) * (i % 7), [("h", b"%d" % i), ("n", None)] if i % 2 else [],
             1_700_000_000_000 + i) for i in range(30)]
    with logstore.open(d, background=False) as s:
        s.create_topic("e", partitions=2)
        with Producer(s, compression_type="gzip") as p:
            metas = [p.send("e", v, key=k, headers=h, timestamp=ts, partition=i % 2)
                     for i, (k, v, h, ts) in enumerate(sent)]
        c = Consumer(s, "e", group_id="emb", auto_offset_reset="earliest")
        c.commit({("e", 0): 5, ("e", 1): 0})
        s.create_topic("z", partitions=4)
        codecs = ["none", "snappy", "lz4", "zstd"]
        zsent = {(p, i): (b"z%d" % i, os.urandom(20) * 3) for p in range(4) for i in range(5)}
        for p, codec in enumerate(codecs):
            with Producer(s, compression_type=codec) as zp:
                for i in range(5):
                    zp.send("z", zsent[(p, i)][1], key=zsent[(p, i)][0], partition=p, timestamp=1_600_000_000_000 + i)
    where = {(m.get().partition, m.get().offset): rec for m, rec in zip(metas, sent)}

    b = start_broker(d, overrides={"group.initial.rebalance.delay.ms": "0"})
    try:
        # `logstore consumer-groups` (in this process: a second interpreter start costs seconds here)
        assert cli_main(["consumer-groups", "--bootstrap-server", b.bootstrap, "--describe", "--group", "emb"]) == 0
        out = capsys.readouterr().out
        rows = {tuple(line.split()[1:5]) for line in out.splitlines() if line.startswith("emb ")}
        assert rows == {("e", "0", "5", "15"), ("e", "1", "0", "15")}, out
        kc = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "emb", "enable.auto.commit": False,
                          "auto.offset.reset": "error", "log_level": 3})
        try:
            kc.subscribe(["e"])
            got = {}
            deadline = time.monotonic() + 30
            while len(got) < 25:
                assert time.monotonic() < deadline, f"client got {len(got)} of 25"
                m = kc.poll(0.5)
                if m is None:
                    continue
                assert m.error() is None, m.error()
                got[(m.partition(), m.offset())] = (m.key(), m.value() or b"", m.headers() or [], m.timestamp())
            expected = {tp: (k, v, h, (ck.TIMESTAMP_CREATE_TIME, ts)) for tp, (k, v, h, ts) in where.items()
                        if not (tp[0] == 0 and tp[1] < 5)}
            assert got == expected
            kc.commit(offsets=[ck.TopicPartition("e", 0, 12)], asynchronous=False)
        finally:
            kc.close()
        zc = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "z-reader", "enable.auto.commit": False,
                          "log_level": 3})
        try:  # every codec the embedded producer writes is one a Kafka client reads
            zc.assign([ck.TopicPartition("z", p, 0) for p in range(4)])
            zgot = {}
            deadline = time.monotonic() + 30
            while len(zgot) < 20:
                assert time.monotonic() < deadline, f"client got {len(zgot)} of 20 from 'z'"
                m = zc.poll(0.5)
                if m is None:
                    continue
                assert m.error() is None, m.error()
                zgot[(m.partition(), m.offset())] = (m.key(), m.value())
                assert m.timestamp() == (ck.TIMESTAMP_CREATE_TIME, 1_600_000_000_000 + m.offset())
            assert zgot == zsent
        finally:
            zc.close()
        kp = ck.Producer({"bootstrap.servers": b.bootstrap, "log_level": 3})
        kp.produce("e", b"from-client", key=b"ck", partition=1, headers=[("x", b"\x00\xff")], timestamp=1234)
        assert kp.flush(30) == 0
        del kp  # no reconnect attempts to the stopped broker
    finally:
        assert b.stop() == 0, b.log()[-2000:]

    with logstore.open(d, background=False) as s:
        c = Consumer(s, "e", group_id="emb", auto_offset_reset="none")
        assert c.position(("e", 0)) == 12
        recs = _drain(c, 3 + 16)
        assert [(r.partition, r.offset) for r in recs if r.partition == 0] == [(0, 12), (0, 13), (0, 14)]
        last = recs[-1] if recs[-1].partition == 1 else [r for r in recs if r.partition == 1][-1]
        assert (last.offset, last.key, last.value, last.headers, last.timestamp) == \
            (15, b"ck", b"from-client", (("x", b"\x00\xff"),), 1234)


# -- tools ------------------------------------------------------------------------------------------------
def test_verify_of_a_dir_in_use_reports_no_false_damage_but_still_finds_real_damage(tmp_path) -> None:
    """`verify_dir` on a log dir a store has open reported every active segment's preallocated
    index (zero entries past the used ones) as bad: "entry 0 says offset 0 but the batch at
    position 0 ends at offset 4". Damage in a sealed segment is still found while the dir is live."""
    from logstore import tools

    d = str(tmp_path / "d")
    s = logstore.open(d, background=False)
    try:
        s.create_topic("t", partitions=2, config={"segment.bytes": "1000"})
        with Producer(s) as p:
            for i in range(40):
                p.send("t", b"v%d" % i + b"x" * 60, key=b"k", headers=[("h", None)], partition=i % 2)
                if i % 6 == 5:
                    p.flush()  # batches of three records: a zero index entry is no batch's last offset
        assert all(len(s.partition("t", q).segments) > 1 for q in range(2))
        report = tools.verify_dir(d, deep=True)
        assert report.ok, [str(x) for x in report.problems]
        assert report.live and tools.dir_in_use(d)
        assert sum(ps.records for ps in report.partitions if ps.name.startswith("t-")) == 40
        sealed = os.path.join(d, "t-0", "00000000000000000000.log")
        with open(sealed, "r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 0xFF]))
        report = tools.verify_dir(d)
        assert [(x.path, "CRC mismatch" in x.message) for x in report.problems] == [(sealed, True)]
    finally:
        s.close()
    assert not tools.dir_in_use(d)
    report = tools.verify_dir(d)
    assert not report.live and [x.path for x in report.problems] == [sealed]
    with pytest.raises(NotADirectoryError, match="is not a log dir: it is a file"):
        tools.verify_dir(sealed)


# -- store config -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("conf, retention_ms, segment_ms", [
    # Kafka: log.retention.ms over log.retention.minutes over log.retention.hours, in any order
    ({"log.retention.hours": "1", "log.retention.minutes": "2"}, 120_000, 604_800_000),  # was 3600000
    ({"log.retention.minutes": "2", "log.retention.hours": "1"}, 120_000, 604_800_000),
    ({"log.retention.hours": "1", "log.retention.ms": "5"}, 5, 604_800_000),
    ({"log.retention.hours": "-1"}, -1, 604_800_000),                                    # was refused
    ({"log.roll.hours": "2"}, 604_800_000, 7_200_000),                                   # was unknown
    ({"log.roll.ms": "7", "log.roll.hours": "2"}, 604_800_000, 7),
])
def test_kafka_coarse_time_names_set_topic_defaults_with_kafkas_precedence(tmp_path, conf, retention_ms,
                                                                           segment_ms) -> None:
    with logstore.open(str(tmp_path / "d"), conf, background=False) as s:
        s.create_topic("t")
        cfg = s.topic_config("t")
        assert (cfg.retention_ms, cfg.segment_ms) == (retention_ms, segment_ms)


def test_partition_and_offset_arguments_are_checked_and_a_closed_store_says_so(tmp_path) -> None:
    import numpy as np
    from logstore.errors import StoreClosedError
    from broker.config import BrokerConfig
    store = logstore.open(str(tmp_path / "d"), background=False)
    store.create_topic("t", 2)
    store.partition("t", 1).append([(b"k", b"one")])
    for bad in (True, 1.0, "0"):   # True and 1.0 used to find partition 1; "0" said "no partition 0"
        with pytest.raises(TypeError, match="partition must be an int"):
            store.partition("t", bad)
    assert store.partition("t", np.int64(1)) is store.partition("t", 1)
    lg = store.partition("t", 1)
    for bad in ("0", True, 0.0):   # "0" failed with a comparison error, True read from offset 1
        with pytest.raises(TypeError, match="offset must be an int"):
            lg.read(bad)
    assert [r.value for r in lg.read(np.int64(0))] == [b"one"]
    store.close()
    for call in (store.flush, store.run_retention):   # used to return silently
        with pytest.raises(StoreClosedError):
            call()
    # the broker takes the coarse time names the store takes
    assert BrokerConfig({"log.roll.hours": "2"}).store_config["log.roll.hours"] == "2"
