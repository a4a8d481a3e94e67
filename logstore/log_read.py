"""Reading a partition: the read half of `Log` (log.py), as a mixin.

What it owns: turning an offset into a file region (`read_slice`, what a fetch sends), decoding
that region into records (`read`, `iter_records`), and the searches by time
(`offset_for_timestamp`, `max_timestamp_offset`).

Invariants (the segment table's are log.py's):
- a read outside [log start offset, log end offset] raises OffsetOutOfRangeError naming the range;
  a read at the log end is empty;
- a region is whole batches from the one holding the offset, at least one batch when `min_one`;
  segments are contiguous, so a sealed segment that ends before the next segment's base offset
  lost its end and the read raises CorruptRecordError naming the file and position;
- every decoded batch has its CRC checked;
- the segment table is looked at under `Log.lock`; index searches that may race a segment
  deletion (retention, delete-records) run under it too.

Costs: read_slice O(log segments) bisect + O(log n) index lookup + a bounded header scan;
offset_for_timestamp O(segments) + one batch decode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

from . import records as R
from .errors import CorruptRecordError, OffsetOutOfRangeError, check_int
from .segment import FileSlice, LogSegment

if TYPE_CHECKING:
    from sortedcontainers import SortedDict

_EMPTY_SLICE = FileSlice(-1, 0, 0)
_EMPTY_TAIL_MAX = 4096  # bytes of a sealed segment's tail checked for empty batches only (read_slice)


def _only_empty_batches(seg: LogSegment, s: FileSlice) -> bool:
    """Whether slice `s`, a short tail of sealed segment `seg`, holds only whole batches without
    records (and no control batch)."""
    if s.size > _EMPTY_TAIL_MAX or s.position + s.size != seg.size:
        return False
    data = seg.pread(s.size, s.position)
    headers = list(R.iter_headers(data))
    return bool(headers) and sum(h.size for _p, h in headers) == len(data) and \
        all(h.record_count == 0 and not h.is_control for _p, h in headers)


class LogReader:
    """The reading half of `Log`. Uses the attributes and methods `Log` defines."""

    segments: "SortedDict"
    _log_start_offset: int
    lock: Any
    name: str
    log_end_offset: int
    _check_open: Callable[[], None]

    def _check_range(self, offset: int) -> int:
        if type(offset) is not int:
            check_int(offset, "offset")   # "0" would fail deep inside, True would read from offset 1
        leo = self.log_end_offset
        if offset < self._log_start_offset or offset > leo:
            raise OffsetOutOfRangeError(
                f"offset {offset} is out of range for partition {self.name}: valid offsets are "
                f"{self._log_start_offset} to {leo}")
        return leo

    def read_slice(self, offset: int, max_bytes: int, *, min_one: bool = True) -> FileSlice:
        """The file region of whole batches from the batch holding `offset`, about `max_bytes`
        long (at least one batch when `min_one`; may end inside a batch, as Kafka's fetch does).
        Size 0 at the log end. O(log segments + log index entries)."""
        with self.lock:
            self._check_open()
            leo = self._check_range(offset)
            if offset == leo:
                return _EMPTY_SLICE
            i = self.segments.bisect_right(offset) - 1
            segs = self.segments.values()
            i = max(i, 0)
            while i < len(segs):
                seg = segs[i]
                upper = segs[i + 1].base_offset if i + 1 < len(segs) else None
                s = seg.read_slice(offset, max_bytes, min_one=min_one, upper=upper)
                if s is not None and upper is not None and _only_empty_batches(seg, s):
                    # a cleaned segment's end marker: a batch that lost every record to compaction
                    # (cleaner.py). Kafka never answers a fetch with nothing but such batches while
                    # records follow (librdkafka takes an answer without a record for a too-small
                    # fetch size and after ten in a row reports MSG_SIZE_TOO_LARGE): go on with the
                    # next segment
                    offset = upper
                    i += 1
                    continue
                if s is not None:
                    return s
                if upper is not None and offset < upper and seg.base_offset <= offset:
                    # segments are contiguous (a roll starts the next at the LEO; cleaning keeps
                    # each segment's last batch), so a sealed segment that ends before `offset`
                    # lost its end: refuse rather than answer with the next segment's records
                    raise CorruptRecordError(
                        f"offset {offset} of partition {self.name} is missing from {seg.log_path}, which ends "
                        f"at position {seg.size} before the next segment's base offset {upper}",
                        path=seg.log_path, position=seg.size)
                offset = max(offset, upper) if upper is not None else offset
                i += 1
            return _EMPTY_SLICE

    def read_bytes(self, offset: int, max_bytes: int = 1 << 20, *, min_one: bool = True) -> bytes:
        """The bytes of `read_slice`."""
        return self.read_slice(offset, max_bytes, min_one=min_one).read()

    def read(self, offset: int, max_bytes: int = 1 << 20, *, max_records: int | None = None) -> list[R.Record]:
        """Decoded records with offset >= `offset`, in order, from about `max_bytes` of log
        (at least one batch). Empty at the log end. CRCs are checked; a corrupt batch raises
        CorruptRecordError naming the file and position."""
        s = self.read_slice(offset, max_bytes)
        out: list[R.Record] = []
        while s.size:
            data = s.read()
            base = s.position
            got_any = False
            end_offset = offset
            for pos, h in R.iter_headers(data):
                got_any = True
                end_offset = h.last_offset + 1
                if h.last_offset < offset:
                    continue
                recs = R.decode_batch(data, pos, path=s.path, base=base)
                if recs and recs[0].offset < offset:
                    recs = [r for r in recs if r.offset >= offset]
                out.extend(recs)
                if max_records is not None and len(out) >= max_records:
                    break  # the batches after it would be decoded only to be dropped
            if not got_any and s.size:
                raise CorruptRecordError(
                    f"unreadable batch at position {s.position} of {s.path} for offset {offset}",
                    path=s.path, position=s.position)
            if out or end_offset >= self.log_end_offset:
                break
            # only control batches or compacted holes so far: go on
            offset = end_offset
            s = self.read_slice(offset, max_bytes)
        if max_records is not None and len(out) > max_records:
            del out[max_records:]
        return out

    def iter_records(self, offset: int | None = None, max_bytes: int = 1 << 20) -> Iterator[R.Record]:
        """Every record from `offset` (default: the log start) up to the log end as it is when
        iteration starts, reading about `max_bytes` at a time. Same checks as `read`."""
        off = self._log_start_offset if offset is None else offset
        end = self.log_end_offset
        while off < end:
            recs = self.read(off, max_bytes)
            if not recs:
                return
            yield from recs
            off = recs[-1].offset + 1

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= `timestamp` at or after the
        log start offset, or None if there is none."""
        with self.lock:
            self._check_open()
            segs = list(self.segments.values())
            lso = self._log_start_offset
        for seg in segs:
            if seg.next_offset <= lso or seg.size == 0:
                continue
            if seg.max_timestamp < timestamp:
                continue
            # under the lock: retention or delete-records may remove the segment (closing its
            # indexes) at any moment otherwise. One segment's index lookup and at most an index
            # interval of headers, then one batch decoded: appends wait that long at most.
            with self.lock:
                self._check_open()
                if self.segments.get(seg.base_offset) is not seg:
                    continue  # deleted since the list was taken: below the log start now
                found = self._find_timestamp_in(seg, timestamp, self._log_start_offset)
            if found is not None:
                return found
        return None

    @staticmethod
    def _find_timestamp_in(seg: LogSegment, timestamp: int, lso: int) -> tuple[int, int] | None:
        ts_e, off = seg.time_index.lookup(timestamp)
        if ts_e >= 0 and not seg.time_entry_ok(ts_e, off):
            off = seg.base_offset  # a damaged time index entry: search the segment from its start
        found = seg.find_position(max(off, lso))  # checks the index entry it starts from
        if found is None:
            return None
        # headers only, then decode the one batch that holds the answer (not 8 MB chunks)
        for p, h in seg._iter_headers_from(found[0]):
            if h.max_timestamp < timestamp or h.last_offset < lso:
                continue
            for rec in R.decode_batch(seg.pread(h.size, p), path=seg.log_path, base=p):
                if rec.timestamp >= timestamp and rec.offset >= lso:
                    return rec.offset, rec.timestamp
        return None

    def max_timestamp_offset(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with the largest timestamp of the segments
        holding records at or after the log start, or None when there are none. As Kafka's
        ListOffsets MAX_TIMESTAMP (UnifiedLog.fetchOffsetByTimestamp), the record is looked up in
        its segment whatever the log start: after delete-records it may lie below it, rather than
        an answer of none while records remain."""
        with self.lock:
            self._check_open()
            segs = [s for s in self.segments.values() if s.size and s.next_offset > self._log_start_offset]
            if not segs:
                return None
            best = max(segs, key=lambda s: s.max_timestamp)
            # under the lock: retention may delete the segment (closing its indexes) otherwise
            return self._find_timestamp_in(best, best.max_timestamp, best.base_offset)
