"""`logstore serve`: run the broker in the foreground until SIGTERM or SIGINT.

    logstore serve [server.properties] [--override key=value ...] [--log-level LEVEL]

Owns: reading the config (a Kafka server.properties file, then `--override`s), logging to stderr,
starting `broker.server.Broker` on its event loop and stopping it on a signal. The signal handlers
are in place before start-up begins: a SIGTERM / SIGINT that arrives while the broker starts stops
it cleanly as soon as it has started (a second one exits at once; the next start recovers).

Invariants: `listening on HOST:PORT` is printed on stdout (flushed) only once the broker accepts
connections (broker/pytest_plugin.py and the tests wait for it); a bad config or a broker that
cannot start is one line on stderr prefixed `logstore serve: ` and exit code 1. The server,
asyncio and the broker's config are imported only when `serve` runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_serve_parser(sub: Any) -> None:
    """Register `serve` on the `logstore` command's subparsers."""
    p = sub.add_parser("serve", help="run the broker")
    p.add_argument("config", nargs="?", help="server.properties (Kafka key names)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="set a config key, overriding the file (repeatable)")
    p.add_argument("--log-level", default="info", help="debug, info, warning, error (default info)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the broker until SIGTERM / SIGINT; the exit code."""
    import asyncio
    import logging
    import os
    import signal

    from ..config import BrokerConfig, ConfigError, parse_overrides
    from ..server import Broker, new_event_loop

    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = BrokerConfig.load(args.config, parse_overrides(args.override))
    except (ConfigError, OSError) as e:
        print(f"logstore serve: {e}", file=sys.stderr)
        return 1

    async def run() -> int:
        broker = Broker(config)
        started = stop_requested = False

        def on_signal(sig: int) -> None:
            # installed before start-up: the listener answers before start() returns (the group
            # coordinator loads after it), and a signal there must still mean a clean stop
            nonlocal stop_requested
            if started:
                asyncio.ensure_future(broker.stop())
            elif stop_requested:   # a second one during a long recovery: go now, the next start recovers
                print("logstore serve: exiting during start-up", file=sys.stderr, flush=True)
                os._exit(128 + sig)
            else:
                stop_requested = True
                print("logstore serve: stopping once start-up completes (signal again to exit at once)",
                      file=sys.stderr, flush=True)

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await broker.start()
        except Exception as e:  # noqa: BLE001
            print(f"logstore serve: cannot start: {e}", file=sys.stderr)
            return 1
        started = True
        if stop_requested:
            await broker.stop()
            return 0
        print(f"listening on {broker.host}:{broker.port}", flush=True)
        await broker.serve_forever()
        return 0

    loop = new_event_loop()
    try:
        return loop.run_until_complete(run())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
