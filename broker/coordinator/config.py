"""`CoordinatorConfig`: the broker settings the group coordinator reads, with Kafka's defaults.

Field names are Kafka's config names with dots turned into underscores
(`offsets.topic.num.partitions` → `offsets_topic_num_partitions`); `from_mapping` relies on that.
Every field is an int but `fsync_commits` (a bool, not a Kafka setting).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

@dataclass
class CoordinatorConfig:
    """The broker settings the coordinator reads, by Kafka's names (dots → underscores)."""

    offsets_topic_num_partitions: int = 50
    offsets_topic_segment_bytes: int = 104857600
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1800000
    group_max_size: int = 2**31 - 1
    offsets_retention_minutes: int = 10080
    offsets_retention_check_interval_ms: int = 600000
    offset_metadata_max_bytes: int = 4096
    group_consumer_session_timeout_ms: int = 45000  # KIP-848 groups (consumer_group.py)
    group_consumer_heartbeat_interval_ms: int = 5000
    group_consumer_max_size: int = 2**31 - 1
    fsync_commits: bool = False

    @classmethod
    def from_mapping(cls, cfg: Any) -> "CoordinatorConfig":
        """Pick our keys out of a server config: a Mapping by Kafka name, or an object with
        `get(name)` or attributes named with underscores. Missing keys keep Kafka's defaults."""
        kw: dict[str, Any] = {}
        for f in fields(cls):
            dotted = f.name.replace("_", ".")
            val = None
            if isinstance(cfg, Mapping):
                val = cfg.get(dotted, cfg.get(f.name))
            else:
                getter = getattr(cfg, "get", None)
                if callable(getter):
                    try:
                        val = getter(dotted)
                    except (KeyError, LookupError, ValueError):
                        val = None
                if val is None:
                    val = getattr(cfg, f.name, None)
            if val is None:
                continue
            if f.type in ("bool", bool):
                kw[f.name] = val if isinstance(val, bool) else str(val).strip().lower() == "true"
            else:
                kw[f.name] = int(val)
        return cls(**kw)
