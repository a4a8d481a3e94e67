"""Broker configuration: `server.properties` (Kafka's key names) plus `--override key=value`.

Owns: the list of broker keys we understand, their Kafka defaults and parsing; which keys are
broker-level defaults for topic configs (`log.segment.bytes` → `segment.bytes`, ...), handed to
`logstore.open(path, config=...)`; and the Kafka keys that mean nothing for a single-process
broker (`process.roles`, `num.network.threads`, ...), accepted with a log line.

Invariant: an unknown key is an error naming the key (`ConfigError`), never silently ignored.
`BrokerConfig` is a read-only Mapping from Kafka key to parsed value, with every known key present.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from logstore.config import BROKER_TOPIC_ALIASES, COARSE_TIME_ALIASES, STORE_CONFIGS, TOPIC_CONFIGS

from .properties import read_properties as _read_java_properties

log = logging.getLogger("broker.config")

INT32_MAX = 2**31 - 1


class ConfigError(ValueError):
    """A bad or unknown broker setting; the message names the key."""


def _int(lo: int | None = None, hi: int = 2**63 - 1) -> Callable[[str, str], int]:
    def parse(key: str, value: str) -> int:
        try:
            v = int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{key}: {value!r} is not an integer") from None
        if (lo is not None and v < lo) or v > hi:
            raise ConfigError(f"{key}: {v} is out of range [{lo}, {hi}]")
        return v
    return parse


def _bool(key: str, value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("true", "false"):
        return v == "true"
    raise ConfigError(f"{key}: {value!r} is not true or false")


def _str(key: str, value: str) -> str:
    return str(value).strip()


@dataclass(frozen=True)
class Listener:
    name: str
    host: str
    port: int


def parse_listeners(key: str, value: str) -> list[Listener]:
    out = []
    for item in (s.strip() for s in str(value).split(",")):
        if not item:
            continue
        if "://" not in item:
            raise ConfigError(f"{key}: {item!r} is not NAME://HOST:PORT")
        name, rest = item.split("://", 1)
        try:
            u = urlsplit("//" + rest)
            port = u.port
        except ValueError:
            raise ConfigError(f"{key}: {item!r} has a bad port") from None
        if port is None:
            raise ConfigError(f"{key}: {item!r} has no port")
        out.append(Listener(name.upper(), u.hostname or "", port))
    if not out:
        raise ConfigError(f"{key}: no listener given")
    return out


# broker key → (default as Kafka writes it, parser)
BROKER_KEYS: dict[str, tuple[str | None, Callable[[str, str], Any]]] = {
    "listeners": ("PLAINTEXT://127.0.0.1:9092", parse_listeners),
    "advertised.listeners": (None, parse_listeners),
    "log.dirs": ("./data", _str),
    "log.dir": (None, _str),
    "node.id": (None, _int(-1, INT32_MAX)),
    "broker.id": (None, _int(-1, INT32_MAX)),
    "num.partitions": ("1", _int(1, 100_000)),
    "default.replication.factor": ("1", _int(1, 1)),
    "auto.create.topics.enable": ("true", _bool),
    "delete.topic.enable": ("true", _bool),
    "offsets.topic.num.partitions": ("50", _int(1, 100_000)),
    "offsets.topic.replication.factor": ("1", _int(1, 32767)),
    "offsets.topic.segment.bytes": ("104857600", _int(1)),
    "offsets.retention.minutes": ("10080", _int(1)),
    "offsets.retention.check.interval.ms": ("600000", _int(1)),
    "offset.metadata.max.bytes": ("4096", _int(0)),
    "group.initial.rebalance.delay.ms": ("3000", _int(0)),
    "group.min.session.timeout.ms": ("6000", _int(0)),
    "group.max.session.timeout.ms": ("1800000", _int(0)),
    "group.max.size": (str(INT32_MAX), _int(1)),
    "group.consumer.session.timeout.ms": ("45000", _int(1)),
    "group.consumer.heartbeat.interval.ms": ("5000", _int(1)),
    "group.consumer.max.size": (str(INT32_MAX), _int(1)),
    "socket.request.max.bytes": ("104857600", _int(1, INT32_MAX)),
    "fetch.max.bytes": ("57671680", _int(1024, INT32_MAX)),
    "connections.max.idle.ms": ("600000", _int(-1)),
    "cluster.id": (None, _str),
    "transaction.state.log.replication.factor": ("1", _int(1, 32767)),
    "transaction.state.log.min.isr": ("1", _int(1, 32767)),
}

# Kafka keys that have no meaning for one process on one log dir: accepted, logged, ignored.
IGNORED_KEYS = frozenset({
    "process.roles", "controller.quorum.voters", "controller.quorum.bootstrap.servers",
    "controller.listener.names", "inter.broker.listener.name", "listener.security.protocol.map",
    "num.network.threads", "num.io.threads", "num.replica.fetchers", "num.recovery.threads.per.data.dir",
    "socket.send.buffer.bytes", "socket.receive.buffer.bytes", "queued.max.requests",
    "log.cleaner.threads", "log.cleaner.io.max.bytes.per.second", "log.cleaner.io.buffer.size",
    "metadata.log.dir", "group.coordinator.rebalance.protocols", "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr", "auto.leader.rebalance.enable", "replica.lag.time.max.ms",
    "unclean.leader.election.enable", "zookeeper.connection.timeout.ms", "confluent.support.metrics.enable",
    "transaction.state.log.num.partitions",
})

# Broker keys handed to logstore as store / topic-default settings (validated by logstore).
STORE_KEYS = frozenset(STORE_CONFIGS) | frozenset(BROKER_TOPIC_ALIASES) | frozenset(COARSE_TIME_ALIASES)


def read_properties(path: str) -> dict[str, str]:
    """`server.properties` as Kafka reads it (Java `.properties`, broker/properties.py), values
    trimmed as Kafka's ConfigDef trims them."""
    try:
        props = _read_java_properties(path)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if "" in props:
        raise ConfigError(f"{path}: a line has a value but no key: {props['']!r}")
    return {k: v.strip() for k, v in props.items()}


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"--override {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


class BrokerConfig(Mapping):
    """Parsed broker settings. `cfg["num.partitions"]`, `cfg.get(key)`, plus convenience attributes."""

    def __init__(self, settings: Mapping[str, Any] | None = None):
        raw = {str(k): str(v) if not isinstance(v, bool) else str(v).lower() for k, v in (settings or {}).items()}
        values: dict[str, Any] = {}
        store: dict[str, str] = {}
        self.ignored: list[str] = []
        for key, value in raw.items():
            if key in BROKER_KEYS:
                values[key] = BROKER_KEYS[key][1](key, value)
            elif key in STORE_KEYS:
                store[key] = value
            elif key in IGNORED_KEYS:
                self.ignored.append(key)
            else:
                raise ConfigError(f"unknown broker config {key!r}")
        for key, (default, parse) in BROKER_KEYS.items():
            if key not in values:
                values[key] = None if default is None else parse(key, default)
        # validate the store keys now, so a bad value is reported at start-up naming the key; a
        # broker-level alias (log.retention.ms) is checked under the name the user gave
        for key, value in store.items():
            alias = BROKER_TOPIC_ALIASES.get(key)
            if alias is not None and alias in TOPIC_CONFIGS:
                try:
                    TOPIC_CONFIGS[alias].parse(key, value)
                except Exception as e:
                    raise ConfigError(str(e)) from None
        try:
            from logstore.config import StoreConfig
            StoreConfig(store)
        except Exception as e:
            raise ConfigError(str(e)) from None
        self._values = values
        self.store_config = store
        self.raw = raw
        self.node_id: int = values["node.id"] if values["node.id"] is not None else (
            values["broker.id"] if values["broker.id"] is not None else 0)
        values["node.id"] = self.node_id
        self.log_dir: str = (values["log.dirs"] if "log.dirs" in raw or values["log.dir"] is None
                             else values["log.dir"]).split(",")[0].strip()
        if "," in values["log.dirs"]:
            log.warning("log.dirs lists several directories; only %s is used", self.log_dir)
        self.listener: Listener = values["listeners"][0]
        adv = values["advertised.listeners"]
        self.advertised: Listener | None = adv[0] if adv else None

    @classmethod
    def load(cls, path: str | None = None, overrides: Mapping[str, str] | None = None) -> "BrokerConfig":
        settings: dict[str, str] = {}
        if path:
            if not os.path.exists(path):
                raise ConfigError(f"config file {path} does not exist")
            settings.update(read_properties(path))
        settings.update(overrides or {})
        return cls(settings)

    def log_ignored(self) -> None:
        for key in self.ignored:
            log.info("config %s has no effect on a single-process broker; ignored", key)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def topic_default(self, name: str) -> str | None:
        """The broker-level default (string) for topic config `name`, if set here."""
        for bkey, tkey in BROKER_TOPIC_ALIASES.items():
            if tkey == name and bkey in self.store_config:
                return self.store_config[bkey]
        return None

    def __repr__(self) -> str:
        return f"BrokerConfig({self.raw!r})"


__all__ = ["BrokerConfig", "ConfigError", "Listener", "read_properties", "parse_overrides", "TOPIC_CONFIGS"]
