"""Configuration (logstore/config.py): Kafka's names and defaults, overrides, and errors that
name the key."""

from __future__ import annotations

import pytest

from logstore.config import TOPIC_CONFIGS, LogConfig, StoreConfig, parse_topic_config
from logstore.errors import InvalidConfigError


def test_kafka_defaults():
    c = LogConfig()
    assert c.segment_bytes == 1 << 30 and c.segment_ms == 7 * 24 * 3600 * 1000
    assert c.segment_index_bytes == 10 * 1024 * 1024 and c.index_interval_bytes == 4096
    assert c.retention_ms == 604800000 and c.retention_bytes == -1
    assert c.max_message_bytes == 1048588 and c.flush_messages == (1 << 63) - 1
    assert c.cleanup_policy == "delete" and c.delete and not c.compact
    assert c.message_timestamp_type == "CreateTime" and c.min_cleanable_dirty_ratio == 0.5
    assert all(c.source(k) == "default" for k in TOPIC_CONFIGS)


def test_empty_cleanup_policy_keeps_the_log_whole():
    """Kafka's cleanup.policy is a list whose elements must be delete or compact; the empty list is
    valid (what SUBTRACT of the last policy leaves): neither retention deletes nor the cleaner runs."""
    c = LogConfig({"cleanup.policy": ""})
    assert c.cleanup_policy == "" and not c.delete and not c.compact
    with pytest.raises(InvalidConfigError, match="cleanup.policy"):
        LogConfig({"cleanup.policy": "compact,shred"})


def test_store_defaults_broker_aliases_and_topic_overrides():
    sc = StoreConfig({"log.segment.bytes": 5000, "log.retention.hours": 2, "flush.messages": 3,
                      "log.cleaner.enable": "false"})
    assert sc.cleaner_enable is False
    c = sc.log_config({"segment.bytes": "6000", "cleanup.policy": "delete,compact"})
    assert c.segment_bytes == 6000 and c.source("segment.bytes") == "topic"
    assert c.retention_ms == 2 * 3600_000 and c.source("retention.ms") == "broker"
    assert c.flush_messages == 3 and c.compact and c.delete
    assert c.cleanup_policy == "compact,delete"
    assert ("segment.bytes", "6000", "topic") in list(c.items())
    assert c.with_overrides({}).segment_bytes == 5000


def test_unknown_keys_are_named():
    with pytest.raises(InvalidConfigError, match="unknown topic config 'segment.size'"):
        LogConfig({"segment.size": 1})
    with pytest.raises(InvalidConfigError, match="unknown store config 'log.dirz'"):
        StoreConfig({"log.dirz": "/tmp"})
    with pytest.raises(InvalidConfigError, match="unknown topic config 'x'"):
        LogConfig().get("x")


@pytest.mark.parametrize("key,value,why", [
    ("segment.bytes", "13", "at least 14"),
    ("segment.bytes", str(1 << 31), "at most 2147483647"),  # Kafka's INT: positions fit the index
    ("segment.index.bytes", "big", "expected an integer"),
    ("max.message.bytes", str(1 << 32), "at most"),
    ("flush.messages", "0", "at least 1"),
    ("retention.ms", "-2", "at least -1"),
    ("cleanup.policy", "shred", "delete, compact or compact,delete"),
    ("message.timestamp.type", "Now", "CreateTime, LogAppendTime"),
    ("min.cleanable.dirty.ratio", "1.5", "[0.0, 1.0]"),
    ("preallocate", "maybe", "true or false"),
    ("segment.ms", True, "expected an integer"),
    ("retention.bytes", None, "has no value"),
])
def test_bad_values_name_key_and_value(key, value, why):
    with pytest.raises(InvalidConfigError) as e:
        parse_topic_config({key: value})
    assert repr(key) in str(e.value) and why in str(e.value)


def test_immutable_values_per_object():
    a = LogConfig({"segment.bytes": 100})
    b = a.with_overrides({"segment.bytes": 200})
    assert (a.segment_bytes, b.segment_bytes) == (100, 200)
    assert a["segment.bytes"] == 100
