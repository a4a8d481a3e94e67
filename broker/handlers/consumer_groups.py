"""Wire handlers of the consumer group protocol (KIP-848): ConsumerGroupHeartbeat (68) v0-v1 and
ConsumerGroupDescribe (69) v0-v1. kio request objects in, kio response objects out; the logic is
`GroupCoordinator.consumer_heartbeat` / `consumer_describe` (broker/coordinator/consumer_group.py).

v0 of ConsumerGroupHeartbeat lets the coordinator name a joining member; v1 requires the client's
own id and adds `subscribed_topic_regex`. Assignments travel as topic ids, as in Kafka.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from broker.coordinator import errors as E

from ._util import GROUP_OPERATIONS, NO_AUTH_OPS, make, ms, response_module, version
from .groups import _client, _coordinator

VERSIONS: dict[int, tuple[str, int, int]] = {
    68: ("consumer_group_heartbeat", 0, 1),
    69: ("consumer_group_describe", 0, 1),
}


def _topic_partitions(cls: type, assignment: dict[uuid.UUID, Any], names: dict[uuid.UUID, str] | None = None) -> tuple:
    out = []
    for tid in sorted(assignment, key=str):
        kw: dict[str, Any] = {"topic_id": tid, "partitions": tuple(sorted(int(p) for p in assignment[tid]))}
        if names is not None:
            kw["topic_name"] = names.get(tid, "")
        out.append(make(cls, **kw))
    return tuple(out)


async def consumer_group_heartbeat(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    client_id, host = _client(ctx)
    owned = request.topic_partitions
    r = await _coordinator(ctx).consumer_heartbeat(
        request.group_id, request.member_id or "", int(request.member_epoch), version=version(request),
        instance_id=request.instance_id, rack_id=request.rack_id,
        rebalance_timeout_ms=ms(request.rebalance_timeout),
        subscribed_topic_names=request.subscribed_topic_names,
        subscribed_topic_regex=getattr(request, "subscribed_topic_regex", None),
        server_assignor=request.server_assignor,
        owned=None if owned is None else [(tp.topic_id, tp.partitions) for tp in owned],
        client_id=client_id, client_host=host)
    assignment = None
    if not r.error and r.assignment is not None:
        assignment = make(mod.Assignment, topic_partitions=_topic_partitions(mod.TopicPartitions, r.assignment))
    return make(mod.ConsumerGroupHeartbeatResponse, error_code=r.error, error_message=r.message,
                member_id=r.member_id if not r.error else None, member_epoch=r.member_epoch if not r.error else 0,
                heartbeat_interval=datetime.timedelta(milliseconds=r.heartbeat_interval_ms),
                assignment=assignment)


async def consumer_group_describe(ctx: Any, request: Any) -> Any:
    mod = response_module(request)
    coord = _coordinator(ctx)
    out = []
    for gid in request.group_ids:
        err, msg, g = coord.consumer_describe(gid)
        if err or g is None:
            out.append(make(mod.DescribedGroup, error_code=err, error_message=msg, group_id=gid, group_state="",
                            group_epoch=0, assignment_epoch=0, assignor_name="", members=()))
            continue
        names: dict[uuid.UUID, str] = {}
        members = []
        for m in g.members.values():
            target = g.target.get(m.member_id, {})
            for tid in set(m.assigned) | set(target):
                if tid not in names:
                    names[tid] = coord.topic_name_of(tid) or ""
            members.append(make(
                mod.Member, member_id=m.member_id, instance_id=m.instance_id, rack_id=m.rack_id,
                member_epoch=m.epoch, client_id=m.client_id, client_host=m.client_host,
                subscribed_topic_names=tuple(m.subscribed_names), subscribed_topic_regex=m.subscribed_regex,
                assignment=make(mod.Assignment, topic_partitions=_topic_partitions(mod.TopicPartitions, m.assigned,
                                                                                   names)),
                target_assignment=make(mod.Assignment, topic_partitions=_topic_partitions(mod.TopicPartitions, target,
                                                                                          names)),
                member_type=1))
        out.append(make(mod.DescribedGroup, error_code=E.NONE, group_id=gid, group_state=g.state,
                        group_epoch=g.group_epoch, assignment_epoch=g.assignment_epoch, assignor_name=g.assignor(),
                        members=tuple(members), authorized_operations=GROUP_OPERATIONS
                        if request.include_authorized_operations else NO_AUTH_OPS))
    return make(mod.ConsumerGroupDescribeResponse, groups=tuple(out))


HANDLERS = {68: consumer_group_heartbeat, 69: consumer_group_describe}


def register(registry: Any) -> None:
    """Install the consumer group protocol handlers (68, 69) into the broker's registry."""
    for key, handler in HANDLERS.items():
        _name, lo, hi = VERSIONS[key]
        registry.register(key, handler, min_version=lo, max_version=hi)
