"""What every `logstore` tool shares: its parser class, target flags, `KEY=VALUE` parsing, and
the error policy.

Owns: `ToolError` (a failure the user can act on), `OneLineParser` (argparse whose usage
errors are one line), `tool_parser` / `add_target` (a subcommand with the
`--bootstrap-server | --data-dir` target flags), `target` (which of the two was given),
`parse_props` (`--property` style flags: one key=value each), `parse_config_pairs` (kafka-topics'
`--config`: one pair per flag, commas kept in the value), `parse_config_list` (kafka-configs'
`--add-config`: `k=v,k=[a,b]`), `add_command_config` (the admin tools' `--command-config`),
`add_version_flag` (`--version`) and `run_tool`.

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


def add_command_config(p: argparse.ArgumentParser) -> None:
    """`--command-config FILE`, the admin tools' properties file for the admin client (read by
    backends.open_backend)."""
    p.add_argument("--command-config", metavar="FILE", help="properties file for the admin client (client.id is "
                   "used, security.protocol must be PLAINTEXT, other keys are reported as ignored)")


def parse_props(items: list[str] | None, flag: str) -> dict[str, str]:
    """KEY=VALUE items of a repeatable flag (`--property`, `--consumer-property`,
    `--producer-property`) as a dict: one pair per item, the value kept whole (it may hold commas
    and '=', as in Kafka's `parseKeyValueArgs`); the key is trimmed."""
    out: dict[str, str] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ToolError(f"invalid {flag} {item!r}: expected key=value")
        out[k.strip()] = v
    return out


def parse_config_pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    """kafka-topics.sh `--config`: one `key=value` per item, the value kept whole (it may hold
    commas: `cleanup.policy=compact,delete`); key and value trimmed. An item without `=`, or with
    a second `=`, is a ToolError."""
    out: dict[str, str] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip() or "=" in v:
            raise ToolError(f"invalid {flag} {item!r}: expected key=value")
        out[k.strip()] = v.strip()
    return out


def _split_outside_brackets(text: str, sep: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(depth - 1, 0)
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_config_list(items: list[str] | None) -> dict[str, str]:
    """kafka-configs.sh `--add-config`: comma-separated `key=value` pairs, where a value holding
    commas is grouped in square brackets (`cleanup.policy=[compact,delete],retention.ms=1000`);
    the brackets are dropped from the value, key and value are trimmed, an empty value is kept.
    Kafka's messages for a malformed list or a key with characters outside [a-zA-Z0-9._-]."""
    import re
    out: dict[str, str] = {}
    for item in items or []:
        for part in _split_outside_brackets(item, ","):
            kv = _split_outside_brackets(part, "=")
            if len(kv) != 2:
                raise ToolError('Invalid entity config: all configs to be added must be in the format "key=val" '
                                'or "key=[val1,val2]" to group values which contain commas.')
            key, value = kv[0].strip(), kv[1].replace("[", "").replace("]", "").strip()
            if not re.fullmatch(r"[a-zA-Z0-9._-]*", key):
                raise ToolError(f"Invalid character found for config key: {key}")
            out[key] = value
    return out


def package_version() -> str:
    """The installed logstore version (what `--version` prints, as Kafka's tools print theirs)."""
    try:
        from importlib.metadata import version
        return version("logstore")
    except Exception:  # not installed as a distribution: the package's own attribute
        from logstore import __version__
        return str(__version__)


class _VersionAction(argparse.Action):
    """`--version`: print the version on stdout and exit 0, whatever else is on the line (as
    Kafka's CommandDefaultOptions); the version is looked up only when asked for."""

    def __init__(self, option_strings: Any, dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS,
                 help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        sys.stdout.write(package_version() + "\n")
        parser.exit(0)


def add_version_flag(p: argparse.ArgumentParser) -> None:
    """Kafka's `--version` flag on a tool's parser."""
    p.add_argument("--version", action=_VersionAction, help="print the logstore version and exit")


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
