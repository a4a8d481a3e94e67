"""Java `.properties` files, read as `java.util.Properties.load` reads them.

Owns the one parser behind `server.properties` (broker/config.py) and the tools' `--producer.config`
/ `--consumer.config` / `--command-config` files (broker/cli/console_props.py), so a file means
the same to every command, and the same as it means to Kafka:
  - blank lines and lines whose first non-blank character is `#` or `!` are comments;
  - a line ending in an odd number of backslashes continues on the next line, whose leading
    blanks are dropped;
  - the key ends at the first unescaped `=`, `:` or blank; blanks around the separator are
    dropped, so `key=value`, `key: value` and `key value` are all one pair;
  - `\\t`, `\\n`, `\\r`, `\\f`, `\\uXXXX` are unescaped in keys and values; any other escaped
    character stands for itself (`\\=`, `\\:`, `\\ `, `\\\\`).

Invariant: standard library only (the `logstore` command imports this at start-up); no I/O but
reading the named file.
"""

from __future__ import annotations

import re

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_PAIR = re.compile(r"((?:\\.|[^=:\s\\])*)\s*[=:]?\s*(.*)$", re.S)
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "u" and _HEX4.fullmatch(s[i + 2:i + 6]):
                out.append(chr(int(s[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """The key/value pairs of a `.properties` text, later keys overriding earlier ones."""
    lines: list[str] = []
    buf = ""
    for ln in text.splitlines():
        ln = ln.lstrip() if buf else ln
        if not buf and (not ln.strip() or ln.lstrip()[0] in "#!"):
            continue
        trailing = len(ln) - len(ln.rstrip("\\"))
        if trailing % 2:
            buf += ln[:-1]
            continue
        lines.append(buf + ln)
        buf = ""
    if buf:
        lines.append(buf)
    out: dict[str, str] = {}
    for ln in lines:
        ln = ln.lstrip()
        m = _PAIR.match(ln)
        key, value = (m.group(1), m.group(2)) if m else (ln, "")
        out[_unescape(key)] = _unescape(value)
    return out


def read_properties(path: str) -> dict[str, str]:
    """`parse_properties` of the UTF-8 file at `path`; OSError when it cannot be read."""
    with open(path, encoding="utf-8") as f:
        return parse_properties(f.read())


__all__ = ["parse_properties", "read_properties"]
