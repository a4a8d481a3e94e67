"""DescribeLogDirs (35): the broker's log dir and the size of every partition in it.

Owns the answer to `kafka-log-dirs.sh --describe` and `Admin.describeLogDirs`: one result for the
one log dir this broker has (its absolute path), listing each partition's size in bytes (the sum
of its segment files' sizes), offset_lag 0 (a single replica is its own high watermark) and
is_future_key false (no AlterReplicaLogDirs here); v4 adds the volume's total and usable bytes
(`os.statvfs`: blocks and blocks available to unprivileged users, times the fragment size, as
Java's File.getTotalSpace / getUsableSpace).

Versions served: v1..v4 (v0 has no kio schema and Kafka 4 dropped it; v2 is the first flexible
one, v3 adds the top-level error code, v4 the byte counts). Filter, as Kafka's: `topics` null
means every partition; otherwise exactly the (topic, partition) pairs listed, so a topic listed
with no partitions contributes none and unknown ones are left out silently.

`partition_sizes` and `volume_bytes` are also what `logstore log-dirs --data-dir` reports (this
module imports kio only inside the handler). Invariant: the sizes are summed under each log's lock in a worker thread, never on the event
loop; a log dir that cannot be read is reported as that result's error code with no topics
(KAFKA_STORAGE_ERROR 56), not as a failed request.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

API_KEY = 35
MIN_VERSION, MAX_VERSION = 1, 4
KAFKA_STORAGE_ERROR = 56


def volume_bytes(path: str) -> tuple[int, int]:
    """(total, usable) bytes of the volume holding `path`; (-1, -1) when it cannot be stat'ed."""
    try:
        st = os.statvfs(path)
    except OSError:
        return -1, -1
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def partition_sizes(store: Any, wanted: set[tuple[str, int]] | None) -> dict[str, list[tuple[int, int]]]:
    """{topic: [(partition, size in bytes)]} sorted by topic then partition, of the partitions in
    `wanted` (None: all). Blocks on each log's lock briefly: call it off the event loop."""
    out: dict[str, list[tuple[int, int]]] = {}
    for lg in store.logs():
        tp = (lg.topic, lg.partition)
        if wanted is not None and tp not in wanted:
            continue
        with lg.lock:  # a roll or a retention pass changes the segment map under us otherwise
            size = lg.size
        out.setdefault(lg.topic, []).append((lg.partition, size))
    return {t: sorted(ps) for t, ps in sorted(out.items())}


async def describe_log_dirs(ctx: Any, request: Any) -> Any:
    from ._util import make, response_module  # here, so `logstore log-dirs --data-dir` reuses the above without kio
    mod = response_module(request)
    store = ctx.server.store
    wanted = None if request.topics is None else {
        (t.topic, int(p)) for t in request.topics for p in t.partitions}

    def run() -> tuple[int, dict[str, list[tuple[int, int]]], tuple[int, int]]:
        try:
            sizes = partition_sizes(store, wanted)
        except OSError:
            return KAFKA_STORAGE_ERROR, {}, (-1, -1)
        return 0, sizes, volume_bytes(store.path)

    err, sizes, (total, usable) = await asyncio.get_running_loop().run_in_executor(None, run)
    topics = tuple(
        make(mod.DescribeLogDirsTopic, name=t, partitions=tuple(
            make(mod.DescribeLogDirsPartition, partition_index=p, partition_size=size, offset_lag=0,
                 is_future_key=False) for p, size in parts))
        for t, parts in sizes.items())
    result = make(mod.DescribeLogDirsResult, error_code=err, log_dir=store.path, topics=topics,
                  total_bytes=total, usable_bytes=usable)
    return make(mod.DescribeLogDirsResponse, error_code=0, results=(result,))


def register(registry: Any) -> None:
    registry.register(API_KEY, describe_log_dirs, min_version=MIN_VERSION, max_version=MAX_VERSION)
