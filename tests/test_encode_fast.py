"""The compiled fast path of `records.build_batch` writes exactly the bytes the pure-Python loop writes.

Random records (keys, values and header values null or not, str and bytes header keys, header
tuples or lists, timestamps missing, negative, increasing or out of order, so that the minimum is
not always the first), every codec, producer fields and attribute bits: `build_batch` with the
fast path equals `build_batch` with it turned off, byte for byte, and bad input raises the same
error both ways. aiokafka is an optional dependency in production but a test dependency, so its
absence here is a failure, not a skip.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logstore import records as R

_blob = st.one_of(st.none(), st.binary(max_size=300))
_hkey = st.one_of(st.text(max_size=8), st.text(max_size=8).map(str.encode))  # keys decode as UTF-8
_headers = st.one_of(st.lists(st.tuples(_hkey, _blob), max_size=3),
                     st.lists(st.lists(_blob, min_size=2, max_size=2).map(lambda kv: ["h", kv[1]]), max_size=2),
                     st.just(()), st.none())
_ts = st.integers(-(1 << 40), 1 << 42)
_record = st.one_of(
    st.tuples(_blob, _blob),
    st.tuples(_blob, _blob, _headers),
    st.tuples(_blob, _blob, _headers, st.one_of(st.none(), _ts)),
    st.builds(lambda o, t, k, v: R.Record(o, t, k, v, []), st.integers(0, 9), _ts, _blob, _blob),
)
_spec = st.fixed_dictionaries({
    "records": st.lists(_record, min_size=1, max_size=40),
    "compression": st.sampled_from(["none", "none", "gzip", "snappy", "lz4", "zstd"]),
    "base_offset": st.integers(0, 1 << 40),
    "timestamp": st.one_of(st.none(), _ts),
    "producer_id": st.integers(-1, 1 << 40),
    "log_append_time": st.booleans(),
    "transactional": st.booleans(),
})


def _both(records, **kw):
    """(fast result or error, pure result or error)."""
    def run():
        try:
            return R.build_batch(records, **kw)
        except Exception as e:  # noqa: BLE001
            return (type(e), str(e))
    assert R.fast_encode_available()
    fast = run()
    saved = R._FAST_BUILDER, R.encode_uniform_pairs
    R._FAST_BUILDER, R.encode_uniform_pairs = False, lambda records: None  # both fast paths off
    try:
        pure = run()
    finally:
        R._FAST_BUILDER, R.encode_uniform_pairs = saved
    return fast, pure


def test_fast_path_is_available() -> None:
    assert R.fast_encode_available(), "aiokafka's compiled record builder should import in the test env"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_spec)
def test_fast_equals_pure(spec: dict) -> None:
    records = spec.pop("records")
    ts = spec.pop("timestamp")
    fast, pure = _both(records, timestamp=ts if ts is not None else 1_700_000_000_000, **spec)
    assert fast == pure
    assert isinstance(fast, bytes)
    # and the batch decodes back to the records, the base timestamp being the minimum
    h = R.read_header(fast)
    recs = R.decode_batch(fast)
    assert len(recs) == len(records) == h.record_count
    stamps = [r.timestamp for r in recs]
    if not spec["log_append_time"]:
        assert h.base_timestamp == min(stamps) and h.max_timestamp == max(stamps)


def test_minimum_timestamp_is_the_base_even_when_not_first() -> None:
    # aiokafka would take 20 (the first) as base; ours must be 10 (the minimum)
    data = R.build_batch([(None, b"a", (), 20), (None, b"b", (), 10), (None, b"c", (), 30)])
    assert data == _both([(None, b"a", (), 20), (None, b"b", (), 10), (None, b"c", (), 30)])[1]
    h = R.read_header(data)
    assert (h.base_timestamp, h.max_timestamp) == (10, 30)
    assert [r.timestamp for r in R.decode_batch(data)] == [20, 10, 30]


def test_generator_input_is_consumed_once() -> None:
    gen = ((None, bytes([i])) for i in range(5))
    data = R.build_batch(gen, timestamp=7)
    assert [r.value for r in R.decode_batch(data)] == [bytes([i]) for i in range(5)]


@pytest.mark.parametrize("records, error", [
    ([], ValueError),
    ([(b"k",)], ValueError),
    ([("k", b"v")], TypeError),
    ([(b"k", "v")], TypeError),
])
def test_bad_input_raises_the_same_both_ways(records, error) -> None:
    fast, pure = _both(records, timestamp=1)
    assert fast == pure
    assert fast[0] is error
