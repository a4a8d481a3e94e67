"""`AdminClient`: the Kafka API calls the command-line tools make, over one `Connection`.

Owns: request shapes and response unpacking for topics (Metadata, CreateTopics, DeleteTopics,
CreatePartitions), configs (DescribeConfigs, IncrementalAlterConfigs / AlterConfigs), offsets
and data (ListOffsets, DeleteRecords, Produce, Fetch), log dirs (DescribeLogDirs) and groups
(FindCoordinator, ListGroups, DescribeGroups, ConsumerGroupDescribe, DeleteGroups, OffsetFetch,
OffsetCommit). Results
are plain tuples and dicts, not kio objects.

Invariants: a non-zero error code in a response raises `KafkaError(code, broker's message)`,
except where a method documents that it returns codes (`delete_groups`, `fetch`,
`list_offsets_results`, `delete_records`, `describe_log_dirs`); the request dicts hold only
fields of versions up to `MAX_VERSIONS` (codes.py).
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from .codes import (API_ALTER_CONFIGS, API_CONSUMER_GROUP_DESCRIBE, API_CREATE_PARTITIONS, API_CREATE_TOPICS,
                    API_DELETE_GROUPS, API_DELETE_RECORDS, API_DELETE_TOPICS, API_DESCRIBE_CONFIGS, API_DESCRIBE_LOG_DIRS,
                    API_DESCRIBE_GROUPS, API_FETCH, API_FIND_COORDINATOR, API_INCREMENTAL_ALTER_CONFIGS,
                    API_LIST_GROUPS, API_LIST_OFFSETS, API_METADATA, API_OFFSET_COMMIT, API_OFFSET_FETCH,
                    API_PRODUCE, RESOURCE_TOPIC, RETRIABLE_COORDINATOR, KafkaError)
from .connection import Connection, code_of
from .consumer_protocol import decode_assignment, group_by_topic


class AdminClient(Connection):
    """A connection to one broker with the admin, data and group calls. Not thread-safe. Use as
    a context manager."""

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
                            [int(r) for r in p.isr_nodes], code_of(p.error_code)) for p in t.partitions)
            out["topics"][t.name] = {"error": code_of(t.error_code), "id": tid,
                                     "internal": bool(getattr(t, "is_internal", False)), "partitions": parts}
        return out

    def create_topic(self, name: str, partitions: int, replication_factor: int = 1,
                     configs: dict[str, str] | None = None, *, validate_only: bool = False) -> None:
        resp = self.request(API_CREATE_TOPICS, {
            "topics": [{"name": name, "num_partitions": partitions, "replication_factor": replication_factor,
                        "assignments": [], "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()]}],
            "timeout": 30000, "validate_only": validate_only})
        for t in resp.topics:
            if code_of(t.error_code):
                raise KafkaError(code_of(t.error_code), getattr(t, "error_message", None))

    def delete_topics(self, names: list[str]) -> None:
        resp = self.request(API_DELETE_TOPICS, {"topic_names": names, "timeout": 30000})
        for r in resp.responses:
            if code_of(r.error_code):
                raise KafkaError(code_of(r.error_code), getattr(r, "error_message", None),
                                 where="" if getattr(r, "error_message", None) else f" (topic {r.name})")

    def create_partitions(self, name: str, count: int) -> None:
        resp = self.request(API_CREATE_PARTITIONS, {
            "topics": [{"name": name, "count": count, "assignments": None}], "timeout": 30000,
            "validate_only": False})
        for r in resp.results:
            if code_of(r.error_code):
                raise KafkaError(code_of(r.error_code), getattr(r, "error_message", None))

    def describe_configs(self, topic: str, *, synonyms: bool = False) -> list[dict[str, Any]]:
        """Every config of a topic: [{"name", "value", "source" (id), "default", "sensitive",
        "read_only", "synonyms": [(source id, name, value)]}], in the broker's order."""
        resp = self.request(API_DESCRIBE_CONFIGS, {
            "resources": [{"resource_type": RESOURCE_TOPIC, "resource_name": topic, "configuration_keys": None}],
            "include_synonyms": synonyms, "include_documentation": False})
        out = []
        for r in resp.results:
            if code_of(r.error_code):
                raise KafkaError(code_of(r.error_code), getattr(r, "error_message", None))
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
            if code_of(r.error_code):
                raise KafkaError(code_of(r.error_code), getattr(r, "error_message", None))

    # -- offsets and data ------------------------------------------------------------------
    def list_offsets(self, tps: Iterable[tuple[str, int]], timestamp: int) -> dict[tuple[str, int], int]:
        """Offsets for a timestamp per partition (EARLIEST = -2, LATEST = -1); -1 where none."""
        out = {}
        for (t, p), (code, off) in self.list_offsets_results(tps, timestamp).items():
            if code:
                raise KafkaError(code, where=f" (ListOffsets of {t}-{p})")
            out[(t, p)] = off
        return out

    def list_offsets_results(self, tps: Iterable[tuple[str, int]],
                             timestamp: int) -> dict[tuple[str, int], tuple[int, int]]:
        """ListOffsets for one timestamp (or EARLIEST -2, LATEST -1, MAX_TIMESTAMP -3, ...):
        {tp: (error code, offset)}, offset -1 when no record has a timestamp at or after it."""
        by_topic = group_by_topic(tps)
        resp = self.request(API_LIST_OFFSETS, {
            "replica_id": -1, "isolation_level": 0,
            "topics": [{"name": t, "partitions": [{"partition_index": p, "current_leader_epoch": -1,
                                                    "timestamp": timestamp, "max_num_offsets": 1} for p in ps]}
                       for t, ps in by_topic.items()]})
        out = {}
        for t in resp.topics:
            for p in t.partitions:
                off = getattr(p, "offset", None)
                if off is None:
                    olds = getattr(p, "old_style_offsets", ())
                    off = olds[0] if olds else -1
                out[(t.name, int(p.partition_index))] = (code_of(p.error_code), int(off))
        return out

    def delete_records(self, offsets: dict[tuple[str, int], int], *,
                       timeout_ms: int = 30000) -> dict[tuple[str, int], tuple[int, int]]:
        """DeleteRecords: move each partition's log start offset to its offset (-1: the high
        watermark). {tp: (error code, new low watermark)}; a partition the broker did not answer
        for is UNKNOWN_SERVER_ERROR (-1)."""
        by_topic: dict[str, list[dict]] = {}
        for (t, p), off in offsets.items():
            by_topic.setdefault(t, []).append({"partition_index": p, "offset": off})
        resp = self.request(API_DELETE_RECORDS, {
            "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()], "timeout": timeout_ms},
            timeout=self.timeout + timeout_ms / 1000)
        got = {(t.name, int(p.partition_index)): (code_of(p.error_code), int(p.low_watermark))
               for t in resp.topics for p in t.partitions}
        return {tp: got.get(tp, (-1, -1)) for tp in offsets}

    # -- log dirs ----------------------------------------------------------------------------
    def describe_log_dirs(self, topics: dict[str, list[int]] | None = None) -> list[dict[str, Any]]:
        """DescribeLogDirs of this broker (`topics` None: every partition): [{"log_dir", "error"
        (code), "total_bytes", "usable_bytes" (-1 before v4), "partitions": [(topic, partition,
        size, offset lag, is future)]}]. Raises KafkaError(UNSUPPORTED_VERSION) if the broker
        lacks the API, or the response's top-level error."""
        req = {"topics": None if topics is None else [{"topic": t, "partitions": ps} for t, ps in topics.items()]}
        resp = self.request(API_DESCRIBE_LOG_DIRS, req)
        if code_of(getattr(resp, "error_code", 0)):
            raise KafkaError(code_of(resp.error_code), where=" (DescribeLogDirs)")
        return [{"log_dir": r.log_dir, "error": code_of(r.error_code),
                 "total_bytes": int(getattr(r, "total_bytes", -1)), "usable_bytes": int(getattr(r, "usable_bytes", -1)),
                 "partitions": [(t.name, int(p.partition_index), int(p.partition_size), int(p.offset_lag),
                                 bool(p.is_future_key)) for t in r.topics for p in t.partitions]}
                for r in resp.results]

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
                if code_of(p.error_code):
                    raise KafkaError(code_of(p.error_code), getattr(p, "error_message", None),
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
        if code_of(getattr(resp, "error_code", 0)):
            raise KafkaError(code_of(resp.error_code), where=" (Fetch)")
        out = {}
        for t in resp.responses:
            for p in t.partitions:
                out[(t.topic, int(p.partition_index))] = (code_of(p.error_code), int(p.high_watermark),
                                                          bytes(p.records or b""))
        return out

    # -- groups ------------------------------------------------------------------------------
    def find_coordinator(self, group: str, *, retries: int = 20) -> tuple[int, str, int]:
        for _ in range(retries):
            resp = self.request(API_FIND_COORDINATOR, {"key": group, "key_type": 0})
            code = code_of(resp.error_code)
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
        if code_of(resp.error_code):
            raise KafkaError(code_of(resp.error_code), where=" (ListGroups)")
        return [(g.group_id, g.protocol_type, getattr(g, "group_state", "")) for g in resp.groups]

    def describe_group(self, group: str) -> dict[str, Any]:
        """{"state", "protocol_type", "protocol", "members": [{"member_id", "client_id",
        "client_host", "assignment": [(topic, partition)]}]}"""
        resp = self.request(API_DESCRIBE_GROUPS, {"groups": [group], "include_authorized_operations": False})
        g = resp.groups[0]
        if code_of(g.error_code):
            raise KafkaError(code_of(g.error_code), where=f" (describing group {group!r})")
        members = []
        for m in g.members:
            members.append({"member_id": m.member_id, "client_id": m.client_id, "client_host": m.client_host,
                            "assignment": decode_assignment(bytes(m.member_assignment or b""))
                            if g.protocol_type in ("consumer", "") else []})
        return {"state": g.group_state, "protocol_type": g.protocol_type, "protocol": g.protocol_data,
                "members": members}

    def consumer_group_describe(self, group: str) -> dict[str, Any] | None:
        """ConsumerGroupDescribe (API 69) of a KIP-848 consumer-protocol group, None when the
        broker does not know it as one (GROUP_ID_NOT_FOUND: no such group, or a classic group).
        {"state", "group_epoch", "assignment_epoch", "assignor", "members": [{"member_id",
        "group_instance_id", "client_id", "client_host", "member_epoch", "assignment",
        "target_assignment": [(topic, partition)]}]}; topics are named from the response's
        topic_name, else from Metadata's topic ids."""
        resp = self.request(API_CONSUMER_GROUP_DESCRIBE, {"group_ids": [group], "include_authorized_operations": False})
        g = resp.groups[0]
        code = code_of(g.error_code)
        if code == 69:  # GROUP_ID_NOT_FOUND
            return None
        if code:
            raise KafkaError(code, getattr(g, "error_message", None), where=f" (describing group {group!r})")
        by_id: dict[Any, str] | None = None

        def tps(assignment: Any) -> list[tuple[str, int]]:
            nonlocal by_id
            out = []
            for t in getattr(assignment, "topic_partitions", None) or ():
                name = getattr(t, "topic_name", None) or ""
                if not name:
                    if by_id is None:
                        by_id = {v["id"]: k for k, v in self.metadata()["topics"].items() if v["id"] is not None}
                    name = by_id.get(t.topic_id, str(t.topic_id))
                out += [(name, int(p)) for p in t.partitions]
            return sorted(out)

        members = [{"member_id": m.member_id, "group_instance_id": m.instance_id, "client_id": m.client_id,
                    "client_host": m.client_host, "member_epoch": int(m.member_epoch),
                    "assignment": tps(m.assignment), "target_assignment": tps(m.target_assignment)}
                   for m in g.members]
        return {"state": g.group_state, "group_epoch": int(g.group_epoch), "assignment_epoch": int(g.assignment_epoch),
                "assignor": g.assignor_name or "", "members": members}

    def delete_groups(self, groups: list[str]) -> dict[str, int]:
        """{group: error code} (0 = deleted)."""
        resp = self.request(API_DELETE_GROUPS, {"groups_names": groups})
        return {r.group_id: code_of(r.error_code) for r in resp.results}

    def offset_fetch(self, group: str, tps: Iterable[tuple[str, int]] | None = None) -> dict[tuple[str, int], int]:
        """Committed offsets of `group` (all when `tps` is None); partitions without one are left out."""
        topics = None
        if tps is not None:
            topics = [{"name": t, "partition_indexes": ps} for t, ps in group_by_topic(tps).items()]
        resp = self.request(API_OFFSET_FETCH, {"group_id": group, "topics": topics, "require_stable": False})
        if code_of(getattr(resp, "error_code", 0)):
            raise KafkaError(code_of(resp.error_code), where=f" (OffsetFetch of group {group!r})")
        out = {}
        for t in resp.topics:
            for p in t.partitions:
                if code_of(p.error_code):
                    raise KafkaError(code_of(p.error_code), where=f" (OffsetFetch of {t.name}-{p.partition_index})")
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
                if code_of(p.error_code):
                    raise KafkaError(code_of(p.error_code), where=f" (committing {t.name}-{p.partition_index} "
                                                                f"for group {group!r})")
