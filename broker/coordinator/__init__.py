"""Consumer groups: the classic group protocol state machine, the consumer group protocol of
KIP-848, and committed offsets.

Modules:
    group        one group's state and its pure helpers (no timers, no I/O)
    coordinator  `GroupCoordinator`: lifecycle, loading, admin views; assembled from
      base         the state its parts share
      rebalance    the state machine's moves and timers, group metadata persistence
      membership   JoinGroup, SyncGroup, Heartbeat, LeaveGroup
      offsets      OffsetCommit, OffsetFetch, OffsetDelete, offsets expiry
      consumer_group  ConsumerGroupHeartbeat / ConsumerGroupDescribe: the KIP-848 consumer
                      group protocol (group metadata in memory only, offsets shared)
    consumer_assignment  its server-side assignors (uniform, range), data model, reconciliation
    config       `CoordinatorConfig` (the broker settings it reads)
    errors       the Kafka error codes it answers
The `__consumer_offsets` record schemas (OffsetCommitKey/Value, GroupMetadataKey/Value) and the
offsets store live in `logstore/groups.py`, since the embedded consumer writes the same records
without a broker; they are re-exported here.
"""

from __future__ import annotations

from logstore.groups import (OFFSETS_TOPIC, GroupMetadataKey, GroupMetadataValue, GroupOffsetStore, MemberMetadata,
                             OffsetAndMetadata, OffsetCommitKey, decode_group_value, decode_key, decode_offset_value,
                             encode_group_key, encode_group_value, encode_offset_key, encode_offset_value,
                             partition_for_group)

from . import errors
from .config import CoordinatorConfig
from .coordinator import GroupCoordinator
from .group import (Group, GroupDescription, GroupState, JoinResult, Member, MemberDescription, SyncResult,
                    parse_subscription_topics)

__all__ = [
    "GroupCoordinator", "CoordinatorConfig", "Group", "GroupState", "Member", "JoinResult", "SyncResult",
    "GroupDescription", "MemberDescription", "parse_subscription_topics", "errors", "OFFSETS_TOPIC",
    "GroupOffsetStore", "OffsetAndMetadata", "OffsetCommitKey", "GroupMetadataKey", "GroupMetadataValue",
    "MemberMetadata", "partition_for_group", "encode_offset_key", "encode_group_key", "decode_key",
    "encode_offset_value", "decode_offset_value", "encode_group_value", "decode_group_value",
]
