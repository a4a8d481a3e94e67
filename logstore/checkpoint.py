"""Checkpoint files of a log dir, in Apache Kafka's text format.

    <version>\\n            always 0
    <count>\\n
    <topic> <partition> <offset>\\n   (count lines)

Used for `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint` and
`cleaner-offset-checkpoint`. Writes are atomic: write `<file>.tmp`, fsync it, rename over the
file, fsync the directory; a crash leaves either the old or the new file, never a mix.
`meta.properties` is Kafka's `key=value` file, written the same way.
"""

from __future__ import annotations

import os
from typing import Mapping

from .errors import CorruptRecordError

VERSION = 0
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_FILE = "log-start-offset-checkpoint"
CLEANER_OFFSET_FILE = "cleaner-offset-checkpoint"
META_PROPERTIES_FILE = "meta.properties"


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        data = text.encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_checkpoint(path: str, offsets: Mapping[tuple[str, int], int]) -> None:
    """Atomically replace `path` with `offsets` ((topic, partition) → offset)."""
    lines = [str(VERSION), str(len(offsets))]
    lines += [f"{t} {p} {o}" for (t, p), o in sorted(offsets.items())]
    _atomic_write(path, "\n".join(lines) + "\n")


def read_checkpoint(path: str) -> dict[tuple[str, int], int]:
    """The offsets in `path`; {} if it does not exist. A malformed file raises
    CorruptRecordError naming the file and line."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise CorruptRecordError(f"checkpoint file {path} is not text", path=path) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()

    def bad(lineno: int, why: str) -> CorruptRecordError:
        return CorruptRecordError(f"malformed checkpoint file {path} at line {lineno}: {why}", path=path)

    if len(lines) < 2:
        raise bad(len(lines) + 1, "missing version or count line")
    if lines[0].strip() != str(VERSION):
        raise bad(1, f"unknown version {lines[0]!r}")
    try:
        count = int(lines[1])
    except ValueError:
        raise bad(2, f"count {lines[1]!r} is not a number") from None
    if count != len(lines) - 2:
        raise bad(2, f"count {count} but {len(lines) - 2} entries")
    out: dict[tuple[str, int], int] = {}
    for i, line in enumerate(lines[2:], start=3):
        parts = line.split(" ")
        if len(parts) != 3:
            raise bad(i, f"expected 'topic partition offset', got {line!r}")
        try:
            out[(parts[0], int(parts[1]))] = int(parts[2])
        except ValueError:
            raise bad(i, f"partition or offset is not a number in {line!r}") from None
    return out


def write_properties(path: str, props: Mapping[str, str]) -> None:
    _atomic_write(path, "".join(f"{k}={v}\n" for k, v in props.items()))


def read_properties(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                k, _, v = line.partition("=")
                out[k.strip()] = v.strip()
    except FileNotFoundError:
        pass
    return out
