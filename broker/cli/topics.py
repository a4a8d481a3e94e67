"""`logstore topics` and `logstore configs`: kafka-topics.sh and kafka-configs.sh (topic entities).

Owns: the two tools' flags, their validation messages and their output lines (`Created topic
T.`, the `--describe` lines with TopicId / PartitionCount / ReplicationFactor / Configs and one
line per partition, `Dynamic configs for topic T are:` ...), which match Kafka's tools so that
scripts written for those work here.

Invariants: exactly one action per call; `--topic` on --list / --describe / --delete is a name or,
failing that, a regular expression matched in full; everything goes through a `Backend`
(backends.py), so both targets behave the same. Errors follow common.py's one-line policy, with
kafka-topics.sh's prefix `Error while executing topic command : `.
"""

from __future__ import annotations

import argparse
from typing import Any

from .backends import open_backend
from .common import ToolError, add_target, parse_props, run_tool, tool_parser


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
    a = p.add_argument_group("action (exactly one)")
    for flag, what in (("--create", "create a topic"), ("--list", "list topics"),
                       ("--describe", "describe topics"), ("--alter", "add partitions to a topic"),
                       ("--delete", "delete a topic")):
        a.add_argument(flag, action="store_true", help=what)
    p.add_argument("--topic", help="topic name (or a regular expression for --list/--describe/--delete)")
    p.add_argument("--partitions", type=int, help="partition count (--create, --alter)")
    p.add_argument("--replication-factor", type=int, default=None, help="must be 1 (a single broker)")
    p.add_argument("--config", action="append", metavar="KEY=VALUE", help="topic config override (repeatable)")
    p.add_argument("--if-not-exists", action="store_true", help="--create: do nothing if the topic exists")
    p.add_argument("--if-exists", action="store_true", help="--alter/--delete/--describe: do nothing if it does not")
    p.add_argument("--exclude-internal", action="store_true", help="leave out internal topics (__consumer_offsets)")
    p.set_defaults(func=lambda args: run_tool(_cmd_topics, args, "Error while executing topic command : "))


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
    actions = [a for a in ("create", "list", "describe", "alter", "delete") if getattr(args, a)]
    if len(actions) != 1:
        raise ToolError("Command must include exactly one action: --list, --describe, --create, --alter or --delete")
    action = actions[0]
    if action in ("create", "alter", "delete") and not args.topic:
        raise ToolError(f"--topic is required with --{action}")
    if action == "create" and args.partitions is not None and args.partitions < 1:
        raise ToolError("The partitions must be greater than 0")
    if action == "alter" and args.partitions is None:
        raise ToolError("--partitions is required with --alter (configs are changed with `logstore configs`)")
    if args.replication_factor is not None and args.replication_factor < 1:
        raise ToolError("The replication factor must be between 1 and 32767 inclusive")
    configs = parse_props(args.config, "--config")
    be = open_backend(args, create=action == "create")  # --create may start a new log dir
    try:
        if action == "create":
            if "." in args.topic and "_" in args.topic:
                print("WARNING: Due to limitations in metric names, topics with a period ('.') or underscore ('_') "
                      "could collide. To avoid issues it is best to use either, but not both.")
            try:
                be.create_topic(args.topic, args.partitions or 1, args.replication_factor or 1, configs)
            except Exception as e:
                if getattr(e, "code", None) == 36 or type(e).__name__ == "TopicAlreadyExistsError":
                    if args.if_not_exists:
                        return 0
                    raise ToolError(f"Topic '{args.topic}' already exists.") from None
                raise
            print(f"Created topic {args.topic}.")
            return 0
        topics = _match_topics(be.list_topics(), args.topic, args.exclude_internal)
        if args.topic and not topics and action != "list":
            if args.if_exists:
                return 0
            raise ToolError(f"Topic '{args.topic}' does not exist as expected")
        if action == "list":
            print("\n".join(topics))
        elif action == "describe":
            for d in be.describe_topics(topics):
                line = f"Topic: {d.name}"
                tid = _b64_uuid(d.topic_id)
                if tid:
                    line += f"\tTopicId: {tid}"
                rf = len(d.partitions[0][2]) if d.partitions else 1
                line += (f"\tPartitionCount: {len(d.partitions)}\tReplicationFactor: {rf}"
                         f"\tConfigs: {','.join(f'{k}={v}' for k, v in d.configs)}")
                print(line)
                for p, leader, replicas, isr in sorted(d.partitions):
                    lead = "none" if leader < 0 else str(leader)
                    print(f"\tTopic: {d.name}\tPartition: {p}\tLeader: {lead}"
                          f"\tReplicas: {','.join(map(str, replicas))}\tIsr: {','.join(map(str, isr))}"
                          f"\tElr: N/A\tLastKnownElr: N/A")
        else:  # alter or delete, topic by topic
            for t in topics:
                try:
                    if action == "alter":
                        be.alter_partitions(t, args.partitions)
                    else:
                        be.delete_topic(t)
                except Exception as e:
                    raise ToolError(_kafka_msg(e, t)) from None
        return 0
    finally:
        be.close()


# -- configs ---------------------------------------------------------------------------------

def add_configs_parser(sub: Any) -> None:
    """Register `configs` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "configs", "describe and alter topic configs (kafka-configs.sh)",
                    "Describe or change topic configs; same flags and output as kafka-configs.sh.")
    add_target(p)
    p.add_argument("--describe", action="store_true", help="list the configs of a topic (or of all topics)")
    p.add_argument("--alter", action="store_true", help="change configs (--add-config / --delete-config)")
    p.add_argument("--entity-type", choices=["topics"], help="only 'topics' exists here")
    p.add_argument("--entity-name", help="the topic")
    p.add_argument("--topic", dest="entity_topic", help="same as --entity-type topics --entity-name T")
    p.add_argument("--add-config", action="append", metavar="K=V[,K=V]", help="configs to set")
    p.add_argument("--delete-config", action="append", metavar="K[,K]", help="configs to remove")
    p.add_argument("--all", action="store_true", help="--describe: every config, not only the overrides")
    p.set_defaults(func=lambda args: run_tool(_cmd_configs, args, ""))


def _cmd_configs(args: argparse.Namespace) -> int:
    if args.describe == args.alter:
        raise ToolError("Command must include exactly one action: --describe, --alter")
    name = args.entity_topic or args.entity_name
    if args.entity_topic is None and args.entity_type is None:
        raise ToolError("an entity type must be given: --entity-type topics (or --topic T)")
    adds = parse_props(args.add_config, "--add-config")
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
                from ..admin_client import CONFIG_SOURCES
                syn = ", ".join(f"{CONFIG_SOURCES.get(s, s)}:{n}={v}" for s, n, v in c["synonyms"])
                print(f"  {c['name']}={c['value']} sensitive={'true' if c['sensitive'] else 'false'} synonyms={{{syn}}}")
        return 0
    finally:
        be.close()
