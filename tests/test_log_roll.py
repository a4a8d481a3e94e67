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
