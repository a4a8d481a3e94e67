"""Retention (logstore/retention.py) and delete-records: whole segments, the active one only when it
expired (rolled first, as Kafka does)."""

from __future__ import annotations

import os
import threading
import time

import pytest

import logstore
from logstore import checkpoint as ckpt
from logstore.errors import OffsetOutOfRangeError

NOW = int(time.time() * 1000)
HOUR = 3_600_000


def read_all(lg) -> list:
    return list(lg.iter_records())


def fill(lg, n: int, ts, size: int = 50) -> None:
    for i in range(n):
        lg.append([(b"k%d" % i, b"x" * size, (), ts(i) if callable(ts) else ts)])


def start_checkpoint(path) -> dict:
    return ckpt.read_checkpoint(os.path.join(path, ckpt.LOG_START_OFFSET_FILE))


def test_time_retention_deletes_old_segments_by_their_largest_timestamp(tmp_path):
    d = tmp_path / "d"
    with logstore.open(d, background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": "1000", "retention.ms": str(HOUR), "file.delete.delay.ms": "0"})
        lg = s.partition("t", 0)
        fill(lg, 50, NOW - 3 * HOUR)   # old
        fill(lg, 50, NOW - HOUR // 2)  # young
        lg.roll()
        segs = list(lg.segments.values())
        old = [x for x in segs[:-1] if x.max_timestamp < NOW - HOUR]
        res = s.run_retention(now_ms=NOW)
        assert res.by_time == len(old) > 0 and res.by_size == 0
        first = lg.segments.peekitem(0)[1]
        assert lg.log_start_offset == first.base_offset
        assert first.max_timestamp >= NOW - HOUR
        assert all(r.timestamp >= NOW - 3 * HOUR for r in read_all(lg))
        assert lg.log_start_offset <= 50  # the young records are all there
        with pytest.raises(OffsetOutOfRangeError, match="out of range"):
            lg.read(0)
        assert start_checkpoint(d) == {("t", 0): lg.log_start_offset}
        assert not [n for n in os.listdir(lg.dir) if n.startswith("00000000000000000000")]
        lso = lg.log_start_offset
    with logstore.open(d, background=False) as s:
        assert s.partition("t", 0).log_start_offset == lso


def test_time_retention_deletes_an_expired_active_segment_by_rolling_it_first(tmp_path):
    """Kafka's deletableSegments includes the active segment when it holds data: a quiet topic's
    records expire after retention.ms though segment.ms never rolled their segment."""
    d = tmp_path / "d"
    with logstore.open(d, background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": "1000000", "retention.ms": "1000",
                                "file.delete.delay.ms": "0"})
        lg = s.partition("t", 0)
        fill(lg, 40, NOW - 10 * HOUR)
        active = lg.active_segment
        assert len(lg.segments) == 1 and active.size > 0
        res = s.run_retention(now_ms=NOW)
        assert res.by_time == 1 and res.bytes_deleted == active.size
        assert active not in list(lg.segments.values())
        assert len(lg.segments) == 1 and lg.active_segment.size == 0
        assert lg.log_start_offset == lg.log_end_offset == 40 == lg.active_segment.base_offset
        assert read_all(lg) == [] and lg.read(40) == []
        with pytest.raises(OffsetOutOfRangeError, match="out of range"):
            lg.read(0)
        assert start_checkpoint(d) == {("t", 0): 40}
        assert sorted(os.listdir(lg.dir)) == sorted(
            n for n in os.listdir(lg.dir) if not n.startswith("00000000000000000000."))
        # the empty active segment is never deleted, however often retention runs
        assert s.run_retention(now_ms=NOW + HOUR).segments_deleted == 0
        assert lg.append([(None, b"after")]) == 40  # offsets go on from the old log end
        assert [r.value for r in read_all(lg)] == [b"after"]
    with logstore.open(d, background=False) as s:
        lg = s.partition("t", 0)
        assert (lg.log_start_offset, lg.log_end_offset) == (40, 41)
        assert [r.value for r in read_all(lg)] == [b"after"]


def test_time_retention_keeps_a_young_active_segment_and_takes_the_old_ones_before_it(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": "1000", "retention.ms": str(HOUR)})
        lg = s.partition("t", 0)
        fill(lg, 40, NOW - 10 * HOUR)
        fill(lg, 3, NOW)  # young: the active segment holds one of these at least
        active = lg.active_segment
        old = [x for x in lg.segments.values() if x.max_timestamp < NOW - HOUR]
        assert active not in old and len(old) > 0
        res = s.run_retention(now_ms=NOW)
        assert res.by_time == len(old)
        assert lg.active_segment is active and active in list(lg.segments.values())
        assert [r.timestamp for r in read_all(lg)][-3:] == [NOW] * 3
        assert lg.log_end_offset == 43


def test_size_retention_counts_the_active_segment(tmp_path):
    """Kafka's rule: a segment goes while the log would still hold retention.bytes without it.
    So the active segment goes only with retention.bytes=0; with any more it is what remains."""
    with logstore.open(tmp_path / "d", background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": "100000", "retention.bytes": "10"})
        lg = s.partition("t", 0)
        fill(lg, 5, NOW)
        assert s.run_retention(now_ms=NOW).segments_deleted == 0
        s.alter_topic_config("t", {"retention.bytes": "0"})
        res = s.run_retention(now_ms=NOW)
        assert res.by_size == 1 and lg.log_start_offset == lg.log_end_offset == 5
        fill(lg, 5, NOW)
        s.alter_topic_config("t", {"retention.bytes": "100000"})
        assert s.run_retention(now_ms=NOW).segments_deleted == 0
        assert [r.offset for r in read_all(lg)] == [5, 6, 7, 8, 9]


def test_time_retention_stops_at_the_first_young_segment(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": "700", "retention.ms": str(HOUR)})
        lg = s.partition("t", 0)
        fill(lg, 10, NOW - 2 * HOUR)
        lg.roll()
        fill(lg, 10, NOW)  # young
        lg.roll()
        fill(lg, 10, NOW - 2 * HOUR)  # old again, but behind a young segment (Kafka: kept)
        lg.roll()
        res = s.run_retention(now_ms=NOW)
        assert res.by_time == 2  # 10 old records fill two 700-byte segments
        assert read_all(lg)[0].timestamp == NOW
        assert len(read_all(lg)) == 20


def test_size_retention_keeps_at_least_retention_bytes(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": "1000", "retention.bytes": "3000"})
        lg = s.partition("t", 0)
        fill(lg, 100, NOW)
        before = lg.size
        res = s.run_retention(now_ms=NOW)
        assert res.by_size > 0 and res.by_time == 0
        assert lg.size >= 3000
        assert lg.size - lg.segments.peekitem(0)[1].size < 3000  # one more would go below
        assert before - lg.size == res.bytes_deleted
        assert lg.log_start_offset == lg.segments.peekitem(0)[0] > 0


def test_retention_bytes_and_ms_minus_one_mean_forever_and_compact_is_exempt(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        s.create_topic("forever", 1, {"segment.bytes": "1000", "retention.ms": "-1"})
        s.create_topic("compacted", 1, {"segment.bytes": "1000", "retention.ms": "1",
                                        "retention.bytes": "1", "cleanup.policy": "compact"})
        for name in ("forever", "compacted"):
            fill(s.partition(name, 0), 60, NOW - 100 * HOUR)
        res = s.run_retention(now_ms=NOW)
        assert res.segments_deleted == 0


def test_config_change_applies_without_restart(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": "1000"})
        lg = s.partition("t", 0)
        fill(lg, 60, NOW - 10 * HOUR)
        assert s.run_retention(now_ms=NOW).segments_deleted == 0  # 7 days by default
        n = len(lg.segments)
        s.alter_topic_config("t", {"retention.ms": str(HOUR)})
        assert s.run_retention(now_ms=NOW).by_time == n > 1  # the active segment too (rolled)
        assert len(lg.segments) == 1


def test_deleted_files_are_renamed_then_removed_after_the_delay(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": "1000", "retention.bytes": "0", "file.delete.delay.ms": "300"})
        lg = s.partition("t", 0)
        fill(lg, 40, NOW)
        s.run_retention(now_ms=NOW)
        deleted = [n for n in os.listdir(lg.dir) if n.endswith(".deleted")]
        assert deleted and all(n.split(".")[1] in ("log", "index", "timeindex") for n in deleted)
        assert lg.purge_deleted() == 0
        time.sleep(0.35)
        assert lg.purge_deleted() > 0
        assert not [n for n in os.listdir(lg.dir) if n.endswith(".deleted")]


def test_deleted_files_left_by_a_crash_are_removed_at_open(tmp_path):
    d = tmp_path / "d"
    s = logstore.open(d, background=False)
    s.create_topic("t", 1, {"segment.bytes": "1000", "retention.bytes": "0", "file.delete.delay.ms": "600000"})
    lg = s.partition("t", 0)
    fill(lg, 40, NOW)
    s.run_retention(now_ms=NOW)
    lso = lg.log_start_offset
    part = lg.dir
    assert [n for n in os.listdir(part) if n.endswith(".deleted")]
    # no close: as after a crash, the .deleted files are still there
    s._release_lock()
    with logstore.open(d, background=False) as s2:
        assert not [n for n in os.listdir(part) if n.endswith(".deleted")]
        assert s2.partition("t", 0).log_start_offset == lso


def test_delete_records_moves_the_start_offset_and_drops_whole_segments(tmp_path):
    d = tmp_path / "d"
    with logstore.open(d, background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": "1000"})
        lg = s.partition("t", 0)
        fill(lg, 100, NOW)
        assert s.delete_records("t", 0, 55) == 55
        assert lg.log_start_offset == 55
        with pytest.raises(OffsetOutOfRangeError):
            lg.read(54)
        assert lg.read(55)[0].offset == 55
        assert lg.segments.peekitem(0)[0] <= 55 < lg.segments.peekitem(0)[1].next_offset
        assert start_checkpoint(d) == {("t", 0): 55}
        assert s.delete_records("t", 0, 10) == 55  # never backwards
        with pytest.raises(OffsetOutOfRangeError, match="101"):
            s.delete_records("t", 0, 101)
        assert s.run_retention(now_ms=NOW).segments_deleted == 0
    with logstore.open(d, background=False) as s:
        lg = s.partition("t", 0)
        assert lg.log_start_offset == 55 and read_all(lg)[0].offset == 55
        assert s.delete_records("t", 0, -1) == 100  # -1: up to the log end
        assert read_all(lg) == [] and len(lg.segments) == 1


def test_start_offset_retention_applies_to_compacted_topics(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        s.create_topic("c", 1, {"segment.bytes": "1000", "cleanup.policy": "compact"})
        lg = s.partition("c", 0)
        fill(lg, 100, NOW)
        n = len(lg.segments)
        lg.set_log_start_offset(60)  # e.g. a DeleteRecords that did not delete segments itself
        res = s.run_retention(now_ms=NOW)
        assert res.by_start_offset > 0 and len(lg.segments) == n - res.by_start_offset
        assert lg.segments.peekitem(0)[1].next_offset > 60


def test_reads_racing_with_deletion_never_see_partial_data(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": "2000", "retention.bytes": "6000", "file.delete.delay.ms": "50"})
        lg = s.partition("t", 0)
        stop = threading.Event()
        errors: list = []
        seen = [0, 0]  # records read, times a reader fell below the start offset

        def reader() -> None:
            off = 0
            while not stop.is_set():
                try:
                    recs = lg.read(off, 4096)
                except OffsetOutOfRangeError:
                    seen[1] += 1
                    off = lg.log_start_offset
                    continue
                except Exception as e:  # noqa: BLE001 - any other error is the failure we look for
                    errors.append(e)
                    return
                if not recs:
                    off = 0  # caught up: start again from the (moving) beginning
                    continue
                time.sleep(0.001)  # a slow consumer, so deletion overtakes it
                for r in recs:
                    if r.offset < off or r.value != b"v%d" % r.offset:
                        errors.append(AssertionError(f"bad record {r} reading from {off}"))
                        return
                    off = r.offset + 1
                    seen[0] += 1

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 3
            i = 0
            while time.monotonic() < deadline:
                base = lg.log_end_offset
                lg.append([(b"k", b"v%d" % (base + j), (), NOW) for j in range(5)])
                i += 1
                if i % 10 == 0:
                    s.run_retention(now_ms=NOW)
                    lg.purge_deleted()
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors[0]
        print(f"\nracing readers: {seen[0]} records read, {seen[1]} reads fell below the moving start offset")
        assert seen[0] > 100 and seen[1] > 0 and lg.log_start_offset > 0
        # up to 9 appends may follow the last pass: the bound holds right after a pass
        s.run_retention(now_ms=NOW)
        assert lg.size <= 6000 + 2000


def test_background_retention_runs_on_its_interval(tmp_path):
    with logstore.open(tmp_path / "d", {"log.retention.check.interval.ms": 50}) as s:
        s.create_topic("t", 1, {"segment.bytes": "1000", "retention.ms": "1000"})
        lg = s.partition("t", 0)
        fill(lg, 60, NOW - HOUR)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(lg.segments) > 1:
            time.sleep(0.05)
        assert len(lg.segments) == 1 and lg.log_start_offset == lg.active_segment.base_offset


def test_an_append_racing_retention_of_the_active_segment_is_not_deleted(tmp_path, monkeypatch):
    """The victims are chosen under the Log's lock: an append that comes while retention judges
    the active segment expired waits, and lands in the new active segment after the roll."""
    from logstore import retention

    with logstore.open(tmp_path / "d", background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": "1000000", "retention.ms": "1000", "file.delete.delay.ms": "0"})
        lg = s.partition("t", 0)
        fill(lg, 5, NOW - 10 * HOUR)
        appended = threading.Event()
        real = retention.largest_timestamp

        def judged(seg):
            ts = real(seg)
            if seg is lg.active_segment and not appended.is_set():
                # another thread appends a fresh record while retention is judging
                th = threading.Thread(target=lambda: (lg.append([(b"fresh", b"new", (), NOW)]), appended.set()))
                th.start()
                appended.wait(0.5)  # with the lock held by retention it cannot finish yet
                judged.thread = th
            return ts

        monkeypatch.setattr(retention, "largest_timestamp", judged)
        s.run_retention(now_ms=NOW)
        judged.thread.join(10)
        assert appended.is_set()
        assert [(r.key, r.offset) for r in read_all(lg)] == [(b"fresh", 5)]
        assert lg.log_start_offset == 5 and lg.log_end_offset == 6


def test_an_offline_partition_keeps_its_active_segment_and_does_not_stop_retention(tmp_path):
    from logstore.errors import KafkaStorageError

    with logstore.open(tmp_path / "d", background=False) as s:
        for name in ("a", "b"):
            s.create_topic(name, 1, {"segment.bytes": "1000", "retention.ms": "1000", "file.delete.delay.ms": "0"})
            fill(s.partition(name, 0), 40, NOW - 10 * HOUR)
        a, b = s.partition("a", 0), s.partition("b", 0)
        assert len(a.segments) > 2
        a._fail(KafkaStorageError("simulated failed fsync"))  # what a failed fsync does (log.py)
        active = a.active_segment
        res = s.run_retention(now_ms=NOW)
        assert list(a.segments.values()) == [active]        # its sealed segments went, not the active one
        assert a.log_start_offset == active.base_offset
        assert len(b.segments) == 1 and b.active_segment.size == 0  # the healthy partition: all expired
        assert b.log_start_offset == b.log_end_offset == 40
        assert set(res.moved) == {("a", 0), ("b", 0)}
