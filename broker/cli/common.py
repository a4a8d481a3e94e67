"""What every `logstore` tool shares: its parser class, target flags, `KEY=VALUE` parsing, and
the error policy.

Owns: `ToolError` (a failure the user can act on), `OneLineParser` (argparse whose usage
errors are one line), `tool_parser` / `add_target` (a subcommand with the
`--bootstrap-server | --data-dir` target flags), `target` (which of the two was given),
`parse_props` (`--property` / `--config` style lists) and `run_tool`.

Invariant (every tool's contract): an expected failure is one line on stderr, `<prefix><message>`,
and exit code 1, never a traceback (unless LOGSTORE_DEBUG is set and the failure is a bug);
a closed stdout (BrokenPipeError) exits 0 and Ctrl-C exits 130. Imports only the standard
library at module import: `broker.admin_client` (kio) is imported by the commands that use it.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from typing import Any, Callable

_ADMIN_CLIENT = "broker.admin_client"  # its errors are recognised only once a command imported it


class ToolError(Exception):
    """A failure the user can act on: printed as one line on stderr, exit code 1."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 1."""

    def error(self, message: str) -> "typing.NoReturn":  # type: ignore[override]
        self.exit(1, f"{self.prog}: error: {message} (see --help)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # as a subcommand, report unknown flags here (one line) rather than in the top parser
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras


def tool_parser(sub: Any, name: str, help_: str, description: str) -> argparse.ArgumentParser:
    """A subcommand parser of the `logstore` command, with one-line usage errors."""
    p = sub.add_parser(name, help=help_, description=description)
    p.__class__ = OneLineParser  # keep one-line errors even if the top parser is a plain ArgumentParser
    return p


def add_target(p: argparse.ArgumentParser) -> None:
    """The target flags: --bootstrap-server or --data-dir (one of), and --command-timeout."""
    g = p.add_argument_group("target (one of)")
    g.add_argument("--bootstrap-server", metavar="HOST:PORT", help="the broker to talk to")
    g.add_argument("--data-dir", metavar="DIR", help="open this log dir directly (no broker may hold it)")
    g.add_argument("--command-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for the broker (default 30)")


def parse_props(items: list[str] | None, flag: str) -> dict[str, str]:
    """KEY=VALUE items of a repeatable flag as a dict; `--property` takes one pair per item, the
    other flags (--config, --add-config) also comma-separated pairs."""
    out: dict[str, str] = {}
    for item in items or []:
        for part in [item] if flag == "--property" else item.split(","):
            k, sep, v = part.partition("=")
            if not sep or not k.strip():
                raise ToolError(f"invalid {flag} {part!r}: expected key=value")
            out[k.strip()] = v
    return out


def target(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(bootstrap server, data dir) of a tool's arguments: exactly one of them is set."""
    bs, dd = getattr(args, "bootstrap_server", None), getattr(args, "data_dir", None)
    if bool(bs) == bool(dd):
        raise ToolError("exactly one of --bootstrap-server or --data-dir is required")
    return bs, dd


def run_tool(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace, prefix: str) -> int:
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
        ac = sys.modules.get(_ADMIN_CLIENT)
        if ac is not None and isinstance(e, (ac.BrokerUnreachable, ac.KafkaError)):
            msg = str(e)
        elif os.environ.get("LOGSTORE_DEBUG"):
            raise
        else:
            msg = f"unexpected {type(e).__name__}: {e} (set LOGSTORE_DEBUG=1 for the traceback)"
    sys.stderr.write(f"{prefix}{msg}\n")
    return 1
