"""One segment of a partition: a `.log` file of record batches and its two sparse indexes.

Files, all named by the segment's base offset (20 digits, zero padded):
    <base>.log        RecordBatch v2 batches, back to back (layout in records.py)
    <base>.index      offset index (layout in index.py)
    <base>.timeindex  time index (layout in index.py)

Invariants:
- `size` is the end of the last complete batch written; bytes are only ever appended at `size`
  (or the file is truncated to a batch boundary by recovery or truncation).
- Every batch's offsets lie in [base_offset, next_offset); batches are in offset order.
- An index entry is added after each `index.interval.bytes` of log, pointing at a batch start.
- A sealed segment (not the active one) opens no file until it is read, and its indexes are
  trimmed; only the active segment holds writable, preallocated indexes. A sealed segment's time
  index ends with its largest timestamp (written by `seal` and `recover`), so `max_timestamp`
  needs no log scan; that entry (like every time index entry a lookup starts from) is checked
  against the batch header it names first (`time_entry_ok`), and the headers are scanned instead
  when it does not match.
- An offset index entry is (last offset of a batch, position of that batch); lookups trust an
  entry only after checking the batch header there, and scan from the top otherwise.
- The `.log` descriptor is owned by an `FdHandle` (file_slice.py), closed when its last reference goes: the
  segment drops its reference at `release`/`close`/`delete_files`, and each `FileSlice` holds one,
  so a slice outliving its segment (fetch data sent after retention purged the file, or after
  `truncate_to` deleted it) still reads that file, never a closed or reused descriptor number.
- Recovery's repairs are durable before it returns: a cut log is fdatasynced, a sealed
  segment's rebuilt and trimmed indexes are fsynced (as `seal` does), since a clean close right
  after would make the next open trust them without a scan.

Costs: `append` O(1) plus the write; `find_position` O(log n) index search plus a scan of at most
`index.interval.bytes` of batch headers; `recover` O(size), reading headers and CRCs only.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Iterator

from . import records as R
from .errors import KafkaStorageError
from .file_slice import FdHandle, FileSlice, pread_full  # noqa: F401 (FileSlice: re-exported)
from .index import OffsetIndex, TimeIndex, read_last_time_entry

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
DELETED_SUFFIX = ".deleted"
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"

_SCAN_CHUNK = 64 * 1024
_RECOVER_CHUNK = 8 * 1024 * 1024


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


class LogSegment:
    """A `.log` file plus its indexes. Mutating calls are made under the owning Log's lock."""

    def __init__(self, directory: str, base_offset: int, *, index_interval_bytes: int = 4096,
                 max_index_bytes: int = 10 * 1024 * 1024, active: bool = False, create: bool = False,
                 suffix: str = ""):
        self.dir = directory
        self.base_offset = base_offset
        self.suffix = suffix
        name = os.path.join(directory, segment_name(base_offset))
        self.log_path = name + LOG_SUFFIX + suffix
        self.index = OffsetIndex(name + INDEX_SUFFIX + suffix, base_offset, max_index_bytes, writable=active)
        self.time_index = TimeIndex(name + TIMEINDEX_SUFFIX + suffix, base_offset, max_index_bytes,
                                    writable=active)
        self.index_interval_bytes = index_interval_bytes
        self.active = active
        self._fh: FdHandle | None = None
        self._fd_lock = threading.Lock()
        # serialises flush (which runs outside the Log's lock) with seal and close, which unmap
        # the indexes and close the file that flush syncs
        self._life_lock = threading.Lock()
        if create:
            fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            self._fh = FdHandle(fd)
            self.size = 0
        else:
            self.size = os.path.getsize(self.log_path)
        self.bytes_since_last_index = 0
        self._next_offset: int | None = base_offset if create else None
        self._max_ts: int | None = -1 if create else None
        self._offset_of_max_ts: int = base_offset
        self._rolling_ts: int | None = None
        self.created_ms = int(time.time() * 1000)
        self.closed = False
        self.unsynced_seal = False  # sealed with sync=False: flush() owes the fsyncs seal skipped

    # -- files -----------------------------------------------------------------------------
    def _handle(self) -> FdHandle:
        """The descriptor's handle, opening the file lazily. Callers that use the fd outside the
        Log's lock keep the handle in a local, so a concurrent close cannot close it under them."""
        fh = self._fh
        if fh is None:
            with self._fd_lock:
                if self._fh is None:
                    self._fh = FdHandle(os.open(self.log_path, os.O_RDWR))
                fh = self._fh
        return fh

    @property
    def _fd(self) -> int | None:
        fh = self._fh
        return None if fh is None else fh.fd

    @property
    def fd(self) -> int:
        return self._handle().fd

    def pread(self, n: int, pos: int) -> bytes:
        fh = self._handle()
        return pread_full(fh.fd, n, pos)

    # -- derived state (lazy for sealed segments) -------------------------------------------
    @property
    def next_offset(self) -> int:
        """One past the last offset in this segment (base offset when empty)."""
        if self._next_offset is None:
            self._load_tail()
        return self._next_offset  # type: ignore[return-value]

    @property
    def max_timestamp(self) -> int:
        """Largest batch maxTimestamp in the segment, -1 when empty or unknown."""
        if self._max_ts is None:
            if not self.active:
                e = read_last_time_entry(self.time_index.path)
                if e is not None and e[0] >= 0 and self.time_entry_ok(e[0], self.base_offset + e[1]):
                    self._max_ts = e[0]
                    self._offset_of_max_ts = self.base_offset + e[1]
                    return e[0]
                if e is not None:
                    # a damaged last entry: the largest timestamp comes from the batch headers
                    self._max_ts = -1
                    for _p, h in self._iter_headers_from(0):
                        if h.max_timestamp > self._max_ts:
                            self._max_ts, self._offset_of_max_ts = h.max_timestamp, h.last_offset
                    return self._max_ts
            self._load_tail()
        return self._max_ts  # type: ignore[return-value]

    @property
    def rolling_timestamp(self) -> int:
        """The time segment.ms counts from: the first batch's max timestamp, else creation."""
        if self._rolling_ts is None:
            if self.size >= R.HEADER_SIZE:
                h = R.read_header(self.pread(R.HEADER_SIZE, 0))
                self._rolling_ts = h.max_timestamp if h.max_timestamp >= 0 else self.created_ms
            else:
                return self.created_ms
        return self._rolling_ts

    def time_entry_ok(self, timestamp: int, offset: int) -> bool:
        """Whether a time index entry is what `append`/`recover` write: the last offset of a batch
        whose max timestamp is `timestamp` (a damaged entry would skip or misplace records).
        One offset-index lookup and a bounded header scan."""
        if offset < self.base_offset:
            return False
        found = self.find_position(offset)
        return found is not None and found[1].last_offset == offset and found[1].max_timestamp == timestamp

    def _load_tail(self) -> None:
        """Find the last batch by scanning headers from the last index entry (from the top when
        that entry does not point at its batch: a wrong start would give a wrong log end offset)."""
        off, pos = self.index.last_entry()
        if pos and not self._entry_points_at_batch(off, pos):
            pos = 0
        last_end = self.base_offset
        max_ts = -1
        max_off = self.base_offset
        for _p, h in self._iter_headers_from(pos):
            last_end = h.last_offset + 1
            if h.max_timestamp > max_ts:
                max_ts, max_off = h.max_timestamp, h.last_offset
        te = self.time_index.last_entry()
        if te[0] > max_ts:
            if self.time_entry_ok(*te):
                max_ts, max_off = te
            else:  # a damaged entry: the largest timestamp of the batches before `pos` by a scan
                for _p, h in self._iter_headers_from(0, pos):
                    if h.max_timestamp > max_ts:
                        max_ts, max_off = h.max_timestamp, h.last_offset
        self._next_offset = last_end
        if self._max_ts is None or max_ts > self._max_ts:
            self._max_ts = max_ts
            self._offset_of_max_ts = max_off

    def _entry_points_at_batch(self, offset: int, pos: int, end: int | None = None) -> bool:
        """Whether an offset index entry (offset, pos) is what `append` writes: the start of a whole
        batch whose last offset is `offset`."""
        end = self.size if end is None else end
        if pos + R.HEADER_SIZE > end:
            return False
        h = R.read_header(self.pread(R.HEADER_SIZE, pos))
        return (h.magic == R.MAGIC and h.last_offset == offset
                and h.batch_length >= R.HEADER_SIZE - R.LOG_OVERHEAD and pos + h.size <= end)

    def _iter_headers_from(self, pos: int, end: int | None = None) -> Iterator[tuple[int, R.BatchHeader]]:
        """(position, header) of each batch from `pos` to `end`, reading in chunks."""
        if end is None:
            end = self.size
        while pos + R.HEADER_SIZE <= end:
            chunk = self.pread(min(_SCAN_CHUNK, end - pos), pos)
            advanced = False
            for p, h in R.iter_headers(chunk):
                yield pos + p, h
                advanced = True
                last = pos + p + h.batch_length + R.LOG_OVERHEAD
            if not advanced:
                h = R.read_header(self.pread(R.HEADER_SIZE, pos))
                if h.batch_length < R.HEADER_SIZE - R.LOG_OVERHEAD or pos + h.size > end:
                    return
                yield pos, h
                pos += h.size
            else:
                pos = last

    # -- append ----------------------------------------------------------------------------
    def append(self, data: bytes | bytearray | memoryview, batches: list[tuple[int, int, int]]) -> None:
        """Append whole batches. `batches` lists (position within data, last offset, max timestamp)
        of each batch in `data`, in order."""
        pos = self.size
        mv = memoryview(data)
        written = 0
        try:
            # map (and preallocate) the indexes before writing: failing after the write would leave
            # whole batches past `size` that recovery would bring back
            self.index.entries
            self.time_index.entries
            while written < len(mv):
                written += os.pwrite(self.fd, mv[written:], pos + written)
        except OSError as e:
            # leave nothing half-written visible: cut back to the last whole batch
            try:
                os.ftruncate(self.fd, pos)
            except OSError:
                pass
            raise KafkaStorageError(f"cannot append to {self.log_path} at position {pos}: {e.strerror}") from e
        max_ts = self._max_ts if self._max_ts is not None else self.max_timestamp
        for rel, last_offset, ts in batches:
            if ts > max_ts:
                max_ts = ts
                self._offset_of_max_ts = last_offset
            if self.bytes_since_last_index > self.index_interval_bytes and not self.index.is_full():
                self.index.append(last_offset, pos + rel)
                self.time_index.append(max_ts, self._offset_of_max_ts)
                self.bytes_since_last_index = 0
        self.bytes_since_last_index += len(mv)
        self._max_ts = max_ts
        if self._rolling_ts is None and pos == 0 and batches:
            self._rolling_ts = batches[0][2] if batches[0][2] >= 0 else self.created_ms
        self._next_offset = batches[-1][1] + 1
        self.size = pos + len(mv)

    # -- read ------------------------------------------------------------------------------
    def find_position(self, offset: int, max_position: int | None = None) -> tuple[int, R.BatchHeader] | None:
        """(position, header) of the first batch whose last offset >= `offset`, or None.

        Starts at the greatest index entry <= `offset`. An entry is trusted only if it points at
        the start of a batch whose last offset is the entry's offset (what `append` writes);
        otherwise (a stale or damaged index) the segment is scanned from the top."""
        end = self.size if max_position is None else max_position
        entry_offset, start = self.index.lookup(offset)
        if start >= end:
            start = 0
        checked = start == 0
        for p, h in self._iter_headers_from(start, end):
            if not checked:
                if h.magic != R.MAGIC or h.last_offset != entry_offset:
                    return self._find_by_scan(offset, end)
                checked = True
            if h.last_offset >= offset:
                return p, h
        return None if checked else self._find_by_scan(offset, end)

    def _find_by_scan(self, offset: int, end: int) -> tuple[int, R.BatchHeader] | None:
        for p, h in self._iter_headers_from(0, end):
            if h.base_offset + h.last_offset_delta >= offset:
                return p, h
        return None

    def _find_checked(self, offset: int, end: int, upper: int | None,
                      from_top: bool = False) -> tuple[int, R.BatchHeader] | None:
        """`find_position` for reads, which must never serve a batch whose offsets were damaged
        (baseOffset is outside the CRC): the batches scanned must have increasing offsets, the
        one found must lie in [base offset, `upper`) (the next segment's base) and end before the
        batch after it starts (read from the same chunk: no extra syscall in the common case).
        Raises CorruptRecordError naming the file and the position of the first suspect batch."""
        entry_offset, start = (self.base_offset, 0) if from_top else self.index.lookup(offset)
        if start >= end:
            start = 0
        trusted = start == 0
        prev_last = self.base_offset - 1 if start == 0 else -1
        prev_pos = start
        found: tuple[int, R.BatchHeader] | None = None
        found_last = 0
        scanned_to = start  # where the batch after the last one scanned starts
        for p, h in self._iter_headers_from(start, end):
            scanned_to = p + h.size
            if found is not None:
                if h.base_offset <= found_last:
                    raise R.CorruptRecordError(
                        f"batch at position {p} of {self.log_path} starts at offset {h.base_offset}, not after "
                        f"the batch before it, which ends at {found_last}: damaged batch offsets",
                        path=self.log_path, position=found[0])
                return found
            last = h.last_offset
            if not trusted:
                if h.magic != R.MAGIC or last != entry_offset:
                    return self._find_checked(offset, end, upper, from_top=True)
                trusted = True
            base = h.base_offset
            if last >= offset or base <= prev_last:
                if base <= prev_last or (upper is not None and last >= upper):
                    bound = f"after {prev_last}" if base <= prev_last else f"below the next segment's base {upper}"
                    raise R.CorruptRecordError(
                        f"batch at position {p} of {self.log_path} has offsets {base}..{last}, which should be "
                        f"{bound}: damaged batch offsets", path=self.log_path,
                        position=prev_pos if base <= prev_last else p)
                found, found_last = (p, h), last
            else:
                prev_last, prev_pos = last, p
        if not trusted:
            return self._find_checked(offset, end, upper, from_top=True)
        if found is None and scanned_to < end:
            # the scan stopped at a header whose length does not fit what the segment holds: a
            # damaged length somewhere before (whole batches only are ever appended, torn tails are
            # cut at recovery). Name the first batch that fails its checks: lengths are outside the
            # CRC, so a wrong one shows as a CRC mismatch of the batch it belongs to
            bad = self._first_bad_batch(start, end)
            raise R.CorruptRecordError(
                f"batch at position {bad} of {self.log_path} is damaged: the batches from position {start} "
                f"do not add up to the {end} bytes of the segment", path=self.log_path, position=bad)
        return found

    def _first_bad_batch(self, start: int, end: int) -> int:
        """Position of the first batch from `start` that fails its header or CRC check, or where
        the batches stop fitting the segment. Only on the error path: reads every batch."""
        pos = start
        for p, h in self._iter_headers_from(start, end):
            if p + h.size > end:
                return p
            try:
                R.validate_batch(self.pread(h.size, p), 0, h)
            except R.CorruptRecordError:
                return p
            pos = p + h.size
        return pos

    def read_slice(self, offset: int, max_bytes: int, *, max_position: int | None = None,
                   min_one: bool = True, upper: int | None = None) -> FileSlice | None:
        """The file region starting at the batch holding `offset`, at most `max_bytes` long (or one
        whole batch if `min_one` and the first is larger). May end inside a batch, as Kafka's does.
        None when the segment holds nothing at or after `offset`. `upper`: the next segment's
        base offset, which no batch here may reach (see `_find_checked`)."""
        end = self.size if max_position is None else max_position
        found = self._find_checked(offset, end, upper)
        if found is None:
            return None
        pos, h = found
        limit = max(max_bytes, h.size) if min_one else max_bytes
        fh = self._handle()
        return FileSlice(fh.fd, pos, min(end - pos, limit), self.log_path, fh)

    def iter_batches(self, position: int = 0, end: int | None = None) -> Iterator[tuple[int, R.BatchHeader, bytes]]:
        """(position, header, batch bytes) of each whole batch from `position`."""
        if end is None:
            end = self.size
        pos = position
        while pos < end:
            chunk = self.pread(min(max(_RECOVER_CHUNK, R.HEADER_SIZE), end - pos), pos)
            got = False
            mv = memoryview(chunk)
            for p, h in R.iter_headers(chunk):
                got = True
                yield pos + p, h, mv[p:p + h.size]
                nxt = pos + p + h.size
            if not got:
                h = R.read_header(self.pread(R.HEADER_SIZE, pos)) if end - pos >= R.HEADER_SIZE else None
                if h is None or h.batch_length < R.HEADER_SIZE - R.LOG_OVERHEAD or pos + h.size > end:
                    return
                data = self.pread(h.size, pos)
                yield pos, h, memoryview(data)
                pos += h.size
            else:
                pos = nxt

    # -- recovery --------------------------------------------------------------------------
    def recover(self, max_message_bytes: int | None = None) -> tuple[int, str | None]:
        """Rebuild both indexes from the log, validating every batch (size, magic, CRC), and cut
        the log at the first invalid batch. Returns (bytes truncated, reason or None)."""
        self.index.reset()
        self.time_index.reset()
        # rebuilding writes the indexes, sealed or not; a sealed segment's are trimmed again below
        self.index.make_writable()
        self.time_index.make_writable()
        valid_end = 0
        reason: str | None = None
        self.bytes_since_last_index = 0
        self._max_ts = -1
        self._offset_of_max_ts = self.base_offset
        next_offset = self.base_offset
        pos = 0
        size = os.fstat(self.fd).st_size
        self.size = size
        while pos < size:
            chunk = self.pread(min(_RECOVER_CHUNK, size - pos), pos)
            mv = memoryview(chunk)
            p = 0
            progressed = False
            while p + R.HEADER_SIZE <= len(chunk):
                h = R.read_header(chunk, p)
                try:
                    R.check_header(h, where=f" at position {pos + p} of {self.log_path}", position=pos + p,
                                   path=self.log_path)
                except Exception as e:
                    reason = str(e)
                    break
                if p + h.size > len(chunk):
                    if h.size > _RECOVER_CHUNK and pos + p + h.size <= size:
                        # one batch bigger than the chunk: read it whole
                        big = self.pread(h.size, pos + p)
                        if R.crc32c(memoryview(big)[R.CRC_START:]) != h.crc:
                            reason = f"CRC mismatch at position {pos + p} of {self.log_path}"
                            break
                        if h.base_offset < next_offset:
                            reason = (f"batch at position {pos + p} of {self.log_path} has offset "
                                      f"{h.base_offset}, expected at least {next_offset}")
                            break
                        self._index_batch(pos + p, h)
                        next_offset = h.last_offset + 1
                        p += h.size
                        progressed = True
                    break
                if R.crc32c(mv[p + R.CRC_START:p + h.size]) != h.crc:
                    reason = f"CRC mismatch at position {pos + p} of {self.log_path}"
                    break
                if h.base_offset < next_offset or h.base_offset < self.base_offset:
                    reason = (f"batch at position {pos + p} of {self.log_path} has offset {h.base_offset}, "
                              f"expected at least {next_offset}")
                    break
                self._index_batch(pos + p, h)
                next_offset = h.last_offset + 1
                p += h.size
                progressed = True
            valid_end = pos + p
            if reason is not None:
                break
            if not progressed:
                if valid_end < size:
                    reason = f"truncated batch at position {valid_end} of {self.log_path}"
                break
            pos = valid_end
        if valid_end < size and reason is None:
            reason = f"truncated batch at position {valid_end} of {self.log_path}"
        truncated = size - valid_end
        try:
            if truncated:
                # durable at once: a clean close after this open would make the next open trust it
                os.ftruncate(self.fd, valid_end)
                os.fdatasync(self.fd)
            self.size = valid_end
            self._next_offset = next_offset
            if not self.active:
                if self._max_ts >= 0:  # type: ignore[operator]
                    self.time_index.append_final(self._max_ts, self._offset_of_max_ts)  # type: ignore[arg-type]
                self.index.trim()
                self.time_index.trim()
                # as at `seal`: the rebuilt, trimmed files must be on disk before anything (a clean
                # shutdown marker) says they can be trusted; a trim whose new length is lost leaves
                # a zero tail whose last "entry" says the largest timestamp is 0
                self._fsync_index_files()
        except OSError as e:
            raise KafkaStorageError(f"cannot recover {self.log_path}: {e.strerror}") from e
        return truncated, reason

    def _fsync_index_files(self) -> None:
        for p in (self.index.path, self.time_index.path):
            try:
                fd = os.open(p, os.O_RDONLY)
            except FileNotFoundError:
                # absent, or renamed `.deleted` just now by retention / delete-records while a
                # deferred roll flush syncs it (rename_suffix runs under the Log's lock, this
                # does not): a segment leaving the log has nothing to make durable. Taking
                # the partition offline for it would refuse every append after.
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _index_batch(self, pos: int, h: R.BatchHeader) -> None:
        if h.max_timestamp > self._max_ts:  # type: ignore[operator]
            self._max_ts = h.max_timestamp
            self._offset_of_max_ts = h.last_offset
        if self.bytes_since_last_index > self.index_interval_bytes and not self.index.is_full():
            self.index.append(h.last_offset, pos)
            self.time_index.append(self._max_ts, self._offset_of_max_ts)  # type: ignore[arg-type]
            self.bytes_since_last_index = 0
        self.bytes_since_last_index += h.size
        if self._rolling_ts is None and pos == 0:
            self._rolling_ts = h.max_timestamp if h.max_timestamp >= 0 else self.created_ms

    def index_files_ok(self) -> bool:
        """Both index files exist and hold whole entries: two stats, no read (the check a clean
        open affords for every segment; `check_indexes` reads them)."""
        for idx in (self.index, self.time_index):
            try:
                size = os.stat(idx.path).st_size
            except FileNotFoundError:
                return False
            if size % idx.entry_size:
                return False
        return True

    def check_indexes(self) -> str | None:
        """None when the indexes agree with the log, else what is wrong."""
        problem = self.index.check(self.size)
        if problem:
            return problem
        if self.index.entries:
            off, pos = self.index.last_entry()
            if not self._entry_points_at_batch(off, pos):
                return f"offset index {self.index.path} entry for offset {off} does not point at its batch"
        return self.time_index.check(max(self.next_offset - 1, self.base_offset))

    # -- truncation ------------------------------------------------------------------------
    def truncate_to(self, offset: int) -> int:
        """Remove every batch whose last offset >= `offset`, whole: the batch holding `offset`
        goes too, so afterwards `next_offset` <= `offset` (Kafka's truncateTo). Returns bytes
        removed."""
        found = self.find_position(offset)
        if found is None:
            return 0
        pos, h = found
        removed = self.size - pos
        # index keys are batches' last offsets: the kept batches' are all below this batch's base
        self.index.truncate_to_offset(h.base_offset)
        self.time_index.truncate_to_offset(h.base_offset)
        try:
            os.ftruncate(self.fd, pos)
            os.fdatasync(self.fd)  # the cut must survive a crash, or recovery would bring it back
        except OSError as e:
            raise KafkaStorageError(f"cannot truncate {self.log_path} to position {pos}: {e.strerror}") from e
        self.size = pos
        self._next_offset = None
        self._max_ts = None
        if pos == 0:
            self._rolling_ts = None
        self._load_tail()
        _, last_pos = self.index.last_entry()
        self.bytes_since_last_index = pos - last_pos if self.index.entries else pos
        return removed

    # -- lifecycle -------------------------------------------------------------------------
    def flush(self) -> None:
        """fsync the log and the indexes (a sealed segment's only when its seal skipped them).
        Safe against a concurrent seal or close (then a no-op for what they already synced or
        closed)."""
        with self._life_lock:
            if self.closed:
                return
            try:
                if self.active:
                    if self._fd is not None:
                        os.fdatasync(self._fd)
                    self.index.flush()
                    self.time_index.flush()
                elif self.unsynced_seal:
                    os.fdatasync(self._handle().fd)
                    self._fsync_index_files()
                    self.unsynced_seal = False
            except OSError as e:
                raise KafkaStorageError(f"cannot flush {self.log_path}: {e.strerror}") from e

    def seal(self, *, sync: bool = True) -> None:
        """Turn the active segment into a sealed one: end the time index with the segment's largest
        timestamp (a sealed segment's max timestamp is read from there), trim indexes, fsync.
        With `sync=False` the fsyncs of the log and of the trimmed index files are left to the
        next `flush()` (the roll then does not wait for a whole segment to reach the disk)."""
        with self._life_lock:
            if not self.active:
                return  # already sealed (a roll that failed after sealing is being retried)
            try:
                if sync and self._fd is not None:
                    os.fdatasync(self._fd)
                max_ts = self.max_timestamp
                if max_ts >= 0:
                    self.time_index.append_final(max_ts, self._offset_of_max_ts)
                self.index.trim()
                self.time_index.trim()
                if sync:
                    self._fsync_index_files()
            except OSError as e:
                raise KafkaStorageError(f"cannot seal {self.log_path}: {e.strerror}") from e
            self.active = False
            self.unsynced_seal = not sync

    def activate(self) -> None:
        """Make this (last) segment the active one: writable, preallocated indexes."""
        if not self.active:
            self.active = True
            self.index.make_writable()
            self.time_index.make_writable()
            self._load_tail()
            # count bytes since the last index entry, so index spacing continues as it was
            _, pos = self.index.last_entry()
            self.bytes_since_last_index = self.size - pos if self.index.entries else self.size

    def release(self) -> None:
        """Close the file and unmap the indexes of a sealed segment to save descriptors and maps
        (recovery reads every segment once); both reopen lazily. Only while no reader holds them."""
        with self._life_lock:
            if self.active or self.closed:
                return
            self.index.close()
            self.time_index.close()
            self._fh = None  # closed by FdHandle once no FileSlice holds it

    def close(self) -> None:
        with self._life_lock:
            if self.closed:
                return
            self.closed = True
            if self.active:
                self.index.trim()
                self.time_index.trim()
                # the trimmed lengths must be on disk before a clean-shutdown marker says the files
                # can be trusted: a lost trim leaves a preallocated zero tail, and the next open
                # would read a phantom (0, 0) entry from it
                self._fsync_index_files()
            else:
                self.index.close()
                self.time_index.close()
            self._fh = None  # closed by FdHandle once no FileSlice holds it

    def paths(self) -> list[str]:
        return [self.log_path, self.index.path, self.time_index.path]

    def rename_suffix(self, new_suffix: str) -> None:
        """Rename all three files (e.g. to `.deleted`); open descriptors stay valid."""
        name = os.path.join(self.dir, segment_name(self.base_offset))
        for old, ext in ((self.log_path, LOG_SUFFIX), (self.index.path, INDEX_SUFFIX),
                         (self.time_index.path, TIMEINDEX_SUFFIX)):
            new = name + ext + new_suffix
            if os.path.exists(old):
                os.replace(old, new)
        self.suffix = new_suffix
        self.log_path = name + LOG_SUFFIX + new_suffix
        self.index.path = name + INDEX_SUFFIX + new_suffix
        self.time_index.path = name + TIMEINDEX_SUFFIX + new_suffix

    def delete_files(self) -> None:
        self.close()
        for p in self.paths():
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def __repr__(self) -> str:
        return f"LogSegment({self.log_path}, size={self.size})"
