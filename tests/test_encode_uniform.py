"""The uniform-pairs encoder (logstore/encode_uniform.py) writes exactly the pure loop's bytes.

Batches of (key, value) pairs with null or one-length keys and one-length values, across the
record counts where the offset-delta and length varints grow a byte (64, 8192), give the same
bytes as `records._encode_records` and decode back; every batch that is not uniform (mixed
lengths, null values, headers, records of other lengths, str, wide memoryviews) is refused, so
the general encoder handles it.
"""

from __future__ import annotations

import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore import encode_uniform as U
from logstore import records as R


def _pure(records, ts: int = 1_700_000_000_000) -> bytes:
    saved = R._FAST_BUILDER, R.encode_uniform_pairs
    R._FAST_BUILDER, R.encode_uniform_pairs = False, lambda records: None
    try:
        return R.build_batch(records, timestamp=ts)
    finally:
        R._FAST_BUILDER, R.encode_uniform_pairs = saved


def _uniform(records, ts: int = 1_700_000_000_000) -> bytes:
    assert U.encode_uniform_pairs(records) is not None, "the uniform path refused a uniform batch"
    return R.build_batch(records, timestamp=ts)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(U.MIN_RECORDS, 200), klen=st.one_of(st.none(), st.integers(0, 150)), vlen=st.integers(0, 300),
       seed=st.integers(0, 255))
def test_uniform_batches_equal_the_pure_loop(n, klen, vlen, seed):
    records = [(None if klen is None else bytes([seed, i % 256]) * (klen // 2) + b"k" * (klen % 2),
                bytes([(seed + i) % 256]) * vlen) for i in range(n)]
    got = _uniform(records)
    assert got == _pure(records)
    decoded = R.decode_batch(got)
    assert [(r.offset, r.key, r.value, r.headers) for r in decoded] == [
        (i, k, v, ()) for i, (k, v) in enumerate(records)]


@pytest.mark.parametrize("n", [63, 64, 65, 8191, 8192, 8193, 20_000])
@pytest.mark.parametrize("klen", [None, 3])
def test_varint_boundaries(n, klen):
    records = [(None if klen is None else b"%03d" % (i % 1000), b"v%05d" % (i % 100_000)) for i in range(n)]
    got = _uniform(records)
    assert got == _pure(records)
    assert R.decode_batch(got)[-1].offset == n - 1


def test_compressed_and_offset_batches_too():
    records = [(b"key", b"x" * 100)] * 500
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        a = R.build_batch(records, compression=codec, base_offset=77, timestamp=5)
        assert [r.value for r in R.decode_batch(a)] == [b"x" * 100] * 500
        assert R.decode_batch(a)[0].offset == 77


def _many(*records):
    return list(records) * U.MIN_RECORDS


@pytest.mark.parametrize("records", [
    _many((None, b"ab"), (None, b"abc")),                 # value lengths differ
    _many((b"k", b"ab"), (b"kk", b"ab")),                 # key lengths differ
    _many((b"k", b"ab"), (None, b"ab")),                  # some keys null
    _many((None, None)),                                  # tombstones
    _many((None, b"ab"), (None, b"ab", [("h", b"x")])),   # a record with headers among pairs
    _many((None, b"ab", [("h", b"x")])),                  # headers
    _many((None, b"ab", [], 5)),                          # a record timestamp
    _many((None, "ab")),                                  # str is not bytes
    _many((None, memoryview(array.array("i", [1, 2])))),  # len() is not the byte size
    _many((None, memoryview(array.array("i", [1, 2]))), (None, b"ab")),
    _many(b"ab"),                                         # not pairs
    [(None, b"ab")] * (U.MIN_RECORDS - 1),                # too few to be worth a table
    [],
])
def test_anything_not_uniform_is_refused(records):
    assert U.encode_uniform_pairs(records) is None


def test_headers_among_pairs_are_kept():
    """zip() would silently drop the third field of a longer record: the strict zip refuses."""
    records = [(None, b"ab")] * U.MIN_RECORDS + [(None, b"ab", [("h", b"x")])]
    assert [r.headers for r in R.decode_batch(R.build_batch(records))][-2:] == [(), (("h", b"x"),)]


def test_the_shape_cache_is_bounded():
    U._tables.clear()
    n = U.MIN_RECORDS
    for vlen in range(U.MAX_SHAPES + 10):
        records = [(None, b"x" * vlen)] * n
        assert R.build_batch(records, timestamp=1) == _pure(records, 1)
    assert len(U._tables) == U.MAX_SHAPES
    assert (-1, 0) not in U._tables and (-1, U.MAX_SHAPES + 9) in U._tables  # the oldest went first
    assert U.encode_uniform_pairs([(None, b"x")] * (U.MAX_RECORDS + 1)) is None
    U._tables.clear()


def test_small_batches_never_build_a_table():
    U._tables.clear()
    for vlen in range(100):
        R.build_batch([(None, b"x" * vlen)])
    assert U._tables == {}
