"""Configuration of `console-producer` / `console-consumer`, resolved as Kafka's tools do it.

Owns: reading Java `.properties` files (`--consumer.config`, `--producer.config`,
`--reader-config`), the producer's line reader (`LineMessageReader` with KIP-798 headers:
`parse.headers`, `headers.delimiter`, `headers.separator`, `headers.key.separator`, plus
`parse.key`, `key.separator`, `ignore.error`, `null.marker`), merging `--producer-property` /
`--consumer-property` with the command-line flags (an explicit flag wins over the property, the
property over the flag's default, as Kafka's `CommandLineUtils.maybeMergeOptions`), the consumer's
group-id / auto.offset.reset rules, the `--formatter` classes (Kafka's DefaultMessageFormatter:
`print.key`, `print.timestamp`, ...; NoOpMessageFormatter), and Kafka's topic-name rules
(`Topic.validate`) for the reason of an INVALID_TOPIC_EXCEPTION.

Invariants: every failure is a `ToolError` carrying Kafka's message; nothing here does I/O other
than reading the named config files; properties the tools do not use are returned (`ignored`) so
the command can say so once on stderr, never silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .common import ToolError, parse_props

# -- .properties files ----------------------------------------------------------------------------

def load_properties(path: str, flag: str) -> dict[str, str]:
    """A Java `.properties` file as `java.util.Properties.load` reads it (broker/properties.py)."""
    from ..properties import read_properties
    try:
        return read_properties(path)
    except OSError as e:
        raise ToolError(f"cannot read {flag} file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ToolError(f"cannot read {flag} file {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _bool(props: dict[str, str], key: str, default: bool) -> bool:
    v = props.get(key)
    if v is None:
        return default
    s = v.strip().lower()
    if s not in ("true", "false"):
        raise ToolError(f"Invalid value {v} for configuration {key}: Expected value to be either true or false")
    return s == "true"


def _int(key: str, value: Any, minimum: int = 0) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ToolError(f"Invalid value {value} for configuration {key}: Not a number of type LONG") from None
    if n < minimum:
        raise ToolError(f"Invalid value {value} for configuration {key}: Value must be at least {minimum}")
    return n


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> str:
    v = value.strip().lower()
    if v not in allowed:
        raise ToolError(f"Invalid value {value} for configuration {key}: String must be one of: {', '.join(allowed)}")
    return v


# -- topic names ---------------------------------------------------------------------------------

_LEGAL = re.compile(r"[a-zA-Z0-9._-]*")
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__cluster_metadata"})


def invalid_topic_reason(name: str) -> str | None:
    """Why Kafka refuses `name` as a topic name (`Topic.validate`), or None when it is legal."""
    if not name:
        return "Topic name is invalid: the empty string is not allowed"
    if name in (".", ".."):
        return f"Topic name is invalid: '{name}' is not allowed"
    if len(name) > 249:
        return f"Topic name is invalid: the length of '{name}' is longer than the max allowed length 249"
    if not _LEGAL.fullmatch(name):
        return (f"Topic name is invalid: '{name}' contains one or more characters other than ASCII "
                "alphanumerics, '.', '_' and '-'")
    return None


def invalid_topic_message(name: str) -> str:
    """The error for a topic the broker refused with INVALID_TOPIC_EXCEPTION: the topic and why."""
    reason = invalid_topic_reason(name)
    return f"Invalid topics: [{name}]" + (f" ({reason})" if reason else "")


# -- the producer's line reader (Kafka's LineMessageReader, KIP-798) -----------------------------

Header = tuple[str, "bytes | None"]
LineParser = Callable[[int, str], "tuple[bytes | None, bytes | None, list[Header]]"]


def _java_split(pattern: re.Pattern[str], s: str) -> list[str]:
    """`Pattern.split(s)` (limit 0): no match gives [s]; trailing empty strings are dropped."""
    parts = pattern.split(s)
    if len(parts) == 1:
        return parts
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def line_reader(props: dict[str, str]) -> LineParser:
    """parse(line number, line) → (key, value, headers) as Kafka's LineMessageReader does: the
    line is `[headers<headers.delimiter>][key<key.separator>]value`; a malformed line raises
    ToolError naming it unless `ignore.error=true` (then the part is taken as absent)."""
    def flag(k: str) -> bool:
        return props.get(k, "false").strip().lower() == "true"

    parse_key, parse_headers, ignore_error = flag("parse.key"), flag("parse.headers"), flag("ignore.error")
    key_sep = props.get("key.separator", "\t")
    h_delim = props.get("headers.delimiter", "\t")
    h_sep = props.get("headers.separator", ",")
    h_key_sep = props.get("headers.key.separator", ":")
    null_marker = props.get("null.marker")
    try:
        h_sep_re = re.compile(h_sep)  # a regular expression in Kafka too
    except re.error as e:
        raise ToolError(f"invalid headers.separator {h_sep!r}: not a regular expression ({e})") from None
    for (a, av), (b, bv) in (
            (("headers.delimiter", h_delim), ("headers.separator", h_sep)),
            (("headers.delimiter", h_delim), ("headers.key.separator", h_key_sep)),
            (("headers.separator", h_sep), ("headers.key.separator", h_key_sep))):
        if av == bv:
            raise ToolError(f"{a} and {b} may not be equal")
    for name, v in (("key.separator", key_sep), ("headers.separator", h_sep), ("headers.delimiter", h_delim),
                    ("headers.key.separator", h_key_sep)):
        if null_marker is not None and v == null_marker:
            raise ToolError(f"null.marker and {name} may not be equal")

    def part(enabled: bool, line: str, start: int, sep: str, what: str, lineno: int) -> str | None:
        if not enabled:
            return None
        i = line.find(sep, start)
        if i < 0:
            if ignore_error:
                return None
            raise ToolError(f"No {what} found on line number {lineno}: '{line}'")
        return line[start:i]

    def split_headers(text: str, lineno: int) -> list[Header]:
        out: list[Header] = []
        for pair in _java_split(h_sep_re, text):
            i = pair.find(h_key_sep)
            if i < 0:
                if ignore_error:
                    out.append((pair, None))
                    continue
                raise ToolError(f"No header key separator found in pair '{pair}' on line number {lineno}")
            hk, hv = pair[:i], pair[i + len(h_key_sep):]
            if hk == null_marker:
                raise ToolError(f"Header keys should not be equal to the null marker '{null_marker}' as they "
                                "can't be null")
            out.append((hk, None if hv == null_marker else hv.encode()))
        return out

    def parse(lineno: int, line: str) -> tuple[bytes | None, bytes | None, list[Header]]:
        headers = part(parse_headers, line, 0, h_delim, "headers delimiter", lineno)
        h_off = 0 if headers is None else len(headers) + len(h_delim)
        key = part(parse_key, line, h_off, key_sep, "key separator", lineno)
        k_off = 0 if key is None else len(key) + len(key_sep)
        value = line[h_off + k_off:]
        hs = split_headers(headers, lineno) if headers is not None and headers != null_marker else []
        k = None if key is None or key == null_marker else key.encode()
        v = None if value == null_marker else value.encode()
        return k, v, hs

    return parse


# -- producer settings ------------------------------------------------------------------------------

# producer configs this tool acts on; the others are reported once as ignored
_PRODUCER_USED = {"acks", "linger.ms", "batch.size", "max.block.ms", "client.id"}
_PRODUCER_OVERRIDDEN = {"bootstrap.servers", "key.serializer", "value.serializer"}  # set by the tool, as Kafka's


@dataclass
class ProducerSettings:
    acks: int
    linger_ms: int
    batch_size: int
    max_block_ms: int
    client_id: str
    ignored: list[str] = field(default_factory=list)


# kafka-console-producer.sh's flags for producer configs this tool has no use for (but for
# --max-partition-memory-bytes, Kafka's other name of batch.size): accepted, and an explicit flag
# wins over the properties, as Kafka merges them; unused ones are reported as ignored
PRODUCER_CONFIG_FLAGS = (("--request-timeout-ms", "request.timeout.ms"), ("--message-send-max-retries", "retries"),
                         ("--retry-backoff-ms", "retry.backoff.ms"), ("--socket-buffer-size", "send.buffer.bytes"),
                         ("--max-memory-bytes", "buffer.memory"), ("--max-partition-memory-bytes", "batch.size"),
                         ("--metadata-expiry-ms", "metadata.max.age.ms"))
LINE_READERS = ("kafka.tools.ConsoleProducer$LineMessageReader", "kafka.tools.LineMessageReader",
                "org.apache.kafka.tools.LineMessageReader")


def producer_settings(args: Any) -> ProducerSettings:
    """--producer.config, then --producer-property, then the flags (an explicit flag wins)."""
    reader = getattr(args, "line_reader", None)
    if reader is not None and reader.strip() not in LINE_READERS:
        raise ToolError(f"--line-reader {reader} is not supported: only the default line reader "
                        f"({LINE_READERS[-1]}) exists here")
    props = load_properties(args.producer_config, "--producer.config") if args.producer_config else {}
    props.update(parse_props(args.producer_property, "--producer-property"))
    for flag, key in PRODUCER_CONFIG_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            props[key] = str(value)

    def merged(key: str, flag_value: Any, default: Any) -> Any:
        if flag_value is not None:
            return flag_value
        return props.get(key, default)

    partition_memory = getattr(args, "max_partition_memory_bytes", None)
    acks_s = str(merged("acks", args.request_required_acks, "-1")).strip().lower()
    acks = {"all": -1, "-1": -1, "1": 1, "0": 0}.get(acks_s)
    if acks is None:
        raise ToolError(f"Invalid value {acks_s} for configuration acks: String must be one of: all, -1, 0, 1")
    return ProducerSettings(
        acks=acks,
        linger_ms=_int("linger.ms", merged("linger.ms", args.timeout, 1000)),
        # --max-partition-memory-bytes is merged after --batch-size in Kafka, so it wins
        batch_size=_int("batch.size", merged("batch.size", args.batch_size if partition_memory is None
                                             else partition_memory, 16384)),
        max_block_ms=_int("max.block.ms", merged("max.block.ms", args.max_block_ms, 60000)),
        client_id=props.get("client.id") or "console-producer",
        ignored=sorted(k for k in props if k not in _PRODUCER_USED and k not in _PRODUCER_OVERRIDDEN))


def reader_props(args: Any) -> dict[str, str]:
    """The line reader's properties: --reader-config, overridden by --property."""
    props = load_properties(args.reader_config, "--reader-config") if args.reader_config else {}
    props.update(parse_props(args.property, "--property"))
    return props


# -- consumer settings ------------------------------------------------------------------------------

_CONSUMER_USED = {"group.id", "auto.offset.reset", "client.id", "enable.auto.commit", "auto.commit.interval.ms",
                  "isolation.level", "exclude.internal.topics"}
_CONSUMER_OVERRIDDEN = {"bootstrap.servers", "key.deserializer", "value.deserializer"}

FORMATTERS = {
    "kafka.tools.DefaultMessageFormatter": "default",
    "org.apache.kafka.tools.consumer.DefaultMessageFormatter": "default",
    "kafka.tools.NoOpMessageFormatter": "noop",
    "org.apache.kafka.tools.consumer.NoOpMessageFormatter": "noop",
}


class FormatError(ToolError):
    """A record the formatter cannot print (a deserializer refused its bytes): the consumer stops,
    or skips the record with --skip-message-on-error, as Kafka's."""


def _fixed_int(name: str, size: int) -> Callable[[bytes], bytes]:
    def de(b: bytes) -> bytes:
        if len(b) != size:
            raise FormatError(f"org.apache.kafka.common.errors.SerializationException: Size of data received by "
                              f"{name} is not {size}")
        return str(int.from_bytes(b, "big", signed=True)).encode()
    return de


def _utf8(b: bytes) -> bytes:
    return b.decode("utf-8", "replace").encode()


_SERDE = "org.apache.kafka.common.serialization."
# the deserializers DefaultMessageFormatter is most often given (key.deserializer /
# value.deserializer, --key-deserializer / --value-deserializer): the record's bytes to what
# Kafka prints, String.valueOf of the deserialized object
DESERIALIZERS: dict[str, Callable[[bytes], bytes]] = {
    _SERDE + "ByteArrayDeserializer": lambda b: b,
    _SERDE + "StringDeserializer": _utf8,
    _SERDE + "UUIDDeserializer": _utf8,
    _SERDE + "LongDeserializer": _fixed_int("LongDeserializer", 8),
    _SERDE + "IntegerDeserializer": _fixed_int("IntegerDeserializer", 4),
    _SERDE + "ShortDeserializer": _fixed_int("ShortDeserializer", 2),
}


def _deserializer(props: dict[str, str], key: str) -> Callable[[bytes], bytes] | None:
    name = props.get(key)
    if name is None or not name.strip():
        return None
    de = DESERIALIZERS.get(name.strip())
    if de is None:
        known = ", ".join(sorted(n.rsplit(".", 1)[1] for n in DESERIALIZERS))
        raise ToolError(f"{key} {name.strip()} is not supported: the deserializers here are {known} "
                        f"(of {_SERDE[:-1]})")
    return de


class DefaultMessageFormatter:
    """Kafka's DefaultMessageFormatter."""

    def __init__(self, props: dict[str, str]):
        self.key_de = _deserializer(props, "key.deserializer")
        self.value_de = _deserializer(props, "value.deserializer")

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
            cols.append(self.null if key is None else self.key_de(key) if self.key_de else key)
        out = self.key_sep.join(cols)
        if self.value:
            if cols:
                out += self.key_sep
            out += (self.null if value is None else self.value_de(value) if self.value_de else value) + self.line_sep
        elif cols:
            out += self.line_sep
        return out


class NoOpMessageFormatter:
    """Kafka's NoOpMessageFormatter: records are consumed and counted, nothing is printed."""

    def format(self, *_a: Any) -> bytes:
        return b""


def make_formatter(kind: str, props: dict[str, str]) -> Any:
    """The formatter `consumer_settings` chose (`--formatter`), configured with --property."""
    return DefaultMessageFormatter(props) if kind == "default" else NoOpMessageFormatter()


@dataclass
class ConsumerSettings:
    group: str | None
    reset: str  # earliest | latest | none
    client_id: str
    auto_commit: bool
    commit_interval_ms: int
    exclude_internal: bool
    formatter: str  # default | noop
    ignored: list[str] = field(default_factory=list)


def consumer_settings(args: Any) -> ConsumerSettings:
    """The consumer's configuration from --consumer.config, --consumer-property and the flags,
    checked in the order and with the messages of Kafka's ConsoleConsumerOptions."""
    file_props = load_properties(args.consumer_config, "--consumer.config") if args.consumer_config else {}
    extra = parse_props(args.consumer_property, "--consumer-property")
    groups: list[str] = []
    for g in (args.group, file_props.get("group.id"), extra.get("group.id")):
        if g is not None and g not in groups:
            groups.append(g)
    if len(groups) > 1:
        raise ToolError("The group ids provided in different places (directly using '--group', via "
                        "'--consumer-property', or via '--consumer.config') do not match. Detected group ids: "
                        + ", ".join(f"'{g}'" for g in groups))
    if groups and args.partition is not None:
        raise ToolError("Options group and partition cannot be specified together.")
    props = {**file_props, **extra}
    if "auto.offset.reset" in props:
        reset = props["auto.offset.reset"]
        if args.from_beginning and reset != "earliest":
            raise ToolError(f"Can't simultaneously specify --from-beginning and 'auto.offset.reset={reset}', "
                            "please remove one option")
        reset = _one_of("auto.offset.reset", reset, ("latest", "earliest", "none"))
    else:
        reset = "earliest" if args.from_beginning else "latest"
    formatter = FORMATTERS.get(args.formatter.strip())
    if formatter is None:
        raise ToolError(f"Formatter class '{args.formatter}' is not available: this tool has "
                        "kafka.tools.DefaultMessageFormatter (also named "
                        "org.apache.kafka.tools.consumer.DefaultMessageFormatter) and NoOpMessageFormatter")
    _one_of("isolation.level", args.isolation_level if args.isolation_level is not None
            else props.get("isolation.level", "read_uncommitted"), ("read_committed", "read_uncommitted"))
    return ConsumerSettings(
        group=groups[0] if groups else None,
        reset=reset,
        client_id=props.get("client.id") or "console-consumer",
        auto_commit=_bool(props, "enable.auto.commit", True),
        commit_interval_ms=_int("auto.commit.interval.ms", props.get("auto.commit.interval.ms", "5000")),
        exclude_internal=_bool(props, "exclude.internal.topics", True),
        formatter=formatter,
        ignored=sorted(k for k in props if k not in _CONSUMER_USED and k not in _CONSUMER_OVERRIDDEN))
