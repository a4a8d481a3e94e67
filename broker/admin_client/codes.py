"""The Kafka protocol's numbers this client uses, and the two errors it raises.

Owns: API keys, the highest version of each API the request builders know (`MAX_VERSIONS`),
the names of APIs and of the error codes the tools print or act on, DescribeConfigs config
sources, ListOffsets' EARLIEST / LATEST, and the exceptions `KafkaError` (the broker answered
a non-zero error code) and `BrokerUnreachable` (no usable connection). Plain data, no I/O, no
third-party imports.

Invariant: a version in `MAX_VERSIONS` is one whose request shape the builders in `client.py`
and `group_member.py` fill in; raise it only together with those builders.
"""

from __future__ import annotations

API_PRODUCE, API_FETCH, API_LIST_OFFSETS, API_METADATA = 0, 1, 2, 3
API_OFFSET_COMMIT, API_OFFSET_FETCH, API_FIND_COORDINATOR = 8, 9, 10
API_JOIN_GROUP, API_HEARTBEAT, API_LEAVE_GROUP, API_SYNC_GROUP = 11, 12, 13, 14
API_DESCRIBE_GROUPS, API_LIST_GROUPS, API_API_VERSIONS = 15, 16, 18
API_CREATE_TOPICS, API_DELETE_TOPICS, API_DELETE_RECORDS = 19, 20, 21
API_DESCRIBE_CONFIGS, API_ALTER_CONFIGS, API_DESCRIBE_LOG_DIRS, API_CREATE_PARTITIONS = 32, 33, 35, 37
API_DELETE_GROUPS, API_OFFSET_DELETE, API_INCREMENTAL_ALTER_CONFIGS = 42, 47, 44
API_CONSUMER_GROUP_DESCRIBE = 69  # KIP-848 consumer-protocol groups

# Highest version used per API: the request shapes built below hold up to these.
MAX_VERSIONS = {
    API_PRODUCE: 9, API_FETCH: 12, API_LIST_OFFSETS: 7, API_METADATA: 12, API_OFFSET_COMMIT: 8,
    API_OFFSET_FETCH: 7, API_FIND_COORDINATOR: 3, API_JOIN_GROUP: 9, API_HEARTBEAT: 4,
    API_LEAVE_GROUP: 5, API_SYNC_GROUP: 5, API_DESCRIBE_GROUPS: 5, API_LIST_GROUPS: 4,
    API_API_VERSIONS: 3, API_CREATE_TOPICS: 7, API_DELETE_TOPICS: 5, API_DELETE_RECORDS: 2,
    API_DESCRIBE_CONFIGS: 4, API_ALTER_CONFIGS: 2, API_DESCRIBE_LOG_DIRS: 4, API_CREATE_PARTITIONS: 3, API_DELETE_GROUPS: 2,
    API_OFFSET_DELETE: 0, API_INCREMENTAL_ALTER_CONFIGS: 1, API_CONSUMER_GROUP_DESCRIBE: 0,
}
API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
    10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
    15: "DescribeGroups", 16: "ListGroups", 18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics",
    21: "DeleteRecords", 32: "DescribeConfigs", 33: "AlterConfigs", 35: "DescribeLogDirs", 37: "CreatePartitions",
    42: "DeleteGroups", 44: "IncrementalAlterConfigs", 47: "OffsetDelete", 69: "ConsumerGroupDescribe",
}

# Kafka error codes the tools name or act on.
ERROR_NAMES = {
    -1: "UNKNOWN_SERVER_ERROR", 1: "OFFSET_OUT_OF_RANGE", 2: "CORRUPT_MESSAGE", 3: "UNKNOWN_TOPIC_OR_PARTITION",
    5: "LEADER_NOT_AVAILABLE", 6: "NOT_LEADER_OR_FOLLOWER", 7: "REQUEST_TIMED_OUT", 10: "MESSAGE_TOO_LARGE",
    14: "COORDINATOR_LOAD_IN_PROGRESS", 15: "COORDINATOR_NOT_AVAILABLE", 16: "NOT_COORDINATOR",
    17: "INVALID_TOPIC_EXCEPTION", 22: "ILLEGAL_GENERATION", 25: "UNKNOWN_MEMBER_ID", 27: "REBALANCE_IN_PROGRESS",
    35: "UNSUPPORTED_VERSION", 36: "TOPIC_ALREADY_EXISTS", 37: "INVALID_PARTITIONS", 38: "INVALID_REPLICATION_FACTOR",
    40: "INVALID_CONFIG", 42: "INVALID_REQUEST", 68: "NON_EMPTY_GROUP", 69: "GROUP_ID_NOT_FOUND",
    79: "MEMBER_ID_REQUIRED", 86: "GROUP_SUBSCRIBED_TO_TOPIC", 87: "INVALID_RECORD",
}
REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, MEMBER_ID_REQUIRED = 27, 22, 25, 79
RETRIABLE_COORDINATOR = (14, 15, 16)

# DescribeConfigs config sources (Kafka's ConfigEntry.ConfigSource ids).
CONFIG_SOURCES = {0: "UNKNOWN", 1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG",
                  3: "DYNAMIC_DEFAULT_BROKER_CONFIG", 4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG",
                  6: "DYNAMIC_BROKER_LOGGER_CONFIG", 7: "CLIENT_METRICS_CONFIG", 8: "GROUP_CONFIG"}
RESOURCE_TOPIC = 2
EARLIEST, LATEST = -2, -1


class KafkaError(Exception):
    """The broker answered with a non-zero error code. `str()` is the broker's message when it
    sent one, else the error's name."""

    def __init__(self, code: int, message: str | None = None, *, where: str = ""):
        self.code = int(code)
        self.name = ERROR_NAMES.get(self.code, f"error code {self.code}")
        self.message = message or ""
        text = message or self.name
        super().__init__(f"{text}{where}")


class BrokerUnreachable(Exception):
    """No connection to the broker (refused, timed out, closed)."""
