"""The admin operations of `topics`, `configs`, `consumer-groups`, `get-offsets`, `delete-records`
and `log-dirs`, over a broker or on a log dir.

Owns: `Backend`, the operations those tools need, and its two implementations: `NetBackend`
(through `broker.admin_client.AdminClient`, for --bootstrap-server) and `DirBackend` (a log dir
opened in-process with `logstore.open`, for --data-dir); `open_backend` picks one from the
arguments. The tools print what these return, so both implementations return the same shapes.

Invariants: a missing topic raises `ToolError` with Kafka's wording; `DirBackend` holds the log
dir's lock (a dir a broker holds is refused with a hint) and never starts background threads;
a backend must be closed. Neither `logstore` nor `kio` is imported until a backend is opened.
"""

from __future__ import annotations

import argparse
import os
import typing
from typing import Any, Protocol

from .common import ToolError, target


class TopicDesc(typing.NamedTuple):
    name: str
    topic_id: Any
    partitions: list  # [(partition, leader, replicas, isr)]
    configs: list  # [(key, value)] that are not defaults


class GroupInfo(typing.NamedTuple):
    """A group as DescribeGroups (a classic group) or ConsumerGroupDescribe (a KIP-848
    consumer-protocol group) shows it. `state` is "Dead" when the group does not exist;
    `protocol` is the assignment strategy ("" when there is none, e.g. an Empty classic group;
    the server assignor, e.g. "uniform", for a consumer group); `coordinator` is (node id, host,
    port), None on a log dir; each member is a dict with member_id, group_instance_id (or None),
    client_id, client_host and assignment [(topic, partition)], for a consumer group also
    member_epoch and target_assignment. `group_type` is "classic" or "consumer"; a consumer
    group also has its `group_epoch` and `assignment_epoch` (None for a classic group)."""
    state: str
    protocol: str
    coordinator: tuple[int, str, int] | None
    members: list
    group_type: str = "classic"
    group_epoch: int | None = None
    assignment_epoch: int | None = None


# Kafka's GroupState names, by lower-cased name (a broker may answer in any case)
_STATE_NAMES = {s.lower(): s for s in ("PreparingRebalance", "CompletingRebalance", "Stable", "Dead", "Empty",
                                       "Assigning", "Reconciling")}


class Backend(Protocol):
    """What the admin tools ask of a broker or a log dir. Groups: `describe_group` returns
    (state, members, committed offsets), state "Dead" when the group does not exist; codes are
    Kafka error codes (0 = done). `delete_offsets` returns (group-level code, {partition: code})."""

    def close(self) -> None: ...
    def list_topics(self) -> list[str]: ...
    def describe_topics(self, names: list[str]) -> list[TopicDesc]: ...
    def create_topic(self, name: str, partitions: int, rf: int, configs: dict[str, str]) -> None: ...  # -1: default
    def alter_partitions(self, name: str, count: int) -> None: ...
    def delete_topic(self, name: str) -> None: ...
    def topic_configs(self, name: str) -> list[dict[str, Any]]: ...
    def alter_configs(self, name: str, set_: dict[str, str], delete: list[str]) -> None: ...
    def list_groups(self) -> list[str]: ...
    def list_group_states(self) -> list[tuple[str, str]]: ...
    def group_info(self, group: str, *, coordinator: bool = True) -> GroupInfo: ...
    def describe_group(self, group: str) -> tuple[str, list[dict[str, Any]], dict[tuple[str, int], int]]: ...
    def delete_offsets(self, group: str, tps: list[tuple[str, int]]) -> tuple[int, dict[tuple[str, int], int]]: ...
    def end_offsets(self, tps: list[tuple[str, int]], which: int) -> dict[tuple[str, int], int]: ...
    def describe_partitions(self, topic: str) -> list: ...
    def delete_group(self, group: str) -> int: ...
    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int]) -> None: ...
    # offsets and log dirs (offset_tools.py): per-partition results are (Kafka error code, value)
    def partitions_by_topic(self, internal: bool) -> dict[str, list[int]]: ...
    def list_offsets(self, tps: list[tuple[str, int]], timestamp: int) -> dict[tuple[str, int], tuple[int, int]]: ...
    def delete_records(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], tuple[int, int]]: ...
    def node_ids(self) -> list[int]: ...
    def describe_log_dirs(self, node_ids: list[int]) -> dict[int, list[dict[str, Any]]]: ...


def topic_partitions(client: Any, topic: str) -> list:
    """A topic's partitions from the broker's Metadata: [(partition, leader, replicas, isr, error)]."""
    t = client.metadata([topic])["topics"].get(topic)
    if t is None or t["error"] == 3:
        raise ToolError(f"Topic '{topic}' does not exist")
    return t["partitions"]


class NetBackend:
    """Admin operations through a broker."""

    def __init__(self, address: str, timeout: float, *, client_id: str = "logstore-cli"):
        from ..admin_client import AdminClient
        self.client = AdminClient(address, timeout=timeout, client_id=client_id)

    def close(self) -> None:
        self.client.close()

    def list_topics(self) -> list[str]:
        return sorted(self.client.metadata()["topics"])

    def describe_topics(self, names: list[str]) -> list[TopicDesc]:
        md = self.client.metadata(names)["topics"]
        out = []
        for name in names:
            t = md.get(name)
            if t is None or t["error"] == 3:
                raise ToolError(f"Topic '{name}' does not exist as expected")
            if t["error"]:
                from ..admin_client import KafkaError
                raise KafkaError(t["error"], where=f" (metadata of topic {name})")
            configs = sorted((c["name"], c["value"]) for c in self.client.describe_configs(name)
                             if not c["default"] and c["value"] is not None)
            parts = [(p, leader, replicas, isr) for p, leader, replicas, isr, _err in t["partitions"]]
            out.append(TopicDesc(name, t["id"], parts, configs))
        return out

    def create_topic(self, name: str, partitions: int, rf: int, configs: dict[str, str]) -> None:
        self.client.create_topic(name, partitions, rf, configs)

    def alter_partitions(self, name: str, count: int) -> None:
        self.client.create_partitions(name, count)

    def delete_topic(self, name: str) -> None:
        self.client.delete_topics([name])

    def topic_configs(self, name: str) -> list[dict[str, Any]]:
        from ..admin_client import KafkaError
        try:
            return self.client.describe_configs(name, synonyms=True)
        except KafkaError as e:
            if e.code == 3:
                raise ToolError(f"Topic '{name}' does not exist") from None
            raise

    def alter_configs(self, name: str, set_: dict[str, str], delete: list[str]) -> None:
        self.client.alter_configs(name, set_, delete)

    # groups
    def list_groups(self) -> list[str]:
        return sorted(g for g, ptype, _state in self.client.list_groups() if ptype in ("consumer", ""))

    def list_group_states(self) -> list[tuple[str, str]]:
        return sorted((g, state) for g, ptype, state in self.client.list_groups() if ptype in ("consumer", ""))

    def group_info(self, group: str, *, coordinator: bool = True) -> GroupInfo:
        from ..admin_client import API_DESCRIBE_GROUPS, KafkaError, decode_assignment
        from ..admin_client.connection import code_of
        resp = self.client.request(API_DESCRIBE_GROUPS, {"groups": [group], "include_authorized_operations": False})
        g = resp.groups[0]
        code = code_of(g.error_code)
        if code == 69 or (not code and g.group_state == "Dead"):
            # not a classic group (GROUP_ID_NOT_FOUND from DescribeGroups v6+, Dead before): it may
            # be a consumer-protocol group, which only ConsumerGroupDescribe shows (as Kafka 4's Admin)
            return self._consumer_group_info(group, coordinator)
        if code:
            raise KafkaError(code, where=f" (describing group {group!r})")
        consumer = g.protocol_type in ("consumer", "")
        members = [{"member_id": m.member_id, "group_instance_id": m.group_instance_id, "client_id": m.client_id,
                    "client_host": m.client_host,
                    "assignment": decode_assignment(bytes(m.member_assignment or b"")) if consumer else []}
                   for m in g.members]
        coord = self.client.find_coordinator(group) if coordinator and g.group_state != "Dead" else None
        return GroupInfo(g.group_state, g.protocol_data or "", coord, members)

    def _consumer_group_info(self, group: str, coordinator: bool) -> GroupInfo:
        """A KIP-848 group by ConsumerGroupDescribe; Dead when the broker has no such API or group."""
        from ..admin_client.codes import API_CONSUMER_GROUP_DESCRIBE
        if API_CONSUMER_GROUP_DESCRIBE not in self.client.versions:
            return GroupInfo("Dead", "", None, [])
        d = self.client.consumer_group_describe(group)
        if d is None:
            return GroupInfo("Dead", "", None, [])
        state = _STATE_NAMES.get(str(d["state"]).lower(), d["state"])
        coord = self.client.find_coordinator(group) if coordinator and state != "Dead" else None
        return GroupInfo(state, d["assignor"], coord, d["members"], "consumer", d["group_epoch"],
                         d["assignment_epoch"])

    def describe_group(self, group: str) -> tuple[str, list[dict[str, Any]], dict[tuple[str, int], int]]:
        info = self.group_info(group, coordinator=False)
        if info.state == "Dead":
            return "Dead", [], {}
        return info.state, info.members, self.client.offset_fetch(group)

    def delete_offsets(self, group: str, tps: list[tuple[str, int]]) -> tuple[int, dict[tuple[str, int], int]]:
        import time

        from ..admin_client import API_OFFSET_DELETE, RETRIABLE_COORDINATOR
        from ..admin_client.connection import code_of
        from ..admin_client.consumer_protocol import group_by_topic
        topics = [{"name": t, "partitions": [{"partition_index": p} for p in ps]}
                  for t, ps in group_by_topic(tps).items()]
        for _ in range(20):
            resp = self.client.request(API_OFFSET_DELETE, {"group_id": group, "topics": topics})
            top = code_of(resp.error_code)
            if top not in RETRIABLE_COORDINATOR:
                break
            time.sleep(0.1)
        return top, {(t.name, int(p.partition_index)): code_of(p.error_code) for t in resp.topics for p in t.partitions}

    def end_offsets(self, tps: list[tuple[str, int]], which: int) -> dict[tuple[str, int], int]:
        return self.client.list_offsets(tps, which) if tps else {}

    def describe_partitions(self, topic: str) -> list:
        return topic_partitions(self.client, topic)

    def delete_group(self, group: str) -> int:
        return self.client.delete_groups([group]).get(group, 0)

    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        self.client.offset_commit(group, offsets)

    # offsets and log dirs
    def partitions_by_topic(self, internal: bool) -> dict[str, list[int]]:
        """Every topic (internal ones only if `internal`, by Metadata's is_internal) and its partitions."""
        return {name: [p[0] for p in t["partitions"]] for name, t in self.client.metadata()["topics"].items()
                if not t["error"] and (internal or not t["internal"])}

    def list_offsets(self, tps: list[tuple[str, int]], timestamp: int) -> dict[tuple[str, int], tuple[int, int]]:
        return self.client.list_offsets_results(tps, timestamp) if tps else {}

    def delete_records(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], tuple[int, int]]:
        return self.client.delete_records(offsets) if offsets else {}

    def node_ids(self) -> list[int]:
        return sorted(b[0] for b in self.client.metadata([])["brokers"])

    def describe_log_dirs(self, node_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """DescribeLogDirs of each broker in `node_ids`, asked over this connection when the
        cluster is this one broker, else over a connection to each broker's advertised address."""
        from ..admin_client import AdminClient
        brokers = {b[0]: b for b in self.client.metadata([])["brokers"]}
        out: dict[int, list[dict[str, Any]]] = {}
        for node in node_ids:
            if len(brokers) == 1:
                out[node] = self.client.describe_log_dirs()
                continue
            _, host, port = brokers[node]
            with AdminClient(f"{host}:{port}", timeout=self.client.timeout, client_id=self.client.client_id) as c:
                out[node] = c.describe_log_dirs()
        return out


class DirBackend:
    """Admin operations on a log dir opened directly (exclusive: fails if a broker holds it)."""

    def __init__(self, path: str, *, create: bool = False):
        import logstore
        if not create and not os.path.isdir(path):
            raise ToolError(f"log dir {path} does not exist")
        try:
            self.store = logstore.open(path, background=False)
        except logstore.LogDirLockedError as e:
            raise ToolError(f"{e} (stop the broker, or use --bootstrap-server)") from None
        self._gos: Any = None

    def close(self) -> None:
        self.store.close()

    def _topic(self, name: str) -> Any:
        import logstore
        try:
            return self.store.topic(name)
        except logstore.UnknownTopicOrPartitionError:
            raise ToolError(f"Topic '{name}' does not exist as expected") from None

    def list_topics(self) -> list[str]:
        return self.store.topics()

    def describe_topics(self, names: list[str]) -> list[TopicDesc]:
        out = []
        for name in names:
            info = self._topic(name)
            cfg = self.store.topic_config(name)
            configs = sorted((k, v) for k, v, source in cfg.items() if source != "default")
            out.append(TopicDesc(name, info.topic_id, [(p, 0, [0], [0]) for p in range(info.partitions)], configs))
        return out

    def create_topic(self, name: str, partitions: int, rf: int, configs: dict[str, str]) -> None:
        # -1: the default, as a broker would take it (num.partitions and default.replication.factor
        # are broker settings; a log dir's is 1)
        partitions = 1 if partitions == -1 else partitions
        rf = 1 if rf == -1 else rf
        if rf != 1:
            from ..admin_client import KafkaError
            raise KafkaError(38, f"Replication factor: {rf} larger than available brokers: 1.")
        self.store.create_topic(name, partitions, configs)

    def alter_partitions(self, name: str, count: int) -> None:
        self._topic(name)
        self.store.create_partitions(name, count)

    def delete_topic(self, name: str) -> None:
        self._topic(name)
        self.store.delete_topic(name)
        gos = self._groups(create=False)
        if gos is not None:
            gos.remove_topic(name)

    def topic_configs(self, name: str) -> list[dict[str, Any]]:
        self._topic(name)
        sources = {"topic": 1, "broker": 4, "default": 5}
        out = []
        for k, v, source in self.store.topic_config(name).items():
            sid = sources[source]
            syn = [(sid, k, v)] if sid != 5 else []
            out.append({"name": k, "value": v, "source": sid, "default": sid == 5, "sensitive": False,
                        "read_only": False, "synonyms": syn})
        return out

    def alter_configs(self, name: str, set_: dict[str, str], delete: list[str]) -> None:
        self._topic(name)
        self.store.alter_topic_config(name, set_, delete)

    # groups
    def _groups(self, create: bool) -> Any:
        if self._gos is None:
            from logstore.groups import OFFSETS_TOPIC, GroupOffsetStore
            if not create and not self.store.has_topic(OFFSETS_TOPIC):
                return None
            self._gos = GroupOffsetStore.of(self.store)
        return self._gos

    def list_groups(self) -> list[str]:
        gos = self._groups(create=False)
        return gos.groups() if gos is not None else []

    def list_group_states(self) -> list[tuple[str, str]]:
        return [(g, "Empty") for g in self.list_groups()]  # offline, no group has a live member

    def group_info(self, group: str, *, coordinator: bool = True) -> GroupInfo:
        gos = self._groups(create=False)
        if gos is None or group not in gos.groups():
            return GroupInfo("Dead", "", None, [])
        # offline, no member is connected: the group is Empty, as once its members' sessions
        # expired after a restart (a stored member list is not a live member), with no protocol
        return GroupInfo("Empty", "", None, [])

    def describe_group(self, group: str) -> tuple[str, list[dict[str, Any]], dict[tuple[str, int], int]]:
        gos = self._groups(create=False)
        if gos is None or group not in gos.groups():
            return "Dead", [], {}
        committed = {tp: om.offset for tp, om in gos.fetch(group).items()}
        # offline, no member is connected: a group with members recorded is as after a restart
        return "Empty", [], committed

    def delete_offsets(self, group: str, tps: list[tuple[str, int]]) -> tuple[int, dict[tuple[str, int], int]]:
        """OffsetDelete as the broker answers it for an Empty group: GROUP_ID_NOT_FOUND (69) for
        an unknown group, UNKNOWN_TOPIC_OR_PARTITION (3) per partition that does not exist; a
        partition without a committed offset succeeds."""
        gos = self._groups(create=False)
        if gos is None or group not in gos.groups():
            return 69, {}
        res: dict[tuple[str, int], int] = {}
        for t, p in tps:
            ok = self.store.has_topic(t) and 0 <= p < self.store.topic(t).partitions
            res[(t, p)] = 0 if ok else 3
        gone = [tp for tp, code in res.items() if code == 0]
        if gone:
            gos.delete_offsets(group, gone)
        return 0, res

    def end_offsets(self, tps: list[tuple[str, int]], which: int) -> dict[tuple[str, int], int]:
        import logstore
        out = {}
        for t, p in tps:
            try:
                lg = self.store.partition(t, p)
            except logstore.UnknownTopicOrPartitionError:
                continue
            out[(t, p)] = lg.log_start_offset if which == -2 else lg.log_end_offset
        return out

    def describe_partitions(self, topic: str) -> list:
        info = self._topic(topic)
        return [(p, 0, [0], [0], 0) for p in range(info.partitions)]

    def delete_group(self, group: str) -> int:
        gos = self._groups(create=False)
        if gos is None or group not in gos.groups():
            return 69
        gos.delete_group(group)
        return 0

    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        self._groups(create=True).commit(group, offsets)

    # offsets and log dirs: the broker's answers (handlers/admin.py, handlers/log_dirs.py), offline
    def partitions_by_topic(self, internal: bool) -> dict[str, list[int]]:
        from .console_props import INTERNAL_TOPICS
        return {t: list(range(self.store.topic(t).partitions)) for t in self.store.topics()
                if internal or t not in INTERNAL_TOPICS}

    def list_offsets(self, tps: list[tuple[str, int]], timestamp: int) -> dict[tuple[str, int], tuple[int, int]]:
        """ListOffsets as Kafka answers it: -1 latest, -2 earliest, -3 max timestamp, -4 earliest
        local (the log start: no tiered storage), -5 latest tiered (-1: none), else the first
        offset whose timestamp is at or after it (-1 when none). UNKNOWN_TOPIC_OR_PARTITION (3) for a
        partition that does not exist, INVALID_REQUEST (42) for another negative timestamp."""
        import logstore
        out: dict[tuple[str, int], tuple[int, int]] = {}
        for t, p in tps:
            try:
                lg = self.store.partition(t, p)
            except logstore.UnknownTopicOrPartitionError:
                out[(t, p)] = (3, -1)
                continue
            if timestamp == -1:
                out[(t, p)] = (0, lg.log_end_offset)
            elif timestamp in (-2, -4):
                out[(t, p)] = (0, lg.log_start_offset)
            elif timestamp == -5:
                out[(t, p)] = (0, -1)
            elif timestamp < -5:
                out[(t, p)] = (42, -1)
            else:
                found = lg.max_timestamp_offset() if timestamp == -3 else lg.offset_for_timestamp(timestamp)
                out[(t, p)] = (0, found[0] if found else -1)
        return out

    def delete_records(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], tuple[int, int]]:
        """DeleteRecords per partition (-1: up to the high watermark): (code, new log start offset)."""
        from logstore.errors import LogStoreError
        out: dict[tuple[str, int], tuple[int, int]] = {}
        for (t, p), off in offsets.items():
            try:
                out[(t, p)] = (0, self.store.delete_records(t, p, off))
            except LogStoreError as e:
                code = e.error_code
                out[(t, p)] = (code if code is not None else -1, -1)
        return out

    def node_ids(self) -> list[int]:
        """The node id this log dir was written by (meta.properties), as the one broker."""
        return [int(getattr(self.store, "meta", {}).get("node.id", 0) or 0)]

    def describe_log_dirs(self, node_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """What DescribeLogDirs answers for this dir (broker/handlers/log_dirs.py), without a broker."""
        from ..handlers.log_dirs import partition_sizes, volume_bytes
        total, usable = volume_bytes(self.store.path)
        parts = [(t, p, size, 0, False) for t, ps in partition_sizes(self.store, None).items() for p, size in ps]
        one = [{"log_dir": self.store.path, "error": 0, "total_bytes": total, "usable_bytes": usable,
                "partitions": parts}]
        return {n: one for n in node_ids}


def broker_configs(be: Any, name: str) -> list[dict[str, Any]]:
    """DescribeConfigs of the BROKER resource `name` (a broker id, or "" for the cluster-wide
    defaults) with synonyms, through the broker: entries as AdminClient.describe_configs gives a
    topic's."""
    from ..admin_client import API_DESCRIBE_CONFIGS, KafkaError
    from ..admin_client.connection import code_of
    resp = be.client.request(API_DESCRIBE_CONFIGS, {
        "resources": [{"resource_type": 4, "resource_name": name, "configuration_keys": None}],
        "include_synonyms": True, "include_documentation": False})
    out = []
    for r in resp.results:
        if code_of(r.error_code):
            raise KafkaError(code_of(r.error_code), getattr(r, "error_message", None))
        for c in r.configs:
            out.append({"name": c.name, "value": c.value, "source": int(getattr(c, "config_source", -1)),
                        "sensitive": bool(c.is_sensitive),
                        "synonyms": [(int(x.source), x.name, x.value) for x in getattr(c, "synonyms", ())]})
    return out


_ADMIN_USED = {"client.id", "security.protocol", "bootstrap.servers"}  # bootstrap.servers: the flag wins


def command_config_client_id(args: argparse.Namespace, client_id: str) -> str:
    """The client id after reading the `--command-config` file, if the tool has the flag and it
    was given: its `client.id` wins; a `security.protocol` other than PLAINTEXT is a ToolError;
    other keys are reported once on stderr as ignored."""
    path = getattr(args, "command_config", None)
    if not path:
        return client_id
    import sys
    from .console_props import load_properties
    props = load_properties(path, "--command-config")
    proto = props.get("security.protocol", "PLAINTEXT").strip()
    if proto.upper() != "PLAINTEXT":
        raise ToolError(f"security.protocol={proto} in {path} is not supported: the broker speaks PLAINTEXT only")
    ignored = sorted(k for k in props if k not in _ADMIN_USED)
    if ignored:
        sys.stderr.write(f"WARN Admin client properties this tool does not use were ignored: {', '.join(ignored)}\n")
    return props.get("client.id") or client_id


def open_backend(args: argparse.Namespace, *, create: bool = False, client_id: str = "logstore-cli") -> Backend:
    """The backend the target flags name, after reading `--command-config` (when the tool has
    it); `create`: a --data-dir that does not exist yet is made."""
    bs, dd = target(args)
    client_id = command_config_client_id(args, client_id)
    if dd:
        return DirBackend(dd, create=create)
    return NetBackend(typing.cast(str, bs), args.command_timeout, client_id=client_id)
