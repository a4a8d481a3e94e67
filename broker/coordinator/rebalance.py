"""The group state machine's moves and timers: members come and go, rebalances start and end.

`RebalanceMixin` (a part of `GroupCoordinator`) makes every state change of group.py's diagram
but the protocol answers themselves (membership.py) and DeleteGroups (coordinator.py).

Timers (`loop.call_later` handles; all run on the loop thread):
  - member session (`Member.expiry`): `session.timeout.ms` after its last heartbeat (or join/sync
    answer) it is removed, unless it has a JoinGroup or SyncGroup parked (it is alive, waiting
    on us);
  - pending member (`Group.pending`, after MEMBER_ID_REQUIRED): dropped if it does not rejoin
    within its session;
  - rebalance (`Group.join_timer`): PreparingRebalance ends when every member has rejoined, or
    after the largest `rebalance.timeout.ms` (clients send max.poll.interval.ms), dropping the
    dynamic members that did not;
  - first rebalance of an Empty group waits `group.initial.rebalance.delay.ms`, extended by as
    much again while new members keep arriving, up to the rebalance timeout.
A timer that fires for a group or member no longer current does nothing.

Completing a join bumps the generation; parked JoinGroups are answered (the leader gets every
member's metadata for the chosen protocol). Group metadata (generation, protocol, leader,
members and assignments) is written to `__consumer_offsets` when a group becomes Empty here,
and when the leader's assignment is installed (membership.py).
"""

from __future__ import annotations

import logging

from logstore.groups import GroupMetadataValue, MemberMetadata

from . import errors as E
from .base import CoordinatorBase
from .group import Group, GroupState, JoinResult, Member, SyncResult, resolve

log = logging.getLogger("broker.coordinator")

S = GroupState


class RebalanceMixin(CoordinatorBase):
    """Membership changes, rebalances and their timers (see module docstring)."""

    # -- timers ----------------------------------------------------------------------------------------
    def _heartbeat_ok(self, g: Group, m: Member) -> None:
        """The member showed it is alive: its session restarts now."""
        m.last_heartbeat_ms = self.clock()
        if m.expiry is not None:
            m.expiry.cancel()
        m.expiry = self._loop.call_later(m.session_timeout_ms / 1000, self._session_expired, g, m)

    def _session_expired(self, g: Group, m: Member) -> None:
        if self.groups.get(g.group_id) is not g or g.members.get(m.member_id) is not m:
            return
        if m.awaiting_join or m.awaiting_sync:
            self._heartbeat_ok(g, m)  # it is waiting on us, hence alive
            return
        log.info("group %s: member %s session expired after %d ms; removing it", g.group_id, m.member_id,
                 m.session_timeout_ms)
        self._remove_member(g, m, "session timeout")

    def _cancel_join_timer(self, g: Group) -> None:
        if g.join_timer is not None:
            g.join_timer.cancel()
            g.join_timer = None

    def _pending_expired(self, g: Group, member_id: str) -> None:
        if g.pending.pop(member_id, None) is not None:
            log.info("group %s: pending member %s did not rejoin; dropped", g.group_id, member_id)
            if g.is_(S.PREPARING_REBALANCE):
                self._maybe_complete_join(g)
            elif g.is_(S.EMPTY) and not g.members and not self._has_offsets(g):
                self._drop_if_unused(g)

    # -- membership changes ----------------------------------------------------------------------------
    def _add_member(self, g: Group, m: Member) -> None:
        if g.group_id not in self.groups:
            self.groups[g.group_id] = g
        h = g.pending.pop(m.member_id, None)
        if h is not None:
            h.cancel()
        if not g.members:
            g.protocol_type = m.protocol_type
        g.members[m.member_id] = m
        if g.leader is None:
            g.leader = m.member_id
        if m.group_instance_id:
            g.static[m.group_instance_id] = m.member_id
        g.new_member_added = True
        m.is_new = True

    def _drop_member(self, g: Group, m: Member) -> None:
        """Take `m` out of `g`: its timer stops, a parked request of its gets UNKNOWN_MEMBER_ID and
        its group.instance.id is free. The leader and the group's state are the caller's."""
        if m.expiry is not None:
            m.expiry.cancel()
            m.expiry = None
        resolve(m.join_future, JoinResult(E.UNKNOWN_MEMBER_ID, m.member_id))
        resolve(m.sync_future, SyncResult(E.UNKNOWN_MEMBER_ID))
        g.members.pop(m.member_id, None)
        if m.group_instance_id and g.static.get(m.group_instance_id) == m.member_id:
            del g.static[m.group_instance_id]

    def _remove_member(self, g: Group, m: Member, reason: str) -> None:
        self._drop_member(g, m)
        if g.leader == m.member_id:
            g.leader = next(iter(g.members), None)
        if g.is_(S.STABLE, S.COMPLETING_REBALANCE):
            self._prepare_rebalance(g, f"removing member {m.member_id}: {reason}")
        elif g.is_(S.PREPARING_REBALANCE):
            self._maybe_complete_join(g)

    def _has_offsets(self, g: Group) -> bool:
        return self.offsets is not None and self.offsets.has_offsets(g.group_id)

    def _drop_if_unused(self, g: Group) -> None:
        """An Empty group without members or offsets is forgotten (Dead), as Kafka does."""
        if g.is_(S.EMPTY) and not g.members and not g.pending and not self._has_offsets(g):
            g.state = S.DEAD
            if self.groups.get(g.group_id) is g:
                del self.groups[g.group_id]
            if self.offsets is not None and self.offsets.group_metadata(g.group_id) is not None:
                self.offsets.delete_group(g.group_id)

    # -- rebalancing -----------------------------------------------------------------------------------
    def _prepare_rebalance(self, g: Group, reason: str) -> None:
        if g.is_(S.COMPLETING_REBALANCE):
            for m in g.members.values():  # the assignment they wait for will not come
                m.assignment = b""
                resolve(m.sync_future, SyncResult(E.REBALANCE_IN_PROGRESS))
        initial = g.is_(S.EMPTY)
        log.info("group %s: preparing rebalance from generation %d (%s)", g.group_id, g.generation, reason)
        g.state = S.PREPARING_REBALANCE
        g.state_timestamp_ms = self.clock()
        self._cancel_join_timer(g)
        if initial:
            delay = self.config.group_initial_rebalance_delay_ms
            g.initial_delay_active = True
            g.initial_delay_remaining_ms = max(g.max_rebalance_timeout_ms() - delay, 0)
            g.new_member_added = False
            g.join_timer = self._loop.call_later(delay / 1000, self._initial_delay_expired, g, delay)
        else:
            g.initial_delay_active = False
            g.join_timer = self._loop.call_later(g.max_rebalance_timeout_ms() / 1000, self._complete_join, g)
            self._maybe_complete_join(g)

    def _initial_delay_expired(self, g: Group, delay: int) -> None:
        g.join_timer = None
        if g.new_member_added and g.initial_delay_remaining_ms > 0:
            step = min(self.config.group_initial_rebalance_delay_ms, g.initial_delay_remaining_ms)
            g.initial_delay_remaining_ms -= step
            g.new_member_added = False
            g.join_timer = self._loop.call_later(step / 1000, self._initial_delay_expired, g, step)
            return
        g.initial_delay_active = False
        self._complete_join(g)

    def _maybe_complete_join(self, g: Group) -> None:
        if g.is_(S.PREPARING_REBALANCE) and not g.initial_delay_active and g.all_joined():
            self._complete_join(g)

    def _complete_join(self, g: Group) -> None:
        self._cancel_join_timer(g)
        g.initial_delay_active = False
        if not g.is_(S.PREPARING_REBALANCE) or self.groups.get(g.group_id) is not g:
            return
        # dynamic members that did not rejoin are gone; static ones stay until their session ends
        for m in [m for m in g.members.values() if not m.awaiting_join and not m.group_instance_id]:
            log.info("group %s: member %s did not rejoin in time; removing it", g.group_id, m.member_id)
            self._drop_member(g, m)
        if g.leader not in g.members:
            g.leader = next(iter(g.members), None)
        g.generation += 1
        g.state_timestamp_ms = self.clock()
        if not g.members:
            g.state = S.EMPTY
            g.protocol = None
            log.info("group %s: generation %d is empty", g.group_id, g.generation)
            self._persist(g)
            return
        g.protocol = g.select_protocol()
        g.state = S.COMPLETING_REBALANCE
        log.info("group %s: generation %d with %d members, protocol %s, leader %s", g.group_id,
                 g.generation, len(g.members), g.protocol, g.leader)
        for m in g.members.values():
            m.assignment = b""
            m.is_new = False
            fut, m.join_future = m.join_future, None
            resolve(fut, self._join_result(g, m))
            self._heartbeat_ok(g, m)

    def _join_result(self, g: Group, m: Member, skip: bool = False) -> JoinResult:
        """The JoinGroup answer of generation `g.generation` to `m`; only the leader gets the members."""
        members = g.join_members() if m.member_id == g.leader else []
        return JoinResult(E.NONE, m.member_id, g.generation, g.protocol_type, g.protocol, g.leader or "", skip,
                          members)

    # -- persistence -----------------------------------------------------------------------------------
    def _group_value(self, g: Group) -> GroupMetadataValue:
        return GroupMetadataValue(
            g.protocol_type or "", g.generation, g.protocol, g.leader, g.state_timestamp_ms,
            tuple(MemberMetadata(m.member_id, m.client_id, m.client_host, m.session_timeout_ms,
                                 m.rebalance_timeout_ms, m.metadata(g.protocol), m.assignment, m.group_instance_id)
                  for m in g.members.values()))

    def _persist(self, g: Group) -> None:
        assert self.offsets is not None
        self.offsets.store_group(g.group_id, self._group_value(g))
