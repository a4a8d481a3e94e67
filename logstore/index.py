"""Sparse offset and time indexes of one segment, memory-mapped with numpy.

`.index` — 8-byte entries, big-endian:
    relativeOffset u32   (last offset of an indexed batch) - segment base offset
    position       u32   file position of that batch in the `.log`
`.timeindex` — 12-byte entries, big-endian:
    timestamp      i64   the segment's largest timestamp so far
    relativeOffset u32   offset at which that timestamp was first reached - base offset

Both are append-only and strictly increasing in their key. A writable index is preallocated to
`segment.index.bytes` (rounded down to whole entries) and trimmed to its used size by `trim()`
(segment roll, log close), so a trimmed file's length says how many entries it holds.

Writes go through `os.pwrite` on a file descriptor the writable index keeps open; the map is
read-only and sees them through the page cache. Writing through the map instead costs a page
fault on the first write to each new file that takes 2-12 ms on this project's ext4 (the
file's first dirtying under the journal; pwrite of the same entry: ~11 us), once per
index file: a produce to 1,000 new partitions then stalled for 20 s. `flush`
is an fdatasync of that descriptor.

Lookups are O(log n): a native-endian copy of the key column is built the first time an index is
searched (numpy's `searchsorted` on a big-endian map would convert the whole array on every call)
and extended on each append. Mapping is lazy: an index that is never searched or appended to is
never opened. `check()` reports (not repairs) an index that disagrees with itself or its log; the
segment rebuilds it from the log.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from .errors import CorruptRecordError

OFFSET_ENTRY = np.dtype([("off", ">u4"), ("pos", ">u4")])
TIME_ENTRY = np.dtype([("ts", ">i8"), ("off", ">u4")])
assert OFFSET_ENTRY.itemsize == 8 and TIME_ENTRY.itemsize == 12
_OFFSET_PACK = struct.Struct(">II").pack
_TIME_PACK = struct.Struct(">qI").pack


class _MappedIndex:
    dtype: np.dtype
    key: str
    key_native: np.dtype
    zero_first_is_fill = False  # whether an all-zero first slot can only be preallocation

    def __init__(self, path: str, base_offset: int, max_bytes: int, *, writable: bool):
        self.path = path
        self.base_offset = base_offset
        self.entry_size = self.dtype.itemsize
        self.capacity = max(1, max_bytes // self.entry_size)
        self.writable = writable
        self._mm: np.ndarray | None = None
        self._fd: int | None = None  # open while writable and loaded: appends are pwrites
        self._keys: np.ndarray | None = None
        self._n: int | None = None  # None until the file is first looked at

    # -- lifecycle -------------------------------------------------------------------------
    def _load(self) -> None:
        """Map the file. Entry count = used length: a trimmed file's size, or for a file left
        preallocated by a crash, the strictly increasing prefix of its entries."""
        if self.writable:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                n = size // self.entry_size
                cap = max(self.capacity, n)
                if size != cap * self.entry_size:
                    os.ftruncate(fd, cap * self.entry_size)
                self._mm = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(cap,))
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        else:
            try:
                size = os.path.getsize(self.path)
            except FileNotFoundError:
                size = 0
            n = size // self.entry_size
            if n:
                self._mm = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(n,))
            else:
                self._mm = None
        if n and self._mm is not None:
            n = self._valid_prefix(n)
        self._n = n

    def _valid_prefix(self, n: int) -> int:
        keys = np.asarray(self._mm[self.key][:n])
        if self.zero_first_is_fill and not np.asarray(self._mm[:1]).tobytes().strip(b"\0"):
            # an all-zero first slot is preallocation a crash left untrimmed, not an entry
            return 0
        if n > 1:
            # both indexes only ever append strictly increasing keys (see `append`)
            d = np.diff(keys.astype(np.int64))
            bad = np.flatnonzero(d <= 0)
            if len(bad):
                # a preallocated tail (zeros) after a crash, or garbage: keep what is increasing
                return int(bad[0]) + 1
        return n

    @property
    def entries(self) -> int:
        if self._n is None:
            self._load()
        return self._n  # type: ignore[return-value]

    def is_full(self) -> bool:
        return self.entries >= self.capacity

    def _native_keys(self) -> np.ndarray:
        if self._keys is None:
            n = self.entries
            keys = np.empty(max(self.capacity, n) if self.writable else n, dtype=self.key_native)
            if n:
                keys[:n] = self._mm[self.key][:n]
            self._keys = keys
        return self._keys

    def _write(self, i: int, entry: bytes) -> None:
        """Write entry number `i` (the bytes of one or more entries) through the descriptor."""
        if self._fd is None:
            self._load()
        os.pwrite(self._fd, entry, i * self.entry_size)  # type: ignore[arg-type]

    def flush(self) -> None:
        """Make the entries written so far durable (fdatasync; nothing to do when read-only)."""
        if self._fd is not None:
            os.fdatasync(self._fd)

    def _unmap(self) -> None:
        # the reference is dropped, the map not closed by hand: CPython unmaps it at once when
        # this was the last user, and a thread still searching the index (the cleaner, while
        # retention closes the segment) keeps it mapped until done instead of touching freed
        # memory (closing it under a numpy view crashes the process)
        self._mm = None
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def trim(self) -> None:
        """Shrink the file to its entries and make the index read-only. Nothing is synced here:
        the caller fsyncs the trimmed file (a sealing roll, or the flush a deferred roll leaves it
        to; recovery; a clean close), so a roll on the appending thread waits for no disk."""
        if self._n is None and not self.writable:
            return
        n = self.entries
        if self._fd is not None:
            os.ftruncate(self._fd, n * self.entry_size)
        elif os.path.exists(self.path):
            os.truncate(self.path, n * self.entry_size)
        self._unmap()
        self.writable = False
        self._keys = None
        self._n = None

    def make_writable(self) -> None:
        if not self.writable:
            self.close()
            self.writable = True

    def close(self) -> None:
        """Unmap and close. A writable index is fdatasynced first (as closing it always was)."""
        try:
            self.flush()
        finally:
            self._unmap()
        self._keys = None
        self._n = None

    def reset(self) -> None:
        """Drop every entry (the segment is rebuilding this index)."""
        self.close()
        with open(self.path, "wb"):
            pass
        self._n = None

    def truncate_entries(self, n: int) -> None:
        old = self.entries
        self._n = min(old, n)
        if self.writable and self._mm is not None and self._n < old:
            # zero the dropped entries: left in the preallocated map, a later append could make
            # them look like a valid, increasing tail to `_valid_prefix` after a crash
            self._write(self._n, bytes((old - self._n) * self.entry_size))
        if self._keys is not None and not self.writable:
            self._keys = self._keys[: self._n]


class OffsetIndex(_MappedIndex):
    """Maps the last offset of indexed batches to their file position."""

    dtype = OFFSET_ENTRY
    key = "off"
    key_native = np.dtype(np.uint32)
    # no entry points at position 0 (the first batch is never indexed: LogSegment._index_batch),
    # so (0, 0) first is what a crash before the first entry leaves in a preallocated file; read
    # as an entry it sent lookups to the first batch as if it ended at the base offset
    zero_first_is_fill = True

    def append(self, offset: int, position: int) -> None:
        """Add an entry; `offset` must exceed the last one. O(1)."""
        n = self.entries
        if n >= self.capacity:
            raise CorruptRecordError(f"offset index {self.path} is full ({n} entries)")
        rel = offset - self.base_offset
        self._write(n, _OFFSET_PACK(rel, position))
        if self._keys is not None:
            self._keys[n] = rel
        self._n = n + 1

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the greatest entry with offset <= `offset`, else (base, 0). O(log n)."""
        n = self.entries
        if n == 0:
            return self.base_offset, 0
        rel = offset - self.base_offset
        if rel < 0:
            return self.base_offset, 0
        keys = self._keys if self._keys is not None else self._native_keys()
        # the probe must be a uint32 too: with a Python int numpy converts the whole column to
        # int64 first, O(n) per lookup (~0.5 ms on a million entries)
        i = int(keys[:n].searchsorted(np.uint32(min(rel, 0xFFFFFFFF)), side="right")) - 1
        if i < 0:
            return self.base_offset, 0
        off, pos = self._mm.item(i)  # type: ignore[union-attr]  # plain ints, no memmap scalar
        return self.base_offset + off, pos

    def last_entry(self) -> tuple[int, int]:
        n = self.entries
        if n == 0:
            return self.base_offset, 0
        e = self._mm[n - 1]  # type: ignore[index]
        return self.base_offset + int(e[0]), int(e[1])

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries with offset >= `offset`."""
        n = self.entries
        if n:
            rel = offset - self.base_offset
            if rel <= 0:
                self.truncate_entries(0)
                return
            keys = self._native_keys()
            self.truncate_entries(int(keys[:n].searchsorted(np.uint32(min(rel, 0xFFFFFFFF)), side="left")))

    def check(self, log_size: int) -> str | None:
        """None when consistent, else what is wrong (positions past the log or not increasing)."""
        n = self.entries
        if n == 0:
            if self._on_disk_entries() and not self.writable:
                return f"offset index {self.path} has a corrupt first entry"
            return None
        pos = np.asarray(self._mm["pos"][:n]).astype(np.int64)  # type: ignore[index]
        if pos[-1] >= log_size or (n > 1 and np.any(np.diff(pos) <= 0)):
            return f"offset index {self.path} has positions past the log or out of order"
        if self._n != self._on_disk_entries() and not self.writable:
            return f"offset index {self.path} has a corrupt entry after entry {self._n}"
        return None

    def _on_disk_entries(self) -> int:
        try:
            return os.path.getsize(self.path) // self.entry_size
        except FileNotFoundError:
            return 0


class TimeIndex(_MappedIndex):
    """Maps the segment's growing largest timestamp to the offset where it was reached."""

    dtype = TIME_ENTRY
    key = "ts"
    key_native = np.dtype(np.int64)

    def append(self, timestamp: int, offset: int) -> None:
        """Add an entry if `timestamp` exceeds the last one (or -1, "no timestamp", when empty,
        as Kafka's does); a full index takes no more. O(1)."""
        n = self.entries
        if timestamp <= (int(self._mm[n - 1][0]) if n else -1):  # type: ignore[index]
            return
        if n >= self.capacity:
            return
        self._write(n, _TIME_PACK(timestamp, offset - self.base_offset))
        if self._keys is not None:
            self._keys[n] = timestamp
        self._n = n + 1

    def append_final(self, timestamp: int, offset: int) -> None:
        """Record the segment's largest timestamp as the last entry when it is sealed, so a sealed
        segment's max timestamp is its time index's last entry. A full index has its last entry
        replaced: lookups between the two timestamps then start one entry earlier, still right."""
        n = self.entries
        if timestamp <= (int(self._mm[n - 1][0]) if n else -1):  # type: ignore[index]
            return
        if n < self.capacity:
            self.append(timestamp, offset)
            return
        self._write(n - 1, _TIME_PACK(timestamp, offset - self.base_offset))
        if self._keys is not None:
            self._keys[n - 1] = timestamp

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """(timestamp, offset) of the greatest entry with timestamp <= `timestamp`, else (-1, base)."""
        n = self.entries
        if n == 0:
            return -1, self.base_offset
        keys = self._native_keys()
        i = int(keys[:n].searchsorted(timestamp, side="right")) - 1
        if i < 0:
            return -1, self.base_offset
        e = self._mm[i]  # type: ignore[index]
        return int(e[0]), self.base_offset + int(e[1])

    def last_entry(self) -> tuple[int, int]:
        n = self.entries
        if n == 0:
            return -1, self.base_offset
        e = self._mm[n - 1]  # type: ignore[index]
        return int(e[0]), self.base_offset + int(e[1])

    def truncate_to_offset(self, offset: int) -> None:
        n = self.entries
        if n:
            offs = np.asarray(self._mm["off"][:n]).astype(np.int64)  # type: ignore[index]
            self.truncate_entries(int(np.searchsorted(offs, offset - self.base_offset, side="left")))

    def check(self, max_offset: int) -> str | None:
        n = self.entries
        if n == 0:
            return None
        offs = np.asarray(self._mm["off"][:n]).astype(np.int64)  # type: ignore[index]
        if self.base_offset + offs[-1] > max_offset or (n > 1 and np.any(np.diff(offs) < 0)):
            return f"time index {self.path} has offsets past the log or out of order"
        if not self.writable and os.path.exists(self.path) and os.path.getsize(self.path) // 12 != n:
            return f"time index {self.path} has a corrupt entry after entry {n}"
        return None


def read_last_time_entry(path: str) -> tuple[int, int] | None:
    """(timestamp, relative offset) of a trimmed time index's last entry, read without mapping."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 12:
                return None
            f.seek((size // 12 - 1) * 12)
            b = f.read(12)
    except FileNotFoundError:
        return None
    return int.from_bytes(b[:8], "big", signed=True), int.from_bytes(b[8:], "big")
