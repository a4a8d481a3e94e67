"""Topic (log) and store configuration, by Apache Kafka's names and with Kafka's defaults.

`LogConfig` is the effective configuration of one topic: Kafka's defaults, overlaid by the
store's defaults (what a broker's `log.*` settings set), overlaid by the topic's own overrides.
Values are parsed and validated once; each key is also an attribute with dots turned into
underscores (`cfg.segment_bytes`), which is what the hot paths read.

Invariants: every key in `TOPIC_CONFIGS` has a default; unknown keys raise `InvalidConfigError`
naming the key; a `LogConfig` is immutable, so changing a topic's config swaps in a new object
(readers see either the old or the new one, never a mix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .errors import InvalidConfigError

LONG_MAX = (1 << 63) - 1


INT_MAX = (1 << 31) - 1


def _parse_int(key: str, value: Any, minimum: int | None = None, maximum: int = LONG_MAX) -> int:
    if isinstance(value, bool):
        raise InvalidConfigError(f"invalid value {value!r} for config {key!r}: expected an integer")
    try:
        n = int(str(value).strip())
    except ValueError:
        raise InvalidConfigError(f"invalid value {value!r} for config {key!r}: expected an integer") from None
    if minimum is not None and n < minimum:
        raise InvalidConfigError(f"invalid value {value!r} for config {key!r}: must be at least {minimum}")
    if n > maximum:
        raise InvalidConfigError(f"invalid value {value!r} for config {key!r}: must be at most {maximum}")
    return n


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("true", "false"):
        return s == "true"
    raise InvalidConfigError(f"invalid value {value!r} for config {key!r}: expected true or false")


def _parse_float(key: str, value: Any, lo: float, hi: float) -> float:
    try:
        f = float(str(value).strip())
    except ValueError:
        raise InvalidConfigError(f"invalid value {value!r} for config {key!r}: expected a number") from None
    if not lo <= f <= hi:
        raise InvalidConfigError(f"invalid value {value!r} for config {key!r}: must be in [{lo}, {hi}]")
    return f


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def parse(key: str, value: Any) -> str:
        s = str(value).strip()
        if s not in choices:
            raise InvalidConfigError(
                f"invalid value {value!r} for config {key!r}: must be one of {', '.join(choices)}"
            )
        return s

    return parse


def _cleanup_policy(key: str, value: Any) -> str:
    """Kafka's ValidList.in("compact", "delete"): each element one of those; the empty list is
    valid (neither deletion nor compaction: the log is kept whole), which is what an
    IncrementalAlterConfigs SUBTRACT of the last policy leaves."""
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    if any(p not in ("delete", "compact") for p in parts):
        raise InvalidConfigError(
            f"invalid value {value!r} for config {key!r}: must be delete, compact or compact,delete"
        )
    return ",".join(sorted(set(parts)))


def _string(key: str, value: Any) -> str:
    return str(value)


def _int(minimum: int | None = None, maximum: int = LONG_MAX) -> Callable[[str, Any], int]:
    return lambda key, value: _parse_int(key, value, minimum, maximum)


def _int32(minimum: int | None = None) -> Callable[[str, Any], int]:
    """Kafka's INT-typed configs; these bound file positions, which the indexes store as u32."""
    return _int(minimum, INT_MAX)


@dataclass(frozen=True)
class ConfigDef:
    default: str
    parse: Callable[[str, Any], Any]
    doc: str
    honoured: bool = True  # False: accepted and reported, but has no effect in a single-node store


# Topic configs whose value is a comma-separated list (IncrementalAlterConfigs APPEND / SUBTRACT apply)
LIST_TOPIC_CONFIGS = frozenset({"cleanup.policy", "leader.replication.throttled.replicas",
                                "follower.replication.throttled.replicas"})

# Kafka's topic-level configs (TopicConfig / LogConfig), with Kafka's defaults as strings,
# which is how DescribeConfigs reports them.
TOPIC_CONFIGS: dict[str, ConfigDef] = {
    "cleanup.policy": ConfigDef("delete", _cleanup_policy, "delete, compact, or compact,delete"),
    "compression.type": ConfigDef(
        "producer", _choice("producer", "uncompressed", "none", "gzip", "snappy", "lz4", "zstd"),
        "stored as the producer sent it (recompression is not done)", honoured=False),
    "compression.gzip.level": ConfigDef("-1", _int(-1), "not used: batches are stored as sent", False),
    "compression.lz4.level": ConfigDef("9", _int(1), "not used: batches are stored as sent", False),
    "compression.zstd.level": ConfigDef("3", _int(-131072), "not used: batches are stored as sent", False),
    "delete.retention.ms": ConfigDef("86400000", _int(0), "how long tombstones survive compaction"),
    "file.delete.delay.ms": ConfigDef("60000", _int(0), "delay before a .deleted file is removed"),
    "flush.messages": ConfigDef(str(LONG_MAX), _int(1), "fsync after this many appended records"),
    "flush.ms": ConfigDef(str(LONG_MAX), _int(0), "fsync when the oldest unflushed append is this old"),
    "follower.replication.throttled.replicas": ConfigDef("", _string, "replication only", False),
    "leader.replication.throttled.replicas": ConfigDef("", _string, "replication only", False),
    "index.interval.bytes": ConfigDef("4096", _int32(0), "bytes of log between offset index entries"),
    "local.retention.bytes": ConfigDef("-2", _int(-2), "tiered storage only", False),
    "local.retention.ms": ConfigDef("-2", _int(-2), "tiered storage only", False),
    "max.compaction.lag.ms": ConfigDef(str(LONG_MAX), _int(1), "longest a record stays uncompacted"),
    "max.message.bytes": ConfigDef("1048588", _int32(0), "largest record batch accepted"),
    "message.timestamp.type": ConfigDef("CreateTime", _choice("CreateTime", "LogAppendTime"),
                                        "CreateTime keeps the producer's, LogAppendTime stamps the broker's"),
    "message.timestamp.difference.max.ms": ConfigDef(str(LONG_MAX), _int(0), "deprecated in Kafka", False),
    "message.timestamp.before.max.ms": ConfigDef(str(LONG_MAX), _int(0), "oldest CreateTime accepted"),
    "message.timestamp.after.max.ms": ConfigDef(str(LONG_MAX), _int(0), "newest CreateTime accepted"),
    "min.cleanable.dirty.ratio": ConfigDef("0.5", lambda k, v: _parse_float(k, v, 0.0, 1.0),
                                           "dirty share of a log that makes it cleanable"),
    "min.compaction.lag.ms": ConfigDef("0", _int(0), "youngest a record can be to be compacted"),
    "min.insync.replicas": ConfigDef("1", _int(1), "single node: always satisfied", False),
    "preallocate": ConfigDef("false", _parse_bool, "preallocate segment files", False),
    "remote.storage.enable": ConfigDef("false", _parse_bool, "tiered storage only", False),
    "retention.bytes": ConfigDef("-1", _int(-1), "largest size of a partition before deletion, -1: none"),
    "retention.ms": ConfigDef("604800000", _int(-1), "age after which segments are deleted, -1: none"),
    "segment.bytes": ConfigDef("1073741824", _int32(14), "roll a new segment at this size"),
    "segment.index.bytes": ConfigDef("10485760", _int32(4), "size the index files are preallocated to"),
    "segment.jitter.ms": ConfigDef("0", _int(0), "random jitter subtracted from segment.ms"),
    "segment.ms": ConfigDef("604800000", _int(1), "roll a new segment after this time"),
    "unclean.leader.election.enable": ConfigDef("false", _parse_bool, "replication only", False),
    "message.downconversion.enable": ConfigDef("true", _parse_bool, "removed in Kafka 4", False),
}

# Store-wide settings (a broker's `log.*` keys that are not per topic).
STORE_CONFIGS: dict[str, ConfigDef] = {
    "log.cleaner.enable": ConfigDef("true", _parse_bool, "run the background log cleaner"),
    "log.cleaner.dedupe.buffer.size": ConfigDef("134217728", _int(1024), "memory of the cleaner's key map"),
    "log.cleaner.backoff.ms": ConfigDef("15000", _int(0), "sleep between cleaner passes"),
    "log.retention.check.interval.ms": ConfigDef("300000", _int(1), "how often retention runs"),
    "log.flush.scheduler.interval.ms": ConfigDef("1000", _int(1), "how often flush.ms is checked"),
    "log.flush.offset.checkpoint.interval.ms": ConfigDef("60000", _int(0), "recovery point checkpoints"),
    "log.flush.start.offset.checkpoint.interval.ms": ConfigDef("60000", _int(0), "log start checkpoints"),
    "producer.id.expiration.ms": ConfigDef("86400000", _int(1),
                                           "idle time after which an idempotent producer's state is dropped"),
    "producer.id.expiration.check.interval.ms": ConfigDef("600000", _int(1),
                                                          "how often expired producer ids are removed"),
}

# Broker-level names for topic defaults (server.properties), as Kafka maps them.
BROKER_TOPIC_ALIASES: dict[str, str] = {
    "log.cleanup.policy": "cleanup.policy",
    "log.cleaner.delete.retention.ms": "delete.retention.ms",
    "log.cleaner.min.cleanable.ratio": "min.cleanable.dirty.ratio",
    "log.cleaner.min.compaction.lag.ms": "min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms": "max.compaction.lag.ms",
    "log.segment.delete.delay.ms": "file.delete.delay.ms",
    "log.flush.interval.messages": "flush.messages",
    "log.flush.interval.ms": "flush.ms",
    "log.index.interval.bytes": "index.interval.bytes",
    "log.index.size.max.bytes": "segment.index.bytes",
    "message.max.bytes": "max.message.bytes",
    "log.message.timestamp.type": "message.timestamp.type",
    "log.retention.bytes": "retention.bytes",
    "log.retention.ms": "retention.ms",
    "log.segment.bytes": "segment.bytes",
    "log.roll.ms": "segment.ms",
    "log.roll.jitter.ms": "segment.jitter.ms",
    "compression.type": "compression.type",
    "log.preallocate": "preallocate",
    "min.insync.replicas": "min.insync.replicas",
}


# Kafka's coarser broker names for time defaults: name -> (topic config, rank, ms per unit); of
# several given for one topic config the finer wins (rank 0 first), and the *.ms alias over all.
COARSE_TIME_ALIASES: dict[str, tuple[str, int, int]] = {
    "log.retention.minutes": ("retention.ms", 0, 60_000),
    "log.retention.hours": ("retention.ms", 1, 3_600_000),
    "log.roll.hours": ("segment.ms", 0, 3_600_000),
    "log.roll.jitter.hours": ("segment.jitter.ms", 0, 3_600_000),
}


def parse_topic_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate topic config overrides; returns parsed values. Unknown keys raise, naming the key."""
    parsed: dict[str, Any] = {}
    for key, value in (config or {}).items():
        d = TOPIC_CONFIGS.get(key)
        if d is None:
            raise InvalidConfigError(f"unknown topic config {key!r}")
        if value is None:
            raise InvalidConfigError(f"config {key!r} has no value")
        parsed[key] = d.parse(key, value)
    return parsed


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class LogConfig:
    """Effective configuration of one topic. Immutable; build a new one to change it.

    `overrides` are the topic's own settings (strings, as given); `defaults` the store's.
    Attribute access (`cfg.segment_bytes`) is O(1).
    """

    __slots__ = ("_values", "overrides", "defaults", "__dict__")

    def __init__(self, overrides: Mapping[str, Any] | None = None, defaults: Mapping[str, Any] | None = None):
        values = {k: d.parse(k, d.default) for k, d in TOPIC_CONFIGS.items()}
        values.update(parse_topic_config(defaults))
        values.update(parse_topic_config(overrides))
        self._values = values
        self.overrides = {k: _fmt(v) for k, v in (overrides or {}).items()}
        self.defaults = {k: _fmt(v) for k, v in (defaults or {}).items()}
        for k, v in values.items():
            self.__dict__[k.replace(".", "_")] = v

    def get(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise InvalidConfigError(f"unknown topic config {key!r}") from None

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy.split(",")

    @property
    def delete(self) -> bool:
        return "delete" in self.cleanup_policy.split(",")

    def source(self, key: str) -> str:
        """Where a value comes from: 'topic', 'broker' (store default) or 'default'."""
        if key in self.overrides:
            return "topic"
        if key in self.defaults:
            return "broker"
        return "default"

    def items(self) -> Iterable[tuple[str, str, str]]:
        """(key, value as Kafka prints it, source) for every topic config, sorted by key."""
        for k in sorted(self._values):
            yield k, _fmt(self._values[k]), self.source(k)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "LogConfig":
        return LogConfig(overrides, self.defaults)

    def __repr__(self) -> str:
        return f"LogConfig(overrides={self.overrides!r})"


class StoreConfig:
    """Store-wide settings plus the topic defaults every topic inherits.

    Accepts topic config names, their broker aliases (`log.segment.bytes`), and `STORE_CONFIGS`.
    """

    def __init__(self, config: Mapping[str, Any] | None = None):
        topic_defaults: dict[str, str] = {}
        coarse: dict[str, int] = {}
        store: dict[str, Any] = {k: d.parse(k, d.default) for k, d in STORE_CONFIGS.items()}
        for key, value in (config or {}).items():
            if key in STORE_CONFIGS:
                store[key] = STORE_CONFIGS[key].parse(key, value)
            elif key in TOPIC_CONFIGS:
                topic_defaults[key] = _fmt(value)
            elif key in BROKER_TOPIC_ALIASES:
                topic_defaults[BROKER_TOPIC_ALIASES[key]] = _fmt(value)
            elif key in COARSE_TIME_ALIASES:
                coarse[key] = _parse_int(key, value)
            else:
                raise InvalidConfigError(f"unknown store config {key!r}")
        # Kafka's precedence, whatever the order given: log.retention.ms over .minutes over .hours,
        # log.roll.ms over log.roll.hours (and the same for the jitter)
        for key in sorted(coarse, key=lambda k: COARSE_TIME_ALIASES[k][1]):
            target, _rank, unit = COARSE_TIME_ALIASES[key]
            if target not in topic_defaults:
                v = coarse[key]
                topic_defaults[target] = str(v * unit if v >= 0 else -1)  # Kafka: negative is -1 (never)
        parse_topic_config(topic_defaults)
        self.topic_defaults = topic_defaults
        self.values = store
        self.cleaner_enable: bool = store["log.cleaner.enable"]
        self.dedupe_buffer_size: int = store["log.cleaner.dedupe.buffer.size"]
        self.cleaner_backoff_ms: int = store["log.cleaner.backoff.ms"]
        self.retention_check_interval_ms: int = store["log.retention.check.interval.ms"]
        self.flush_scheduler_interval_ms: int = store["log.flush.scheduler.interval.ms"]
        self.recovery_checkpoint_interval_ms: int = store["log.flush.offset.checkpoint.interval.ms"]
        self.start_offset_checkpoint_interval_ms: int = store["log.flush.start.offset.checkpoint.interval.ms"]
        self.producer_id_expiration_ms: int = store["producer.id.expiration.ms"]
        self.producer_id_expiration_check_interval_ms: int = store["producer.id.expiration.check.interval.ms"]

    def log_config(self, overrides: Mapping[str, Any] | None = None) -> LogConfig:
        return LogConfig(overrides, self.topic_defaults)
