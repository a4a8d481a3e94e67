"""Child process of test_diskfull.py: fill a small file system with appends, then free space.

Runs in its own process because a store that writes an mmap'd index page on a full file system
gets SIGBUS, which would kill the test runner; the parent reports that as a failure.

    rel_diskfull_child.py LOGDIR FILLER_BYTES SEGMENT_BYTES

Prints one JSON line: what failed, how, and what was readable before and after freeing space.
"""

from __future__ import annotations

import json
import os
import sys

import logstore


def read_all(lg) -> list:
    return list(lg.iter_records())


def main() -> None:
    root, filler_bytes, segment_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    filler = os.path.join(os.path.dirname(root), "filler")
    res: dict = {}
    store = logstore.open(root, {"segment.index.bytes": "65536"}, background=False)
    store.create_topic("t", 1, {"segment.bytes": str(segment_bytes), "index.interval.bytes": "2048"})
    lg = store.partition("t", 0)
    with open(filler, "wb") as f:  # the space we free later
        f.write(b"\0" * filler_bytes)
        f.flush()
        os.fsync(f.fileno())
    values: dict[int, bytes] = {}
    i = 0
    error = None
    while i < 100_000:
        v = (b"%08d" % i) * 500  # 4000 bytes
        try:
            off = lg.append([(b"k%d" % i, v)])
        except logstore.LogStoreError as e:
            error = e
            break
        values[off] = v
        i += 1
    res["appended"] = len(values)
    res["error_type"] = type(error).__name__ if error else None
    res["error"] = str(error) if error else None
    res["error_code"] = getattr(error, "error_code", None)
    # still readable, exactly what was acknowledged
    recs = read_all(lg)
    res["readable_after_full"] = [r.offset for r in recs] == sorted(values) and all(values[r.offset] == r.value for r in recs)
    res["leo_after_full"] = lg.log_end_offset
    try:  # still full: the next append fails the same way, nothing half-written appears
        lg.append([(b"again", b"x" * 4000)])
        res["second_append"] = "ok"
    except logstore.LogStoreError as e:
        res["second_append"] = type(e).__name__
    res["leo_after_second"] = lg.log_end_offset
    os.unlink(filler)
    try:
        for j in range(20):
            off = lg.append([(b"after%d" % j, b"y" * 4000)])
            values[off] = b"y" * 4000
        lg.flush()
        res["append_after_free"] = "ok"
    except logstore.LogStoreError as e:
        res["append_after_free"] = f"{type(e).__name__}: {e}"
    store.close()
    with logstore.open(root, background=False) as store:
        lg = store.partition("t", 0)
        recs = read_all(lg)
        res["reopen_ok"] = [r.offset for r in recs] == sorted(values) and all(values[r.offset] == r.value for r in recs)
        res["reopen_leo"] = lg.log_end_offset
    res["expected_leo"] = max(values) + 1
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
