"""Log cleaner throughput, as a ratio to reading the same log sequentially in the same run.

    .venv/bin/python -m bench.bench_cleaner [--quick] [--size-mb N] [--value-bytes N] [--live 0.01]

Builds a partition of `--size-mb` (1 GiB; 32 MiB with --quick) of records with `--value-bytes`
values whose keys are drawn from a space of `--live` x records (1%: each key is overwritten ~100
times), in 64 MiB segments (4 MiB with --quick), then measures, in this order and on the same
(page-cached) files:
  read_raw        every segment file read front to back in 1 MiB preads: the bytes a fetch moves
  read_records    `Log.read` from the log start to the end: every record decoded (CRC checked),
                  what an embedded consumer does
  clean           `store.run_cleaner()`: one cleaning of the whole log (default 128 MiB dedupe
                  buffer), from the key map to the last swap, fsyncs included
Figures: MB/s and records/s of each, the cleaner's ratio to each read, bytes and records left,
the key map's size, and the process's peak RSS growth during the cleaning. Written to
bench/results/cleaner.json (cleaner-quick.json with --quick). The log is written with cleanup.policy=delete (so producing it does
not decode every record for the key check) and switched to compact before cleaning.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

import logstore
from logstore import records as R

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "cleaner.json"
RESULTS_QUICK = ROOT / "bench" / "results" / "cleaner-quick.json"  # so --quick never overwrites a full run
BATCH_RECORDS = 200


def build_log(store, size: int, value_bytes: int, live: float, segment_bytes: int) -> tuple[int, int]:
    """Append records until the partition holds `size` bytes. Returns (records, distinct keys)."""
    store.create_topic("bench", 1, {"segment.bytes": str(segment_bytes), "retention.ms": "-1"})
    lg = store.partition("bench", 0)
    rng = random.Random(42)
    value = bytes(rng.getrandbits(8) for _ in range(value_bytes))
    per_record = 4 + 3 + 14 + 2 + value_bytes + 1  # varints, key, value, header count
    expected = size // per_record
    keys = max(1, int(expected * live))
    now = int(time.time() * 1000)
    n = 0
    t0 = time.perf_counter()
    while lg.size < size:
        batch = R.build_batch([(b"key-%09d" % rng.randrange(keys), value) for _ in range(BATCH_RECORDS)],
                              timestamp=now)
        lg.append_batch(batch)
        n += BATCH_RECORDS
        if n % (BATCH_RECORDS * 500) == 0:
            print(f"\r  writing: {lg.size / 2**20:7.0f} / {size / 2**20:.0f} MiB "
                  f"({time.perf_counter() - t0:.0f} s)", end="", file=sys.stderr, flush=True)
    lg.roll()
    lg.flush()
    print(file=sys.stderr)
    return n, keys


def read_raw(lg) -> tuple[int, float]:
    total = 0
    t0 = time.perf_counter()
    for seg in list(lg.segments.values()):
        fd = os.open(seg.log_path, os.O_RDONLY)
        try:
            pos = 0
            while True:
                b = os.pread(fd, 1 << 20, pos)
                if not b:
                    break
                pos += len(b)
                total += len(b)
        finally:
            os.close(fd)
    return total, time.perf_counter() - t0


def read_records(lg) -> tuple[int, float]:
    n = 0
    off = lg.log_start_offset
    end = lg.log_end_offset
    t0 = time.perf_counter()
    while off < end:
        recs = lg.read(off, 1 << 20)
        if not recs:
            break
        n += len(recs)
        off = recs[-1].offset + 1
    return n, time.perf_counter() - t0


class PeakRss:
    """Samples the process RSS every 10 ms on a thread; `peak` is the largest seen."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> "PeakRss":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32 MiB log instead of 1 GiB")
    ap.add_argument("--size-mb", type=int, default=None)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--live", type=float, default=0.01, help="distinct keys / records")
    ap.add_argument("--dedupe-mb", type=int, default=128)
    ap.add_argument("--dir", default=None, help="where to build the log (default: a temp dir)")
    ap.add_argument("--out", default=None, help=f"default {RESULTS} ({RESULTS_QUICK.name} with --quick)")
    args = ap.parse_args(argv)
    size = (args.size_mb or (32 if args.quick else 1024)) << 20
    segment_bytes = (4 if args.quick else 64) << 20
    base = Path(args.dir or tempfile.mkdtemp(prefix="bench-cleaner-"))
    path = base / "data"
    shutil.rmtree(path, ignore_errors=True)
    try:
        conf = {"log.cleaner.dedupe.buffer.size": args.dedupe_mb << 20, "log.cleaner.enable": "false"}
        with logstore.open(path, conf, background=False) as store:
            print(f"building a {size >> 20} MiB log, {args.value_bytes}-byte values, {args.live:.1%} live keys",
                  file=sys.stderr)
            records, keys = build_log(store, size, args.value_bytes, args.live, segment_bytes)
            lg = store.partition("bench", 0)
            log_bytes = lg.size
            segments = len(lg.segments) - 1
            read_raw(lg)  # warm the page cache, so every run below reads from memory
            raw_bytes, raw_s = read_raw(lg)
            rec_n, rec_s = read_records(lg)
            assert rec_n == records, (rec_n, records)
            store.alter_topic_config("bench", {"cleanup.policy": "compact", "segment.bytes": str(segment_bytes),
                                               "retention.ms": "-1", "min.cleanable.dirty.ratio": "0"})
            rss0 = psutil.Process().memory_info().rss
            with PeakRss() as rss:
                t0 = time.perf_counter()
                stats = store.run_cleaner()
                clean_s = time.perf_counter() - t0
            kept_bytes = lg.size
            kept = sum(s.records_kept for s in stats[-1:])
            m = store.log_cleaner.offset_map()
            map_s = sum(s.map_seconds for s in stats)
            left, _ = read_records(lg)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    mb = 1 << 20
    res = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "log_bytes": log_bytes, "segments": segments, "records": records, "distinct_keys": keys,
        "value_bytes": args.value_bytes, "live_fraction": args.live,
        "read_raw_mb_s": raw_bytes / mb / raw_s,
        "read_records_mb_s": log_bytes / mb / rec_s, "read_records_rps": rec_n / rec_s,
        "clean_seconds": clean_s, "clean_map_seconds": map_s, "clean_passes": len(stats),
        "clean_mb_s": log_bytes / mb / clean_s, "clean_rps": records / clean_s,
        "ratio_to_read_records": rec_s / clean_s, "ratio_to_read_raw": raw_s / clean_s,
        "bytes_after": kept_bytes, "records_after": left, "records_kept_last_pass": kept,
        "dedupe_buffer_bytes": args.dedupe_mb << 20, "map_bytes": m.nbytes, "map_entries": m.size,
        "peak_rss_growth_bytes": rss.peak - rss0,
    }
    print(f"log            {log_bytes / mb:9.1f} MiB  {records:>10,} records  {keys:,} keys  {segments} segments")
    print(f"read raw       {res['read_raw_mb_s']:9.1f} MB/s")
    print(f"read records   {res['read_records_mb_s']:9.1f} MB/s  {res['read_records_rps']:12,.0f} records/s")
    print(f"clean          {res['clean_mb_s']:9.1f} MB/s  {res['clean_rps']:12,.0f} records/s  "
          f"({clean_s:.1f} s, key map {map_s:.1f} s, {len(stats)} pass(es))")
    print(f"clean / read records = {res['ratio_to_read_records']:.2f}   "
          f"clean / read raw = {res['ratio_to_read_raw']:.3f}")
    print(f"after          {kept_bytes / mb:9.2f} MiB  {left:,} records; map {m.nbytes / mb:.0f} MiB "
          f"holding {m.size:,} keys; peak RSS growth {res['peak_rss_growth_bytes'] / mb:.1f} MiB")
    out = Path(args.out or (RESULTS_QUICK if args.quick else RESULTS))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"written to {out}")
    return res


if __name__ == "__main__":
    main()
