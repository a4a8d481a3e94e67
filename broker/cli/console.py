"""`logstore console-producer` and `logstore console-consumer`: kafka-console-producer.sh and
kafka-console-consumer.sh.

Owns: the producer's line parsing (`parse.key`, `key.separator`, `ignore.error`, `null.marker`)
and batching (per partition, sent at `--batch-size` bytes or after 100 ms without input, keys
partitioned as Kafka's default partitioner does), and the consumer's record formatting (Kafka's
DefaultMessageFormatter: `print.key`, `print.timestamp`, ...), start position, optional group
membership with periodic commits, and `--max-messages` / `--timeout-ms` stops. Over a broker they
use `broker.admin_client` (AdminClient, GroupMember); on a --data-dir, `logstore` in-process.

Invariants: stdout carries only record output (the consumer writes bytes, unmodified); the
consumer's summary `Processed a total of N messages` goes to stderr once consuming started;
records before a bad producer input line are sent before the error is reported, as Kafka does;
SIGINT / SIGTERM stop the consumer cleanly (it commits and leaves its group).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, Iterator

from .backends import DirBackend, topic_partitions
from .common import ToolError, add_target, parse_props, run_tool, target, tool_parser


def _open_topic_store(path: str, topic: str) -> Any:
    """The log dir at `path`, opened in-process, which must hold `topic` (else ToolError, closed)."""
    store = DirBackend(path).store
    if not store.has_topic(topic):
        store.close()
        raise ToolError(f"Topic '{topic}' does not exist")
    return store


# -- console producer ------------------------------------------------------------------------

def add_console_producer_parser(sub: Any) -> None:
    """Register `console-producer` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "console-producer", "produce lines of stdin (kafka-console-producer.sh)",
                    "Read lines from stdin and produce each as a record; same flags as kafka-console-producer.sh.")
    add_target(p)
    p.add_argument("--topic", required=True, help="the topic to produce to")
    p.add_argument("--property", action="append", metavar="KEY=VALUE",
                   help="parse.key, key.separator (default TAB), ignore.error, null.marker")
    p.add_argument("--request-required-acks", default="-1", help="acks: -1/all (default), 1 or 0")
    p.add_argument("--compression-codec", nargs="?", const="gzip", default="none",
                   choices=["none", "gzip", "snappy", "lz4", "zstd"], help="compress batches (default none)")
    p.add_argument("--batch-size", type=int, default=16384, help="bytes per batch (default 16384)")
    p.add_argument("--producer-property", action="append", metavar="KEY=VALUE", help="accepted and ignored")
    p.set_defaults(func=lambda args: run_tool(_cmd_console_producer, args, "ERROR "))


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
    props = parse_props(args.property, "--property")
    parse = _line_reader(props)
    acks = {"all": -1, "-1": -1, "1": 1, "0": 0}.get(str(args.request_required_acks).strip().lower())
    if acks is None:
        raise ToolError(f"invalid --request-required-acks {args.request_required_acks!r}: use -1, all, 1 or 0")
    bs, dd = target(args)
    store = client = None
    if dd:
        store = _open_topic_store(dd, args.topic)
        nparts = store.topic(args.topic).partitions
    else:
        from ..admin_client import AdminClient, KafkaError
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

def add_console_consumer_parser(sub: Any) -> None:
    """Register `console-consumer` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "console-consumer", "print records of a topic (kafka-console-consumer.sh)",
                    "Consume a topic and print each record; same flags and output as kafka-console-consumer.sh.")
    add_target(p)
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
    p.set_defaults(func=lambda args: run_tool(_cmd_console_consumer, args, "ERROR "))


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
    props = parse_props(args.property, "--property")
    fmt = _Formatter(props)
    bs, dd = target(args)
    if args.group and args.partition is not None:
        raise ToolError("Options group and partition cannot be specified together.")
    if args.offset is not None and args.partition is None:
        raise ToolError("The partition is required when offset is specified.")
    if args.offset is not None and args.from_beginning:
        raise ToolError("Options from-beginning and offset cannot be specified together.")
    if args.offset not in (None, "earliest", "latest"):
        _offset_arg(args.offset)  # a bad value is reported before anything is opened, as Kafka's tool does
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
        store = _open_topic_store(dd, args.topic)
        try:
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

    from ..admin_client import EARLIEST, LATEST, AdminClient, GroupMember, KafkaError
    client = AdminClient(bs, client_id="console-consumer", timeout=args.command_timeout)
    member = None
    started = False
    try:
        all_tps = [(args.topic, p[0]) for p in topic_partitions(client, args.topic)]
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
                positions[tp] = _offset_arg(off)
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
    c.seek(tp, _offset_arg(off))


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
