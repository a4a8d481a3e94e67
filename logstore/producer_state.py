"""Idempotent-producer state of one partition (Kafka's ProducerStateManager, in small), and its
snapshot files.

For each producer id: its epoch and the (first sequence, last sequence, first offset, last
offset, timestamp) of its last five batches, which is what a retrying producer can resend
(`max.in.flight.requests.per.connection` <= 5). A batch is:
- a duplicate when it matches one of those five → the original offsets are returned, nothing
  is appended;
- in order when its first sequence is the last one + 1 (wrapping at 2^31), or 0 for a new epoch;
- otherwise out of order (OUT_OF_ORDER_SEQUENCE_NUMBER), or fenced if its epoch is older.

The state is rebuilt the first time a producer unknown since open (or since a truncation) sends
a batch, or at a roll of a partition without a snapshot (log_loader.py: that roll's snapshot
must cover what the loader's bounded scan would no longer reach): the owner's loader restores
the newest valid snapshot and replays batch headers (never records) from the snapshot's offset
to the log end (log.py).

Expiry (Kafka's `producer.id.expiration.ms`, checked every
`producer.id.expiration.check.interval.ms` on the store's background thread, `install`): a
producer whose newest batch's max timestamp is that long ago is forgotten, so the table, the
snapshots and the batches compaction keeps for producers (cleaner.py) do not grow with every
producer that ever wrote. A forgotten producer that writes again is a new one: its batch is
accepted at any sequence, as Kafka does for a producer id it does not know. Only a loaded
table expires; one not yet loaded is loaded with everything and expires at the next check.

Snapshot file `<offset, 20 digits>.snapshot` in the partition dir: the state of every batch
below `offset`. Kafka's format (ProducerStateManager, snapshot version 1), big-endian:
    version                  i16   1
    crc                      u32   CRC32C of every byte after this field
    count                    i32   number of entries, then per entry (46 bytes):
      producer_id            i64
      epoch                  i16
      last_sequence          i32
      last_offset            i64
      offset_delta           i32   last_sequence - first sequence of the batch
      timestamp              i64   the batch's max timestamp
      coordinator_epoch      i32   -1 (no transactions here)
      current_txn_first_offset i64 -1
Kafka writes one entry per producer (its last batch). We write one entry per cached batch,
oldest first, so a producer appears up to five times: Kafka's reader keeps the last entry of a
producer (its newest batch) and so reads our files correctly; ours keeps all of them, so the
five-batch dedupe window survives a restart. A file that is short, of another version or whose
CRC does not match raises CorruptSnapshotError (the owner logs it, deletes the file and falls
back to an older snapshot or a scan).
"""

from __future__ import annotations

import os
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .errors import DuplicateSequenceError, InvalidProducerEpochError, OutOfOrderSequenceError
from .records import BatchHeader, crc32c

KEEP_BATCHES = 5
SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_VERSION = 1
_SNAP_HEAD = struct.Struct(">hIi")  # version, crc, entry count
_SNAP_ENTRY = struct.Struct(">qhiqiqiq")
assert _SNAP_ENTRY.size == 46
_CRC_START = 6
_SEQ_MOD = 1 << 31


class CorruptSnapshotError(ValueError):
    """A producer-state snapshot file that cannot be trusted (torn, other version, bad CRC)."""


@dataclass
class ProducerEntry:
    epoch: int
    batches: deque = field(default_factory=lambda: deque(maxlen=KEEP_BATCHES))

    @property
    def last_seq(self) -> int:
        return self.batches[-1][1] if self.batches else -1


class ProducerStateManager:
    def __init__(self, loader: Callable[[], Iterable[BatchHeader]] | None = None):
        self.producers: dict[int, ProducerEntry] = {}
        self._loader = loader
        self._loaded = loader is None

    def last_offsets(self) -> dict[int, int]:
        """Producer id -> last offset of its newest batch (loading the state from the log first if
        nothing has since open). The cleaner keeps those batches so that a retry stays a duplicate."""
        if not self._loaded:
            self._load()
        return {pid: e.batches[-1][3] for pid, e in self.producers.items() if e.batches}

    def load(self) -> None:
        """Load the whole state from the log now if it is not loaded. On a failure the table is
        left unloaded (the next use tries again), never marked loaded with part of the log."""
        if self._loaded:
            return
        try:
            self._load()
        except BaseException:
            self.truncate()
            raise

    def _load(self) -> None:
        self._loaded = True
        if self._loader is None:
            return
        for h in self._loader():
            if h.producer_id >= 0 and h.base_sequence >= 0 and not h.is_control:
                self.update(h.producer_id, h.producer_epoch, h.base_sequence, h.last_sequence,
                            h.base_offset, h.last_offset, h.max_timestamp)

    def check(self, pid: int, epoch: int, first_seq: int, last_seq: int, where: str) -> None:
        """Raise if the batch must not be appended (duplicate, out of order, fenced epoch)."""
        e = self.producers.get(pid)
        if e is None and not self._loaded:
            # even a batch at sequence 0 may be a retry of one appended before the reopen
            self._load()
            e = self.producers.get(pid)
        if e is None:
            return
        if epoch < e.epoch:
            raise InvalidProducerEpochError(
                f"producer {pid} epoch {epoch} is older than the current epoch {e.epoch} on {where}")
        if epoch > e.epoch:
            if first_seq != 0:
                raise OutOfOrderSequenceError(
                    f"producer {pid} new epoch {epoch} must start at sequence 0, got {first_seq} on {where}")
            return
        for b in e.batches:
            if b[0] == first_seq and b[1] == last_seq:
                raise DuplicateSequenceError(
                    f"duplicate batch of producer {pid} (sequences {first_seq}-{last_seq}) on {where}",
                    first_offset=b[2], last_offset=b[3], timestamp=b[4])
        expected = (e.last_seq + 1) & 0x7FFFFFFF
        if first_seq != expected:
            raise OutOfOrderSequenceError(
                f"out of order sequence for producer {pid} on {where}: expected {expected}, got {first_seq}")

    def update(self, pid: int, epoch: int, first_seq: int, last_seq: int, first_offset: int,
               last_offset: int, timestamp: int) -> None:
        e = self.producers.get(pid)
        if e is None or epoch != e.epoch:
            e = self.producers[pid] = ProducerEntry(epoch)
        e.batches.append((first_seq, last_seq, first_offset, last_offset, timestamp))

    def remove_expired(self, now_ms: int, expiration_ms: int) -> list[int]:
        """Forget every producer whose newest batch's max timestamp is `expiration_ms` or more
        before `now_ms` (Kafka's isProducerExpired). Returns their ids. Nothing when not loaded."""
        if not self._loaded:
            return []
        gone = [pid for pid, e in self.producers.items()
                if not e.batches or now_ms - e.batches[-1][4] >= expiration_ms]
        for pid in gone:
            del self.producers[pid]
        return gone

    def truncate(self) -> None:
        """Forget everything (the log was truncated); rebuilt from the log when needed."""
        self.producers.clear()
        self._loaded = self._loader is None

    @property
    def loaded(self) -> bool:
        """Whether the table holds the whole state (so a snapshot of it is complete)."""
        return self._loaded

    def restore(self, producers: dict[int, ProducerEntry]) -> None:
        """Replace the table with a snapshot's (the loader does this before replaying headers)."""
        self.producers = producers


def expire_producers(store: Any, now_ms: int | None = None) -> int:
    """Forget the expired producers of every partition of `store` (a LogStore); returns how many
    (partition, producer) entries went."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    gone = 0
    for log in store.logs():
        with log.lock:
            if not log.closed:
                gone += len(log.producer_state.remove_expired(now, store.config.producer_id_expiration_ms))
    return gone


def install(store: Any) -> None:
    """Run `expire_producers` every `producer.id.expiration.check.interval.ms` on the store's
    background thread."""
    store.add_periodic(store.config.producer_id_expiration_check_interval_ms / 1000,
                       lambda: expire_producers(store))


# -- snapshot files ---------------------------------------------------------------------------------
def snapshot_path(directory: str, offset: int) -> str:
    return os.path.join(directory, f"{offset:020d}{SNAPSHOT_SUFFIX}")


def list_snapshots(directory: str) -> list[tuple[int, str]]:
    """(offset, path) of each snapshot file in `directory`, oldest first."""
    out = []
    for fname in os.listdir(directory):
        stem = fname[: -len(SNAPSHOT_SUFFIX)]
        if fname.endswith(SNAPSHOT_SUFFIX) and stem.isdigit() and len(stem) == 20:
            out.append((int(stem), os.path.join(directory, fname)))
    return sorted(out)


def encode_snapshot(producers: dict[int, ProducerEntry]) -> bytes:
    body = bytearray()
    count = 0
    for pid, e in producers.items():
        for first_seq, last_seq, first_off, last_off, ts in e.batches:
            body += _SNAP_ENTRY.pack(pid, e.epoch, last_seq, last_off, last_off - first_off, ts, -1, -1)
            count += 1
    tail = struct.pack(">i", count) + bytes(body)
    return struct.pack(">hI", SNAPSHOT_VERSION, crc32c(tail)) + tail


def decode_snapshot(data: bytes, path: str = "") -> dict[int, ProducerEntry]:
    """The producer table of a snapshot file's bytes. Raises CorruptSnapshotError naming the
    file and what is wrong."""
    if len(data) < _SNAP_HEAD.size:
        raise CorruptSnapshotError(f"producer snapshot {path} is {len(data)} bytes, shorter than its header")
    version, crc, count = _SNAP_HEAD.unpack_from(data, 0)
    if version != SNAPSHOT_VERSION:
        raise CorruptSnapshotError(f"producer snapshot {path} has unknown version {version}")
    if crc32c(memoryview(data)[_CRC_START:]) != crc:
        raise CorruptSnapshotError(f"producer snapshot {path} fails its CRC check")
    if count < 0 or len(data) != _SNAP_HEAD.size + count * _SNAP_ENTRY.size:
        raise CorruptSnapshotError(f"producer snapshot {path} holds {len(data)} bytes for {count} entries")
    producers: dict[int, ProducerEntry] = {}
    for pid, epoch, last_seq, last_off, delta, ts, _ce, _txn in _SNAP_ENTRY.iter_unpack(
            memoryview(data)[_SNAP_HEAD.size:]):
        e = producers.get(pid)
        if e is None or e.epoch != epoch:
            e = producers[pid] = ProducerEntry(epoch)
        if last_off >= 0:  # Kafka writes -1 for a producer with no batch left
            e.batches.append(((last_seq - delta) % _SEQ_MOD, last_seq, last_off - delta, last_off, ts))
    return producers


def write_snapshot(path: str, producers: dict[int, ProducerEntry]) -> None:
    """Write and fsync a snapshot file (the caller makes its name durable with a dir fsync). A
    crash mid-write leaves a file that fails its CRC and is ignored."""
    data = encode_snapshot(producers)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_snapshot(path: str) -> dict[int, ProducerEntry]:
    with open(path, "rb") as f:
        return decode_snapshot(f.read(), path)
