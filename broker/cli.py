"""The `logstore` command line. This module holds `serve`; other tools add subcommands.

    logstore serve [server.properties] [--override key=value ...]

Extending: add a `cmd_<name>(args) -> int` and register it in `build_parser` with
`sub.add_parser(...)` and `set_defaults(func=cmd_<name>)`. Errors are one line on stderr and
exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Sequence


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logstore", description="A Kafka-compatible log store.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("serve", help="run the broker")
    p.add_argument("config", nargs="?", help="server.properties (Kafka key names)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="set a config key, overriding the file (repeatable)")
    p.add_argument("--log-level", default="info", help="debug, info, warning, error (default info)")
    p.set_defaults(func=cmd_serve)
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
