"""A small synchronous Kafka-protocol client for the command-line tools (no kafka-python).

One TCP connection to one broker (this project's broker is a single node, which is also every
partition's leader and every group's coordinator). Requests and responses are encoded with the
`kio` message classes; each API is used at the highest version both `kio` and the broker
support, found with ApiVersions when the connection opens, capped at `MAX_VERSIONS`. Errors: a
non-zero error code raises `KafkaError(code, message)`; a broker that cannot be reached raises
`BrokerUnreachable` naming the address tried.

Modules:
    codes              API keys and versions, error codes and names, config sources, the two errors
    connection         `Connection`: socket, framing, ApiVersions negotiation, dict → kio request
    client             `AdminClient(Connection)`: topics, configs, offsets, produce/fetch, groups
    consumer_protocol  subscription / assignment byte layouts and `range_assign` (pure)
    group_member       `GroupMember`: join / sync / heartbeat / commit / leave a consumer group

Importing this package imports `kio` (slow): the CLI imports it only in commands that talk to a
broker. Everything public is importable from `broker.admin_client` itself.
"""

from __future__ import annotations

from .client import AdminClient
from .codes import (API_ALTER_CONFIGS, API_API_VERSIONS, API_CREATE_PARTITIONS, API_CREATE_TOPICS, API_DELETE_GROUPS,
                    API_DELETE_RECORDS, API_DELETE_TOPICS, API_DESCRIBE_CONFIGS, API_DESCRIBE_GROUPS, API_FETCH,
                    API_FIND_COORDINATOR, API_HEARTBEAT, API_INCREMENTAL_ALTER_CONFIGS, API_JOIN_GROUP,
                    API_LEAVE_GROUP, API_LIST_GROUPS, API_LIST_OFFSETS, API_METADATA, API_NAMES, API_OFFSET_COMMIT,
                    API_OFFSET_DELETE, API_OFFSET_FETCH, API_PRODUCE, API_SYNC_GROUP, CONFIG_SOURCES, EARLIEST,
                    ERROR_NAMES, ILLEGAL_GENERATION, LATEST, MAX_VERSIONS, MEMBER_ID_REQUIRED, REBALANCE_IN_PROGRESS,
                    RESOURCE_TOPIC, RETRIABLE_COORDINATOR, UNKNOWN_MEMBER_ID, BrokerUnreachable, KafkaError)
from .connection import Connection, parse_bootstrap
from .consumer_protocol import (decode_assignment, decode_subscription, encode_assignment, encode_subscription,
                                range_assign)
from .group_member import GroupMember

__all__ = ["AdminClient", "GroupMember", "KafkaError", "BrokerUnreachable", "parse_bootstrap", "range_assign",
           "encode_subscription", "decode_subscription", "encode_assignment", "decode_assignment",
           "CONFIG_SOURCES", "EARLIEST", "LATEST", "Connection",
           # the protocol's numbers (codes.py)
           "API_ALTER_CONFIGS", "API_API_VERSIONS", "API_CREATE_PARTITIONS", "API_CREATE_TOPICS", "API_DELETE_GROUPS",
           "API_DELETE_RECORDS", "API_DELETE_TOPICS", "API_DESCRIBE_CONFIGS", "API_DESCRIBE_GROUPS", "API_FETCH",
           "API_FIND_COORDINATOR", "API_HEARTBEAT", "API_INCREMENTAL_ALTER_CONFIGS", "API_JOIN_GROUP",
           "API_LEAVE_GROUP", "API_LIST_GROUPS", "API_LIST_OFFSETS", "API_METADATA", "API_NAMES", "API_OFFSET_COMMIT",
           "API_OFFSET_DELETE", "API_OFFSET_FETCH", "API_PRODUCE", "API_SYNC_GROUP", "ERROR_NAMES",
           "ILLEGAL_GENERATION", "MAX_VERSIONS", "MEMBER_ID_REQUIRED", "REBALANCE_IN_PROGRESS", "RESOURCE_TOPIC",
           "RETRIABLE_COORDINATOR", "UNKNOWN_MEMBER_ID"]
