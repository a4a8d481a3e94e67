"""The `logstore` command line. This module holds `serve`; other tools add subcommands.

    logstore serve [server.properties] [--override key=value ...]

Kafka's tools, with their flags and output shapes (section "Kafka's command-line tools" below):
    logstore topics | configs | console-producer | console-consumer | consumer-groups   (admin and
        data tools; `--bootstrap-server HOST:PORT`, or `--data-dir DIR` to open a log dir directly)
    logstore dump-log --files F.log | verify DIR                                      (offline)

Extending: add a `cmd_<name>(args) -> int` and register it in `build_parser` with
`sub.add_parser(...)` and `set_defaults(func=cmd_<name>)`. Errors are one line on stderr and
exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
import typing
from typing import Any, Callable, Iterator, Sequence


def cmd_serve(args: argparse.Namespace) -> int:
    from .config import BrokerConfig, ConfigError, parse_overrides
    from .server import Broker, new_event_loop

    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = BrokerConfig.load(args.config, parse_overrides(args.override))
    except (ConfigError, OSError) as e:
        print(f"logstore serve: {e}", file=sys.stderr)
        return 1

    async def run() -> int:
        broker = Broker(config)
        try:
            await broker.start()
        except Exception as e:  # noqa: BLE001
            print(f"logstore serve: cannot start: {e}", file=sys.stderr)
            return 1
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(broker.stop()))
        print(f"listening on {broker.host}:{broker.port}", flush=True)
        await broker.serve_forever()
        return 0

    loop = new_event_loop()
    try:
        return loop.run_until_complete(run())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


# ==================================================================================================
# Kafka's command-line tools (issue 7): topics, configs, console-producer, console-consumer,
# consumer-groups, dump-log, verify. Same flags and output shapes as kafka-topics.sh,
# kafka-configs.sh, kafka-console-producer.sh, kafka-console-consumer.sh,
# kafka-consumer-groups.sh and kafka-dump-log.sh. Admin commands talk to a broker
# (--bootstrap-server, via broker/admin_client.py) or open a log dir directly (--data-dir).
# Errors are one line on stderr and exit code 1, never a traceback.
# ==================================================================================================

class ToolError(Exception):
    """A failure the user can act on: printed as one line on stderr, exit code 1."""


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 1."""

    def error(self, message: str) -> "typing.NoReturn":  # type: ignore[override]
        self.exit(1, f"{self.prog}: error: {message} (see --help)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # as a subcommand, report unknown flags here (one line) rather than in the top parser
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras


def _tool_parser(sub: Any, name: str, help_: str, description: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=description)
    p.__class__ = _OneLineParser  # keep one-line errors even if the top parser is a plain ArgumentParser
    return p


def _add_target(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    g = p.add_argument_group("target (one of)")
    g.add_argument("--bootstrap-server", metavar="HOST:PORT", help="the broker to talk to")
    g.add_argument("--data-dir", metavar="DIR", help="open this log dir directly (no broker may hold it)")
    g.add_argument("--command-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for the broker (default 30)")


def _props(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        for part in [item] if flag == "--property" else item.split(","):
            k, sep, v = part.partition("=")
            if not sep or not k.strip():
                raise ToolError(f"invalid {flag} {part!r}: expected key=value")
            out[k.strip()] = v
    return out


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


# -- backends: the same admin operations over the network or on a log dir ---------------------

class _TopicDesc(typing.NamedTuple):
    name: str
    topic_id: Any
    partitions: list  # [(partition, leader, replicas, isr)]
    configs: list  # [(key, value)] that are not defaults


class _NetBackend:
    """Admin operations through a broker."""

    def __init__(self, address: str, timeout: float):
        from .admin_client import AdminClient
        self.client = AdminClient(address, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def list_topics(self) -> list[str]:
        return sorted(self.client.metadata()["topics"])

    def describe_topics(self, names: list[str]) -> list[_TopicDesc]:
        md = self.client.metadata(names)["topics"]
        out = []
        for name in names:
            t = md.get(name)
            if t is None or t["error"] == 3:
                raise ToolError(f"Topic '{name}' does not exist as expected")
            if t["error"]:
                from .admin_client import KafkaError
                raise KafkaError(t["error"], where=f" (metadata of topic {name})")
            configs = sorted((c["name"], c["value"]) for c in self.client.describe_configs(name)
                             if not c["default"] and c["value"] is not None)
            parts = [(p, leader, replicas, isr) for p, leader, replicas, isr, _err in t["partitions"]]
            out.append(_TopicDesc(name, t["id"], parts, configs))
        return out

    def create_topic(self, name: str, partitions: int, rf: int, configs: dict[str, str]) -> None:
        self.client.create_topic(name, partitions, rf, configs)

    def alter_partitions(self, name: str, count: int) -> None:
        self.client.create_partitions(name, count)

    def delete_topic(self, name: str) -> None:
        self.client.delete_topics([name])

    def topic_configs(self, name: str) -> list[dict[str, Any]]:
        from .admin_client import KafkaError
        try:
            return self.client.describe_configs(name, synonyms=True)
        except KafkaError as e:
            if e.code == 3:
                raise ToolError(f"Topic '{name}' does not exist") from None
            raise

    def alter_configs(self, name: str, set_: dict[str, str], delete: list[str]) -> None:
        self.client.alter_configs(name, set_, delete)

    # groups
    def list_groups(self) -> list[str]:
        return sorted(g for g, ptype, _state in self.client.list_groups() if ptype in ("consumer", ""))

    def describe_group(self, group: str) -> tuple[str, list[dict[str, Any]], dict[tuple[str, int], int]]:
        from .admin_client import KafkaError
        try:
            d = self.client.describe_group(group)
        except KafkaError as e:
            if e.code == 69:  # GROUP_ID_NOT_FOUND (DescribeGroups v6+)
                return "Dead", [], {}
            raise
        committed = self.client.offset_fetch(group)
        return d["state"], d["members"], committed

    def end_offsets(self, tps: list[tuple[str, int]], which: int) -> dict[tuple[str, int], int]:
        return self.client.list_offsets(tps, which) if tps else {}

    def partitions_of(self, topic: str) -> int:
        return len(self.describe_partitions(topic))

    def describe_partitions(self, topic: str) -> list:
        t = self.client.metadata([topic])["topics"].get(topic)
        if t is None or t["error"] == 3:
            raise ToolError(f"Topic '{topic}' does not exist")
        return t["partitions"]

    def delete_group(self, group: str) -> int:
        return self.client.delete_groups([group]).get(group, 0)

    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        self.client.offset_commit(group, offsets)


class _DirBackend:
    """Admin operations on a log dir opened directly (exclusive: fails if a broker holds it)."""

    def __init__(self, path: str, *, create: bool = False):
        import logstore
        if not create and not os.path.isdir(path):
            raise ToolError(f"log dir {path} does not exist")
        try:
            self.store = logstore.open(path, background=False)
        except logstore.LogDirLockedError as e:
            raise ToolError(f"{e} (stop the broker, or use --bootstrap-server)") from None
        self._gos: Any = None

    def close(self) -> None:
        self.store.close()

    def _topic(self, name: str) -> Any:
        import logstore
        try:
            return self.store.topic(name)
        except logstore.UnknownTopicOrPartitionError:
            raise ToolError(f"Topic '{name}' does not exist as expected") from None

    def list_topics(self) -> list[str]:
        return self.store.topics()

    def describe_topics(self, names: list[str]) -> list[_TopicDesc]:
        out = []
        for name in names:
            info = self._topic(name)
            cfg = self.store.topic_config(name)
            configs = sorted((k, v) for k, v, source in cfg.items() if source != "default")
            out.append(_TopicDesc(name, info.topic_id, [(p, 0, [0], [0]) for p in range(info.partitions)], configs))
        return out

    def create_topic(self, name: str, partitions: int, rf: int, configs: dict[str, str]) -> None:
        if rf != 1:
            from .admin_client import KafkaError
            raise KafkaError(38, f"Replication factor: {rf} larger than available brokers: 1.")
        self.store.create_topic(name, partitions, configs)

    def alter_partitions(self, name: str, count: int) -> None:
        self._topic(name)
        self.store.create_partitions(name, count)

    def delete_topic(self, name: str) -> None:
        self._topic(name)
        self.store.delete_topic(name)
        gos = self._groups(create=False)
        if gos is not None:
            gos.remove_topic(name)

    def topic_configs(self, name: str) -> list[dict[str, Any]]:
        self._topic(name)
        sources = {"topic": 1, "broker": 4, "default": 5}
        out = []
        for k, v, source in self.store.topic_config(name).items():
            sid = sources[source]
            syn = [(sid, k, v)] if sid != 5 else []
            out.append({"name": k, "value": v, "source": sid, "default": sid == 5, "sensitive": False,
                        "read_only": False, "synonyms": syn})
        return out

    def alter_configs(self, name: str, set_: dict[str, str], delete: list[str]) -> None:
        self._topic(name)
        self.store.alter_topic_config(name, set_, delete)

    # groups
    def _groups(self, create: bool) -> Any:
        if self._gos is None:
            from logstore.groups import OFFSETS_TOPIC, GroupOffsetStore
            if not create and not self.store.has_topic(OFFSETS_TOPIC):
                return None
            self._gos = GroupOffsetStore.of(self.store)
        return self._gos

    def list_groups(self) -> list[str]:
        gos = self._groups(create=False)
        return gos.groups() if gos is not None else []

    def describe_group(self, group: str) -> tuple[str, list[dict[str, Any]], dict[tuple[str, int], int]]:
        gos = self._groups(create=False)
        if gos is None or group not in gos.groups():
            return "Dead", [], {}
        committed = {tp: om.offset for tp, om in gos.fetch(group).items()}
        # offline, no member is connected: a group with members recorded is as after a restart
        return "Empty", [], committed

    def end_offsets(self, tps: list[tuple[str, int]], which: int) -> dict[tuple[str, int], int]:
        import logstore
        out = {}
        for t, p in tps:
            try:
                lg = self.store.partition(t, p)
            except logstore.UnknownTopicOrPartitionError:
                continue
            out[(t, p)] = lg.log_start_offset if which == -2 else lg.log_end_offset
        return out

    def describe_partitions(self, topic: str) -> list:
        info = self._topic(topic)
        return [(p, 0, [0], [0], 0) for p in range(info.partitions)]

    def delete_group(self, group: str) -> int:
        gos = self._groups(create=False)
        if gos is None or group not in gos.groups():
            return 69
        gos.delete_group(group)
        return 0

    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        self._groups(create=True).commit(group, offsets)


def _backend(args: argparse.Namespace, *, create: bool = False) -> Any:
    bs, dd = getattr(args, "bootstrap_server", None), getattr(args, "data_dir", None)
    if bool(bs) == bool(dd):
        raise ToolError("exactly one of --bootstrap-server or --data-dir is required")
    if dd:
        return _DirBackend(dd, create=create)
    return _NetBackend(bs, args.command_timeout)


def _run_tool(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace, prefix: str) -> int:
    """Run a tool, turning every expected failure into one line on stderr and exit code 1."""
    from logstore.errors import LogStoreError
    try:
        return fn(args)
    except ToolError as e:
        msg = str(e)
    except LogStoreError as e:
        msg = str(e)
    except BrokenPipeError:
        return 0
    except (OSError, ValueError) as e:
        msg = str(e)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        # the network client's errors (imported only by commands that talk to a broker, since
        # kio is slow to import), else a bug of ours: still one line, the traceback on request
        ac = sys.modules.get(f"{__package__}.admin_client")
        if ac is not None and isinstance(e, (ac.BrokerUnreachable, ac.KafkaError)):
            msg = str(e)
        elif os.environ.get("LOGSTORE_DEBUG"):
            raise
        else:
            msg = f"unexpected {type(e).__name__}: {e} (set LOGSTORE_DEBUG=1 for the traceback)"
    sys.stderr.write(f"{prefix}{msg}\n")
    return 1


def _kafka_msg(e: Any, topic: str) -> str:
    """Kafka's wording for the errors a user meets most."""
    code = getattr(e, "code", None)
    if code == 36:
        return f"Topic '{topic}' already exists."
    if code == 3:
        return f"Topic '{topic}' does not exist as expected"
    return str(e)


# -- topics ----------------------------------------------------------------------------------

def _add_topics_parser(sub: Any) -> None:
    p = _tool_parser(sub, "topics", "create, list, describe, alter and delete topics (kafka-topics.sh)",
                     "Create, delete, describe, or change a topic; same flags and output as kafka-topics.sh.")
    _add_target(p)
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
    p.set_defaults(func=lambda args: _run_tool(_cmd_topics, args, "Error while executing topic command : "))


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
    configs = _props(args.config, "--config")
    be = _backend(args, create=action == "create")  # --create may start a new log dir
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
        elif action == "alter":
            for t in topics:
                try:
                    be.alter_partitions(t, args.partitions)
                except Exception as e:
                    raise ToolError(_kafka_msg(e, t)) from None
        elif action == "delete":
            for t in topics:
                try:
                    be.delete_topic(t)
                except Exception as e:
                    raise ToolError(_kafka_msg(e, t)) from None
        return 0
    finally:
        be.close()


# -- configs ---------------------------------------------------------------------------------

def _add_configs_parser(sub: Any) -> None:
    p = _tool_parser(sub, "configs", "describe and alter topic configs (kafka-configs.sh)",
                     "Describe or change topic configs; same flags and output as kafka-configs.sh.")
    _add_target(p)
    p.add_argument("--describe", action="store_true", help="list the configs of a topic (or of all topics)")
    p.add_argument("--alter", action="store_true", help="change configs (--add-config / --delete-config)")
    p.add_argument("--entity-type", choices=["topics"], help="only 'topics' exists here")
    p.add_argument("--entity-name", help="the topic")
    p.add_argument("--topic", dest="entity_topic", help="same as --entity-type topics --entity-name T")
    p.add_argument("--add-config", action="append", metavar="K=V[,K=V]", help="configs to set")
    p.add_argument("--delete-config", action="append", metavar="K[,K]", help="configs to remove")
    p.add_argument("--all", action="store_true", help="--describe: every config, not only the overrides")
    p.set_defaults(func=lambda args: _run_tool(_cmd_configs, args, ""))


def _cmd_configs(args: argparse.Namespace) -> int:
    if args.describe == args.alter:
        raise ToolError("Command must include exactly one action: --describe, --alter")
    name = args.entity_topic or args.entity_name
    if args.entity_topic is None and args.entity_type is None:
        raise ToolError("an entity type must be given: --entity-type topics (or --topic T)")
    adds = _props(args.add_config, "--add-config")
    deletes = [k.strip() for item in args.delete_config or [] for k in item.split(",") if k.strip()]
    be = _backend(args)
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
                from .admin_client import CONFIG_SOURCES
                syn = ", ".join(f"{CONFIG_SOURCES.get(s, s)}:{n}={v}" for s, n, v in c["synonyms"])
                print(f"  {c['name']}={c['value']} sensitive={'true' if c['sensitive'] else 'false'} synonyms={{{syn}}}")
        return 0
    finally:
        be.close()


# -- console producer ------------------------------------------------------------------------

def _add_console_producer_parser(sub: Any) -> None:
    p = _tool_parser(sub, "console-producer", "produce lines of stdin (kafka-console-producer.sh)",
                     "Read lines from stdin and produce each as a record; same flags as kafka-console-producer.sh.")
    _add_target(p)
    p.add_argument("--topic", required=True, help="the topic to produce to")
    p.add_argument("--property", action="append", metavar="KEY=VALUE",
                   help="parse.key, key.separator (default TAB), ignore.error, null.marker")
    p.add_argument("--request-required-acks", default="-1", help="acks: -1/all (default), 1 or 0")
    p.add_argument("--compression-codec", nargs="?", const="gzip", default="none",
                   choices=["none", "gzip", "snappy", "lz4", "zstd"], help="compress batches (default none)")
    p.add_argument("--batch-size", type=int, default=16384, help="bytes per batch (default 16384)")
    p.add_argument("--producer-property", action="append", metavar="KEY=VALUE", help="accepted and ignored")
    p.set_defaults(func=lambda args: _run_tool(_cmd_console_producer, args, "ERROR "))


def _line_reader(props: dict[str, str]) -> Callable[[int, str], tuple[bytes | None, bytes | None]]:
    parse_key = props.get("parse.key", "false").strip().lower() == "true"
    sep = props.get("key.separator", "\t")
    ignore_error = props.get("ignore.error", "false").strip().lower() == "true"
    null_marker = props.get("null.marker")
    if null_marker is not None and null_marker == sep:
        raise ToolError("null.marker and key.separator may not be equal")

    def parse(lineno: int, line: str) -> tuple[bytes | None, bytes | None]:
        key = None
        value = line
        if parse_key:
            i = line.find(sep)
            if i < 0:
                if not ignore_error:
                    raise ToolError(f"No key separator found on line number {lineno}: '{line}'")
            else:
                key, value = line[:i], line[i + len(sep):]
        k = None if key is None or key == null_marker else key.encode()
        v = None if value == null_marker else value.encode()
        return k, v

    return parse


def _stdin_lines() -> Iterator[str | None]:
    """Lines of stdin as they arrive; None when none arrived for 100 ms (time to send)."""
    import select
    fd = sys.stdin.fileno()
    buf = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            yield None
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            if buf:
                yield buf.decode("utf-8", "replace").rstrip("\r")
            return
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for ln in lines:
            yield ln.decode("utf-8", "replace").rstrip("\r")


def _cmd_console_producer(args: argparse.Namespace) -> int:
    from logstore import records as R
    from logstore.client import DefaultPartitioner
    props = _props(args.property, "--property")
    parse = _line_reader(props)
    acks = {"all": -1, "-1": -1, "1": 1, "0": 0}.get(str(args.request_required_acks).strip().lower())
    if acks is None:
        raise ToolError(f"invalid --request-required-acks {args.request_required_acks!r}: use -1, all, 1 or 0")
    bs, dd = args.bootstrap_server, args.data_dir
    if bool(bs) == bool(dd):
        raise ToolError("exactly one of --bootstrap-server or --data-dir is required")
    store = client = None
    if dd:
        store = _DirBackend(dd).store
        if not store.has_topic(args.topic):
            store.close()
            raise ToolError(f"Topic '{args.topic}' does not exist")
        nparts = store.topic(args.topic).partitions
    else:
        from .admin_client import AdminClient, KafkaError
        client = AdminClient(bs, client_id="console-producer", timeout=args.command_timeout)
        nparts = 0
        for _ in range(50):
            md = client.request(3, {"topics": [{"name": args.topic}], "allow_auto_topic_creation": True})
            t = next((t for t in md.topics if t.name == args.topic), None)
            code = int(getattr(t.error_code, "value", t.error_code)) if t is not None else 3
            if code == 0 and t.partitions:
                nparts = len(t.partitions)
                break
            if code not in (5,):  # LEADER_NOT_AVAILABLE right after auto-creation: retry
                client.close()
                raise ToolError(f"Topic '{args.topic}' does not exist" if code == 3 else str(KafkaError(code)))
            time.sleep(0.1)
    partitioner = DefaultPartitioner(args.batch_size)
    pending: dict[int, list] = {}
    sizes: dict[int, int] = {}

    def send(p: int) -> None:
        recs = pending.pop(p, None)
        sizes.pop(p, None)
        if not recs:
            return
        if store is not None:
            store.partition(args.topic, p).append(recs, compression=args.compression_codec)
        else:
            batch = R.build_batch(recs, compression=args.compression_codec)
            client.produce(args.topic, p, batch, acks=acks)  # type: ignore[union-attr]

    try:
        lineno = 0
        for line in _stdin_lines():
            if line is None:
                for p in list(pending):
                    send(p)
                continue
            lineno += 1
            try:
                k, v = parse(lineno, line)
            except ToolError:
                for p in list(pending):  # what came before the bad line is sent, as Kafka's does
                    send(p)
                raise
            p = partitioner.partition(args.topic, k, nparts)
            size = len(k or b"") + len(v or b"") + 16
            if k is None:
                partitioner.on_append(args.topic, p, size)
            pending.setdefault(p, []).append((k, v))
            sizes[p] = sizes.get(p, 0) + size
            if sizes[p] >= args.batch_size:
                send(p)
        for p in list(pending):
            send(p)
    finally:
        if store is not None:
            store.close()
        if client is not None:
            client.close()
    return 0


# -- console consumer ------------------------------------------------------------------------

def _add_console_consumer_parser(sub: Any) -> None:
    p = _tool_parser(sub, "console-consumer", "print records of a topic (kafka-console-consumer.sh)",
                     "Consume a topic and print each record; same flags and output as kafka-console-consumer.sh.")
    _add_target(p)
    p.add_argument("--topic", required=True, help="the topic to consume")
    p.add_argument("--from-beginning", action="store_true",
                   help="without a committed offset, start at the earliest record instead of the end")
    p.add_argument("--group", help="consumer group: join it, resume from and commit its offsets")
    p.add_argument("--partition", type=int, help="consume only this partition (no group)")
    p.add_argument("--offset", default=None, help="with --partition: earliest, latest or an offset")
    p.add_argument("--max-messages", type=int, default=None, help="exit after this many records")
    p.add_argument("--timeout-ms", type=int, default=None, help="exit when no record came for this long")
    p.add_argument("--property", action="append", metavar="KEY=VALUE",
                   help="print.key, print.timestamp, print.offset, print.partition, print.headers, print.value, "
                        "key.separator, line.separator, headers.separator, null.literal")
    p.add_argument("--consumer-property", action="append", metavar="KEY=VALUE", help="accepted and ignored")
    p.add_argument("--isolation-level", default="read_uncommitted", help="accepted; read_uncommitted is what is served")
    p.set_defaults(func=lambda args: _run_tool(_cmd_console_consumer, args, "ERROR "))


class _Formatter:
    """Kafka's DefaultMessageFormatter."""

    def __init__(self, props: dict[str, str]):
        def flag(k: str, default: bool) -> bool:
            return props.get(k, "true" if default else "false").strip().lower() == "true"

        self.ts, self.key, self.offset = flag("print.timestamp", False), flag("print.key", False), flag("print.offset", False)
        self.partition, self.headers, self.value = flag("print.partition", False), flag("print.headers", False), flag("print.value", True)
        self.key_sep = props.get("key.separator", "\t").encode()
        self.line_sep = props.get("line.separator", "\n").encode()
        self.headers_sep = props.get("headers.separator", ",").encode()
        self.null = props.get("null.literal", "null").encode()

    def format(self, partition: int, offset: int, ts_type: str, ts: int, key: bytes | None, value: bytes | None,
               headers: list) -> bytes:
        cols: list[bytes] = []
        if self.ts:
            cols.append(f"{ts_type}:{ts}".encode())
        if self.partition:
            cols.append(f"Partition:{partition}".encode())
        if self.offset:
            cols.append(f"Offset:{offset}".encode())
        if self.headers:
            if not headers:
                cols.append(b"NO_HEADERS")
            else:
                cols.append(self.headers_sep.join(k.encode() + b":" + (v if v is not None else self.null)
                                                  for k, v in headers))
        if self.key:
            cols.append(key if key is not None else self.null)
        out = self.key_sep.join(cols)
        if self.value:
            if cols:
                out += self.key_sep
            out += (value if value is not None else self.null) + self.line_sep
        elif cols:
            out += self.line_sep
        return out


def _cmd_console_consumer(args: argparse.Namespace) -> int:
    import signal
    from logstore import records as R
    props = _props(args.property, "--property")
    fmt = _Formatter(props)
    bs, dd = args.bootstrap_server, args.data_dir
    if bool(bs) == bool(dd):
        raise ToolError("exactly one of --bootstrap-server or --data-dir is required")
    if args.group and args.partition is not None:
        raise ToolError("Options group and partition cannot be specified together.")
    if args.offset is not None and args.partition is None:
        raise ToolError("The partition is required when offset is specified.")
    if args.offset is not None and args.from_beginning:
        raise ToolError("Options from-beginning and offset cannot be specified together.")
    stop = {"flag": False}

    def _stop(_sig: int, _frm: Any) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    out = sys.stdout.buffer
    count = 0
    limit = args.max_messages
    last_data = time.monotonic()
    timeout = None if args.timeout_ms is None else args.timeout_ms / 1000

    def done() -> bool:
        return stop["flag"] or (limit is not None and count >= limit) or \
            (timeout is not None and time.monotonic() - last_data >= timeout)

    if dd:
        import logstore
        store = _DirBackend(dd).store
        try:
            if not store.has_topic(args.topic):
                raise ToolError(f"Topic '{args.topic}' does not exist")
            c = logstore.Consumer(store, args.topic, group_id=args.group,
                                  auto_offset_reset="earliest" if args.from_beginning else "latest")
            if args.partition is not None:
                c.topics = []
                c._positions = {tp: o for tp, o in c._positions.items() if tp[1] == args.partition}
                if not c._positions:
                    raise ToolError(f"topic '{args.topic}' has no partition {args.partition}")
                _seek_embedded(c, (args.topic, args.partition), args.offset)
            last_data = time.monotonic()  # --timeout-ms counts from when consuming starts
            while not done():
                recs = c.poll(timeout=0.2, max_records=None if limit is None else limit - count)
                for r in recs:
                    out.write(fmt.format(r.partition, r.offset, "CreateTime", r.timestamp, r.key, r.value, r.headers))
                    count += 1
                if recs:
                    out.flush()
                    last_data = time.monotonic()
                    if args.group:
                        c.commit()
            c.close()
        finally:
            store.close()
        sys.stderr.write(f"Processed a total of {count} messages\n")
        return 0

    from .admin_client import EARLIEST, LATEST, AdminClient, GroupMember, KafkaError
    client = AdminClient(bs, client_id="console-consumer", timeout=args.command_timeout)
    member = None
    started = False
    try:
        md = client.metadata([args.topic])["topics"].get(args.topic)
        if md is None or md["error"] == 3:
            raise ToolError(f"Topic '{args.topic}' does not exist")
        all_tps = [(args.topic, p[0]) for p in md["partitions"]]
        positions: dict[tuple[str, int], int] = {}
        reset = EARLIEST if args.from_beginning else LATEST

        def assign(tps: list[tuple[str, int]]) -> None:
            positions.clear()
            committed = client.offset_fetch(args.group, tps) if args.group else {}
            missing = [tp for tp in tps if tp not in committed]
            start = client.list_offsets(missing, reset) if missing else {}
            for tp in tps:
                positions[tp] = committed.get(tp, start.get(tp, 0))

        if args.partition is not None:
            tp = (args.topic, args.partition)
            if tp not in all_tps:
                raise ToolError(f"topic '{args.topic}' has no partition {args.partition}")
            off = args.offset
            if off is None or off == "latest":
                positions[tp] = client.list_offsets([tp], EARLIEST if args.from_beginning else LATEST)[tp]
            elif off == "earliest":
                positions[tp] = client.list_offsets([tp], EARLIEST)[tp]
            else:
                try:
                    positions[tp] = int(off)
                except ValueError:
                    raise ToolError(f"invalid --offset {off!r}: use earliest, latest or a non-negative number") from None
        elif args.group:
            member = GroupMember(client, args.group, [args.topic])
            assign(member.join())
        else:
            assign(all_tps)
        started = True
        last_hb = last_commit = last_data = time.monotonic()
        committed_pos: dict[tuple[str, int], int] = dict(positions)
        while not done():
            if member is not None and time.monotonic() - last_hb >= 3:
                last_hb = time.monotonic()
                if not member.heartbeat():
                    if positions != committed_pos:
                        try:
                            member.commit(positions)
                        except KafkaError:
                            pass
                    assign(member.join())
                    committed_pos = dict(positions)
                    continue
            if not positions:
                time.sleep(0.2)
                continue
            wait = 200 if timeout is None else max(0, min(200, int((timeout - (time.monotonic() - last_data)) * 1000)))
            res = client.fetch(positions, max_wait_ms=wait)
            got = False
            for tp, (code, _hw, data) in sorted(res.items()):
                if code == 1:  # OFFSET_OUT_OF_RANGE: reset as the consumer would
                    positions[tp] = client.list_offsets([tp], reset)[tp]
                    continue
                if code:
                    raise KafkaError(code, where=f" (fetching {tp[0]}-{tp[1]})")
                pos = positions[tp]
                for bpos, h in R.iter_headers(data):
                    if h.is_control or h.last_offset < pos:
                        continue
                    ts_type = "LogAppendTime" if h.log_append_time else "CreateTime"
                    for rec in R.decode_batch(data, bpos):
                        if rec.offset < pos:
                            continue
                        if limit is not None and count >= limit:
                            break
                        out.write(fmt.format(tp[1], rec.offset, ts_type, rec.timestamp, rec.key, rec.value, rec.headers))
                        count += 1
                        positions[tp] = rec.offset + 1
                        got = True
                    else:
                        positions[tp] = max(positions[tp], h.last_offset + 1)
                        continue
                    break
            if got:
                out.flush()
                last_data = time.monotonic()
            if member is not None and time.monotonic() - last_commit >= 5 and positions != committed_pos:
                member.commit(positions)
                committed_pos = dict(positions)
                last_commit = time.monotonic()
        if member is not None and positions != committed_pos:
            member.commit(positions)
    finally:
        try:
            if member is not None:
                member.leave()
        except Exception:  # leaving is a courtesy: the session timeout removes us anyway
            pass
        client.close()
        if started:
            sys.stderr.write(f"Processed a total of {count} messages\n")
    return 0


def _seek_embedded(c: Any, tp: tuple[str, int], off: str | None) -> None:
    lg = c.store.partition(*tp)
    if off is None or off == "latest":
        return
    if off == "earliest":
        c.seek(tp, lg.log_start_offset)
        return
    try:
        c.seek(tp, int(off))
    except ValueError:
        raise ToolError(f"invalid --offset {off!r}: use earliest, latest or a non-negative number") from None


# -- consumer groups --------------------------------------------------------------------------

def _add_consumer_groups_parser(sub: Any) -> None:
    p = _tool_parser(sub, "consumer-groups", "list, describe, delete and reset consumer groups (kafka-consumer-groups.sh)",
                     "List, describe or delete consumer groups, or reset their offsets; same flags and output as "
                     "kafka-consumer-groups.sh.")
    _add_target(p)
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
    p.set_defaults(func=lambda args: _run_tool(_cmd_consumer_groups, args, "Error: "))


def _fmt_row(widths: list[int], values: list[Any]) -> str:
    return " ".join(f"{str(v):<{w}}" if w else str(v) for w, v in zip(widths, values))


def _cmd_consumer_groups(args: argparse.Namespace) -> int:
    actions = [a for a in ("list", "describe", "delete", "reset_offsets") if getattr(args, a)]
    if len(actions) != 1:
        raise ToolError("Command must include exactly one action: --list, --describe, --delete, --reset-offsets")
    action = actions[0]
    be = _backend(args)
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
                from .admin_client import ERROR_NAMES
                why = {68: "The group is not empty.", 69: "The group id does not exist."}
                detail = "; ".join(f"Group '{g}' could not be deleted due to: {ERROR_NAMES.get(c, c)}"
                                   f"{' (' + why[c] + ')' if c in why else ''}" for g, c in errors.items())
                raise ToolError(f"Deletion of some consumer groups failed: {detail}")
            print(f"Deletion of requested consumer groups ('{', '.join(groups)}') was successful.")
            return 0
        return _reset_offsets(be, args, groups)
    finally:
        be.close()


def _describe_group(be: Any, group: str) -> bool:
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


def _reset_offsets(be: Any, args: argparse.Namespace, groups: list[str]) -> int:
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


# -- dump-log and verify -----------------------------------------------------------------------

def _add_dump_log_parser(sub: Any) -> None:
    p = _tool_parser(sub, "dump-log", "print the batches of log segment files (kafka-dump-log.sh)",
                     "Print the record batches of .log files, and the entries of .index / .timeindex files, "
                     "in kafka-dump-log.sh's format.")
    p.add_argument("--files", required=True, help="comma separated .log, .index and .timeindex files")
    p.add_argument("--print-data-log", action="store_true", help="also print each record's key and payload")
    p.add_argument("--deep-iteration", action="store_true", help="print each record's metadata")
    p.add_argument("--verify-index-only", action="store_true", help="only check indexes against their log")
    p.add_argument("--max-bytes", type=int, default=None, help="read at most this many bytes of each .log")
    p.set_defaults(func=lambda args: _run_tool(_cmd_dump_log, args, "Error: "))


def _cmd_dump_log(args: argparse.Namespace) -> int:
    from logstore.tools import dump_files
    files = [f.strip() for f in args.files.split(",") if f.strip()]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise ToolError(f"no such file: {missing[0]}")
    out, err = sys.stdout, sys.stderr
    for stream, line in dump_files(files, print_data_log=args.print_data_log, deep_iteration=args.deep_iteration,
                                   verify_index_only=args.verify_index_only, max_bytes=args.max_bytes):
        (out if stream == "out" else err).write(line + "\n")
    return 0


def _add_verify_parser(sub: Any) -> None:
    p = _tool_parser(sub, "verify", "check every batch of a log dir offline (CRC, lengths, offsets, indexes)",
                     "Scan a log dir without opening it (no lock, nothing written): every batch's length, magic, "
                     "CRC and offsets, and every index against its log. Prints each bad batch with file and "
                     "position and a summary table; exit code 1 if anything is bad.")
    p.add_argument("dir", help="the log dir")
    p.add_argument("--deep", action="store_true", help="also decode (decompress) every record")
    p.add_argument("--no-progress", action="store_true", help="never show the progress bar")
    p.set_defaults(func=lambda args: _run_tool(_cmd_verify, args, "Error: "))


def _cmd_verify(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table
    from logstore.tools import log_dir_size, verify_dir
    if not os.path.isdir(args.dir):
        raise ToolError(f"log dir {args.dir} does not exist")
    total = log_dir_size(args.dir)
    err_console = Console(stderr=True)
    show = not args.no_progress and err_console.is_terminal and total > (8 << 20)
    with Progress(TextColumn("verifying"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True, disable=not show) as progress:
        task = progress.add_task("scan", total=total)
        report = verify_dir(args.dir, deep=args.deep, progress=lambda n: progress.advance(task, n))
    for prob in report.problems:
        print(f"BAD {prob}")
    console = Console(highlight=False, width=max(100, Console().width))
    table = Table(title=f"log dir {report.path}")
    for col in ("topic", "partitions", "segments", "batches", "records", "bytes", "problems"):
        table.add_column(col, justify="left" if col == "topic" else "right")
    by_topic: dict[str, list[int]] = {}
    for ps in report.partitions:
        row = by_topic.setdefault(ps.name.rpartition("-")[0], [0, 0, 0, 0, 0, 0])
        for i, v in enumerate((1, ps.segments, ps.batches, ps.records, ps.bytes, ps.problems)):
            row[i] += v
    for topic, row in sorted(by_topic.items()):
        table.add_row(topic, *map(str, row), style="red" if row[-1] else None)
    console.print(table)
    n = len(report.problems)
    if n:
        print(f"FAILED: {n} problem{'s' if n != 1 else ''} in {report.path}")
        return 1
    print(f"OK: {len(report.partitions)} partitions, {report.total_batches} batches, {report.total_bytes} bytes, "
          "no problems")
    return 0


def add_tool_parsers(sub: Any) -> None:
    """Register the tools on the `logstore` command's subparsers."""
    _add_topics_parser(sub)
    _add_configs_parser(sub)
    _add_console_producer_parser(sub)
    _add_console_consumer_parser(sub)
    _add_consumer_groups_parser(sub)
    _add_dump_log_parser(sub)
    _add_verify_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="logstore", description="A Kafka-compatible log store.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("serve", help="run the broker")
    p.add_argument("config", nargs="?", help="server.properties (Kafka key names)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="set a config key, overriding the file (repeatable)")
    p.add_argument("--log-level", default="info", help="debug, info, warning, error (default info)")
    p.set_defaults(func=cmd_serve)
    add_tool_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
