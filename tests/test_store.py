"""A log dir (logstore/store.py): the lock, config and topic-name validation, topic metadata across
reopens, clean versus unclean opens (what recovery scans), damaged checkpoints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

import logstore
from logstore import checkpoint as ckpt
from logstore.errors import (InvalidConfigError, InvalidPartitionsError, InvalidTopicError, LogDirLockedError,
                             OffsetOutOfRangeError, TopicAlreadyExistsError, UnknownTopicOrPartitionError)
from logstore.store import CLEAN_SHUTDOWN_FILE

PY = sys.executable


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_embedded_api(tmp_path):
    with logstore.open(str(tmp_path / "d"), background=False) as store:
        store.create_topic("events", partitions=3, config={"segment.bytes": 1 << 20})
        assert store.topics() == ["events"]
        lg = store.partition("events", 0)
        first = lg.append([(b"key", b"value"), (None, b"v2", [("h", b"x")])])
        assert first == 0
        assert [(r.offset, r.key, r.value, r.headers) for r in lg.read(0)] == [
            (0, b"key", b"value", ()), (1, None, b"v2", (("h", b"x"),))]
        assert (lg.log_start_offset, lg.log_end_offset) == (0, 2)
        assert lg.offset_for_timestamp(0) == (0, lg.read(0)[0].timestamp)
        with pytest.raises(UnknownTopicOrPartitionError, match="has no partition 3"):
            store.partition("events", 3)
        with pytest.raises(UnknownTopicOrPartitionError, match="unknown topic 'nope'"):
            store.partition("nope", 0)
    assert store.closed


def test_second_open_in_the_same_process_fails_at_once(tmp_path):
    d = str(tmp_path / "d")
    s = logstore.open(d, background=False)
    with pytest.raises(LogDirLockedError, match=f"log dir {d} is already open .*pid {os.getpid()}"):
        logstore.open(d, background=False)
    s.close()
    logstore.open(d, background=False).close()  # released by close


def test_second_open_from_another_process_fails_at_once(tmp_path):
    d = str(tmp_path / "d")
    s = logstore.open(d, background=False)
    code = ("import logstore, sys\n"
            "try:\n    logstore.open(sys.argv[1])\n"
            "except logstore.LogDirLockedError as e:\n    print(e); sys.exit(3)\n")
    t0 = time.monotonic()
    p = subprocess.run([PY, "-c", code, d], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    assert p.returncode == 3, p.stderr
    assert "already open in another process" in p.stdout and d in p.stdout and str(os.getpid()) in p.stdout
    assert took < 20  # "at once": no waiting on the lock (the bound is the interpreter's start-up)
    s.close()
    p = subprocess.run([PY, "-c", code + "print('opened')\n", d], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "opened" in p.stdout


def test_unknown_and_bad_config_names_the_key(tmp_path, store):
    with pytest.raises(InvalidConfigError, match="unknown store config 'log.bogus'"):
        logstore.open(str(tmp_path / "x"), {"log.bogus": 1})
    with pytest.raises(InvalidConfigError, match="unknown topic config 'segment.byte'"):
        store.create_topic("t", 1, {"segment.byte": 100})
    with pytest.raises(InvalidConfigError, match="'retention.ms'.*expected an integer"):
        store.create_topic("t", 1, {"retention.ms": "soon"})
    assert store.topics() == []
    store.create_topic("t", 1)
    with pytest.raises(InvalidConfigError, match="unknown topic config 'flush.mesages'"):
        store.alter_topic_config("t", {"flush.mesages": 1})
    with pytest.raises(InvalidConfigError, match="unknown topic config 'nope'"):
        store.alter_topic_config("t", delete=["nope"])
    with pytest.raises(InvalidConfigError, match="'cleanup.policy'"):
        store.set_topic_config("t", {"cleanup.policy": "shred"})


@pytest.mark.parametrize("name,why", [
    ("", "non-empty"), (".", "not allowed"), ("..", "not allowed"), ("a" * 250, "longer than 249"),
    ("has space", "' '"), ("slash/es", "'/'"), ("t\u00e9", "'\u00e9'"), ("colon:", "':'"), (5, "non-empty string"),
])
def test_bad_topic_names_are_rejected_with_the_name(store, name, why):
    with pytest.raises(InvalidTopicError) as e:
        store.create_topic(name)
    assert why in str(e.value)
    if isinstance(name, str) and name and len(name) < 50:
        assert repr(name) in str(e.value)


def test_good_topic_names_and_collisions(store):
    for name in ("a" * 249, "A.b_c-9", "...", "_x"):
        store.create_topic(name)
    with pytest.raises(TopicAlreadyExistsError, match="'_x' already exists"):
        store.create_topic("_x")
    store.create_topic("my.topic")
    with pytest.raises(InvalidTopicError, match="collides with existing topic 'my.topic'"):
        store.create_topic("my_topic")
    with pytest.raises(InvalidPartitionsError):
        store.create_topic("zero", 0)
    with pytest.raises(InvalidTopicError, match="reserved"):
        store.create_topic("__cluster_metadata")


def test_topic_metadata_survives_reopen(tmp_path):
    d = str(tmp_path / "d")
    with logstore.open(d, background=False) as s:
        s.create_topic("a", 2, {"retention.ms": 1000})
        s.create_topic("b", 1)
        s.create_topic("gone", 3)
        s.partition("a", 1).append([(b"k", b"v")])
        s.alter_topic_config("a", {"segment.bytes": 5000}, delete=["retention.ms"])
        s.create_partitions("b", 4)
        s.delete_topic("gone")
        assert not any(n.startswith("gone-") for n in os.listdir(d))
        with pytest.raises(InvalidPartitionsError):
            s.create_partitions("b", 2)
    with logstore.open(d, background=False) as s:
        assert s.topics() == ["a", "b"]
        assert s.topic("a").partitions == 2 and s.topic("b").partitions == 4
        assert s.topic("a").config == {"segment.bytes": "5000"}
        assert s.topic_config("a").segment_bytes == 5000 and s.topic_config("a").retention_ms == 604800000
        assert s.partition("a", 1).read(0)[0].value == b"v"
        assert s.partition("b", 3).log_end_offset == 0
        s.create_topic("gone", 1)  # a new topic of the old name starts empty
        assert s.partition("gone", 0).log_end_offset == 0
    # an unclean stop right after the changes keeps them too (the metadata log is fsynced)
    s = logstore.open(d, background=False)
    s.delete_topic("b")
    s.create_topic("c", 2, {"cleanup.policy": "compact"})
    s.set_topic_config("a", {"retention.bytes": 10})
    copy = str(tmp_path / "copy")
    shutil.copytree(d, copy)
    s.close()
    with logstore.open(copy, background=False) as s2:
        assert not s2.clean_open
        assert s2.topics() == ["a", "c", "gone"]
        assert s2.topic("a").config == {"retention.bytes": "10"} and s2.topic_config("c").compact


def test_delete_topic_removes_its_directories_and_finishes_after_a_crash(tmp_path, store):
    store.create_topic("t", 3)
    store.partition("t", 2).append([(b"k", b"v")])
    store.delete_topic("t")
    assert [n for n in os.listdir(store.path) if n.startswith("t-")] == []
    with pytest.raises(UnknownTopicOrPartitionError):
        store.partition("t", 0)
    # an interrupted delete (renamed, not yet removed) is finished at the next open
    store.close()
    leftover = os.path.join(store.path, "t-0.abc-delete")
    os.makedirs(leftover)
    with logstore.open(store.path, background=False) as s:
        assert not os.path.exists(leftover) and s.topics() == []


def test_delete_records_and_log_start_survive_reopen(tmp_path):
    d = str(tmp_path / "d")
    with logstore.open(d, background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": 300})
        lg = s.partition("t", 0)
        for i in range(20):
            lg.append([(b"k", b"%d" % i)])
        assert s.delete_records("t", 0, 7) == 7
    with logstore.open(d, background=False) as s:
        lg = s.partition("t", 0)
        assert lg.log_start_offset == 7 and lg.read(7)[0].value == b"7"
        with pytest.raises(OffsetOutOfRangeError, match="valid offsets are 7 to 20"):
            lg.read(6)


@pytest.fixture(scope="module")
def thousand_segments(tmp_path_factory):
    """A closed (clean) log dir holding a partition of 1,000 segments of one batch each. The
    segments are written with LogSegment directly: 1,000 real rolls would cost 4,000 fsyncs, over
30 s on a busy machine."""
    from logstore import records as R
    from logstore.segment import segment_name
    d = str(tmp_path_factory.mktemp("thousand") / "d")
    with logstore.open(d, background=False) as s:
        s.create_topic("big", 1, {"segment.bytes": 100})
        part = s.partition("big", 0).dir
    for i in range(1000):
        # one batch, below index.interval.bytes: a sealed segment with empty (trimmed) indexes
        stem = os.path.join(part, segment_name(i))
        with open(stem + ".log", "wb") as f:
            f.write(R.build_batch([(b"k", b"v%d" % i)], i))
        for ext in (".index", ".timeindex"):
            open(stem + ext, "wb").close()
    path = os.path.join(d, ckpt.RECOVERY_POINT_FILE)
    points = ckpt.read_checkpoint(path)
    points[("big", 0)] = 1000  # all flushed, as a clean close leaves it
    ckpt.write_checkpoint(path, points)
    return d


def test_clean_reopen_of_1000_segments_scans_nothing(tmp_path, thousand_segments):
    d = str(tmp_path / "d")
    shutil.copytree(thousand_segments, d)
    before = fds()
    t0 = time.perf_counter()
    s = logstore.open(d, background=False)
    took = time.perf_counter() - t0
    assert s.clean_open
    rs = s.recovery_stats
    assert (rs.segments_scanned, rs.bytes_scanned, rs.indexes_rebuilt, rs.problems) == (0, 0, 0, [])
    assert fds() - before < 20  # no descriptor per segment: sealed segments open lazily
    lg = s.partition("big", 0)
    assert len(lg.segments) == 1000 and lg.log_end_offset == 1000
    opened = [seg for seg in lg.segments.values() if seg._fd is not None]
    assert len(opened) <= 2
    assert lg.read(537)[0].value == b"v537" and lg.append([(b"k", b"more")]) == 1000
    s.close()
    assert took < 5, took


def test_unclean_reopen_scans_only_past_the_recovery_point(tmp_path, thousand_segments):
    d = str(tmp_path / "d")
    shutil.copytree(thousand_segments, d)
    os.unlink(os.path.join(d, CLEAN_SHUTDOWN_FILE))
    before = fds()
    s = logstore.open(d, background=False)
    assert not s.clean_open
    rs = s.recovery_stats
    last_segment = os.path.getsize(os.path.join(d, "big-0", f"{999:020d}.log"))
    # the recovery point is the log end: only the active segment of each partition is scanned
    assert rs.segments_scanned <= 2 and rs.bytes_scanned < 10 * last_segment + 4096
    assert rs.problems == []
    assert fds() - before < 20  # the index checks of 999 sealed segments did not keep them open
    lg = s.partition("big", 0)
    assert lg.read(999)[0].value == b"v999" and lg.read(3)[0].value == b"v3"
    s.close()


@pytest.mark.parametrize("damage", ["garbage", "wrong_count", "empty", "binary"])
def test_a_damaged_checkpoint_costs_a_full_recovery_not_data(tmp_path, damage):
    d = str(tmp_path / "d")
    with logstore.open(d, background=False) as s:
        s.create_topic("t", 2, {"segment.bytes": 500})
        for p in (0, 1):
            for i in range(30):
                s.partition("t", p).append([(b"k", b"%d-%d" % (p, i))])
    path = os.path.join(d, ckpt.RECOVERY_POINT_FILE)
    text = {"garbage": "0\n2\nt 0 banana\nt 1 5\n", "wrong_count": "0\n7\nt 0 30\n", "empty": "",
            "binary": None}[damage]
    with open(path, "wb") as f:
        f.write(b"\xff\xfe\x00garbage" if text is None else text.encode())
    with logstore.open(d, background=False) as s:
        rs = s.recovery_stats
        assert not s.clean_open
        assert any(path in p for p in rs.problems), rs.problems
        # every segment of both partitions (and the metadata log's) was scanned
        assert rs.segments_scanned >= sum(len(s.partition("t", p).segments) for p in (0, 1)) + 1
        for p in (0, 1):
            lg = s.partition("t", p)
            got = []
            off = 0
            while off < lg.log_end_offset:
                recs = lg.read(off)
                got += [r.value for r in recs]
                off = recs[-1].offset + 1
            assert got == [b"%d-%d" % (p, i) for i in range(30)]
    with logstore.open(d, background=False) as s:  # and the next open is clean again
        assert s.clean_open and s.recovery_stats.segments_scanned == 0


def test_a_failed_open_releases_the_lock_and_every_descriptor(tmp_path):
    d = str(tmp_path / "d")
    with logstore.open(d, background=False) as s:
        s.create_topic("a", 3)
        s.create_topic("b", 1)
        for p in range(3):
            s.partition("a", p).append([(b"k", b"v")])
    seg = os.path.join(d, "b-0", f"{0:020d}.log")
    os.unlink(seg)
    os.mkdir(seg)  # a segment that cannot be opened
    before = fds()
    with pytest.raises(OSError, match="00000000000000000000.log"):
        logstore.open(d, background=False)
    assert fds() == before
    os.rmdir(seg)
    with logstore.open(d, background=False) as s:  # not locked by the failed attempt
        assert s.partition("a", 2).read(0)[0].value == b"v"


def test_background_flush_ms(tmp_path):
    with logstore.open(str(tmp_path / "d"), {"log.flush.scheduler.interval.ms": 20}) as s:
        s.create_topic("t", 1, {"flush.ms": 50})
        lg = s.partition("t", 0)
        lg.append([(b"k", b"v")] * 3)
        assert lg.recovery_point == 0
        deadline = time.monotonic() + 30
        while lg.recovery_point < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lg.recovery_point == 3  # fsynced by the store's background thread, unasked


def test_incremental_alters_apply_in_order_and_concurrent_ones_all_land(tmp_path):
    import threading
    with logstore.open(str(tmp_path / "d"), background=False) as store:
        store.create_topic("t", 1, {"retention.ms": "1000"})
        cfg = store.incremental_alter_topic_config("t", [
            ("append", "cleanup.policy", "compact"), ("subtract", "cleanup.policy", "delete"),
            ("set", "segment.bytes", "5000"), ("delete", "retention.ms", None)])
        assert cfg.cleanup_policy == "compact" and cfg.segment_bytes == 5000
        assert store.topic("t").config == {"cleanup.policy": "compact", "segment.bytes": "5000"}
        # a bad operation anywhere changes nothing
        with pytest.raises(InvalidConfigError, match="'segment.bytes' is not a list"):
            store.incremental_alter_topic_config("t", [("set", "flush.ms", "5"), ("append", "segment.bytes", "1")])
        with pytest.raises(InvalidConfigError, match="SET needs a value"):
            store.incremental_alter_topic_config("t", [("set", "flush.ms", None)])
        assert "flush.ms" not in store.topic("t").config
        # 8 threads each set their own key at once: a read-modify-write outside the lock loses some
        keys = ["flush.ms", "flush.messages", "retention.bytes", "segment.ms", "max.message.bytes",
                "min.compaction.lag.ms", "delete.retention.ms", "file.delete.delay.ms"]
        barrier = threading.Barrier(len(keys))
        errors = []

        def alter(key: str) -> None:
            try:
                barrier.wait()
                for i in range(20):
                    store.incremental_alter_topic_config("t", [("set", key, str(100_000 + i))])
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=alter, args=(k,)) for k in keys]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        assert {k: store.topic("t").config.get(k) for k in keys} == {k: "100019" for k in keys}
    with logstore.open(str(tmp_path / "d"), background=False) as store:
        assert store.topic_config("t").flush_ms == 100_019


def test_a_crash_that_loses_records_past_a_checkpointed_start_offset_restarts_the_log_there(tmp_path):
    """delete-records moved the start offset over records that were never flushed; the power
    fails after the start-offset checkpoint was written, and those records are lost. As Kafka's
    LogLoader does, the log restarts empty at the checkpointed start offset: offsets below it are
    never handed out again, and the stale checkpoint cannot hide records appended after the crash."""
    d = str(tmp_path / "d")
    s = logstore.open(d, background=False)
    s.create_topic("t", 1)
    lg = s.partition("t", 0)
    lg.append([(None, b"v%d" % i) for i in range(10)])
    lg.flush()
    flushed_size = os.path.getsize(lg.active_segment.log_path)
    lg.append([(None, b"w%d" % i) for i in range(5)])  # offsets 10..14, never flushed
    assert s.delete_records("t", 0, 13) == 13
    s.checkpoint()
    # the crash image: the unflushed tail is gone, the checkpoints were written
    img = str(tmp_path / "img")
    shutil.copytree(d, img, ignore=shutil.ignore_patterns(".lock"))
    s.close()
    seg_name = os.path.basename(lg.active_segment.log_path)
    os.truncate(os.path.join(img, "t-0", seg_name), flushed_size)
    assert not os.path.exists(os.path.join(img, CLEAN_SHUTDOWN_FILE))  # copied while open: unclean
    with logstore.open(img, background=False) as s2:
        lg2 = s2.partition("t", 0)
        assert (lg2.log_start_offset, lg2.log_end_offset) == (13, 13)
        assert any("restarts empty at 13" in p for p in s2.recovery_stats.problems), s2.recovery_stats.problems
        assert lg2.append([(None, b"after")]) == 13
        lg2.flush()
        s2.checkpoint()
    with logstore.open(img, background=False) as s3:
        lg3 = s3.partition("t", 0)
        assert (lg3.log_start_offset, lg3.log_end_offset) == (13, 14)
        assert [(r.offset, r.value) for r in lg3.read(13)] == [(13, b"after")]


_OUT_OF_DESCRIPTORS_CHILD = r"""
import os, resource, sys
import logstore
from logstore.errors import KafkaStorageError
store = logstore.open(sys.argv[1], background=False)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 30, hard))
store.create_topic("many", 40)               # ~5 descriptors a partition: most cannot be opened
store.create_topic("gone", 10)
failed = []
for p in range(40):
    try:
        store.partition("many", p).append([(b"k", b"v%d" % p)])
    except KafkaStorageError as e:
        failed.append(p)
        unopened = "many-%d cannot be opened" % p in str(e)
print("failed", len(failed))
assert failed and unopened, "the limit was not low enough to test anything"
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
store.delete_topic("gone")
for p in failed:                            # descriptors again: opened at first use, records kept
    store.partition("many", p).append([(b"k", b"v%d" % p)])
store.create_topic("gone", 2)
assert [r.value for r in store.partition("gone", 1).iter_records(0)] == []
store.close()
"""


def test_new_partitions_that_cannot_be_opened_are_opened_at_first_use(tmp_path):
    # out of descriptors while a topic is created: the topic (its metadata record is durable)
    # is wholly there, its unopened partitions answer KafkaStorageError and open once they can
    # (they were unknown until a restart, and creating the topic again said it existed)
    d = str(tmp_path / "d")
    r = subprocess.run([sys.executable, "-c", _OUT_OF_DESCRIPTORS_CHILD, d], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "cannot open new partition many-" in r.stderr
    with logstore.open(d, background=False) as store:
        assert store.clean_open
        assert [[r.value for r in store.partition("many", p).iter_records(0)] for p in range(40)] == \
            [[b"v%d" % p] for p in range(40)]
        assert store.topic("gone").partitions == 2
        assert sorted(n for n in os.listdir(d) if n.startswith("gone-")) == ["gone-0", "gone-1"]
