"""logstore/groups.py: Kafka's `__consumer_offsets` record layouts (checked against bytes built by
hand from Kafka's message JSON), group placement, and GroupOffsetStore over a real log dir,
including a writer process killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

import logstore
from logstore.errors import CorruptRecordError
from logstore.groups import (OFFSETS_TOPIC, GroupMetadataKey, GroupMetadataValue, GroupOffsetStore, MemberMetadata,
                             OffsetAndMetadata, OffsetCommitKey, decode_group_value, decode_key, decode_offset_value,
                             encode_group_key, encode_group_value, encode_offset_key, encode_offset_value,
                             java_string_hash, partition_for_group)


def s16(s: str | None) -> bytes:
    return struct.pack(">h", -1) if s is None else struct.pack(">h", len(s.encode())) + s.encode()


def cs(s: str | None) -> bytes:  # compact string, lengths < 127
    return b"\x00" if s is None else bytes([len(s.encode()) + 1]) + s.encode()


def test_java_hash_and_partition_match_kafka():
    # values of String.hashCode() from the JVM
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -2147483648  # Integer.MIN_VALUE
    assert partition_for_group("polygenelubricants", 50) == 0  # Kafka's Utils.abs(MIN_VALUE) = 0
    assert java_string_hash("é🙂") == (0xE9 * 31 + 0xD83D) * 31 + 0xDE42  # UTF-16 units, surrogate pair
    assert java_string_hash("ab") == 97 * 31 + 98
    assert partition_for_group("my-group", 50) == abs(java_string_hash("my-group")) % 50


def test_key_layouts():
    assert encode_offset_key("g", "t", 3) == struct.pack(">h", 1) + s16("g") + s16("t") + struct.pack(">i", 3)
    assert encode_group_key("grp") == struct.pack(">h", 2) + s16("grp")
    assert decode_key(struct.pack(">h", 0) + s16("g") + s16("t") + struct.pack(">i", 7)) == OffsetCommitKey("g", "t", 7)
    assert decode_key(encode_group_key("x")) == GroupMetadataKey("x")
    assert decode_key(struct.pack(">h", 11) + b"whatever") is None  # newer record types are skipped
    with pytest.raises(CorruptRecordError, match="truncated"):
        decode_key(struct.pack(">h", 1) + s16("g"))


def test_offset_value_layouts_all_versions():
    v3 = encode_offset_value(OffsetAndMetadata(100, "md", 1234, 5))
    assert v3 == struct.pack(">hqi", 3, 100, 5) + s16("md") + struct.pack(">q", 1234)
    v1 = encode_offset_value(OffsetAndMetadata(100, "", 1234, -1, 9999))
    assert v1 == struct.pack(">hq", 1, 100) + s16("") + struct.pack(">qq", 1234, 9999)
    v0 = struct.pack(">hq", 0, 7) + s16("m") + struct.pack(">q", 55)
    assert decode_offset_value(v0) == OffsetAndMetadata(7, "m", 55, -1, -1)
    v2 = struct.pack(">hq", 2, 7) + s16("m") + struct.pack(">q", 55)
    assert decode_offset_value(v2) == OffsetAndMetadata(7, "m", 55, -1, -1)
    # v4 is flexible: compact string and a tagged-field section (here one unknown tag, skipped)
    v4 = struct.pack(">hqi", 4, 8, 2) + cs("z") + struct.pack(">q", 66) + bytes([1, 0, 2]) + b"ab"
    assert decode_offset_value(v4) == OffsetAndMetadata(8, "z", 66, 2, -1)
    assert decode_offset_value(encode_offset_value(OffsetAndMetadata(9, "q", 1, 1), version=4)) == \
        OffsetAndMetadata(9, "q", 1, 1)
    with pytest.raises(CorruptRecordError, match="version 9"):
        decode_offset_value(struct.pack(">hq", 9, 1))


def test_group_value_layouts():
    m = MemberMetadata("m1", "cli", "/1.2.3.4", 10000, 300000, b"SUB", b"ASG", "inst")
    g = GroupMetadataValue("consumer", 4, "range", "m1", 777, (m,))
    v3 = encode_group_value(g)
    want = (struct.pack(">h", 3) + s16("consumer") + struct.pack(">i", 4) + s16("range") + s16("m1")
            + struct.pack(">q", 777) + struct.pack(">i", 1) + s16("m1") + s16("inst") + s16("cli") + s16("/1.2.3.4")
            + struct.pack(">ii", 300000, 10000) + struct.pack(">i", 3) + b"SUB" + struct.pack(">i", 3) + b"ASG")
    assert v3 == want
    assert decode_group_value(v3) == g
    v0 = (struct.pack(">h", 0) + s16("consumer") + struct.pack(">i", 1) + s16(None) + s16(None)
          + struct.pack(">i", 1) + s16("m") + s16("c") + s16("h") + struct.pack(">i", 6000)
          + struct.pack(">i", 0) + struct.pack(">i", 0))
    d = decode_group_value(v0)
    assert d.protocol is None and d.members[0].session_timeout == 6000 == d.members[0].rebalance_timeout
    assert decode_group_value(encode_group_value(g, version=4)) == g
    for v in (1, 2):
        back = decode_group_value(encode_group_value(g, version=v))
        assert back.members[0].group_instance_id is None and back.members[0].rebalance_timeout == 300000


def test_store_commit_fetch_reopen_and_tombstones(tmp_path):
    with logstore.open(str(tmp_path), background=False) as store:
        gos = GroupOffsetStore(store, 4)
        assert store.topic(OFFSETS_TOPIC).partitions == 4
        assert store.topic_config(OFFSETS_TOPIC).cleanup_policy == "compact"
        gos.commit("a", {("t", 0): 1, ("t", 1): OffsetAndMetadata(2, "x")})
        gos.commit("a", {("t", 0): 5})
        gos.commit("b", {("u", 0): 9})
        gos.delete_offsets("a", [("t", 1)])
        assert gos.fetch("a") == {("t", 0): gos.fetch("a")[("t", 0)]} and gos.committed("a", "t", 0) == 5
    with logstore.open(str(tmp_path), background=False) as store:
        gos = GroupOffsetStore(store, 50)  # an existing topic keeps its partition count
        assert gos.partitions == 4
        assert {tp: om.offset for tp, om in gos.fetch("a").items()} == {("t", 0): 5}
        assert gos.committed("b", "u", 0) == 9 and gos.groups() == ["a", "b"]
        assert gos.delete_group("b") == 1
        assert gos.remove_topic("t") == 1
    with logstore.open(str(tmp_path), background=False) as store:
        gos = GroupOffsetStore(store, 4)
        assert gos.groups() == []
        # every record of a group sits in its Kafka partition
        p = partition_for_group("a", 4)
        recs = store.partition(OFFSETS_TOPIC, p).read(0)
        assert recs and all(isinstance(decode_key(r.key), (OffsetCommitKey, GroupMetadataKey)) for r in recs)
        assert all(decode_key(r.key).group == "a" for r in recs)


def test_expire(tmp_path):
    with logstore.open(str(tmp_path), background=False) as store:
        gos = GroupOffsetStore(store, 1)
        gos.commit("a", {("t", 0): OffsetAndMetadata(1, commit_timestamp=1000)})
        gos.commit("a", {("t", 1): OffsetAndMetadata(1, commit_timestamp=5000)})
        gos.commit("b", {("t", 0): OffsetAndMetadata(1, commit_timestamp=1000, expire_timestamp=2000)})
        assert gos.expire(3000, 10_000) == {"b": [("t", 0)]}
        assert gos.expire(12_000, 10_000) == {"a": [("t", 0)]}
        assert gos.expire(12_000, 10_000, eligible=lambda g: None) == {}
        assert gos.expire(12_000, 10_000, eligible=lambda g: 1500) == {"a": [("t", 1)]}


def test_corrupt_value_names_where(tmp_path):
    with logstore.open(str(tmp_path), background=False) as store:
        GroupOffsetStore(store, 1)
        store.partition(OFFSETS_TOPIC, 0).append([(encode_offset_key("g", "t", 0), b"\x00\x03\x00")])
    with logstore.open(str(tmp_path), background=False) as store:
        with pytest.raises(CorruptRecordError, match=r"__consumer_offsets-0 offset 0 value: truncated"):
            GroupOffsetStore(store, 1)


WRITER = textwrap.dedent("""
    import sys, logstore
    from logstore.groups import GroupOffsetStore
    store = logstore.open(sys.argv[1])
    gos = GroupOffsetStore(store, 3)
    i = 0
    while True:
        i += 1
        gos.commit("crash-group", {("t", i % 4): i})
        print(i, flush=True)
""")


def test_commits_survive_sigkill_of_the_writer(tmp_path):
    d = str(tmp_path / "data")
    with logstore.open(d, background=False) as store:
        store.create_topic("t", 4)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, d], stdout=subprocess.PIPE, text=True)
    acked = 0
    deadline = time.monotonic() + 30
    try:
        while acked < 2000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert acked >= 2000
    with logstore.open(d, background=False) as store:
        gos = GroupOffsetStore(store, 3)
        got = {p: gos.committed("crash-group", "t", p) for p in range(4)}
    # every commit acknowledged before the kill is there (a later one may be too)
    for p in range(4):
        last_acked = max(i for i in range(acked - 3, acked + 1) if i % 4 == p)
        assert got[p] >= last_acked


def test_one_offset_store_per_log_store(tmp_path):
    with logstore.open(str(tmp_path / "a"), background=False) as a, \
            logstore.open(str(tmp_path / "b"), background=False) as b:
        first = GroupOffsetStore.of(a, 2)
        assert GroupOffsetStore.of(a) is first and GroupOffsetStore.of(b, 2) is not first
        first.commit("g", {("t", 0): 3})
        assert GroupOffsetStore.of(a).committed("g", "t", 0) == 3
    with logstore.open(str(tmp_path / "a"), background=False) as a:
        again = GroupOffsetStore.of(a, 2)
        assert again is not first and again.committed("g", "t", 0) == 3


def test_compaction_of_the_offsets_topic_keeps_the_latest_state(tmp_path):
    """Our own cleaner compacts __consumer_offsets: after it, a replay gives the same view, from
    far fewer records; a deleted group's tombstones go once delete.retention.ms has passed."""
    with logstore.open(str(tmp_path), background=False) as store:
        gos = GroupOffsetStore(store, 1)
        for i in range(300):
            gos.commit("busy", {("t", i % 3): i})
        gos.commit("gone", {("t", 0): 1})
        gos.store_group("busy", GroupMetadataValue("consumer", 7, "range", None, 1, ()))
        gos.delete_group("gone")
        before = {tp: om.offset for tp, om in gos.fetch("busy").items()}
        lg = store.partition(OFFSETS_TOPIC, 0)
        lg.roll()
        gos.commit("busy", {("t", 9): 9})  # the active segment is not cleaned
        stats = store.run_cleaner(now_ms=int(time.time() * 1000))
        assert stats, "the cleaner did not pick __consumer_offsets"
        kept = len(lg.read(lg.log_start_offset, 1 << 24))
        assert kept < 20
        later = int(time.time() * 1000) + store.topic_config(OFFSETS_TOPIC).delete_retention_ms + 1
        store.run_cleaner(now_ms=later)
    with logstore.open(str(tmp_path), background=False) as store:
        gos = GroupOffsetStore(store, 1)
        assert {tp: om.offset for tp, om in gos.fetch("busy").items()} == {**before, ("t", 9): 9}
        assert gos.group_metadata("busy").generation == 7
        assert gos.groups() == ["busy"]
        assert gos.loaded_records < 20
        keys = [decode_key(r.key) for r in store.partition(OFFSETS_TOPIC, 0).read(0, 1 << 24)]
        assert all(k.group == "busy" for k in keys)  # the tombstones of "gone" were dropped


from hypothesis import given, settings, strategies as st  # noqa: E402

_text = st.text(max_size=40)
_i32 = st.integers(-(2**31), 2**31 - 1)
_i64 = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=200, deadline=None)
@given(offset=_i64, metadata=_text, ts=_i64, epoch=_i32, version=st.sampled_from([0, 2, 3, 4]))
def test_offset_value_roundtrip(offset, metadata, ts, epoch, version):
    om = OffsetAndMetadata(offset, metadata, ts, epoch if version >= 3 else -1)
    assert decode_offset_value(encode_offset_value(om, version)) == om


@settings(max_examples=100, deadline=None)
@given(group=_text, topic=_text, partition=_i32)
def test_offset_key_roundtrip(group, topic, partition):
    assert decode_key(encode_offset_key(group, topic, partition)) == OffsetCommitKey(group, topic, partition)
    assert decode_key(encode_group_key(group)) == GroupMetadataKey(group)


_member = st.builds(MemberMetadata, _text, _text, _text, _i32, _i32, st.binary(max_size=300),
                    st.binary(max_size=300), st.none() | _text)


@settings(max_examples=100, deadline=None)
@given(ptype=_text, gen=_i32, proto=st.none() | _text, leader=st.none() | _text, ts=_i64,
       members=st.lists(_member, max_size=4), version=st.sampled_from([3, 4]))
def test_group_value_roundtrip(ptype, gen, proto, leader, ts, members, version):
    g = GroupMetadataValue(ptype, gen, proto, leader, ts, tuple(members))
    assert decode_group_value(encode_group_value(g, version)) == g


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64))
def test_garbage_values_raise_corrupt_record_not_crash(data):
    for fn in (decode_offset_value, decode_group_value, decode_key):
        try:
            fn(data)
        except CorruptRecordError:
            pass
