"""RecordBatch v2 codec (logstore/records.py): round trips, byte compatibility with a real Kafka
client library's codec (kafka-python), validation and error messages."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from logstore import records as R
from logstore.errors import CorruptRecordError, UnsupportedForMessageFormatError

COMPRESSIONS = ["none", "gzip", "snappy", "lz4", "zstd"]
TS = 1_700_000_000_000

keys = st.none() | st.binary(max_size=40)
values = st.none() | st.binary(max_size=300)
header_keys = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
headers = st.lists(st.tuples(header_keys, st.none() | st.binary(max_size=20)), max_size=3)
timestamps = st.integers(min_value=0, max_value=(1 << 45))
records = st.lists(st.tuples(keys, values, headers, timestamps), min_size=1, max_size=25)


def decoders(data: bytes, pos: int = 0) -> list[list[R.Record]]:
    """The batch decoded by every decoder decode_batch has (the compiled fast path, when it has
    one, and the pure-Python loop): they must agree."""
    out = [R.decode_batch(data, pos)]
    try:
        out.append(R.decode_batch(data, pos, fast=False))
    except TypeError:  # no `fast` switch: a single decoder
        pass
    return out


def expected(recs, base_offset: int) -> list[tuple]:
    return [(base_offset + i, ts, k, v, tuple((hk, hv) for hk, hv in hs)) for i, (k, v, hs, ts) in enumerate(recs)]


# ------------------------------------------------------------------------------ round trips

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=records, compression=st.sampled_from(COMPRESSIONS),
       base_offset=st.integers(min_value=0, max_value=1 << 50))
def test_round_trip_every_compression(recs, compression, base_offset):
    data = R.build_batch(recs, base_offset, compression=compression)
    h = R.validate_batch(data)
    assert h.size == len(data)
    assert h.record_count == len(recs) and h.last_offset_delta == len(recs) - 1
    assert h.compression == R.COMPRESSION_CODES[compression]
    assert h.base_timestamp == min(r[3] for r in recs) and h.max_timestamp == max(r[3] for r in recs)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (-1, -1, -1)
    for got in decoders(data):
        assert [tuple(r) for r in got] == expected(recs, base_offset)


@settings(max_examples=40, deadline=None)
@given(recs=records, compression=st.sampled_from(COMPRESSIONS))
def test_log_append_time_gives_every_record_the_batch_timestamp(recs, compression):
    data = bytearray(R.build_batch(recs, 5, compression=compression))
    R.set_log_append_time(data, 0, TS + 7)
    h = R.validate_batch(data)  # the CRC was recomputed
    assert h.log_append_time and h.max_timestamp == TS + 7
    for got in decoders(bytes(data)):
        assert [r.timestamp for r in got] == [TS + 7] * len(recs)
        assert [r.value for r in got] == [r[1] for r in recs]


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_varint_round_trip(n):
    out = bytearray()
    R.encode_varint(n, out)
    assert len(out) <= 10
    assert R.decode_varint(bytes(out) + b"\xff", 0) == (n, len(out))


def test_rewriting_base_offset_and_leader_epoch_keeps_the_crc():
    data = bytearray(R.build_batch([(b"k", b"v")] * 3, 0))
    R.set_base_offset(data, 0, 1234)
    R.set_leader_epoch(data, 0, 9)
    h = R.validate_batch(data)
    assert (h.base_offset, h.leader_epoch, h.last_offset) == (1234, 9, 1236)
    assert [r.offset for r in R.decode_batch(bytes(data))] == [1234, 1235, 1236]


def test_producer_fields_and_flags_round_trip():
    data = R.build_batch([(b"k", b"v")] * 4, 10, producer_id=77, producer_epoch=3, base_sequence=2**31 - 2,
                         partition_leader_epoch=5, transactional=True)
    h = R.validate_batch(data)
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.leader_epoch) == (77, 3, 2**31 - 2, 5)
    assert h.is_transactional and not h.is_control
    assert h.last_sequence == 1  # wraps at 2^31, as Kafka's sequences do


def test_control_batch_decodes_to_no_records():
    data = R.build_batch([(b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00")], 3, control=True,
                         transactional=True, producer_id=1, producer_epoch=0)
    assert R.read_header(data).is_control
    assert R.decode_batch(data) == []


def test_empty_batch_is_refused():
    with pytest.raises(ValueError):
        R.build_batch([])


def test_snappy_reads_raw_and_multi_block_xerial():
    import cramjam
    recs = [(b"k%d" % i, bytes([i % 251]) * 1000) for i in range(100)]  # ~100 KB: several 32 KB blocks
    data = R.build_batch(recs, 0, compression="snappy", timestamp=TS)
    assert data[R.HEADER_SIZE:R.HEADER_SIZE + 8] == b"\x82SNAPPY\x00"
    assert [r.value for r in R.decode_batch(data)] == [v for _, v in recs]
    # a raw (unframed) snappy payload, as some clients send
    plain = R.build_batch(recs, 0, timestamp=TS)
    body = bytes(cramjam.snappy.compress_raw(plain[R.HEADER_SIZE:]))
    raw = _reframe(plain, body, R.COMPRESSION_SNAPPY)
    assert [r.value for r in R.decode_batch(raw)] == [v for _, v in recs]


def _reframe(batch: bytes, payload: bytes, codec: int) -> bytes:
    """`batch`'s header with another payload and codec, and a correct CRC."""
    h = R.read_header(batch)
    out = bytearray(R.HEADER_SIZE + len(payload))
    R.HEADER.pack_into(out, 0, h.base_offset, R.HEADER_SIZE - R.LOG_OVERHEAD + len(payload), h.leader_epoch,
                       2, 0, (h.attributes & ~7) | codec, *h[6:])
    out[R.HEADER_SIZE:] = payload
    struct.pack_into(">I", out, 17, R.crc32c(bytes(out[21:])))
    return bytes(out)


# ------------------------------------------------------------------------------ kafka-python

KP_CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def _sample_records():
    return [
        (b"key-0", b"value-0", [], TS),
        (None, b"no key", [("h1", b"x"), ("h2", None)], TS + 5),
        (b"no value", None, [], TS - 3),
        (None, None, [("\u00e9t\u00e9", b"\x00\xff")], TS + 1000),
        (b"k" * 300, b"v" * 5000, [("big", b"y" * 100)], TS + 2),
    ]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_kafka_python_batch_decodes_here(compression):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=KP_CODECS[compression], is_transactional=False,
                                  producer_id=4242, producer_epoch=1, base_sequence=17, batch_size=1 << 20)
    recs = _sample_records()
    for i, (k, v, hs, ts) in enumerate(recs):
        assert b.append(i, timestamp=ts, key=k, value=v, headers=hs) is not None
    data = bytes(b.build())
    h = R.validate_batch(data)  # our CRC-32C agrees with theirs
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.record_count) == (4242, 1, 17, len(recs))
    assert h.compression == KP_CODECS[compression]
    for got in decoders(data):
        assert [tuple(r) for r in got] == expected(recs, 0)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_our_batch_decodes_in_kafka_python(compression):
    recs = _sample_records()
    data = R.build_batch(recs, 100, compression=compression, producer_id=9, producer_epoch=2, base_sequence=40)
    batch = DefaultRecordBatch(data)
    assert batch.validate_crc()
    assert (batch.base_offset, batch.producer_id, batch.producer_epoch, batch.base_sequence) == (100, 9, 2, 40)
    assert batch.compression_type == KP_CODECS[compression]
    got = [(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in batch]
    assert got == expected(recs, 100)


def test_kafka_python_log_append_time_batch():
    b = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, 1 << 20)
    for i in range(3):
        b.append(i, timestamp=TS + i, key=None, value=b"v%d" % i, headers=[])
    data = bytearray(b.build())
    R.set_log_append_time(data, 0, TS + 99)
    batch = DefaultRecordBatch(bytes(data))
    assert batch.validate_crc() and batch.timestamp_type == 1
    assert [r.timestamp for r in batch] == [TS + 99] * 3


# ------------------------------------------------------------------------------ validation

def test_every_flipped_bit_after_the_crc_field_is_caught():
    data = R.build_batch([(b"k", b"value"), (None, b"v2", [("h", b"x")])], 0, timestamp=TS)
    for byte in range(17, len(data)):  # the CRC field and everything it covers
        for bit in (0, 3, 7):
            bad = bytearray(data)
            bad[byte] ^= 1 << bit
            with pytest.raises(CorruptRecordError) as e:
                R.validate_batch(bad, path="/x/00.log", base=4096)
            assert e.value.position == 4096 and e.value.path == "/x/00.log"
            assert "position 4096 of /x/00.log" in str(e.value)


def test_truncated_batches_name_the_position():
    data = R.build_batch([(b"k", b"v" * 100)], 0)
    for cut in (10, R.HEADER_SIZE, len(data) - 1):
        with pytest.raises(CorruptRecordError, match="truncated") as e:
            R.validate_batch(data[:cut], base=77)
        assert e.value.position == 77


def test_old_and_unknown_magic():
    data = bytearray(R.build_batch([(b"k", b"v")], 0))
    for magic, exc in ((0, UnsupportedForMessageFormatError), (1, UnsupportedForMessageFormatError),
                       (3, CorruptRecordError), (255, CorruptRecordError)):
        data[R.MAGIC_OFFSET] = magic
        with pytest.raises(exc, match="magic|message format"):
            R.validate_batch(data)


def test_inconsistent_counts_are_corrupt():
    data = bytearray(R.build_batch([(b"k", b"v")] * 3, 0))
    struct.pack_into(">i", data, 23, 1)  # lastOffsetDelta 1 < recordCount - 1
    with pytest.raises(CorruptRecordError, match="inconsistent record count"):
        R.check_header(R.read_header(data))


def test_malformed_records_behind_a_good_crc_name_the_position():
    good = R.build_batch([(b"key", b"value")] * 2, 0, timestamp=TS)
    for payload in (b"\x7f" * 10, good[R.HEADER_SIZE:-3]):  # garbage; records cut short
        bad = _reframe(good, payload, 0)
        for decode in _decoder_functions():
            with pytest.raises(CorruptRecordError, match="malformed records") as e:
                decode(bad, path="/d/0.log", base=500)
            assert e.value.position == 500 and "/d/0.log" in str(e.value)


def _decoder_functions():
    out = [R.decode_batch]
    try:
        R.decode_batch(R.build_batch([(b"k", b"v")], 0), fast=False)
        out.append(lambda *a, **kw: R.decode_batch(*a, fast=False, **kw))
    except TypeError:
        pass
    return out


def test_undecompressable_payload_is_corrupt():
    good = R.build_batch([(b"k", b"v")], 0)
    for codec in (1, 2, 3, 4):
        bad = _reframe(good, b"definitely not compressed data", codec)
        with pytest.raises(CorruptRecordError, match="cannot decompress"):
            R.decode_batch(bad, base=8)


def test_iteration_stops_at_a_partial_batch_and_never_copies():
    a = R.build_batch([(b"a", b"1")], 0)
    b = R.build_batch([(b"b", b"2"), (b"c", b"3")], 1)
    buf = a + b + b[:30]
    heads = list(R.iter_headers(memoryview(buf)))
    assert [p for p, _ in heads] == [0, len(a)]
    assert [r.value for r in R.decode_batches(buf)] == [b"1", b"2", b"3"]
    # a garbage length (smaller than a header) ends the iteration instead of looping
    junk = bytearray(a)
    struct.pack_into(">i", junk, 8, 3)
    assert list(R.iter_headers(bytes(junk) + b)) == []
