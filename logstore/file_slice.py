"""File regions handed out by segments, and the descriptors behind them.

`FdHandle` owns one open descriptor and closes it when its last reference goes. `FileSlice` is a
(descriptor, position, size) region of a segment file that keeps its FdHandle alive, so the
descriptor number it carries can never be closed under it or reused for another file while the
slice lives — even when the segment is closed, deleted or purged meanwhile (an unlinked file
stays readable). `pread_full` reads exactly n bytes unless the file ends first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


class FdHandle:
    """Owns one open descriptor; closes it when the last reference goes (CPython refcounting, so
    at once, no syscall on the hot path). The segment holds one reference while open; every
    FileSlice it hands out holds another, so a slice's `fd` stays this file's descriptor — never
    closed under it, never a reused number serving another file — for as long as the slice lives,
    even after the segment was closed, deleted or purged (an unlinked file stays readable)."""

    __slots__ = ("fd", "__weakref__")

    def __init__(self, fd: int):
        self.fd = fd

    def __del__(self) -> None:
        try:
            os.close(self.fd)
        except (OSError, TypeError):  # TypeError: interpreter shutdown
            pass


@dataclass(frozen=True)
class FileSlice:
    """A region of a segment file: what a fetch sends. `size` 0 means no data.

    `fd` is valid while the slice object is alive (it holds the descriptor's FdHandle): keep the
    slice itself — not just the integer — until the bytes are sent (e.g. across an async
    sendfile); drop it afterwards, or call `close()` to let go early."""

    fd: int
    position: int
    size: int
    path: str = ""
    handle: FdHandle | None = field(default=None, repr=False, compare=False)

    def read(self) -> bytes:
        return pread_full(self.fd, self.size, self.position) if self.size else b""

    def close(self) -> None:
        """Drop this slice's hold on the descriptor (reading it afterwards is an error)."""
        object.__setattr__(self, "handle", None)
        object.__setattr__(self, "fd", -1)
        object.__setattr__(self, "size", 0)


def pread_full(fd: int, n: int, pos: int) -> bytes:
    data = os.pread(fd, n, pos)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.pread(fd, n - got, pos + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)
