"""`LogStore`: a log dir — its topics, their partitions, and the files that tie them together.

Log dir layout (Kafka's):
    <dir>/.lock                               held with flock(LOCK_EX) while open; holds our pid
    <dir>/.kafka_cleanshutdown                present only after a clean close
    <dir>/meta.properties                     version, cluster.id, node.id, directory.id
    <dir>/recovery-point-offset-checkpoint    per partition: offsets below are fsynced
    <dir>/log-start-offset-checkpoint         per partition: first readable offset
    <dir>/__cluster_metadata-0/               the topic metadata log (below)
    <dir>/<topic>-<partition>/                one Log each

Topic metadata is itself a compacted log, as Kafka's KRaft metadata log is: one record per
topic, key `topic/<name>`, value JSON {"name", "id", "partitions", "config"}; a null value
(tombstone) deletes the topic. It is fsynced before a change is acknowledged and replayed at
open. Partition directories found without metadata (e.g. copied from a Kafka broker) are
adopted as topics with default configs.

Invariants: one process owns a log dir (flock); a clean open scans no log data; after an
unclean stop each partition is recovered from its recovery point; a topic is in `topics()` iff
its metadata record is live. A partition directory of a topic whose last metadata record is a
tombstone is the remains of an interrupted `delete_topic` and is removed at open, never adopted
(adopting it would bring the topic back with the already-removed partitions empty). A partition
taken offline by a failed fsync (log.py) stays offline until the store is reopened; a close
with one offline writes no clean-shutdown marker, so that reopen recovers it. Partitions made by
create_topic / create_partitions start at offset 0, and the checkpoint files hold no entry left
by a deleted topic of the same name from before their metadata record is written
(`_forget_checkpointed`). A deleted topic's partition directories are renamed away (durably)
before the store lock is released, so a create of the same name never opens one of them.
A new partition that cannot be opened once its metadata record is written (out of descriptors,
a full disk) does not undo the creation: it is opened at its first use (`partition`), which
raises KafkaStorageError while that still fails, so the topic is either wholly there or not.
"""

from __future__ import annotations

import concurrent.futures
import errno
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

from . import checkpoint as ckpt
from . import producer_state
from .config import LIST_TOPIC_CONFIGS, TOPIC_CONFIGS, LogConfig, StoreConfig, parse_topic_config
from .errors import (InvalidConfigError, InvalidPartitionsError, InvalidTopicError, KafkaStorageError,
                     LogDirLockedError, LogStoreError, StoreClosedError, TopicAlreadyExistsError,
                     UnknownTopicOrPartitionError, check_int)
from .log import Log, RecoveryStats, fsync_dir, parse_partition_dir

log = logging.getLogger("logstore")

LOCK_FILE = ".lock"
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
METADATA_TOPIC = "__cluster_metadata"
MAX_TOPIC_NAME = 249
_LEGAL = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
MAX_PARTITIONS = 100_000


def validate_topic_name(name: Any) -> str:
    """Kafka's rules: 1-249 of [a-zA-Z0-9._-], not '.' or '..'. Raises InvalidTopicError."""
    if not isinstance(name, str) or not name:
        raise InvalidTopicError(f"invalid topic name {name!r}: must be a non-empty string")
    if name in (".", ".."):
        raise InvalidTopicError(f"invalid topic name {name!r}: '.' and '..' are not allowed")
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopicError(f"invalid topic name {name[:40]!r}...: longer than {MAX_TOPIC_NAME} characters")
    bad = sorted(set(name) - _LEGAL)
    if bad:
        raise InvalidTopicError(
            f"invalid topic name {name!r}: character(s) {''.join(bad)!r} not allowed "
            "(only ASCII letters, digits, '.', '_' and '-')")
    return name


@dataclass
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: int
    config: dict[str, str] = field(default_factory=dict)  # the topic's overrides

    def to_json(self) -> bytes:
        return json.dumps({"name": self.name, "id": str(self.topic_id), "partitions": self.partitions,
                           "config": self.config}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "TopicInfo":
        d = json.loads(data)
        return cls(d["name"], uuid.UUID(d["id"]), int(d["partitions"]), dict(d.get("config") or {}))


class LogStore:
    """A log dir opened for exclusive use. Thread-safe. Use `logstore.open(path)`."""

    def __init__(self, path: str, config: Mapping[str, Any] | None = None, *, background: bool = True):
        self.path = os.path.abspath(path)
        self.config = StoreConfig(config)
        os.makedirs(self.path, exist_ok=True)
        self._lock_fd = self._acquire_lock()
        self._lock = threading.RLock()
        self._closed = False
        self._topics: dict[str, TopicInfo] = {}
        self._configs: dict[str, LogConfig] = {}
        self._logs: dict[tuple[str, int], Log] = {}
        # new partitions whose Log could not be opened when they were created: opened at first use
        self._unopened: set[tuple[str, int]] = set()
        self._topic_listeners: list[Callable[[str, str], None]] = []
        self.periodic_tasks: list[list[Any]] = []  # [interval_s, next_due, fn]
        self.recovery_stats = RecoveryStats()
        self._background = background
        # fsyncs of segments sealed by a roll run here, off the appending thread (see Log.roll)
        self._roll_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._roll_pool_lock = threading.Lock()
        self._roll_pending: dict[Log, int] = {}   # log -> offset its queued roll flush covers
        # one checkpoint writer at a time: writers share `<file>.tmp`, so two at once truncate each
        # other's file and one rename fails (FileNotFoundError), or an older snapshot lands last
        self._ckpt_lock = threading.RLock()
        self._stop = threading.Event()
        try:
            self._open()
        except BaseException:
            # close what was opened before the failure: no descriptor or map may outlive it
            for lg in list(self._logs.values()) + [getattr(self, "_meta_log", None)]:
                if lg is not None:
                    for seg in lg.segments.values():
                        seg.close()
            self._release_lock()
            raise
        self._thread: threading.Thread | None = None
        self.add_periodic(self.config.flush_scheduler_interval_ms / 1000, self._flush_due)
        self.add_periodic(self.config.recovery_checkpoint_interval_ms / 1000 or 60, self.checkpoint)
        self.add_periodic(1.0, self._purge_deleted)
        self._install_extensions()
        if background:
            self._thread = threading.Thread(target=self._run_background, name=f"logstore-bg:{self.path}",
                                            daemon=True)
            self._thread.start()

    # -- the lock ---------------------------------------------------------------------------
    def _acquire_lock(self) -> int:
        lock_path = os.path.join(self.path, LOCK_FILE)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            try:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f" (pid {holder})" if holder else ""
                raise LogDirLockedError(
                    f"log dir {self.path} is already open in another process or store{who}: "
                    f"{lock_path} is locked") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None  # type: ignore[assignment]

    # -- open ---------------------------------------------------------------------------------
    def _open(self) -> None:
        marker = os.path.join(self.path, CLEAN_SHUTDOWN_FILE)
        self.clean_open = os.path.exists(marker)
        meta_path = os.path.join(self.path, ckpt.META_PROPERTIES_FILE)
        self.meta = ckpt.read_properties(meta_path)
        if not self.meta:
            self.meta = {"version": "1", "cluster.id": _short_uuid(), "node.id": "0",
                         "directory.id": _short_uuid()}
            ckpt.write_properties(meta_path, self.meta)
        self.recovery_points = self._read_ckpt(ckpt.RECOVERY_POINT_FILE)
        self.start_offsets = self._read_ckpt(ckpt.LOG_START_OFFSET_FILE)
        self._meta_log = self._open_log(METADATA_TOPIC, 0, LogConfig({"cleanup.policy": "compact",
                                                                       "segment.bytes": 16 << 20}))
        deleted = self._replay_metadata()
        for name in os.listdir(self.path):
            full = os.path.join(self.path, name)
            if name.endswith("-delete") and os.path.isdir(full):
                shutil.rmtree(full, ignore_errors=True)  # a topic deletion that was interrupted
                continue
            tp = parse_partition_dir(name)
            if tp is None or not os.path.isdir(full) or tp[0] == METADATA_TOPIC:
                continue
            topic, p = tp
            try:
                validate_topic_name(topic)
            except InvalidTopicError:
                continue
            info = self._topics.get(topic)
            if info is None and topic in deleted:
                # a deletion cut short after its tombstone became durable: finish it, never adopt
                # the leftovers (that would resurrect the topic with some partitions emptied)
                target = f"{full}.{uuid.uuid4().hex}-delete"
                os.rename(full, target)
                fsync_dir(self.path)
                shutil.rmtree(target, ignore_errors=True)
                log.warning("removed partition directory %s of deleted topic %r", full, topic)
                continue
            if info is None:
                # data without metadata: adopt it (a Kafka log dir, or a crash mid-create)
                info = TopicInfo(topic, uuid.uuid4(), p + 1, {})
                self._topics[topic] = info
                self._write_metadata(info)
                log.warning("adopted partition directory %s as topic %r", full, topic)
            elif p >= info.partitions:
                info.partitions = p + 1
                self._write_metadata(info)
        for info in self._topics.values():
            self._configs[info.name] = self.config.log_config(info.config)
            for p in range(info.partitions):
                self._logs[(info.name, p)] = self._open_log(info.name, p, self._configs[info.name])
        if self.clean_open:
            os.unlink(marker)
            fsync_dir(self.path)

    def _read_ckpt(self, name: str) -> dict[tuple[str, int], int]:
        path = os.path.join(self.path, name)
        try:
            return ckpt.read_checkpoint(path)
        except LogStoreError as e:
            # a damaged checkpoint costs a full recovery scan, never data
            log.error("%s; recovering every partition from its first segment", e)
            self.recovery_stats.problems.append(str(e))
            self.clean_open = False
            return {}

    def _open_log(self, topic: str, p: int, config: LogConfig, *, new: bool = False) -> Log:
        """Open (creating if need be) one partition's Log. `new`: a partition created now
        (create_topic, create_partitions) starts at offset 0 whatever the checkpoints read at
        open say: their entries for the name are those of a deleted topic of the same name."""
        d = os.path.join(self.path, f"{topic}-{p}")
        existed = os.path.isdir(d)
        if new:
            self.recovery_points.pop((topic, p), None)
            self.start_offsets.pop((topic, p), None)
        lg = Log(d, topic, p, config, recovery_point=self.recovery_points.get((topic, p), 0),
                 log_start_offset=self.start_offsets.get((topic, p), 0), clean=self.clean_open,
                 stats=RecoveryStats())
        if self._background:
            lg.roll_flusher = self._schedule_roll_flush
        s = lg.stats
        rs = self.recovery_stats
        rs.segments_scanned += s.segments_scanned
        rs.bytes_scanned += s.bytes_scanned
        rs.bytes_truncated += s.bytes_truncated
        rs.indexes_rebuilt += s.indexes_rebuilt
        rs.problems.extend(f"{topic}-{p}: {x}" for x in s.problems)
        for x in s.problems:
            log.warning("recovery of %s-%d: %s", topic, p, x)
        if not existed:
            fsync_dir(self.path)
        return lg

    def _replay_metadata(self) -> set[str]:
        """Load the live topic records; returns the names whose last record is a tombstone."""
        deleted: set[str] = set()
        for r in self._meta_log.iter_records():
            key = (r.key or b"").decode()
            if not key.startswith("topic/"):
                continue
            name = key[len("topic/"):]
            if r.value is None:
                self._topics.pop(name, None)
                deleted.add(name)
            else:
                self._topics[name] = TopicInfo.from_json(r.value)
                deleted.discard(name)
        return deleted

    def _write_metadata(self, info: TopicInfo, *, delete: bool = False) -> None:
        key = f"topic/{info.name}".encode()
        self._meta_log.append([(key, None if delete else info.to_json())])
        self._meta_log.flush()

    def _install_extensions(self) -> None:
        """Hook for retention and cleaning (retention.py, cleaner.py) when they are present."""
        try:
            from . import retention
        except ImportError:
            retention = None  # type: ignore[assignment]
        if retention is not None and hasattr(retention, "install"):
            retention.install(self)
        try:
            from . import cleaner
        except ImportError:
            cleaner = None  # type: ignore[assignment]
        if cleaner is not None and hasattr(cleaner, "install"):
            cleaner.install(self)
        producer_state.install(self)

    # -- topics -------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"log store {self.path} is closed")

    def topics(self) -> list[str]:
        """Names of all topics, sorted. O(topics)."""
        with self._lock:
            return sorted(self._topics)

    def has_topic(self, name: str) -> bool:
        return name in self._topics

    def topic(self, name: str) -> TopicInfo:
        try:
            return self._topics[name]
        except KeyError:
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}") from None

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo:
        for info in self._topics.values():
            if info.topic_id == topic_id:
                return info
        raise UnknownTopicOrPartitionError(f"unknown topic id {topic_id}")

    def topic_config(self, name: str) -> LogConfig:
        """The effective config of a topic."""
        try:
            return self._configs[name]
        except KeyError:
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}") from None

    def create_topic(self, name: str, partitions: int = 1, config: Mapping[str, Any] | None = None, *,
                     validate_only: bool = False, internal: bool = False) -> TopicInfo:
        """Create a topic. Raises TopicAlreadyExistsError, InvalidTopicError, InvalidPartitionsError,
        InvalidConfigError. The metadata record is fsynced before the directories are made."""
        validate_topic_name(name)
        if name == METADATA_TOPIC:
            raise InvalidTopicError(f"topic name {name!r} is reserved for the store's metadata")
        if not isinstance(partitions, int) or partitions < 1 or partitions > MAX_PARTITIONS:
            raise InvalidPartitionsError(f"invalid partition count {partitions} for topic {name!r}: must be 1 to "
                                         f"{MAX_PARTITIONS}")
        overrides = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (config or {}).items()}
        parse_topic_config(overrides)
        cfg = self.config.log_config(overrides)
        # the checkpoint lock first (checkpoint() takes it before the store lock): the checkpoints
        # are rewritten below, before the new topic's metadata record
        with self._ckpt_lock, self._lock:
            self._check_open()
            if name in self._topics:
                raise TopicAlreadyExistsError(f"topic {name!r} already exists")
            collide = name.replace(".", "_")
            for other in self._topics:
                if other.replace(".", "_") == collide:
                    raise InvalidTopicError(
                        f"topic {name!r} collides with existing topic {other!r} ('.' and '_' are alike in metric names)")
            info = TopicInfo(name, uuid.uuid4(), partitions, overrides)
            if validate_only:
                return info
            self._forget_checkpointed(name)
            self._write_metadata(info)
            self._topics[name] = info
            self._configs[name] = cfg
            self._open_new_partitions(name, range(partitions), cfg)
        self._notify(name, "create")
        return info

    def _open_new_partitions(self, name: str, parts: Iterable[int], cfg: LogConfig) -> None:
        """Open the Logs of partitions created now (their metadata record is durable, so the
        creation stands): one that fails is left to `partition` to open at its first use."""
        for p in parts:
            try:
                self._logs[(name, p)] = self._open_log(name, p, cfg, new=True)
            except (OSError, LogStoreError) as e:
                log.warning("cannot open new partition %s-%d yet (it is opened at its first use): %s", name, p, e)
                self._unopened.add((name, p))

    def _open_unopened(self, topic: str, partition: int) -> Log:
        """Open a partition that failed to open when it was created (see `_open_new_partitions`)."""
        with self._lock:
            self._check_open()
            lg = self._logs.get((topic, partition))
            if lg is not None:
                return lg
            if (topic, partition) not in self._unopened or topic not in self._topics:
                raise UnknownTopicOrPartitionError(f"unknown partition {topic}-{partition}")
            try:
                lg = self._open_log(topic, partition, self._configs[topic], new=True)
            except (OSError, LogStoreError) as e:
                raise KafkaStorageError(f"partition {topic}-{partition} cannot be opened: {e}") from e
            self._unopened.discard((topic, partition))
            self._logs[(topic, partition)] = lg
            return lg

    def _forget_checkpointed(self, name: str) -> None:
        """Rewrite the checkpoint files before the metadata record that gives `name` new
        partitions (the caller holds the checkpoint lock, then the store lock). They are written
        from the live partitions only, so the new ones have no entry then, while the files read
        at open may hold the log start offset and recovery point of a deleted topic of the same
        name: a crash would reopen the new partitions with those, and a log start offset above
        the new log's end deletes every record of it at open (LogLoader._restart_at_log_start),
        acknowledged and flushed ones included. A failure here changes nothing."""
        try:
            self.checkpoint()
        except OSError as e:
            raise KafkaStorageError(f"cannot write the checkpoints of {self.path} for topic {name!r}: {e}") from e

    def create_partitions(self, name: str, total: int, *, validate_only: bool = False) -> TopicInfo:
        """Grow a topic to `total` partitions (Kafka's CreatePartitions; never shrinks)."""
        with self._ckpt_lock, self._lock:  # in that order, as create_topic
            self._check_open()
            info = self.topic(name)
            if not isinstance(total, int) or total <= info.partitions:
                raise InvalidPartitionsError(
                    f"topic {name!r} has {info.partitions} partitions; the new count {total} must be larger")
            if total > MAX_PARTITIONS:
                raise InvalidPartitionsError(f"partition count {total} exceeds {MAX_PARTITIONS}")
            if validate_only:
                return TopicInfo(name, info.topic_id, total, dict(info.config))
            old = info.partitions
            new = TopicInfo(name, info.topic_id, total, dict(info.config))
            self._forget_checkpointed(name)
            self._write_metadata(new)
            self._topics[name] = new
            self._open_new_partitions(name, range(old, total), self._configs[name])
        self._notify(name, "partitions")
        return new

    def set_topic_config(self, name: str, config: Mapping[str, Any], *, validate_only: bool = False) -> LogConfig:
        """Replace a topic's overrides (Kafka's AlterConfigs). Takes effect at once."""
        overrides = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.items()}
        parse_topic_config(overrides)
        with self._lock:
            self._check_open()
            info = self.topic(name)
            cfg = self.config.log_config(overrides)
            if validate_only:
                return cfg
            new = TopicInfo(name, info.topic_id, info.partitions, overrides)
            self._write_metadata(new)
            self._topics[name] = new
            self._configs[name] = cfg
            for p in range(info.partitions):
                lg = self._logs.get((name, p))
                if lg is not None:
                    lg.config = cfg
        self._notify(name, "config")
        return cfg

    def alter_topic_config(self, name: str, set: Mapping[str, Any] | None = None,  # noqa: A002
                           delete: list[str] | tuple[str, ...] = (), *, validate_only: bool = False) -> LogConfig:
        """Change some overrides (Kafka's IncrementalAlterConfigs SET / DELETE)."""
        ops = [("delete", k, None) for k in delete] + [("set", k, v) for k, v in (set or {}).items()]
        return self.incremental_alter_topic_config(name, ops, validate_only=validate_only)

    def incremental_alter_topic_config(self, name: str, ops: Iterable[tuple[str, str, Any]], *,
                                       validate_only: bool = False) -> LogConfig:
        """Apply Kafka's IncrementalAlterConfigs operations in order: (op, key, value) with op one of
        "set", "delete", "append", "subtract" (the last two for list configs such as
        cleanup.policy). One read-modify-write under the store lock, so concurrent alters of one
        topic all land; nothing changes when any operation is invalid."""
        with self._lock:
            info = self.topic(name)
            current = self._configs[name]
            overrides = dict(info.config)
            for op, key, value in ops:
                if key not in TOPIC_CONFIGS:
                    raise InvalidConfigError(f"unknown topic config {key!r}")
                if op == "set":
                    if value is None:
                        raise InvalidConfigError(f"config {key!r}: SET needs a value")
                    overrides[key] = value
                elif op == "delete":
                    overrides.pop(key, None)
                elif op in ("append", "subtract"):
                    if key not in LIST_TOPIC_CONFIGS:
                        raise InvalidConfigError(f"config {key!r} is not a list: APPEND/SUBTRACT do not apply")
                    now = overrides.get(key, str(current.get(key)))
                    items = [x.strip() for x in str(now).split(",") if x.strip()]
                    given = [x.strip() for x in str(value or "").split(",") if x.strip()]
                    if op == "append":
                        items += [g for g in given if g not in items]
                    else:
                        items = [i for i in items if i not in given]
                    overrides[key] = ",".join(items)
                else:
                    raise InvalidConfigError(f"config {key!r}: unknown operation {op!r}")
            return self.set_topic_config(name, overrides, validate_only=validate_only)

    def delete_topic(self, name: str) -> None:
        """Delete a topic: tombstone its metadata (fsynced), close its partitions, remove its
        directories (renamed `<topic>-<p>.<id>-delete` first, so an interrupted delete finishes
        at the next open). The renames are done, and durable, before the store lock is released:
        a create of the same name waiting for it (a DeleteTopics and a CreateTopics pipelined by
        a client run at once) must find no directory of the old topic, or it would open the old
        records as its own and then lose its directories to the renames here."""
        with self._lock:
            self._check_open()
            info = self.topic(name)
            self._write_metadata(info, delete=True)
            del self._topics[name]
            self._configs.pop(name, None)
            logs = [self._logs.pop((name, p)) for p in range(info.partitions) if (name, p) in self._logs]
            for p in range(info.partitions):
                if (name, p) in self._unopened:   # never opened, never held a record: just remove
                    self._unopened.discard((name, p))
                    shutil.rmtree(os.path.join(self.path, f"{name}-{p}"), ignore_errors=True)
            targets = []
            for lg in logs:
                lg.abandon()
                target = f"{lg.dir}.{info.topic_id.hex}-delete"
                try:
                    os.rename(lg.dir, target)
                except FileNotFoundError:
                    continue
                targets.append(target)
            # every directory is renamed (and the renames durable) before any is emptied; a crash
            # before this point leaves directories that `_open` removes because of the tombstone
            fsync_dir(self.path)
        for target in targets:
            shutil.rmtree(target, ignore_errors=True)
        self._notify(name, "delete")

    def add_topic_listener(self, fn: Callable[[str, str], None]) -> None:
        """`fn(topic, change)` after create / partitions / config / delete."""
        self._topic_listeners.append(fn)

    def _notify(self, topic: str, change: str) -> None:
        for fn in list(self._topic_listeners):
            try:
                fn(topic, change)
            except Exception:  # a listener's bug must not undo a committed change
                log.exception("topic listener failed for %s %s", change, topic)

    # -- partitions ---------------------------------------------------------------------------
    def partition(self, topic: str, partition: int) -> Log:
        """The Log of one partition. O(1). Raises UnknownTopicOrPartitionError, and TypeError
        for a partition that is not an int (True or 1.0 would find partition 1)."""
        if type(partition) is not int:
            partition = check_int(partition, "partition")
        try:
            return self._logs[(topic, partition)]
        except KeyError:
            if self._closed:
                raise StoreClosedError(f"log store {self.path} is closed") from None
            if (topic, partition) in self._unopened:
                return self._open_unopened(topic, partition)
            if topic in self._topics:
                raise UnknownTopicOrPartitionError(
                    f"topic {topic!r} has no partition {partition} (it has {self._topics[topic].partitions})") from None
            raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}") from None

    def logs(self) -> list[Log]:
        """Every partition's Log (not the metadata log)."""
        with self._lock:
            return list(self._logs.values())

    def delete_records(self, topic: str, partition: int, before_offset: int) -> int:
        """Move a partition's log start offset to `before_offset` (Kafka's DeleteRecords)."""
        self._check_open()
        lso = self.partition(topic, partition).delete_records(before_offset)
        self.checkpoint_start_offsets()
        return lso

    def run_retention(self, now_ms: int | None = None) -> Any:
        """One retention pass over every partition now (retention.py); returns a RetentionResult."""
        self._check_open()
        from . import retention
        return retention.run_retention(self, now_ms)

    def run_cleaner(self, now_ms: int | None = None) -> list:
        """Compact every partition that needs it now (cleaner.py); returns the passes' CleanerStats."""
        self._check_open()
        return self.log_cleaner.run(now_ms)

    # -- background work ------------------------------------------------------------------------
    def add_periodic(self, interval_s: float, fn: Callable[[], Any]) -> None:
        """Run `fn()` on the background thread every `interval_s` seconds."""
        self.periodic_tasks.append([interval_s, time.monotonic() + interval_s, fn])

    def _run_background(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            next_due = now + 1.0
            for task in list(self.periodic_tasks):
                interval, due, fn = task
                if due <= now:
                    try:
                        fn()
                    except Exception:
                        if self._closed:
                            return
                        log.exception("background task %s failed", getattr(fn, "__name__", fn))
                    task[1] = time.monotonic() + interval
                next_due = min(next_due, task[1])
            self._stop.wait(max(0.01, next_due - time.monotonic()))

    def _schedule_roll_flush(self, lg: Log, offset: int) -> None:
        # called with the Log's lock held: takes only its own lock (the store's lock is taken
        # before Logs' locks elsewhere). One queued flush per log at most: a roll while one is
        # queued raises its offset instead, so a burst of rolls (small segments under a steady
        # stream of appends) costs one fsync pass, and the queue stays as short as the log count.
        with self._roll_pool_lock:
            if self._stop.is_set():
                return  # closing: close flushes every log itself
            queued = self._roll_pending.get(lg)
            self._roll_pending[lg] = offset if queued is None else max(queued, offset)
            if queued is not None:
                return
            if self._roll_pool is None:
                self._roll_pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="logstore-roll-flush")
            self._roll_pool.submit(self._roll_flush, lg)

    def _roll_flush(self, lg: Log) -> None:
        with self._roll_pool_lock:
            offset = self._roll_pending.pop(lg, None)
        if offset is None or lg.closed:
            return
        try:
            lg.flush(offset)
        except Exception as e:  # the log is offline now (Log._fail); appends will say so
            if not lg.closed:
                log.error("flush of partition %s after a roll failed: %s", lg.name, e)

    def _flush_due(self) -> None:
        now = int(time.time() * 1000)
        for lg in self.logs():
            if not lg.closed:
                lg.flush_if_due(now)

    def _purge_deleted(self) -> None:
        for lg in self.logs():
            lg.purge_deleted()

    def checkpoint(self) -> None:
        """Write the recovery-point and log-start-offset checkpoints (atomically)."""
        with self._ckpt_lock:
            with self._lock:
                if self._closed:
                    return
                logs = list(self._logs.items()) + [((METADATA_TOPIC, 0), self._meta_log)]
            ckpt.write_checkpoint(os.path.join(self.path, ckpt.RECOVERY_POINT_FILE),
                                  {k: lg.recovery_point for k, lg in logs})
            self.checkpoint_start_offsets(logs)

    def checkpoint_start_offsets(self, logs: list | None = None) -> None:
        with self._ckpt_lock:
            if logs is None:
                with self._lock:
                    logs = list(self._logs.items())
            ckpt.write_checkpoint(os.path.join(self.path, ckpt.LOG_START_OFFSET_FILE),
                                  {k: lg.log_start_offset for k, lg in logs if lg.log_start_offset > 0})

    def flush(self) -> None:
        """fsync every partition and write the checkpoints."""
        self._check_open()
        for lg in self.logs():
            lg.flush()
        self._meta_log.flush()
        self.checkpoint()

    # -- close ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush everything, write checkpoints and the clean-shutdown marker, release the lock."""
        with self._lock:
            if self._closed:
                return
            self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        cleaner = getattr(self, "log_cleaner", None)
        if cleaner is not None:
            cleaner.shutdown()  # its own thread (cleaner.py); an unfinished cleaning is dropped
        with self._roll_pool_lock:  # _stop is set: no new ones
            pool = self._roll_pool
        if pool is not None:
            # flushes still queued are dropped, not run: each Log.close below flushes all of its
            # log anyway, and under a steady stream of appends to a log with small segments the
            # queue holds a flush per roll, each an fsync (closing took minutes)
            pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            logs = list(self._logs.items()) + [((METADATA_TOPIC, 0), self._meta_log)]
            first_error: BaseException | None = None
            try:
                for _k, lg in logs:
                    try:
                        lg.close()
                    except (LogStoreError, OSError) as e:  # the others still close
                        first_error = first_error or e
                try:
                    ckpt.write_checkpoint(os.path.join(self.path, ckpt.RECOVERY_POINT_FILE),
                                          {k: lg.recovery_point for k, lg in logs})
                    ckpt.write_checkpoint(os.path.join(self.path, ckpt.LOG_START_OFFSET_FILE),
                                          {k: lg.log_start_offset for k, lg in logs if lg.log_start_offset > 0})
                except OSError as e:
                    # no marker either: the next open recovers every partition from its first segment
                    raise KafkaStorageError(f"cannot write the checkpoints of {self.path}: {e}") from e
                failed = [f"{k[0]}-{k[1]}" for k, lg in logs if lg.failed]
                if failed:
                    # no clean-shutdown marker: the next open must recover the offline partitions
                    log.error("closing %s without a clean-shutdown marker: partitions %s are offline",
                              self.path, ", ".join(failed))
                else:
                    marker = os.path.join(self.path, CLEAN_SHUTDOWN_FILE)
                    fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o644)
                    os.fsync(fd)
                    os.close(fd)
                    fsync_dir(self.path)
            finally:
                # whatever failed above, the store is closed and the dir lock released
                for _k, lg in logs:
                    if not lg.closed:
                        lg.closed = True
                        for seg in lg.segments.values():
                            try:
                                seg.close()
                            except OSError:
                                pass
                self._closed = True
                self._release_lock()
            if first_error is not None:
                raise first_error

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "LogStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self.topics())

    def __repr__(self) -> str:
        return f"LogStore({self.path!r}, topics={len(self._topics)})"


def _short_uuid() -> str:
    import base64
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def open(path: str, config: Mapping[str, Any] | None = None, *, background: bool = True) -> LogStore:  # noqa: A001
    """Open (creating if needed) the log dir at `path` for exclusive use.

    `config`: topic-config defaults by Kafka name (or their broker `log.*` aliases) and store
    settings (`log.cleaner.*`, `log.retention.check.interval.ms`, ...). A second open of the same
    dir, from this or any process, raises LogDirLockedError at once.
    """
    return LogStore(path, config, background=background)
