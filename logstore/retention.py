"""Retention: deleting whole old segments of a partition (Apache Kafka's deleteOldSegments).

Three rules, applied in this order to the segments from the oldest on; together they delete a
prefix of the log:
- start offset (every cleanup policy): a sealed segment whose every offset is below the log start
  offset (moved by delete-records) goes;
- time (`cleanup.policy` has `delete`, `retention.ms` >= 0): a segment goes when
  now - its largest record timestamp > `retention.ms` (its file's mtime if it has no timestamp);
  the first segment too young stops the rule, as in Kafka;
- size (`delete` policy, `retention.bytes` >= 0): the oldest segments go while the partition
  would still hold at least `retention.bytes` without them.

The time and size rules include the active segment when it holds data, as Kafka's
`deletableSegments` does: a quiet topic's records expire after `retention.ms` even when
`segment.ms` has not rolled their segment. Deleting the active segment rolls it first (the log
then has one empty segment at the log end offset, which becomes the log start offset); an empty
active segment is never deleted.

Deleted segments leave the segment table at once (`Log.delete_segments`), their files are renamed
`.deleted` and removed after `file.delete.delay.ms`, so a reader already holding one finishes
its read. The log start offset moves to the first remaining segment and the
`log-start-offset-checkpoint` is rewritten (atomically) whenever a start offset moved.

Runs every `log.retention.check.interval.ms` on the store's background thread, or on demand
with `LogStore.run_retention()`. Reads the topic's current `LogConfig`, so config changes apply
at the next run. Cost: O(segments) per partition; reads at most the tail of each candidate
segment (its largest timestamp).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from .errors import LogStoreError
from .log import Log
from .segment import LogSegment

if TYPE_CHECKING:
    from .store import LogStore

logger = logging.getLogger("logstore.retention")


@dataclass
class RetentionResult:
    """Segments deleted by one retention run, per reason, and the partitions whose start moved."""

    by_time: int = 0
    by_size: int = 0
    by_start_offset: int = 0
    bytes_deleted: int = 0
    moved: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) → new start

    @property
    def segments_deleted(self) -> int:
        return self.by_time + self.by_size + self.by_start_offset


def largest_timestamp(seg: LogSegment) -> int:
    """The largest record timestamp of a sealed segment; its file's mtime (ms) when it has none."""
    seg.next_offset  # the tail scan corrects a time index that lacks the segment's last entry
    ts = seg.max_timestamp
    if ts < 0:
        try:
            ts = int(os.path.getmtime(seg.log_path) * 1000)
        except OSError:
            ts = -1
    return ts


def retention_victims(log: Log, now_ms: int) -> tuple[list[LogSegment], list[LogSegment], list[LogSegment]]:
    """The segments retention would delete now: (below the start offset, too old, over size).
    A prefix of the log, each segment in at most one list; the start-offset rule names sealed
    segments only, the others also the active segment when it is not empty."""
    cfg = log.config
    with log.lock:
        segs = list(log.segments.values())
        lso = log.log_start_offset
        total = log.size
    sealed = segs[:-1]
    if segs and segs[-1].size == 0:
        segs = sealed  # an empty active segment stays whatever the rules say (Kafka's too)
    by_start: list[LogSegment] = []
    i = 0
    while i < len(sealed) and sealed[i].next_offset <= lso:
        by_start.append(sealed[i])
        i += 1
    remaining = total - sum(s.size for s in by_start)
    by_time: list[LogSegment] = []
    by_size: list[LogSegment] = []
    if cfg.delete:
        if cfg.retention_ms >= 0:
            while i < len(segs) and now_ms - largest_timestamp(segs[i]) > cfg.retention_ms:
                by_time.append(segs[i])
                remaining -= segs[i].size
                i += 1
        if cfg.retention_bytes >= 0:
            diff = remaining - cfg.retention_bytes
            while i < len(segs) and diff - segs[i].size >= 0:
                by_size.append(segs[i])
                diff -= segs[i].size
                i += 1
    return by_start, by_time, by_size


def apply_retention(log: Log, now_ms: int | None = None, result: RetentionResult | None = None) -> RetentionResult:
    """Delete what `retention_victims` names from one partition. The victims are chosen and
    deleted under the Log's lock, as Kafka does: an append between the two steps would otherwise
    land in an active segment already judged expired and be deleted with it."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    res = result if result is not None else RetentionResult()
    if log.closed:
        return res
    with log.lock:
        if log.closed:
            return res
        by_start, by_time, by_size = retention_victims(log, now)
        ok = by_start + by_time + by_size
        if ok and ok[-1] is log.active_segment:
            # the active segment expired: roll, so that the log keeps an (empty) active segment at
            # its end offset, then delete it with the rest. An offline partition cannot roll
            # (roll raises KafkaStorageError): its sealed victims still go
            try:
                log.roll()
            except LogStoreError as e:
                logger.warning("retention keeps the expired active segment of %s: %s", log.name, e)
                ok.pop()
        if not ok:
            return res
        before = log.log_start_offset
        size = sum(s.size for s in ok)
        log.delete_segments(ok)
        after = log.log_start_offset
    n = len(ok)
    a = min(n, len(by_start))
    b = min(n - a, len(by_time))
    res.by_start_offset += a
    res.by_time += b
    res.by_size += n - a - b
    res.bytes_deleted += size
    if after != before:
        res.moved[(log.topic, log.partition)] = after
    logger.info("retention deleted %d segment(s) of %s (%d bytes); log start offset %d",
                n, log.name, size, after)
    return res


def run_retention(store: "LogStore", now_ms: int | None = None, logs: Iterable[Log] | None = None) -> RetentionResult:
    """One retention run over every partition of `store`; checkpoints moved start offsets."""
    res = RetentionResult()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    for log in (store.logs() if logs is None else logs):
        try:
            apply_retention(log, now, res)
        except (OSError, LogStoreError) as e:  # one partition's trouble must not stop the others
            if log.closed:
                continue  # deleted topic
            logger.error("retention of %s failed: %s", log.name, e)
    if res.moved and not store.closed:
        store.checkpoint_start_offsets()
    return res


def install(store: "LogStore") -> None:
    """Run retention every `log.retention.check.interval.ms` on the store's background thread."""
    store.add_periodic(store.config.retention_check_interval_ms / 1000, lambda: run_retention(store))
