"""Fetch (1): whole file regions out, long polling woken by appends.

For each requested partition the log returns the file region of whole batches from the batch
holding `fetch_offset` (it may start before the offset, and may end inside a batch when a limit
cuts it, as Kafka's does; clients skip both). Limits: `partition_max_bytes` per partition and
`max_bytes` for the response (0 included: then that one batch alone), itself capped by the
broker's `fetch.max.bytes` (55 MiB by default, as Kafka), except that the first partition with
data always returns at least one full batch (KIP-74). A partition asked for twice in one request
is answered once (Kafka keys a fetch by partition). The response is written by
`protocol.write_fetch_response` as a list of buffers, so record bytes are never re-encoded; a
partition's data of SENDFILE_MIN_BYTES or more is a file region (FileSlice) in that list, which
the server sends with `sendfile` (broker/zerocopy.py); smaller regions are read into memory once,
when the answer is final.

Long polling: when fewer than `min_bytes` are available and `max_wait_ms` > 0, the request parks
on the server's append waiters of its partitions and is recomputed when one of them grows, or
answered at the deadline. A recomputation looks at index entries and batch headers only, never
at record bytes, so a parked fetch over many partitions costs appends little. Errors (unknown
partition, OFFSET_OUT_OF_RANGE, KAFKA_STORAGE_ERROR when a segment cannot be read, e.g. out of
file descriptors) answer at once.

Fetch sessions (v7+) are not kept: every answer has session_id 0, which tells the client to keep
sending full fetch requests. Without transactions, last_stable_offset = high watermark, and the
isolation level changes nothing.
"""

from __future__ import annotations

import errno
import logging
import time
from typing import Any

from logstore.errors import LogStoreError, OffsetOutOfRangeError
from logstore.file_slice import pread_full

from ..protocol import PartitionResult, TopicResult, write_fetch_response
from ..protocol.fetch_writer import MAX_VERSION, MIN_VERSION
from ._util import ms

log = logging.getLogger("broker.handlers.fetch")

UNKNOWN_TOPIC_OR_PARTITION = 3
OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_ID = 100
KAFKA_STORAGE_ERROR = 56
# Below this a partition's data is read into memory at once (one pread, and the response leaves in
# one writev); from it on, the file region itself goes into the response and out by sendfile.
SENDFILE_MIN_BYTES = 64 * 1024


def _collect(server: Any, request: Any, v: int) -> tuple[list[TopicResult], int, bool, list[Any]]:
    """One pass over the requested partitions: (topics, bytes, any error, logs read)."""
    store = server.store
    # max_bytes 0 (or less) is no room at all, not "unlimited": as with Kafka, only the KIP-74
    # batch of the first partition with data comes back
    budget = min(max(int(request.max_bytes), 0) if v >= 3 else 2**31 - 1, server.config["fetch.max.bytes"])
    total = 0
    errors = False
    logs: list[Any] = []
    topics: list[TopicResult] = []
    seen: set[tuple[str, int]] = set()
    for ft in request.topics:
        name = getattr(ft, "topic", None)
        tid = getattr(ft, "topic_id", None)
        terr = 0
        if v >= 13:
            try:
                info = store.topic_by_id(tid)
                name = info.name
            except LogStoreError:
                terr = UNKNOWN_TOPIC_ID
        parts: list[PartitionResult] = []
        topics.append(TopicResult(name or "", tid, parts))
        for fp in ft.partitions:
            idx = int(fp.partition)
            if (name or "", idx) in seen:
                continue   # asked for twice: one answer (its data would be sent twice otherwise)
            seen.add((name or "", idx))
            if terr:
                parts.append(PartitionResult(idx, terr))
                errors = True
                continue
            try:
                lg = store.partition(name, idx)
            except LogStoreError:
                parts.append(PartitionResult(idx, UNKNOWN_TOPIC_OR_PARTITION))
                errors = True
                continue
            logs.append(lg)
            offset = int(fp.fetch_offset)
            hw = lg.log_end_offset
            lso = lg.log_start_offset
            pr = PartitionResult(idx, 0, hw, hw, lso)
            parts.append(pr)
            limit = min(int(fp.partition_max_bytes), budget - total)
            if limit <= 0 and total > 0:
                continue
            try:
                data = lg.read_slice(offset, max(limit, 1), min_one=(total == 0))
            except OffsetOutOfRangeError:
                pr.error_code = OFFSET_OUT_OF_RANGE
                pr.high_watermark = lg.log_end_offset
                pr.last_stable_offset = pr.high_watermark
                pr.log_start_offset = lg.log_start_offset
                errors = True
                continue
            except (OSError, ValueError) as e:
                if not isinstance(e, OSError) or e.errno in (errno.ENOENT, errno.EBADF):
                    # the segment was closed or deleted under us (retention, delete): nothing now,
                    # the client retries
                    log.debug("fetch %s-%d at %d: %s", name, idx, offset, e)
                    continue
                # e.g. EMFILE (out of descriptors) or EIO: the client must hear it, and so must the log
                log.warning("fetch %s-%d at offset %d failed: %s", name, idx, offset, e)
                pr.error_code = KAFKA_STORAGE_ERROR
                errors = True
                continue
            except LogStoreError as e:
                pr.error_code = e.error_code if e.error_code and e.error_code > 0 else KAFKA_STORAGE_ERROR
                errors = True
                continue
            size = data.size
            if size and total > 0:
                head = pread_full(data.fd, 12, data.position)
                if size < 12 or size < int.from_bytes(head[8:12], "big") + 12:
                    # not the first partition with data, and not even one whole batch fits: send
                    # nothing rather than a partial batch (the next fetch will get it first or whole)
                    continue
            if size:
                pr.records = [data]
                pr.records_size = size
                total += size
    return topics, total, errors, logs


def _read_small(topics: list[TopicResult]) -> None:
    """Turn the file regions below SENDFILE_MIN_BYTES of the final answer into bytes (one pread
    each; the response then leaves in one writev). A region whose segment went away since it was
    taken is left out: the client fetches it again."""
    for t in topics:
        for pr in t.partitions:
            if pr.records_size and pr.records_size < SENDFILE_MIN_BYTES:
                try:
                    pr.records = [pr.records[0].read()]
                except (OSError, ValueError) as e:
                    log.debug("fetch %s-%d: %s", t.name, pr.partition, e)
                    pr.records = []
                    pr.records_size = 0


async def fetch(ctx: Any, request: Any) -> Any:
    server = ctx.server
    v = int(type(request).__version__)
    min_bytes = int(request.min_bytes)
    max_wait_s = max(ms(request.max_wait), 0) / 1000.0
    deadline = time.monotonic() + max_wait_s
    while True:
        topics, total, errors, logs = _collect(server, request, v)
        remaining = deadline - time.monotonic()
        if total >= min_bytes or errors or remaining <= 0 or not logs or server.stopping:
            break
        await server.wait_for_append(logs, remaining)
    _read_small(topics)
    return write_fetch_response(v, ctx.header.correlation_id, topics, error_code=0, session_id=0)


def register(registry: Any) -> None:
    registry.register(1, fetch, min_version=MIN_VERSION, max_version=MAX_VERSION)


__all__ = ["fetch", "register"]
