"""`logstore dump-log` and `logstore verify`: the offline tools, which read files and never open
a log dir (no lock taken, nothing written, no broker needed).

Owns: the two tools' flags and printing. The work is in `logstore.tools` (`dump_files`: Kafka's
kafka-dump-log.sh output for .log / .index / .timeindex files, with its --offsets-decoder,
--skip-record-metadata, --index-sanity-check and StringDecoder-only --key/--value-decoder-class;
`verify_dir`: every batch's
length, magic, CRC and offsets, and every index against its log); this module only writes what
those yield, plus `verify`'s rich summary table and its progress bar (on a terminal, for dirs
over 8 MiB).

Invariants: `verify` prints `BAD <problem>` lines then a table then `OK: ...` (exit 0) or
`FAILED: N problem(s) ...` (exit 1); `rich` and `logstore.tools` are imported only when a tool runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .common import ToolError, add_version_flag, run_tool, tool_parser


_STRING_DECODERS = ("org.apache.kafka.tools.api.StringDecoder", "kafka.serializer.StringDecoder", "StringDecoder")


def add_dump_log_parser(sub: Any) -> None:
    """Register `dump-log` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "dump-log", "print the batches of log segment files (kafka-dump-log.sh)",
                    "Print the record batches of .log files, and the entries of .index / .timeindex files, "
                    "in kafka-dump-log.sh's format.")
    p.add_argument("--files", required=True, help="comma separated .log, .index and .timeindex files")
    p.add_argument("--print-data-log", action="store_true",
                   help="also print each record's key and payload (implied by the decoder flags)")
    p.add_argument("--deep-iteration", action="store_true",
                   help="print each record's metadata (implied by --print-data-log)")
    p.add_argument("--skip-record-metadata", action="store_true",
                   help="leave out each record's metadata (`| offset: ...`); control records print as empty lines")
    p.add_argument("--offsets-decoder", action="store_true",
                   help="decode records as __consumer_offsets offset commits and group metadata (JSON)")
    p.add_argument("--key-decoder-class", nargs="?", const=_STRING_DECODERS[0], metavar="CLASS",
                   help="how keys are decoded: only org.apache.kafka.tools.api.StringDecoder (UTF-8, the default) "
                        "exists here; implies --print-data-log")
    p.add_argument("--value-decoder-class", nargs="?", const=_STRING_DECODERS[0], metavar="CLASS",
                   help="how payloads are decoded: only org.apache.kafka.tools.api.StringDecoder (the default); "
                        "implies --print-data-log")
    p.add_argument("--verify-index-only", action="store_true", help="only check indexes against their log")
    p.add_argument("--index-sanity-check", action="store_true",
                   help="only run the start-up sanity check of each .index / .timeindex (`F passed sanity check.`)")
    p.add_argument("--max-bytes", type=int, default=None, help="read at most this many bytes of each .log")
    p.add_argument("--max-message-size", type=int, default=None, metavar="BYTES",
                   help="accepted for kafka-dump-log.sh compatibility: batches are read whole, whatever their size")
    add_version_flag(p)
    p.set_defaults(func=lambda args: run_tool(_cmd_dump_log, args, "Error: "))


def _cmd_dump_log(args: argparse.Namespace) -> int:
    from logstore.tools import dump_files
    for flag, cls in (("--key-decoder-class", args.key_decoder_class), ("--value-decoder-class",
                                                                        args.value_decoder_class)):
        if cls is not None and cls not in _STRING_DECODERS:
            raise ToolError(f"Failed to load decoder class {cls} ({flag}): only {_STRING_DECODERS[0]} is available")
    files = [f.strip() for f in args.files.split(",") if f.strip()]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise ToolError(f"no such file: {missing[0]}")
    print_data = (args.print_data_log or args.offsets_decoder or args.key_decoder_class is not None
                  or args.value_decoder_class is not None)
    out, err = sys.stdout, sys.stderr
    for stream, line in dump_files(files, print_data_log=print_data, deep_iteration=args.deep_iteration,
                                   verify_index_only=args.verify_index_only, max_bytes=args.max_bytes,
                                   skip_record_metadata=args.skip_record_metadata,
                                   offsets_decoder=args.offsets_decoder,
                                   index_sanity_check=args.index_sanity_check):
        (out if stream == "out" else err).write(line + "\n")
    return 0


def add_verify_parser(sub: Any) -> None:
    """Register `verify` on the `logstore` command's subparsers."""
    p = tool_parser(sub, "verify", "check every batch of a log dir offline (CRC, lengths, offsets, indexes)",
                    "Scan a log dir without opening it (no lock, nothing written): every batch's length, magic, "
                    "CRC and offsets, and every index against its log. Prints each bad batch with file and "
                    "position and a summary table; exit code 1 if anything is bad.")
    p.add_argument("dir", help="the log dir")
    p.add_argument("--deep", action="store_true", help="also decode (decompress) every record")
    p.add_argument("--no-progress", action="store_true", help="never show the progress bar")
    p.set_defaults(func=lambda args: run_tool(_cmd_verify, args, "Error: "))


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
