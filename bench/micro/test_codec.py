"""Micro benchmarks of the RecordBatch v2 codec: encode, decode (fast and pure), CRC, header scan.

One batch of 1,000 records with 100-byte values and no key (Kafka's benchmark record). Rates per
record are in `extra_info` so the harness can print records/s.
"""

from __future__ import annotations

import random

import pytest

from logstore import records as R

N = 1000
VALUE = random.Random(1).randbytes(100)
RECORDS = [(None, VALUE)] * N
BATCH = R.build_batch(RECORDS, timestamp=1_700_000_000_000)
LZ4_BATCH = R.build_batch(RECORDS, timestamp=1_700_000_000_000, compression="lz4")
MANY = BATCH * 100  # 100 batches back to back: ~11 MB


def test_encode_batch(benchmark) -> None:
    benchmark.extra_info["records"] = N
    out = benchmark(R.build_batch, RECORDS, timestamp=1_700_000_000_000)
    assert len(out) == len(BATCH)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "pure"])
def test_decode_batch(benchmark, fast: bool) -> None:
    assert R.fast_decode_available()
    benchmark.extra_info["records"] = N
    recs = benchmark(R.decode_batch, BATCH, fast=fast)
    assert len(recs) == N and recs[-1].value == VALUE


def test_decode_batch_lz4(benchmark) -> None:
    benchmark.extra_info["records"] = N
    recs = benchmark(R.decode_batch, LZ4_BATCH)
    assert len(recs) == N


def test_crc32c_batch(benchmark) -> None:
    benchmark.extra_info["bytes"] = len(BATCH)
    h = benchmark(R.validate_batch, BATCH)
    assert h.record_count == N


def test_iter_headers_100_batches(benchmark) -> None:
    benchmark.extra_info["batches"] = 100
    n = benchmark(lambda: sum(1 for _ in R.iter_headers(MANY)))
    assert n == 100
