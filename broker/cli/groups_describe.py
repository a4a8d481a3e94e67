"""The read-only views of `logstore consumer-groups`: `--describe` with `--offsets` (the default),
`--members [--verbose]` or `--state`, and `--list --state [STATE...]`.

Owns: Kafka's tables for these (kafka-consumer-groups.sh, ConsumerGroupCommand):
    --offsets  GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID;
               assigned partitions by member (most partitions first), then partitions with only
               a committed offset
    --members  GROUP CONSUMER-ID [GROUP-INSTANCE-ID] HOST CLIENT-ID #PARTITIONS [ASSIGNMENT];
               GROUP-INSTANCE-ID when a member has one, ASSIGNMENT ("topic(0,1), other(2)")
               with --verbose; for a consumer-protocol (KIP-848) group --verbose shows instead
               CURRENT-EPOCH CURRENT-ASSIGNMENT TARGET-EPOCH TARGET-ASSIGNMENT (Kafka 4, KIP-1099)
    --state    GROUP COORDINATOR (ID) ASSIGNMENT-STRATEGY STATE #MEMBERS; for a consumer-protocol
               group with --verbose also GROUP-EPOCH TARGET-ASSIGNMENT-EPOCH before #MEMBERS
    --list --state   GROUP STATE, filtered by state names (case-insensitive, comma-separated)
and the notes on stderr per group: "Consumer group 'g' has no active members." (Empty), "Warning:
Consumer group 'g' is rebalancing.", "Error: Consumer group 'g' does not exist." (Dead).

Invariants: a group that does not exist is reported and skipped, the others are still shown, and
the exit code is 1; the columns are padded as Kafka pads them (including trailing padding where
Kafka's format ends with a padded column). A classic group prints as Kafka 3.x prints it whatever
--verbose says; a consumer-protocol group (the backend's `GroupInfo.group_type == "consumer"`,
from ConsumerGroupDescribe) has the same tables, its state (Stable, Reconciling, Assigning, Empty)
and the server assignor (e.g. "uniform") as ASSIGNMENT-STRATEGY. Everything goes through a
`Backend` (backends.py).
"""

from __future__ import annotations

import sys
from typing import Any

from .backends import Backend
from .common import ToolError

# Kafka's consumer group states (ConsumerGroupState, without Unknown), as `--list --state` accepts them
GROUP_STATES = ["PreparingRebalance", "CompletingRebalance", "Stable", "Dead", "Empty", "Assigning", "Reconciling"]
_REBALANCING = ("PreparingRebalance", "CompletingRebalance", "Assigning", "Reconciling")


def _fmt_row(widths: list[int], values: list[Any]) -> str:
    return " ".join(f"{str(v):<{w}}" if w else str(v) for w, v in zip(widths, values))


def parse_states(values: list[str]) -> set[str]:
    """The lower-cased state names of `--state` values (each one name or a comma-separated list);
    an unknown name raises Kafka's error."""
    raw = ",".join(values)
    wanted = {s.strip().lower() for s in raw.split(",") if s.strip()}
    known = {s.lower() for s in GROUP_STATES}
    if not wanted <= known:
        raise ToolError(f"Invalid state list '{raw}'. Valid states are: {', '.join(GROUP_STATES)}")
    return wanted


def list_groups(be: Backend, states: list[str] | None) -> int:
    """`--list`: one group id a line; with `--state [STATE...]` Kafka's GROUP / STATE table."""
    if states is None:
        for g in be.list_groups():
            print(g)
        return 0
    wanted = parse_states(states)
    rows = [(g, s) for g, s in be.list_group_states() if not wanted or s.lower() in wanted]
    w = max([15] + [len(g) for g, _s in rows]) + 10
    print(f"{'GROUP':<{w}} {'STATE':<20}")
    for g, s in rows:
        print(f"{g:<{w}} {s:<20}")
    return 0


def describe_groups(be: Backend, groups: list[str], view: str, verbose: bool) -> int:
    """`--describe` of each group with the view "offsets", "members" or "state"; 1 if a group
    does not exist."""
    show = {"offsets": _describe_offsets, "members": _describe_members, "state": _describe_state}[view]
    missing = False
    for g in groups:
        missing |= show(be, g, verbose)
    return 1 if missing else 0


def _state_note(group: str, state: str) -> bool:
    """Kafka's note on stderr for a group in `state`; False when the group does not exist."""
    if state == "Dead":
        sys.stderr.write(f"Error: Consumer group '{group}' does not exist.\n")
        return False
    if state == "Empty":
        sys.stderr.write(f"\nConsumer group '{group}' has no active members.\n")
    elif state in _REBALANCING:
        sys.stderr.write(f"\nWarning: Consumer group '{group}' is rebalancing.\n")
    return True


def _describe_offsets(be: Backend, group: str, verbose: bool) -> bool:
    """Kafka's --describe --offsets output for one group; True when the group does not exist."""
    state, members, committed = be.describe_group(group)
    if state == "Dead":
        return not _state_note(group, state)
    rows: list[list[Any]] = []
    assigned: set = set()
    members = sorted(members, key=lambda m: -len(m["assignment"]))
    all_tps = sorted({tp for m in members for tp in m["assignment"]} | set(committed))
    leo = be.end_offsets(all_tps, -1)

    def row(tp: tuple[str, int], cid: str, host: str, client_id: str) -> list[Any]:
        cur = committed.get(tp)
        end = leo.get(tp)
        lag = end - cur if cur is not None and end is not None else "-"
        return [group, tp[0], tp[1], "-" if cur is None else cur, "-" if end is None else end, lag, cid, host,
                client_id]

    for m in members:
        if not m["assignment"]:
            continue
        for tp in sorted(m["assignment"], key=lambda x: (x[1], x[0])):
            assigned.add(tp)
            rows.append(row(tp, m["member_id"], m["client_host"], m["client_id"]))
    for tp in sorted((tp for tp in committed if tp not in assigned), key=lambda x: (x[0], x[1])):
        rows.append(row(tp, "-", "-", "-"))
    _state_note(group, state)
    if not rows:
        return False
    w = [max(15, *(len(str(r[0])) for r in rows)), max(15, *(len(str(r[1])) for r in rows)), 10, 15, 15, 15,
         max(15, *(len(str(r[6])) for r in rows)), max(15, *(len(str(r[7])) for r in rows)), 0]
    out = ["", _fmt_row(w, ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                            "CONSUMER-ID", "HOST", "CLIENT-ID"])]
    out += [_fmt_row(w, r) for r in rows]
    print("\n".join(out))
    print()
    return False


def assignment_text(tps: list[tuple[str, int]]) -> str:
    """Kafka's ASSIGNMENT column: "topic(0,1), other(2)", topics sorted; "-" when empty."""
    if not tps:
        return "-"
    by_topic: dict[str, list[int]] = {}
    for t, p in tps:
        by_topic.setdefault(t, []).append(p)
    return ", ".join(sorted(f"{t}({','.join(str(p) for p in sorted(ps))})" for t, ps in by_topic.items()))


def _describe_members(be: Backend, group: str, verbose: bool) -> bool:
    """Kafka's --describe --members [--verbose] output for one group; True when it does not exist."""
    info = be.group_info(group, coordinator=False)
    if not _state_note(group, info.state):
        return True
    members = info.members
    if not members:
        return False
    with_instance = any(m.get("group_instance_id") for m in members)
    w = [max(15, len(group)), max(15, *(len(m["member_id"]) for m in members))]
    names = ["GROUP", "CONSUMER-ID"]
    if with_instance:
        w.append(max(17, *(len(m.get("group_instance_id") or "") for m in members)))
        names.append("GROUP-INSTANCE-ID")
    w += [max(15, *(len(m["client_host"]) for m in members)), max(15, *(len(m["client_id"]) for m in members)), 15]
    names += ["HOST", "CLIENT-ID", "#PARTITIONS"]

    def line(values: list[Any], tail: str) -> str:
        # Kafka's format ends with "%-15s " (the padded #PARTITIONS and a space), then ASSIGNMENT
        return "".join(f"{str(v):<{wd}} " for wd, v in zip(w, values)) + (tail if verbose else "")

    consumer = info.group_type == "consumer"
    if consumer:
        # Kafka 4 (KIP-1099) for a consumer group: the member's epoch and current assignment,
        # then the target assignment epoch and the member's target assignment
        cur_w = max(20, *(len(assignment_text(m["assignment"])) for m in members))
        target_epoch = "-" if info.assignment_epoch is None else info.assignment_epoch

        def tail(m: dict[str, Any] | None) -> str:
            if m is None:
                cells = ["CURRENT-EPOCH", "CURRENT-ASSIGNMENT", "TARGET-EPOCH", "TARGET-ASSIGNMENT"]
            else:
                cells = [m.get("member_epoch", "-"), assignment_text(m["assignment"]), target_epoch,
                         assignment_text(m.get("target_assignment") or [])]
            return _fmt_row([15, cur_w, 15, 0], cells)

    out = ["", line(names, tail(None) if consumer else "ASSIGNMENT")]
    for m in members:
        values = [group, m["member_id"]] + ([m.get("group_instance_id") or ""] if with_instance else [])
        values += [m["client_host"], m["client_id"], len(m["assignment"])]
        out.append(line(values, tail(m) if consumer else assignment_text(m["assignment"])))
    print("\n".join(out))
    return False


def _describe_state(be: Backend, group: str, verbose: bool) -> bool:
    """Kafka's --describe --state output for one group; True when it does not exist."""
    info = be.group_info(group)
    if not _state_note(group, info.state):
        return True
    coordinator = "-" if info.coordinator is None else \
        f"{info.coordinator[1]}:{info.coordinator[2]}  ({info.coordinator[0]})"
    if verbose and info.group_type == "consumer":
        # Kafka 4 (KIP-1099): a consumer group's epochs with --verbose
        w = [max(15, len(group)), max(25, len(coordinator)), 20, 20, 15, 25, 0]
        epochs = ["-" if e is None else e for e in (info.group_epoch, info.assignment_epoch)]
        print("\n".join(["", _fmt_row(w, ["GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE", "GROUP-EPOCH",
                                          "TARGET-ASSIGNMENT-EPOCH", "#MEMBERS"]),
                         _fmt_row(w, [group, coordinator, info.protocol or "-", info.state, *epochs,
                                      len(info.members)])]))
        return False
    w = [max(15, len(group)), max(25, len(coordinator)), 20, 20, 0]
    print("\n".join(["", _fmt_row(w, ["GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"]),
                     _fmt_row(w, [group, coordinator, info.protocol or "-", info.state, len(info.members)])]))
    return False
