"""One partition (logstore/log.py): offsets, reads and their range errors, rolling, flush policy,
timestamps, truncation, idempotent producers, validation and concurrency."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from logstore import records as R
from logstore.config import LogConfig
from logstore.errors import (CorruptRecordError, DuplicateSequenceError, InvalidProducerEpochError,
                             InvalidRecordError, KafkaStorageError, OffsetOutOfRangeError,
                             OutOfOrderSequenceError, RecordTooLargeError)
from logstore.log import Log

from .test_segment import file_size_limit

NOW = int(time.time() * 1000)


def make_log(d, config=None, **kw) -> Log:
    return Log(str(d), "t", 0, LogConfig(config or {}), **kw)


def values(lg: Log, start: int | None = None) -> list[tuple[int, bytes]]:
    out = []
    off = lg.log_start_offset if start is None else start
    while off < lg.log_end_offset:
        recs = lg.read(off, 4096)
        assert recs, off
        out += [(r.offset, r.value) for r in recs]
        off = recs[-1].offset + 1
    return out


def test_offsets_are_contiguous_and_reads_start_inside_batches(tmp_path):
    lg = make_log(tmp_path)
    assert lg.append([(b"k", b"0"), (None, b"1", [("h", b"x")]), (b"k2", None)]) == 0
    assert lg.append([(None, b"3")]) == 3
    assert lg.log_end_offset == 4 and len(lg) == 4
    recs = lg.read(1)
    assert [(r.offset, r.key, r.value, r.headers) for r in recs] == [
        (1, None, b"1", (("h", b"x"),)), (2, b"k2", None, ()), (3, None, b"3", ())]
    assert lg.read(4) == []  # the log end: nothing yet, not an error
    assert lg.read(0, max_records=2)[-1].offset == 1
    assert lg.read_bytes(0)[:8] == (0).to_bytes(8, "big")
    lg.close()


def test_reads_outside_the_log_name_the_valid_range(tmp_path):
    lg = make_log(tmp_path, {"segment.bytes": 400})
    for i in range(20):
        lg.append([(b"k", b"x" * 50)])
    lg.delete_records(5)
    for bad in (4, 21, -1):
        with pytest.raises(OffsetOutOfRangeError, match="valid offsets are 5 to 20") as e:
            lg.read(bad)
        assert f"offset {bad} " in str(e.value) and "t-0" in str(e.value)
    with pytest.raises(OffsetOutOfRangeError):
        lg.read_slice(21, 100)
    assert lg.read(5)[0].offset == 5
    lg.close()


def test_roll_on_segment_bytes(tmp_path):
    lg = make_log(tmp_path, {"segment.bytes": 1000})
    for i in range(30):
        lg.append([(b"k", b"x" * 100)], timestamp=NOW)
    assert len(lg.segments) > 3
    for seg in list(lg.segments.values())[:-1]:
        assert seg.size <= 1000 and not seg.active
        assert os.path.getsize(seg.index.path) == 8 * seg.index.entries  # trimmed at roll
    assert [o for o, _ in values(lg)] == list(range(30))
    assert lg.recovery_point == lg.active_segment.base_offset  # a roll fsyncs what it seals
    lg.close()


def test_roll_on_segment_ms_counts_from_the_first_timestamp(tmp_path):
    lg = make_log(tmp_path, {"segment.ms": 60_000})
    lg.append([(b"k", b"a")], timestamp=NOW - 120_000)  # an old first batch: the segment is "old"
    lg.append([(b"k", b"b")], timestamp=NOW)
    assert list(lg.segments) == [0, 1]
    lg.append([(b"k", b"c")], timestamp=NOW)
    assert list(lg.segments) == [0, 1]
    lg.close()


def test_roll_on_full_index(tmp_path):
    lg = make_log(tmp_path, {"segment.index.bytes": 8 * 3, "index.interval.bytes": 0})
    for i in range(12):
        lg.append([(b"k", b"x")], timestamp=NOW)
    assert len(lg.segments) >= 3
    assert all(s.index.entries <= 3 for s in lg.segments.values())
    assert [o for o, _ in values(lg)] == list(range(12))
    lg.close()


def test_flush_messages(tmp_path):
    lg = make_log(tmp_path, {"flush.messages": 5})
    for i in range(4):
        lg.append([(b"k", b"x")])
    assert lg.recovery_point == 0
    lg.append([(b"k", b"x")])
    assert lg.recovery_point == 5
    lg.append([(b"k", b"x")] * 7)
    assert lg.recovery_point == 12
    info = lg.append_batches(R.build_batch([(b"k", b"x")] * 5), flush=False)
    assert info.flush_needed and lg.recovery_point == 12  # left to the caller
    lg.flush()
    assert lg.recovery_point == 17
    lg.close()


def test_flush_ms(tmp_path):
    lg = make_log(tmp_path, {"flush.ms": 50})
    lg.append([(b"k", b"x")])
    now = int(time.time() * 1000)
    assert not lg.flush_if_due(lg.last_flush_ms + 10)
    assert lg.flush_if_due(max(now, lg.last_flush_ms) + 60)
    assert lg.recovery_point == 1
    assert not lg.flush_if_due(int(time.time() * 1000) + 1000)  # nothing left to flush
    lg.close()


def test_offset_for_timestamp_matches_a_scan(tmp_path):
    rng = random.Random(7)
    lg = make_log(tmp_path, {"segment.bytes": 3000, "index.interval.bytes": 200})
    stamps = []
    for i in range(150):
        n = rng.randint(1, 3)
        batch = [(b"k", b"v" * 40, [], NOW - 500_000 + rng.randint(0, 400_000)) for _ in range(n)]
        stamps += [r[3] for r in batch]
        lg.append(batch)
    assert len(lg.segments) > 4

    def check(lg):
        for target in sorted(rng.sample(stamps, 60)) + [min(stamps) - 1, max(stamps), max(stamps) + 1]:
            want = next(((o, t) for o, t in enumerate(stamps) if t >= target), None)
            assert lg.offset_for_timestamp(target) == want, target
        top = max(stamps)
        assert lg.max_timestamp_offset() == (stamps.index(top), top)

    check(lg)
    lg.close()
    lg = make_log(tmp_path, {"segment.bytes": 3000, "index.interval.bytes": 200})
    # sealed segments know their largest timestamp from the time index alone after a reopen
    seg_max = {}
    for base, seg in lg.segments.items():
        seg_max[base] = max(stamps[base:seg.next_offset])
    assert {b: s.max_timestamp for b, s in lg.segments.items()} == seg_max
    check(lg)
    lg.close()


def test_max_timestamp_after_delete_records_is_found_in_its_segment(tmp_path):
    # one batch with timestamps out of order; delete-records moves the log start past the record
    # holding the largest one: Kafka's MAX_TIMESTAMP still answers it (its segment's maximum),
    # where looking from the log start found nothing while records remained
    lg = make_log(tmp_path)
    lg.append([(b"k", b"a", [], 1000), (b"k", b"b", [], 9000), (b"k", b"c", [], 2000), (b"k", b"d", [], 3000)])
    assert lg.max_timestamp_offset() == (1, 9000)
    lg.delete_records(2)
    assert lg.log_start_offset == 2
    assert lg.max_timestamp_offset() == (1, 9000)
    assert lg.offset_for_timestamp(9000) is None    # a timestamp search still starts at the log start
    lg.close()


def test_log_append_time(tmp_path):
    lg = make_log(tmp_path, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    info = lg.append_batches(R.build_batch([(b"k", b"a"), (b"k", b"b")], timestamp=1000))
    after = int(time.time() * 1000)
    assert before <= info.log_append_time <= after
    recs = lg.read(0)
    assert [r.timestamp for r in recs] == [info.log_append_time] * 2
    R.validate_batch(lg.read_bytes(0))  # the CRC was recomputed
    lg.close()


def test_timestamp_bounds(tmp_path):
    from logstore.errors import InvalidTimestampError
    lg = make_log(tmp_path, {"message.timestamp.before.max.ms": 1000, "message.timestamp.after.max.ms": 1000})
    with pytest.raises(InvalidTimestampError, match="older"):
        lg.append([(b"k", b"v")], timestamp=NOW - 3_600_000)
    with pytest.raises(InvalidTimestampError, match="newer"):
        lg.append([(b"k", b"v")], timestamp=NOW + 3_600_000)
    # every record counts, not the first (baseTimestamp): Kafka's LogValidator checks each one
    now = int(time.time() * 1000)
    from kafka.record.default_records import DefaultRecordBatchBuilder  # a client's batch: base = first record's
    kb = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, 1 << 20)
    kb.append(0, now, b"k", b"new", [])
    kb.append(1, now - 3_600_000, b"k", b"old", [])
    batch = bytes(kb.build())
    with pytest.raises(InvalidTimestampError, match=f"timestamp {now - 3_600_000} .* older"):
        lg.append_batch(batch)
    assert lg.log_end_offset == 0
    lg.close()


def test_truncate_to(tmp_path):
    lg = make_log(tmp_path, {"segment.bytes": 600})
    for i in range(40):
        lg.append([(b"k", b"%d" % (2 * i)), (b"k", b"%d" % (2 * i + 1))], timestamp=NOW)
    segs = list(lg.segments)
    assert len(segs) > 3
    lg.truncate_to(51)  # inside the batch 50-51: the whole batch goes
    assert lg.log_end_offset == 50
    assert all(b < 50 for b in lg.segments)
    assert values(lg) == [(i, b"%d" % i) for i in range(50)]
    assert lg.append([(b"k", b"new")]) == 50
    lg.truncate_to(segs[1])  # exactly a segment base: the segments from there go
    assert lg.log_end_offset == segs[1] and list(lg.segments) == [0]
    lg.flush()
    lg.close()
    lg = make_log(tmp_path, {"segment.bytes": 600}, clean=False)
    assert lg.log_end_offset == segs[1]
    lg.delete_records(4)
    lg.truncate_to(2)  # below the log start: restart empty there, as Kafka's truncateFullyAndStartAt
    assert (lg.log_start_offset, lg.log_end_offset) == (2, 2)
    assert lg.append([(b"k", b"x")]) == 2
    lg.close()


def test_idempotent_producer(tmp_path):
    lg = make_log(tmp_path)

    def batch(seq, n=2, epoch=0, pid=42):
        return R.build_batch([(b"k", b"s%d" % (seq + i)) for i in range(n)], producer_id=pid,
                             producer_epoch=epoch, base_sequence=seq)

    assert lg.append_batch(batch(0)) == 0
    assert lg.append_batch(batch(2)) == 2
    with pytest.raises(DuplicateSequenceError) as e:
        lg.append_batch(batch(0))  # a retry of the first batch
    assert (e.value.first_offset, e.value.last_offset) == (0, 1)
    with pytest.raises(OutOfOrderSequenceError, match="expected 4, got 7"):
        lg.append_batch(batch(7))
    assert lg.append_batch(batch(0, epoch=1)) == 4  # a new epoch starts at 0
    with pytest.raises(InvalidProducerEpochError):
        lg.append_batch(batch(2, epoch=0))
    with pytest.raises(OutOfOrderSequenceError):
        lg.append_batch(batch(5, epoch=2))
    assert lg.append_batch(batch(0, pid=7)) == 6  # producers are independent
    assert lg.log_end_offset == 8
    lg.flush()
    lg.close()
    lg = make_log(tmp_path)  # state rebuilt from batch headers
    with pytest.raises(DuplicateSequenceError) as e:
        lg.append_batch(batch(0, epoch=1))
    assert e.value.first_offset == 4
    assert lg.append_batch(batch(2, epoch=1)) == 8
    lg.close()


def test_a_failed_write_does_not_make_the_retry_a_duplicate(tmp_path):
    lg = make_log(tmp_path)
    lg.append_batch(R.build_batch([(b"k", b"a")], producer_id=5, producer_epoch=0, base_sequence=0))
    retry = R.build_batch([(b"k", b"b" * 5000)], producer_id=5, producer_epoch=0, base_sequence=1)
    lg.active_segment.index.entries  # map (preallocate) the index now: the limit is for the log write
    with file_size_limit(lg.active_segment.size + 100):
        with pytest.raises(KafkaStorageError):
            lg.append_batch(retry)
    assert lg.log_end_offset == 1
    assert lg.append_batch(retry) == 1  # the producer's retry is appended, not called a duplicate
    assert [r.offset for r in lg.read(0)] == [0, 1]
    lg.close()


def test_compact_topic_rejects_records_without_a_key(tmp_path):
    lg = make_log(tmp_path, {"cleanup.policy": "compact"})
    lg.append([(b"k", b"v"), (b"k", None)])  # a tombstone has a key
    with pytest.raises(InvalidRecordError, match="compacted topic t needs a key.*record 1 of batch"):
        lg.append([(b"k", b"v"), (None, b"v")])
    assert lg.log_end_offset == 2
    lg.close()


def test_bad_produce_input_appends_nothing(tmp_path):
    lg = make_log(tmp_path, {"max.message.bytes": 500})
    good = R.build_batch([(b"k", b"v")])
    with pytest.raises(RecordTooLargeError, match="max.message.bytes 500"):
        lg.append([(b"k", b"x" * 1000)])
    bad = bytearray(good)
    bad[-1] ^= 1
    with pytest.raises(CorruptRecordError, match="CRC mismatch"):
        lg.append_batch(good + bytes(bad))  # one bad batch: neither goes in
    with pytest.raises(CorruptRecordError, match="trailing bytes"):
        lg.append_batch(good + b"\x00" * 10)
    assert lg.log_end_offset == 0 and lg.size == 0
    lg.close()


def test_an_append_larger_than_a_tiny_segment_gets_a_segment_of_its_own(tmp_path):
    # segment.bytes may be far below a client's batch size here (Kafka 4 makes it >= 1 MiB, Kafka 3
    # refused such an append): the append is kept, alone in its segment, and the next one rolls
    lg = make_log(tmp_path, {"segment.bytes": 1000})
    lg.append([(b"k", b"small")])
    lg.append([(b"k", b"x" * 3000)])
    lg.append([(b"k", b"y" * 900)])
    assert [v for _o, v in values(lg)] == [b"small", b"x" * 3000, b"y" * 900]
    assert [seg.next_offset - seg.base_offset for seg in lg.segments.values()] == [1, 1, 1]
    lg.close()


def test_a_flipped_bit_in_flushed_data_is_reported_on_read(tmp_path):
    lg = make_log(tmp_path, {"segment.bytes": 2000})
    for i in range(30):
        lg.append([(b"k", b"x" * 100)], timestamp=NOW)
    lg.close()
    seg_path = os.path.join(str(tmp_path), "00000000000000000000.log")
    with open(seg_path, "r+b") as f:
        data = bytearray(f.read())
        second = R.read_header(data).size
        data[second + 70] ^= 0x04
        f.seek(0)
        f.write(data)
    lg = make_log(tmp_path, {"segment.bytes": 2000})
    assert [r.offset for r in lg.read(0, 1)] == [0]  # the batch before it reads fine
    with pytest.raises(CorruptRecordError) as e:
        lg.read(1)
    assert e.value.path == seg_path and e.value.position == second
    assert f"position {second} of {seg_path}" in str(e.value)
    lg.close()


def test_concurrent_append_flush_read_and_roll(tmp_path):
    lg = make_log(tmp_path, {"segment.bytes": 4000, "index.interval.bytes": 100})
    errors: list[BaseException] = []
    stop = threading.Event()

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                stop.set()
        return run

    def appender(tag):
        for i in range(300):
            lg.append([(tag, b"%d" % i)] * (1 + i % 3), timestamp=NOW)

    def flusher():
        while not stop.is_set():
            lg.flush()

    def reader():
        while not stop.is_set():
            leo = lg.log_end_offset
            if leo:
                off = random.randrange(leo)
                recs = lg.read(off, 512)
                assert recs and recs[0].offset == off

    threads = [threading.Thread(target=guard(lambda t=t: appender(t))) for t in (b"a", b"b")]
    others = [threading.Thread(target=guard(flusher)), threading.Thread(target=guard(reader))]
    for t in threads + others:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in others:
        t.join()
    assert not errors, errors
    recs = []
    while len(recs) < lg.log_end_offset:
        recs += lg.read(len(recs), 1 << 16)
    assert [r.offset for r in recs] == list(range(2 * 600))
    for tag in (b"a", b"b"):  # each appender's records in its order, none lost or doubled
        assert [r.value for r in recs if r.key == tag] == [b"%d" % i for i in range(300) for _ in range(1 + i % 3)]
    lg.flush()
    assert lg.recovery_point == lg.log_end_offset
    lg.close()


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "pure"])
def test_reads_keep_the_garbage_collector_idle(tmp_path, fast, monkeypatch):
    """Records are not tracked by the collector, so holding a read's worth of them (as Log.read's
    list does) makes it run no full collection; tuple records with header lists made it run one
    every ~50,000 records read, half of all read time."""
    import gc
    if not fast:
        monkeypatch.setattr(R, "_FAST_BATCH", False)
    lg = make_log(tmp_path)
    for _ in range(100):
        lg.append([(None, b"v" * 100)] * 1000)
    lg.append([(b"k", b"v", [("h", b"x")])])
    full = []

    def count(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)
    gc.collect()
    gc.callbacks.append(count)
    try:
        kept, off = [], 0
        while off < lg.log_end_offset:
            recs = lg.read(off, 1 << 20)
            kept.append(recs)  # as a caller that holds what it read
            off = recs[-1].offset + 1
    finally:
        gc.callbacks.remove(count)
    assert sum(map(len, kept)) == 100_001
    assert full == []
    last = kept[-1][-1]
    assert last.headers == (("h", b"x"),) and kept[0][0].headers == ()
    assert not any(gc.is_tracked(r) for recs in kept for r in recs[:10])
    lg.close()


def test_a_roll_with_a_flusher_leaves_the_fsyncs_to_the_flush_it_schedules(tmp_path):
    lg = make_log(tmp_path, {"segment.bytes": 2000})
    calls = []
    lg.roll_flusher = lambda log, offset: calls.append(offset)
    lg.append([(None, b"x" * 100)] * 5)
    lg.flush()
    assert lg.recovery_point == 5
    old = lg.active_segment
    for _ in range(4):
        lg.append([(None, b"x" * 100)] * 5)
    assert len(lg.segments) == 2 and calls == [lg.active_segment.base_offset]
    # sealed without fsync: until the scheduled flush, recovery must scan the sealed segment
    assert old.unsynced_seal and lg.recovery_point == old.base_offset
    lg.flush(calls[0])
    assert not old.unsynced_seal and lg.recovery_point == lg.log_end_offset
    lg.close()
    # the store gives its logs a flusher that runs on its own thread
    import logstore
    with logstore.open(str(tmp_path / "store")) as store:
        store.create_topic("t", 1, {"segment.bytes": 2000})
        lg = store.partition("t", 0)
        assert lg.roll_flusher is not None
        for _ in range(5):
            lg.append([(None, b"x" * 100)] * 5)
        base = lg.active_segment.base_offset
        assert base > 0
        deadline = time.monotonic() + 30
        while lg.recovery_point < base and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lg.recovery_point >= base  # flushed with no flush asked for (flush.ms is unlimited)
        assert not any(s.unsynced_seal for s in list(lg.segments.values())[:-1])
    with logstore.open(str(tmp_path / "store"), background=False) as store:
        assert store.partition("t", 0).roll_flusher is None  # no thread: rolls fsync themselves
        assert store.partition("t", 0).log_end_offset == 25


def test_recovery_drops_segments_after_one_that_ends_short(tmp_path):
    """A roll that left its fsync to a later flush can lose a sealed segment's tail while the next
    segment's name survives: recovery drops what follows the gap (it was never flushed)."""
    lg = make_log(tmp_path, {"segment.bytes": 2000})
    for _ in range(6):
        lg.append([(None, b"x" * 100)] * 5)
    segs = list(lg.segments.values())
    assert len(segs) >= 2
    first_end = segs[1].base_offset
    lg.close()
    os.truncate(segs[0].log_path, 0)  # its records never reached the disk
    lg = make_log(tmp_path, {"segment.bytes": 2000}, clean=False, recovery_point=0)
    assert lg.log_end_offset == 0 and list(lg.segments) == [0]
    assert any("before the next segment's base offset" in p for p in lg.stats.problems), lg.stats.problems
    assert first_end > 0
    lg.close()


def test_a_damaged_batch_length_is_reported_where_it_is(tmp_path):
    lg = make_log(tmp_path, {"segment.bytes": 2000})
    for _ in range(8):
        lg.append([(b"k", b"x" * 100)] * 3)
    sealed = list(lg.segments.values())[0]
    assert len(lg.segments) == 2
    path, base = sealed.log_path, sealed.base_offset
    lg.close()
    with open(path, "r+b") as f:
        f.seek(8)
        f.write((1 << 30).to_bytes(4, "big"))  # the first batch's length now runs far past the file
    lg = make_log(tmp_path, {"segment.bytes": 2000})  # a clean open: the files are trusted
    with pytest.raises(CorruptRecordError) as e:
        lg.read(base + 1)
    assert e.value.path == path and e.value.position == 0, e.value
    lg.close()


def test_read_with_max_records_decodes_no_batch_past_them(tmp_path, monkeypatch):
    """A read of a few records from a slice of many batches decodes only the batches it returns."""
    lg = make_log(tmp_path / "t-0")
    for i in range(20):
        lg.append([(None, b"%d-%d" % (i, j)) for j in range(10)])
    decoded = []
    real = R.decode_batch

    def counting(buf, pos=0, **kw):
        recs = real(buf, pos, **kw)
        decoded.append(len(recs))
        return recs
    monkeypatch.setattr(R, "decode_batch", counting)
    got = lg.read(15, max_records=12)
    assert [r.offset for r in got] == list(range(15, 27))
    assert len(decoded) == 2, f"decoded {len(decoded)} batches of 10 for 12 records from offset 15"
    lg.close()


def test_offset_for_timestamp_races_segment_deletion(tmp_path):
    """ListOffsets by timestamp walks the segments while delete-records and retention remove them
    (closing their indexes, files purged at once with file.delete.delay.ms=0): it answers from the
    segments still there, never with an error from one that went away under it."""
    import logstore
    store = logstore.open(str(tmp_path / "d"))
    store.create_topic("t", 1, config={"segment.bytes": "1024", "file.delete.delay.ms": "0"})
    lg = store.partition("t", 0)
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            lg.append([(None, b"x" * 100)], timestamp=1_000_000 + i)
            i += 1
            if i % 20 == 0:
                store.delete_records("t", 0, lg.log_end_offset - 5)

    def reader() -> None:
        while not stop.is_set():
            try:
                found = lg.offset_for_timestamp(1_000_000)
                assert found is None or found[0] >= 0
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(30)
    store.close()
    assert not errors, errors[:3]
