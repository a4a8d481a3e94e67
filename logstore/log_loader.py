"""Opening a partition directory: Kafka's LogLoader, as a mixin of `Log` (log.py).

What a load does, in order (the invariants it restores are log.py's):
- leftovers of interrupted operations go: `.deleted` and `.cleaned` files are removed (the live
  files are intact), a `.swap` log finishes its cleaning swap (`_complete_swap`), orphan indexes
  without a `.log` are removed;
- after a clean shutdown (marker present) the files are trusted; only a missing index or one of
  a torn length is rebuilt;
- after an unclean stop, segments from the one holding the recovery point on are scanned batch by
  batch (size, magic, CRC; `LogSegment.recover`), the torn or corrupt tail is truncated and every
  later segment deleted; older segments get their indexes checked and rebuilt when they disagree
  with the log. Everything found is counted in `RecoveryStats` and described in its `problems`;
- producer snapshots above the log end offset recovery arrived at are deleted (durably) before
  the load returns: they describe records a crash lost (`_drop_stale_producer_snapshots`);
- producer state comes from the newest snapshot at or below the log end plus a header replay
  (`_producer_headers`; without a snapshot, of the last two segments holding data), and
  snapshots are written at rolls and clean closes once the state is loaded (and at the first
  roll of a partition without a snapshot, loading it for that: the replay must always reach
  every batch since the newest snapshot).

Costs: a clean open reads directory listings and nothing else (indexes are mapped lazily); an
unclean one reads every byte after the recovery point once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from . import producer_state as PS
from . import records as R
from .segment import (CLEANED_SUFFIX, DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, SWAP_SUFFIX,
                      TIMEINDEX_SUFFIX, LogSegment)

if TYPE_CHECKING:
    from sortedcontainers import SortedDict

    from .config import LogConfig
    from .producer_state import ProducerStateManager

KEEP_SNAPSHOTS = 3  # producer-state snapshot files kept per partition (newest)

logger = logging.getLogger("logstore")


@dataclass
class RecoveryStats:
    segments_scanned: int = 0
    bytes_scanned: int = 0
    bytes_truncated: int = 0
    indexes_rebuilt: int = 0
    problems: list = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.problems is None:
            self.problems = []


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LogLoader:
    """The loading half of `Log`: fills `segments` from the directory and recovers them. Uses the
    attributes `Log.__init__` sets before calling `_load`."""

    dir: str
    config: "LogConfig"
    segments: "SortedDict"
    recovery_point: int
    _log_start_offset: int
    stats: RecoveryStats
    producer_state: "ProducerStateManager"
    lock: Any
    name: str
    log_end_offset: int

    def _load(self, clean: bool) -> None:
        cfg = self.config
        bases: set[int] = set()
        swaps: list[int] = []
        for fname in os.listdir(self.dir):
            path = os.path.join(self.dir, fname)
            stem, dot, rest = fname.partition(".")
            if fname.endswith(DELETED_SUFFIX) or fname.endswith(CLEANED_SUFFIX):
                # an interrupted deletion or an unfinished cleaning: the live files are intact
                os.unlink(path)
            elif fname.endswith(SWAP_SUFFIX) and stem.isdigit() and rest == "log" + SWAP_SUFFIX:
                swaps.append(int(stem))
            elif fname.endswith(LOG_SUFFIX) and stem.isdigit() and rest == "log":
                bases.add(int(stem))
        for base in swaps:
            self._complete_swap(base, bases)
        # orphan indexes (no .log) are removed; missing indexes are rebuilt below. A `.swap` index
        # without its `.swap` log is from a swap that never began (the log is renamed last).
        for fname in os.listdir(self.dir):
            stem, _, rest = fname.partition(".")
            if stem.isdigit() and (rest in ("index", "timeindex") and int(stem) not in bases
                                   or rest in ("index" + SWAP_SUFFIX, "timeindex" + SWAP_SUFFIX)):
                os.unlink(os.path.join(self.dir, fname))
        for base in sorted(bases):
            seg = LogSegment(self.dir, base, index_interval_bytes=cfg.index_interval_bytes,
                             max_index_bytes=cfg.segment_index_bytes)
            self.segments[base] = seg
        if not self.segments:
            base = max(self._log_start_offset, 0)
            self.segments[base] = LogSegment(self.dir, base, index_interval_bytes=cfg.index_interval_bytes,
                                             max_index_bytes=cfg.segment_index_bytes, active=True, create=True)
            fsync_dir(self.dir)
            self.recovery_point = base
            self.stats.segments_scanned += 0
        else:
            self._recover(clean)
        if self._log_start_offset > self.log_end_offset:
            self._restart_at_log_start()
        last = self.segments.peekitem(-1)[1]
        last.activate()
        first_base = self.segments.peekitem(0)[0]
        self._log_start_offset = max(self._log_start_offset, first_base)
        self.recovery_point = min(max(self.recovery_point, 0), self.log_end_offset)
        self._drop_stale_producer_snapshots()

    def _drop_stale_producer_snapshots(self) -> None:
        """Delete the producer snapshots above the log end offset recovery arrived at, durably,
        before anything can be appended. A snapshot is fsynced at a roll before the sealed segment
        is (log.py defers that flush), so a crash that loses unflushed data can leave snapshots of
        a history the log no longer has. Left until the producer state is first loaded, appends
        by non-idempotent producers could carry the log end past such a file, which would then
        pass for valid: a retry of a lost batch answered as a duplicate at an offset holding
        another record, or the producer's next batch refused as out of order. Kafka's LogLoader
        removes them at load too."""
        leo = self.log_end_offset
        stale = [path for off, path in PS.list_snapshots(self.dir) if off > leo]
        if not stale:
            return
        for path in stale:
            self.stats.problems.append(f"deleted producer snapshot {path}: above the log end offset {leo}")
            self._remove_file(path)
        fsync_dir(self.dir)

    def _restart_at_log_start(self) -> None:
        """The checkpointed log start offset lies past everything recovery kept: delete-records
        (or retention) moved it over records that a crash then lost unflushed. As Kafka's LogLoader
        does, delete what is left and restart the log, empty, at the log start offset. Lowering the
        start offset instead would reuse offsets that were deleted (a consumer may have committed
        past them), and the stale checkpoint on disk would later hide records appended there.
        """
        lso = self._log_start_offset
        self.stats.problems.append(
            f"log end offset {self.log_end_offset} after recovery is below the log start offset {lso}: "
            f"deleted every segment, the log restarts empty at {lso}")
        self._replace_all_segments(lso)

    def _replace_all_segments(self, new_offset: int) -> None:
        """Delete every segment and producer snapshot and start one empty active segment at
        `new_offset`, which becomes the log start offset and the recovery point. The old names
        are fsynced away first, so a crash in between reopens as an empty dir, never as old
        segments beside a new one (Log.truncate_fully and recovery both end up here)."""
        for seg in list(self.segments.values()):
            seg.delete_files()
        self.segments.clear()
        self._drop_producer_snapshots_above(-1)
        fsync_dir(self.dir)
        cfg = self.config
        self.segments[new_offset] = LogSegment(self.dir, new_offset, index_interval_bytes=cfg.index_interval_bytes,
                                               max_index_bytes=cfg.segment_index_bytes, active=True, create=True)
        fsync_dir(self.dir)
        self._log_start_offset = new_offset
        self.recovery_point = new_offset

    def _complete_swap(self, base: int, bases: set[int]) -> None:
        """Finish a cleaning that was renamed to `.swap`: the swap segment replaces the live
        segments it covers. The `.swap` rename happens only once the cleaned segment is fully
        written and fsynced, so finishing it is always safe. A cleaned segment ends exactly where
        the segments it replaces ended (cleaner.py keeps their last batch, empty if need be), so
        [base, its next offset) is the set it replaces. Indexes are renamed before the log: a
        `.log.swap` means the swap is unfinished (see `replace_segments`)."""
        seg = LogSegment(self.dir, base, suffix=SWAP_SUFFIX)
        end = seg.next_offset if seg.size else base
        seg.close()
        covered = [b for b in bases if base <= b < max(end, base + 1)]
        for b in covered:
            for ext in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX):
                p = os.path.join(self.dir, f"{b:020d}{ext}")
                if os.path.exists(p):
                    os.unlink(p)
            bases.discard(b)
        for ext in (INDEX_SUFFIX, TIMEINDEX_SUFFIX, LOG_SUFFIX):
            p = os.path.join(self.dir, f"{base:020d}{ext}{SWAP_SUFFIX}")
            if os.path.exists(p):
                os.replace(p, p[: -len(SWAP_SUFFIX)])
        bases.add(base)
        fsync_dir(self.dir)

    def _recover(self, clean: bool) -> None:
        stats = self.stats
        segs = list(self.segments.values())
        if clean:
            # trust the files; only a missing index or one of a torn length forces a rebuild
            for seg in segs:
                if not seg.index_files_ok():
                    stats.problems.append(f"rebuilding the indexes of {seg.log_path}: missing or torn")
                    self._recover_segment(seg)
                    stats.indexes_rebuilt += 1
            if stats.indexes_rebuilt:
                fsync_dir(self.dir)
            return
        rp = self.recovery_point
        start = self.segments.bisect_right(rp) - 1
        for i, seg in enumerate(segs):
            if i >= max(start, 0):
                truncated = self._recover_segment(seg)
                nxt = segs[i + 1].base_offset if i + 1 < len(segs) else None
                gap = nxt is not None and seg.next_offset < nxt
                if gap and not truncated:
                    # segments are contiguous when written; one that ends short of the next lost
                    # unflushed records (a roll that left its fsync to a later flush), so every
                    # later segment holds only unflushed records too (flushes go in order)
                    stats.problems.append(f"{seg.log_path} ends at offset {seg.next_offset}, before the next "
                                          f"segment's base offset {nxt}")
                if truncated or gap:
                    # everything after a torn or corrupt batch is unflushed garbage: drop it
                    for later in segs[i + 1:]:
                        stats.problems.append(f"deleted segment {later.log_path} after truncation")
                        later.delete_files()
                        del self.segments[later.base_offset]
                    break
            elif not seg.index_files_ok():
                stats.problems.append(f"rebuilding the indexes of {seg.log_path}: missing or torn")
                self._recover_segment(seg)
                stats.indexes_rebuilt += 1
            else:
                problem = seg.check_indexes()
                if problem:
                    stats.problems.append(problem)
                    self._recover_segment(seg)
                    stats.indexes_rebuilt += 1
        if stats.segments_scanned or stats.problems:
            # recovery may have re-created index files or deleted segments: make the names durable
            fsync_dir(self.dir)
        for seg in list(self.segments.values())[:-1]:
            seg.release()  # a log of thousands of segments must not keep each one open after this
        # an empty trailing segment file after a crash is harmless; keep it as the active one

    def _recover_segment(self, seg: LogSegment) -> int:
        self.stats.segments_scanned += 1
        self.stats.bytes_scanned += seg.size
        truncated, reason = seg.recover(self.config.max_message_bytes)
        if truncated:
            self.stats.bytes_truncated += truncated
            self.stats.problems.append(f"truncated {truncated} bytes: {reason}")
        return truncated

    # -- producer state (snapshots: producer_state.py) ----------------------------------------
    def _producer_headers(self) -> Iterable[R.BatchHeader]:
        """The producer-state loader: restore the newest valid snapshot at or below the LEO
        (deleting stale and corrupt ones), then yield the headers of the batches from its offset
        to the LEO. Without a snapshot, the scan starts at the second-to-last segment (bounded;
        producers only in older segments are forgotten, as after Kafka's expiry)."""
        with self.lock:
            leo = self.log_end_offset
            start = None
            for off, path in reversed(PS.list_snapshots(self.dir)):
                if off > leo:
                    self._remove_file(path)  # from before a truncation or an unclean cut
                    continue
                try:
                    self.producer_state.restore(PS.read_snapshot(path))
                except (PS.CorruptSnapshotError, OSError) as e:
                    logger.warning("ignoring producer snapshot of %s: %s; rebuilding by a scan", self.name, e)
                    self._remove_file(path)
                    continue
                start = off
                break
            if start is None:
                # the last two segments holding data: an empty active segment (just rolled, or
                # left by a crash right after a roll) must not take the place of one of them
                bases = [b for b, seg in self.segments.items() if seg.size] or list(self.segments.keys())
                start = bases[-2] if len(bases) > 1 else bases[0]
            i = max(self.segments.bisect_right(start) - 1, 0)
            segs = [(seg, seg.size) for seg in list(self.segments.values())[i:]]
        for seg, end in segs:
            found = seg.find_position(start, end) if seg is segs[0][0] else None
            pos = found[0] if found else 0
            for _p, h in seg._iter_headers_from(pos, end):
                if h.last_offset >= start:
                    yield h

    def _remove_file(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def _take_producer_snapshot(self, offset: int) -> bool:
        """Write the producer state at `offset` (= LEO), keep the newest KEEP_SNAPSHOTS files.
        The caller fsyncs the directory.

        An unloaded state is written only at a roll (`offset` is the base of a new, empty last
        segment) of a partition without a snapshot, and is loaded for it first. Without a
        snapshot the loader scans only the last two segments holding data, and the roll moves
        that window on: a producer whose batches are all in the segment it leaves behind would be
        forgotten, and its retry after a restart appended a second time (Kafka has every
        producer's state from its load on, and snapshots it at every roll). That load scans at
        most those two segments, once in the partition's life: from then on a snapshot exists,
        and the loader replays from the newest one, whatever the rolls since. So every batch since
        the newest snapshot (all of them, without one) stays within what the loader scans. Best
        effort: a failed load or write costs a longer scan later, never data."""
        ps = self.producer_state
        if not ps.loaded:
            last_base, last = self.segments.peekitem(-1)
            rolling = len(self.segments) > 1 and last_base == offset and last.size == 0
            if not rolling or any(off <= offset for off, _path in PS.list_snapshots(self.dir)):
                return False  # a close, or a snapshot to replay from: the log still says it all
            try:
                ps.load()
            except Exception as e:  # noqa: BLE001 (best effort, as the write below)
                logger.warning("cannot load the producer state of %s at a roll: %s", self.name, e)
                return False
        try:
            PS.write_snapshot(PS.snapshot_path(self.dir, offset), ps.producers)
            for _off, path in PS.list_snapshots(self.dir)[:-KEEP_SNAPSHOTS]:
                self._remove_file(path)
        except OSError as e:
            logger.warning("cannot write producer snapshot of %s at offset %d: %s", self.name, offset, e)
            return False
        return True

    def _drop_producer_snapshots_above(self, offset: int) -> None:
        for off, path in PS.list_snapshots(self.dir):
            if off > offset:
                self._remove_file(path)

