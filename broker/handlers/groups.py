"""Wire handlers of the group APIs: kio request objects in, kio response objects out.

Owns the translation between Kafka's group API messages, at every version in `VERSIONS` (flexible
ones included; kio picks the codec by version), and `GroupCoordinator` calls, which hold all the
logic. Each handler is `async def handler(ctx, request) -> response` where the response class is
the one of the request's own version (found next to the request class in kio's schema tree).

From `ctx` a handler needs (see `_coordinator`, `_client`, `_node`; one place to adapt):
    the GroupCoordinator, the client's id and host (for DescribeGroups / the consumer-groups CLI),
    and this broker's node id, advertised host and port (FindCoordinator).

Version notes (as Kafka answers): JoinGroup v4+ makes a first join without a member id fail with
MEMBER_ID_REQUIRED and the new id; LeaveGroup v3+ and OffsetFetch v8+ are batched; FindCoordinator
v4+ answers a list of keys; OffsetCommit starts at v2 and OffsetFetch at v1 (kio has no older
ones; Kafka 4 dropped them too); v10 of both (topic ids) is not offered. Consumer-protocol
(KIP-848) groups: OffsetCommit v9 carries the member epoch and OffsetFetch v9 the member id and
epoch (checked by the coordinator); ListGroups reports them with group type "consumer";
DescribeGroups answers them as Kafka 4 does (Dead; GROUP_ID_NOT_FOUND from v6). Their own APIs
(68, 69) are broker/handlers/consumer_groups.py.
"""

from __future__ import annotations

import datetime
import importlib
import logging
from dataclasses import fields
from functools import lru_cache
from typing import Any

from kio.schema.errors import ErrorCode

from broker.coordinator import GroupCoordinator, OffsetAndMetadata, errors as E
from ._util import GROUP_OPERATIONS, NO_AUTH_OPS

log = logging.getLogger("broker.handlers.groups")

# API key → (name, lowest, highest version served)
VERSIONS: dict[int, tuple[str, int, int]] = {
    8: ("offset_commit", 2, 9),
    9: ("offset_fetch", 1, 9),
    10: ("find_coordinator", 0, 6),
    11: ("join_group", 0, 9),
    12: ("heartbeat", 0, 4),
    13: ("leave_group", 0, 5),
    14: ("sync_group", 0, 5),
    15: ("describe_groups", 0, 6),
    16: ("list_groups", 0, 5),
    42: ("delete_groups", 0, 2),
    47: ("offset_delete", 0, 0),
}

_ZERO = datetime.timedelta(0)


# -- what a handler needs from the server's context ------------------------------------------------
def _coordinator(ctx: Any) -> GroupCoordinator:
    c = getattr(ctx, "coordinator", None)
    if c is None:
        c = getattr(getattr(ctx, "server", None), "coordinator", None)
    if c is None:
        raise RuntimeError("no GroupCoordinator reachable from the handler context (see broker/coordinator/NEEDS.md)")
    return c


def _client(ctx: Any) -> tuple[str, str]:
    client_id = getattr(ctx, "client_id", None) or ""
    host = getattr(ctx, "client_host", None)
    if host is None:
        peer = getattr(ctx, "peer", None) or getattr(ctx, "peername", None)
        host = peer[0] if isinstance(peer, (tuple, list)) and peer else ""
    return client_id, ("/" + host) if host and not host.startswith("/") else (host or "")


def _node(ctx: Any) -> tuple[int, str, int]:
    for holder in (ctx, getattr(ctx, "server", None), getattr(ctx, "broker", None)):
        if holder is None:
            continue
        host = getattr(holder, "advertised_host", None) or getattr(holder, "host", None)
        port = getattr(holder, "advertised_port", None) or getattr(holder, "port", None)
        if host and port:
            return int(getattr(holder, "node_id", 0) or 0), str(host), int(port)
    raise RuntimeError("no advertised host/port reachable from the handler context (see broker/coordinator/NEEDS.md)")


# -- building responses of the request's version ---------------------------------------------------
@lru_cache(maxsize=None)
def _response_module_of(request_cls: type) -> Any:
    return importlib.import_module(request_cls.__module__.rsplit(".", 1)[0] + ".response")


def _response_module(request: Any) -> Any:
    return _response_module_of(type(request))


@lru_cache(maxsize=None)
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


def _make(cls: type, **kw: Any) -> Any:
    """Instantiate a kio entity from the keyword arguments it has fields for (versions differ
    only by which fields exist); error codes become ErrorCode, ms ints stay ints."""
    names = _field_names(cls)
    args = {k: v for k, v in kw.items() if k in names}
    if "error_code" in args:
        args["error_code"] = ErrorCode(args["error_code"])
    if "throttle_time" in names and "throttle_time" not in args:
        args["throttle_time"] = _ZERO
    return cls(**args)


def _ms(value: Any, default: int = -1) -> int:
    if value is None:
        return default
    if isinstance(value, datetime.timedelta):
        return int(value / datetime.timedelta(milliseconds=1))
    return int(value)


def _version(request: Any) -> int:
    return int(type(request).__version__)


# -- FindCoordinator (10) ----------------------------------------------------------------------------
async def find_coordinator(ctx: Any, request: Any) -> Any:
    mod = _response_module(request)
    v = _version(request)
    coord = _coordinator(ctx)
    node_id, host, port = _node(ctx)
    key_type = int(getattr(request, "key_type", 0))

    def answer(key: str) -> tuple[int, str | None]:
        if key_type not in (0, 1):
            return E.INVALID_REQUEST, f"key type {key_type} is not served here (0 = group, 1 = transaction)"
        if key_type == 0 and coord.state == "inactive":
            return E.COORDINATOR_NOT_AVAILABLE, "the group coordinator is not running"
        return E.NONE, None

    if v >= 4:
        out = []
        for key in request.coordinator_keys:
            err, msg = answer(key)
            out.append(_make(mod.Coordinator, key=key, node_id=node_id if not err else -1, host=host if not err else "",
                             port=port if not err else -1, error_code=err, error_message=msg))
        return _make(mod.FindCoordinatorResponse, coordinators=tuple(out))
    err, msg = answer(request.key)
    return _make(mod.FindCoordinatorResponse, error_code=err, error_message=msg, node_id=node_id if not err else -1,
                 host=host if not err else "", port=port if not err else -1)


# -- JoinGroup (11) -----------------------------------------------------------------------------------
async def join_group(ctx: Any, request: Any) -> Any:
    mod = _response_module(request)
    v = _version(request)
    client_id, host = _client(ctx)
    session = _ms(request.session_timeout)
    r = await _coordinator(ctx).join(
        request.group_id, request.member_id, session_timeout_ms=session,
        rebalance_timeout_ms=_ms(getattr(request, "rebalance_timeout", None), session),
        protocol_type=request.protocol_type, protocols=[(p.name, p.metadata) for p in request.protocols],
        group_instance_id=getattr(request, "group_instance_id", None), client_id=client_id, client_host=host,
        require_known_member_id=v >= 4, reason=getattr(request, "reason", None), supports_skip_assignment=v >= 9)
    members = tuple(_make(mod.JoinGroupResponseMember, member_id=mid, group_instance_id=iid, metadata=meta)
                    for mid, iid, meta in r.members)
    nullable = v >= 7
    return _make(mod.JoinGroupResponse, error_code=r.error, generation_id=r.generation,
                 protocol_type=r.protocol_type if r.error == E.NONE else None,
                 protocol_name=r.protocol_name if r.protocol_name is not None or nullable else "",
                 leader=r.leader, skip_assignment=r.skip_assignment, member_id=r.member_id, members=members)


# -- SyncGroup (14) ------------------------------------------------------------------------------------
async def sync_group(ctx: Any, request: Any) -> Any:
    mod = _response_module(request)
    r = await _coordinator(ctx).sync(
        request.group_id, int(request.generation_id), request.member_id,
        assignments={a.member_id: a.assignment for a in request.assignments},
        group_instance_id=getattr(request, "group_instance_id", None),
        protocol_type=getattr(request, "protocol_type", None), protocol_name=getattr(request, "protocol_name", None))
    ok = r.error == E.NONE
    return _make(mod.SyncGroupResponse, error_code=r.error, protocol_type=r.protocol_type if ok else None,
                 protocol_name=r.protocol_name if ok else None, assignment=r.assignment)


# -- Heartbeat (12) -------------------------------------------------------------------------------------
async def heartbeat(ctx: Any, request: Any) -> Any:
    mod = _response_module(request)
    err = await _coordinator(ctx).heartbeat(request.group_id, int(request.generation_id), request.member_id,
                                            getattr(request, "group_instance_id", None))
    return _make(mod.HeartbeatResponse, error_code=err)


# -- LeaveGroup (13) -------------------------------------------------------------------------------------
async def leave_group(ctx: Any, request: Any) -> Any:
    mod = _response_module(request)
    v = _version(request)
    if v < 3:
        top, res = await _coordinator(ctx).leave(request.group_id, [(request.member_id, None)])
        return _make(mod.LeaveGroupResponse, error_code=top or (res[0][2] if res else E.NONE))
    top, res = await _coordinator(ctx).leave(request.group_id,
                                             [(m.member_id, m.group_instance_id) for m in request.members])
    return _make(mod.LeaveGroupResponse, error_code=top, members=tuple(
        _make(mod.MemberResponse, member_id=mid, group_instance_id=iid, error_code=err) for mid, iid, err in res))


# -- OffsetCommit (8) --------------------------------------------------------------------------------------
async def offset_commit(ctx: Any, request: Any) -> Any:
    mod = _response_module(request)
    retention = _ms(getattr(request, "retention_time", None))
    offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
    coord = _coordinator(ctx)
    now = coord.clock()
    for t in request.topics:
        for p in t.partitions:
            offsets[(t.name, int(p.partition_index))] = OffsetAndMetadata(
                int(p.committed_offset), p.committed_metadata or "", now,
                int(getattr(p, "committed_leader_epoch", -1)), now + retention if retention >= 0 else -1)
    res = await coord.commit(request.group_id, int(request.generation_id_or_member_epoch), request.member_id, offsets,
                             group_instance_id=getattr(request, "group_instance_id", None),
                             api_version=_version(request))
    return _make(mod.OffsetCommitResponse, topics=tuple(
        _make(mod.OffsetCommitResponseTopic, name=t.name, partitions=tuple(
            _make(mod.OffsetCommitResponsePartition, partition_index=p.partition_index,
                  error_code=res[(t.name, int(p.partition_index))]) for p in t.partitions))
        for t in request.topics))


# -- OffsetFetch (9) ------------------------------------------------------------------------------------------
async def _fetch_group(coord: GroupCoordinator, group_id: str, topics: Any, require_stable: bool,
                       member_id: str | None = None, member_epoch: int = -1
                       ) -> tuple[int, list[tuple[str, list[tuple[int, OffsetAndMetadata | None]]]]]:
    parts = None if topics is None else [(t.name, int(i)) for t in topics for i in t.partition_indexes]
    err, got = await coord.fetch(group_id, parts, require_stable=require_stable, member_id=member_id,
                                 member_epoch=member_epoch)
    by_topic: dict[str, list[tuple[int, OffsetAndMetadata | None]]] = {}
    if parts is None:
        for (t, p), om in sorted(got.items()):
            by_topic.setdefault(t, []).append((p, om))
    else:
        for tp in parts:
            by_topic.setdefault(tp[0], []).append((tp[1], got.get(tp)))
    return err, list(by_topic.items())


async def offset_fetch(ctx: Any, request: Any) -> Any:
    mod = _response_module(request)
    v = _version(request)
    coord = _coordinator(ctx)
    stable = bool(getattr(request, "require_stable", False))
    if v >= 8:
        groups = []
        for g in request.groups:
            err, topics = await _fetch_group(coord, g.group_id, g.topics, stable, getattr(g, "member_id", None),
                                             int(getattr(g, "member_epoch", -1)))
            groups.append(_make(mod.OffsetFetchResponseGroup, group_id=g.group_id, error_code=err, topics=tuple(
                _make(mod.OffsetFetchResponseTopics, name=t, partitions=tuple(
                    _make(mod.OffsetFetchResponsePartitions, partition_index=p,
                          committed_offset=om.offset if om else -1, committed_leader_epoch=om.leader_epoch if om else -1,
                          metadata=om.metadata if om else "", error_code=E.NONE) for p, om in parts))
                for t, parts in topics)))
        return _make(mod.OffsetFetchResponse, groups=tuple(groups))
    err, topics = await _fetch_group(coord, request.group_id, request.topics, stable)
    part_err = err if v < 2 else E.NONE  # v0-1 have no top-level error
    return _make(mod.OffsetFetchResponse, error_code=err, topics=tuple(
        _make(mod.OffsetFetchResponseTopic, name=t, partitions=tuple(
            _make(mod.OffsetFetchResponsePartition, partition_index=p, committed_offset=om.offset if om else -1,
                  committed_leader_epoch=om.leader_epoch if om else -1, metadata=om.metadata if om else "",
                  error_code=part_err) for p, om in parts))
        for t, parts in topics))


# -- ListGroups (16), DescribeGroups (15), DeleteGroups (42), OffsetDelete (47) -------------------------------
async def list_groups(ctx: Any, request: Any) -> Any:
    mod = _response_module(request)
    coord = _coordinator(ctx)
    err = coord._check_active()
    states = getattr(request, "states_filter", ()) or ()
    types = getattr(request, "types_filter", ()) or ()
    listed = [] if err else [(gid, ptype, state, "classic") for gid, ptype, state in coord.list_groups(states, types)]
    if not err:  # KIP-848 groups: group type "consumer", protocol type "consumer"
        listed += [(gid, ptype, state, "consumer") for gid, ptype, state in coord.list_consumer_groups(states, types)]
    return _make(mod.ListGroupsResponse, error_code=err, groups=tuple(
        _make(mod.ListedGroup, group_id=gid, protocol_type=ptype, group_state=state, group_type=gtype)
        for gid, ptype, state, gtype in sorted(listed)))


async def describe_groups(ctx: Any, request: Any) -> Any:
    mod = _response_module(request)
    v = _version(request)
    coord = _coordinator(ctx)
    ops = GROUP_OPERATIONS if getattr(request, "include_authorized_operations", False) else NO_AUTH_OPS
    out = []
    for gid in request.groups:
        d = coord.describe(gid)
        err, msg = d.error, None
        if not d.found and not err and v >= 6:
            err, msg = E.GROUP_ID_NOT_FOUND, f"group {gid!r} not found"
            if gid in coord.consumer_groups:  # as Kafka 4 answers for a consumer-protocol group
                msg = f"Group {gid} is not a classic group."
        out.append(_make(mod.DescribedGroup, error_code=err, error_message=msg, group_id=gid, group_state=d.state,
                         protocol_type=d.protocol_type, protocol_data=d.protocol, authorized_operations=ops if d.found else NO_AUTH_OPS,
                         members=tuple(_make(mod.DescribedGroupMember, member_id=m.member_id,
                                             group_instance_id=m.group_instance_id, client_id=m.client_id,
                                             client_host=m.client_host, member_metadata=m.metadata,
                                             member_assignment=m.assignment) for m in d.members)))
    return _make(mod.DescribeGroupsResponse, groups=tuple(out))


async def delete_groups(ctx: Any, request: Any) -> Any:
    mod = _response_module(request)
    res = await _coordinator(ctx).delete_groups(list(request.groups_names))
    return _make(mod.DeleteGroupsResponse, results=tuple(
        _make(mod.DeletableGroupResult, group_id=gid, error_code=err) for gid, err in res.items()))


async def offset_delete(ctx: Any, request: Any) -> Any:
    mod = _response_module(request)
    parts = [(t.name, int(p.partition_index)) for t in request.topics for p in t.partitions]
    top, res = await _coordinator(ctx).delete_offsets(request.group_id, parts)
    topics = []
    if not top:
        for t in request.topics:
            topics.append(_make(mod.OffsetDeleteResponseTopic, name=t.name, partitions=tuple(
                _make(mod.OffsetDeleteResponsePartition, partition_index=p.partition_index,
                      error_code=res[(t.name, int(p.partition_index))]) for p in t.partitions)))
    return _make(mod.OffsetDeleteResponse, error_code=top, topics=tuple(topics))


HANDLERS = {
    8: offset_commit, 9: offset_fetch, 10: find_coordinator, 11: join_group, 12: heartbeat, 13: leave_group,
    14: sync_group, 15: describe_groups, 16: list_groups, 42: delete_groups, 47: offset_delete,
}


def register(registry: Any) -> None:
    """Install the group handlers into the broker's handler registry."""
    for key, handler in HANDLERS.items():
        _name, lo, hi = VERSIONS[key]
        registry.register(key, handler, min_version=lo, max_version=hi)
