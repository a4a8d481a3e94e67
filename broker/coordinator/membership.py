"""The membership APIs of the classic group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup.

`MembershipMixin` (a part of `GroupCoordinator`) answers each request with plain results and
Kafka error codes (group.py's JoinResult / SyncResult, errors.py); the state changes they cause
are rebalance.py's.

Parking: a JoinGroup during a rebalance, and a SyncGroup in CompletingRebalance, wait on an
asyncio.Future stored in the member (`join_future` / `sync_future`), as Kafka's delayed
operations do; the rebalance (or the leader's SyncGroup) completes it. A member has at most one
of each parked: a newer request answers the older one REBALANCE_IN_PROGRESS.

Member ids: a first JoinGroup gets `<group.instance.id or client.id>-<uuid4>`, Kafka's form.
From JoinGroup v4 on (`require_known_member_id`) it is first answered MEMBER_ID_REQUIRED and
held as pending until it joins again with that id. A static member (group.instance.id) that
restarts takes its old id's place and assignment; the old id is fenced (FENCED_INSTANCE_ID).
Group metadata is written when the leader's assignment is installed, and when a static member
replaces itself in a Stable group.
"""

from __future__ import annotations

import asyncio

import logging
import uuid
from typing import Any, Iterable, Mapping

from . import errors as E
from .group import Group, GroupState, JoinResult, Member, SyncResult, resolve
from .rebalance import RebalanceMixin

log = logging.getLogger("broker.coordinator")

S = GroupState


class MembershipMixin(RebalanceMixin):
    """JoinGroup, SyncGroup, Heartbeat and LeaveGroup (see module docstring)."""

    def _find_member(self, group_id: str, member_id: str,
                     group_instance_id: str | None) -> tuple[int, Group | None, Member | None]:
        """(error, group, member) of a SyncGroup or Heartbeat: the checks both make first."""
        err = self._check_active()
        if err:
            return err, None, None
        g = self.groups.get(group_id)
        if g is None:
            return E.UNKNOWN_MEMBER_ID, None, None
        if g.is_(S.DEAD):
            return E.COORDINATOR_NOT_AVAILABLE, g, None
        if g.fences(group_instance_id, member_id):
            return E.FENCED_INSTANCE_ID, g, None
        m = g.members.get(member_id)
        if m is None:
            return E.UNKNOWN_MEMBER_ID, g, None
        return E.NONE, g, m


    # -- JoinGroup --------------------------------------------------------------------------------------
    async def join(self, group_id: str, member_id: str, *, session_timeout_ms: int, rebalance_timeout_ms: int = -1,
                   protocol_type: str, protocols: Iterable[tuple[str, bytes]], group_instance_id: str | None = None,
                   client_id: str = "", client_host: str = "", require_known_member_id: bool = False,
                   reason: str | None = None, supports_skip_assignment: bool = True) -> JoinResult:
        """JoinGroup. `require_known_member_id` is true from v4 on: a first join without a member id
        gets MEMBER_ID_REQUIRED and its new id, and must join again with it. `supports_skip_assignment`
        is true from v9 on (the answer can tell a restarted static leader not to assign)."""
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
        if not self._accepts_joiner(g, member_id, group_instance_id):
            h = g.pending.pop(member_id, None)
            if h is not None:
                h.cancel()
            return JoinResult(E.GROUP_MAX_SIZE_REACHED, "")
        if not member_id:
            new_id = f"{group_instance_id or client_id}-{uuid.uuid4()}"  # Kafka's member id form
            if group_instance_id:
                old = g.static.get(group_instance_id)
                if old is not None and old in g.members:
                    return await self._replace_static(g, g.members[old], new_id, kw, supports_skip_assignment)
                return await self._add_and_join(g, Member(new_id, **kw))
            if require_known_member_id:
                if group_id not in self.groups:
                    self.groups[group_id] = g
                g.pending[new_id] = self._loop.call_later(session_timeout_ms / 1000, self._pending_expired, g, new_id)
                return JoinResult(E.MEMBER_ID_REQUIRED, new_id)
            return await self._add_and_join(g, Member(new_id, **kw))
        # a known member id
        if g.fences(group_instance_id, member_id):
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
            self._heartbeat_ok(g, m)
            return self._join_result(g, m)
        if g.is_(S.STABLE) and not changed and member_id != g.leader:
            self._heartbeat_ok(g, m)
            return self._join_result(g, m)
        self._update_member(m, kw)
        return await self._park_join(g, m, reason or "member rejoined")

    def _accepts_joiner(self, g: Group, member_id: str, group_instance_id: str | None) -> bool:
        """`group.max.size` (Kafka's acceptJoiningMember): a member already in the group, or a
        static member taking its own place back, is always let in; anyone else (a new member, or
        a pending one coming back with the id MEMBER_ID_REQUIRED gave it) only while fewer than
        the maximum are members, or, during PreparingRebalance, have rejoined. Checking only the
        first join let members that had all been given an id at once exceed the maximum."""
        if g.is_(S.EMPTY, S.DEAD) or (member_id and member_id in g.members):
            return True
        if group_instance_id and group_instance_id in g.static:
            return True
        if g.is_(S.PREPARING_REBALANCE):
            return sum(1 for m in g.members.values() if m.awaiting_join) < self.config.group_max_size
        return len(g.members) < self.config.group_max_size

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
        # shielded: a closed connection cancels the request's task (server.py) but not the join.
        # As in Kafka, whose coordinator knows nothing of connections, the member still counts as
        # joined, so the rebalance completes once the others rejoin; a dead member then misses its
        # heartbeats and its session timeout removes it. Unshielded, the cancelled join made it a
        # member that had not rejoined, and the group waited out the rebalance timeout (5 minutes
        # by default) with no partition assigned to anyone.
        return await asyncio.shield(fut)

    async def _replace_static(self, g: Group, old: Member, new_id: str, kw: dict[str, Any],
                              supports_skip_assignment: bool = True) -> JoinResult:
        """A static member restarted: it takes over its old member id's place (and assignment);
        the old id is fenced. In a Stable group whose chosen protocol stays the same there is no
        rebalance, even when the member's metadata changed (it usually does: sticky assignors put
        the partitions owned and the generation in it), as in Kafka."""
        log.info("group %s: static member %s rejoined; %s replaces %s", g.group_id, old.group_instance_id,
                 new_id, old.member_id)
        resolve(old.join_future, JoinResult(E.FENCED_INSTANCE_ID, old.member_id))
        resolve(old.sync_future, SyncResult(E.FENCED_INSTANCE_ID))
        if old.expiry is not None:
            old.expiry.cancel()
            old.expiry = None
        current_leader = g.leader
        before = g.members
        m = Member(new_id, **kw)
        m.assignment = old.assignment
        m.is_new = False
        g.members = {(new_id if k == old.member_id else k): (m if k == old.member_id else v)
                     for k, v in g.members.items()}
        g.static[kw["group_instance_id"]] = new_id
        if g.leader == old.member_id:
            g.leader = new_id
        if g.is_(S.STABLE) and g.select_protocol() == g.protocol:
            try:
                self._persist(g)
            except Exception as e:  # put the old member back, as Kafka reverts a failed append
                log.error("group %s: cannot store static member %s: %s", g.group_id, new_id, e)
                g.members = before
                g.static[kw["group_instance_id"]] = old.member_id
                g.leader = current_leader
                self._heartbeat_ok(g, old)
                return JoinResult(E.COORDINATOR_NOT_AVAILABLE, "")
            self._heartbeat_ok(g, m)
            if supports_skip_assignment:
                # v9+: the leader learns it leads (to watch metadata) but must not assign now
                return self._join_result(g, m, skip=g.leader == new_id)
            # before v9 the answer names the leader as it was, so a restarted leader does not run
            # an assignment that a Stable group would never hand out
            return JoinResult(E.NONE, new_id, g.generation, g.protocol_type, g.protocol, current_leader or "")
        return await self._park_join(g, m, f"static member {kw['group_instance_id']} rejoined")

    # -- SyncGroup --------------------------------------------------------------------------------------
    async def sync(self, group_id: str, generation: int, member_id: str, *, assignments: Mapping[str, bytes] | None = None,
                   group_instance_id: str | None = None, protocol_type: str | None = None,
                   protocol_name: str | None = None) -> SyncResult:
        """SyncGroup. The leader's carries every member's assignment; the others wait for it."""
        err, g, m = self._find_member(group_id, member_id, group_instance_id)
        if err:
            return SyncResult(err)
        assert g is not None and m is not None
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
        """Heartbeat: the member's session restarts; REBALANCE_IN_PROGRESS tells it to rejoin."""
        err, g, m = self._find_member(group_id, member_id, group_instance_id)
        if err:
            return err
        assert g is not None and m is not None
        if g.is_(S.EMPTY):
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
