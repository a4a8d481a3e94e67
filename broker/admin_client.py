"""A small synchronous Kafka-protocol client for the command-line tools (no kafka-python).

One TCP connection to one broker (this project's broker is a single node, which is also every
partition's leader and every group's coordinator). Requests and responses are encoded with the
`kio` message classes; each API is used at the highest version both `kio` and the broker support,
found with ApiVersions when the connection opens, capped at the versions below (whose request
shapes the builders here know).

Framing (Kafka's): i32 size, then the request header (api key i16, api version i16, correlation
id i32, client id string; plus tagged fields in header v2, used by flexible versions), then the
body. A response is i32 size, correlation id i32 (plus tagged fields in response header v1, for
flexible versions other than ApiVersions), then the body.

`_build` turns a dict into the kio dataclass of the negotiated version: keys the version lacks
are dropped, fields it needs but the dict omits get a neutral zero value, so one call site serves
several versions. Errors: a non-zero error code raises `KafkaError(code, message)`; a broker that
cannot be reached raises `BrokerUnreachable` naming the address tried.

Also here: `GroupMember`, a minimal consumer-group member (JoinGroup / SyncGroup / Heartbeat /
LeaveGroup with the "range" assignor and the consumer protocol's subscription and assignment
byte layouts), used by `console-consumer --group`.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import socket
import struct
import time
import types
import typing
import uuid
from typing import Any, Iterable

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

_I32 = struct.Struct(">i")
_HDR = struct.Struct(">hhi")

API_PRODUCE, API_FETCH, API_LIST_OFFSETS, API_METADATA = 0, 1, 2, 3
API_OFFSET_COMMIT, API_OFFSET_FETCH, API_FIND_COORDINATOR = 8, 9, 10
API_JOIN_GROUP, API_HEARTBEAT, API_LEAVE_GROUP, API_SYNC_GROUP = 11, 12, 13, 14
API_DESCRIBE_GROUPS, API_LIST_GROUPS, API_API_VERSIONS = 15, 16, 18
API_CREATE_TOPICS, API_DELETE_TOPICS, API_DELETE_RECORDS = 19, 20, 21
API_DESCRIBE_CONFIGS, API_ALTER_CONFIGS, API_CREATE_PARTITIONS = 32, 33, 37
API_DELETE_GROUPS, API_OFFSET_DELETE, API_INCREMENTAL_ALTER_CONFIGS = 42, 47, 44

# Highest version used per API: the request shapes built below hold up to these.
MAX_VERSIONS = {
    API_PRODUCE: 9, API_FETCH: 12, API_LIST_OFFSETS: 7, API_METADATA: 12, API_OFFSET_COMMIT: 8,
    API_OFFSET_FETCH: 7, API_FIND_COORDINATOR: 3, API_JOIN_GROUP: 9, API_HEARTBEAT: 4,
    API_LEAVE_GROUP: 5, API_SYNC_GROUP: 5, API_DESCRIBE_GROUPS: 5, API_LIST_GROUPS: 4,
    API_API_VERSIONS: 3, API_CREATE_TOPICS: 7, API_DELETE_TOPICS: 5, API_DELETE_RECORDS: 2,
    API_DESCRIBE_CONFIGS: 4, API_ALTER_CONFIGS: 2, API_CREATE_PARTITIONS: 3, API_DELETE_GROUPS: 2,
    API_OFFSET_DELETE: 0, API_INCREMENTAL_ALTER_CONFIGS: 1,
}
API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
    10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
    15: "DescribeGroups", 16: "ListGroups", 18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics",
    21: "DeleteRecords", 32: "DescribeConfigs", 33: "AlterConfigs", 37: "CreatePartitions",
    42: "DeleteGroups", 44: "IncrementalAlterConfigs", 47: "OffsetDelete",
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


def parse_bootstrap(servers: str) -> list[tuple[str, int]]:
    """"h1:p1,h2:p2" → [(h1, p1), ...]. Raises ValueError naming a bad entry."""
    out = []
    for item in servers.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"invalid bootstrap server {item!r}: expected HOST:PORT")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ValueError("no bootstrap server given")
    return out


# ------------------------------------------------------------------------------- building

def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), True
    return tp, False


def _zero(tp: Any) -> Any:
    tp, optional = _strip_optional(tp)
    if optional:
        return None
    origin = typing.get_origin(tp)
    if origin is tuple:
        return ()
    if isinstance(tp, type):
        if issubclass(tp, datetime.timedelta):
            return datetime.timedelta(0)
        if issubclass(tp, bool):
            return False
        if issubclass(tp, int):
            return 0
        if issubclass(tp, float):
            return 0.0
        if issubclass(tp, str):
            return ""
        if issubclass(tp, bytes):
            return b""
        if issubclass(tp, uuid.UUID):
            return uuid.UUID(int=0)
    return None


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    tp, _ = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_convert(inner, v) for v in value)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return _build(tp, value)
    if isinstance(tp, type):
        if issubclass(tp, datetime.timedelta) and not isinstance(value, datetime.timedelta):
            return datetime.timedelta(milliseconds=value)
        if issubclass(tp, bytes) and isinstance(value, (bytearray, memoryview)):
            return bytes(value)
    return value


def _build(cls: Any, data: dict) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(f.type, data[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            kwargs[f.name] = _zero(f.type)
    return cls(**kwargs)


def _code(v: Any) -> int:
    return int(getattr(v, "value", v) or 0)


def _ms(v: Any) -> int:
    if isinstance(v, datetime.timedelta):
        return int(v.total_seconds() * 1000)
    return int(v)


# ------------------------------------------------------------------------------- the client

class AdminClient:
    """A connection to one broker. Not thread-safe. Use as a context manager."""

    def __init__(self, bootstrap: str, *, client_id: str = "logstore-cli", timeout: float = 10.0):
        self.addresses = parse_bootstrap(bootstrap)
        self.client_id = client_id
        self.timeout = timeout
        self._corr = 0
        self._sock: socket.socket | None = None
        self.address = ""
        self.versions: dict[int, int] = {}
        errors = []
        for host, port in self.addresses:
            try:
                self._sock = socket.create_connection((host, port), timeout=timeout)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.address = f"{host}:{port}"
                break
            except OSError as e:
                errors.append(f"{host}:{port} ({e.strerror or e})")
        if self._sock is None:
            raise BrokerUnreachable(f"cannot connect to broker at {', '.join(errors)}")
        self._negotiate()

    # -- framing -------------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes:
        assert self._sock is not None
        parts = []
        while n:
            try:
                b = self._sock.recv(min(n, 1 << 20))
            except socket.timeout:
                raise BrokerUnreachable(f"broker at {self.address} did not answer within {self.timeout:g}s") from None
            except OSError as e:
                raise BrokerUnreachable(f"connection to broker at {self.address} failed: {e.strerror or e}") from None
            if not b:
                raise BrokerUnreachable(f"broker at {self.address} closed the connection")
            parts.append(b)
            n -= len(b)
        return b"".join(parts)

    def _roundtrip(self, api_key: int, version: int, body: Any, resp_cls: Any, *, timeout: float | None = None,
                   expect_response: bool = True) -> Any:
        assert self._sock is not None
        self._corr += 1
        corr = self._corr
        flexible = bool(getattr(type(body), "__flexible__", False))
        buf = io.BytesIO()
        buf.write(_HDR.pack(api_key, version, corr))
        cid = self.client_id.encode()
        buf.write(struct.pack(">h", len(cid)) + cid)
        if flexible:
            buf.write(b"\x00")  # header tagged fields
        entity_writer(type(body))(buf, body)
        payload = buf.getvalue()
        try:
            self._sock.settimeout(timeout if timeout is not None else self.timeout)
            self._sock.sendall(_I32.pack(len(payload)) + payload)
        except OSError as e:
            raise BrokerUnreachable(f"connection to broker at {self.address} failed: {e.strerror or e}") from None
        if not expect_response:  # Produce with acks=0: the broker sends nothing back
            return None
        (size,) = _I32.unpack(self._recv_exact(4))
        data = self._recv_exact(size)
        (got,) = _I32.unpack_from(data, 0)
        if got != corr:
            raise BrokerUnreachable(f"broker at {self.address} answered correlation id {got}, expected {corr}")
        pos = 4
        if flexible and api_key != API_API_VERSIONS:
            pos = _skip_tags(data, pos)
        try:
            resp, _n = entity_reader(resp_cls)(data, pos)
        except Exception as e:  # kio raises its own types for short or malformed buffers
            raise BrokerUnreachable(f"malformed {API_NAMES.get(api_key, api_key)} v{version} response from the "
                                    f"broker at {self.address}: {type(e).__name__}: {e}") from None
        return resp

    def request(self, api_key: int, data: dict, *, version: int | None = None, timeout: float | None = None,
                expect_response: bool = True) -> Any:
        """Send `data` as the request `api_key` at the negotiated version; returns the response
        (None when `expect_response` is False)."""
        v = self.versions.get(api_key) if version is None else version
        if v is None:
            raise KafkaError(35, f"the broker at {self.address} does not support {API_NAMES.get(api_key, api_key)}")
        body = _build(load_request_schema(api_key, v), data)
        return self._roundtrip(api_key, v, body, load_response_schema(api_key, v), timeout=timeout,
                               expect_response=expect_response)

    def _negotiate(self) -> None:
        for v in (3, 0):
            resp = self.request(API_API_VERSIONS, {"client_software_name": "logstore-cli",
                                                   "client_software_version": "0.1.0"}, version=v)
            code = _code(resp.error_code)
            if code == 35 and v > 0:
                continue
            if code:
                raise KafkaError(code, where=f" (ApiVersions from {self.address})")
            break
        for k in resp.api_keys:
            key = int(k.api_key)
            mine = MAX_VERSIONS.get(key)
            if mine is None or int(k.min_version) > mine:
                continue
            self.versions[key] = min(mine, int(k.max_version))

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- topics ----------------------------------------------------------------------------
    def metadata(self, topics: Iterable[str] | None = None) -> dict[str, Any]:
        """{"brokers": [(id, host, port)], "controller": id, "topics": {name: {"error": code,
        "id": UUID | None, "internal": bool, "partitions": [(p, leader, replicas, isr, error)]}}}"""
        req = {"topics": None if topics is None else [{"name": t} for t in topics],
               "allow_auto_topic_creation": False}
        resp = self.request(API_METADATA, req)
        out: dict[str, Any] = {
            "brokers": [(int(b.node_id), b.host, int(b.port)) for b in resp.brokers],
            "controller": int(getattr(resp, "controller_id", -1)),
            "topics": {},
        }
        for t in resp.topics:
            tid = getattr(t, "topic_id", None)
            parts = sorted((int(p.partition_index), int(p.leader_id), [int(r) for r in p.replica_nodes],
                            [int(r) for r in p.isr_nodes], _code(p.error_code)) for p in t.partitions)
            out["topics"][t.name] = {"error": _code(t.error_code), "id": tid,
                                     "internal": bool(getattr(t, "is_internal", False)), "partitions": parts}
        return out

    def create_topic(self, name: str, partitions: int, replication_factor: int = 1,
                     configs: dict[str, str] | None = None, *, validate_only: bool = False) -> None:
        resp = self.request(API_CREATE_TOPICS, {
            "topics": [{"name": name, "num_partitions": partitions, "replication_factor": replication_factor,
                        "assignments": [], "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()]}],
            "timeout": 30000, "validate_only": validate_only})
        for t in resp.topics:
            if _code(t.error_code):
                raise KafkaError(_code(t.error_code), getattr(t, "error_message", None))

    def delete_topics(self, names: list[str]) -> None:
        resp = self.request(API_DELETE_TOPICS, {"topic_names": names, "timeout": 30000})
        for r in resp.responses:
            if _code(r.error_code):
                raise KafkaError(_code(r.error_code), getattr(r, "error_message", None),
                                 where="" if getattr(r, "error_message", None) else f" (topic {r.name})")

    def create_partitions(self, name: str, count: int) -> None:
        resp = self.request(API_CREATE_PARTITIONS, {
            "topics": [{"name": name, "count": count, "assignments": None}], "timeout": 30000,
            "validate_only": False})
        for r in resp.results:
            if _code(r.error_code):
                raise KafkaError(_code(r.error_code), getattr(r, "error_message", None))

    def describe_configs(self, topic: str, *, synonyms: bool = False) -> list[dict[str, Any]]:
        """Every config of a topic: [{"name", "value", "source" (id), "default", "sensitive",
        "read_only", "synonyms": [(source id, name, value)]}], in the broker's order."""
        resp = self.request(API_DESCRIBE_CONFIGS, {
            "resources": [{"resource_type": RESOURCE_TOPIC, "resource_name": topic, "configuration_keys": None}],
            "include_synonyms": synonyms, "include_documentation": False})
        out = []
        for r in resp.results:
            if _code(r.error_code):
                raise KafkaError(_code(r.error_code), getattr(r, "error_message", None))
            for c in r.configs:
                source = int(getattr(c, "config_source", -1))
                default = bool(getattr(c, "is_default", False)) if source < 0 else source == 5
                if source < 0:
                    source = 5 if default else 1
                out.append({"name": c.name, "value": c.value, "source": source, "default": default,
                            "sensitive": bool(c.is_sensitive), "read_only": bool(c.read_only),
                            "synonyms": [(int(s.source), s.name, s.value) for s in getattr(c, "synonyms", ())]})
        return out

    def alter_configs(self, topic: str, set_: dict[str, str], delete: list[str]) -> None:
        """IncrementalAlterConfigs SET / DELETE on a topic (AlterConfigs with the merged set when
        the broker lacks the incremental API)."""
        if API_INCREMENTAL_ALTER_CONFIGS in self.versions:
            ops = [{"name": k, "config_operation": 0, "value": v} for k, v in set_.items()]
            ops += [{"name": k, "config_operation": 1, "value": None} for k in delete]
            resp = self.request(API_INCREMENTAL_ALTER_CONFIGS, {
                "resources": [{"resource_type": RESOURCE_TOPIC, "resource_name": topic, "configs": ops}],
                "validate_only": False})
        else:
            current = {c["name"]: c["value"] for c in self.describe_configs(topic) if c["source"] == 1}
            current.update(set_)
            for k in delete:
                current.pop(k, None)
            resp = self.request(API_ALTER_CONFIGS, {
                "resources": [{"resource_type": RESOURCE_TOPIC, "resource_name": topic,
                               "configs": [{"name": k, "value": v} for k, v in current.items()]}],
                "validate_only": False})
        for r in resp.responses:
            if _code(r.error_code):
                raise KafkaError(_code(r.error_code), getattr(r, "error_message", None))

    # -- offsets and data ------------------------------------------------------------------
    def list_offsets(self, tps: Iterable[tuple[str, int]], timestamp: int) -> dict[tuple[str, int], int]:
        """Offsets for a timestamp per partition (EARLIEST = -2, LATEST = -1)."""
        by_topic: dict[str, list[int]] = {}
        for t, p in tps:
            by_topic.setdefault(t, []).append(p)
        resp = self.request(API_LIST_OFFSETS, {
            "replica_id": -1, "isolation_level": 0,
            "topics": [{"name": t, "partitions": [{"partition_index": p, "current_leader_epoch": -1,
                                                    "timestamp": timestamp, "max_num_offsets": 1} for p in ps]}
                       for t, ps in by_topic.items()]})
        out = {}
        for t in resp.topics:
            for p in t.partitions:
                if _code(p.error_code):
                    raise KafkaError(_code(p.error_code), where=f" (ListOffsets of {t.name}-{p.partition_index})")
                off = getattr(p, "offset", None)
                if off is None:
                    olds = getattr(p, "old_style_offsets", ())
                    off = olds[0] if olds else -1
                out[(t.name, int(p.partition_index))] = int(off)
        return out

    def produce(self, topic: str, partition: int, batch: bytes, *, acks: int = -1, timeout_ms: int = 30000) -> int:
        """Send record batches to one partition; returns the base offset assigned (-1 for acks=0)."""
        resp = self.request(API_PRODUCE, {
            "transactional_id": None, "acks": acks, "timeout": timeout_ms,
            "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": batch}]}]},
            expect_response=acks != 0)
        if resp is None:
            return -1
        for t in resp.responses:
            for p in t.partition_responses:
                if _code(p.error_code):
                    raise KafkaError(_code(p.error_code), getattr(p, "error_message", None),
                                     where=f" (producing to {topic}-{partition})")
                return int(p.base_offset)
        return -1

    def fetch(self, positions: dict[tuple[str, int], int], *, max_wait_ms: int = 500, min_bytes: int = 1,
              max_bytes: int = 50 << 20, partition_max_bytes: int = 1 << 20) -> dict[tuple[str, int], tuple[int, int, bytes]]:
        """Fetch from each partition at its position: {tp: (error code, high watermark, records bytes)}."""
        by_topic: dict[str, list[dict]] = {}
        for (t, p), off in positions.items():
            by_topic.setdefault(t, []).append({"partition": p, "current_leader_epoch": -1, "fetch_offset": off,
                                               "last_fetched_epoch": -1, "log_start_offset": -1,
                                               "partition_max_bytes": partition_max_bytes})
        resp = self.request(API_FETCH, {
            "cluster_id": None, "replica_id": -1, "max_wait": max_wait_ms, "min_bytes": min_bytes,
            "max_bytes": max_bytes, "isolation_level": 0, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
            "forgotten_topics_data": [], "rack_id": ""}, timeout=self.timeout + max_wait_ms / 1000)
        if _code(getattr(resp, "error_code", 0)):
            raise KafkaError(_code(resp.error_code), where=" (Fetch)")
        out = {}
        for t in resp.responses:
            for p in t.partitions:
                out[(t.topic, int(p.partition_index))] = (_code(p.error_code), int(p.high_watermark),
                                                          bytes(p.records or b""))
        return out

    # -- groups ------------------------------------------------------------------------------
    def find_coordinator(self, group: str, *, retries: int = 20) -> tuple[int, str, int]:
        for _ in range(retries):
            resp = self.request(API_FIND_COORDINATOR, {"key": group, "key_type": 0})
            code = _code(resp.error_code)
            if code in RETRIABLE_COORDINATOR:
                time.sleep(0.1)
                continue
            if code:
                raise KafkaError(code, getattr(resp, "error_message", None))
            return int(resp.node_id), resp.host, int(resp.port)
        raise KafkaError(15, f"no coordinator available for group {group!r}")

    def list_groups(self) -> list[tuple[str, str, str]]:
        """[(group id, protocol type, state)] of every group the broker knows."""
        resp = self.request(API_LIST_GROUPS, {"states_filter": []})
        if _code(resp.error_code):
            raise KafkaError(_code(resp.error_code), where=" (ListGroups)")
        return [(g.group_id, g.protocol_type, getattr(g, "group_state", "")) for g in resp.groups]

    def describe_group(self, group: str) -> dict[str, Any]:
        """{"state", "protocol_type", "protocol", "members": [{"member_id", "client_id",
        "client_host", "assignment": [(topic, partition)]}]}"""
        resp = self.request(API_DESCRIBE_GROUPS, {"groups": [group], "include_authorized_operations": False})
        g = resp.groups[0]
        if _code(g.error_code):
            raise KafkaError(_code(g.error_code), where=f" (describing group {group!r})")
        members = []
        for m in g.members:
            members.append({"member_id": m.member_id, "client_id": m.client_id, "client_host": m.client_host,
                            "assignment": decode_assignment(bytes(m.member_assignment or b""))
                            if g.protocol_type in ("consumer", "") else []})
        return {"state": g.group_state, "protocol_type": g.protocol_type, "protocol": g.protocol_data,
                "members": members}

    def delete_groups(self, groups: list[str]) -> dict[str, int]:
        """{group: error code} (0 = deleted)."""
        resp = self.request(API_DELETE_GROUPS, {"groups_names": groups})
        return {r.group_id: _code(r.error_code) for r in resp.results}

    def offset_fetch(self, group: str, tps: Iterable[tuple[str, int]] | None = None) -> dict[tuple[str, int], int]:
        """Committed offsets of `group` (all when `tps` is None); partitions without one are left out."""
        topics = None
        if tps is not None:
            by_topic: dict[str, list[int]] = {}
            for t, p in tps:
                by_topic.setdefault(t, []).append(p)
            topics = [{"name": t, "partition_indexes": ps} for t, ps in by_topic.items()]
        resp = self.request(API_OFFSET_FETCH, {"group_id": group, "topics": topics, "require_stable": False})
        if _code(getattr(resp, "error_code", 0)):
            raise KafkaError(_code(resp.error_code), where=f" (OffsetFetch of group {group!r})")
        out = {}
        for t in resp.topics:
            for p in t.partitions:
                if _code(p.error_code):
                    raise KafkaError(_code(p.error_code), where=f" (OffsetFetch of {t.name}-{p.partition_index})")
                if int(p.committed_offset) >= 0:
                    out[(t.name, int(p.partition_index))] = int(p.committed_offset)
        return out

    def offset_commit(self, group: str, offsets: dict[tuple[str, int], int], *, generation: int = -1,
                      member_id: str = "") -> None:
        by_topic: dict[str, list[dict]] = {}
        for (t, p), off in offsets.items():
            by_topic.setdefault(t, []).append({"partition_index": p, "committed_offset": off,
                                               "committed_leader_epoch": -1, "committed_metadata": "",
                                               "commit_timestamp": -1})
        resp = self.request(API_OFFSET_COMMIT, {
            "group_id": group, "generation_id_or_member_epoch": generation, "member_id": member_id,
            "group_instance_id": None, "retention_time": -1,
            "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()]})
        for t in resp.topics:
            for p in t.partitions:
                if _code(p.error_code):
                    raise KafkaError(_code(p.error_code), where=f" (committing {t.name}-{p.partition_index} "
                                                                f"for group {group!r})")


# ------------------------------------------------------------------------------- consumer protocol

def _w_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def encode_subscription(topics: list[str]) -> bytes:
    """ConsumerProtocolSubscription v0: version i16, topics [string], user_data bytes (null)."""
    out = struct.pack(">hi", 0, len(topics)) + b"".join(_w_str(t) for t in topics)
    return out + struct.pack(">i", -1)


def decode_subscription(data: bytes) -> list[str]:
    if len(data) < 6:
        return []
    pos = 2
    (n,) = struct.unpack_from(">i", data, pos)
    pos += 4
    topics = []
    for _ in range(max(n, 0)):
        (ln,) = struct.unpack_from(">h", data, pos)
        pos += 2
        topics.append(data[pos:pos + ln].decode())
        pos += ln
    return topics


def encode_assignment(tps: list[tuple[str, int]]) -> bytes:
    """ConsumerProtocolAssignment v0: version i16, [topic string, partitions [i32]], user_data bytes."""
    by_topic: dict[str, list[int]] = {}
    for t, p in tps:
        by_topic.setdefault(t, []).append(p)
    out = bytearray(struct.pack(">hi", 0, len(by_topic)))
    for t, ps in by_topic.items():
        out += _w_str(t) + struct.pack(">i", len(ps)) + b"".join(struct.pack(">i", p) for p in sorted(ps))
    out += struct.pack(">i", -1)
    return bytes(out)


def decode_assignment(data: bytes) -> list[tuple[str, int]]:
    if len(data) < 6:
        return []
    pos = 2
    (n,) = struct.unpack_from(">i", data, pos)
    pos += 4
    out = []
    for _ in range(max(n, 0)):
        (ln,) = struct.unpack_from(">h", data, pos)
        pos += 2
        topic = data[pos:pos + ln].decode()
        pos += ln
        (np_,) = struct.unpack_from(">i", data, pos)
        pos += 4
        for _ in range(max(np_, 0)):
            out.append((topic, struct.unpack_from(">i", data, pos)[0]))
            pos += 4
    return out


def range_assign(members: dict[str, list[str]], partitions: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
    """Kafka's RangeAssignor: per topic, members sorted by id get contiguous ranges, the first
    `n % members` one partition more."""
    out: dict[str, list[tuple[str, int]]] = {m: [] for m in members}
    topics = sorted({t for ts in members.values() for t in ts})
    for t in topics:
        subs = sorted(m for m, ts in members.items() if t in ts)
        n = partitions.get(t, 0)
        if not subs:
            continue
        per, extra = divmod(n, len(subs))
        start = 0
        for i, m in enumerate(subs):
            count = per + (1 if i < extra else 0)
            out[m].extend((t, p) for p in range(start, start + count))
            start += count
    return out


class GroupMember:
    """One member of a consumer group, with the range assignor. `join()` returns this member's
    partitions; `heartbeat()` returns False when the group is rebalancing (join again)."""

    def __init__(self, client: AdminClient, group: str, topics: list[str], *, session_timeout_ms: int = 10000,
                 rebalance_timeout_ms: int = 30000):
        self.client = client
        self.group = group
        self.topics = topics
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.member_id = ""
        self.generation = -1
        self.assignment: list[tuple[str, int]] = []

    def join(self) -> list[tuple[str, int]]:
        self.client.find_coordinator(self.group)
        deadline = time.monotonic() + self.rebalance_timeout_ms / 1000 + 30
        while True:
            if time.monotonic() > deadline:
                raise KafkaError(27, f"could not join group {self.group!r}: rebalance did not finish")
            resp = self.client.request(API_JOIN_GROUP, {
                "group_id": self.group, "session_timeout": self.session_timeout_ms,
                "rebalance_timeout": self.rebalance_timeout_ms, "member_id": self.member_id,
                "group_instance_id": None, "protocol_type": "consumer",
                "protocols": [{"name": "range", "metadata": encode_subscription(self.topics)}], "reason": None},
                timeout=self.rebalance_timeout_ms / 1000 + 10)
            code = _code(resp.error_code)
            if code == MEMBER_ID_REQUIRED:
                self.member_id = resp.member_id
                continue
            if code in (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION):
                self.member_id = ""
                continue
            if code in (REBALANCE_IN_PROGRESS, *RETRIABLE_COORDINATOR):
                time.sleep(0.1)
                continue
            if code:
                raise KafkaError(code, where=f" (JoinGroup {self.group!r})")
            self.member_id = resp.member_id
            self.generation = int(resp.generation_id)
            assignments = []
            if resp.leader == resp.member_id:
                subs = {m.member_id: decode_subscription(bytes(m.metadata)) for m in resp.members}
                wanted = sorted({t for ts in subs.values() for t in ts})
                md = self.client.metadata(wanted)["topics"]
                counts = {t: len(v["partitions"]) for t, v in md.items() if not v["error"]}
                plan = range_assign(subs, counts)
                assignments = [{"member_id": m, "assignment": encode_assignment(tps)} for m, tps in plan.items()]
            sresp = self.client.request(API_SYNC_GROUP, {
                "group_id": self.group, "generation_id": self.generation, "member_id": self.member_id,
                "group_instance_id": None, "protocol_type": "consumer", "protocol_name": "range",
                "assignments": assignments}, timeout=self.rebalance_timeout_ms / 1000 + 10)
            scode = _code(sresp.error_code)
            if scode in (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION):
                continue
            if scode == UNKNOWN_MEMBER_ID:
                self.member_id = ""
                continue
            if scode:
                raise KafkaError(scode, where=f" (SyncGroup {self.group!r})")
            self.assignment = decode_assignment(bytes(sresp.assignment or b""))
            return self.assignment

    def heartbeat(self) -> bool:
        resp = self.client.request(API_HEARTBEAT, {"group_id": self.group, "generation_id": self.generation,
                                                   "member_id": self.member_id, "group_instance_id": None})
        code = _code(resp.error_code)
        if code in (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID):
            if code == UNKNOWN_MEMBER_ID:
                self.member_id = ""
            return False
        if code:
            raise KafkaError(code, where=f" (Heartbeat {self.group!r})")
        return True

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.client.offset_commit(self.group, offsets, generation=self.generation, member_id=self.member_id)

    def leave(self) -> None:
        if not self.member_id:
            return
        try:
            self.client.request(API_LEAVE_GROUP, {"group_id": self.group, "member_id": self.member_id,
                                                  "members": [{"member_id": self.member_id,
                                                               "group_instance_id": None, "reason": None}]})
        finally:
            self.member_id = ""


def _skip_tags(data: bytes, pos: int) -> int:
    def uvarint(p: int) -> tuple[int, int]:
        shift = v = 0
        while True:
            b = data[p]
            p += 1
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v, p
            shift += 7

    n, pos = uvarint(pos)
    for _ in range(n):
        _tag, pos = uvarint(pos)
        size, pos = uvarint(pos)
        pos += size
    return pos


__all__ = ["AdminClient", "GroupMember", "KafkaError", "BrokerUnreachable", "parse_bootstrap", "range_assign",
           "encode_subscription", "decode_subscription", "encode_assignment", "decode_assignment",
           "CONFIG_SOURCES", "EARLIEST", "LATEST"]
