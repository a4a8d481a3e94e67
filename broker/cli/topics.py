"""`logstore topics` and `logstore configs`: kafka-topics.sh and kafka-configs.sh (topic entities).

Owns: the two tools' flags, their validation messages and their output lines (`Created topic
T.`, the `--describe` lines with TopicId / PartitionCount / ReplicationFactor / Configs and one
line per partition, `Dynamic configs for topic T are:` ...), which match Kafka's tools so that
scripts written for those work here. `check_topic_args` is TopicCommandOptions.checkArgs: the
flag combinations kafka-topics.sh refuses (`Option "[partitions]" can't be used with option
"[describe]"`, `--alter` with `--config`, ...) are refused with its messages, before anything is
opened. `--describe` takes Kafka's partition filters (--under-replicated-partitions,
--under-min-isr-partitions, --at-min-isr-partitions, --unavailable-partitions: Kafka's predicates
on each partition's leader, replicas, ISR and min.insync.replicas) and --topics-with-overrides.
`--describe --topic-id ID` describes the topic with that id; `--create` without --partitions /
--replication-factor leaves them to the broker (num.partitions, default.replication.factor), and
`--replica-assignment` gives them per partition (its broker ids must exist). `configs` also
describes broker entities (`--entity-type brokers [--entity-name ID | --entity-default]`,
`--broker`, `--broker-defaults`), entries sorted by name; they are read-only here.
`--config` is one `key=value` per flag (the value may hold commas); configs' `--add-config` is a
comma-separated list with `[a,b]` grouping. `configs --describe` on a log dir lists synonyms as
the broker does (`dir_synonyms`), so both targets print the same lines.

Invariants: exactly one action per call; `--topic` on --list / --describe / --delete is a name or,
failing that, a regular expression matched in full; everything goes through a `Backend`
(backends.py), so both targets behave the same. Errors follow common.py's one-line policy, with
kafka-topics.sh's prefix `Error while executing topic command : `.
"""

from __future__ import annotations

import argparse
from typing import Any

from .backends import open_backend
from .common import (ToolError, add_command_config, add_target, add_version_flag, parse_config_list, parse_config_pairs,
                     run_tool, target, tool_parser)


def _b64_uuid(u: Any) -> str:
    import base64
    import uuid as _uuid
    if u is None:
        return ""
    if not isinstance(u, _uuid.UUID):
        u = _uuid.UUID(str(u))
    if u.int == 0:
        return ""
    return base64.urlsafe_b64encode(u.bytes).decode().rstrip("=")


def _topic_id_arg(text: str | None) -> str | None:
    """`--topic-id`: the id in Kafka's form (URL-safe base64 of 16 bytes, no padding), or None
    for none or the zero id (then --topic is used, as Kafka does); a malformed id is a ToolError."""
    import base64
    import binascii
    if text is None:
        return None
    s = text.strip()
    try:
        raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise ToolError(f"Unable to convert base64 string to UUID: {text!r} is not 16 bytes of URL-safe base64")
    if raw == bytes(16):
        return None
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _kafka_msg(e: Any, topic: str) -> str:
    """Kafka's wording for the errors a user meets most."""
    code = getattr(e, "code", None)
    if code == 36:
        return f"Topic '{topic}' already exists."
    if code == 3:
        return f"Topic '{topic}' does not exist as expected"
    return str(e)


# -- topics ----------------------------------------------------------------------------------

def add_topics_parser(sub: Any) -> None:
    """Register `topics` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "topics", "create, list, describe, alter and delete topics (kafka-topics.sh)",
                    "Create, delete, describe, or change a topic; same flags and output as kafka-topics.sh.")
    add_target(p)
    add_command_config(p)
    a = p.add_argument_group("action (exactly one)")
    for flag, what in (("--create", "create a topic"), ("--list", "list topics"),
                       ("--describe", "describe topics"),
                       ("--alter", "add partitions to a topic (configs are altered with `logstore configs`)"),
                       ("--delete", "delete a topic")):
        a.add_argument(flag, action="store_true", help=what)
    p.add_argument("--topic", help="topic name (or a regular expression for --list/--describe/--alter/--delete)")
    p.add_argument("--topic-id", help="--describe: the topic with this id (as printed after TopicId:); used "
                                      "instead of --topic when both are given")
    p.add_argument("--partition-size-limit-per-response", type=int, metavar="N",
                   help="--describe: accepted for kafka-topics.sh compatibility (the answer is never split)")
    p.add_argument("--partitions", type=int, help="partition count (--create, --alter only)")
    p.add_argument("--replication-factor", type=int, default=None, help="--create only; must be 1 (a single broker)")
    p.add_argument("--replica-assignment", metavar="B:B,B:B",
                   help="--create / --alter: the brokers of each partition (partitions comma separated, their "
                        "replicas colon separated); --create takes the partition count and replication factor "
                        "from it; this single broker's id is the only one there is")
    p.add_argument("--config", action="append", metavar="KEY=VALUE",
                   help="--create only: a topic config override, one per flag (repeatable); the value may hold "
                        "commas: --config cleanup.policy=compact,delete")
    p.add_argument("--if-not-exists", action="store_true", help="--create: do nothing if the topic exists")
    p.add_argument("--if-exists", action="store_true", help="--alter/--delete/--describe: do nothing if it does not")
    p.add_argument("--exclude-internal", action="store_true",
                   help="--list/--describe: leave out internal topics (__consumer_offsets)")
    d = p.add_argument_group("--describe filters (partition lines only; combinable with each other)")
    d.add_argument("--under-replicated-partitions", action="store_true",
                   help="only partitions whose ISR is smaller than their replica set")
    d.add_argument("--under-min-isr-partitions", action="store_true",
                   help="only partitions whose ISR is smaller than min.insync.replicas (or that have no leader)")
    d.add_argument("--at-min-isr-partitions", action="store_true",
                   help="only partitions whose ISR size equals min.insync.replicas")
    d.add_argument("--unavailable-partitions", action="store_true", help="only partitions without a leader")
    d.add_argument("--topics-with-overrides", action="store_true",
                   help="only the topic lines of topics that have config overrides (not with the filters above)")
    add_version_flag(p)
    p.set_defaults(func=lambda args: run_tool(_cmd_topics, args, "Error while executing topic command : "))


_ACTIONS = ("create", "list", "describe", "alter", "delete")
_REPORTS = ("under-replicated-partitions", "under-min-isr-partitions", "at-min-isr-partitions",
            "unavailable-partitions")
_CONFIGS_TOOL_HINT = " (To alter topic configurations, the kafka-configs tool (`logstore configs`) can be used.)"


def _given(args: argparse.Namespace) -> list[str]:
    """The options on the command line, by Kafka's names."""
    have = [a for a in _ACTIONS if getattr(args, a)]
    for name, present in (("bootstrap-server", args.bootstrap_server), ("data-dir", args.data_dir),
                          ("topic", args.topic is not None), ("partitions", args.partitions is not None),
                          ("replication-factor", args.replication_factor is not None), ("config", args.config),
                          ("replica-assignment", args.replica_assignment is not None),
                          ("if-exists", args.if_exists), ("if-not-exists", args.if_not_exists),
                          ("exclude-internal", args.exclude_internal),
                          ("topics-with-overrides", args.topics_with_overrides)):
        if present:
            have.append(name)
    have += [r for r in _REPORTS if getattr(args, r.replace("-", "_"))]
    return have


def check_topic_args(args: argparse.Namespace) -> str:
    """kafka-topics.sh's flag rules (TopicCommandOptions.checkArgs), in its order and with its
    messages; returns the action."""
    have = _given(args)
    actions = [a for a in _ACTIONS if a in have]
    if len(actions) != 1:
        raise ToolError("Command must include exactly one action: --list, --describe, --create, --alter or --delete")
    action = actions[0]
    bs, _dd = target(args)
    if action == "describe" and args.if_exists and args.topic is None and args.topic_id is None:
        raise ToolError("--topic or --topic-id is required to describe a topic")
    if action not in ("list", "describe") and not args.topic:
        raise ToolError('Missing required argument "[topic]"')
    if action == "alter":
        if args.config:
            raise ToolError(f'Option combination "[{"bootstrap-server" if bs else "data-dir"}],[config]" can\'t be '
                            f'used with option "[alter]"{_CONFIGS_TOOL_HINT}')
        if args.partitions is None:
            raise ToolError('Missing required argument "[partitions]"')

    def invalid(used: str, allowed: tuple[str, ...], also: tuple[str, ...] = ()) -> None:
        if used not in have:
            return
        for other in [a for a in _ACTIONS if a not in allowed] + list(also):
            if other in have:
                raise ToolError(f'Option "[{used}]" can\'t be used with option "[{other}]"')

    invalid("config", ("alter", "create"))
    invalid("partitions", ("alter", "create"))
    invalid("replication-factor", ("create",))
    invalid("replica-assignment", ("alter", "create"))
    if action == "create":
        invalid("replica-assignment", _ACTIONS, ("partitions", "replication-factor"))
    for report in _REPORTS:
        invalid(report, ("describe",), ("topics-with-overrides",))
    invalid("topics-with-overrides", ("describe",), _REPORTS)
    invalid("if-exists", ("alter", "delete", "describe"))
    invalid("if-not-exists", ("create",))
    invalid("exclude-internal", ("list", "describe"))
    return action


def parse_replica_assignment(text: str) -> list[list[int]]:
    """kafka-topics.sh --replica-assignment `0:1,1:2`: each partition's broker ids, in order
    (TopicCommand.parseReplicaAssignment: no broker twice in a partition, one replica count)."""
    out: list[list[int]] = []
    for i, part in enumerate(text.split(",")):
        ids = []
        for b in part.split(":"):
            try:
                ids.append(int(b.strip()))
            except ValueError:
                raise ToolError(f'For input string: "{b.strip()}"') from None
        dups = sorted({b for b in ids if ids.count(b) > 1})
        if dups:
            raise ToolError("Partition replica lists may not contain duplicate entries: " + ",".join(map(str, dups)))
        if out and len(ids) != len(out[0]):
            raise ToolError(f"Partition {i} has different replication factor: [{', '.join(map(str, ids))}]")
        out.append(ids)
    return out


def _check_assignment_brokers(be: Any, assignment: list[list[int]]) -> None:
    """Every broker named by --replica-assignment must exist (the broker's own check, made here
    for --alter and --data-dir too)."""
    known = set(be.node_ids())
    for ids in assignment:
        for b in ids:
            if b not in known:
                raise ToolError(f"The manual partition assignment includes broker {b}, but no such broker is "
                                "registered.")


def _match_topics(all_topics: list[str], pattern: str | None, exclude_internal: bool) -> list[str]:
    import re
    names = [t for t in all_topics if not (exclude_internal and t.startswith("__"))]
    if pattern is None:
        return names
    if pattern in all_topics:
        return [pattern]
    try:
        rx = re.compile(pattern)
    except re.error:
        return []
    return [t for t in names if rx.fullmatch(t)]


def _cmd_topics(args: argparse.Namespace) -> int:
    action = check_topic_args(args)
    if action == "create" and args.partitions is not None and args.partitions < 1:
        raise ToolError("The partitions must be greater than 0")
    if args.replication_factor is not None and args.replication_factor < 1:
        raise ToolError("The replication factor must be between 1 and 32767 inclusive")
    configs = parse_config_pairs(args.config, "--config")
    assignment = parse_replica_assignment(args.replica_assignment) if args.replica_assignment else None
    be = open_backend(args, create=action == "create")  # --create may start a new log dir
    try:
        if action == "create":
            if "." in args.topic and "_" in args.topic:
                print("WARNING: Due to limitations in metric names, topics with a period ('.') or underscore ('_') "
                      "could collide. To avoid issues it is best to use either, but not both.")
            try:
                if assignment is not None:
                    _check_assignment_brokers(be, assignment)
                    be.create_topic(args.topic, len(assignment), len(assignment[0]), configs)
                else:
                    # without --partitions / --replication-factor the broker's defaults apply
                    # (num.partitions, default.replication.factor), as with Kafka's tool: -1
                    be.create_topic(args.topic, args.partitions if args.partitions is not None else -1,
                                    args.replication_factor or -1, configs)
            except Exception as e:
                if getattr(e, "code", None) == 36 or type(e).__name__ == "TopicAlreadyExistsError":
                    if args.if_not_exists:
                        return 0
                    raise ToolError(f"Topic '{args.topic}' already exists.") from None
                raise
            print(f"Created topic {args.topic}.")
            return 0
        tid = _topic_id_arg(args.topic_id) if action == "describe" else None
        if tid:
            if args.topic is not None:
                print("Only topic id will be used when both --topic and --topic-id are specified and topicId is "
                      "not Uuid.ZERO_UUID")
            names = _match_topics(be.list_topics(), None, args.exclude_internal)
            topics = [d.name for d in be.describe_topics(names) if _b64_uuid(d.topic_id) == tid]
            if not topics:
                if args.if_exists:
                    return 0
                raise ToolError(f"TopicId '{tid}' does not exist as expected")
            _describe(be, topics, args)
            return 0
        topics = _match_topics(be.list_topics(), args.topic, args.exclude_internal)
        if args.topic and not topics and action != "list":
            if args.if_exists:
                return 0
            raise ToolError(f"Topic '{args.topic}' does not exist as expected")
        if action == "list":
            print("\n".join(topics))
        elif action == "describe":
            _describe(be, topics, args)
        else:  # alter or delete, topic by topic
            for t in topics:
                try:
                    if action == "alter":
                        if assignment is not None:
                            _check_assignment_brokers(be, assignment)
                        be.alter_partitions(t, args.partitions)
                    else:
                        be.delete_topic(t)
                except Exception as e:
                    raise ToolError(_kafka_msg(e, t)) from None
        return 0
    finally:
        be.close()


def _describe(be: Any, topics: list[str], args: argparse.Namespace) -> None:
    """kafka-topics.sh --describe: a topic line and its partition lines; with a partition filter
    (--under-replicated-partitions ...) only the partitions that match it, with
    --topics-with-overrides only the topic lines of topics that have overrides."""
    reports = [r for r in _REPORTS if getattr(args, r.replace("-", "_"))]
    describe_configs = not reports
    describe_partitions = not args.topics_with_overrides
    for d in be.describe_topics(topics):
        if describe_configs and (not args.topics_with_overrides or d.configs):
            line = f"Topic: {d.name}"
            tid = _b64_uuid(d.topic_id)
            if tid:
                line += f"\tTopicId: {tid}"
            rf = len(sorted(d.partitions)[0][2]) if d.partitions else 1
            line += (f"\tPartitionCount: {len(d.partitions)}\tReplicationFactor: {rf}"
                     f"\tConfigs: {','.join(f'{k}={v}' for k, v in d.configs)}")
            print(line)
        if not describe_partitions:
            continue
        try:
            min_isr = int(dict(d.configs).get("min.insync.replicas", "1"))
        except ValueError:
            min_isr = 1
        for p, leader, replicas, isr in sorted(d.partitions):
            if reports:
                matches = {"under-replicated-partitions": len(replicas) - len(isr) > 0,
                           "unavailable-partitions": leader < 0,
                           "under-min-isr-partitions": leader < 0 or len(isr) < min_isr,
                           "at-min-isr-partitions": len(isr) == min_isr}
                if not any(matches[r] for r in reports):
                    continue
            lead = "none" if leader < 0 else str(leader)
            print(f"\tTopic: {d.name}\tPartition: {p}\tLeader: {lead}"
                  f"\tReplicas: {','.join(map(str, replicas))}\tIsr: {','.join(map(str, isr))}"
                  f"\tElr: N/A\tLastKnownElr: N/A")


# -- configs ---------------------------------------------------------------------------------

def add_configs_parser(sub: Any) -> None:
    """Register `configs` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "configs", "describe and alter topic configs (kafka-configs.sh)",
                    "Describe or change topic configs; same flags and output as kafka-configs.sh.")
    add_target(p)
    add_command_config(p)
    p.add_argument("--describe", action="store_true", help="list the configs of a topic (or of all topics)")
    p.add_argument("--alter", action="store_true", help="change configs (--add-config / --delete-config)")
    p.add_argument("--entity-type", choices=["topics", "brokers"],
                   help="topics, or brokers (--describe only: broker configs are read-only here)")
    p.add_argument("--entity-name", help="the topic, or the broker id")
    p.add_argument("--entity-default", action="store_true",
                   help="with --entity-type brokers: the cluster-wide dynamic broker defaults")
    p.add_argument("--broker", metavar="ID", help="same as --entity-type brokers --entity-name ID")
    p.add_argument("--broker-defaults", action="store_true",
                   help="same as --entity-type brokers --entity-default")
    p.add_argument("--topic", dest="entity_topic", help="same as --entity-type topics --entity-name T")
    p.add_argument("--add-config", action="append", metavar="K=V[,K=V]",
                   help="configs to set, comma separated; a value with commas goes in square brackets: "
                        "--add-config 'cleanup.policy=[compact,delete],retention.ms=1000'")
    p.add_argument("--delete-config", action="append", metavar="K[,K]", help="configs to remove")
    p.add_argument("--all", action="store_true", help="--describe: every config, not only the overrides")
    add_version_flag(p)
    p.set_defaults(func=lambda args: run_tool(_cmd_configs, args, ""))


_DYNAMIC_TOPIC, _STATIC_BROKER, _DEFAULT = 1, 4, 5


def dir_synonyms(be: Any, entry: dict[str, Any]) -> list[tuple[int, str, str]]:
    """The synonyms of a topic config read from a log dir, in the broker's form (the
    DescribeConfigs answer Kafka gives): the topic override, then the broker-level key
    (`log.retention.ms`) as set for this store, then that key's default; a key without a
    broker-level name lists its own source."""
    from logstore.config import BROKER_TOPIC_ALIASES, TOPIC_CONFIGS
    key, value, source = entry["name"], entry["value"], entry["source"]
    bkey = {t: b for b, t in BROKER_TOPIC_ALIASES.items()}.get(key)
    out: list[tuple[int, str, str]] = []
    if source == _DYNAMIC_TOPIC:
        out.append((_DYNAMIC_TOPIC, key, value))
    if bkey is not None:
        store_cfg = getattr(getattr(be, "store", None), "config", None)
        bval = getattr(store_cfg, "topic_defaults", {}).get(key)
        if bval is None and source == _STATIC_BROKER:
            bval = value
        if bval is not None:
            out.append((_STATIC_BROKER, bkey, str(bval)))
        if key in TOPIC_CONFIGS:
            out.append((_DEFAULT, bkey, str(TOPIC_CONFIGS[key].default)))
    elif source != _DYNAMIC_TOPIC:
        out.append((source, key, value))
    return out


_DYNAMIC_BROKER, _DYNAMIC_DEFAULT_BROKER = 2, 3


def _print_config_entry(c: dict[str, Any], synonyms: list[tuple[int, str, str]]) -> None:
    from ..admin_client import CONFIG_SOURCES
    def text(v: Any) -> str:
        return "null" if v is None else str(v)  # a value the broker does not give (unset, sensitive)
    syn = ", ".join(f"{CONFIG_SOURCES.get(s, s)}:{n}={text(v)}" for s, n, v in synonyms)
    print(f"  {c['name']}={text(c['value'])} sensitive={'true' if c['sensitive'] else 'false'} synonyms={{{syn}}}")


def _configs_brokers(args: argparse.Namespace) -> int:
    """kafka-configs.sh --entity-type brokers (or --broker ID / --broker-defaults): --describe
    of a broker's configs (`Dynamic configs for broker 0 are:` / `All configs ...`, or `Default
    configs for brokers in the cluster are:`), entries sorted by name as Kafka's tool sorts them;
    without a name, every broker and then the defaults. Broker configs are read-only here."""
    if args.entity_topic is not None:
        raise ToolError("--topic names a topic: it cannot be used with --entity-type brokers")
    name = args.broker if args.broker is not None else args.entity_name
    default = args.entity_default or args.broker_defaults
    if name is not None and default:
        raise ToolError("--entity-name and --entity-default cannot be used together")
    if name is not None:
        try:
            int(name)
        except ValueError:
            raise ToolError(f"The entity name for brokers must be a valid integer broker id, found: {name}") from None
    if args.alter:
        raise ToolError("broker configs are read-only here: set them in server.properties (logstore serve "
                        "--override key=value)")
    bs, _dd = target(args)
    if not bs:
        raise ToolError("broker configs are described by the broker: use --bootstrap-server")
    from .backends import broker_configs
    be = open_backend(args)
    try:
        entities = [name] if name is not None else [""] if default else [str(n) for n in be.node_ids()] + [""]
        for entity in entities:
            if entity == "":
                print("Default configs for brokers in the cluster are:")
            else:
                print(f"{'All' if args.all else 'Dynamic'} configs for broker {entity} are:")
            wanted = None if args.all else _DYNAMIC_DEFAULT_BROKER if entity == "" else _DYNAMIC_BROKER
            for c in sorted(broker_configs(be, entity), key=lambda c: c["name"]):
                if wanted is None or c["source"] == wanted:
                    _print_config_entry(c, c["synonyms"])
        return 0
    finally:
        be.close()


def _cmd_configs(args: argparse.Namespace) -> int:
    if args.describe == args.alter:
        raise ToolError("Command must include exactly one action: --describe, --alter")
    if args.entity_type == "brokers" or args.broker is not None or args.broker_defaults:
        return _configs_brokers(args)
    if args.entity_default:
        raise ToolError("--entity-default applies to --entity-type brokers only")
    name = args.entity_topic or args.entity_name
    if args.entity_topic is None and args.entity_type is None:
        raise ToolError("an entity type must be given: --entity-type topics (or --topic T)")
    adds = parse_config_list(args.add_config)
    deletes = [k.strip() for item in args.delete_config or [] for k in item.split(",") if k.strip()]
    be = open_backend(args)
    try:
        if args.alter:
            if not name:
                raise ToolError("an entity name must be specified with --alter")
            if not adds and not deletes:
                raise ToolError("At least one of --add-config or --delete-config must be specified with --alter")
            entries = {c["name"]: c for c in be.topic_configs(name)}
            bad = [k for k in deletes if k not in entries or entries[k]["source"] != 1]
            if bad:
                raise ToolError(f"Invalid config(s): {','.join(bad)}")
            be.alter_configs(name, adds, deletes)
            print(f"Completed updating config for topic {name}.")
            return 0
        names = [name] if name else be.list_topics()
        for t in names:
            print(f"{'All' if args.all else 'Dynamic'} configs for topic {t} are:")
            for c in be.topic_configs(t):
                if not args.all and c["source"] != 1:
                    continue
                _print_config_entry(c, dir_synonyms(be, c) if args.data_dir else c["synonyms"])
        return 0
    finally:
        be.close()
