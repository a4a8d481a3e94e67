"""`GroupCoordinator`: Kafka's classic group protocol and committed offsets, on one asyncio loop.

Operations (one coroutine per API; each returns plain results with Kafka error codes, so the
wire handlers in broker/handlers/groups.py only translate):
    join, sync, heartbeat, leave        membership and rebalancing      membership.py, rebalance.py
    consumer_heartbeat, consumer_describe  KIP-848 consumer groups      consumer_group.py (not persisted)
    commit, fetch, delete_offsets       committed offsets, expiry       offsets.py
    list_groups, describe, delete_groups                                here
    start, stop                         lifecycle, loading groups       here

`GroupCoordinator` is those mixins put together over the shared state of base.py. Model: all
group state is touched on the loop thread only; timers are `loop.call_later` handles (listed in
rebalance.py and offsets.py), wall-clock timestamps come from `clock()` (ms). A JoinGroup or
SyncGroup that must wait for the rest of the group parks on an asyncio.Future that the
rebalance completes, as Kafka's delayed operations do.

Persistence: group metadata (generation, protocol, leader, members and assignments) is written
when the leader's assignment is installed and when a group becomes Empty; offsets at every
commit (offsets.py says how durably); both to `__consumer_offsets` and replayed at `start()`. A
group loaded with members is Stable, and its members must heartbeat within their session as
after a Kafka coordinator move.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Iterable

from logstore.groups import OFFSETS_TOPIC, GroupOffsetStore

from . import errors as E
from .config import CoordinatorConfig
from .consumer_group import ConsumerGroupMixin
from .group import Group, GroupDescription, GroupState, JoinResult, Member, MemberDescription, SyncResult, resolve
from .membership import MembershipMixin
from .offsets import OffsetsMixin

__all__ = ["GroupCoordinator", "CoordinatorConfig"]

log = logging.getLogger("broker.coordinator")

S = GroupState


class GroupCoordinator(MembershipMixin, OffsetsMixin, ConsumerGroupMixin):
    """Consumer groups and their offsets for one broker (which coordinates every group).

    Use: `c = GroupCoordinator(store, config)`; `await c.start()` on the broker's loop (loads
    `__consumer_offsets`); the handlers call the coroutines; `await c.stop()` before the store
    closes. `config` is a CoordinatorConfig, a Mapping by Kafka name, or None (Kafka's defaults);
    `clock()` gives wall-clock ms (tests may pass their own).
    """

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open (creating if needed) `__consumer_offsets` and load every group from it. Requests
        arriving meanwhile get COORDINATOR_LOAD_IN_PROGRESS, as from Kafka."""
        if self.state != "inactive":
            return
        self.loop = asyncio.get_running_loop()
        self.state = "loading"
        started = time.monotonic()
        try:
            self.offsets = await self.loop.run_in_executor(
                None, lambda: GroupOffsetStore.of(self.store, self.config.offsets_topic_num_partitions,
                                                  segment_bytes=self.config.offsets_topic_segment_bytes))
        except BaseException:
            self.state = "inactive"
            raise
        # topics deleted while we were not listening (an offline tool) take their offsets along
        for topic in sorted(t for t in self.offsets.topics() if not self.store.has_topic(t)):
            n = self.offsets.remove_topic(topic)
            log.info("removed %d committed offsets of %s, a topic that no longer exists", n, topic)
        for gid in self.offsets.groups():
            self._load_group(gid)
        if not self._listener_installed:
            self.store.add_topic_listener(self._on_topic_change)
            self._listener_installed = True
        self.state = "active"
        self._schedule_expiry()
        log.info("group coordinator loaded %d groups from %d records of %s in %.3fs", len(self.groups),
                 self.offsets.loaded_records, OFFSETS_TOPIC, time.monotonic() - started)

    async def stop(self) -> None:
        """Stop coordinating: parked requests get NOT_COORDINATOR, timers are cancelled. The
        offsets already written stay; call before closing the store."""
        if self.state == "inactive":
            return
        self.state = "inactive"
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            self._expiry_task = None
        for g in self.groups.values():
            self._cancel_join_timer(g)
            for h in g.pending.values():
                h.cancel()
            for m in g.members.values():
                if m.expiry is not None:
                    m.expiry.cancel()
                resolve(m.join_future, JoinResult(E.NOT_COORDINATOR, m.member_id))
                resolve(m.sync_future, SyncResult(E.NOT_COORDINATOR))
        self.groups.clear()
        self._stop_consumer_groups()

    async def join(self, group_id: str, member_id: str, **kw) -> JoinResult:  # type: ignore[override]
        """JoinGroup (membership.py), after the group-type check: a consumer-protocol group with
        members refuses classic members (no online migration here); an empty one becomes classic."""
        cg = self.consumer_groups.get(group_id)
        if cg is not None and self.state == "active":
            if cg.members:
                return JoinResult(E.INCONSISTENT_GROUP_PROTOCOL, member_id)
            del self.consumer_groups[group_id]
        return await super().join(group_id, member_id, **kw)

    def _load_group(self, gid: str) -> None:
        assert self.offsets is not None
        g = Group(gid)
        meta = self.offsets.group_metadata(gid)
        if meta is not None:
            g.generation = meta.generation
            g.protocol_type = meta.protocol_type or None
            g.state_timestamp_ms = meta.current_state_timestamp
            if meta.members and meta.protocol:
                g.protocol = meta.protocol
                g.leader = meta.leader if any(m.member_id == meta.leader for m in meta.members) \
                    else meta.members[0].member_id
                g.state = S.STABLE
                for mm in meta.members:
                    m = Member(mm.member_id, mm.group_instance_id, mm.client_id, mm.client_host,
                               mm.session_timeout, mm.rebalance_timeout, meta.protocol_type,
                               [(meta.protocol, mm.subscription)], mm.assignment, is_new=False)
                    g.members[m.member_id] = m
                    if m.group_instance_id:
                        g.static[m.group_instance_id] = m.member_id
                    self._heartbeat_ok(g, m)
        self.groups[gid] = g

    # -- admin views ----------------------------------------------------------------------------------------
    def list_groups(self, states: Iterable[str] = (), types: Iterable[str] = ()) -> list[tuple[str, str, str]]:
        """(group id, protocol type, state) of live groups, filtered by state / type names
        (case-insensitive; every group here is a "classic" group)."""
        want_states = {s.lower() for s in states}
        want_types = {t.lower() for t in types}
        if want_types and "classic" not in want_types:
            return []
        return [(gid, g.protocol_type or "", g.state.value) for gid, g in sorted(self.groups.items())
                if not g.is_(S.DEAD) and (not want_states or g.state.value.lower() in want_states)]

    def describe(self, group_id: str) -> GroupDescription:
        """DescribeGroups of one group; member metadata and assignments only while Stable."""
        err = self._check_active()
        g = self.groups.get(group_id)
        if err or g is None or g.is_(S.DEAD):
            return GroupDescription(group_id, err, S.DEAD.value, "", "", [], found=False)
        stable = g.is_(S.STABLE)
        members = [MemberDescription(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                                     m.metadata(g.protocol) if stable else b"", m.assignment if stable else b"")
                   for m in g.members.values()]
        return GroupDescription(group_id, E.NONE, g.state.value, g.protocol_type or "",
                                (g.protocol or "") if stable else "", members)

    async def delete_groups(self, group_ids: Iterable[str]) -> dict[str, int]:
        """DeleteGroups: Empty groups only (NON_EMPTY_GROUP otherwise); their offsets and metadata
        are tombstoned in one batch."""
        err = self._check_active()
        out: dict[str, int] = {}
        for gid in group_ids:
            if err:
                out[gid] = err
                continue
            cg = self.consumer_groups.get(gid)
            if cg is not None:  # a consumer-protocol group: Empty only, as a classic one
                if cg.members:
                    out[gid] = E.NON_EMPTY_GROUP
                else:
                    assert self.offsets is not None
                    self.offsets.delete_group(gid)
                    del self.consumer_groups[gid]
                    out[gid] = E.NONE
                continue
            g = self.groups.get(gid)
            if g is None or g.is_(S.DEAD):
                out[gid] = E.GROUP_ID_NOT_FOUND
            elif not g.is_(S.EMPTY) or g.members:
                out[gid] = E.NON_EMPTY_GROUP
            else:
                assert self.offsets is not None
                self.offsets.delete_group(gid)
                for h in g.pending.values():
                    h.cancel()
                g.state = S.DEAD
                del self.groups[gid]
                out[gid] = E.NONE
        return out

