"""One classic consumer group's state: members, generation, chosen protocol, leader.

States (Kafka's classic protocol) and the moves between them, made by the coordinator's parts
(rebalance.py, membership.py; DeleteGroups in coordinator.py, offsets expiry in offsets.py):

    Empty ──join──► PreparingRebalance ──all rejoined / rebalance timeout──► CompletingRebalance
      ▲                    ▲   │ (nobody left)                                     │ leader's SyncGroup
      │                    │   └──────────► Empty                                  ▼
      │                    └──── member joins / leaves / dies / changes ◄──── Stable
    Dead ◄── DeleteGroups (Empty only), offsets expired while Empty

Invariants: `leader` is a member id in `members` or None iff `members` is empty; `static`
maps each group.instance.id to the member id currently holding it; a member with a pending
JoinGroup (`join_future`) or SyncGroup (`sync_future`) is alive by definition; the assignment
bytes are opaque to us (the leader's client-side assignor produced them).

This module holds data and pure helpers only: no timers, no I/O.
"""

from __future__ import annotations

import asyncio
import enum
import struct
from dataclasses import dataclass, field
from typing import Any


class GroupState(str, enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    is_new: bool = True
    join_future: asyncio.Future | None = None
    sync_future: asyncio.Future | None = None
    expiry: asyncio.TimerHandle | None = None
    last_heartbeat_ms: int = 0

    @property
    def awaiting_join(self) -> bool:
        return self.join_future is not None and not self.join_future.done()

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_future is not None and not self.sync_future.done()

    def metadata(self, protocol: str | None) -> bytes:
        for name, meta in self.protocols:
            if name == protocol:
                return meta
        return b""

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]


@dataclass
class JoinResult:
    error: int
    member_id: str = ""
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    skip_assignment: bool = False
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)  # id, instance, metadata


@dataclass
class SyncResult:
    error: int
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass
class GroupDescription:
    group_id: str
    error: int
    state: str
    protocol_type: str
    protocol: str
    members: list[MemberDescription]
    found: bool = True


@dataclass
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    pending: dict[str, asyncio.TimerHandle] = field(default_factory=dict)  # MEMBER_ID_REQUIRED issued
    static: dict[str, str] = field(default_factory=dict)  # group.instance.id → member id
    state_timestamp_ms: int = -1
    join_timer: asyncio.TimerHandle | None = None
    initial_delay_active: bool = False
    initial_delay_remaining_ms: int = 0
    new_member_added: bool = False

    def is_(self, *states: GroupState) -> bool:
        return self.state in states

    def supports(self, protocol_type: str, protocols: list[tuple[str, bytes]]) -> bool:
        """Kafka's rule: an empty group takes any non-empty protocol type and list; otherwise the
        type must match and one of the joiner's protocols must be supported by every member."""
        if not protocol_type or not protocols:
            return False
        if not self.members:
            return self.protocol_type in (None, "", protocol_type) or self.state == GroupState.EMPTY
        if protocol_type != self.protocol_type:
            return False
        names = {n for n, _ in protocols}
        for m in self.members.values():
            names &= set(m.protocol_names())
        return bool(names)

    def select_protocol(self) -> str | None:
        """Each member votes for the first of its protocols that every member supports; the most
        votes wins (ties go to the leader's preference order)."""
        if not self.members:
            return None
        members = list(self.members.values())
        common = set(members[0].protocol_names())
        for m in members[1:]:
            common &= set(m.protocol_names())
        if not common:
            return None
        votes: dict[str, int] = {}
        for m in members:
            for n in m.protocol_names():
                if n in common:
                    votes[n] = votes.get(n, 0) + 1
                    break
        leader = self.members.get(self.leader or "") or members[0]
        order = [n for n in leader.protocol_names() if n in common]
        return max(order, key=lambda n: (votes.get(n, 0), -order.index(n)))

    def join_members(self) -> list[tuple[str, str | None, bytes]]:
        """(member id, group.instance.id, metadata for the chosen protocol) of every member: what
        the leader's JoinGroup answer carries for its assignor."""
        return [(m.member_id, m.group_instance_id, m.metadata(self.protocol)) for m in self.members.values()]

    def fences(self, group_instance_id: str | None, member_id: str) -> bool:
        """Whether a request naming this group.instance.id comes from a member id other than the
        one holding it (FENCED_INSTANCE_ID). No instance id, or one nobody holds: never fenced."""
        return bool(group_instance_id) and self.static.get(group_instance_id, member_id) != member_id

    def all_joined(self) -> bool:
        return not self.pending and all(m.awaiting_join for m in self.members.values())

    def max_rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to, from the consumer protocol's subscription bytes;
        None when that is unknown (not a "consumer" group, no protocol chosen yet, or unreadable
        metadata)."""
        if self.protocol_type != "consumer" or not self.protocol:
            return None
        topics: set[str] = set()
        for m in self.members.values():
            got = parse_subscription_topics(m.metadata(self.protocol))
            if got is None:
                return None
            topics |= got
        return topics


def parse_subscription_topics(data: bytes) -> set[str] | None:
    """Topics of a ConsumerProtocolSubscription (i16 version, [string] topics, ...); None when
    the bytes are not one."""
    try:
        pos = 2
        (n,) = struct.unpack_from(">i", data, pos)
        pos += 4
        topics = set()
        for _ in range(max(n, 0)):
            (ln,) = struct.unpack_from(">h", data, pos)
            pos += 2
            if ln < 0 or pos + ln > len(data):
                return None
            topics.add(bytes(data[pos:pos + ln]).decode())
            pos += ln
        return topics
    except (struct.error, UnicodeDecodeError):
        return None


def resolve(fut: asyncio.Future | None, result: Any) -> None:
    """Complete a parked request unless its client has gone (future cancelled or done)."""
    if fut is not None and not fut.done():
        fut.set_result(result)
