"""Log compaction (logstore/cleaner.py): the key map, cleaning rules, the dict model, memory."""

from __future__ import annotations

import os
import random
import tempfile
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
from logstore import checkpoint as ckpt
from logstore import records as R
from logstore.cleaner import IO_CHUNK, OffsetMap, hash_keys
from logstore.errors import InvalidRecordError

NOW = int(time.time() * 1000)


def read_all(lg) -> list:
    return list(lg.iter_records())


def compacted(store, name="c", **cfg):
    conf = {"cleanup.policy": "compact", "segment.bytes": "2000", "min.cleanable.dirty.ratio": "0",
            "delete.retention.ms": "1000"}
    conf.update({k.replace("_", "."): str(v) for k, v in cfg.items()})
    store.create_topic(name, 1, conf)
    return store.partition(name, 0)


def check_index_agrees(lg, recs) -> None:
    """Reading from each kept offset (and from each hole) starts at the right record."""
    offsets = [r.offset for r in recs]
    for i, r in enumerate(recs):
        got = lg.read(r.offset, 1)
        assert got and got[0].offset == r.offset, (r.offset, got[:1])
        if i and offsets[i - 1] + 1 < r.offset:  # a hole: reading it gives the next record
            got = lg.read(offsets[i - 1] + 1, 1)
            assert got[0].offset == r.offset


# -------------------------------------------------------------------------- OffsetMap

def test_offset_map_matches_a_dict_and_stays_in_its_buffer():
    rng = random.Random(7)
    m = OffsetMap(24 * 1000)
    assert m.nbytes <= 24 * 1000 and m.capacity == int(m.slots * 0.9)
    model: dict[bytes, int] = {}
    off = 0
    for _ in range(20):
        keys = [b"k%d" % rng.randrange(800) for _ in range(rng.randrange(1, 200))]
        h1, h2 = hash_keys(keys)
        offs = np.arange(off, off + len(keys), dtype=np.int64)
        took = m.put_many(h1, h2, offs)
        for k, o in zip(keys[:took], offs[:took]):
            model[k] = int(o)
        off += len(keys)
        assert m.size == len(model) <= m.capacity
        if took < len(keys):
            # a prefix went in, and the next key was a new one that did not fit
            assert keys[took] not in model and m.size == m.capacity
            assert m.latest_offset == int(offs[took - 1]) if took else True
            break
    probe = list(model) + [b"absent-%d" % i for i in range(100)]
    got = m.get_many(*hash_keys(probe))
    assert got.tolist() == [model.get(k, -1) for k in probe]


def test_offset_map_stops_at_capacity_and_clear_empties_it():
    m = OffsetMap(1024)
    keys = [b"key-%d" % i for i in range(100)]
    took = m.put_many(*hash_keys(keys), np.arange(100, dtype=np.int64))
    assert took == m.capacity == m.size < 100
    assert m.latest_offset == took - 1
    m.clear()
    assert m.size == 0 and (m.get_many(*hash_keys(keys)) == -1).all()


def test_offset_map_refuses_a_buffer_too_small():
    with pytest.raises(ValueError, match="dedupe buffer"):
        OffsetMap(50)


# -------------------------------------------------------------------------- cleaning

def test_compaction_keeps_the_newest_value_offsets_and_timestamps(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        lg = compacted(s)
        written = {}
        for i in range(600):
            k = b"k%d" % (i % 37)
            off = lg.append([(k, b"v%d" % i, [("h", b"x")], NOW + i)])
            written[off] = (k, b"v%d" % i, NOW + i)
        before = read_all(lg)
        stats = s.run_cleaner()
        assert stats and stats[0].records_kept < stats[0].records_read
        after = read_all(lg)
        latest = {}
        for off, (k, v, ts) in written.items():
            latest[k] = off
        active_base = lg.active_segment.base_offset
        cleaned = [r for r in after if r.offset < active_base]
        # in the cleaned part every key appears once, at its newest offset below the active segment
        assert len({r.key for r in cleaned}) == len(cleaned)
        for r in after:
            k, v, ts = written[r.offset]
            assert (r.key, r.value, r.timestamp, r.headers) == (k, v, ts, (("h", b"x"),))
        for r in cleaned:
            assert r.offset == max(o for o, (k, _, _) in written.items() if k == r.key and o < active_base)
        assert {r.key: r.value for r in after} == {r.key: r.value for r in before}
        assert [r.offset for r in after] == sorted({r.offset for r in after})
        assert after[-1].offset == before[-1].offset and lg.log_end_offset == 600
        check_index_agrees(lg, after)
    with logstore.open(tmp_path / "d", background=False) as s:
        lg = s.partition("c", 0)
        assert read_all(lg) == after
        assert ckpt.read_checkpoint(str(tmp_path / "d" / ckpt.CLEANER_OFFSET_FILE)) == {("c", 0): active_base}


def test_tombstones_stay_for_delete_retention_ms_then_go(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        lg = compacted(s, delete_retention_ms=5000)
        for i in range(50):
            lg.append([(b"k%d" % i, b"v" * 20, (), NOW)])
        for i in range(0, 50, 2):
            lg.append([(b"k%d" % i, None, (), NOW)])
        lg.roll()
        s.run_cleaner(now_ms=NOW)
        recs = read_all(lg)
        tombs = [r for r in recs if r.value is None]
        assert len(tombs) == 25 and len(recs) == 50  # 25 live values + 25 tombstones
        s.run_cleaner(now_ms=NOW + 4999)  # before the horizon: nothing to do, nothing dropped
        assert read_all(lg) == recs
        stats = s.run_cleaner(now_ms=NOW + 5000)  # horizon reached: a cleaning runs for it alone
        assert stats and sum(x.tombstones_dropped for x in stats) == 25
        recs = read_all(lg)
        assert sorted(r.key for r in recs) == sorted(b"k%d" % i for i in range(1, 50, 2))
        assert all(r.value == b"v" * 20 for r in recs)


def test_tombstone_horizon_survives_a_restart(tmp_path):
    d = tmp_path / "d"
    with logstore.open(d, background=False) as s:
        lg = compacted(s, delete_retention_ms=1000)
        lg.append([(b"a", b"1", (), NOW), (b"b", b"2", (), NOW)])
        lg.append([(b"a", None, (), NOW)])
        lg.roll()
        s.run_cleaner(now_ms=NOW)
        assert [r.value for r in read_all(lg)] == [b"2", None]
    with logstore.open(d, background=False) as s:
        lg = s.partition("c", 0)
        assert s.run_cleaner(now_ms=NOW + 500) == []
        s.run_cleaner(now_ms=NOW + 1000)
        assert [(r.key, r.value) for r in read_all(lg)] == [(b"b", b"2")]


def test_min_compaction_lag_leaves_young_segments_alone(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        lg = compacted(s, min_compaction_lag_ms=60_000)
        for i in range(100):
            lg.append([(b"k%d" % (i % 5), b"old%d" % i, (), NOW - 120_000)])
        lg.roll()
        young_start = lg.log_end_offset
        for i in range(100):
            lg.append([(b"k%d" % (i % 5), b"new%d" % i, (), NOW)])
        lg.roll()
        s.run_cleaner(now_ms=NOW)
        recs = read_all(lg)
        old = [r for r in recs if r.offset < young_start]
        young = [r for r in recs if r.offset >= young_start]
        assert len(old) == 5 and len(young) == 100  # the young ones are all still there
        s.run_cleaner(now_ms=NOW + 61_000)
        recs = read_all(lg)
        assert len(recs) == 5 and all(r.value.startswith(b"new") for r in recs)


def test_min_cleanable_dirty_ratio_decides_whether_to_clean(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        lg = compacted(s, min_cleanable_dirty_ratio=0.5)
        for i in range(200):
            lg.append([(b"k%d" % i, b"x" * 30, (), NOW)])
        lg.roll()
        assert len(s.run_cleaner(now_ms=NOW)) == 1  # never cleaned: everything is dirty
        size_clean = lg.size
        for i in range(20):  # a little new dirt: about 10% of the log
            lg.append([(b"k%d" % i, b"y" * 30, (), NOW)])
        lg.roll()
        c = s.log_cleaner.cleanable(lg, NOW)
        assert 0 < c.ratio < 0.5
        assert s.run_cleaner(now_ms=NOW) == []
        s.alter_topic_config("c", {"min.cleanable.dirty.ratio": "0.05"})  # applies without restart
        assert len(s.run_cleaner(now_ms=NOW)) == 1
        assert lg.size <= size_clean + 200


def test_max_compaction_lag_forces_a_cleaning(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        lg = compacted(s, min_cleanable_dirty_ratio=1.0, max_compaction_lag_ms=1000)
        for i in range(50):
            lg.append([(b"k", b"%d" % i, (), NOW)])
        lg.roll()
        assert s.run_cleaner(now_ms=NOW + 500) == []
        assert len(s.run_cleaner(now_ms=NOW + 1500)) == 1
        assert [r.value for r in read_all(lg)] == [b"49"]


def test_small_cleaned_segments_are_grouped(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        lg = compacted(s, segment_bytes=3000)
        for i in range(400):
            lg.append([(b"k%d" % (i % 10), b"v" * 40, (), NOW)])
        lg.roll()
        n_before = len(lg.segments)
        s.run_cleaner(now_ms=NOW)
        n_cleaned = len(lg.segments)  # one small cleaned segment per old one (their old sizes filled a group)
        for i in range(10):  # a little dirt, so a second cleaning rewrites the small segments
            lg.append([(b"k%d" % (i % 10), b"w" * 40, (), NOW)])
        lg.roll()
        s.run_cleaner(now_ms=NOW)
        assert n_before == n_cleaned > 10 and len(lg.segments) <= 3, (n_before, n_cleaned, len(lg.segments))
        recs = read_all(lg)
        assert sorted(r.key for r in recs) == sorted(b"k%d" % i for i in range(10))
        assert all(r.value == b"w" * 40 for r in recs)
        check_index_agrees(lg, recs)
        names = os.listdir(lg.dir)
        assert not [n for n in names if n.endswith((".cleaned", ".swap"))]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_are_recompressed_with_their_codec(tmp_path, codec):
    with logstore.open(tmp_path / "d", background=False) as s:
        lg = compacted(s, segment_bytes=100_000)
        for j in range(20):
            lg.append([(b"k%d" % (i % 7), b"%d-%d" % (j, i), (), NOW + i) for i in range(30)],
                      compression=codec)
        lg.append([(b"k0", None, (), NOW)], compression=codec)
        lg.roll()
        s.run_cleaner(now_ms=NOW)
        recs = read_all(lg)
        assert {r.key: r.value for r in recs} == {b"k0": None, **{b"k%d" % i: b"19-%d" % (i + 28 if i < 2 else i + 21)
                                                                   for i in range(1, 7)}}
        seg = lg.segments.peekitem(0)[1]
        for _p, h, data in seg.iter_batches():
            assert h.compression == R.COMPRESSION_CODES[codec]
            R.validate_batch(data)


def test_keyless_records_are_refused_in_a_compacted_topic_and_dropped_when_it_becomes_one(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": "1000", "min.cleanable.dirty.ratio": "0"})
        lg = s.partition("t", 0)
        for i in range(40):
            lg.append([(None if i % 2 else b"k%d" % (i % 4), b"v%d" % i, (), NOW)])
        lg.roll()
        assert s.run_cleaner(now_ms=NOW) == []  # not compacted
        s.alter_topic_config("t", {"cleanup.policy": "compact"})
        with pytest.raises(InvalidRecordError, match="key"):
            lg.append([(None, b"x")])
        s.run_cleaner(now_ms=NOW)
        recs = read_all(lg)
        assert sorted((r.key, r.value) for r in recs) == [(b"k0", b"v36"), (b"k2", b"v38")]


def test_compact_and_delete_both_apply(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        lg = compacted(s, cleanup_policy="compact,delete", retention_ms=10_000, segment_bytes=1500)
        for i in range(100):
            lg.append([(b"k%d" % (i % 3), b"old", (), NOW - 60_000)])
        for i in range(100):
            lg.append([(b"n%d" % (i % 3), b"new", (), NOW)])
        lg.roll()
        s.run_cleaner(now_ms=NOW)
        res = s.run_retention(now_ms=NOW)
        assert res.segments_deleted >= 1
        recs = read_all(lg)
        assert {r.key for r in recs} == {b"n0", b"n1", b"n2"}


def test_background_cleaner_compacts_without_being_asked(tmp_path):
    with logstore.open(tmp_path / "d", {"log.cleaner.backoff.ms": 50}) as s:
        lg = compacted(s)
        for i in range(300):
            lg.append([(b"k%d" % (i % 5), b"v%d" % i, (), NOW)])
        lg.roll()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(read_all(lg)) > 5:
            time.sleep(0.05)
        assert sorted(r.value for r in read_all(lg)) == sorted(b"v%d" % i for i in range(295, 300))
    assert (tmp_path / "d" / ckpt.CLEANER_OFFSET_FILE).exists()


def test_cleaner_disabled_runs_nothing_in_the_background(tmp_path):
    with logstore.open(tmp_path / "d", {"log.cleaner.enable": "false", "log.cleaner.backoff.ms": 10}) as s:
        lg = compacted(s)
        for i in range(200):
            lg.append([(b"k", b"v%d" % i, (), NOW)])
        lg.roll()
        time.sleep(0.5)
        assert len(read_all(lg)) == 200
        s.run_cleaner()  # on demand still works
        assert len(read_all(lg)) == 1


def test_corrupt_batch_makes_the_partition_uncleanable_and_names_the_file(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        lg = compacted(s, segment_bytes=100_000)
        for i in range(50):
            lg.append([(b"k%d" % (i % 3), b"v" * 50, (), NOW)])
        lg.roll()
        seg = lg.segments.peekitem(0)[1]
        with open(seg.log_path, "r+b") as f:
            f.seek(seg.size // 2 + 30)  # inside a batch, where the CRC covers it
            f.write(b"\xff\xff\xff")
        before = os.listdir(lg.dir)
        assert s.run_cleaner(now_ms=NOW) == []
        why = s.log_cleaner.uncleanable[("c", 0)]
        assert seg.log_path in why and "CRC" in why
        assert os.listdir(lg.dir) == before  # no .cleaned file left behind
        assert s.run_cleaner(now_ms=NOW) == []  # not retried until the store reopens


def test_memory_stays_within_the_dedupe_buffer(tmp_path):
    buffer = 128 * 1024  # ~4,900 entries; the log has 15,000 keys
    with logstore.open(tmp_path / "d", {"log.cleaner.dedupe.buffer.size": buffer}, background=False) as s:
        lg = compacted(s, segment_bytes=1 << 20)
        rng = random.Random(3)
        for j in range(60):
            lg.append([(b"key-%06d" % rng.randrange(15_000), b"v" * 40, (), NOW) for _ in range(500)])
        lg.roll()
        s.log_cleaner.offset_map()  # allocated once, outside the measurement like Kafka's buffer
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        stats = s.run_cleaner(now_ms=NOW)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        m = s.log_cleaner.offset_map()
        working = peak - base
        print(f"\ncleaner: {len(stats)} passes, map {m.nbytes} B (buffer {buffer} B), "
              f"peak extra traced memory {working / 1024:.0f} KiB with a {IO_CHUNK // 1024} KiB I/O chunk")
        assert len(stats) >= 3 and all(x.map_full for x in stats[:-1])
        assert m.nbytes <= buffer
        # beyond the map: the read chunk, its decoded records and the write buffer, whatever the key count
        assert working < 12 * IO_CHUNK
        recs = read_all(lg)
        assert len({r.key for r in recs}) == len(recs)


# -------------------------------------------------------------------------- model (hypothesis)

KEYS = st.integers(min_value=0, max_value=59)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.lists(st.tuples(KEYS, st.booleans()), min_size=1, max_size=6)),
        st.tuples(st.just("roll"), st.none()),
        st.tuples(st.just("clean"), st.integers(min_value=0, max_value=3000)),
    ),
    min_size=1, max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, codec=st.sampled_from(["none", "lz4"]))
def test_compaction_agrees_with_a_dict_model(ops, codec):
    retention = 1000
    with tempfile.TemporaryDirectory() as d:
        s = logstore.open(d, {"log.cleaner.dedupe.buffer.size": 1024}, background=False)  # 38 keys a pass
        try:
            lg = compacted(s, segment_bytes=400, delete_retention_ms=retention)
            now = NOW
            history: dict[int, tuple] = {}
            model: dict[bytes, int] = {}  # key → newest offset
            seq = 0

            def check() -> None:
                recs = read_all(lg)
                offs = [r.offset for r in recs]
                assert offs == sorted(set(offs)), "offsets only increase"
                for r in recs:
                    assert history[r.offset] == (r.key, r.value, r.timestamp), "a record changed"
                by_key: dict = {}
                for r in recs:
                    by_key.setdefault(r.key, []).append(r.offset)
                for k, newest in model.items():
                    if k in by_key:
                        assert by_key[k][-1] == newest, f"key {k!r} lost its newest record"
                    else:
                        assert history[newest][1] is None, f"live key {k!r} vanished"
                first_dirty = s.log_cleaner.checkpoints.get(("c", 0), 0)
                for k, o in by_key.items():  # the cleaned part holds each key at most once
                    assert len([x for x in o if x < first_dirty]) <= 1, f"key {k!r} twice below {first_dirty}"

            for op, arg in ops:
                if op == "put":
                    recs = []
                    for k, tomb in arg:
                        key = b"k%d" % k
                        val = None if tomb else b"v%d" % seq
                        seq += 1
                        recs.append((key, val, (), now))
                    first = lg.append(recs, compression=codec)
                    for i, (key, val, _, ts) in enumerate(recs):
                        history[first + i] = (key, val, ts)
                        model[key] = first + i
                elif op == "roll":
                    lg.roll()
                else:
                    now += arg
                    s.run_cleaner(now_ms=now)
                    check()
            # everything sealed, cleaned, then cleaned again after the tombstones' horizon
            lg.roll()
            s.run_cleaner(now_ms=now)
            check()
            s.run_cleaner(now_ms=now + retention)
            check()
            recs = read_all(lg)
            live = {k: history[o][1] for k, o in model.items() if history[o][1] is not None}
            assert {r.key: r.value for r in recs} == live and len(recs) == len(live), "tombstones vanish"
        finally:
            s.close()


def test_a_deleted_topic_forgets_its_cleaner_checkpoint(tmp_path):
    d = tmp_path / "d"
    with logstore.open(d, background=False) as s:
        lg = compacted(s)
        for i in range(100):
            lg.append([(b"k%d" % (i % 3), b"v", (), NOW)])
        lg.roll()
        s.run_cleaner(now_ms=NOW)
        path = str(d / ckpt.CLEANER_OFFSET_FILE)
        assert ckpt.read_checkpoint(path) == {("c", 0): 100}
        s.delete_topic("c")
        assert ckpt.read_checkpoint(path) == {}
        lg = compacted(s)  # same name, new topic: all of it is dirty
        for i in range(100):
            lg.append([(b"k%d" % (i % 3), b"w", (), NOW)])
        lg.roll()
        assert s.log_cleaner.cleanable(lg, NOW).first_dirty == 0
        s.run_cleaner(now_ms=NOW)
        assert len(read_all(lg)) == 3


# -------------------------------------------------------------------------- vectorised decoding

RECORD = st.tuples(
    st.one_of(st.none(), st.binary(max_size=8), st.binary(min_size=60, max_size=90)),  # keys short and long
    st.one_of(st.none(), st.binary(max_size=300)),
    st.lists(st.tuples(st.text(max_size=3), st.one_of(st.none(), st.binary(max_size=4))), max_size=2),
    st.integers(min_value=-(1 << 40), max_value=1 << 40),  # timestamp deltas of 1 to 6 varint bytes
)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.tuples(st.lists(RECORD, min_size=1, max_size=12), st.sampled_from(["none", "zstd"]),
                                  st.integers(min_value=0, max_value=1 << 20)), min_size=1, max_size=4))
def test_chunk_decoding_agrees_with_the_codec(batches):
    from logstore.cleaner import ChunkRecords
    data = bytearray()
    base = 0
    expect = []
    for recs, codec, gap in batches:
        raw = [(k, v, h, NOW + ts) for k, v, h, ts in recs]
        b = bytearray(R.build_batch(raw, base_offset=base, compression=codec))
        expect.extend(R.decode_batch(b))
        data += b
        base += len(recs) + gap
    hs = [(p, h) for p, h in R.iter_headers(bytes(data))]
    c = ChunkRecords(bytes(data), hs, "test.log", 0)
    assert c.n == len(expect)
    assert c.offset.tolist() == [r.offset for r in expect]
    assert c.tomb.tolist() == [r.value is None for r in expect]
    assert c.keyed.tolist() == [r.key is not None for r in expect]
    bases = np.repeat([h.base_timestamp for _p, h in hs], c.count)
    assert (bases + c.ts_delta).tolist() == [r.timestamp for r in expect]
    keys = [r.key for r in expect if r.key is not None]
    h1, h2 = hash_keys(keys)
    assert c.h1.tolist() == h1.tolist() and c.h2.tolist() == h2.tolist()
    from logstore.cleaner import _batch_bytes
    for bi, (_p, h) in enumerate(hs):  # each batch's record bytes make the same batch again
        i0, n = c.first[bi], c.count[bi]
        payload = b"".join(c.record_bytes(i) for i in range(i0, i0 + n))
        again = _batch_bytes(h, h.attributes & ~7, h.base_timestamp, h.max_timestamp, n, payload)
        assert R.decode_batch(again) == R.decode_batch(bytes(data), _p)


def test_digests_are_equal_for_equal_keys_and_differ_otherwise():
    keys = [b"", b"a", b"a" * 8, b"a" * 9, b"\x00", b"\x00\x00"] + [b"k%d" % i for i in range(20_000)] \
        + [bytes([i]) * 70 for i in range(50)]
    h1, h2 = hash_keys(keys)
    pairs = set(zip(h1.tolist(), h2.tolist()))
    assert len(pairs) == len(keys)
    again = hash_keys(list(reversed(keys)))
    assert again[0].tolist()[::-1] == h1.tolist() and again[1].tolist()[::-1] == h2.tolist()


def test_offset_map_tells_apart_digests_that_share_their_first_half():
    m = OffsetMap(24 * 100)
    h1 = np.array([5, 5, 5, 7, 5], dtype=np.uint64)
    h2 = np.array([1, 2, 1, 1, 3], dtype=np.uint64)
    assert m.put_many(h1, h2, np.arange(10, 15, dtype=np.int64)) == 5
    assert m.size == 4
    got = m.get_many(np.array([5, 5, 5, 7, 7], dtype=np.uint64), np.array([1, 2, 3, 1, 2], dtype=np.uint64))
    assert got.tolist() == [12, 11, 14, 13, -1]


def test_retention_deleting_segments_mid_cleaning_aborts_that_swap_only(tmp_path):
    with logstore.open(tmp_path / "d", background=False) as s:
        lg = compacted(s, cleanup_policy="compact,delete", retention_ms=60_000, segment_bytes=1500,
                       file_delete_delay_ms=0)
        for i in range(60):
            lg.append([(b"old%d" % (i % 4), b"x" * 30, (), NOW - 3_600_000)])
        for i in range(60):
            lg.append([(b"new%d" % (i % 4), b"y" * 30, (), NOW)])
        lg.roll()
        ran = []

        def hook(name: str) -> None:
            if name.startswith("cleaned:") and not ran:
                ran.append(s.run_retention(now_ms=NOW))  # deletes the group being cleaned

        s.log_cleaner.step_hook = hook
        stats = s.run_cleaner(now_ms=NOW)
        # the swap of the deleted group is refused; reading a later deleted one ends the pass
        assert ran[0].by_time > 0 and all(x.groups_aborted for x in stats)
        assert s.log_cleaner.uncleanable == {}  # a race, not corruption
        assert not [n for n in os.listdir(lg.dir) if n.endswith((".cleaned", ".swap"))]
        assert ("c", 0) not in s.log_cleaner.checkpoints  # this range is cleaned again next time
        s.log_cleaner.step_hook = None
        s.run_cleaner(now_ms=NOW)
        recs = read_all(lg)
        keys = [r.key for r in recs]
        assert len(keys) == len(set(keys)) and {b"new0", b"new1", b"new2", b"new3"} <= set(keys)
        assert all(r.value == (b"y" if r.key.startswith(b"new") else b"x") * 30 for r in recs)


def test_sealed_segments_not_yet_flushed_are_not_cleaned(tmp_path):
    """A roll with a flusher leaves its segment's fsync to a later flush. Until then the segment's
    newer records of a key could be lost to a power cut, so they must not make the cleaner drop
    the older, flushed ones."""
    with logstore.open(tmp_path / "d", background=False) as s:
        lg = compacted(s)
        for i in range(20):
            lg.append([(b"k%d" % (i % 5), b"old%d" % i, (), NOW)])
        lg.roll()  # no flusher yet: fsynced
        queued = []
        lg.roll_flusher = lambda log, offset: queued.append(offset)
        for i in range(20):
            lg.append([(b"k%d" % (i % 5), b"new%d" % i, (), NOW)])
        lg.roll()
        assert queued and lg.recovery_point <= 20
        c = s.log_cleaner.cleanable(lg, NOW)
        assert c.first_uncleanable == 20  # the unflushed sealed segment [20, 40) is left alone
        s.run_cleaner(now_ms=NOW)
        assert {r.value for r in lg.read(20, 1 << 20)} >= {b"new%d" % i for i in range(20)}
        assert {r.key for r in lg.read(0, 1 << 20) if r.offset < 20} == {b"k%d" % i for i in range(5)}
        lg.flush(queued[-1])  # the scheduled flush: now the older records may go
        assert s.log_cleaner.cleanable(lg, NOW).first_uncleanable == 40
        s.run_cleaner(now_ms=NOW)
        assert sorted(r.value for r in lg.read(0, 1 << 20)) == sorted(b"new%d" % i for i in range(15, 20))


def test_cleaning_loads_producer_state_only_for_partitions_with_idempotent_batches(tmp_path):
    """Loading a partition's producer state replays batch headers under its lock (appends wait):
    a cleaning pays it only when it meets a batch with a producer id."""
    d = tmp_path / "d"
    with logstore.open(d, background=False) as s:
        for name in ("plain", "idem"):
            lg = compacted(s, name)
            for i in range(60):
                pid = {"producer_id": 42, "producer_epoch": 0, "base_sequence": i} if name == "idem" else {}
                lg.append_batch(R.build_batch([(b"k%d" % (i % 3), b"v" * 40)], timestamp=NOW, **pid))
            lg.roll()
    with logstore.open(d, background=False) as s:  # reopened: no producer state loaded yet
        plain, idem = s.partition("plain", 0), s.partition("idem", 0)
        assert not plain.producer_state.loaded and not idem.producer_state.loaded
        stats = s.run_cleaner(now_ms=NOW)
        cleaned = {st.topic: st for st in stats}
        assert all(cleaned[t].records_kept < cleaned[t].records_read for t in ("plain", "idem"))
        assert not plain.producer_state.loaded
        assert idem.producer_state.loaded
        # the producer's last batch (offset 59) stays, so a retry of it is still a duplicate
        assert 59 in {r.offset for r in read_all(idem)}
