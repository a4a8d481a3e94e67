"""Crash-test writer for tests/crash/test_core_crash.py: appends to a store until it is killed.

    core_writer.py DATA_DIR FLUSHED_FILE SEED

Opens DATA_DIR (recovering it if the last run was killed), prints "ready <leo0> <leo1>" on stdout,
then appends batches of 1-20 records to the two partitions of topic "crash", with random
compression. The value of the record at offset o of partition p is `value(p, o)`, so a reader can
check every record it gets back. After each explicit flush it appends "p last_flushed_offset\\n"
to FLUSHED_FILE with one unbuffered write: a line there is a promise that the offset is durable.
"""

from __future__ import annotations

import os
import random
import sys

import logstore

TOPIC = "crash"
CONFIG = {"segment.bytes": 16384, "index.interval.bytes": 512, "flush.ms": 50}
COMPRESSIONS = ["none", "none", "gzip", "snappy", "lz4", "zstd"]


def value(p: int, offset: int) -> bytes:
    return b"p%d-o%d-" % (p, offset) + b"x" * (offset * 7 % 90)


def main() -> None:
    data_dir, flushed_file, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    store = logstore.open(data_dir, {"log.flush.scheduler.interval.ms": 20})
    if TOPIC not in store.topics():
        store.create_topic(TOPIC, 2, CONFIG)
    logs = [store.partition(TOPIC, p) for p in (0, 1)]
    out = os.open(flushed_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    print("ready", *(lg.log_end_offset for lg in logs), flush=True)
    appends = 0
    while True:
        p = rng.randrange(2)
        lg = logs[p]
        leo = lg.log_end_offset
        n = rng.randint(1, 20)
        recs = [(b"k%d" % (leo + i), value(p, leo + i)) for i in range(n)]
        first = lg.append(recs, compression=rng.choice(COMPRESSIONS))
        if first != leo:
            sys.exit(f"partition {p}: appended at {first}, log end offset was {leo}")
        appends += 1
        if rng.random() < 0.3:
            lg.flush()
            os.write(out, b"%d %d\n" % (p, leo + n - 1))
        if rng.random() < 0.05:
            store.checkpoint()  # move the checkpointed recovery points along


if __name__ == "__main__":
    main()
