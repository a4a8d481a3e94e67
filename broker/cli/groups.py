"""`logstore consumer-groups`: kafka-consumer-groups.sh (--list, --describe, --delete,
--reset-offsets, --delete-offsets).

Owns: the tool's flags and their validation (Kafka's ConsumerGroupCommandOptions rules and
messages: which options need or exclude which), `--delete` and `--delete-offsets` (OffsetDelete;
Kafka's TOPIC PARTITION STATUS table). The views (`--describe --offsets | --members | --state`,
`--list --state`) are groups_describe.py; `--reset-offsets` (its scenarios, a dry run unless
--execute, `--export` / `--from-file` CSV, `--to-datetime` / `--by-duration` parsing) is
groups_reset.py. `--command-config` (common.py / backends.py) and Kafka's `--timeout MS` (the
wait for the broker's answers, instead of --command-timeout) are accepted as Kafka's.

Invariants: every usage error is found before a broker or log dir is opened; offsets are reset
only for a group that is Empty or Dead; `--describe` of a group that does not exist prints
Kafka's error, goes on with the other groups and exits 1; `--delete-offsets` prints its table
even when some partitions failed, then exits 1 with one line on stderr. Everything goes through a
`Backend` (backends.py); errors follow common.py's policy with prefix `Error: `.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .backends import Backend, open_backend
from .common import ToolError, add_command_config, add_target, run_tool, tool_parser
from .groups_describe import describe_groups, list_groups
from .groups_reset import SCENARIOS, missing_scenario_message, parse_topic_spec, reset_offsets, scenario_conflict
from .groups_reset import prepare as reset_prepare

_ACTIONS = [("list", "list"), ("describe", "describe"), ("delete", "delete"), ("reset_offsets", "reset-offsets"),
            ("delete_offsets", "delete-offsets")]
_SCOPE = "[all-groups], [group]"
_DRY_RUN_WARNING = ("WARN: No action will be performed as the --execute option is missing.In a future major "
                    "release, the default behavior of this command will be to prompt the user before executing the "
                    "reset rather than doing a dry run. You should add the --dry-run option explicitly if you are "
                    "scripting this command and want to keep the current default behavior without prompting.")
# Kafka's messages for the error codes OffsetDelete answers
_ERROR_TEXT = {
    3: "This server does not host this topic-partition.",
    14: "The coordinator is loading and hence can't process requests.",
    15: "The coordinator is not available.",
    16: "This is not the correct coordinator.",
    24: "The configured groupId is invalid.",
    30: "Not authorized to access group.",
    68: "The group is not empty.",
    69: "The group id does not exist.",
    86: "Deleting offsets of a topic is forbidden while the consumer group is actively subscribed to it.",
}


def add_consumer_groups_parser(sub: Any) -> None:
    """Register `consumer-groups` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "consumer-groups",
                    "list, describe, delete and reset consumer groups (kafka-consumer-groups.sh)",
                    "List all consumer groups, describe a consumer group, delete consumer group info, reset "
                    "consumer group offsets or delete some of their offsets; same flags, output and errors as "
                    "kafka-consumer-groups.sh.")
    add_target(p)
    add_command_config(p)
    p.add_argument("--timeout", type=int, metavar="MS",
                   help="how long to wait for the broker's answers, in ms (as Kafka's --timeout; overrides "
                        "--command-timeout)")
    a = p.add_argument_group("action (exactly one)")
    a.add_argument("--list", action="store_true", help="list all consumer groups (with --state: and their states)")
    a.add_argument("--describe", action="store_true",
                   help="describe consumer groups: offsets and lag (the default, or --offsets), --members or --state")
    a.add_argument("--delete", action="store_true",
                   help="delete groups with their offsets (they must have no active members)")
    a.add_argument("--reset-offsets", action="store_true",
                   help="reset offsets of consumer groups (they must be inactive): a dry run unless --execute")
    a.add_argument("--delete-offsets", action="store_true",
                   help="delete offsets of one group (--group) for topics (--topic); refused with "
                        "GROUP_SUBSCRIBED_TO_TOPIC for a topic the group's active members subscribe to")
    p.add_argument("--group", action="append", help="the consumer group to act on (repeatable)")
    p.add_argument("--all-groups", action="store_true", help="apply to all consumer groups")
    p.add_argument("--topic", action="append",
                   help="--reset-offsets / --delete-offsets: a topic, or topic:p1,p2 for some of its partitions "
                        "(repeatable)")
    p.add_argument("--all-topics", action="store_true",
                   help="--reset-offsets: every topic the group has offsets for")
    d = p.add_argument_group("describe and list options")
    d.add_argument("--offsets", action="store_true",
                   help="--describe: every partition of the group with its offset and lag (the default)")
    d.add_argument("--members", action="store_true",
                   help="--describe: the group's members (GROUP CONSUMER-ID HOST CLIENT-ID #PARTITIONS)")
    d.add_argument("--state", nargs="*", metavar="STATE",
                   help="--describe: the group's coordinator, assignment strategy, state and member count; "
                        "--list: each group's state, only groups in these states if given (e.g. stable,empty; "
                        "case-insensitive)")
    d.add_argument("--verbose", action="store_true",
                   help="--describe: more detail, the ASSIGNMENT column of --members (as Kafka 3.x; accepted "
                        "with --offsets and --state, which it does not change); for a consumer-protocol "
                        "(KIP-848) group, as Kafka 4: CURRENT-EPOCH CURRENT-ASSIGNMENT TARGET-EPOCH "
                        "TARGET-ASSIGNMENT with --members, GROUP-EPOCH TARGET-ASSIGNMENT-EPOCH with --state")
    s = p.add_argument_group("reset scenario (exactly one, with --reset-offsets)")
    s.add_argument("--to-earliest", action="store_true", help="reset offsets to the earliest offset")
    s.add_argument("--to-latest", action="store_true", help="reset offsets to the latest offset")
    s.add_argument("--to-current", action="store_true",
                   help="reset offsets to the current offset (the latest where none is committed)")
    s.add_argument("--to-offset", type=int, metavar="N", help="reset offsets to offset N")
    s.add_argument("--shift-by", type=int, metavar="N",
                   help="shift the current (committed) offset by N (may be negative)")
    s.add_argument("--to-datetime", metavar="DATETIME",
                   help="reset offsets to the first offset at or after this time, format "
                        "'YYYY-MM-DDTHH:mm:SS.sss' with an optional zone (Z, +01:00, -05); no zone is UTC "
                        "(as Kafka); the latest offset where no record is that recent")
    s.add_argument("--by-duration", metavar="DURATION",
                   help="as --to-datetime, for the time this ISO-8601 duration ago, format 'PnDTnHnMnS'")
    s.add_argument("--from-file", metavar="PATH",
                   help="reset offsets to those of a CSV plan (as --export writes it): topic,partition,offset "
                        "lines with one --group, group,topic,partition,offset lines otherwise; needs no "
                        "--topic / --all-topics")
    p.add_argument("--execute", action="store_true", help="--reset-offsets: do it (default is a dry run)")
    p.add_argument("--dry-run", action="store_true", help="--reset-offsets: only show the new offsets")
    p.add_argument("--export", action="store_true",
                   help="--reset-offsets: print the new offsets as the CSV --from-file reads instead of the table")
    p.set_defaults(func=lambda args: run_tool(_cmd_consumer_groups, args, "Error: "))


def _has(args: argparse.Namespace, dest: str) -> bool:
    """Whether the option `dest` was given (flags: True; --state: any list, even empty)."""
    v = getattr(args, dest, None)
    return v is not None and v is not False


def check_args(args: argparse.Namespace) -> str:
    """Kafka's option rules for kafka-consumer-groups.sh, in Kafka's order; the action to run.
    Raises ToolError with Kafka's message for a combination Kafka rejects."""
    # options available only with --describe (or --list for --state)
    unavailable = [name for dest, name in (("members", "members"), ("verbose", "verbose"), ("offsets", "offsets"))
                   if _has(args, dest) and not args.describe]
    if _has(args, "state") and not (args.describe or args.list):
        unavailable.append("state")
    if unavailable:
        raise ToolError(f"Option(s) [{', '.join(unavailable)}] are unavailable given other options on the command line")
    scoped = bool(args.group) or args.all_groups
    if args.describe:
        if not scoped:
            raise ToolError(f"Option [describe] takes one of these options: {_SCOPE}")
        if sum(_has(args, o) for o in ("members", "offsets", "state")) > 1:
            raise ToolError("Option [describe] takes at most one of these options: [members], [offsets], [state]")
        if args.state:
            raise ToolError("Option [describe] does not take a value for [state]")
    if args.delete:
        if not scoped:
            raise ToolError(f"Option [delete] takes one of these options: {_SCOPE}")
        if args.topic:
            raise ToolError("The consumer does not support topic-specific offset deletion from a consumer group.")
    if args.delete_offsets and (not args.group or not args.topic):
        raise ToolError("Option [delete-offsets] takes the following options: [group], [topic]")
    if args.reset_offsets:
        if args.dry_run and args.execute:
            raise ToolError("Option [reset-offsets] only accepts one of [execute] and [dry-run]")
        if not scoped:
            raise ToolError(f"Option [reset-offsets] takes one of these options: {_SCOPE}")
        conflict = scenario_conflict(args)
        if conflict:
            raise ToolError(conflict)
    if args.group and args.all_groups:
        raise ToolError('Option "[group]" can\'t be used with option "[all-groups]"')
    if args.group and args.list:
        raise ToolError('Option "[group]" can\'t be used with option "[list]"')
    if args.topic and (args.list or args.describe):
        raise ToolError(f'Option "[topic]" can\'t be used with option "[{"list" if args.list else "describe"}]"')
    actions = [dest for dest, _name in _ACTIONS if getattr(args, dest)]
    if len(actions) != 1:
        raise ToolError("Command must include exactly one action: " + ", ".join(f"--{n}" for _d, n in _ACTIONS))
    if args.reset_offsets:
        if not any(_has(args, dest) for dest, _name in SCENARIOS):
            raise ToolError(missing_scenario_message())
        if not args.topic and not args.all_topics and args.from_file is None:
            raise ToolError("One of the reset scopes should be defined: --all-topics, --topic.")
    if args.delete_offsets and len(args.group) > 1:
        raise ToolError("Option [delete-offsets] supports only one consumer group: --group is given more than once")
    return actions[0]


def _cmd_consumer_groups(args: argparse.Namespace) -> int:
    action = check_args(args)
    prepared = reset_prepare(args) if action == "reset_offsets" else {}
    if args.timeout is not None:  # Kafka's --timeout (ms) bounds the admin client's calls
        args.command_timeout = max(args.timeout, 1) / 1000
    be = open_backend(args)
    try:
        if action == "list":
            return list_groups(be, args.state)
        if action == "delete_offsets":
            return _delete_offsets(be, args.group[0], args.topic)
        groups = be.list_groups() if args.all_groups else (args.group or [])
        if action == "describe":
            view = "members" if args.members else "state" if args.state is not None else "offsets"
            return describe_groups(be, groups, view, args.verbose)
        if action == "delete":
            return _delete_groups(be, groups)
        if not args.execute and not args.dry_run:
            sys.stderr.write(_DRY_RUN_WARNING + "\n")
        return reset_offsets(be, args, groups, prepared)
    finally:
        be.close()


def _delete_groups(be: Backend, groups: list[str]) -> int:
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


def _error_status(code: int) -> str:
    from ..admin_client import ERROR_NAMES
    name = ERROR_NAMES.get(code, f"error code {code}")
    text = _ERROR_TEXT.get(code)
    return f"Error: {name}: {text}" if text else f"Error: {name}"


def _delete_offsets(be: Backend, group: str, specs: list[str]) -> int:
    """Kafka's --delete-offsets: OffsetDelete of the partitions named, then the TOPIC PARTITION
    STATUS table; a topic that does not exist is one row with partition "-"."""
    tps: list[tuple[str, int]] = []
    status: dict[tuple[str, int], int] = {}
    for spec in specs:
        topic, parts = parse_topic_spec(spec)
        if parts is None:
            try:
                parts = [p[0] for p in be.describe_partitions(topic)]
            except ToolError:
                status[(topic, -1)] = 3
                continue
        tps += [(topic, p) for p in parts if (topic, p) not in tps]
    top, res = be.delete_offsets(group, tps) if tps else (0, {})
    for tp in tps:
        status[tp] = top or res.get(tp, 0)
    if top in (24, 30, 68, 69):
        message = _ERROR_TEXT[top]
    elif top in (0, 3, 29, 86):
        message = "Encountered some partition-level error, see the follow-up details." \
            if any(status.values()) else f"Request succeeded for deleting offsets from group {group}."
    else:
        from ..admin_client import ERROR_NAMES
        message = f"Encountered some unknown error: {ERROR_NAMES.get(top, f'error code {top}')}"
    if not any(status.values()):
        print(message)
    w = max([15] + [len(t) for t, _p in status])
    lines = ["", f"{'TOPIC':<{w}} {'PARTITION':<10} {'STATUS':<15}"]
    for (t, p), code in sorted(status.items(), key=lambda kv: kv[0][0] + str(kv[0][1])):
        lines.append(f"{t:<{w}} {p if p >= 0 else '-'!s:<10} {'Successful' if not code else _error_status(code):<15}")
    print("\n".join(lines))
    if any(status.values()):
        sys.stdout.flush()
        raise ToolError(message)
    return 0
