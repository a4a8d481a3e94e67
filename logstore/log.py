"""`Log`: one partition — an ordered set of segments, of which the last is active.

Directory `<topic>-<partition>/`, segments named by base offset (see segment.py). The segment
table is a `SortedDict` base offset → `LogSegment`; the directory listing is the table.

Invariants:
- offsets are assigned here, contiguously: each appended batch gets baseOffset = log end offset
  (LEO), then LEO += record count. The CRC is untouched (it does not cover baseOffset).
- `log_start_offset` <= every readable offset <= LEO; reads outside raise OffsetOutOfRangeError.
- `recovery_point` <= LEO and everything below it has been fsynced: after a crash, only
  segments from the one holding the recovery point on are scanned.
- appends, rolls, truncation and segment deletion hold `self.lock`; fsync runs outside it
  (under `_flush_lock`), so concurrent flushes share one fsync (group commit).
- a failed fsync (flush, seal at roll, truncation) takes the partition offline (`failed`):
  appends, rolls, truncation and flushes of unflushed data raise KafkaStorageError naming the
  partition and the first error; reads and flushes already covered go on; close skips the flush.
- producer state: a roll and a clean close write `<LEO>.snapshot` (producer_state.py; only
  once the state was loaded, i.e. complete), after the data below it was fsynced; at most
  KEEP_SNAPSHOTS are kept. Loading restores the newest snapshot <= LEO (stale ones above the LEO
  and corrupt ones are deleted, the latter with a warning) and replays headers from its offset,
  so a retry of a batch in an older segment is recognised after a roll and a reopen.

Loading and recovery live in log_loader.py (`LogLoader`), reads in log_read.py (`LogReader`):
both mixins of `Log`.

Costs: append O(batch headers + bytes written); read_slice O(log segments) bisect + O(log n)
index lookup + a bounded header scan; offset_for_timestamp O(segments) + one batch decode.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from sortedcontainers import SortedDict

from . import records as R
from .config import LogConfig
from .errors import (CorruptRecordError, InvalidRecordError, InvalidTimestampError, KafkaStorageError,
                     LogStoreError, OffsetOutOfRangeError, RecordTooLargeError, StoreClosedError)
from .log_loader import LogLoader, RecoveryStats, fsync_dir
from .log_read import LogReader
from .producer_state import ProducerStateManager
from .segment import (CLEANED_SUFFIX, DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, SWAP_SUFFIX,
                      TIMEINDEX_SUFFIX, LogSegment)

logger = logging.getLogger("logstore")


@dataclass(frozen=True)
class AppendInfo:
    first_offset: int
    last_offset: int
    log_append_time: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: int
    flush_needed: bool = False
    record_count: int = 0


def parse_partition_dir(name: str) -> tuple[str, int] | None:
    """`topic-3` → ("topic", 3); None for anything else."""
    topic, sep, part = name.rpartition("-")
    if not sep or not topic or not part.isdigit():
        return None
    return topic, int(part)


class Log(LogLoader, LogReader):
    """One partition. Thread-safe. See the module docstring for invariants and costs."""

    def __init__(self, directory: str, topic: str, partition: int, config: LogConfig, *,
                 recovery_point: int = 0, log_start_offset: int = 0, clean: bool = True,
                 stats: RecoveryStats | None = None):
        self.dir = directory
        self.topic = topic
        self.partition = partition
        self.config = config
        self.lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self.segments: SortedDict = SortedDict()
        self.recovery_point = recovery_point
        self._log_start_offset = log_start_offset
        self.last_flush_ms = int(time.time() * 1000)
        self.listeners: list[Callable[["Log"], None]] = []
        self.closed = False
        self._failure: str | None = None  # set by a failed fsync: the partition is offline
        self.stats = stats or RecoveryStats()
        self._pending_deletes: list[tuple[float, LogSegment]] = []
        # Set by a store with a background thread: a roll then seals without fsync and calls
        # `roll_flusher(log, offset)` to have `flush(offset)` run off the appending thread, as
        # Kafka schedules it; the recovery point advances only when that flush returns.
        self.roll_flusher: Callable[["Log", int], None] | None = None
        self._dir_unsynced = False  # a roll created a file whose name is not yet fsynced
        os.makedirs(directory, exist_ok=True)
        try:
            self._load(clean)
        except BaseException:
            for seg in self.segments.values():  # a failed open holds no descriptor
                seg.close()
            raise
        self.producer_state = ProducerStateManager(self._producer_headers)

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.partition}"

    # -- properties --------------------------------------------------------------------------
    @property
    def active_segment(self) -> LogSegment:
        return self.segments.peekitem(-1)[1]

    @property
    def log_end_offset(self) -> int:
        """The next offset to be assigned."""
        return self.segments.peekitem(-1)[1].next_offset

    high_watermark = log_end_offset

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def size(self) -> int:
        """Bytes in all segments."""
        return sum(s.size for s in self.segments.values())

    def __len__(self) -> int:
        return self.log_end_offset - self.log_start_offset

    def add_append_listener(self, fn: Callable[["Log"], None]) -> None:
        """`fn(log)` is called after every append, on the appending thread, and once when the log
        closes (`log.closed` is then true: e.g. its topic was deleted), on the closing thread."""
        self.listeners.append(fn)

    def remove_append_listener(self, fn: Callable[["Log"], None]) -> None:
        try:
            self.listeners.remove(fn)
        except ValueError:
            pass

    # -- append ------------------------------------------------------------------------------
    def append(self, records: Iterable[Any], *, compression: str = "none", timestamp: int | None = None,
               flush: bool = True) -> int:
        """Append records — (key, value[, headers[, timestamp_ms]]) — as one batch.
        Returns the first assigned offset."""
        batch = R.build_batch_buffer(records, compression=compression, timestamp=timestamp)
        return self.append_batches(batch, flush=flush, copy=False).first_offset

    def append_batch(self, batch: bytes | bytearray | memoryview, *, flush: bool = True) -> int:
        """Append one or more pre-encoded RecordBatch v2; returns the first assigned offset."""
        return self.append_batches(batch, flush=flush).first_offset

    def append_batches(self, data: bytes | bytearray | memoryview, *, flush: bool = True,
                       copy: bool = True) -> AppendInfo:
        """Validate and append the record batches in `data` (size, magic, CRC, max.message.bytes,
        timestamps, producer sequences); offsets are assigned by rewriting each baseOffset.

        With `flush=False`, a flush asked for by `flush.messages` is left to the caller
        (`info.flush_needed`), e.g. to run it off an event loop. With `copy=False`, `data` must be
        a bytearray the caller gives up: its offsets are rewritten in place. Raises a LogStoreError
        subclass naming the partition and position of the bad batch; nothing is appended then.
        """
        if self.closed:
            raise StoreClosedError(f"partition {self.name} is closed")
        cfg = self.config
        buf = data if not copy and type(data) is bytearray else bytearray(data)
        n = len(buf)
        batches: list[tuple[int, R.BatchHeader]] = []
        pos = 0
        where = f"partition {self.name}"
        while pos < n:
            if n - pos < R.HEADER_SIZE:
                raise CorruptRecordError(f"{n - pos} trailing bytes after the last batch in produce to {where}")
            h = R.read_header(buf, pos)
            if h.size > cfg.max_message_bytes:
                raise RecordTooLargeError(
                    f"batch of {h.size} bytes at position {pos} exceeds max.message.bytes "
                    f"{cfg.max_message_bytes} of {where}")
            R.validate_batch(buf, pos, h)
            batches.append((pos, h))
            pos += h.size
        if not batches:
            raise CorruptRecordError(f"no record batch in produce to {where}")
        # Kafka 3 refuses an append bigger than segment.bytes (RECORD_LIST_TOO_LARGE); Kafka 4 makes
        # segment.bytes at least 1 MiB, so no client batch meets that check. segment.bytes may be
        # as small as 14 here (tests roll segments with it), and refusing would fail a client's
        # default-sized batches: such an append gets a segment of its own (_maybe_roll), a segment
        # never holds more than one append past its size.
        now = int(time.time() * 1000)
        append_time = now if cfg.message_timestamp_type == "LogAppendTime" else -1
        for pos, h in batches:
            if h.record_count == 0 and not h.is_control:
                raise InvalidRecordError(f"batch at position {pos} of produce to {where} has no records")
            if append_time >= 0:
                R.set_log_append_time(buf, pos, append_time)
            else:
                if cfg.message_timestamp_before_max_ms < R.LONG_MAX_TS and not h.is_control:
                    # Kafka (LogValidator.validateTimestamp) checks every record: the first record's
                    # timestamp (baseTimestamp) is not the oldest when a producer sets timestamps
                    # out of order. Only decoded when the limit is set (the default is off).
                    oldest = min((r.timestamp for r in R.decode_batch(buf, pos, verify_crc=False)
                                  if r.timestamp >= 0), default=-1)
                    if oldest >= 0 and now - oldest > cfg.message_timestamp_before_max_ms:
                        raise InvalidTimestampError(
                            f"timestamp {oldest} in batch at position {pos} of {where} is older than "
                            f"message.timestamp.before.max.ms")
                if cfg.message_timestamp_after_max_ms < R.LONG_MAX_TS and \
                        h.max_timestamp - now > cfg.message_timestamp_after_max_ms:
                    raise InvalidTimestampError(
                        f"timestamp {h.max_timestamp} in batch at position {pos} of {where} is newer than "
                        f"message.timestamp.after.max.ms")
            if cfg.compact and not h.is_control:
                for rec in R.decode_batch(buf, pos, verify_crc=False):
                    if rec.key is None:
                        raise InvalidRecordError(
                            f"compacted topic {self.topic} needs a key on every record: record "
                            f"{rec.offset - h.base_offset} of batch at position {pos} has none")
        with self.lock:
            if self.closed:
                raise StoreClosedError(f"partition {self.name} is closed")
            self._check_online()
            for _pos, h in batches:
                if h.producer_id >= 0 and h.base_sequence >= 0 and not h.is_control:
                    self.producer_state.check(h.producer_id, h.producer_epoch, h.base_sequence,
                                              h.last_sequence, where)
            try:
                seg = self._maybe_roll(n, batches, now)
            except OSError as e:  # creating or preallocating files failed: nothing was appended
                raise KafkaStorageError(f"cannot roll partition {self.name} in {self.dir}: {e}") from e
            offset = seg.next_offset
            first = offset
            info: list[tuple[int, int, int]] = []
            count = 0
            for pos, h in batches:
                R.set_base_offset(buf, pos, offset)
                R.set_leader_epoch(buf, pos, 0)
                last = offset + h.last_offset_delta
                info.append((pos, last, append_time if append_time >= 0 else h.max_timestamp))
                offset = last + 1
                count += h.record_count
            seg.append(buf, info)
            # only once the bytes are written: a failed write must not make the retry a "duplicate"
            for (pos, h), (_p, last, ts) in zip(batches, info):
                if h.producer_id >= 0 and h.base_sequence >= 0 and not h.is_control:
                    # ts: the stored max timestamp (the append time on a LogAppendTime topic), as the
                    # loader sees it when it rebuilds this state from the log and as Kafka keeps it
                    self.producer_state.update(h.producer_id, h.producer_epoch, h.base_sequence,
                                               h.last_sequence, last - h.last_offset_delta, last, ts)
            leo = offset
            flush_needed = leo - self.recovery_point >= cfg.flush_messages
            result = AppendInfo(first, leo - 1, append_time, self._log_start_offset, flush_needed, count)
        if flush_needed and flush:
            self.flush(leo)
        for fn in self.listeners:
            fn(self)
        return result

    def _time_waited_for_roll(self, seg: LogSegment, batches: Sequence[tuple[int, R.BatchHeader]],
                              now: int) -> int:
        """Kafka's `timeWaitedForRoll`: the incoming batches' largest timestamp minus the segment's
        first batch timestamp, so replaying old data does not roll a segment per append; wall
        clock since creation when there are no record timestamps to go by."""
        if self.config.message_timestamp_type == "LogAppendTime":
            incoming = now
        else:
            incoming = max(h.max_timestamp for _, h in batches)
        if incoming < 0:
            return now - seg.created_ms
        return incoming - seg.rolling_timestamp

    def _maybe_roll(self, size: int, batches: Sequence[tuple[int, R.BatchHeader]], now: int) -> LogSegment:
        seg: LogSegment = self.segments.peekitem(-1)[1]
        cfg = self.config
        if seg.size == 0:
            return seg
        last_delta = sum(h.last_offset_delta + 1 for _, h in batches)
        if (seg.size + size > cfg.segment_bytes
                or self._time_waited_for_roll(seg, batches, now) > cfg.segment_ms - cfg.segment_jitter_ms
                or seg.index.is_full() or seg.time_index.is_full()
                or seg.next_offset + last_delta - seg.base_offset > 0x7FFFFFFF):
            return self.roll()
        return seg

    def roll(self) -> LogSegment:
        """Seal the active segment (trim indexes) and start a new one at the LEO. The sealed
        segment is fsynced here, or with a `roll_flusher` by a flush it schedules."""
        deferred = self.roll_flusher
        with self.lock:
            self._check_open()
            old: LogSegment = self.segments.peekitem(-1)[1]
            if old.size == 0:
                return old
            self._check_online()
            base = old.next_offset
            try:
                old.seal(sync=deferred is None)
            except KafkaStorageError as e:
                self._fail(e)
                raise
            cfg = self.config
            seg = LogSegment(self.dir, base, index_interval_bytes=cfg.index_interval_bytes,
                             max_index_bytes=cfg.segment_index_bytes, active=True, create=True)
            self.segments[base] = seg
            self._take_producer_snapshot(base)
            if deferred is not None:
                self._dir_unsynced = True
                # the sealed segment's trimmed indexes (and maybe its data) are not on disk yet:
                # until the flush, recovery after a crash must scan it
                self.recovery_point = min(self.recovery_point, old.base_offset)
            else:
                self._sync_dir()
                # the sealed segment and everything before it is on disk
                self.recovery_point = max(self.recovery_point, base)
        if deferred is not None:
            deferred(self, base)
        return seg

    def _sync_dir(self) -> None:
        try:
            fd = os.open(self.dir, os.O_RDONLY)
        except OSError as e:
            # no fsync was tried (e.g. out of descriptors): nothing can have been dropped, so the
            # partition stays online and the next flush tries again
            raise KafkaStorageError(f"cannot open directory {self.dir} of partition {self.name} to fsync it: "
                                    f"{e.strerror}") from e
        self._dir_unsynced = False
        try:
            os.fsync(fd)
        except OSError as e:
            self._dir_unsynced = True
            self._fail(e)
            raise KafkaStorageError(f"cannot fsync directory {self.dir} of partition {self.name}: "
                                    f"{e.strerror}") from e
        finally:
            os.close(fd)

    # -- flush -------------------------------------------------------------------------------
    def flush(self, offset: int | None = None) -> None:
        """Make every append below `offset` (default: all) durable. Concurrent callers share
        fsyncs: a call whose offset a finished fsync already covers returns at once."""
        if offset is not None and self.recovery_point >= offset:
            return
        with self._flush_lock:
            with self.lock:
                end = self.log_end_offset
                if self.recovery_point >= (end if offset is None else min(offset, end)):
                    return
                self._check_online()  # a later fsync "succeeding" proves nothing: never retry one
                start = self.segments.bisect_right(self.recovery_point) - 1
                segs = list(self.segments.values())[max(start, 0):]
            for seg in segs:
                if not seg.closed:
                    try:
                        seg.flush()
                    except KafkaStorageError as e:
                        self._fail(e)
                        raise
            if self._dir_unsynced:
                self._sync_dir()  # the names of segments a deferred roll created
            with self.lock:
                self.recovery_point = max(self.recovery_point, end)
                self.last_flush_ms = int(time.time() * 1000)

    def flush_if_due(self, now_ms: int) -> bool:
        """The `flush.ms` policy: flush when unflushed data is older than flush.ms."""
        if self._failure is not None:
            return False
        if self.recovery_point < self.log_end_offset and now_ms - self.last_flush_ms >= self.config.flush_ms:
            self.flush()
            return True
        return False

    # -- read ----------------------------------------------------------------------------------
    # -- truncation and deletion ------------------------------------------------------------
    def truncate_to(self, offset: int) -> None:
        """Remove every batch whose last offset >= `offset` (whole batches; the LEO becomes the
        base of the first removed batch)."""
        with self.lock:
            self._check_open()
            if offset >= self.log_end_offset:
                return
            self._check_online()
            if offset < self.segments.peekitem(0)[0]:
                # nothing kept: restart empty at `offset`, as Kafka's truncateFullyAndStartAt
                self.truncate_fully(max(offset, 0))
                return
            deleted = False
            for base in list(self.segments.keys()):
                if base >= offset and len(self.segments) > 1 and base != self.segments.peekitem(0)[0]:
                    seg = self.segments.pop(base)
                    seg.delete_files()
                    deleted = True
            if deleted:
                fsync_dir(self.dir)  # a crash must not bring the cut segments back
            seg = self.segments.peekitem(-1)[1]
            seg.activate()
            try:
                seg.truncate_to(offset)
            except KafkaStorageError as e:
                self._fail(e)
                raise
            self.recovery_point = min(self.recovery_point, self.log_end_offset)
            if self._log_start_offset > self.log_end_offset:
                self._log_start_offset = self.log_end_offset
            self._drop_producer_snapshots_above(self.log_end_offset)
            self.producer_state.truncate()

    def truncate_fully(self, new_offset: int) -> None:
        """Delete every segment and restart the log, empty, at `new_offset`."""
        with self.lock:
            self._check_open()
            self._replace_all_segments(new_offset)
            self.producer_state.truncate()

    def delete_records(self, before_offset: int) -> int:
        """Kafka's DeleteRecords: move the log start offset to `before_offset` (-1: the LEO) and
        drop whole segments below it. Returns the new log start offset."""
        with self.lock:
            self._check_open()
            leo = self.log_end_offset
            if before_offset == -1:
                before_offset = leo
            if before_offset < 0 or before_offset > leo:
                raise OffsetOutOfRangeError(
                    f"cannot delete records before offset {before_offset} of partition {self.name}: "
                    f"valid offsets are {self._log_start_offset} to {leo}")
            if before_offset > self._log_start_offset:
                self._log_start_offset = before_offset
            self.delete_segments_below(self._log_start_offset)
            return self._log_start_offset

    def set_log_start_offset(self, offset: int) -> None:
        with self.lock:
            self._check_open()
            self._log_start_offset = max(self._log_start_offset, min(offset, self.log_end_offset))

    def delete_segments_below(self, offset: int) -> list[LogSegment]:
        """Delete sealed segments whose every offset is below `offset`; never the active one."""
        with self.lock:
            victims = []
            for seg in list(self.segments.values())[:-1]:
                if seg.next_offset <= offset:
                    victims.append(seg)
                else:
                    break
            self.delete_segments(victims)
            return victims

    def delete_segments(self, victims: Sequence[LogSegment]) -> None:
        """Remove segments from the table now; rename their files `.deleted` and remove them after
        `file.delete.delay.ms`, so a reader holding one is not cut off."""
        if not victims:
            return
        with self.lock:
            if self.closed:
                return  # e.g. retention racing a close or a topic deletion: the files are not ours now
            for seg in victims:
                if seg is self.segments.peekitem(-1)[1]:
                    raise LogStoreError(f"refusing to delete the active segment of {self.name}")
                self.segments.pop(seg.base_offset, None)
                seg.rename_suffix(DELETED_SUFFIX)
                self._pending_deletes.append((time.monotonic() + self.config.file_delete_delay_ms / 1000, seg))
            first = self.segments.peekitem(0)[0]
            if self._log_start_offset < first:
                self._log_start_offset = first
        self.purge_deleted()

    def replace_segments(self, cleaned: LogSegment, old: Sequence[LogSegment],
                         step: Callable[[str], None] | None = None) -> LogSegment | None:
        """Swap in `cleaned` (sealed, fsynced `<base>.*.cleaned` files, base = old[0]'s) for the
        consecutive sealed segments `old` (Kafka's replaceSegments). Crash-safe by names alone:
        `.cleaned` → `.swap` (indexes, then the log); old files → `.deleted`; `.swap` → live
        (indexes, then the log); `_load` finishes or undoes each state. Returns the new live
        segment, or None (cleaned files removed) if `old` left the segment table meanwhile.
        `step(name)` is called after each file operation (crash tests stop there)."""
        note = step or (lambda _name: None)
        base = cleaned.base_offset
        stem = os.path.join(self.dir, f"{base:020d}")
        exts = (INDEX_SUFFIX, TIMEINDEX_SUFFIX, LOG_SUFFIX)
        with self.lock:
            if self.closed or not old or old[0].base_offset != base or old[-1] is self.segments.peekitem(-1)[1] \
                    or any(self.segments.get(s.base_offset) is not s for s in old):
                cleaned.delete_files()
                return None
            cleaned.close()
            for ext in exts:
                os.replace(stem + ext + CLEANED_SUFFIX, stem + ext + SWAP_SUFFIX)
                note("swap" + ext)
            fsync_dir(self.dir)
            due = time.monotonic() + self.config.file_delete_delay_ms / 1000
            for seg in old:
                del self.segments[seg.base_offset]
                seg.rename_suffix(DELETED_SUFFIX)
                self._pending_deletes.append((due, seg))
                note(f"deleted:{seg.base_offset}")
            for ext in exts:
                os.replace(stem + ext + SWAP_SUFFIX, stem + ext)
                note("live" + ext)
            fsync_dir(self.dir)
            cfg = self.config
            new = LogSegment(self.dir, base, index_interval_bytes=cfg.index_interval_bytes,
                             max_index_bytes=cfg.segment_index_bytes)
            self.segments[base] = new
        self.purge_deleted()
        return new

    def purge_deleted(self, force: bool = False) -> int:
        """Remove `.deleted` files whose delay has passed. Returns how many segments went."""
        now = time.monotonic()
        with self.lock:
            due = [s for t, s in self._pending_deletes if force or t <= now]
            self._pending_deletes = [(t, s) for t, s in self._pending_deletes if not (force or t <= now)]
        for seg in due:
            seg.delete_files()
        return len(due)

    # -- failure -------------------------------------------------------------------------------
    @property
    def failed(self) -> str | None:
        """Why the partition is offline (a failed fsync), or None."""
        return self._failure

    def _fail(self, e: BaseException) -> None:
        """After a failed fsync the kernel may have dropped the dirty pages and report the next
        fsync as a success: nothing written since the last good flush can be trusted durable.
        Like Kafka taking the log dir offline, refuse appends, rolls, truncation and flushes of
        unflushed data from now on; reads go on (data below the recovery point is durable, the
        rest is still in the page cache). Reopening the store recovers from the recovery point."""
        if self._failure is None:
            self._failure = str(e) or repr(e)
            logger.error("partition %s is offline: %s", self.name, self._failure)

    def _check_open(self) -> None:
        """A closed Log (its store closed, or its topic deleted) neither reads nor changes its
        files: they may be gone, or belong to a newer topic of the same name, or to another
        process that opened the log dir since."""
        if self.closed:
            raise StoreClosedError(f"partition {self.name} is closed")

    def _check_online(self) -> None:
        if self._failure is not None:
            raise KafkaStorageError(
                f"partition {self.name} ({self.dir}) is offline after a failed fsync: {self._failure}; "
                "reopen the log dir to recover it")

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush, trim the active segment's indexes and close every file. A failed (offline) log
        is only closed: its unflushed tail is left to recovery at the next open."""
        with self.lock:
            if self.closed:
                return
            try:
                if self._failure is None:
                    self.flush()
                    if self._take_producer_snapshot(self.log_end_offset):
                        fsync_dir(self.dir)
            finally:
                self.closed = True
                error: OSError | None = None
                for seg in self.segments.values():
                    try:
                        seg.close()  # msyncs the active segment's indexes
                    except OSError as e:
                        error = error or e
                if error is not None and self._failure is None:
                    self._fail(error)
                    raise KafkaStorageError(f"cannot close partition {self.name}: {error}") from error
        self.purge_deleted(force=True)
        self._tell_closed()

    def abandon(self) -> None:
        """Close every file without a flush: the partition is being deleted."""
        with self.lock:
            self.closed = True
            for seg in self.segments.values():
                seg.close()
        self.purge_deleted(force=True)
        self._tell_closed()

    def _tell_closed(self) -> None:
        for fn in list(self.listeners):  # waiters (a broker's parked fetches) learn at once
            try:
                fn(self)
            except Exception:
                logger.exception("close listener of %s failed", self.name)

    def delete(self) -> None:
        """Close and remove the partition directory."""
        self.abandon()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"Log({self.name}, start={self._log_start_offset}, end={self.log_end_offset})"
