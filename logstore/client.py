"""Embedded producer and consumer with Apache Kafka's client semantics, over a `LogStore`.

`Producer(store).send(topic, value, key=...)` places records exactly as Kafka's Java producer
does: a keyed record goes to `toPositive(murmur2(key)) % partitions` (so the same key lands in the
same partition as with a real Kafka client and this store's broker), a record without a key goes
to a "sticky" partition that changes once a batch's worth of bytes went to it (KIP-480). Records
are buffered per partition and appended as one RecordBatch when `batch_size` bytes gather or on
`flush()` (split in halves until each fits the topic's `max.message.bytes`, as Kafka's producer
splits a batch the broker refuses as too large); `send` returns a `FutureRecordMetadata` whose
`get()` flushes if needed. A send racing `close()` is either flushed by it or refused.

`Consumer(store, topics, group_id=...)` reads every partition of its topics in offset order. With
a `group_id`, `commit()` stores positions in `__consumer_offsets` in Kafka's record format (via
`logstore.groups.GroupOffsetStore`), so an embedded consumer and a Kafka client talking to this
store's broker share committed offsets; a new Consumer resumes from them. Without a committed
offset, `auto_offset_reset` ("latest" | "earliest" | "none") decides, as in Kafka. There is no
group membership here: an embedded consumer is assigned all partitions of its topics.

Invariants: position(tp) is the next offset poll returns for tp (iteration moves it one record
at a time, as it yields them); commit() without arguments commits every position; a position
outside the log (retention, delete-records, a seek past the end) is reset by
`auto_offset_reset`. Every call on a closed consumer raises; poll and send on a closed store
raise StoreClosedError. Costs: send O(1) amortised, one batch encode per `batch_size` bytes; poll
O(records returned) plus one read per partition with data.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

from . import records as R
from .compression import compression_code
from .errors import (LogStoreError, OffsetOutOfRangeError, RecordTooLargeError, StoreClosedError,
                     UnknownTopicOrPartitionError, check_int)

TopicPartition = tuple[str, int]
Partitioner = Callable[[bytes | None, int], int]

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2`: 32-bit MurmurHash2, seed 0x9747b28c, as a signed int32."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n4 = length & ~3
    for i in range(0, n4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[n4 + 2] << 16
    if rest >= 2:
        h ^= data[n4 + 1] << 8
    if rest >= 1:
        h ^= data[n4]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(n: int) -> int:
    """Kafka's `Utils.toPositive`: clears the sign bit (not abs)."""
    return n & 0x7FFFFFFF


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a non-null key."""
    if num_partitions < 1:
        raise ValueError(f"number of partitions must be positive, not {num_partitions}")
    return to_positive(murmur2(key)) % num_partitions


class DefaultPartitioner:
    """Kafka's built-in partitioner: murmur2 of the key; sticky partitions for null keys, changed
    after `batch_size` bytes went to the current one. `__call__(key, n)` picks for a record;
    `on_append(topic, partition, nbytes)` tells it bytes went there."""

    def __init__(self, batch_size: int = 16384, rng: random.Random | None = None) -> None:
        self.batch_size = batch_size
        self._rng = rng or random.Random()
        self._sticky: dict[str, tuple[int, int]] = {}  # topic -> (partition, bytes produced to it)

    def partition(self, topic: str, key: bytes | None, num_partitions: int) -> int:
        if key is not None:
            return partition_for_key(key, num_partitions)
        cur = self._sticky.get(topic)
        if cur is None or cur[0] >= num_partitions or cur[1] >= self.batch_size:
            prev = cur[0] if cur else -1
            p = self._rng.randrange(num_partitions)
            if num_partitions > 1 and p == prev:
                p = (p + 1 + self._rng.randrange(num_partitions - 1)) % num_partitions
            self._sticky[topic] = (p, 0)
            return p
        return cur[0]

    def on_append(self, topic: str, partition: int, nbytes: int) -> None:
        cur = self._sticky.get(topic)
        if cur is not None and cur[0] == partition:
            self._sticky[topic] = (partition, cur[1] + nbytes)


class RecordMetadata(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int


class FutureRecordMetadata:
    """The result of `Producer.send`; `get()` flushes the record's batch if it is still buffered."""

    __slots__ = ("_producer", "topic", "partition", "timestamp", "_offset", "_error")

    def __init__(self, producer: "Producer", topic: str, partition: int, timestamp: int) -> None:
        self._producer = producer
        self.topic = topic
        self.partition = partition
        self.timestamp = timestamp
        self._offset: int | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._offset is not None or self._error is not None

    def get(self, timeout: float | None = None) -> RecordMetadata:
        """The record's metadata, appending its partition's buffered batch first if needed;
        raises the error that batch's append raised (another partition's never)."""
        if not self.done():
            self._producer._drain((self.topic, self.partition), raise_error=False)
        if self._error is not None:
            raise self._error
        return RecordMetadata(self.topic, self.partition, self._offset, self.timestamp)  # type: ignore[arg-type]


def _to_bytes(v: Any, what: str) -> bytes | None:
    if v is None or isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    raise TypeError(f"{what} must be bytes, str or None, not {type(v).__name__}")


_MAX_TIMESTAMP = (1 << 63) - 1


def _header_list(headers: Any) -> list[tuple[str, bytes | None]]:
    """`headers` (a sequence of (str, bytes | None) pairs, as kafka-python takes them, or a
    mapping) as a list of pairs; a bytes key is taken as UTF-8. Anything else is a TypeError
    naming what is wrong, never silently reinterpreted (str(b"k") would be the key "b'k'")."""
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        items: Iterable[Any] = headers.items()
    elif isinstance(headers, (str, bytes, bytearray, memoryview)) or not isinstance(headers, Iterable):
        raise TypeError(f"headers must be a list of (str, bytes) pairs, not {type(headers).__name__}")
    else:
        items = headers
    out = []
    for h in items:
        if not isinstance(h, (tuple, list)) or len(h) != 2:
            raise TypeError(f"headers must be (str, bytes) pairs, not {h!r}")
        hk, hv = h
        if isinstance(hk, (bytes, bytearray)):
            try:
                hk = bytes(hk).decode()
            except UnicodeDecodeError:
                raise TypeError(f"header key {bytes(hk)!r} is not UTF-8") from None
        elif not isinstance(hk, str):
            raise TypeError(f"header key must be str, not {type(hk).__name__} ({hk!r})")
        out.append((hk, _to_bytes(hv, f"header {hk!r}")))
    return out


def _check_store(store: Any) -> None:
    """A Producer or Consumer works on an open LogStore, not on a path or a broker address (as a
    kafka-python habit, `Producer("127.0.0.1:9092")`, would give it)."""
    if not (callable(getattr(store, "partition", None)) and callable(getattr(store, "topic", None))):
        hint = (f": open the log dir first, store = logstore.open({store!r}); for a broker use a Kafka client"
                if isinstance(store, (str, bytes)) or hasattr(store, "__fspath__") else "")
        raise TypeError(f"store must be a LogStore (logstore.open(path)), not {type(store).__name__}{hint}")


class Producer:
    """Buffers records per partition and appends them to `store` as record batches.
    Thread-safe. Use as a context manager or call `close()` to flush what is buffered."""

    def __init__(self, store: Any, *, partitioner: Partitioner | DefaultPartitioner | None = None,
                 batch_size: int = 16384, compression_type: str = "none") -> None:
        _check_store(store)
        compression_code(compression_type)  # an unknown codec fails here, not at the first send
        check_int(batch_size, "batch_size")
        if partitioner is not None and not callable(partitioner) and not isinstance(partitioner, DefaultPartitioner):
            raise TypeError(f"partitioner must be callable as fn(key_bytes, num_partitions), not "
                            f"{type(partitioner).__name__}")
        self.store = store
        self.batch_size = batch_size
        self.compression_type = compression_type
        self._default = partitioner if isinstance(partitioner, DefaultPartitioner) else DefaultPartitioner(batch_size)
        self._custom = partitioner if partitioner is not None and not isinstance(partitioner, DefaultPartitioner) else None
        self._lock = threading.RLock()
        # (topic, partition) -> [records, futures, bytes]
        self._pending: dict[TopicPartition, list[Any]] = {}
        self._closed = False

    def partitions_for(self, topic: str) -> int:
        return self.store.topic(topic).partitions

    def send(self, topic: str, value: Any = None, key: Any = None, headers: Sequence[tuple[str, Any]] | None = None,
             partition: int | None = None, timestamp: int | None = None) -> FutureRecordMetadata:
        """Buffer one record; returns its future. Raises UnknownTopicOrPartitionError at once for
        an unknown topic or partition, StoreClosedError for a closed store, LogStoreError once
        the producer is closed."""
        if self._closed:
            raise LogStoreError("producer is closed")
        if getattr(self.store, "closed", False):
            raise StoreClosedError(f"log store {getattr(self.store, 'path', '')} is closed: cannot send to {topic!r}")
        k = _to_bytes(key, "key")
        v = _to_bytes(value, "value")
        hdrs = _header_list(headers)
        if partition is not None:
            partition = check_int(partition, "partition")
        if timestamp is not None:
            timestamp = check_int(timestamp, "timestamp")
            if not 0 <= timestamp <= _MAX_TIMESTAMP:
                # Kafka's ProducerRecord: "Timestamp should always be non-negative or null"
                raise ValueError(f"invalid timestamp {timestamp} for topic {topic!r}: it must be a "
                                 "non-negative number of milliseconds or None")
        n = self.partitions_for(topic)
        if partition is None:
            if self._custom is not None:
                partition = check_int(self._custom(k, n), f"the partition the partitioner chose for topic {topic!r}")
            else:
                partition = self._default.partition(topic, k, n)
        if not 0 <= partition < n:
            raise UnknownTopicOrPartitionError(f"topic {topic!r} has no partition {partition} (it has {n})")
        ts = int(time.time() * 1000) if timestamp is None else timestamp
        size = (len(k) if k else 0) + (len(v) if v else 0) + sum(len(a) + len(b or b"") for a, b in hdrs) + 16
        fut = FutureRecordMetadata(self, topic, partition, ts)
        with self._lock:
            if self._closed:  # closed while this send was on its way: close's flush is done
                raise LogStoreError("producer is closed")
            entry = self._pending.setdefault((topic, partition), [[], [], 0])
            entry[0].append((k, v, hdrs, ts))
            entry[1].append(fut)
            entry[2] += size
            full = entry[2] >= self.batch_size
        if k is None and self._custom is None:
            self._default.on_append(topic, partition, size)
        if full:  # batch_size <= 0: every record is its own batch
            self._drain((topic, partition))
        return fut

    def _drain(self, tp: TopicPartition, *, raise_error: bool = True) -> None:
        with self._lock:
            entry = self._pending.pop(tp, None)
            if not entry:
                return
            records, futures, _ = entry
            error = self._append(tp, records, futures)
            if error is not None and raise_error:
                raise error

    def _append(self, tp: TopicPartition, records: list[Any], futures: list[FutureRecordMetadata]
                ) -> Exception | None:
        """Append `records` as one batch and complete their futures; returns the first error.
        A batch over the topic's max.message.bytes is split in halves and each appended in turn
        (Kafka's producer splits a batch the broker refuses as too large), so only a record too
        large on its own fails."""
        try:
            lg = self.store.partition(*tp)
            info = lg.append_batches(R.build_batch_buffer(records, compression=self.compression_type),
                                     copy=False)
        except RecordTooLargeError as e:
            if len(records) < 2:
                futures[0]._error = e
                return e
            half = len(records) // 2
            first_error = self._append(tp, records[:half], futures[:half])
            second_error = self._append(tp, records[half:], futures[half:])
            return first_error or second_error
        except Exception as e:
            for f in futures:
                f._error = e
            return e
        for i, f in enumerate(futures):
            f._offset = info.first_offset + i
            if info.log_append_time >= 0:  # a LogAppendTime topic: the time the log stamped
                f.timestamp = info.log_append_time
        return None

    def flush(self) -> None:
        """Append every buffered record (visible to readers on return; durable per the topic's
        flush policy, or after `store.flush()`). Every partition's batch is tried; a batch that
        fails fails its futures, and the first such error is raised once all were tried."""
        with self._lock:
            tps = list(self._pending)
        first_error: Exception | None = None
        for tp in tps:
            try:
                self._drain(tp)
            except Exception as e:
                first_error = first_error or e
        if first_error is not None:
            raise first_error

    def close(self) -> None:
        """Flush and close; idempotent. The producer is closed even when the flush raises."""
        with self._lock:  # a send adds its record under this lock: it lands before, or sees closed
            if self._closed:
                return
            self._closed = True
        self.flush()

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ConsumerRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]  # () when there are none, as Record's


def group_offsets(store: Any) -> Any:
    """The one `GroupOffsetStore` of `store` in this process, shared with the broker's group
    coordinator and every embedded consumer, so their views of committed offsets cannot diverge."""
    from .groups import GroupOffsetStore
    return GroupOffsetStore.of(store)


class Consumer:
    """Reads `topics` from `store`; see the module docstring. Not thread-safe (as Kafka's)."""

    def __init__(self, store: Any, topics: str | Iterable[str], group_id: str | None = None, *,
                 auto_offset_reset: str = "latest", enable_auto_commit: bool = False,
                 max_poll_records: int = 500, fetch_max_bytes: int = 1 << 20,
                 consumer_timeout_ms: float | None = None, offsets: Any = None) -> None:
        """`consumer_timeout_ms`: None, or as in kafka-python a negative or infinite value, never
        ends iteration. Bad arguments fail here, naming the argument, not at the first poll."""
        _check_store(store)
        if auto_offset_reset not in ("latest", "earliest", "none"):
            raise ValueError(f"auto_offset_reset must be latest, earliest or none, not {auto_offset_reset!r}")
        if isinstance(max_poll_records, bool) or not isinstance(max_poll_records, int) or max_poll_records < 1:
            raise ValueError(f"max_poll_records must be a positive int, not {max_poll_records!r}")
        if isinstance(topics, str):
            names = [topics]
        elif isinstance(topics, (bytes, bytearray, memoryview)) or not isinstance(topics, Iterable):
            raise TypeError(f"topics must be a topic name (str) or a list of them, not {type(topics).__name__} "
                            f"({topics!r})")
        else:
            names = list(dict.fromkeys(topics))
        for t in names:
            if not isinstance(t, str):
                raise TypeError(f"a topic name must be a str, not {type(t).__name__} ({t!r})")
        if group_id is not None and not isinstance(group_id, str):
            raise TypeError(f"group_id must be a str or None, not {type(group_id).__name__} ({group_id!r})")
        fetch_max_bytes = check_int(fetch_max_bytes, "fetch_max_bytes")
        if consumer_timeout_ms is not None:
            if isinstance(consumer_timeout_ms, bool) or not isinstance(consumer_timeout_ms, (int, float)):
                raise TypeError(f"consumer_timeout_ms must be a number of milliseconds or None, not "
                                f"{type(consumer_timeout_ms).__name__} ({consumer_timeout_ms!r})")
            if consumer_timeout_ms < 0 or consumer_timeout_ms == float("inf"):
                consumer_timeout_ms = None  # kafka-python: a negative timeout (default inf) is none
        self.store = store
        self.topics = names
        for t in self.topics:
            store.topic(t)  # unknown topic: fail now, naming it
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.enable_auto_commit = enable_auto_commit
        self.max_poll_records = max_poll_records
        self.fetch_max_bytes = fetch_max_bytes
        self.consumer_timeout_ms = consumer_timeout_ms
        self._offsets = offsets if offsets is not None else (group_offsets(store) if group_id else None)
        self._positions: dict[TopicPartition, int] = {}
        self._logs: dict[TopicPartition, Any] = {}  # the Log each position belongs to
        self._auto_committed: dict[TopicPartition, int] = {}
        self._wake = threading.Event()
        # the append listener holds the event, not the consumer: a consumer dropped without
        # close() is collected, and the finalizer takes its listener off every Log it was on
        self._on_append = _waker(self._wake)
        weakref.finalize(self, _detach, self._logs, self._on_append)
        self._rr = 0
        self._closed = False
        self._refresh_assignment()
        self._auto_committed = dict(self._positions)

    # -- assignment and positions -----------------------------------------------------------
    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads: every partition of its topics."""
        self._check_open()
        return sorted(self._positions)

    def _drop(self, tp: TopicPartition) -> None:
        lg = self._logs.pop(tp, None)
        if lg is not None:
            lg.remove_append_listener(self._on_append)
        self._positions.pop(tp, None)

    def _refresh_assignment(self) -> None:
        """Take on partitions added since (Kafka picks them up at a metadata refresh); let go of
        those of deleted topics; a topic deleted and created again is a new one: its partitions
        start over from the committed offsets or `auto_offset_reset`."""
        live: dict[TopicPartition, Any] = {}
        for t in self.topics:
            try:
                n = self.store.topic(t).partitions
                for p in range(n):
                    live[(t, p)] = self.store.partition(t, p)
            except UnknownTopicOrPartitionError:
                # deleted (maybe while we looked): as a Kafka consumer, read nothing from it
                for tp in [tp for tp in live if tp[0] == t]:
                    del live[tp]
        for tp in [tp for tp, lg in self._logs.items() if live.get(tp) is not lg]:
            self._drop(tp)
        new = [tp for tp in live if tp not in self._positions]
        if not new:
            return
        committed = self._offsets.fetch(self.group_id, new) if self._offsets is not None else {}
        for tp in new:
            om = committed.get(tp)
            pos = om.offset if om is not None else self._reset_offset(tp, live[tp])
            lg = live[tp]
            lg.add_append_listener(self._on_append)
            self._logs[tp] = lg
            self._positions[tp] = pos

    def _reset_offset(self, tp: TopicPartition, lg: Any = None, out_of_range: Exception | None = None) -> int:
        """The position `auto_offset_reset` gives `tp`: when it has no committed offset, or when
        its position is `out_of_range` (the error the read raised)."""
        lg = lg if lg is not None else self.store.partition(*tp)
        if self.auto_offset_reset == "earliest":
            return lg.log_start_offset
        if self.auto_offset_reset == "latest":
            return lg.log_end_offset
        if out_of_range is not None:
            raise OffsetOutOfRangeError(f"{out_of_range}; auto_offset_reset is 'none': seek {tp[0]}-{tp[1]} "
                                        "to a valid offset") from None
        whose = f"group {self.group_id!r}" if self.group_id else "this consumer (it has no group_id)"
        raise OffsetOutOfRangeError(f"no committed offset for {tp[0]}-{tp[1]} of {whose} "
                                    "and auto_offset_reset is 'none'")

    def _check_open(self) -> None:
        if self._closed:
            raise LogStoreError("consumer is closed")

    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record poll returns for `tp`."""
        self._check_open()
        try:
            return self._positions[tuple(tp)]  # type: ignore[index]
        except KeyError:
            raise UnknownTopicOrPartitionError(f"{tp[0]}-{tp[1]} is not assigned to this consumer") from None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Make the next poll of `tp` start at `offset`."""
        self.position(tp)  # open and assigned
        offset = check_int(offset, "offset")
        if offset < 0:
            raise ValueError(f"offset must be non-negative, not {offset}")
        self._positions[tuple(tp)] = offset  # type: ignore[index]

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps or self.assignment():
            self.seek(tp, self.store.partition(*tp).log_start_offset)

    def seek_to_end(self, *tps: TopicPartition) -> None:
        for tp in tps or self.assignment():
            self.seek(tp, self.store.partition(*tp).log_end_offset)

    def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of `tp`; None without one (or without a group_id)."""
        self._check_open()
        if self._offsets is None:
            return None
        return self._offsets.committed(self.group_id, tp[0], tp[1])

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit `offsets` (default: every current position) for the group, as one batch.
        Each must be an int >= 0 for a partition of an existing topic."""
        self._check_open()
        self._commit(offsets)

    def _commit(self, offsets: dict[TopicPartition, int] | None) -> None:
        if self._offsets is None:
            raise LogStoreError("commit needs a group_id")
        if offsets is None:
            todo = dict(self._positions)
        else:
            todo = {}
            for tp, off in dict(offsets).items():
                t, p = tp
                self.store.partition(t, p)  # UnknownTopicOrPartitionError naming it
                off = check_int(off, f"offset for {t}-{p}")
                if off < 0:
                    raise ValueError(f"invalid offset {off} for {t}-{p}: a committed offset is >= 0")
                todo[(t, p)] = off
        self._offsets.commit(self.group_id, todo)

    def _auto_commit(self) -> None:
        """Commit what the records handed out so far moved: with auto commit, the records of a
        poll count as processed once the application polls again (or closes), as in Kafka, so
        a crash while processing them gets them again (at least once), never loses them."""
        if not (self.enable_auto_commit and self._offsets is not None):
            return
        changed = {tp: off for tp, off in self._positions.items() if self._auto_committed.get(tp) != off}
        if changed:
            self._offsets.commit(self.group_id, changed)
            self._auto_committed.update(changed)

    # -- reading ---------------------------------------------------------------------------------
    def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Records from the current positions, up to `max_records`; waits up to `timeout`
        seconds for an append when there is nothing to read. Raises StoreClosedError once the
        store is closed (also when it closes during the wait)."""
        self._check_open()
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__} ({timeout!r})")
        if timeout < 0:
            raise ValueError(f"timeout must be non-negative, not {timeout!r}")
        if max_records is None:
            limit = self.max_poll_records
        elif isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
            raise ValueError(f"max_records must be a positive int, not {max_records!r}")
        else:
            limit = max_records
        self._auto_commit()
        deadline = time.monotonic() + timeout
        while True:
            self._wake.clear()
            if getattr(self.store, "closed", False):  # its Logs wake us once when they close
                raise StoreClosedError(f"log store {getattr(self.store, 'path', '')} is closed")
            self._refresh_assignment()
            out = self._read(limit)
            if out:
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            self._wake.wait(left)

    def _read(self, limit: int) -> list[ConsumerRecord]:
        out: list[ConsumerRecord] = []
        tps = sorted(self._positions)
        if not tps:
            return out
        n = len(tps)
        start = self._rr % n
        self._rr += 1
        for i in range(n):
            if len(out) >= limit:
                break
            tp = tps[(start + i) % n]
            lg = self._logs[tp]
            pos = self._positions[tp]
            if pos == lg.log_end_offset:
                continue
            try:
                try:
                    recs = lg.read(pos, self.fetch_max_bytes, max_records=limit - len(out))
                except OffsetOutOfRangeError as e:
                    # below the log start (retention, delete-records) or past the end: reset, as Kafka does
                    pos = self._positions[tp] = self._reset_offset(tp, lg, e)
                    try:
                        recs = lg.read(pos, self.fetch_max_bytes, max_records=limit - len(out))
                    except OffsetOutOfRangeError:
                        continue
            except (StoreClosedError, OSError):
                if getattr(self.store, "closed", False) or not lg.closed:
                    raise
                continue  # its topic was deleted just now: the next poll lets it go
            if not recs:
                continue
            t, p = tp
            out.extend(ConsumerRecord(t, p, r.offset, r.timestamp, r.key, r.value, r.headers) for r in recs)
            self._positions[tp] = recs[-1].offset + 1
        return out

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Yields records as they come; stops after `consumer_timeout_ms` without one (never
        when None) or when the consumer is closed. As kafka-python's iterator, the position of a
        partition moves past a record when that record is yielded, not when its poll read it: a
        loop left with `break` (then `commit()`, or iterating again) resumes at the record after
        the last one yielded, losing none of what the poll had read beyond it. A `seek` during
        the loop drops the rest of that partition's polled records."""
        idle_since = time.monotonic()
        while not self._closed:
            wait = 0.5
            if self.consumer_timeout_ms is not None:
                wait = min(wait, max(0.0, idle_since + self.consumer_timeout_ms / 1000 - time.monotonic()))
            recs = self.poll(timeout=wait)
            if recs:
                idle_since = time.monotonic()
                expect: dict[TopicPartition, int] = {}
                for r in recs:  # back to each partition's first polled record
                    expect.setdefault((r.topic, r.partition), r.offset)
                self._positions.update(expect)
                for r in recs:
                    tp = (r.topic, r.partition)
                    if self._closed:
                        return
                    if self._positions.get(tp) != expect[tp]:
                        continue  # sought elsewhere, or let go of, while the loop ran
                    self._positions[tp] = expect[tp] = r.offset + 1
                    yield r
            elif self.consumer_timeout_ms is not None and \
                    (time.monotonic() - idle_since) * 1000 >= self.consumer_timeout_ms:
                return

    def close(self) -> None:
        """Commit (with auto commit) and let go of the partitions; idempotent."""
        if self._closed:
            return
        try:
            self._auto_commit()
        finally:
            for tp in list(self._logs):
                self._drop(tp)
            self._closed = True

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _waker(event: threading.Event) -> Callable[[Any], None]:
    def wake(_log: Any) -> None:
        event.set()
    return wake


def _detach(logs: dict[TopicPartition, Any], fn: Callable[[Any], None]) -> None:
    for lg in list(logs.values()):
        lg.remove_append_listener(fn)
    logs.clear()


__all__ = ["Producer", "Consumer", "ConsumerRecord", "RecordMetadata", "FutureRecordMetadata",
           "DefaultPartitioner", "murmur2", "to_positive", "partition_for_key", "group_offsets"]
