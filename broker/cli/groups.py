"""`logstore consumer-groups`: kafka-consumer-groups.sh (--list, --describe, --delete, --reset-offsets).

Owns: the tool's flags and validation, the `--describe` table (GROUP, TOPIC, PARTITION,
CURRENT-OFFSET, LOG-END-OFFSET, LAG, CONSUMER-ID, HOST, CLIENT-ID, Kafka's column widths and
row order: assigned partitions by member, then partitions with only a committed offset), and the
reset scenarios (--to-earliest / --to-latest / --to-current / --to-offset / --shift-by, clamped
to the partition's offsets, a dry run unless --execute).

Invariants: offsets are reset only for a group that is Empty or Dead; `--describe` of a group
that does not exist prints Kafka's error, goes on with the other groups and exits 1. Everything
goes through a `Backend` (backends.py); errors follow common.py's policy with prefix `Error: `.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .backends import Backend, open_backend
from .common import ToolError, add_target, run_tool, tool_parser


def add_consumer_groups_parser(sub: Any) -> None:
    """Register `consumer-groups` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "consumer-groups", "list, describe, delete and reset consumer groups (kafka-consumer-groups.sh)",
                    "List, describe or delete consumer groups, or reset their offsets; same flags and output as "
                    "kafka-consumer-groups.sh.")
    add_target(p)
    a = p.add_argument_group("action (exactly one)")
    a.add_argument("--list", action="store_true", help="list groups")
    a.add_argument("--describe", action="store_true", help="offsets and lag of a group")
    a.add_argument("--delete", action="store_true", help="delete a group (it must have no members)")
    a.add_argument("--reset-offsets", action="store_true", help="reset a group's offsets (group must be inactive)")
    p.add_argument("--group", action="append", help="the group (repeatable)")
    p.add_argument("--all-groups", action="store_true", help="every group")
    p.add_argument("--topic", action="append", help="--reset-offsets: topic, or topic:p1,p2")
    p.add_argument("--all-topics", action="store_true", help="--reset-offsets: every topic the group has offsets for")
    s = p.add_argument_group("reset scenario (one, with --reset-offsets)")
    s.add_argument("--to-earliest", action="store_true")
    s.add_argument("--to-latest", action="store_true")
    s.add_argument("--to-current", action="store_true")
    s.add_argument("--to-offset", type=int, metavar="N")
    s.add_argument("--shift-by", type=int, metavar="N")
    p.add_argument("--execute", action="store_true", help="--reset-offsets: do it (default is a dry run)")
    p.add_argument("--dry-run", action="store_true", help="--reset-offsets: only show the new offsets")
    p.set_defaults(func=lambda args: run_tool(_cmd_consumer_groups, args, "Error: "))


def _fmt_row(widths: list[int], values: list[Any]) -> str:
    return " ".join(f"{str(v):<{w}}" if w else str(v) for w, v in zip(widths, values))


def _cmd_consumer_groups(args: argparse.Namespace) -> int:
    actions = [a for a in ("list", "describe", "delete", "reset_offsets") if getattr(args, a)]
    if len(actions) != 1:
        raise ToolError("Command must include exactly one action: --list, --describe, --delete, --reset-offsets")
    action = actions[0]
    be = open_backend(args)
    try:
        if action == "list":
            for g in be.list_groups():
                print(g)
            return 0
        groups = be.list_groups() if args.all_groups else (args.group or [])
        if not groups and not args.all_groups:
            raise ToolError(f"Option '--{action.replace('_', '-')}' takes one of these options: --all-groups, --group")
        if action == "describe":
            failed = False
            for g in groups:
                failed |= _describe_group(be, g)
            return 1 if failed else 0
        if action == "delete":
            errors = {}
            for g in groups:
                code = be.delete_group(g)
                if code:
                    errors[g] = code
            if errors:
                from ..admin_client import ERROR_NAMES
                why = {68: "The group is not empty.", 69: "The group id does not exist."}
                detail = "; ".join(f"Group '{g}' could not be deleted due to: {ERROR_NAMES.get(c, c)}"
                                   f"{' (' + why[c] + ')' if c in why else ''}" for g, c in errors.items())
                raise ToolError(f"Deletion of some consumer groups failed: {detail}")
            print(f"Deletion of requested consumer groups ('{', '.join(groups)}') was successful.")
            return 0
        return _reset_offsets(be, args, groups)
    finally:
        be.close()


def _describe_group(be: Backend, group: str) -> bool:
    """Kafka's --describe --offsets output for one group; True when the group does not exist."""
    state, members, committed = be.describe_group(group)
    if state == "Dead":
        sys.stderr.write(f"Error: Consumer group '{group}' does not exist.\n")
        return True
    rows: list[list[Any]] = []
    assigned: set = set()
    members = sorted(members, key=lambda m: -len(m["assignment"]))
    all_tps = sorted({tp for m in members for tp in m["assignment"]} | set(committed))
    leo = be.end_offsets(all_tps, -1)

    def row(tp: tuple[str, int], cid: str, host: str, client_id: str) -> list[Any]:
        cur = committed.get(tp)
        end = leo.get(tp)
        lag = end - cur if cur is not None and end is not None else "-"
        return [group, tp[0], tp[1], "-" if cur is None else cur, "-" if end is None else end, lag, cid, host, client_id]

    for m in members:
        if not m["assignment"]:
            continue
        for tp in sorted(m["assignment"], key=lambda x: (x[1], x[0])):
            assigned.add(tp)
            rows.append(row(tp, m["member_id"], m["client_host"], m["client_id"]))
    for tp in sorted((tp for tp in committed if tp not in assigned), key=lambda x: (x[0], x[1])):
        rows.append(row(tp, "-", "-", "-"))
    if state == "Empty":
        sys.stderr.write(f"\nConsumer group '{group}' has no active members.\n")
    elif state in ("PreparingRebalance", "CompletingRebalance"):
        sys.stderr.write(f"\nWarning: Consumer group '{group}' is rebalancing.\n")
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


def _reset_offsets(be: Backend, args: argparse.Namespace, groups: list[str]) -> int:
    scenarios = [s for s in ("to_earliest", "to_latest", "to_current") if getattr(args, s)]
    scenarios += [s for s in ("to_offset", "shift_by") if getattr(args, s) is not None]
    if len(scenarios) != 1:
        raise ToolError("Option '--reset-offsets' requires one of: --to-earliest, --to-latest, --to-current, "
                        "--to-offset, --shift-by")
    if not args.topic and not args.all_topics:
        raise ToolError("Option '--reset-offsets' requires one of: --topic, --all-topics")
    scenario = scenarios[0]
    result: list[tuple[str, str, int, int]] = []
    for g in groups:
        state, _members, committed = be.describe_group(g)
        if state not in ("Empty", "Dead"):
            raise ToolError(f"Assignments can only be reset if the group '{g}' is inactive, but the current state is "
                            f"{state}.")
        tps: list[tuple[str, int]] = []
        if args.all_topics:
            tps = sorted(committed)
        for spec in args.topic or []:
            topic, _, plist = spec.partition(":")
            if plist:
                try:
                    tps += [(topic, int(x)) for x in plist.split(",") if x.strip()]
                except ValueError:
                    raise ToolError(f"invalid --topic {spec!r}: expected topic or topic:p1,p2") from None
            else:
                tps += [(topic, p[0]) for p in be.describe_partitions(topic)]
        earliest = be.end_offsets(tps, -2)
        latest = be.end_offsets(tps, -1)
        new: dict[tuple[str, int], int] = {}
        for tp in tps:
            if tp not in latest:
                raise ToolError(f"Topic '{tp[0]}' has no partition {tp[1]}")
            lo, hi = earliest[tp], latest[tp]
            cur = committed.get(tp, lo)
            target = {"to_earliest": lo, "to_latest": hi, "to_current": cur}.get(scenario)
            if scenario == "to_offset":
                target = args.to_offset
            elif scenario == "shift_by":
                target = cur + args.shift_by
            if target > hi:
                print(f"New offset ({target}) is higher than latest offset for topic partition {tp[0]}-{tp[1]}. "
                      f"Value will be set to {hi}")
                target = hi
            elif target < lo:
                print(f"New offset ({target}) is lower than earliest offset for topic partition {tp[0]}-{tp[1]}. "
                      f"Value will be set to {lo}")
                target = lo
            new[tp] = target
        if args.execute and not args.dry_run and new:
            be.commit_offsets(g, new)
        result += [(g, t, p, o) for (t, p), o in sorted(new.items())]
    lines = []
    if result:
        lines.append("")
        lines.append(f"{'GROUP':<30} {'TOPIC':<30} {'PARTITION':<10} {'NEW-OFFSET':<15}")
        lines += [f"{g:<30} {t:<30} {p!s:<10} {o!s:<15}" for g, t, p, o in result]
    print("\n".join(lines))
    return 0
