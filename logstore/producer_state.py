"""Idempotent-producer state of one partition (Kafka's ProducerStateManager, in small).

For each producer id: its epoch and the (first sequence, last sequence, first offset, last
offset, timestamp) of its last five batches, which is what a retrying producer can resend
(`max.in.flight.requests.per.connection` <= 5). A batch is:
- a duplicate when it matches one of those five → the original offsets are returned, nothing
  is appended;
- in order when its first sequence is the last one + 1 (wrapping at 2^31), or 0 for a new epoch;
- otherwise out of order (OUT_OF_ORDER_SEQUENCE_NUMBER), or fenced if its epoch is older.

The state is rebuilt from batch headers (never records) of the active segment the first time a
producer that is unknown since open sends a batch (once per open or truncation).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .errors import DuplicateSequenceError, InvalidProducerEpochError, OutOfOrderSequenceError
from .records import BatchHeader

KEEP_BATCHES = 5


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

    def truncate(self) -> None:
        """Forget everything (the log was truncated); rebuilt from the log when needed."""
        self.producers.clear()
        self._loaded = self._loader is None
