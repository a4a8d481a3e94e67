"""The assignment side of the consumer group protocol (KIP-848), pure (no timers, no I/O):
the server-side assignors, the group's data model, and reconciliation. consumer_group.py drives
them from ConsumerGroupHeartbeat requests and timers. Group metadata is in memory only.

Assignors: `assign(name, members, topics, previous)` where
    members   member id → the topic names it subscribes to (only existing topics matter)
    topics    topic name → (topic id, partition count): the subscribed topics that exist
    previous  member id → its current target assignment {topic id: set of partitions}
returns member id → {topic id: frozenset of partitions}, every member present (possibly empty).
Invariants of both: each partition of a subscribed topic goes to exactly one member that
subscribes to its topic; a member's share differs from any other eligible member's by at most
one partition where subscriptions allow it.
  - `uniform` (Kafka's default) is sticky, as Kafka's UniformAssignor: partitions stay with their
    previous owner as far as balance allows; the remainder goes to the least loaded eligible
    members; then partitions move from the most to the least loaded eligible member until no move
    narrows the spread. (Kafka has two builders, for homogeneous and heterogeneous
    subscriptions; one greedy algorithm here gives the same balance, not always the same
    partition choice.)
  - `range` has the shape of Kafka's RangeAssignor: per topic, the members subscribing to it in
    member-id order each take a contiguous range, the first `partitions % members` one more; it
    is not sticky.

Data model: `ConsumerGroup` (epochs, members, target assignment, `partition_owner`: who holds
each partition, assigned or pending revocation) and `ConsumerMember` (epoch, previous epoch,
MemberState, assigned and pending-revocation partitions). Invariant: `partition_owner` is
exactly the union of the members' assigned and pending partitions (`set_assignment` keeps it),
so a partition is never handed to a second member while the first still holds it.

Reconciliation: `reconcile(group, member, owned)`, Kafka's CurrentAssignmentBuilder (see
consumer_group.py's docstring for the rules).
"""

from __future__ import annotations

import enum
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

Assignment = dict[uuid.UUID, frozenset[int]]

ASSIGNORS = ("uniform", "range")
DEFAULT_ASSIGNOR = "uniform"


def assign(name: str, members: Mapping[str, Iterable[str]], topics: Mapping[str, tuple[uuid.UUID, int]],
           previous: Mapping[str, Mapping[uuid.UUID, Iterable[int]]]) -> dict[str, Assignment]:
    """The target assignment of `members` by assignor `name` (see the module docstring)."""
    subs = {m: sorted(t for t in set(names) if t in topics) for m, names in members.items()}
    if name == "range":
        return _range(subs, topics)
    return _uniform(subs, topics, previous)


def _freeze(owned: dict[str, dict[uuid.UUID, set[int]]]) -> dict[str, Assignment]:
    return {m: {t: frozenset(ps) for t, ps in a.items() if ps} for m, a in owned.items()}


def _range(subs: dict[str, list[str]], topics: Mapping[str, tuple[uuid.UUID, int]]) -> dict[str, Assignment]:
    out: dict[str, dict[uuid.UUID, set[int]]] = {m: {} for m in subs}
    for topic in sorted({t for ts in subs.values() for t in ts}):
        tid, n = topics[topic]
        who = sorted(m for m, ts in subs.items() if topic in ts)
        base, extra = divmod(n, len(who))
        start = 0
        for i, m in enumerate(who):
            size = base + (1 if i < extra else 0)
            if size:
                out[m][tid] = set(range(start, start + size))
            start += size
    return _freeze(out)


def _uniform(subs: dict[str, list[str]], topics: Mapping[str, tuple[uuid.UUID, int]],
             previous: Mapping[str, Mapping[uuid.UUID, Iterable[int]]]) -> dict[str, Assignment]:
    by_id = {tid: (name, n) for name, (tid, n) in topics.items()}
    eligible: dict[str, list[str]] = {}  # topic → members subscribing to it, in id order
    for m in sorted(subs):
        for t in subs[m]:
            eligible.setdefault(t, []).append(m)
    all_parts = [(t, p) for t in sorted(eligible) for p in range(topics[t][1])]
    if not all_parts:
        return {m: {} for m in subs}
    # the balanced share of a member if every member could take every partition (homogeneous case)
    quota = -(-len(all_parts) // max(len(subs), 1))
    owner: dict[tuple[str, int], str] = {}
    load = {m: 0 for m in subs}
    # 1. stickiness: keep what each member had, while its topic is still subscribed, up to the quota
    for m in sorted(previous, key=lambda x: (-sum(len(set(v)) for v in previous[x].values()), x)):
        if m not in subs:
            continue
        mine = set(subs[m])
        for tid, parts in sorted(previous[m].items(), key=lambda kv: str(kv[0])):
            if tid not in by_id or by_id[tid][0] not in mine:
                continue
            name, n = by_id[tid]
            for p in sorted(set(parts)):
                if p < n and (name, p) not in owner and load[m] < quota:
                    owner[(name, p)] = m
                    load[m] += 1
    # 2. the rest to the least loaded eligible member
    for tp in all_parts:
        if tp not in owner:
            m = min(eligible[tp[0]], key=lambda x: (load[x], x))
            owner[tp] = m
            load[m] += 1
    # 3. balance: move from the most loaded to a less loaded eligible member while that narrows the spread
    for _ in range(len(all_parts) * 2):
        moved = False
        for tp in sorted(owner, key=lambda x: (-load[owner[x]], x)):
            src = owner[tp]
            dst = min(eligible[tp[0]], key=lambda x: (load[x], x))
            if load[dst] + 1 < load[src]:
                owner[tp] = dst
                load[src] -= 1
                load[dst] += 1
                moved = True
                break
        if not moved:
            break
    out: dict[str, dict[uuid.UUID, set[int]]] = {m: {} for m in subs}
    for (t, p), m in owner.items():
        out[m].setdefault(topics[t][0], set()).add(p)
    return _freeze(out)


# -- the group's data model and reconciliation (pure: no timers, no I/O) ------------------------------
TP = tuple[uuid.UUID, int]


class MemberState(str, enum.Enum):
    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    UNRELEASED_PARTITIONS = "unreleased_partitions"


@dataclass
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    rebalance_timeout_ms: int = -1
    subscribed_names: tuple[str, ...] = ()
    subscribed_regex: str | None = None
    server_assignor: str | None = None
    epoch: int = 0
    previous_epoch: int = 0
    state: MemberState = MemberState.STABLE
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)
    session_timer: Any = None
    rebalance_timer: Any = None

    def reconciled_to(self, epoch: int) -> bool:
        return self.state == MemberState.STABLE and self.epoch == epoch

    def cancel_timers(self) -> None:
        for h in (self.session_timer, self.rebalance_timer):
            if h is not None:
                h.cancel()
        self.session_timer = self.rebalance_timer = None


@dataclass
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    target: dict[str, Assignment] = field(default_factory=dict)
    partition_owner: dict[TP, str] = field(default_factory=dict)  # held (assigned or pending revocation)
    static: dict[str, str] = field(default_factory=dict)  # instance id → member id
    metadata: dict[str, tuple[uuid.UUID, int]] = field(default_factory=dict)  # subscribed topics that exist
    state_timestamp_ms: int = -1

    @property
    def state(self) -> str:
        if not self.members:
            return "Empty"
        if self.group_epoch > self.assignment_epoch:
            return "Assigning"
        if any(not m.reconciled_to(self.assignment_epoch) for m in self.members.values()):
            return "Reconciling"
        return "Stable"

    def assignor(self) -> str:
        """The assignor most members ask for (Kafka's preferredServerAssignor), else the default."""
        votes = Counter(m.server_assignor for m in self.members.values() if m.server_assignor)
        return votes.most_common(1)[0][0] if votes else DEFAULT_ASSIGNOR

    def set_assignment(self, m: ConsumerMember, *, state: MemberState, epoch: int, assigned: Assignment,
                       pending: Assignment) -> None:
        """Give `m` a new state, epoch and partitions, keeping `partition_owner` in step."""
        for a in (m.assigned, m.pending_revocation):
            for tid, parts in a.items():
                for p in parts:
                    if self.partition_owner.get((tid, p)) == m.member_id:
                        del self.partition_owner[(tid, p)]
        if epoch != m.epoch:
            m.previous_epoch = m.epoch
        m.epoch = epoch
        m.state = state
        m.assigned = {t: frozenset(ps) for t, ps in assigned.items() if ps}
        m.pending_revocation = {t: frozenset(ps) for t, ps in pending.items() if ps}
        for a in (m.assigned, m.pending_revocation):
            for tid, parts in a.items():
                for p in parts:
                    self.partition_owner[(tid, p)] = m.member_id


def reconcile(g: ConsumerGroup, m: ConsumerMember, owned: dict[uuid.UUID, set[int]] | None) -> None:
    """Kafka's CurrentAssignmentBuilder: move `m` one step towards its target assignment. `owned` is
    what the member reports owning (None: not reported, so it is assumed to own what it had)."""
    epoch = g.assignment_epoch
    if m.reconciled_to(epoch):
        return

    def owns_any(revoking: Assignment) -> bool:
        if owned is None:
            return True
        return any(p in revoking.get(tid, ()) for tid, ps in owned.items() for p in ps)

    def next_assignment(member_epoch: int) -> None:
        target = g.target.get(m.member_id, {})
        assigned: dict[uuid.UUID, set[int]] = {}
        revoke: dict[uuid.UUID, set[int]] = {}
        unreleased = False
        for tid in set(target) | set(m.assigned):
            want = set(target.get(tid, ()))
            have = set(m.assigned.get(tid, ()))
            keep = have & want
            assigned[tid] = set(keep)
            if have - keep:
                revoke[tid] = have - keep
            for p in sorted(want - keep):
                holder = g.partition_owner.get((tid, p))
                if holder is None or holder == m.member_id:
                    assigned[tid].add(p)
                else:
                    unreleased = True
        revoke = {t: ps for t, ps in revoke.items() if ps}
        if revoke and owns_any({t: frozenset(ps) for t, ps in revoke.items()}):
            kept = {t: {p for p in m.assigned.get(t, ()) if p in target.get(t, ())} for t in m.assigned}
            g.set_assignment(m, state=MemberState.UNREVOKED_PARTITIONS, epoch=member_epoch,
                             assigned={t: frozenset(ps) for t, ps in kept.items()},
                             pending={t: frozenset(ps) for t, ps in revoke.items()})
            return
        state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
        g.set_assignment(m, state=state, epoch=epoch,
                         assigned={t: frozenset(ps) for t, ps in assigned.items()}, pending={})

    if m.state == MemberState.UNREVOKED_PARTITIONS:
        if owns_any(m.pending_revocation):
            return
        next_assignment(m.epoch + 1)
    else:
        next_assignment(m.epoch)
