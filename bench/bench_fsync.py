"""Group-committed fsync: acks=all produce rate with `flush.messages=1`, 1 and 16 producers.

Each acknowledged produce must be fsynced before its answer. A broker that fsyncs once per
request is bounded by the disk's fsync rate whatever the number of producers; one that groups the
fsyncs of concurrent requests (DESIGN.md: "fsyncs for concurrent acks=all requests are grouped")
answers N producers at close to N times that rate. Measured against a baseline taken in the same
run: a bare write + fdatasync loop on the same file system (what one producer could get at best).

    python -m bench.bench_fsync [--seconds 5] [--dir /tmp]

Prints the figures and writes bench/results/fsync.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

from broker.pytest_plugin import start_broker
from logstore import records as R

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fuzz"))
import wire  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "fsync.json")


def fsync_baseline(directory: str, seconds: float) -> float:
    """fdatasyncs per second of a 100-byte append loop on `directory`."""
    path = os.path.join(directory, "baseline.dat")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    n = 0
    try:
        end = time.monotonic() + seconds
        start = time.monotonic()
        while time.monotonic() < end:
            os.write(fd, b"x" * 100)
            os.fdatasync(fd)
            n += 1
        return n / (time.monotonic() - start)
    finally:
        os.close(fd)
        os.unlink(path)


def produce_rate(port: int, topic: str, producers: int, seconds: float) -> dict:
    counts = [0] * producers
    errors = [0] * producers
    latencies: list[list[float]] = [[] for _ in range(producers)]
    start_ev = threading.Event()
    stop_at = [0.0]

    def run(i: int) -> None:
        with wire.Conn(port) as c:
            batch = R.build_batch([(b"k%d" % i, b"v" * 100)])
            cid = 0
            start_ev.wait()
            while time.monotonic() < stop_at[0]:
                cid += 1
                t0 = time.perf_counter()
                _c, body = c.call(wire.produce(cid, topic, i % 1, batch, acks=-1))
                latencies[i].append(time.perf_counter() - t0)
                if wire.parse_produce(body)[0][2] == 0:
                    counts[i] += 1
                else:
                    errors[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(producers)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    stop_at[0] = t0 + seconds
    start_ev.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lat = sorted(x for per in latencies for x in per)
    return {"producers": producers, "acked": sum(counts), "errors": sum(errors), "seconds": round(elapsed, 2),
            "acks_per_s": round(sum(counts) / elapsed, 1),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2) if lat else None}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--dir", default=None, help="where the log dir goes (default: a temp dir)")
    args = ap.parse_args(argv)
    base = tempfile.mkdtemp(prefix="bench-fsync-", dir=args.dir)
    baseline = fsync_baseline(base, min(args.seconds, 3.0))
    b = start_broker(os.path.join(base, "data"), overrides={"log.flush.interval.messages": "1"})
    try:
        with wire.Conn(b.port) as c:
            _cid, body = c.call(wire.create_topics(1, "fsync", 1, {"flush.messages": "1"}))
            assert wire.parse_create_topics(body)[0][1] == 0
        one = produce_rate(b.port, "fsync", 1, args.seconds)
        many = produce_rate(b.port, "fsync", 16, args.seconds)
    finally:
        b.stop()
    res = {
        "what": "acks=all produce of one 100-byte record per request, flush.messages=1, one partition",
        "fsync_baseline_per_s": round(baseline, 1),
        "one_producer": one,
        "sixteen_producers": many,
        "speedup_16_vs_1": round(many["acks_per_s"] / one["acks_per_s"], 2) if one["acks_per_s"] else None,
        "one_producer_vs_baseline": round(one["acks_per_s"] / baseline, 2) if baseline else None,
        "sixteen_producers_vs_baseline": round(many["acks_per_s"] / baseline, 2) if baseline else None,
        "cpus": os.cpu_count(),
    }
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    print(f"bare fdatasync loop:        {res['fsync_baseline_per_s']:>9} /s")
    print(f"1 producer,  acks=all:      {one['acks_per_s']:>9} acks/s  (p50 {one['p50_ms']} ms, p99 {one['p99_ms']} ms)")
    print(f"16 producers, acks=all:     {many['acks_per_s']:>9} acks/s  (p50 {many['p50_ms']} ms, p99 {many['p99_ms']} ms)")
    print(f"16 vs 1: x{res['speedup_16_vs_1']}; 16 producers vs bare fsync loop: x{res['sixteen_producers_vs_baseline']}")
    print(f"wrote {RESULTS}")
    import shutil
    shutil.rmtree(base, ignore_errors=True)
    return res


if __name__ == "__main__":
    main()
