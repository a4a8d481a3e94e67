"""`GroupCoordinator`: Kafka's classic group protocol and committed offsets, on one asyncio loop.

Operations (one coroutine per API; each returns plain results with Kafka error codes, so the
wire handlers in broker/handlers/groups.py only translate):
    join, sync, heartbeat, leave        membership and rebalancing
    commit, fetch, delete_offsets       committed offsets (GroupOffsetStore in logstore/groups.py)
    list_groups, describe, delete_groups

Model. All group state is touched on the loop thread only; timers are `loop.call_later`
handles, wall-clock timestamps come from `clock()` (ms). A JoinGroup or SyncGroup that must wait
for the rest of the group parks on an asyncio.Future that the rebalance completes, as Kafka's
delayed operations do. Timers:
  - member session: `session.timeout.ms` after its last heartbeat (or join/sync answer) it is
    removed, unless it has a JoinGroup or SyncGroup parked (it is alive, waiting on us);
  - pending member (after MEMBER_ID_REQUIRED): removed if it does not rejoin within its session;
  - rebalance: PreparingRebalance ends when every member has rejoined, or after the largest
    `rebalance.timeout.ms` (clients send max.poll.interval.ms), dropping those that did not;
  - first rebalance of an Empty group waits `group.initial.rebalance.delay.ms`, extended by as
    much again while new members keep arriving, up to the rebalance timeout;
  - offsets expiry: every `offsets.retention.check.interval.ms`, offsets of groups Empty for
    longer than `offsets.retention.minutes` are tombstoned; an Empty group with no offsets left
    becomes Dead and its metadata is tombstoned.

Persistence: group metadata (generation, protocol, leader, members and assignments) is written
when the leader's assignment is installed and when a group becomes Empty; offsets at every
commit; both to `__consumer_offsets` and replayed at `start()`. A group loaded with members is
Stable, and its members must heartbeat within their session as after a Kafka coordinator move.
OffsetCommit is acknowledged once its batch is appended (written to the file: it survives a
kill -9), as Kafka acks after the append; power-loss durability comes from the offsets topic's
flush policy (`flush.ms` in the background), or per commit, fsynced in a worker thread before
the answer, with `flush.messages=1` on `__consumer_offsets` (or `fsync_commits=True` here).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable, Mapping

from logstore.groups import (GroupMetadataValue, GroupOffsetStore, MemberMetadata, OffsetAndMetadata,
                             OFFSETS_TOPIC)

from . import errors as E
from .group import (Group, GroupDescription, GroupState, JoinResult, Member, MemberDescription, SyncResult,
                    resolve)

log = logging.getLogger("broker.coordinator")

TopicPartition = tuple[str, int]
S = GroupState


@dataclass
class CoordinatorConfig:
    """The broker settings the coordinator reads, by Kafka's names (dots → underscores)."""

    offsets_topic_num_partitions: int = 50
    offsets_topic_segment_bytes: int = 104857600
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1800000
    group_max_size: int = 2**31 - 1
    offsets_retention_minutes: int = 10080
    offsets_retention_check_interval_ms: int = 600000
    offset_metadata_max_bytes: int = 4096
    fsync_commits: bool = False

    @classmethod
    def from_mapping(cls, cfg: Any) -> "CoordinatorConfig":
        """Pick our keys out of a server config: a Mapping by Kafka name, or an object with
        `get(name)` or attributes named with underscores. Missing keys keep Kafka's defaults."""
        kw: dict[str, Any] = {}
        for f in fields(cls):
            dotted = f.name.replace("_", ".")
            val = None
            if isinstance(cfg, Mapping):
                val = cfg.get(dotted, cfg.get(f.name))
            else:
                getter = getattr(cfg, "get", None)
                if callable(getter):
                    try:
                        val = getter(dotted)
                    except (KeyError, LookupError, ValueError):
                        val = None
                if val is None:
                    val = getattr(cfg, f.name, None)
            if val is None:
                continue
            if f.type in ("bool", bool):
                kw[f.name] = val if isinstance(val, bool) else str(val).strip().lower() == "true"
            else:
                kw[f.name] = int(val)
        return cls(**kw)


class GroupCoordinator:
    """Consumer groups and their offsets for one broker (which coordinates every group).

    Use: `c = GroupCoordinator(store, config)`; `await c.start()` on the broker's loop (loads
    `__consumer_offsets`); the handlers call the coroutines; `await c.stop()` before the store
    closes. `clock()` gives wall-clock ms (tests may pass their own).
    """

    def __init__(self, store: Any, config: CoordinatorConfig | Mapping[str, Any] | None = None, *,
                 clock: Callable[[], int] | None = None) -> None:
        self.store = store
        if config is None:
            config = CoordinatorConfig()
        elif not isinstance(config, CoordinatorConfig):
            config = CoordinatorConfig.from_mapping(config)
        self.config = config
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.groups: dict[str, Group] = {}
        self.offsets: GroupOffsetStore | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.state = "inactive"  # inactive → loading → active → inactive
        self._expiry_task: asyncio.TimerHandle | None = None
        self._listener_installed = False

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

    def _check_active(self) -> int:
        if self.state == "loading":
            return E.COORDINATOR_LOAD_IN_PROGRESS
        if self.state != "active":
            return E.NOT_COORDINATOR
        return E.NONE

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        assert self.loop is not None, "GroupCoordinator.start() was not awaited"
        return self.loop

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

    def _schedule_expiry(self) -> None:
        self._expiry_task = self._loop.call_later(self.config.offsets_retention_check_interval_ms / 1000,
                                                  self._expiry_tick)

    def _expiry_tick(self) -> None:
        if self.state != "active":
            return
        try:
            self.expire_offsets()
        except Exception:
            log.exception("offsets expiry failed")
        self._schedule_expiry()

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

    def _remove_member(self, g: Group, m: Member, reason: str) -> None:
        if m.expiry is not None:
            m.expiry.cancel()
            m.expiry = None
        resolve(m.join_future, JoinResult(E.UNKNOWN_MEMBER_ID, m.member_id))
        resolve(m.sync_future, SyncResult(E.UNKNOWN_MEMBER_ID))
        g.members.pop(m.member_id, None)
        if m.group_instance_id and g.static.get(m.group_instance_id) == m.member_id:
            del g.static[m.group_instance_id]
        if g.leader == m.member_id:
            g.leader = next(iter(g.members), None)
        if g.is_(S.STABLE, S.COMPLETING_REBALANCE):
            self._prepare_rebalance(g, f"removing member {m.member_id}: {reason}")
        elif g.is_(S.PREPARING_REBALANCE):
            self._maybe_complete_join(g)

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
            if m.expiry is not None:
                m.expiry.cancel()
            resolve(m.sync_future, SyncResult(E.UNKNOWN_MEMBER_ID))
            del g.members[m.member_id]
            if m.group_instance_id and g.static.get(m.group_instance_id) == m.member_id:
                del g.static[m.group_instance_id]
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
        everyone = [(m.member_id, m.group_instance_id, m.metadata(g.protocol)) for m in g.members.values()]
        for m in g.members.values():
            m.assignment = b""
            m.is_new = False
            fut, m.join_future = m.join_future, None
            resolve(fut, self._join_result(g, m, everyone if m.member_id == g.leader else []))
            self._heartbeat_ok(g, m)

    def _join_result(self, g: Group, m: Member, members: list, skip: bool = False) -> JoinResult:
        return JoinResult(E.NONE, m.member_id, g.generation, g.protocol_type, g.protocol, g.leader or "", skip,
                          members)

    def _group_value(self, g: Group) -> GroupMetadataValue:
        return GroupMetadataValue(
            g.protocol_type or "", g.generation, g.protocol, g.leader, g.state_timestamp_ms,
            tuple(MemberMetadata(m.member_id, m.client_id, m.client_host, m.session_timeout_ms,
                                 m.rebalance_timeout_ms, m.metadata(g.protocol), m.assignment, m.group_instance_id)
                  for m in g.members.values()))

    def _persist(self, g: Group) -> None:
        assert self.offsets is not None
        self.offsets.store_group(g.group_id, self._group_value(g))

    # -- JoinGroup --------------------------------------------------------------------------------------
    async def join(self, group_id: str, member_id: str, *, session_timeout_ms: int, rebalance_timeout_ms: int = -1,
                   protocol_type: str, protocols: Iterable[tuple[str, bytes]], group_instance_id: str | None = None,
                   client_id: str = "", client_host: str = "", require_known_member_id: bool = False,
                   reason: str | None = None) -> JoinResult:
        """JoinGroup. `require_known_member_id` is true from v4 on: a first join without a member id
        gets MEMBER_ID_REQUIRED and its new id, and must join again with it."""
        err = self._check_active()
        if err:
            return JoinResult(err, member_id)
        protocols = [(n, bytes(meta)) for n, meta in protocols]
        if not group_id:
            return JoinResult(E.INVALID_GROUP_ID, member_id)
        if rebalance_timeout_ms < 0:
            rebalance_timeout_ms = session_timeout_ms  # v0 clients have no rebalance timeout
        if not self.config.group_min_session_timeout_ms <= session_timeout_ms <= self.config.group_max_session_timeout_ms:
            return JoinResult(E.INVALID_SESSION_TIMEOUT, member_id)
        g = self.groups.get(group_id)
        if g is None:
            if member_id:
                return JoinResult(E.UNKNOWN_MEMBER_ID, member_id)
            g = Group(group_id)
        if g.is_(S.DEAD):
            return JoinResult(E.COORDINATOR_NOT_AVAILABLE, member_id)
        if not g.supports(protocol_type, protocols):
            return JoinResult(E.INCONSISTENT_GROUP_PROTOCOL, member_id)
        kw = dict(group_instance_id=group_instance_id, client_id=client_id, client_host=client_host,
                  session_timeout_ms=session_timeout_ms, rebalance_timeout_ms=rebalance_timeout_ms,
                  protocol_type=protocol_type, protocols=protocols)
        if not member_id:
            if len(g.members) >= self.config.group_max_size and not (
                    group_instance_id and group_instance_id in g.static):
                return JoinResult(E.GROUP_MAX_SIZE_REACHED, member_id)
            new_id = f"{group_instance_id or client_id}-{uuid.uuid4()}"  # Kafka's member id form
            if group_instance_id:
                old = g.static.get(group_instance_id)
                if old is not None and old in g.members:
                    return await self._replace_static(g, g.members[old], new_id, kw)
                return await self._add_and_join(g, Member(new_id, **kw))
            if require_known_member_id:
                if group_id not in self.groups:
                    self.groups[group_id] = g
                g.pending[new_id] = self._loop.call_later(session_timeout_ms / 1000, self._pending_expired, g, new_id)
                return JoinResult(E.MEMBER_ID_REQUIRED, new_id)
            return await self._add_and_join(g, Member(new_id, **kw))
        # a known member id
        if group_instance_id:
            holder = g.static.get(group_instance_id)
            if holder is not None and holder != member_id:
                return JoinResult(E.FENCED_INSTANCE_ID, member_id)
        if member_id in g.pending:
            return await self._add_and_join(g, Member(member_id, **kw))
        m = g.members.get(member_id)
        if m is None or g.is_(S.EMPTY, S.DEAD):
            return JoinResult(E.UNKNOWN_MEMBER_ID, member_id)
        if group_instance_id and m.group_instance_id != group_instance_id:
            return JoinResult(E.FENCED_INSTANCE_ID, member_id)
        changed = m.protocols != protocols
        if g.is_(S.COMPLETING_REBALANCE) and not changed:
            # a resend of the JoinGroup whose answer it already got: answer the same again
            everyone = [(x.member_id, x.group_instance_id, x.metadata(g.protocol)) for x in g.members.values()]
            self._heartbeat_ok(g, m)
            return self._join_result(g, m, everyone if member_id == g.leader else [])
        if g.is_(S.STABLE) and not changed and member_id != g.leader:
            self._heartbeat_ok(g, m)
            return self._join_result(g, m, [])
        self._update_member(m, kw)
        return await self._park_join(g, m, reason or "member rejoined")

    def _update_member(self, m: Member, kw: dict[str, Any]) -> None:
        m.client_id = kw["client_id"]
        m.client_host = kw["client_host"]
        m.session_timeout_ms = kw["session_timeout_ms"]
        m.rebalance_timeout_ms = kw["rebalance_timeout_ms"]
        m.protocols = kw["protocols"]

    async def _add_and_join(self, g: Group, m: Member) -> JoinResult:
        self._add_member(g, m)
        return await self._park_join(g, m, f"new member {m.member_id} joined")

    async def _park_join(self, g: Group, m: Member, reason: str) -> JoinResult:
        resolve(m.join_future, JoinResult(E.REBALANCE_IN_PROGRESS, m.member_id))  # a superseded join
        fut = self._loop.create_future()
        m.join_future = fut
        if g.is_(S.STABLE, S.COMPLETING_REBALANCE, S.EMPTY):
            self._prepare_rebalance(g, reason)
        else:
            g.new_member_added = g.new_member_added or m.is_new
            self._maybe_complete_join(g)
        return await fut

    def _pending_expired(self, g: Group, member_id: str) -> None:
        if g.pending.pop(member_id, None) is not None:
            log.info("group %s: pending member %s did not rejoin; dropped", g.group_id, member_id)
            if g.is_(S.PREPARING_REBALANCE):
                self._maybe_complete_join(g)
            elif g.is_(S.EMPTY) and not g.members and not self._has_offsets(g):
                self._drop_if_unused(g)

    async def _replace_static(self, g: Group, old: Member, new_id: str, kw: dict[str, Any]) -> JoinResult:
        """A static member restarted: it takes over its old member id's place (and assignment);
        the old id is fenced. Stable with the same protocols: no rebalance."""
        log.info("group %s: static member %s rejoined; %s replaces %s", g.group_id, old.group_instance_id,
                 new_id, old.member_id)
        resolve(old.join_future, JoinResult(E.FENCED_INSTANCE_ID, old.member_id))
        resolve(old.sync_future, SyncResult(E.FENCED_INSTANCE_ID))
        if old.expiry is not None:
            old.expiry.cancel()
        changed = old.protocols != kw["protocols"]
        m = Member(new_id, **kw)
        m.assignment = old.assignment
        m.is_new = False
        g.members = {(new_id if k == old.member_id else k): (m if k == old.member_id else v)
                     for k, v in g.members.items()}
        g.static[kw["group_instance_id"]] = new_id
        if g.leader == old.member_id:
            g.leader = new_id
        if g.is_(S.STABLE) and not changed:
            self._persist(g)
            self._heartbeat_ok(g, m)
            is_leader = g.leader == new_id
            everyone = [(x.member_id, x.group_instance_id, x.metadata(g.protocol)) for x in g.members.values()]
            return self._join_result(g, m, everyone if is_leader else [], skip=is_leader)
        return await self._park_join(g, m, f"static member {kw['group_instance_id']} rejoined")

    # -- SyncGroup --------------------------------------------------------------------------------------
    async def sync(self, group_id: str, generation: int, member_id: str, *, assignments: Mapping[str, bytes] | None = None,
                   group_instance_id: str | None = None, protocol_type: str | None = None,
                   protocol_name: str | None = None) -> SyncResult:
        err = self._check_active()
        if err:
            return SyncResult(err)
        g = self.groups.get(group_id)
        if g is None:
            return SyncResult(E.UNKNOWN_MEMBER_ID)
        if g.is_(S.DEAD):
            return SyncResult(E.COORDINATOR_NOT_AVAILABLE)
        if group_instance_id and g.static.get(group_instance_id, member_id) != member_id:
            return SyncResult(E.FENCED_INSTANCE_ID)
        m = g.members.get(member_id)
        if m is None:
            return SyncResult(E.UNKNOWN_MEMBER_ID)
        if generation != g.generation:
            return SyncResult(E.ILLEGAL_GENERATION)
        if (protocol_type is not None and protocol_type != g.protocol_type) or \
                (protocol_name is not None and protocol_name != g.protocol):
            return SyncResult(E.INCONSISTENT_GROUP_PROTOCOL)
        if g.is_(S.EMPTY):
            return SyncResult(E.UNKNOWN_MEMBER_ID)
        if g.is_(S.PREPARING_REBALANCE):
            return SyncResult(E.REBALANCE_IN_PROGRESS)
        if g.is_(S.STABLE):
            self._heartbeat_ok(g, m)
            return SyncResult(E.NONE, g.protocol_type, g.protocol, m.assignment)
        # CompletingRebalance: wait for the leader's assignment
        resolve(m.sync_future, SyncResult(E.REBALANCE_IN_PROGRESS))
        fut = self._loop.create_future()
        m.sync_future = fut
        if member_id == g.leader:
            given = dict(assignments or {})
            for x in g.members.values():
                x.assignment = bytes(given.get(x.member_id, b""))
            try:
                self._persist(g)
            except Exception as e:
                log.error("group %s: cannot store generation %d: %s", g.group_id, g.generation, e)
                for x in g.members.values():
                    x.assignment = b""
                    resolve(x.sync_future, SyncResult(E.COORDINATOR_NOT_AVAILABLE))
                self._prepare_rebalance(g, "failed to store the group metadata")
                return await fut
            g.state = S.STABLE
            g.state_timestamp_ms = self.clock()
            for x in g.members.values():
                resolve(x.sync_future, SyncResult(E.NONE, g.protocol_type, g.protocol, x.assignment))
                x.sync_future = None
                self._heartbeat_ok(g, x)
        return await fut

    # -- Heartbeat ---------------------------------------------------------------------------------------
    async def heartbeat(self, group_id: str, generation: int, member_id: str,
                        group_instance_id: str | None = None) -> int:
        err = self._check_active()
        if err:
            return err
        g = self.groups.get(group_id)
        if g is None:
            return E.UNKNOWN_MEMBER_ID
        if g.is_(S.DEAD):
            return E.COORDINATOR_NOT_AVAILABLE
        if group_instance_id and g.static.get(group_instance_id, member_id) != member_id:
            return E.FENCED_INSTANCE_ID
        m = g.members.get(member_id)
        if m is None or g.is_(S.EMPTY):
            return E.UNKNOWN_MEMBER_ID
        if generation != g.generation:
            return E.ILLEGAL_GENERATION
        self._heartbeat_ok(g, m)
        if g.is_(S.PREPARING_REBALANCE):
            return E.REBALANCE_IN_PROGRESS
        return E.NONE

    # -- LeaveGroup --------------------------------------------------------------------------------------
    async def leave(self, group_id: str, members: Iterable[tuple[str, str | None]]) -> tuple[int, list[tuple[str, str | None, int]]]:
        """LeaveGroup of (member id, group.instance.id) pairs. Returns (top-level error, per member
        (member id, instance id, error)). A static member may leave by instance id alone."""
        err = self._check_active()
        members = list(members)
        if err:
            return err, []
        g = self.groups.get(group_id)
        if g is None:
            return E.NONE, [(mid, iid, E.UNKNOWN_MEMBER_ID) for mid, iid in members]
        if g.is_(S.DEAD):
            return E.COORDINATOR_NOT_AVAILABLE, []
        out = []
        for mid, iid in members:
            if iid:
                holder = g.static.get(iid)
                if holder is None:
                    out.append((mid, iid, E.UNKNOWN_MEMBER_ID))
                    continue
                if mid and mid != holder:
                    out.append((mid, iid, E.FENCED_INSTANCE_ID))
                    continue
                mid = holder
            elif mid in g.pending:
                g.pending.pop(mid).cancel()
                out.append((mid, iid, E.NONE))
                self._maybe_complete_join(g)
                continue
            m = g.members.get(mid)
            if m is None:
                out.append((mid, iid, E.UNKNOWN_MEMBER_ID))
                continue
            log.info("group %s: member %s left", group_id, mid)
            self._remove_member(g, m, "member left")
            out.append((mid, iid, E.NONE))
        return E.NONE, out

    # -- offsets -----------------------------------------------------------------------------------------
    def _partition_error(self, topic: str, partition: int) -> int:
        try:
            info = self.store.topic(topic)
        except Exception:
            return E.UNKNOWN_TOPIC_OR_PARTITION
        return E.NONE if 0 <= partition < info.partitions else E.UNKNOWN_TOPIC_OR_PARTITION

    async def commit(self, group_id: str, generation: int, member_id: str,
                     offsets: Mapping[TopicPartition, OffsetAndMetadata], *,
                     group_instance_id: str | None = None) -> dict[TopicPartition, int]:
        """OffsetCommit. Generation -1 with no member id is a commit from outside the group
        protocol (admin, a consumer using assign()): allowed while the group is Empty."""
        err = self._check_active()
        if not err and not group_id:
            err = E.INVALID_GROUP_ID
        if err:
            return {tp: err for tp in offsets}
        g = self.groups.get(group_id)
        if g is None:
            if generation >= 0:
                return {tp: E.ILLEGAL_GENERATION for tp in offsets}
            g = Group(group_id, state_timestamp_ms=self.clock())
            self.groups[group_id] = g
        err = self._commit_error(g, generation, member_id, group_instance_id)
        if err:
            return {tp: err for tp in offsets}
        result: dict[TopicPartition, int] = {}
        good: dict[TopicPartition, OffsetAndMetadata] = {}
        now = self.clock()
        for tp, om in offsets.items():
            e = self._partition_error(*tp)
            if not e and len((om.metadata or "").encode()) > self.config.offset_metadata_max_bytes:
                e = E.OFFSET_METADATA_TOO_LARGE
            result[tp] = e
            if not e:
                good[tp] = om if om.commit_timestamp >= 0 else OffsetAndMetadata(
                    om.offset, om.metadata or "", now, om.leader_epoch, om.expire_timestamp)
        if good:
            assert self.offsets is not None
            try:
                if self.config.fsync_commits or self.offsets.sync_commits():  # fsync off the loop
                    await self._loop.run_in_executor(None, lambda: self.offsets.commit(group_id, good, fsync=True))
                else:
                    self.offsets.commit(group_id, good)
            except Exception as e:
                log.error("group %s: cannot write offsets to %s: %s", group_id, OFFSETS_TOPIC, e)
                code = getattr(e, "error_code", E.UNKNOWN_SERVER_ERROR)
                for tp in good:
                    result[tp] = code if code in (E.NOT_COORDINATOR,) else E.COORDINATOR_NOT_AVAILABLE
        return result

    def _commit_error(self, g: Group, generation: int, member_id: str, instance: str | None) -> int:
        if g.is_(S.DEAD):
            return E.COORDINATOR_NOT_AVAILABLE
        if instance and g.static.get(instance, member_id) != member_id:
            return E.FENCED_INSTANCE_ID
        if generation < 0 and g.is_(S.EMPTY):
            return E.NONE
        if g.is_(S.COMPLETING_REBALANCE):
            return E.REBALANCE_IN_PROGRESS
        m = g.members.get(member_id)
        if m is None:
            return E.UNKNOWN_MEMBER_ID
        if generation != g.generation:
            return E.ILLEGAL_GENERATION
        self._heartbeat_ok(g, m)
        return E.NONE

    async def fetch(self, group_id: str, partitions: Iterable[TopicPartition] | None = None, *,
                    require_stable: bool = False) -> tuple[int, dict[TopicPartition, OffsetAndMetadata | None]]:
        """OffsetFetch: (error, offsets). `partitions` None = every partition with an offset;
        asked-for partitions without one map to None (the wire answer is offset -1)."""
        err = self._check_active()
        if err:
            return err, {}
        assert self.offsets is not None
        if partitions is None:
            return E.NONE, dict(self.offsets.fetch(group_id))
        parts = list(partitions)
        have = self.offsets.fetch(group_id, parts)
        return E.NONE, {tp: have.get(tp) for tp in parts}

    async def delete_offsets(self, group_id: str, partitions: Iterable[TopicPartition]) -> tuple[int, dict[TopicPartition, int]]:
        """OffsetDelete: allowed for an Empty group, or for topics a consumer group does not
        subscribe to (GROUP_SUBSCRIBED_TO_TOPIC otherwise)."""
        err = self._check_active()
        parts = list(partitions)
        if err:
            return err, {}
        g = self.groups.get(group_id)
        if g is None or g.is_(S.DEAD):
            return E.GROUP_ID_NOT_FOUND, {}
        subscribed: set[str] = set()
        if not g.is_(S.EMPTY):
            topics = g.subscribed_topics()
            if topics is None:
                return E.NON_EMPTY_GROUP, {}
            subscribed = topics
        result: dict[TopicPartition, int] = {}
        victims = []
        for tp in parts:
            if tp[0] in subscribed:
                result[tp] = E.GROUP_SUBSCRIBED_TO_TOPIC
            else:
                result[tp] = self._partition_error(*tp)
                if not result[tp]:
                    victims.append(tp)
        assert self.offsets is not None
        if victims:
            self.offsets.delete_offsets(group_id, victims)
        return E.NONE, result

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

    # -- housekeeping -----------------------------------------------------------------------------------------
    def expire_offsets(self, now_ms: int | None = None) -> dict[str, list[TopicPartition]]:
        """Tombstone the offsets of groups Empty for longer than offsets.retention.minutes
        (measured from when the group became Empty, or the commit when that is unknown); an Empty
        group with no offsets left becomes Dead and its metadata is tombstoned."""
        if self.offsets is None:
            return {}
        now = self.clock() if now_ms is None else now_ms

        def eligible(gid: str) -> int | None:
            g = self.groups.get(gid)
            if g is None:
                return -1
            return g.state_timestamp_ms if g.is_(S.EMPTY) else None

        removed = self.offsets.expire(now, self.config.offsets_retention_minutes * 60_000, eligible=eligible)
        for g in list(self.groups.values()):  # Empty and nothing left: Dead, as in Kafka's cleanup
            self._drop_if_unused(g)
        if removed:
            log.info("expired offsets of %d groups", len(removed))
        return removed

    def _on_topic_change(self, topic: str, change: str) -> None:
        """A deleted topic takes its committed offsets with it (may run on any thread)."""
        if change != "delete" or topic == OFFSETS_TOPIC or self.offsets is None:
            return
        n = self.offsets.remove_topic(topic)
        if n:
            log.info("removed %d committed offsets of deleted topic %s", n, topic)
