"""Writing a response frame whose record data are file regions: `sendfile` when the socket allows.

A Fetch response (broker/protocol/fetch_writer.py) is a list of parts: encoded bytes (the frame
prefix, each partition's fixed fields, the rest) and, for the record data, either bytes or a
`FileSlice` (a region of a segment file; it keeps its descriptor open). `write_parts` sends it:

  - While the transport has nothing queued, the parts go straight to the socket: the bytes
    before a file region with one `writev`, the region with `os.sendfile` (page cache to socket,
    no copy through Python), and so on, until the socket would block.
  - From the first short write on, or when the transport already holds unsent data (an earlier
    response), the rest goes through `transport.write` as usual; a file region is then read into
    memory (`pread`) first. The transport sends it after what it already holds.

Invariant: bytes reach the socket in the order of the parts, after everything written to the
transport before: the socket is written directly only while the transport's buffer is empty
(uvloop and asyncio's selector loop both count every byte they have not yet handed to the
kernel in `get_write_buffer_size`), and once anything has gone to the transport, every later
part goes there too. Plain TCP only: a TLS transport must never be bypassed (`direct_fd` says
None for it).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Sequence

from logstore.file_slice import FileSlice, pread_full

_HAS_SENDFILE = hasattr(os, "sendfile")


def direct_fd(transport: asyncio.BaseTransport) -> int | None:
    """The socket descriptor behind a plain TCP transport, or None where writing to it directly
    would be wrong (TLS) or impossible."""
    if not _HAS_SENDFILE or transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    try:
        fd = sock.fileno() if sock is not None else -1
    except (OSError, ValueError):
        return None
    return fd if fd >= 0 else None


def write_parts(transport: asyncio.WriteTransport, fd: int | None, parts: Sequence[Any]) -> int:
    """Send `parts` (bytes-like objects and FileSlices) in order; returns the bytes that went out by
    `sendfile`. Raises OSError when the socket fails (the connection is then to be closed)."""
    direct = fd is not None and transport.get_write_buffer_size() == 0
    if not direct:
        transport.writelines([p.read() if type(p) is FileSlice else p for p in parts])
        return 0
    by_sendfile = 0
    pending: list[Any] = []   # bytes parts not yet written
    i, n = 0, len(parts)
    while i < n:
        p = parts[i]
        if type(p) is not FileSlice:
            if len(p):
                pending.append(p)
            i += 1
            continue
        if pending:
            pending, left = _writev(fd, pending)  # type: ignore[arg-type]
            if left:
                break
        sent = _sendfile(fd, p.fd, p.position, p.size)  # type: ignore[arg-type]
        by_sendfile += sent
        if sent < p.size:
            pending = [pread_full(p.fd, p.size - sent, p.position + sent)]
            i += 1
            break
        i += 1
    else:
        if pending:
            pending, _ = _writev(fd, pending)  # type: ignore[arg-type]
    rest = pending + [p.read() if type(p) is FileSlice else p for p in parts[i:]]
    if rest:
        transport.writelines(rest)
    return by_sendfile


def _writev(fd: int, bufs: list[Any]) -> tuple[list[Any], bool]:
    """Write `bufs` to the non-blocking socket `fd` as far as it takes them: (what is left, whether
    anything is left)."""
    if len(bufs) > 64:   # many small partitions between two regions: stay far below IOV_MAX
        bufs = [b"".join(bufs)]
    try:
        sent = os.writev(fd, bufs)
    except BlockingIOError:
        return bufs, True
    total = sum(len(b) for b in bufs)
    if sent == total:
        return [], False
    left: list[Any] = []
    for b in bufs:
        if sent >= len(b):
            sent -= len(b)
            continue
        left.append(memoryview(b)[sent:] if sent else b)
        sent = 0
    return left, True


def _sendfile(sock_fd: int, file_fd: int, pos: int, size: int) -> int:
    """Bytes of the file region sent to the non-blocking socket before it would block."""
    done = 0
    while done < size:
        try:
            n = os.sendfile(sock_fd, file_fd, pos + done, size - done)
        except BlockingIOError:
            break
        if n == 0:   # the file ends early (cannot happen for a live slice): the caller preads the rest
            break
        done += n
    return done


__all__ = ["direct_fd", "write_parts"]
