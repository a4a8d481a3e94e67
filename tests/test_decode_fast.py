"""The compiled fast path of `records.decode_batch` gives exactly what the pure-Python loop gives.

Random batches (keys, values and header values null or not, headers, negative and -1 timestamps,
LogAppendTime, every codec) decode to equal `Record`s both ways. Random byte damage is caught by the
CRC; with the CRC check off, each path decodes as many records as the header says or raises
CorruptRecordError naming the file and position, never another error. (They need not agree then:
the compiled reader is laxer on damaged records, which is why dump-log reads a batch whose CRC
fails with the pure decoder.) The fast path is an optional dependency (aiokafka) in production, but it is a test
dependency, so its absence here is a failure, not a skip.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logstore import records as R
from logstore.errors import CorruptRecordError

_blob = st.one_of(st.none(), st.binary(max_size=300))
_headers = st.lists(st.tuples(st.text(max_size=8), _blob), max_size=3)
_record = st.tuples(_blob, _blob, _headers, st.integers(-(1 << 40), 1 << 42))
_batch = st.fixed_dictionaries({
    "records": st.lists(_record, min_size=1, max_size=40),
    "compression": st.sampled_from(["none", "none", "gzip", "snappy", "lz4", "zstd"]),
    "base_offset": st.integers(0, 1 << 40),
    "log_append_time": st.booleans(),
})


def _encode(spec: dict) -> bytes:
    return R.build_batch(spec["records"], spec["base_offset"], compression=spec["compression"],
                         log_append_time=spec["log_append_time"])


def test_fast_path_is_available() -> None:
    assert R.fast_decode_available(), "aiokafka's compiled record reader should import in the test env"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batch)
def test_fast_equals_pure(spec: dict) -> None:
    data = _encode(spec)
    fast = R.decode_batch(data)
    pure = R.decode_batch(data, fast=False)
    assert fast == pure
    assert [type(r) for r in fast] == [R.Record] * len(spec["records"])
    for rec, (key, value, headers, ts) in zip(fast, spec["records"]):
        assert rec.key == key and rec.value == value
        assert isinstance(rec.headers, tuple)
        assert rec.headers == tuple((k, v) for k, v in headers)
        if not spec["log_append_time"]:
            assert rec.timestamp == ts
    assert [r.offset for r in fast] == list(range(spec["base_offset"], spec["base_offset"] + len(fast)))
    # records are immutable, headers included
    for rec in fast:
        with pytest.raises((AttributeError, TypeError)):
            rec.value = b"changed"
        assert all(type(h) is tuple for h in rec.headers)


def test_minus_one_timestamp_is_kept_as_a_number() -> None:
    data = R.build_batch([(None, b"a", [], -1), (b"k", None, [], -1)])
    assert [r.timestamp for r in R.decode_batch(data)] == [-1, -1]
    assert R.decode_batch(data) == R.decode_batch(data, fast=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batch, st.data())
def test_damage_is_reported_the_same_way(spec: dict, draw: st.DataObject) -> None:
    spec = dict(spec, compression="none")
    data = bytearray(_encode(spec))
    # damage the records (not the header: header checks run before either decoder)
    i = draw.draw(st.integers(R.HEADER_SIZE, len(data) - 1))
    data[i] = draw.draw(st.integers(0, 255))
    if draw.draw(st.booleans()):
        cut = draw.draw(st.integers(R.HEADER_SIZE, len(data)))
        del data[cut:]
        struct.pack_into(">i", data, 8, len(data) - R.LOG_OVERHEAD)
    buf = bytes(data)
    for fast in (True, False):
        try:
            recs = R.decode_batch(buf, verify_crc=False, path="seg.log", base=4096, fast=fast)
        except CorruptRecordError as e:
            assert e.path == "seg.log" and e.position == 4096
            assert "position 4096" in str(e) and "seg.log" in str(e)
        else:
            assert len(recs) == R.read_header(buf, 0).record_count
    # with the CRC checked, as every reading path does, the damage is always caught
    if buf != bytes(_encode(spec)):
        with pytest.raises(CorruptRecordError, match="position 4096 of seg.log"):
            R.decode_batch(buf, path="seg.log", base=4096)


def test_crc_is_still_checked_on_the_fast_path() -> None:
    data = bytearray(R.build_batch([(b"k", b"v" * 50)] * 10))
    data[-3] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC mismatch at position 100 of f.log"):
        R.decode_batch(bytes(data), path="f.log", base=100)


def test_truncated_record_names_file_and_position() -> None:
    good = R.build_batch([(b"k", b"v" * 50)] * 10)
    data = bytearray(good[:-20])
    struct.pack_into(">i", data, 8, len(data) - R.LOG_OVERHEAD)
    for fast in (True, False):
        with pytest.raises(CorruptRecordError, match="malformed records in batch at position 7 of x.log"):
            R.decode_batch(bytes(data), verify_crc=False, path="x.log", base=7, fast=fast)


def test_bytearray_and_memoryview_inputs_hold_no_export() -> None:
    batch = R.build_batch([(b"k%d" % i, b"v" * i) for i in range(20)], 5)
    buf = bytearray(b"\0" * 3 + batch)
    want = R.decode_batch(batch, fast=False)
    assert R.decode_batch(buf, 3) == want
    assert R.decode_batch(memoryview(buf), 3) == want
    buf += b"resizable"  # would raise BufferError if a decoder still held the buffer
    bad = bytearray(batch[:-4])  # the fast reader fails on it and falls back: still no export left
    struct.pack_into(">i", bad, 8, len(bad) - R.LOG_OVERHEAD)
    with pytest.raises(CorruptRecordError):
        R.decode_batch(bad, 0, verify_crc=False)
    bad += b"again"


def test_trailing_bytes_after_the_last_record_are_tolerated_both_ways() -> None:
    # the pure loop has always ignored them; the fast reader objects, so the pure loop decides
    batch = bytearray(R.build_batch([(None, b"x")] * 3))
    batch += b"\0\0"
    struct.pack_into(">i", batch, 8, len(batch) - R.LOG_OVERHEAD)
    assert R.decode_batch(bytes(batch), verify_crc=False) == R.decode_batch(bytes(batch), verify_crc=False,
                                                                             fast=False)
    assert len(R.decode_batch(bytes(batch), verify_crc=False)) == 3


def test_without_the_compiled_reader_everything_decodes_the_pure_way(monkeypatch, tmp_path) -> None:
    """What a machine without aiokafka runs: `decode_batch` and `Log.read` use the pure loop."""
    import logstore

    batches = [R.build_batch([(b"k%d" % i, b"v" * i, [("h", None)]) for i in range(50)], compression=c)
               for c in ("none", "lz4")]
    want = [R.decode_batch(b) for b in batches]
    monkeypatch.setattr(R, "_FAST_BATCH", False)
    assert not R.fast_decode_available()
    assert [R.decode_batch(b) for b in batches] == want
    with logstore.open(str(tmp_path / "s"), background=False) as store:
        store.create_topic("t", 1)
        lg = store.partition("t", 0)
        for b in batches:
            lg.append_batch(b)
        got = lg.read(0)
    assert [(r.key, r.value, r.headers) for r in got] == [(r.key, r.value, r.headers) for w in want for r in w]
    assert [r.offset for r in got] == list(range(100))


def test_a_damaged_header_count_or_key_length_is_refused_without_looping() -> None:
    """A header key length of -1 moved the pure decoder's position backwards: with a damaged
    header count of millions it appended the same empty header until memory ran out (CI was
    OOM-killed at 20 GB). Both paths must refuse such a record at once."""
    import resource
    import time

    good = R.build_batch([(b"k", b"v", [("h", b"x")])])
    body = bytearray(good)
    # the record: length, attrs, ts delta, offset delta, key len, key, value len, value, header count...
    at = bytes(body).index(b"\x02h") - 1          # the header count varint (1 header: zigzag 2)
    assert body[at] == 2
    # count -1; 2^31 - 1; 2^27 - 1 ending in a 0x00 byte, which a key length of -2 (0x03) steps
    # back onto: hvl 0 there, and the loop is where it began (the CI case)
    for damage in (b"\x01", b"\xfe\xff\xff\xff\x0f", b"\xfe\xff\xff\xff\x00"):
        for key_len in (b"\x01", b"\x02", b"\x03"):     # key length -1, 1, -2
            data = bytearray(body[:at]) + damage + key_len + body[at + 2:]
            struct.pack_into(">i", data, 8, len(data) - R.LOG_OVERHEAD)
            t0 = time.monotonic()
            # a regression raises MemoryError here instead of taking the machine's memory
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            with open("/proc/self/statm") as f:
                vm = int(f.read().split()[0]) * resource.getpagesize()
            resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), hard))
            try:
                for fast in (True, False):
                    with pytest.raises(CorruptRecordError, match="position 4096 of seg.log"):
                        R.decode_batch(bytes(data), verify_crc=False, path="seg.log", base=4096, fast=fast)
            finally:
                resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
            assert time.monotonic() - t0 < 5
