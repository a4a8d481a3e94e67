"""Embedded benchmarks: the storage engine through its Python API, against baselines run alongside.

    .venv/bin/python -m bench.embedded [--quick] [--records N]

Workload (Kafka's): N records (1,000,000; 50,000 with --quick) of 100-byte values, no key, in
batches of 1,000. Figures (records/s unless named otherwise), all in one process, one run:

  plain_append_rps      length-prefixed framing (4-byte length + value) written to a file:
                        the floor for "append bytes to a file from Python"
  plain_read_rps        read that file back in 1 MiB chunks and slice every value out
                        (both run in rounds interleaved with append_rps and read_rps: below)
  sqlite_append_rps     sqlite3, WAL, synchronous=NORMAL, one transaction per 1,000 rows
  sqlite_read_rps       SELECT every value back in rowid order
  append_rps            Log.append(list of 1,000 (key, value)) : encodes the batch, then appends
  append_batch_rps      Log.append_batch(pre-encoded batch): validate, assign offsets, write
  encode_rps            records.build_batch alone (what append adds to append_batch)
  read_rps              Log.read(offset, 1 MiB) from the start to the end (CRC checked, every
                        record decoded) with the compiled fast decoder, in one sequential pass
  read_rounds_rps       the same reads in the interleaved rounds (read_vs_plain comes from these)
  read_batches_log_rps  the same over the log append_batch wrote (read_gc_off_rps and
                        read_pure_rps are measured on it too)
  read_pure_rps         the same with the pure-Python decoder (on at most 200,000 records)
  read_gc_off_rps       read_rps with the garbage collector paused (shows what creating
                        1,000,000 Record tuples costs the collector)
  read_bytes_mb_s       Log.read_bytes over the same log: the bytes a fetch moves
  flush1_append_rps     one record per append with flush.messages=1 (an fsync per append)
  index_lookup_us       OffsetIndex.lookup on a full index of 1,000,000 entries, random targets
  index_first_lookup_us the first lookup (builds the native-endian key column once)
  interleaved rounds    append_rps, read_rps and the plain file's figures come from 10 rounds of
                        n/10 records, logstore and plain alternating (and which goes first), so
                        the machine's drift hits both alike; append_vs_plain and read_vs_plain are
                        the median of the per-round ratios (each round's is listed too)
  ratios                append_vs_plain, append_vs_sqlite, append_batch_vs_plain, read_vs_plain, ...
  recovery              per segment count: clean open time, and a full recovery scan (clean-shutdown
                        marker and recovery checkpoint removed) in s and MB/s
  open_partitions       clean open of a store with 1,000 (100 with --quick) partitions
  first_append_partitions_s  two appends (10, then 50 records) to each of those partitions, just
                        created, so each writes its first index entries (13 s for 300 partitions
                        when index entries were written through the map: a 2-12 ms page fault per file)

Targets (issue 3/8): append >= 2 M/s, >= 70 % of plain append, >= 4x sqlite3; read >= 2 M/s;
lookup <= 5 us; open of 1,000 partitions after a clean stop <= 1 s.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import sqlite3
import statistics
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import logstore
from logstore import records as R
from logstore.index import OFFSET_ENTRY, OffsetIndex

from .common import MB, RESULTS, VALUE_BYTES, say, write_result

BATCH = 1000


def _value() -> bytes:
    return random.Random(1).randbytes(VALUE_BYTES)


# ---------------------------------------------------------------------------- baselines

def _plain_append(path: str, count: int) -> float:
    """Append `count` length-prefixed records (4-byte length + value) to a new file: the cheapest
    framed log Python can write. Returns the seconds taken."""
    value = _value()
    pack = struct.Struct(">i").pack
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(count // BATCH):
            vals = [value] * BATCH  # the records arrive as a list, as they do for Log.append
            f.write(b"".join([pack(len(v)) + v for v in vals]))
    return time.perf_counter() - t0


def _plain_read(path: str) -> tuple[float, int]:
    """Parse the file back in 1 MiB chunks, slicing every value out: (seconds, records)."""
    unpack = struct.Struct(">i").unpack_from
    got = 0
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        rest = b""
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            buf = rest + chunk
            p = 0
            end = len(buf)
            out = []
            while p + 4 <= end:
                (ln,) = unpack(buf, p)
                if p + 4 + ln > end:
                    break
                out.append(buf[p + 4:p + 4 + ln])
                p += 4 + ln
            got += len(out)
            rest = buf[p:]
    return time.perf_counter() - t0, got


def interleaved(d: str, n: int, rounds: int) -> dict[str, Any]:
    """`Log.append` and `Log.read` against the plain framed file, in alternating rounds of n/rounds
    records (which goes first alternates too), so that the ratios compare the two under the same
    machine conditions: this 2-core box's speed drifts by up to 2x within a run. The ratios are the
    median of the per-round ratios; the rates are totals over all rounds."""
    m = n // rounds
    value = _value()
    ts = int(time.time() * 1000)
    times: dict[str, list[float]] = {"plain_append": [], "append": [], "plain_read": [], "read": []}
    with logstore.open(os.path.join(d, "store-interleaved"), background=False) as store:
        store.create_topic("api", 1)
        lg = store.partition("api", 0)

        def log_append() -> float:
            t0 = time.perf_counter()
            for _ in range(m // BATCH):
                lg.append([(None, value)] * BATCH, timestamp=ts)
            return time.perf_counter() - t0

        for r in range(rounds):
            path = os.path.join(d, f"plain-{r}.dat")
            if r % 2:
                times["append"].append(log_append())
                times["plain_append"].append(_plain_append(path, m))
            else:
                times["plain_append"].append(_plain_append(path, m))
                times["append"].append(log_append())
        for r in range(rounds):
            path = os.path.join(d, f"plain-{r}.dat")
            runs = [lambda: _plain_read(path), lambda: _timed(lambda: _read_range(lg, r * m, m))]
            for which in (runs if r % 2 == 0 else runs[::-1]):
                t, got = which()
                assert got == m, (got, m)
                times["read" if which is runs[1] else "plain_read"].append(t)
        t_seq, got = _timed(lambda: _read_all(lg))  # the figure: one sequential read of it all
        assert got == n, (got, n)
    fig: dict[str, Any] = {"interleaved_rounds": rounds,
                           "plain_file_bytes": sum(os.path.getsize(os.path.join(d, f"plain-{r}.dat"))
                                                   for r in range(rounds))}
    for k, ts_ in times.items():
        fig[f"{k}_rps"] = n / sum(ts_)
    fig["read_rounds_rps"] = fig.pop("read_rps")
    fig["read_rps"] = n / t_seq
    for ours, base in (("append", "plain_append"), ("read", "plain_read")):
        per_round = [b / o for o, b in zip(times[ours], times[base])]  # rate ratio = time ratio inverted
        fig[f"{ours}_vs_plain"] = statistics.median(per_round)
        fig[f"{ours}_vs_plain_rounds"] = [round(x, 3) for x in per_round]
    return fig


def sqlite_baseline(d: str, n: int) -> dict[str, float]:
    """sqlite3 in WAL mode, synchronous=NORMAL, 1,000-row transactions."""
    path = os.path.join(d, "bench.sqlite")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, ts INTEGER, k BLOB, v BLOB)")
    value = _value()
    ts = int(time.time() * 1000)
    t0 = time.perf_counter()
    for b in range(n // BATCH):
        rows = [(None, ts, None, value) for _ in range(BATCH)]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO log VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    t_append = time.perf_counter() - t0
    got = 0
    t0 = time.perf_counter()
    cur = conn.execute("SELECT id, ts, k, v FROM log ORDER BY id")
    while True:
        rows = cur.fetchmany(10_000)
        if not rows:
            break
        got += len(rows)
    t_read = time.perf_counter() - t0
    conn.close()
    assert got == n
    return {"sqlite_append_rps": n / t_append, "sqlite_read_rps": n / t_read}


# ---------------------------------------------------------------------------- logstore

def _read_all(lg: logstore.Log, limit: int | None = None) -> int:
    off = lg.log_start_offset
    end = lg.log_end_offset if limit is None else min(lg.log_end_offset, lg.log_start_offset + limit)
    got = 0
    while off < end:
        recs = lg.read(off, 1 << 20)
        got += len(recs)
        off = recs[-1].offset + 1
    return got


def _read_range(lg: logstore.Log, start: int, count: int) -> int:
    off, end, got = start, start + count, 0
    while off < end:
        recs = lg.read(off, 1 << 20, max_records=end - off)
        got += len(recs)
        off = recs[-1].offset + 1
    return got


def logstore_figures(d: str, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    value = _value()
    ts = int(time.time() * 1000)
    with logstore.open(os.path.join(d, "store"), background=False) as store:
        store.create_topic("batches", 1)
        t0 = time.perf_counter()
        batches = [R.build_batch([(None, value)] * BATCH, timestamp=ts) for _ in range(n // BATCH)]
        out["encode_rps"] = n / (time.perf_counter() - t0)
        lb = store.partition("batches", 0)
        t0 = time.perf_counter()
        for b in batches:
            lb.append_batch(b)
        out["append_batch_rps"] = n / (time.perf_counter() - t0)
        del batches
        out["log_bytes"] = lb.size

        fast = R.fast_decode_available()
        out["fast_decoder"] = "aiokafka._crecords" if fast else "none (pure Python)"
        t, got = _timed(lambda: _read_all(lb))
        assert got == n, (got, n)
        out["read_batches_log_rps"] = n / t  # the same read as read_rps, over the append_batch log
        gc_was = gc.isenabled()
        gc.disable()
        try:
            t, got = _timed(lambda: _read_all(lb))
        finally:
            if gc_was:
                gc.enable()
        out["read_gc_off_rps"] = got / t
        saved = R._FAST_BATCH
        R._FAST_BATCH = False  # the pure-Python decoder, as on a machine without aiokafka
        try:
            t, got = _timed(lambda: _read_all(lb, limit=min(n, 200_000)))
        finally:
            R._FAST_BATCH = saved
        out["read_pure_rps"] = got / t

        def read_bytes() -> int:
            off, total = 0, 0
            while off < lb.log_end_offset:
                s = lb.read_slice(off, 1 << 20)
                data = s.read()
                last = None
                for _p, h in R.iter_headers(data):
                    last = h
                total += len(data)
                off = last.last_offset + 1
            return total
        t, total = _timed(read_bytes)
        out["read_bytes_mb_s"] = total / t / MB

        # an fsync per append
        store.create_topic("durable", 1, {"flush.messages": "1"})
        ld = store.partition("durable", 0)
        one = R.build_batch([(None, value)], timestamp=ts)
        budget = 0.5 if n < 1_000_000 else 2.0
        k = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < budget:
            ld.append_batch(one)
            k += 1
        out["flush1_append_rps"] = k / (time.perf_counter() - t0)
    return out


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


def index_lookup(d: str, entries: int = 1_000_000, lookups: int = 200_000) -> dict[str, float]:
    """Lookups on a full OffsetIndex (one entry per batch of 10 offsets, 4 KiB apart)."""
    path = os.path.join(d, "00000000000000000000.index")
    arr = np.empty(entries, dtype=OFFSET_ENTRY)
    arr["off"] = np.arange(entries, dtype=np.uint32) * 10 + 9
    arr["pos"] = np.arange(entries, dtype=np.uint32) * 4096
    arr.tofile(path)
    idx = OffsetIndex(path, 0, entries * 8, writable=False)
    rng = random.Random(7)
    targets = [rng.randrange(entries * 10) for _ in range(lookups)]
    t0 = time.perf_counter()
    first = idx.lookup(targets[0])
    t_first = time.perf_counter() - t0
    lookup = idx.lookup
    t0 = time.perf_counter()
    for x in targets:
        lookup(x)
    t = time.perf_counter() - t0
    mid = entries // 2
    off, pos = lookup(mid * 10 + 3)  # between the entries for offsets mid*10-1 and mid*10+9
    assert (off, pos) == (mid * 10 - 1, (mid - 1) * 4096), (off, pos)
    assert first[0] <= targets[0]
    idx.close()
    return {"index_entries": entries, "index_lookup_us": t / lookups * 1e6, "index_first_lookup_us": t_first * 1e6}


def recovery(d: str, log_mb: int, segment_counts: list[int]) -> dict[str, Any]:
    """Open time of a store after a clean stop and after an unclean one (full scan), against
    segment count, for a log of `log_mb` MB."""
    value = _value()
    batch = R.build_batch([(None, value)] * BATCH)
    rows = []
    for segs in segment_counts:
        path = os.path.join(d, f"recover-{segs}")
        seg_bytes = max(len(batch) * 2, log_mb * MB // segs)
        with logstore.open(path, background=False) as store:
            store.create_topic("r", 1, {"segment.bytes": str(seg_bytes), "retention.ms": "-1"})
            lg = store.partition("r", 0)
            while lg.size < log_mb * MB:
                lg.append_batch(batch)
            nsegs, size = len(lg.segments), lg.size
        t_clean = _open_close(path)
        os.unlink(os.path.join(path, logstore.store.CLEAN_SHUTDOWN_FILE))
        os.unlink(os.path.join(path, "recovery-point-offset-checkpoint"))
        t0 = time.perf_counter()
        store = logstore.open(path, background=False)
        t_unclean = time.perf_counter() - t0
        scanned = store.recovery_stats.bytes_scanned
        store.close()
        rows.append({"segments": nsegs, "log_bytes": size, "clean_open_s": t_clean,
                     "recovery_open_s": t_unclean, "recovery_bytes_scanned": scanned,
                     "recovery_mb_s": scanned / t_unclean / MB})
        shutil.rmtree(path, ignore_errors=True)
    return {"recovery": rows}


def _open_close(path: str) -> float:
    t0 = time.perf_counter()
    store = logstore.open(path, background=False)
    t = time.perf_counter() - t0
    store.close()
    return t


def open_partitions(d: str, partitions: int) -> dict[str, float]:
    path = os.path.join(d, "parts")
    batch = R.build_batch([(None, _value())] * 10)
    big = R.build_batch([(None, _value())] * 50)  # 5.5 KB
    with logstore.open(path, background=False) as store:
        store.create_topic("many", partitions)
        t0 = time.perf_counter()
        for p in range(partitions):
            store.partition("many", p).append_batch(batch)
        for p in range(partitions):  # past index.interval.bytes: each partition's first index entries
            store.partition("many", p).append_batch(big)
        t_first = time.perf_counter() - t0
    t = _open_close(path)
    shutil.rmtree(path, ignore_errors=True)
    return {"open_partitions": partitions, "open_partitions_clean_s": t,
            "first_append_partitions_s": t_first}


def run(quick: bool = False, records: int | None = None, workdir: str | None = None,
        tiny: bool = False) -> dict[str, Any]:
    """All embedded figures. `tiny` shrinks every size so the whole run takes a few seconds (the
    smoke test in tests/test_bench_smoke.py uses it; its figures mean nothing)."""
    quick = quick or tiny
    n = records or (5_000 if tiny else 50_000 if quick else 1_000_000)
    n = max(BATCH, n - n % BATCH)
    d = tempfile.mkdtemp(prefix="bench-embedded-", dir=workdir)
    fig: dict[str, Any] = {"records": n, "value_bytes": VALUE_BYTES, "batch_records": BATCH}
    try:
        rounds = min(10, n // BATCH)
        say(f"embedded: logstore and plain file append / read, {n:,} records in {rounds} interleaved rounds")
        fig.update(interleaved(d, n - n % (rounds * BATCH), rounds))
        say("embedded: sqlite3 baseline")
        fig.update(sqlite_baseline(d, n))
        say("embedded: logstore append_batch / read variants")
        fig.update(logstore_figures(d, n))
        say("embedded: index lookup")
        if tiny:
            fig.update(index_lookup(d, 10_000, 1_000))
        else:
            fig.update(index_lookup(d, 100_000 if quick else 1_000_000, 20_000 if quick else 200_000))
        say("embedded: open / recovery")
        if tiny:
            fig.update(recovery(d, 1, [2, 5]))
            fig.update(open_partitions(d, 10))
        else:
            fig.update(recovery(d, 8 if quick else 64, [10, 100] if quick else [10, 100, 1000]))
            fig.update(open_partitions(d, 100 if quick else 1000))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    fig["append_vs_sqlite"] = fig["append_rps"] / fig["sqlite_append_rps"]
    fig["append_batch_vs_plain"] = fig["append_batch_rps"] / fig["plain_append_rps"]
    fig["append_batch_vs_sqlite"] = fig["append_batch_rps"] / fig["sqlite_append_rps"]
    fig["read_vs_sqlite"] = fig["read_rps"] / fig["sqlite_read_rps"]
    fig["read_fast_vs_pure"] = fig["read_batches_log_rps"] / fig["read_pure_rps"]
    return fig


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--records", type=int, default=None)
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--results", default=str(RESULTS), help="directory for the JSON result")
    args = ap.parse_args(argv)
    fig = run(args.quick, args.records, tiny=args.tiny)
    quick = args.quick or args.tiny
    path = write_result("embedded-quick" if quick else "embedded", fig, quick=quick, results_dir=Path(args.results))
    for k, v in fig.items():
        print(f"{k:28s} {v}")
    say(f"wrote {path}")
    return fig


if __name__ == "__main__":
    main()
