"""Micro benchmarks of the storage layers: index lookup, segment append and read, recovery scan.

Real files under pytest's tmp_path. Sizes are small enough for the quick harness run; rates per
record / per MB are in `extra_info`.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

import logstore
from logstore import records as R
from logstore.index import OFFSET_ENTRY, OffsetIndex
from logstore.segment import LogSegment

VALUE = random.Random(1).randbytes(100)
TINY = os.environ.get("BENCH_TINY") == "1"  # the harness smoke test: small sizes, figures not judged
INDEX_ENTRIES = 100_000 if TINY else 1_000_000
RECOVERY_BYTES = (2 if TINY else 16) * 1_000_000
BATCH = R.build_batch([(None, VALUE)] * 1000)  # timestamp now: old ones would roll segments (segment.ms)


@pytest.fixture(scope="module")
def full_index(tmp_path_factory):
    entries = INDEX_ENTRIES
    path = str(tmp_path_factory.mktemp("idx") / "00000000000000000000.index")
    arr = np.empty(entries, dtype=OFFSET_ENTRY)
    arr["off"] = np.arange(entries, dtype=np.uint32) * 10 + 9
    arr["pos"] = np.arange(entries, dtype=np.uint32) * 4096
    arr.tofile(path)
    idx = OffsetIndex(path, 0, entries * 8, writable=False)
    idx.lookup(0)
    yield idx
    idx.close()


def test_index_lookup_1m_entries(benchmark, full_index) -> None:
    targets = iter(random.Random(3).randrange(10_000_000) for _ in range(10**7))
    benchmark.extra_info["entries"] = INDEX_ENTRIES
    off, _pos = benchmark(lambda: full_index.lookup(next(targets)))
    assert off >= 0


def test_segment_append(benchmark, tmp_path) -> None:
    seg = LogSegment(str(tmp_path), 0, active=True, create=True)
    state = {"next": 0}

    def append() -> None:
        buf = bytearray(BATCH)
        R.set_base_offset(buf, 0, state["next"])
        seg.append(buf, [(0, state["next"] + 999, 1_700_000_000_000)])
        state["next"] += 1000

    benchmark.extra_info["records"] = 1000
    benchmark.extra_info["bytes"] = len(BATCH)
    benchmark(append)
    assert seg.size >= len(BATCH)
    seg.close()


def test_segment_read_1mib(benchmark, tmp_path) -> None:
    with logstore.open(str(tmp_path / "s"), background=False) as store:
        store.create_topic("t", 1)
        lg = store.partition("t", 0)
        for _ in range(40):
            lg.append_batch(BATCH)
        benchmark.extra_info["bytes"] = 1 << 20
        data = benchmark(lambda: lg.read_slice(20_000, 1 << 20).read())
        assert len(data) >= 1 << 19


def test_recovery_scan_per_mb(benchmark, tmp_path) -> None:
    """A full recovery of one 16 MB (tiny: 2 MB) segment (headers, CRCs, index rebuild), per run."""
    d = tmp_path / "r"
    with logstore.open(str(d), background=False) as store:
        store.create_topic("t", 1, {"segment.bytes": str(1 << 30)})
        lg = store.partition("t", 0)
        while lg.size < RECOVERY_BYTES:
            lg.append_batch(BATCH)
        size = lg.size
    benchmark.extra_info["bytes"] = size

    def reopen_unclean() -> int:
        for name in (logstore.store.CLEAN_SHUTDOWN_FILE, "recovery-point-offset-checkpoint"):
            p = d / name
            if p.exists():
                os.unlink(p)
        store = logstore.open(str(d), background=False)
        scanned = store.recovery_stats.bytes_scanned
        store.close()
        return scanned

    scanned = benchmark.pedantic(reopen_unclean, rounds=1 if TINY else 3, iterations=1)
    assert scanned >= size
