"""The `logstore` command line (console script `logstore = broker.cli:main`; also
`python -m broker.cli` and `python -m broker`).

    logstore serve [server.properties] [--override key=value ...]

Kafka's tools, with their flags and output shapes:
    logstore topics | configs | console-producer | console-consumer | consumer-groups
             | get-offsets | delete-records | log-dirs                               (admin and
        data tools; `--bootstrap-server HOST:PORT`, or `--data-dir DIR` to open a log dir directly)
    logstore dump-log --files F.log | verify DIR                                      (offline)

Modules:
    serve      `serve`
    topics     `topics`, `configs`
    console    `console-producer`, `console-consumer`
    console_props  their line parser, properties files and flags, formatters, topic-name rules
    groups     `consumer-groups`
    groups_describe  its `--describe --offsets | --members | --state` views and `--list --state`
    groups_reset  its `--reset-offsets` scenarios (datetime, duration, CSV plans, `--export`)
    offset_tools  `get-offsets`, `delete-records`, `log-dirs --describe`
    logtools   `dump-log`, `verify`
    backends   the admin operations over a broker (NetBackend) or on a log dir (DirBackend)
    common     ToolError, the one-line-error parser, target flags, KEY=VALUE parsing, `run_tool`

Extending: add a module with `add_<name>_parser(sub)`, which registers the subcommand with
`tool_parser(...)` and `set_defaults(func=lambda args: run_tool(_cmd_<name>, args, PREFIX))`,
and call it from `add_tool_parsers` below. Errors are one line on stderr and exit code 1, never
a traceback (common.py).

Invariant: start-up is cheap: importing this package imports only the standard library's
argparse and friends; `kio` (via broker.admin_client), `logstore`, `rich` and the server are
imported by the command that needs them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from .common import OneLineParser, ToolError
from .console import add_console_consumer_parser, add_console_producer_parser
from .groups import add_consumer_groups_parser
from .logtools import add_dump_log_parser, add_verify_parser
from .offset_tools import add_delete_records_parser, add_get_offsets_parser, add_log_dirs_parser
from .serve import add_serve_parser, cmd_serve
from .topics import add_configs_parser, add_topics_parser


def add_tool_parsers(sub: Any) -> None:
    """Register the tools on the `logstore` command's subparsers."""
    add_topics_parser(sub)
    add_configs_parser(sub)
    add_console_producer_parser(sub)
    add_console_consumer_parser(sub)
    add_consumer_groups_parser(sub)
    add_get_offsets_parser(sub)
    add_delete_records_parser(sub)
    add_log_dirs_parser(sub)
    add_dump_log_parser(sub)
    add_verify_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    """The `logstore` command's parser, every subcommand registered."""
    parser = OneLineParser(prog="logstore", description="A Kafka-compatible log store.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_serve_parser(sub)
    add_tool_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `logstore` command with `argv` (default sys.argv[1:]); the exit code."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


__all__ = ["main", "build_parser", "add_tool_parsers", "cmd_serve", "ToolError"]
