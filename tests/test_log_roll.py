"""segment.ms rolling counts in record time (Kafka's timeWaitedForRoll), not wall-clock age."""

from __future__ import annotations

import logstore


def test_old_timestamps_do_not_roll_every_append(tmp_path):
    with logstore.open(tmp_path) as store:
        store.create_topic("replay", config={"segment.ms": 3600_000})
        log = store.partition("replay", 0)
        start = 1_000_000_000_000  # 2001: far older than segment.ms
        for i in range(40):
            log.append([(b"k", b"v", [], start + i * 1000)])
        assert len(log.segments) == 1
        # a batch an hour and more later (in record time) rolls
        log.append([(b"k", b"v", [], start + 3600_000 + 40_000)])
        assert len(log.segments) == 2
        assert log.read(0)[0].timestamp == start


def test_wall_clock_roll_without_timestamps(tmp_path):
    with logstore.open(tmp_path) as store:
        store.create_topic("t", config={"segment.ms": 1})
        log = store.partition("t", 0)
        log.append([(b"k", b"v", [], -1)])
        log.active_segment.created_ms -= 10
        log.append([(b"k", b"v", [], -1)])
        assert len(log.segments) == 2


def test_roll_flushes_coalesce_per_log(tmp_path):
    """Rolls queue their segment fsyncs for a background thread; under a steady stream of appends
    to small segments at most one flush per log waits in that queue (a later roll raises its
    offset), so the queue, and the work a close must wait for, stays as long as the log count."""
    import logstore
    with logstore.open(str(tmp_path / "d")) as store:
        store.create_topic("t", 2, config={"segment.bytes": "2048"})
        logs = [store.partition("t", 0), store.partition("t", 1)]
        longest = 0
        for i in range(3000):
            logs[i % 2].append([(None, b"x" * 200)])
            pool = store._roll_pool
            if pool is not None:
                longest = max(longest, pool._work_queue.qsize())
        assert len(logs[0].segments) > 100          # it did roll, often
        assert longest <= 2, longest
    with logstore.open(str(tmp_path / "d")) as store:  # and what was appended is all there
        assert [store.partition("t", p).log_end_offset for p in (0, 1)] == [1500, 1500]
