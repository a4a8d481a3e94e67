"""`logstore console-producer` and `logstore console-consumer`: kafka-console-producer.sh and
kafka-console-consumer.sh.

Owns: the producer's send loop (records batched per partition, a batch sent at `batch.size` bytes
or `linger.ms` after its first record, each record on its own with `--sync`; keys partitioned as
Kafka's default partitioner does), and the consumer's fetch loops: topic selection (`--topic` or an
`--include` regex), start position, optional group membership with periodic commits, record
batches checked and printed in order, and `--max-messages` / `--timeout-ms` stops. Line parsing
(`parse.key`, `parse.headers`, ...), the record formatters (`--formatter`, `print.key`, ...) and
the merging of `--producer-property` / `--consumer-property` / config files with the flags live
in `console_props` (with the formatter's `key.deserializer` / `value.deserializer`, set by
--property, --key-deserializer / --value-deserializer or --formatter-config). A time limit the user
gave (the producer's max.block.ms, the consumer's --timeout-ms) also bounds the wait for a broker
that accepts the connection but does not answer. Over a broker they use `broker.admin_client`
(AdminClient, GroupMember); on a --data-dir, `logstore` in-process.

Invariants: stdout carries only record output (the consumer writes bytes, unmodified); the
consumer's summary `Processed a total of N messages` goes to stderr once consuming started, also
when it stops on an error (then before the error line); records before a bad producer input line
are sent before the error is reported, as Kafka does; a record batch that fails its checks stops
the consumer after the records before it were printed, with an error naming the topic-partition
and the batch's offset; SIGINT / SIGTERM stop the consumer cleanly (it commits and leaves its
group).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any, Callable, Iterator

from .backends import DirBackend
from .common import ToolError, add_target, parse_props, run_tool, target, tool_parser
from .console_props import (INTERNAL_TOPICS, PRODUCER_CONFIG_FLAGS, ConsumerSettings, FormatError, consumer_settings,
                            invalid_topic_message, invalid_topic_reason, line_reader, load_properties, make_formatter,
                            producer_settings, reader_props)


def _missing_topic(topic: str) -> ToolError:
    """The error for a topic that is not there: Kafka's reason when the name itself is illegal."""
    return ToolError(invalid_topic_message(topic) if invalid_topic_reason(topic) else f"Topic '{topic}' does not exist")


def _open_topic_store(path: str, topic: str) -> Any:
    """The log dir at `path`, opened in-process, which must hold `topic` (else ToolError, closed)."""
    store = DirBackend(path).store
    if not store.has_topic(topic):
        store.close()
        raise _missing_topic(topic)
    return store


def _warn_ignored(what: str, keys: list[str]) -> None:
    if keys:
        sys.stderr.write(f"WARN {what} properties this tool does not use were ignored: {', '.join(keys)}\n")


# -- console producer ------------------------------------------------------------------------

_READER_HELP = ("line reader properties (KEY=VALUE, repeatable): parse.key=false, key.separator=\\t, "
                "parse.headers=false, headers.delimiter=\\t, headers.separator=, (a regex), "
                "headers.key.separator=:, ignore.error=false, null.marker (a key, value or header value equal "
                "to it is null). A line is [h1:v1,h2:v2<headers.delimiter>][key<key.separator>]value")


def add_console_producer_parser(sub: Any) -> None:
    """Register `console-producer` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "console-producer", "produce lines of stdin (kafka-console-producer.sh)",
                    "Read lines from stdin and produce each as a record; same flags as kafka-console-producer.sh.")
    add_target(p)
    p.add_argument("--broker-list", metavar="HOST:PORT",
                   help="DEPRECATED, use --bootstrap-server instead; ignored if --bootstrap-server is specified")
    p.add_argument("--topic", required=True, help="the topic to produce to")
    p.add_argument("--property", action="append", metavar="KEY=VALUE", help=_READER_HELP)
    p.add_argument("--reader-config", metavar="FILE",
                   help="line reader properties file; --property takes precedence over it")
    p.add_argument("--sync", action="store_true",
                   help="send each record on its own as it arrives and wait for the broker's answer")
    p.add_argument("--timeout", type=int, default=None, metavar="MS",
                   help="linger.ms: the longest a record waits for more to fill its batch (default 1000)")
    p.add_argument("--batch-size", type=int, default=None, metavar="BYTES",
                   help="batch.size: a partition's batch is sent once it holds this many bytes (default 16384)")
    p.add_argument("--request-required-acks", default=None, metavar="ACKS",
                   help="acks: -1 or all (default), 1, or 0 (no answer awaited)")
    p.add_argument("--max-block-ms", type=int, default=None, metavar="MS",
                   help="max.block.ms: how long to wait for the topic's partitions to be available (default 60000)")
    p.add_argument("--compression-codec", nargs="?", const="gzip", default="none",
                   choices=["none", "gzip", "snappy", "lz4", "zstd"],
                   help="compress batches: none (default), gzip (without a value), snappy, lz4 or zstd")
    p.add_argument("--line-reader", default=None, metavar="CLASS",
                   help="the line reader class: only Kafka's default LineMessageReader (the --property / "
                        "--reader-config format) exists here")
    for flag, key in PRODUCER_CONFIG_FLAGS:
        p.add_argument(flag, type=int, default=None, metavar="N",
                       help=f"{key}: accepted as kafka-console-producer.sh's flag"
                            + (" (batch size in bytes)" if key == "batch.size" else "; reported as ignored"))
    p.add_argument("--producer-property", action="append", metavar="KEY=VALUE",
                   help="producer configs: acks, linger.ms, batch.size, max.block.ms and client.id are used "
                        "(an explicit flag above wins); any other is reported on stderr as ignored")
    p.add_argument("--producer.config", dest="producer_config", metavar="FILE",
                   help="producer configs file; --producer-property takes precedence over it")
    p.set_defaults(func=lambda args: run_tool(_cmd_console_producer, args, "ERROR "))


def _stdin_lines(tick: float) -> Iterator[str | None]:
    """Lines of stdin as they arrive; None when none arrived for `tick` seconds (time to check
    whether a batch lingered long enough)."""
    import select
    fd = sys.stdin.fileno()
    buf = b""
    while True:
        ready, _, _ = select.select([fd], [], [], tick)
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


def _first_contact_timeout(command_timeout: float, limit_ms: int | None) -> float:
    """Seconds to wait for the broker on connecting: --command-timeout, or less when the tool's
    own time limit in ms (the producer's max.block.ms, the consumer's --timeout-ms) is shorter."""
    if limit_ms is None or limit_ms < 0:
        return command_timeout
    return min(command_timeout, max(limit_ms, 1) / 1000)


def _producer_partitions(client: Any, topic: str, max_block_ms: int) -> int:
    """The partition count of `topic` from the broker (auto-creating it if the broker does),
    waiting up to max.block.ms for its partitions to be available."""
    from ..admin_client import KafkaError
    deadline = time.monotonic() + max_block_ms / 1000
    while True:
        md = client.request(3, {"topics": [{"name": topic}], "allow_auto_topic_creation": True})
        t = next((t for t in md.topics if t.name == topic), None)
        code = int(getattr(t.error_code, "value", t.error_code)) if t is not None else 3
        if code == 0 and t.partitions:
            return len(t.partitions)
        if code == 3:
            raise ToolError(f"Topic '{topic}' does not exist")
        if code == 17:  # INVALID_TOPIC_EXCEPTION: say which topic and why, as Kafka's client does
            raise ToolError(invalid_topic_message(topic))
        if code not in (0, 5):  # LEADER_NOT_AVAILABLE right after auto-creation: retry
            raise KafkaError(code, where=f" (metadata of topic {topic})")
        if time.monotonic() >= deadline:
            raise ToolError(f"Topic {topic} not present in metadata after {max_block_ms} ms.")
        time.sleep(0.1)


def _cmd_console_producer(args: argparse.Namespace) -> int:
    from logstore import records as R
    from logstore.client import DefaultPartitioner
    if not args.bootstrap_server and args.broker_list:
        args.bootstrap_server = args.broker_list  # --broker-list: the deprecated name, still accepted
    cfg = producer_settings(args)
    parse = line_reader(reader_props(args))
    bs, dd = target(args)
    store = client = None
    try:
        if dd:
            store = _open_topic_store(dd, args.topic)
            nparts = store.topic(args.topic).partitions
        else:
            from ..admin_client import AdminClient
            # max.block.ms bounds the wait for the broker's metadata, as Kafka's producer: also
            # the connection and its first answers, so an unresponsive broker fails within it
            client = AdminClient(bs, client_id=cfg.client_id,
                                 timeout=_first_contact_timeout(args.command_timeout, cfg.max_block_ms))
            nparts = _producer_partitions(client, args.topic, cfg.max_block_ms)
            client.timeout = args.command_timeout
        _warn_ignored("Producer", cfg.ignored)
        partitioner = DefaultPartitioner(cfg.batch_size)
        pending: dict[int, list] = {}
        sizes: dict[int, int] = {}
        first: dict[int, float] = {}  # partition -> when its pending batch got its first record
        linger = cfg.linger_ms / 1000

        def send(p: int) -> None:
            recs = pending.pop(p, None)
            sizes.pop(p, None)
            first.pop(p, None)
            if not recs:
                return
            if store is not None:
                store.partition(args.topic, p).append(recs, compression=args.compression_codec)
            else:
                batch = R.build_batch(recs, compression=args.compression_codec)
                client.produce(args.topic, p, batch, acks=cfg.acks)  # type: ignore[union-attr]

        lineno = 0
        for line in _stdin_lines(min(0.1, linger) if linger > 0 else 0.1):
            if line is not None:
                lineno += 1
                try:
                    k, v, hs = parse(lineno, line)
                except ToolError:
                    for p in list(pending):  # what came before the bad line is sent, as Kafka's does
                        send(p)
                    raise
                p = partitioner.partition(args.topic, k, nparts)
                size = len(k or b"") + len(v or b"") + sum(len(hk) + len(hv or b"") + 2 for hk, hv in hs) + 16
                if k is None:
                    partitioner.on_append(args.topic, p, size)
                pending.setdefault(p, []).append((k, v, hs))
                first.setdefault(p, time.monotonic())
                sizes[p] = sizes.get(p, 0) + size
                if args.sync or sizes[p] >= cfg.batch_size:
                    send(p)
            now = time.monotonic()
            for p in [p for p, t0 in first.items() if now - t0 >= linger]:
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

_FORMATTER_HELP = ("formatter properties (KEY=VALUE, repeatable): print.key, print.timestamp, print.offset, "
                   "print.partition, print.headers, print.value (true|false), key.separator, line.separator, "
                   "headers.separator, null.literal")


def add_console_consumer_parser(sub: Any) -> None:
    """Register `console-consumer` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "console-consumer", "print records of a topic (kafka-console-consumer.sh)",
                    "Consume a topic and print each record; same flags and output as kafka-console-consumer.sh. "
                    "Exactly one of --topic and --include is required.")
    add_target(p)
    p.add_argument("--topic", help="the topic to consume")
    p.add_argument("--include", metavar="REGEX",
                   help="consume every topic whose whole name matches this regular expression (internal topics "
                        "excluded unless exclude.internal.topics=false); new matching topics are picked up")
    p.add_argument("--whitelist", metavar="REGEX", help="DEPRECATED, use --include instead; ignored if --include "
                                                        "is specified")
    p.add_argument("--from-beginning", action="store_true",
                   help="without a committed offset, start at the earliest record instead of the end")
    p.add_argument("--group", help="consumer group: join it, resume from and commit its offsets")
    p.add_argument("--partition", type=int, help="consume only this partition of --topic (no group)")
    p.add_argument("--offset", default=None, help="with --partition: earliest, latest (default) or an offset")
    p.add_argument("--max-messages", type=int, default=None, help="exit after this many records")
    p.add_argument("--timeout-ms", type=int, default=None, help="exit when no record came for this long")
    p.add_argument("--formatter", default="kafka.tools.DefaultMessageFormatter", metavar="CLASS",
                   help="kafka.tools.DefaultMessageFormatter (default; also accepted as "
                        "org.apache.kafka.tools.consumer.DefaultMessageFormatter) or "
                        "kafka.tools.NoOpMessageFormatter (prints nothing); other classes are refused")
    p.add_argument("--property", action="append", metavar="KEY=VALUE", help=_FORMATTER_HELP)
    p.add_argument("--formatter-config", metavar="FILE",
                   help="formatter properties file; --property takes precedence over it")
    p.add_argument("--key-deserializer", metavar="CLASS",
                   help="the formatter's key.deserializer (e.g. org.apache.kafka.common.serialization."
                        "LongDeserializer); --property key.deserializer=... takes precedence")
    p.add_argument("--value-deserializer", metavar="CLASS", help="the formatter's value.deserializer")
    p.add_argument("--skip-message-on-error", action="store_true",
                   help="skip a record the formatter fails on instead of stopping (as in Kafka this does not "
                        "cover a corrupt record batch, which always stops the consumer)")
    p.add_argument("--consumer-property", action="append", metavar="KEY=VALUE",
                   help="consumer configs: group.id (as --group), auto.offset.reset (earliest|latest|none), "
                        "client.id, enable.auto.commit, auto.commit.interval.ms, exclude.internal.topics, "
                        "isolation.level; any other is reported on stderr as ignored")
    p.add_argument("--consumer.config", dest="consumer_config", metavar="FILE",
                   help="consumer configs file; --consumer-property takes precedence over it")
    p.add_argument("--isolation-level", default=None,
                   help="read_uncommitted (default) or read_committed; accepted, read_uncommitted is what is served")
    p.set_defaults(func=lambda args: run_tool(_cmd_console_consumer, args, "ERROR "))


class _Run:
    """A consumer run's output and stop conditions: the records written, --max-messages,
    --timeout-ms (from the last record, or from the start) and SIGINT / SIGTERM."""

    def __init__(self, fmt: Any, limit: int | None, timeout_ms: int | None):
        self.fmt = fmt
        self.limit = limit
        self.timeout = None if timeout_ms is None or timeout_ms < 0 else timeout_ms / 1000
        self.out = sys.stdout.buffer
        self.count = 0
        self.skip_errors = False  # --skip-message-on-error
        self.stopped = False
        self.started = False  # consuming began: the summary is printed at the end
        self.last_data = time.monotonic()

    def full(self) -> bool:
        return self.limit is not None and self.count >= self.limit

    def idle_left(self) -> float:
        """Seconds until --timeout-ms expires (a large number without it)."""
        if self.timeout is None:
            return 3600.0
        return max(0.0, self.timeout - (time.monotonic() - self.last_data))

    def done(self) -> bool:
        return self.stopped or self.full() or (self.timeout is not None and self.idle_left() <= 0)

    def write(self, partition: int, ts_type: str, rec: Any) -> None:
        self.count += 1  # counted even if it cannot be printed, as Kafka's
        try:
            data = self.fmt.format(partition, rec.offset, ts_type, rec.timestamp, rec.key, rec.value, rec.headers)
        except FormatError as e:
            if not self.skip_errors:
                raise
            sys.stderr.write(f"ERROR Error processing message, skipping this message: {e}\n")
            return
        self.out.write(data)


def _invalid_batch(tp: tuple[str, int], offset: int, cause: Any, in_file: bool) -> ToolError:
    """Kafka's consumer error for a batch that fails its checks. Over a broker, a position in
    the cause is one in the fetch response, meaningless to the user, so it is left out."""
    text = str(cause)
    if not in_file:
        text = re.sub(r" at position \d+", "", text, count=1)
    return ToolError(f"Record batch for partition {tp[0]}-{tp[1]} at offset {offset} is invalid, cause: {text}")


def _emit_batches(run: _Run, tp: tuple[str, int], data: bytes, pos: int, *, path: str | None = None,
                  base: int = 0) -> int:
    """Write the records at offsets >= `pos` of the record batches in `data` (read for `tp` at
    position `pos`; from file `path` at position `base` when read from a log dir), in order, up to
    --max-messages; returns the next position. A batch that fails its checks (CRC, header,
    decoding) raises ToolError naming tp and its offset, after the records before it were written."""
    from logstore import records as R
    found = False
    for bpos, h in R.iter_headers(data):
        found = True
        if h.last_offset < pos:
            continue
        if not h.is_control:
            try:
                recs = R.decode_batch(data, bpos, path=path, base=base)
            except Exception as e:  # noqa: BLE001 - whatever fails in decoding makes this batch invalid
                raise _invalid_batch(tp, h.base_offset, e, path is not None) from None
            ts_type = "LogAppendTime" if h.log_append_time else "CreateTime"
            for rec in recs:
                if rec.offset < pos:
                    continue
                if run.full():
                    return pos
                run.write(tp[1], ts_type, rec)
                pos = rec.offset + 1
        pos = max(pos, h.last_offset + 1)
    if not found and data:  # not even one whole batch: its header is garbage or it is cut short
        where = f" at position {base} of {path}" if path else ""
        cause = f"batch is truncated to {len(data)} bytes{where}"
        if len(data) >= R.HEADER_SIZE:
            h = R.read_header(data, 0)
            try:
                R.check_header(h, where=where, position=base, path=path)
            except Exception as e:  # noqa: BLE001
                cause = str(e)
            pos = h.base_offset if h.base_offset >= 0 else pos
        raise _invalid_batch(tp, pos, cause, path is not None)
    return pos


def _no_reset(tps: list[tuple[str, int]]) -> ToolError:
    return ToolError("Undefined offset with no reset policy for partitions: ["
                     + ", ".join(f"{t}-{p}" for t, p in sorted(tps)) + "]")


def _out_of_range(tp: tuple[str, int], pos: int) -> ToolError:
    return ToolError(f"Offsets out of range with no configured reset policy for partitions: {{{tp[0]}-{tp[1]}={pos}}}")


def _cmd_console_consumer(args: argparse.Namespace) -> int:
    import signal
    include = args.include if args.include is not None else args.whitelist
    if (args.topic is None) == (include is None):
        raise ToolError("Exactly one of include/topic is required.")
    if args.partition is not None:
        if args.topic is None:
            raise ToolError("The topic is required when partition is specified.")
        if args.from_beginning and args.offset is not None:
            raise ToolError("Options from-beginning and offset cannot be specified together.")
    elif args.offset is not None:
        raise ToolError("The partition is required when offset is specified.")
    cfg = consumer_settings(args)
    if args.offset is not None:
        if args.offset.lower() in ("earliest", "latest"):
            args.offset = args.offset.lower()
        else:
            _offset_arg(args.offset)  # a bad value is reported before anything is opened, as Kafka's tool does
    pattern = None
    if include is not None:
        try:
            pattern = re.compile(include)
        except re.error as e:
            raise ToolError(f"Invalid regular expression '{include}' for --include: {e}") from None
    # the formatter's properties as Kafka merges them: --formatter-config, the deserializer flags, --property
    props = load_properties(args.formatter_config, "--formatter-config") if args.formatter_config else {}
    for key, flag in (("key.deserializer", args.key_deserializer), ("value.deserializer", args.value_deserializer)):
        if flag:
            props[key] = flag
    props.update(parse_props(args.property, "--property"))
    run = _Run(make_formatter(cfg.formatter, props), args.max_messages, args.timeout_ms)
    run.skip_errors = args.skip_message_on_error
    bs, dd = target(args)
    _warn_ignored("Consumer", cfg.ignored)

    def _stop(_sig: int, _frm: Any) -> None:
        run.stopped = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        if dd:
            _consume_dir(args, cfg, run, dd, pattern)
        else:
            _consume_broker(args, cfg, run, bs or "", pattern)
    finally:
        if run.started:
            sys.stderr.write(f"Processed a total of {run.count} messages\n")
    return 0


def _matching(pattern: re.Pattern[str], names: Any, cfg: ConsumerSettings, internal: Any = ()) -> list[str]:
    """The topics an --include pattern subscribes to: whole-name matches, internal ones left out
    unless exclude.internal.topics=false."""
    return sorted(t for t in names if pattern.fullmatch(t)
                  and not (cfg.exclude_internal and (t in INTERNAL_TOPICS or t in internal)))


def _consume_dir(args: argparse.Namespace, cfg: ConsumerSettings, run: _Run, dd: str,
                 pattern: re.Pattern[str] | None) -> None:
    """Consume from a log dir opened in-process (exclusively: nothing else appends meanwhile)."""
    from logstore.errors import CorruptRecordError, OffsetOutOfRangeError
    store = DirBackend(dd).store
    gos = None
    positions: dict[tuple[str, int], int] = {}
    committed_pos: dict[tuple[str, int], int] = {}

    def commit() -> None:
        nonlocal committed_pos
        if gos is not None and cfg.auto_commit and positions and positions != committed_pos:
            gos.commit(cfg.group, dict(positions))
            committed_pos = dict(positions)

    def reset(tp: tuple[str, int], policy: str) -> int:
        lg = store.partition(*tp)
        return lg.log_start_offset if policy == "earliest" else lg.log_end_offset

    try:
        if pattern is not None:
            topics = _matching(pattern, store.topics(), cfg)
        elif not store.has_topic(args.topic):
            raise _missing_topic(args.topic)
        else:
            topics = [args.topic]
        tps = [(t, p) for t in topics for p in range(store.topic(t).partitions)]
        if args.partition is not None:
            tp, start = _partition_start(args, tps, reset)
            positions[tp] = start
            run.started = True
        else:
            run.started = True
            if cfg.group:
                from logstore.client import group_offsets
                gos = group_offsets(store)
            committed = {tp: om.offset for tp, om in gos.fetch(cfg.group, tps).items()} if gos is not None else {}
            missing = [tp for tp in tps if tp not in committed]
            if missing and cfg.reset == "none":
                raise _no_reset(missing)
            for tp in tps:
                positions[tp] = committed[tp] if tp in committed else reset(tp, cfg.reset)
            # a position taken from auto.offset.reset is not committed yet: the next commit stores
            # it, as Kafka's auto-commit does (the group resumes there, not at a later end)
            committed_pos = {tp: committed[tp] for tp in tps if tp in committed}
        run.last_data = time.monotonic()  # --timeout-ms counts from when consuming starts
        while not run.done():
            before = run.count
            for tp in sorted(positions):
                if run.full():
                    break
                lg = store.partition(*tp)
                pos = positions[tp]
                if pos == lg.log_end_offset:
                    continue
                try:
                    s = lg.read_slice(pos, 1 << 20)
                except OffsetOutOfRangeError:  # below the log start or past the end: reset, as Kafka does
                    if cfg.reset == "none":
                        raise _out_of_range(tp, pos) from None
                    positions[tp] = reset(tp, cfg.reset)
                    continue
                except CorruptRecordError as e:
                    raise _invalid_batch(tp, pos, e, True) from None
                positions[tp] = _emit_batches(run, tp, s.read(), pos, path=s.path, base=s.position)
            if run.count > before:
                run.out.flush()
                run.last_data = time.monotonic()
                commit()
            elif not run.done():
                time.sleep(min(0.2, run.idle_left()))
        commit()
    except BaseException:
        _flush_and_commit_quietly(run, commit)
        raise
    finally:
        store.close()


def _consume_broker(args: argparse.Namespace, cfg: ConsumerSettings, run: _Run, bs: str,
                    pattern: re.Pattern[str] | None) -> None:
    """Consume through a broker: a group member (range assignor) with --group / group.id, else
    every partition of the topics (or the one --partition) assigned by hand."""
    from ..admin_client import EARLIEST, LATEST, AdminClient, GroupMember, KafkaError
    # --timeout-ms bounds the wait for the first answers too: an unresponsive broker fails within it
    client = AdminClient(bs, client_id=cfg.client_id,
                         timeout=_first_contact_timeout(args.command_timeout, args.timeout_ms))
    client.timeout = args.command_timeout
    member = None
    positions: dict[tuple[str, int], int] = {}
    committed_pos: dict[tuple[str, int], int] = {}
    reset_ts = {"earliest": EARLIEST, "latest": LATEST}.get(cfg.reset)

    def subscribed() -> tuple[list[str], list[tuple[str, int]]]:
        """The topics consumed and their partitions, from the broker's metadata."""
        if pattern is None:
            md = client.metadata([args.topic])["topics"]
            topics = [args.topic]
        else:
            md = client.metadata()["topics"]
            topics = _matching(pattern, [t for t, v in md.items() if not v["error"]], cfg,
                               {t for t, v in md.items() if v["internal"]})
        tps = []
        for t in topics:
            v = md.get(t)
            if v is None or v["error"] == 3:
                raise ToolError(f"Topic '{t}' does not exist")
            if v["error"] == 17:
                raise ToolError(invalid_topic_message(t))
            if v["error"]:
                raise KafkaError(v["error"], where=f" (metadata of topic {t})")
            tps += [(t, part[0]) for part in v["partitions"]]
        return topics, tps

    def starts(tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Where partitions without a committed offset start: auto.offset.reset."""
        if not tps:
            return {}
        if reset_ts is None:
            raise _no_reset(tps)
        return client.list_offsets(tps, reset_ts)

    def assign(tps: list[tuple[str, int]]) -> None:
        nonlocal committed_pos
        positions.clear()
        committed = client.offset_fetch(cfg.group, tps) if cfg.group and tps else {}
        start = starts([tp for tp in tps if tp not in committed])
        for tp in tps:
            positions[tp] = committed.get(tp, start.get(tp, 0))
        # positions from auto.offset.reset are committed by the next commit, as Kafka's
        # auto-commit does: the group then resumes there, not at whatever the end is later
        committed_pos = {tp: committed[tp] for tp in tps if tp in committed}

    def commit(force: bool = False) -> None:
        nonlocal committed_pos
        if member is not None and cfg.auto_commit and positions != committed_pos and (force or member.member_id):
            member.commit(positions)
            committed_pos = dict(positions)

    try:
        topics, all_tps = subscribed()
        if args.partition is not None:
            tp, start = _partition_start(args, all_tps, lambda tp, policy: client.list_offsets(
                [tp], EARLIEST if policy == "earliest" else LATEST)[tp])
            positions[tp] = start
            run.started = True
        else:
            run.started = True
            if cfg.group:
                if topics:
                    member = GroupMember(client, cfg.group, topics)
                    assign(member.join())
            else:
                assign(all_tps)
        last_hb = last_commit = last_refresh = run.last_data = time.monotonic()
        while not run.done():
            now = time.monotonic()
            if pattern is not None and now - last_refresh >= 5:  # a pattern picks up new topics
                last_refresh = now
                new_topics, new_tps = subscribed()
                if set(new_tps) != set(all_tps):
                    topics, all_tps = new_topics, new_tps
                    if cfg.group:
                        commit()
                        if member is None:
                            member = GroupMember(client, cfg.group, topics)
                        member.topics = topics
                        assign(member.join())
                        last_hb = time.monotonic()
                    else:
                        kept = {tp: positions[tp] for tp in new_tps if tp in positions}
                        kept.update(starts([tp for tp in new_tps if tp not in positions]))
                        positions.clear()
                        positions.update(kept)
                    continue
            if member is not None and now - last_hb >= 3:
                last_hb = now
                if not member.heartbeat():
                    try:
                        commit(force=True)
                    except KafkaError:
                        pass
                    assign(member.join())
                    continue
            if not positions:
                time.sleep(min(0.2, run.idle_left()))
                continue
            wait = max(0, min(200, int(run.idle_left() * 1000)))
            res = client.fetch(positions, max_wait_ms=wait)
            before = run.count
            for tp, (code, _hw, data) in sorted(res.items()):
                if run.full():
                    break
                if code == 1:  # OFFSET_OUT_OF_RANGE: reset as the consumer would
                    if reset_ts is None:
                        raise _out_of_range(tp, positions[tp])
                    positions[tp] = client.list_offsets([tp], reset_ts)[tp]
                    continue
                if code:
                    raise KafkaError(code, where=f" (fetching {tp[0]}-{tp[1]})")
                positions[tp] = _emit_batches(run, tp, data, positions[tp])
            if run.count > before:
                run.out.flush()
                run.last_data = time.monotonic()
            if time.monotonic() - last_commit >= cfg.commit_interval_ms / 1000:
                commit()
                last_commit = time.monotonic()
        commit()
    except BaseException:
        _flush_and_commit_quietly(run, commit)
        raise
    finally:
        try:
            if member is not None:
                member.leave()
        except Exception:  # noqa: BLE001 - leaving is a courtesy: the session timeout removes us anyway
            pass
        client.close()


def _partition_start(args: argparse.Namespace, tps: list[tuple[str, int]],
                     offset_at: Callable[[tuple[str, int], str], int]) -> tuple[tuple[str, int], int]:
    """`--partition P [--offset O]`: the partition and where reading starts, as Kafka's tool:
    `latest` (the default; the earliest with --from-beginning), `earliest`, or a non-negative
    number. `offset_at(tp, "earliest" | "latest")` looks the offset up in the backend."""
    tp = (args.topic, args.partition)
    if tp not in tps:
        raise ToolError(f"topic '{args.topic}' has no partition {args.partition}")
    off = args.offset
    if off is None or off == "latest":
        return tp, offset_at(tp, "earliest" if args.from_beginning else "latest")
    if off == "earliest":
        return tp, offset_at(tp, "earliest")
    return tp, _offset_arg(off)


def _offset_arg(off: str) -> int:
    """A numeric --offset: a non-negative long, as kafka-console-consumer.sh accepts."""
    try:
        value = int(off)
    except ValueError:
        value = -1
    if value < 0:
        raise ToolError(f"The provided offset value '{off}' is incorrect. Valid values are 'earliest', "
                        f"'latest', or a non-negative long.")
    return value


def _flush_and_commit_quietly(run: Any, commit: Any) -> None:
    """On the way out after an error: flush what was printed and commit it, as Kafka's consumer
    does on close (printed counts as consumed); a failure here must not hide the first error."""
    try:
        run.out.flush()
        commit()
    except Exception:  # noqa: BLE001 - the error being raised is the one to report
        pass
