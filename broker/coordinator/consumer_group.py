"""The consumer group protocol of KIP-848 (Kafka 4.0 GA): ConsumerGroupHeartbeat (API 68) and
ConsumerGroupDescribe (API 69), with server-side assignment and reconciliation in
consumer_assignment.py.

**Group metadata is not persisted**: members, epochs and assignments live in memory only. After
a broker restart a member heartbeating with its old epoch is answered UNKNOWN_MEMBER_ID and
rejoins with epoch 0, as after a Kafka coordinator failover that lost the group. Committed
offsets of these groups are the same `__consumer_offsets` records as a classic group's
(offsets.py), so they survive restarts.

Model (Kafka's GroupMetadataManager.consumerGroupHeartbeat, ConsumerGroup, CurrentAssignmentBuilder):
  - group epoch: bumped when a member joins, leaves or is fenced, changes its subscription, or
    when the subscribed topics' metadata (topic ids, partition counts) changes, seen at any
    heartbeat;
  - target assignment: computed by the group's assignor (the one most members ask for with
    `server_assignor`, else `uniform`) whenever the group epoch is ahead of the assignment epoch;
  - reconciliation, per member, at its own heartbeat: it keeps `assigned ∩ target`; partitions
    to give up are pending revocation, and while it still reports owning any (`topic_partitions`;
    unknown counts as owning) it stays at its epoch in UNREVOKED_PARTITIONS with the smaller
    assignment; once revoked it moves to the target epoch and takes the target partitions no
    other member still holds (UNRELEASED_PARTITIONS while some are held, STABLE when complete).
    `partition_owner` is who holds each partition (assigned or pending revocation), so a
    partition is never handed to two members.
  - timers (`loop.call_later`): the session (`group.consumer.session.timeout.ms`, restarted by
    every heartbeat) and the rebalance timeout of a member asked to revoke; either expiring
    fences the member (it is removed and the group epoch bumped).
  - group state: Empty (no members), Assigning (group epoch ahead of the assignment epoch),
    Reconciling (a member not yet STABLE at the assignment epoch), Stable.

Simplifications: regex subscriptions (v1) use Python `re.fullmatch` over non-internal topics,
resolved at each heartbeat rather than asynchronously; no online migration between classic and
consumer groups (only an empty group changes type; a classic JoinGroup to a consumer group with
members gets INCONSISTENT_GROUP_PROTOCOL, a heartbeat to a live classic group GROUP_ID_NOT_FOUND;
a heartbeat with epoch > 0 naming a group known only by its offsets, as after a restart, gets
UNKNOWN_MEMBER_ID so the member rejoins); a known member rejoining with epoch 0 starts over (its
partitions are released) instead of being fenced; no rack-aware assignment; the assignment is
computed at once in the heartbeat (no `group.consumer.assignment.interval`).
"""

from __future__ import annotations

import base64
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

from . import errors as E
from .base import CoordinatorBase
from .consumer_assignment import (ASSIGNORS, Assignment, ConsumerGroup, ConsumerMember, MemberState, assign,
                                  reconcile)

log = logging.getLogger("broker.coordinator")

LEAVE_EPOCH = -1
LEAVE_STATIC_EPOCH = -2


@dataclass
class HeartbeatResult:
    error: int
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Assignment | None = None  # None: not sent


def _owned_map(owned: Iterable[tuple[uuid.UUID, Iterable[int]]] | None) -> dict[uuid.UUID, set[int]] | None:
    if owned is None:
        return None
    out: dict[uuid.UUID, set[int]] = {}
    for tid, parts in owned:
        out.setdefault(tid, set()).update(int(p) for p in parts)
    return out


def _kafka_uuid() -> str:
    """A member id as Kafka's `Uuid.randomUuid().toString()` writes one (URL-safe base64)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class ConsumerGroupMixin(CoordinatorBase):
    """ConsumerGroupHeartbeat and ConsumerGroupDescribe (see module docstring)."""

    # -- topics -------------------------------------------------------------------------------------
    def _member_topics(self, m: ConsumerMember, all_topics: list[str] | None = None) -> set[str]:
        topics = set(m.subscribed_names)
        if m.subscribed_regex:
            try:
                rx = re.compile(m.subscribed_regex)
            except re.error:
                return topics
            for t in all_topics if all_topics is not None else self.store.topics():
                if not t.startswith("__") and rx.fullmatch(t):
                    topics.add(t)
        return topics

    def _subscription_metadata(self, g: ConsumerGroup) -> dict[str, tuple[uuid.UUID, int]]:
        all_topics = self.store.topics() if any(m.subscribed_regex for m in g.members.values()) else None
        names: set[str] = set()
        for m in g.members.values():
            names |= self._member_topics(m, all_topics)
        out: dict[str, tuple[uuid.UUID, int]] = {}
        for t in sorted(names):
            try:
                info = self.store.topic(t)
            except Exception:
                continue
            out[t] = (info.topic_id, int(info.partitions))
        return out

    # -- reconciliation, with the rebalance timeout of a member asked to revoke ---------------------------
    def _reconcile(self, g: ConsumerGroup, m: ConsumerMember, owned: dict[uuid.UUID, set[int]] | None) -> None:
        before = m.state
        reconcile(g, m, owned)
        if m.state == MemberState.UNREVOKED_PARTITIONS:
            if before != MemberState.UNREVOKED_PARTITIONS or m.rebalance_timer is None:
                self._schedule_rebalance_timeout(g, m)
        elif m.rebalance_timer is not None:
            m.rebalance_timer.cancel()
            m.rebalance_timer = None

    # -- timers -----------------------------------------------------------------------------------------
    def _schedule_session(self, g: ConsumerGroup, m: ConsumerMember) -> None:
        if m.session_timer is not None:
            m.session_timer.cancel()
        m.session_timer = self._loop.call_later(self.config.group_consumer_session_timeout_ms / 1000,
                                                self._consumer_session_expired, g, m)

    def _consumer_session_expired(self, g: ConsumerGroup, m: ConsumerMember) -> None:
        if self.consumer_groups.get(g.group_id) is g and g.members.get(m.member_id) is m:
            log.info("group %s: member %s session expired; fencing it", g.group_id, m.member_id)
            self._fence_member(g, m)

    def _schedule_rebalance_timeout(self, g: ConsumerGroup, m: ConsumerMember) -> None:
        if m.rebalance_timer is not None:
            m.rebalance_timer.cancel()
        timeout = m.rebalance_timeout_ms if m.rebalance_timeout_ms > 0 else 300_000
        m.rebalance_timer = self._loop.call_later(timeout / 1000, self._rebalance_expired, g, m, m.epoch)

    def _rebalance_expired(self, g: ConsumerGroup, m: ConsumerMember, epoch: int) -> None:
        m.rebalance_timer = None
        if self.consumer_groups.get(g.group_id) is g and g.members.get(m.member_id) is m and \
                m.epoch == epoch and m.state == MemberState.UNREVOKED_PARTITIONS:
            log.info("group %s: member %s did not revoke its partitions in time; fencing it", g.group_id, m.member_id)
            self._fence_member(g, m)

    def _fence_member(self, g: ConsumerGroup, m: ConsumerMember) -> None:
        """Remove `m` (left, session or rebalance timeout): its partitions are free, the epoch bumps."""
        self._drop_consumer_member(g, m)
        g.metadata = self._subscription_metadata(g)
        g.group_epoch += 1
        g.state_timestamp_ms = self.clock()

    def _drop_consumer_member(self, g: ConsumerGroup, m: ConsumerMember) -> None:
        m.cancel_timers()
        g.set_assignment(m, state=MemberState.STABLE, epoch=m.epoch, assigned={}, pending={})
        g.members.pop(m.member_id, None)
        g.target.pop(m.member_id, None)
        if m.instance_id and g.static.get(m.instance_id) == m.member_id:
            del g.static[m.instance_id]

    # -- ConsumerGroupHeartbeat ---------------------------------------------------------------------------
    def _validate_heartbeat(self, version: int, group_id: str, member_id: str, epoch: int, instance_id: str | None,
                            rack_id: str | None, rebalance_timeout_ms: int, names: Any, regex: str | None,
                            assignor: str | None, owned: Any) -> tuple[int, str | None]:
        bad = E.INVALID_REQUEST
        if not group_id:
            return bad, "GroupId can't be empty."
        if instance_id is not None and not instance_id:
            return bad, "InstanceId can't be empty."
        if rack_id is not None and not rack_id:
            return bad, "RackId can't be empty."
        if version >= 1 and not member_id:
            return bad, "MemberId can't be empty."
        if epoch > 0 or epoch == LEAVE_EPOCH:
            if not member_id:
                return bad, "MemberId can't be empty."
        elif epoch == 0:
            if rebalance_timeout_ms == -1:
                return bad, "RebalanceTimeoutMs must be provided in first request."
            if owned is None or len(owned):
                return bad, "TopicPartitions must be empty when (re-)joining."
            if names is None and regex is None:
                return bad, "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
        elif epoch == LEAVE_STATIC_EPOCH:
            if not member_id:
                return bad, "MemberId can't be empty."
            if instance_id is None:
                return bad, "InstanceId can't be null."
        else:
            return bad, "MemberEpoch is invalid."
        if assignor is not None and assignor not in ASSIGNORS:
            return E.UNSUPPORTED_ASSIGNOR, (f"ServerAssignor {assignor} is not supported. Supported assignors: "
                                            f"{', '.join(ASSIGNORS)}.")
        if regex:
            try:
                re.compile(regex)
            except re.error as e:
                return E.INVALID_REGULAR_EXPRESSION, f"SubscribedTopicRegex {regex!r} is not a valid regular expression: {e}"
        return E.NONE, None

    async def consumer_heartbeat(self, group_id: str, member_id: str, member_epoch: int, *, version: int = 1,
                                 instance_id: str | None = None, rack_id: str | None = None,
                                 rebalance_timeout_ms: int = -1, subscribed_topic_names: Iterable[str] | None = None,
                                 subscribed_topic_regex: str | None = None, server_assignor: str | None = None,
                                 owned: Iterable[tuple[uuid.UUID, Iterable[int]]] | None = None,
                                 client_id: str = "", client_host: str = "") -> HeartbeatResult:
        """ConsumerGroupHeartbeat: join (epoch 0), heartbeat, leave (-1; -2 a static member's
        temporary leave). Returns the answer with Kafka error codes."""
        err = self._check_active()
        if err:
            return HeartbeatResult(err)
        names = None if subscribed_topic_names is None else tuple(subscribed_topic_names)
        owned_list = None if owned is None else [(t, list(ps)) for t, ps in owned]
        err, msg = self._validate_heartbeat(version, group_id, member_id, member_epoch, instance_id, rack_id,
                                            rebalance_timeout_ms, names, subscribed_topic_regex, server_assignor,
                                            owned_list)
        if err:
            return HeartbeatResult(err, msg)
        if member_epoch in (LEAVE_EPOCH, LEAVE_STATIC_EPOCH):
            return self._consumer_leave(group_id, member_id, member_epoch, instance_id)
        owned_map = _owned_map(owned_list)

        g = self.consumer_groups.get(group_id)
        if g is None:
            classic = self.groups.get(group_id)
            if classic is not None and classic.state.value != "Dead":
                if classic.members or classic.pending or classic.state.value != "Empty":
                    return HeartbeatResult(E.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
                if member_epoch != 0:
                    # offsets only (e.g. reloaded after a restart, which forgets consumer groups): the
                    # member's group is gone, so it must rejoin (Kafka would have persisted it)
                    return HeartbeatResult(E.UNKNOWN_MEMBER_ID, f"Consumer group {group_id} not found.")
                # an empty classic group (offsets only) becomes a consumer group; its offsets stay
                self.groups.pop(group_id, None)
            elif member_epoch != 0:
                return HeartbeatResult(E.UNKNOWN_MEMBER_ID, f"Consumer group {group_id} not found.")
            g = ConsumerGroup(group_id, state_timestamp_ms=self.clock())
        if len(g.members) >= self.config.group_consumer_max_size and (not member_id or member_id not in g.members):
            return HeartbeatResult(E.GROUP_MAX_SIZE_REACHED, "The consumer group has reached its maximum capacity of "
                                   f"{self.config.group_consumer_max_size} members.")
        if not member_id:
            member_id = _kafka_uuid()  # v0: the coordinator names the member

        # -- the member: known, new, a rejoin, or a static member taking its instance back ----------------
        new_member = replaced = False
        m = g.members.get(member_id)
        if instance_id is not None:
            holder = g.members.get(g.static.get(instance_id, ""))
            if member_epoch == 0:
                if holder is not None and holder.member_id != member_id:
                    if holder.epoch != LEAVE_STATIC_EPOCH:
                        return HeartbeatResult(E.UNRELEASED_INSTANCE_ID,
                                               f"Static member {member_id} with instance id {instance_id} cannot join "
                                               f"the group because the instance id is owned by {holder.member_id} member.")
                    m = self._consumer_replace_static(g, holder, member_id)
                    replaced = True
            else:
                if holder is None:
                    return HeartbeatResult(E.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
                if holder.member_id != member_id:
                    return HeartbeatResult(E.FENCED_INSTANCE_ID, f"Static member {member_id} with instance id "
                                           f"{instance_id} was fenced by member {holder.member_id}.")
        if m is None:
            if member_epoch != 0:
                return HeartbeatResult(E.UNKNOWN_MEMBER_ID, f"Member {member_id} is not a member of group {group_id}.")
            m = ConsumerMember(member_id)
            new_member = True
            log.info("group %s: member %s joins the consumer group", group_id, member_id)
        elif member_epoch == 0 and not replaced:
            if m.epoch != 0 or m.assigned or m.pending_revocation:
                # a rejoin: it owns nothing now (topic_partitions is empty), so it starts over
                g.set_assignment(m, state=MemberState.STABLE, epoch=0, assigned={}, pending={})
                m.previous_epoch = 0
        else:
            fenced = member_epoch > m.epoch or (member_epoch < m.epoch and (
                member_epoch != m.previous_epoch or owned_map is None or
                any(not ps <= set(m.assigned.get(t, ())) for t, ps in owned_map.items())))
            if fenced:
                return HeartbeatResult(E.FENCED_MEMBER_EPOCH,
                                       f"The consumer group member has a {'greater' if member_epoch > m.epoch else 'smaller'}"
                                       f" member epoch ({member_epoch}) than the one known by the group coordinator "
                                       f"({m.epoch}). The member must abandon all its partitions and rejoin.")
        if group_id not in self.consumer_groups:
            self.consumer_groups[group_id] = g

        # -- 1. the member's fields; the group epoch bumps on a subscription or metadata change --------------
        before = (m.subscribed_names, m.subscribed_regex)
        before_assigned = dict(m.assigned)
        if instance_id is not None:
            m.instance_id = instance_id
            g.static[instance_id] = member_id
        if rack_id is not None:
            m.rack_id = rack_id
        if rebalance_timeout_ms != -1:
            m.rebalance_timeout_ms = rebalance_timeout_ms
        if server_assignor is not None:
            m.server_assignor = server_assignor
        if names is not None:
            m.subscribed_names = tuple(sorted(set(names)))
        if subscribed_topic_regex is not None:
            m.subscribed_regex = subscribed_topic_regex or None
        m.client_id, m.client_host = client_id, client_host
        g.members[member_id] = m
        bump = new_member or (m.subscribed_names, m.subscribed_regex) != before
        metadata = self._subscription_metadata(g)
        if metadata != g.metadata:
            g.metadata = metadata
            bump = True
        if bump:
            g.group_epoch += 1
            g.state_timestamp_ms = self.clock()
            log.info("group %s: bumped group epoch to %d", group_id, g.group_epoch)

        # -- 2. the target assignment ---------------------------------------------------------------------
        if g.group_epoch > g.assignment_epoch:
            all_topics = self.store.topics() if any(x.subscribed_regex for x in g.members.values()) else None
            g.target = assign(g.assignor(), {x.member_id: self._member_topics(x, all_topics) for x in g.members.values()},
                              g.metadata, g.target)
            g.assignment_epoch = g.group_epoch

        # -- 3. reconcile this member towards its target ----------------------------------------------------
        self._reconcile(g, m, owned_map)
        self._schedule_session(g, m)
        full = member_epoch == 0 or (rebalance_timeout_ms != -1 and (names is not None or subscribed_topic_regex
                                                                     is not None) and owned_list is not None)
        return HeartbeatResult(E.NONE, None, member_id, m.epoch, self.config.group_consumer_heartbeat_interval_ms,
                               dict(m.assigned) if full or m.assigned != before_assigned else None)

    def _consumer_replace_static(self, g: ConsumerGroup, old: ConsumerMember, member_id: str) -> ConsumerMember:
        """A static member back after a temporary leave (epoch -2): the new member id takes over
        its subscription and partitions, at epoch 0."""
        log.info("group %s: static member %s rejoins; %s replaces %s", g.group_id, old.instance_id, member_id,
                 old.member_id)
        assigned, target = dict(old.assigned), g.target.get(old.member_id, {})
        new = ConsumerMember(member_id, old.instance_id, old.rack_id, old.client_id, old.client_host,
                             old.rebalance_timeout_ms, old.subscribed_names, old.subscribed_regex, old.server_assignor)
        self._drop_consumer_member(g, old)
        g.members[member_id] = new
        g.target[member_id] = target
        if old.instance_id:
            g.static[old.instance_id] = member_id
        g.set_assignment(new, state=MemberState.STABLE, epoch=0, assigned=assigned, pending={})
        return new

    def _consumer_leave(self, group_id: str, member_id: str, epoch: int, instance_id: str | None) -> HeartbeatResult:
        g = self.consumer_groups.get(group_id)
        if g is None:
            return HeartbeatResult(E.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
        if instance_id is None:
            m = g.members.get(member_id)
            if m is None:
                return HeartbeatResult(E.UNKNOWN_MEMBER_ID, f"Member {member_id} is not a member of group {group_id}.")
        else:
            m = g.members.get(g.static.get(instance_id, ""))
            if m is None:
                return HeartbeatResult(E.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
            if m.member_id != member_id:
                return HeartbeatResult(E.FENCED_INSTANCE_ID, f"Static member {member_id} with instance id "
                                       f"{instance_id} was fenced by member {m.member_id}.")
            if epoch == LEAVE_STATIC_EPOCH:
                # it will be back within its session: it keeps its partitions, nobody else gets them
                log.info("group %s: static member %s (%s) temporarily left", group_id, member_id, instance_id)
                if m.rebalance_timer is not None:
                    m.rebalance_timer.cancel()
                    m.rebalance_timer = None
                g.set_assignment(m, state=m.state, epoch=LEAVE_STATIC_EPOCH, assigned=m.assigned, pending={})
                return HeartbeatResult(E.NONE, None, member_id, LEAVE_STATIC_EPOCH)
        log.info("group %s: member %s left the consumer group", group_id, member_id)
        self._fence_member(g, m)
        return HeartbeatResult(E.NONE, None, member_id, epoch)

    # -- offsets of consumer groups (offsets.py calls these) -------------------------------------------------
    def _consumer_commit_error(self, g: ConsumerGroup, member_epoch: int, member_id: str,
                               api_version: int | None) -> int:
        """Kafka's ConsumerGroup.validateOffsetCommit."""
        if member_epoch < 0 and not g.members:
            return E.NONE  # admin, or a consumer using assign()
        m = g.members.get(member_id)
        if m is None:
            return E.UNKNOWN_MEMBER_ID
        if api_version is not None and api_version < 9:
            return E.UNSUPPORTED_VERSION
        return E.NONE if member_epoch == m.epoch else E.STALE_MEMBER_EPOCH

    def _consumer_fetch_error(self, g: ConsumerGroup, member_id: str | None, member_epoch: int) -> int:
        """Kafka's ConsumerGroup.validateOffsetFetch."""
        if member_id is None and member_epoch < 0:
            return E.NONE
        m = g.members.get(member_id or "")
        if m is None:
            return E.UNKNOWN_MEMBER_ID
        return E.NONE if member_epoch == m.epoch else E.STALE_MEMBER_EPOCH

    def _consumer_subscribed(self, g: ConsumerGroup) -> set[str]:
        return set(self._subscription_metadata(g)) if g.members else set()

    # -- admin views ------------------------------------------------------------------------------------
    def list_consumer_groups(self, states: Iterable[str] = (), types: Iterable[str] = ()) -> list[tuple[str, str, str]]:
        """(group id, "consumer", state) of the consumer-protocol groups, filtered as list_groups."""
        want_states = {s.lower() for s in states}
        want_types = {t.lower() for t in types}
        if want_types and "consumer" not in want_types:
            return []
        return [(gid, "consumer", g.state) for gid, g in sorted(self.consumer_groups.items())
                if not want_states or g.state.lower() in want_states]

    def consumer_describe(self, group_id: str) -> tuple[int, str | None, ConsumerGroup | None]:
        """ConsumerGroupDescribe of one group: (error, message, group)."""
        err = self._check_active()
        if err:
            return err, None, None
        g = self.consumer_groups.get(group_id)
        if g is None:
            c = self.groups.get(group_id)
            if c is not None and c.state.value != "Dead":
                return E.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.", None
            return E.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.", None
        return E.NONE, None, g

    def topic_name_of(self, topic_id: uuid.UUID) -> str | None:
        try:
            return self.store.topic_by_id(topic_id).name
        except Exception:
            return None

    def _stop_consumer_groups(self) -> None:
        for g in self.consumer_groups.values():
            for m in g.members.values():
                m.cancel_timers()
        self.consumer_groups.clear()
