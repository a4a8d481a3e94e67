"""`logstore get-offsets`, `delete-records` and `log-dirs`: kafka-get-offsets.sh (GetOffsetShell),
kafka-delete-records.sh and kafka-log-dirs.sh --describe, with their flags and output.

Owns:
  - get-offsets: the `--topic` regex (normalised as Kafka's TopicFilter: trimmed, `,` → `|`, blanks
    and surrounding quotes dropped, matched in full), `--partitions`, `--topic-partitions` rules
    (`REGEX:N`, `REGEX:LO-HI` with HI exclusive, `REGEX:LO-`, `REGEX:-HI`, `REGEX`), `--time`
    (-1 latest, -2 earliest, -3 max-timestamp, -4 earliest-local, -5 latest-tiered, or ms), and its
    output: `topic:partition:offset`, sorted by the string `topic-partition` as Kafka's TreeMap
    does; a partition whose offset is unknown (-1: nothing at or after that time) prints nothing;
    a partition that failed is skipped with Kafka's `Skip getting offsets ...` line on stderr.
  - delete-records: the `--offset-json-file` format (`{"partitions": [{"topic", "partition",
    "offset"}], "version": 1}`, offset -1 = the high watermark), checked in full before anything
    is opened, and the output `Executing records delete operation`, `Records delete operation
    completed:`, then `partition: T-P\\tlow_watermark: N` or `partition: T-P\\terror: <Kafka's
    exception>` per partition, in the file's order (exit 0, as Kafka, even if some failed).
  - log-dirs: `--describe` (required), `--topic-list`, `--broker-list`, Kafka's two progress lines
    and its JSON, byte for byte: compact, keys in the order Kafka's HashMaps print them
    (`brokers` before `version`, `partitions` / `error` / `logDir`), partitions sorted.
  - `--command-config` for all three: a properties file for the admin client; `client.id` is used,
    `security.protocol` must be PLAINTEXT, other keys are reported once on stderr as ignored.

Invariants: every usage and input error is found before a broker or log dir is opened; errors
follow common.py's one-line policy with each tool's prefix (get-offsets `Error occurred: `, the
others none, as Kafka's). Everything goes through a `Backend` (backends.py), so `--bootstrap-server`
and `--data-dir` print the same lines.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, NamedTuple

from .backends import Backend, open_backend
from .common import ToolError, add_command_config, add_target, add_version_flag, run_tool, target, tool_parser

# The Java exception (class, default message) Kafka's admin client raises for an error code; its
# tools print a failed partition as `<class>: <message>`. Codes a partition can answer here.
_KAFKA_ERRORS = {
    -1: ("UnknownServerException", "The server experienced an unexpected error when processing the request."),
    1: ("OffsetOutOfRangeException", "The requested offset is not within the range of offsets maintained by the "
                                     "server."),
    3: ("UnknownTopicOrPartitionException", "This server does not host this topic-partition."),
    5: ("LeaderNotAvailableException", "There is no leader for this topic-partition as we are in the middle of a "
                                       "leadership election."),
    7: ("TimeoutException", "The request timed out."),
    17: ("InvalidTopicException", "The request attempted to perform an operation on an invalid topic."),
    29: ("TopicAuthorizationException", "Topic authorization failed."),
    35: ("UnsupportedVersionException", "The version of API is not supported."),
    42: ("InvalidRequestException", "This most likely occurs because of a request being malformed by the client "
                                    "library or the message was sent to an incompatible broker. See the broker logs "
                                    "for more details."),
    44: ("PolicyViolationException", "Request parameters do not satisfy the configured policy."),
    56: ("KafkaStorageException", "Disk error when trying to access log file on the disk."),
}
_ERRORS_PKG = "org.apache.kafka.common.errors."


def kafka_exception_class(code: int) -> str:
    """The fully qualified Java exception class of an error code (log-dirs' `"error"`)."""
    return _ERRORS_PKG + _KAFKA_ERRORS.get(code, ("ApiException", ""))[0]


def kafka_exception(code: int) -> str:
    """`<class>: <message>` of an error code, as Kafka's tools print a failed partition."""
    cls, msg = _KAFKA_ERRORS.get(code, ("ApiException", f"error code {code}"))
    return f"{_ERRORS_PKG}{cls}: {msg}"


# -- shared: --command-config and opening the target ------------------------------------------------

def _add_common(p: argparse.ArgumentParser) -> None:
    add_target(p)
    add_command_config(p)
    add_version_flag(p)


def _open(args: argparse.Namespace, client_id: str) -> Backend:
    """The target's backend, after reading --command-config."""
    return open_backend(args, client_id=client_id)


def _java_split(s: str) -> list[str]:
    """Java's String.split(","): trailing empty strings dropped; a string without a comma is itself."""
    if "," not in s:
        return [s]
    parts = s.split(",")
    while parts and parts[-1] == "":
        parts.pop()
    return parts


# -- get-offsets --------------------------------------------------------------------------------------

_TOPIC_PARTITION = re.compile(r"([^:,]*)(?::(?:([0-9]*)|(?:([0-9]*)-([0-9]*))))?")
_LONG = re.compile(r"[+-]?[0-9]+")
_INT_MAX = 2**31 - 1
_TIMES = {"latest": -1, "earliest": -2, "max-timestamp": -3, "earliest-local": -4, "latest-tiered": -5}


class Rule(NamedTuple):
    """One topic-partition filter: a topic regex (matched in full) and the partitions it allows,
    a set (empty: all) or the half-open range [lo, hi)."""
    topic: re.Pattern[str]
    partitions: frozenset[int] | None = None
    lo: int = 0
    hi: int = _INT_MAX

    def allows_topic(self, topic: str) -> bool:
        return self.topic.fullmatch(topic) is not None

    def allows(self, topic: str, p: int) -> bool:
        if not self.allows_topic(topic):
            return False
        if self.partitions is not None:
            return not self.partitions or p in self.partitions
        return self.lo <= p < self.hi


def topic_regex(raw: str) -> re.Pattern[str]:
    """Kafka's topic filter (TopicFilter.IncludeList): `raw` normalised, then compiled."""
    rx = re.sub(r"[\"']+$", "", re.sub(r"^[\"']+", "", raw.strip().replace(",", "|").replace(" ", "")))
    try:
        return re.compile(rx)
    except re.error:
        raise ToolError(f"{rx} is an invalid regex.") from None


def parse_partition_ids(spec: str | None) -> frozenset[int]:
    """`--partitions 0,2`: the ids (empty: every partition)."""
    if not spec:
        return frozenset()
    parts = _java_split(spec)
    if not all(_LONG.fullmatch(x) and -2**31 <= int(x) <= _INT_MAX for x in parts):
        raise ToolError(f"--partitions expects a comma separated list of numeric partition ids, but received: {spec}")
    return frozenset(int(x) for x in parts)


def parse_topic_partitions(spec: str) -> list[Rule]:
    """`--topic-partitions t:0,t2:1-3,t3,t4:5-,:-3`: one Rule per comma-separated pattern."""
    rules = []
    for item in _java_split(spec):
        m = _TOPIC_PARTITION.fullmatch(item)
        if m is None:
            raise ToolError(f"Invalid rule specification: {item}")
        topic, one, lo, hi = (g or None for g in m.groups())
        if any(g is not None and int(g) > _INT_MAX for g in (one, lo, hi)):
            raise ToolError(f"Invalid rule specification: {item} (partition id out of range)")
        rx = topic_regex(topic or ".*")
        if one is not None:
            rules.append(Rule(rx, lo=int(one), hi=int(one) + 1))
        else:
            rules.append(Rule(rx, lo=int(lo) if lo else 0, hi=int(hi) if hi else _INT_MAX))
    return rules


def parse_time(value: str) -> int:
    """`--time`: a name, -1..-5, or a timestamp in ms; the ListOffsets timestamp to ask for."""
    if value in _TIMES:
        return _TIMES[value]
    if not _LONG.fullmatch(value) or not -2**63 <= int(value) < 2**63:
        raise ToolError(f"Malformed time argument {value}. Please use -1 or latest / -2 or earliest / -3 or "
                        "max-timestamp / -4 or earliest-local / -5 or latest-tiered, or a specified long format "
                        "timestamp")
    return int(value)


def add_get_offsets_parser(sub: Any) -> None:
    """Register `get-offsets` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "get-offsets", "print partitions' offsets for a time (kafka-get-offsets.sh)",
                    "An interactive shell for getting topic-partition offsets; same flags and output "
                    "(topic:partition:offset) as kafka-get-offsets.sh.")
    _add_common(p)
    p.add_argument("--topic", help="the topic(s): a regular expression matched in full (default: all topics)")
    p.add_argument("--partitions", metavar="IDS", help="comma separated partition ids (default: all)")
    p.add_argument("--topic-partitions", metavar="PATTERNS",
                   help="comma separated REGEX[:PARTITIONS] rules, PARTITIONS being N, LO-HI (HI exclusive), LO- "
                        "or -HI: t1:1,t2:0-3,t3,t4:5-,t5:-3 (not with --topic or --partitions)")
    p.add_argument("--time", default="latest",
                   help="timestamp in ms, or -1/latest (default), -2/earliest, -3/max-timestamp, "
                        "-4/earliest-local, -5/latest-tiered; a partition with no record at or after it prints nothing")
    p.add_argument("--exclude-internal-topics", action="store_true", help="leave out internal topics")
    p.set_defaults(func=lambda args: run_tool(_cmd_get_offsets, args, "Error occurred: "))


def _cmd_get_offsets(args: argparse.Namespace) -> int:
    target(args)
    if args.topic_partitions is not None and (args.topic is not None or args.partitions is not None):
        raise ToolError("--topic-partitions cannot be used with --topic or --partitions")
    timestamp = parse_time(args.time)
    if args.topic_partitions is not None:
        rules = parse_topic_partitions(args.topic_partitions)
    else:
        rules = [Rule(topic_regex(args.topic if args.topic is not None else ".*"),
                      partitions=parse_partition_ids(args.partitions))]
    backend = _open(args, "GetOffsetShell")
    try:
        topics = backend.partitions_by_topic(internal=not args.exclude_internal_topics)
        tps = [(t, p) for t, ps in topics.items() if any(r.allows_topic(t) for r in rules)
               for p in ps if any(r.allows(t, p) for r in rules)]
        if not tps:
            raise ToolError("Could not match any topic-partitions with the specified filters")
        results = backend.list_offsets(tps, timestamp)
    finally:
        backend.close()
    lines = []
    for t, p in sorted(tps, key=lambda tp: f"{tp[0]}-{tp[1]}"):
        code, offset = results.get((t, p), (-1, -1))
        if code:
            sys.stderr.write(f"Skip getting offsets for topic-partition {t}-{p} due to error: "
                             f"{kafka_exception(code)}\n")
        elif offset != -1:
            lines.append(f"{t}:{p}:{offset}\n")
    sys.stdout.write("".join(lines))
    return 0


# -- delete-records -----------------------------------------------------------------------------------

def _field(entry: dict, key: str, kind: type, where: str) -> Any:
    if key not in entry:
        raise ToolError(f"{where}: No such field exists: `{key}`")
    v = entry[key]
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise ToolError(f"{where}: `{key}` must be an integer, got {json.dumps(v)}")
    if kind is str and not isinstance(v, str):
        raise ToolError(f"{where}: `{key}` must be a string, got {json.dumps(v)}")
    return v


def parse_offset_json(text: str, path: str) -> dict[tuple[str, int], int]:
    """kafka-delete-records' JSON → {(topic, partition): offset}, in the file's order. A ToolError
    naming the file (and the entry) for anything Kafka's parser refuses, and for duplicates."""
    try:
        js = json.loads(text)
    except json.JSONDecodeError as e:
        raise ToolError(f"The input string is not a valid JSON: {path} line {e.lineno} column {e.colno}: "
                        f"{e.msg}") from None
    if not isinstance(js, dict):
        raise ToolError(f"The input string is not a valid JSON object: {path} holds a JSON {type(js).__name__}")
    version = _field(js, "version", int, path) if "version" in js else 1
    if version != 1:
        raise ToolError(f"Not supported version field value {version} in {path}")
    if "partitions" not in js:
        raise ToolError(f"Missing partitions field in {path}")
    if not isinstance(js["partitions"], list):
        raise ToolError(f"{path}: `partitions` must be an array, got {json.dumps(js['partitions'])}")
    seen: dict[tuple[str, int], int] = {}
    dups: list[str] = []
    for i, entry in enumerate(js["partitions"]):
        where = f"{path}: partitions[{i}]"
        if not isinstance(entry, dict):
            raise ToolError(f"{where}: expected an object, got {json.dumps(entry)}")
        tp = (_field(entry, "topic", str, where), _field(entry, "partition", int, where))
        offset = _field(entry, "offset", int, where)
        if tp in seen and f"{tp[0]}-{tp[1]}" not in dups:
            dups.append(f"{tp[0]}-{tp[1]}")
        seen.setdefault(tp, offset)
    if dups:
        raise ToolError(f"Offset json file contains duplicate topic partitions: {','.join(dups)}")
    return seen


def add_delete_records_parser(sub: Any) -> None:
    """Register `delete-records` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "delete-records", "delete records below an offset (kafka-delete-records.sh)",
                    "Delete the records of the given partitions below the given offsets; same flags, JSON file "
                    "and output as kafka-delete-records.sh.")
    _add_common(p)
    p.add_argument("--offset-json-file", metavar="FILE", help='REQUIRED: the offset per partition: {"partitions": '
                   '[{"topic": "foo", "partition": 1, "offset": 1}], "version": 1} (offset -1: the high watermark)')
    p.set_defaults(func=lambda args: run_tool(_cmd_delete_records, args, ""))


def _cmd_delete_records(args: argparse.Namespace) -> int:
    target(args)
    path = args.offset_json_file
    if not path:
        raise ToolError('Missing required argument "[offset-json-file]"')
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ToolError(f"cannot read --offset-json-file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ToolError(f"cannot read --offset-json-file {path}: not UTF-8 text ({e.reason} at byte {e.start})") \
            from None
    offsets = parse_offset_json(text, path)
    backend = _open(args, "logstore-delete-records")
    try:
        print("Executing records delete operation", flush=True)
        results = backend.delete_records(offsets)
    finally:
        backend.close()
    out = ["Records delete operation completed:\n"]
    for (t, p) in offsets:
        code, low = results[(t, p)]
        out.append(f"partition: {t}-{p}\t" + (f"error: {kafka_exception(code)}\n" if code else f"low_watermark: {low}\n"))
    sys.stdout.write("".join(out))
    return 0


# -- log-dirs -----------------------------------------------------------------------------------------

def add_log_dirs_parser(sub: Any) -> None:
    """Register `log-dirs` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "log-dirs", "describe the brokers' log dirs (kafka-log-dirs.sh)",
                    "Query log directory usage on the brokers; same flags and output as kafka-log-dirs.sh.")
    _add_common(p)
    p.add_argument("--describe", action="store_true", help="REQUIRED: describe the log dirs of the brokers")
    p.add_argument("--topic-list", default="", metavar="T1,T2",
                   help="only the partitions of these topics (default: all)")
    p.add_argument("--broker-list", default="", metavar="0,1,2", help="only these brokers (default: all)")
    p.set_defaults(func=lambda args: run_tool(_cmd_log_dirs, args, ""))


def log_dirs_json(dirs_by_broker: dict[int, list[dict[str, Any]]], topics: set[str]) -> str:
    """kafka-log-dirs.sh's JSON of DescribeLogDirs results, only `topics`' partitions if any given."""
    def partitions(d: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"partition": f"{t}-{p}", "size": size, "offsetLag": lag, "isFuture": future}
                for t, p, size, lag, future in sorted(d["partitions"]) if not topics or t in topics]
    brokers = [{"broker": b, "logDirs": [
        {"partitions": partitions(d), "error": kafka_exception_class(d["error"]) if d["error"] else None,
         "logDir": d["log_dir"]} for d in dirs]} for b, dirs in sorted(dirs_by_broker.items())]
    return json.dumps({"brokers": brokers, "version": 1}, separators=(",", ":"), ensure_ascii=False)


def _cmd_log_dirs(args: argparse.Namespace) -> int:
    target(args)
    if not args.describe:
        raise ToolError('Missing required argument "[describe]"')
    topics = {t for t in args.topic_list.split(",") if t}
    wanted_s = [b for b in args.broker_list.split(",") if b]
    if not all(_LONG.fullmatch(b) and -2**31 <= int(b) <= _INT_MAX for b in wanted_s):
        raise ToolError(f"--broker-list expects a comma separated list of broker ids, but received: "
                        f"{args.broker_list}")
    wanted = {int(b) for b in wanted_s}
    backend = _open(args, "log-dirs-tool")
    try:
        cluster = backend.node_ids()
        missing = sorted(wanted - set(cluster))
        if missing:
            raise ToolError(f"ERROR: The given brokers do not exist from --broker-list: "
                            f"{','.join(map(str, missing))}. Current existent brokers: {','.join(map(str, cluster))}")
        brokers = sorted(wanted) if wanted else sorted(cluster)
        print("Querying brokers for log directories information", flush=True)
        dirs = backend.describe_log_dirs(brokers)
    finally:
        backend.close()
    sys.stdout.write(f"Received log directory information from brokers {','.join(map(str, brokers))}\n"
                     f"{log_dirs_json(dirs, topics)}\n")
    return 0
