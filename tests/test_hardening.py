"""Hardening of the engine core: durability of recovery's repairs, interrupted topic deletion,
FileSlice lifetime, producer-state snapshots, and a failed fsync taking the partition offline."""

from __future__ import annotations

import os
import shutil
import sys
import time

import pytest

import logstore
from logstore import records as R
from logstore.segment import LogSegment

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "crash"))
from faultfs import FaultFS  # noqa: E402

TS = 1_700_000_000_000


def _fill(seg: LogSegment, n: int) -> None:
    off = seg.next_offset
    for i in range(n):
        data = R.build_batch([(b"k", b"v" * 80)], off, timestamp=TS + i)
        seg.append(data, [(0, off, TS + i)])
        off += 1


# -- durability of recovery's repairs ----------------------------------------------------------
def test_recovery_of_a_sealed_segment_makes_its_trimmed_indexes_durable(tmp_path):
    """`recover` rebuilds a sealed segment's indexes in preallocated files and trims them; the
    trimmed lengths must be fsynced, or a power cut leaves a zero tail whose last time-index
    "entry" says the segment's largest timestamp is 0 (and time retention deletes it)."""
    d = tmp_path / "p"
    d.mkdir()
    seg = LogSegment(str(d), 0, index_interval_bytes=100, max_index_bytes=1 << 16, active=True, create=True)
    _fill(seg, 20)
    seg.seal()
    seg.close()
    with open(d / "00000000000000000000.timeindex", "r+b") as f:
        f.truncate(5)  # a torn length: the rebuild rewrites the file in place
    with FaultFS(str(d)) as fs:
        sealed = LogSegment(str(d), 0, index_interval_bytes=100, max_index_bytes=1 << 16)
        assert sealed.recover() == (0, None)
        entries = sealed.time_index.entries
        sealed.close()
        fs.crash_image(str(tmp_path / "img"), worst=True)
    img_ti = tmp_path / "img" / "00000000000000000000.timeindex"
    assert os.path.getsize(img_ti) == entries * 12
    again = LogSegment(str(tmp_path / "img"), 0, index_interval_bytes=100, max_index_bytes=1 << 16)
    assert again.max_timestamp == TS + 19
    again.close()


def test_recovery_truncation_is_durable(tmp_path):
    """The cut of a torn tail is fdatasynced by `recover` (a clean close right after an unclean
    open would otherwise let the next open trust a file still holding the torn bytes)."""
    d = tmp_path / "p"
    d.mkdir()
    seg = LogSegment(str(d), 0, index_interval_bytes=100, max_index_bytes=1 << 16, active=True, create=True)
    _fill(seg, 5)
    good = seg.size
    os.fdatasync(seg.fd)
    os.pwrite(seg.fd, b"\x00" * 40, good)  # a torn batch start
    os.fdatasync(seg.fd)
    seg.close()
    with FaultFS(str(d)) as fs:
        s2 = LogSegment(str(d), 0, index_interval_bytes=100, max_index_bytes=1 << 16, active=True)
        truncated, reason = s2.recover()
        assert truncated == 40 and reason
        s2.close()
        fs.crash_image(str(tmp_path / "img"), worst=True)
    assert os.path.getsize(tmp_path / "img" / "00000000000000000000.log") == good


def test_leftover_directory_of_a_deleted_topic_is_removed_not_adopted(tmp_path):
    """A power cut inside delete_topic after its tombstone is durable may leave some partition
    directories behind; the next open must finish the deletion, not adopt them as a topic whose
    other partitions are empty."""
    root = str(tmp_path / "data")
    with logstore.open(root, background=False) as store:
        store.create_topic("gone", 2)
        for p in (0, 1):
            store.partition("gone", p).append([(b"k", b"v%d" % i) for i in range(5)])
        store.flush()
        shutil.copytree(os.path.join(root, "gone-1"), str(tmp_path / "saved"))
        store.delete_topic("gone")
    # as the cut leaves it: tombstone durable, partition 0 removed, partition 1 not yet
    shutil.copytree(str(tmp_path / "saved"), os.path.join(root, "gone-1"))
    with logstore.open(root, background=False) as store:
        assert "gone" not in store.topics()
        assert not os.path.exists(os.path.join(root, "gone-1"))
        # a topic created again under the name starts empty
        store.create_topic("gone", 2)
        assert [store.partition("gone", p).log_end_offset for p in (0, 1)] == [0, 0]
    with logstore.open(root, background=False) as store:
        assert store.topics() == ["gone"]


# -- FileSlice lifetime --------------------------------------------------------------------------
def _small_log(tmp_path, **cfg):
    conf = {"segment.bytes": "600", "file.delete.delay.ms": "0", **cfg}
    store = logstore.open(str(tmp_path / "data"), background=False)
    store.create_topic("t", 1, conf)
    lg = store.partition("t", 0)
    for i in range(30):
        lg.append([(b"k%d" % i, b"value-%03d" % i + b"." * 40)])
    assert len(lg.segments) > 3
    return store, lg


def _churn_fds(tmp_path, n=64):
    """Open many files so that freed descriptor numbers are reused (each holding other bytes)."""
    fds = []
    for i in range(n):
        p = tmp_path / f"other-{i}"
        p.write_bytes(b"X" * 4096)
        fds.append(os.open(p, os.O_RDONLY))
    return fds


def test_slice_outlives_purge_of_its_segment(tmp_path):
    store, lg = _small_log(tmp_path)
    try:
        s = lg.read_slice(0, 1 << 20)
        want = s.read()
        assert R.decode_batch(want, 0)[0].value.startswith(b"value-000")
        lg.delete_records(lg.log_end_offset - 1)  # retention-like: first segments go
        lg.purge_deleted(force=True)
        assert not any(f.startswith("00000000000000000000.") for f in os.listdir(lg.dir))
        fds = _churn_fds(tmp_path)
        try:
            assert s.read() == want  # still the purged file's bytes, not another file's
        finally:
            for fd in fds:
                os.close(fd)
        fd = s.fd
        del s  # the last reference: the descriptor closes now
        with pytest.raises(OSError):
            os.fstat(fd)
    finally:
        store.close()


def test_slice_outlives_truncate_to(tmp_path):
    store, lg = _small_log(tmp_path)
    try:
        last_base = lg.segments.peekitem(-1)[0]
        s = lg.read_slice(last_base, 1 << 20)
        want = s.read()
        lg.truncate_to(lg.segments.peekitem(1)[0])  # deletes the later segments at once
        fds = _churn_fds(tmp_path)
        try:
            assert s.read() == want
        finally:
            for fd in fds:
                os.close(fd)
    finally:
        store.close()


def test_slice_outlives_store_close_and_sealed_release(tmp_path):
    store, lg = _small_log(tmp_path)
    s = lg.read_slice(0, 1 << 20)
    want = s.read()
    store.close()
    fds = _churn_fds(tmp_path)
    try:
        assert s.read() == want
    finally:
        for fd in fds:
            os.close(fd)
    s.close()
    assert s.size == 0 and s.read() == b""


# -- producer-state snapshots ------------------------------------------------------------------
from logstore import producer_state as PS  # noqa: E402
from logstore.errors import DuplicateSequenceError  # noqa: E402

PID = 4242


def _idem(seq: int, n: int = 2, epoch: int = 0) -> bytes:
    return R.build_batch([(b"k%d" % (seq + i), b"v" * 60) for i in range(n)], producer_id=PID,
                         producer_epoch=epoch, base_sequence=seq)


def _produce_across_rolls(root: str):
    """Idempotent batches, then enough other data to roll the batches' segment away."""
    store = logstore.open(root, background=False)
    store.create_topic("t", 1, {"segment.bytes": "700"})
    lg = store.partition("t", 0)
    first = lg.append_batch(_idem(0))
    lg.append_batch(_idem(2))
    for i in range(20):
        lg.append([(b"x", b"y" * 60)])
    assert lg.segments.bisect_right(first) - 1 < len(lg.segments) - 2  # not in the last two segments
    return store, lg, first


def _assert_retry_deduped(store, first: int) -> None:
    lg = store.partition("t", 0)
    leo = lg.log_end_offset
    with pytest.raises(DuplicateSequenceError) as e:
        lg.append_batch(_idem(0))
    assert e.value.first_offset == first
    with pytest.raises(DuplicateSequenceError):
        lg.append_batch(_idem(2))
    assert lg.log_end_offset == leo
    assert lg.append_batch(_idem(4)) == leo  # the next in sequence goes in


def test_retry_after_roll_and_clean_reopen_is_a_duplicate(tmp_path):
    root = str(tmp_path / "data")
    store, lg, first = _produce_across_rolls(root)
    store.close()
    assert PS.list_snapshots(lg.dir)
    with logstore.open(root, background=False) as store:
        _assert_retry_deduped(store, first)


def test_retry_after_roll_and_unclean_reopen_is_a_duplicate(tmp_path):
    root = str(tmp_path / "data")
    store, lg, first = _produce_across_rolls(root)
    lg.flush()
    crashed = str(tmp_path / "crashed")
    shutil.copytree(root, crashed)  # as kill -9 leaves it: no clean close, no snapshot at close
    store.close()
    assert not os.path.exists(os.path.join(crashed, ".kafka_cleanshutdown"))
    with logstore.open(crashed, background=False) as store:
        _assert_retry_deduped(store, first)


def test_corrupt_snapshot_is_ignored_and_rebuilt_by_scanning(tmp_path, caplog):
    root = str(tmp_path / "data")
    store, lg, first = _produce_across_rolls(root)
    other = R.build_batch([(b"a", b"b")], producer_id=PID + 1, producer_epoch=0, base_sequence=0)
    other_offset = lg.append_batch(other)  # in the active segment
    store.close()
    snaps = PS.list_snapshots(lg.dir)
    assert snaps
    for _off, path in snaps:
        with open(path, "r+b") as f:
            f.seek(12)
            f.write(b"\xff\xfe")  # inside the entries: the CRC no longer matches
    with logstore.open(root, background=False) as store:
        lg = store.partition("t", 0)
        with caplog.at_level("WARNING", logger="logstore"):
            with pytest.raises(DuplicateSequenceError) as e:
                lg.append_batch(other)  # found again by scanning the last segments
        assert e.value.first_offset == other_offset
        warned = " ".join(r.getMessage() for r in caplog.records)
        assert "fails its CRC" in warned and snaps[-1][1] in warned
        assert not any(os.path.exists(p) for _o, p in snaps)  # corrupt files are deleted


def test_snapshot_files_are_bounded_and_dropped_above_a_truncation(tmp_path):
    root = str(tmp_path / "data")
    store, lg, first = _produce_across_rolls(root)
    try:
        for i in range(40):
            lg.append_batch(_idem(4 + 2 * i))
        snaps = PS.list_snapshots(lg.dir)
        assert 1 <= len(snaps) <= 3
        cut = snaps[-1][0] - 1
        lg.truncate_to(cut)
        assert all(off <= lg.log_end_offset for off, _p in PS.list_snapshots(lg.dir))
    finally:
        store.close()


def test_snapshot_is_kafkas_byte_layout(tmp_path):
    m = PS.ProducerStateManager()
    m.update(7, 3, 10, 14, 100, 104, 1234)
    m.update(7, 3, 15, 15, 105, 105, 1235)
    data = PS.encode_snapshot(m.producers)
    import struct
    import crc32c
    version, crc, count = struct.unpack_from(">hIi", data)
    assert (version, count, len(data)) == (1, 2, 10 + 2 * 46)
    assert crc == crc32c.crc32c(data[6:])
    # Kafka keeps the last entry of a producer: our newest batch
    assert struct.unpack_from(">qhiqiqiq", data, 10 + 46) == (7, 3, 15, 105, 0, 1235, -1, -1)
    back = PS.decode_snapshot(data)
    assert list(back[7].batches) == list(m.producers[7].batches) and back[7].epoch == 3
    for bad in (data[:5], b"\x00\x02" + data[2:], data[:-1]):
        with pytest.raises(PS.CorruptSnapshotError):
            PS.decode_snapshot(bad, "x.snapshot")


# -- a failed fsync takes the partition offline ---------------------------------------------------
import subprocess  # noqa: E402

from logstore.errors import KafkaStorageError  # noqa: E402


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True)


@pytest.fixture
def failing_fs(tmp_path):
    """An ext4 file system whose writeback really fails: a 64 MiB sparse image on a 4 MiB tmpfs,
    loop-mounted. Writes land in the page cache (ext4 has room); the fsync that writes them back
    to the image finds the tmpfs full and fails (ENOSPC, then EIO) — a real failed fsync."""
    small, mnt = tmp_path / "small", tmp_path / "ext4"
    small.mkdir()
    mnt.mkdir()
    r = _run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): needs root with mount permission")
    try:
        img = small / "img"
        _run("truncate", "-s", "64M", str(img))
        r = _run("mkfs.ext4", "-q", "-F", str(img))
        if r.returncode != 0:
            pytest.skip(f"mkfs.ext4 failed: {r.stderr.strip()}")
        r = _run("mount", "-o", "loop", str(img), str(mnt))
        if r.returncode != 0:
            pytest.skip(f"cannot loop-mount an ext4 image here ({r.stderr.strip() or r.returncode})")
        try:
            yield str(mnt)
        finally:
            _run("umount", "-l", str(mnt))
    finally:
        _run("umount", "-l", str(small))


def test_failed_fsync_takes_the_partition_offline(failing_fs, caplog):
    root = os.path.join(failing_fs, "data")
    store = logstore.open(root, background=False)
    try:
        store.create_topic("t", 1, {"segment.bytes": str(64 << 20)})
        store.create_topic("other", 1)
        lg = store.partition("t", 0)
        for i in range(10):
            lg.append([(b"k%d" % i, b"durable-%d" % i)])
        lg.flush()
        durable_end = lg.log_end_offset
        chunk = os.urandom(256 << 10)
        for i in range(24):  # 6 MiB: more than the tmpfs under the image can take
            lg.append([(b"big", chunk)], flush=False)
        with caplog.at_level("ERROR", logger="logstore"):
            with pytest.raises(KafkaStorageError) as first:
                lg.flush()
        original = str(first.value)
        assert "cannot flush" in original
        assert lg.failed and lg.recovery_point == durable_end
        assert any("t-0 is offline" in r.getMessage() for r in caplog.records)
        # appends are refused, naming the partition and the first error
        with pytest.raises(KafkaStorageError) as e:
            lg.append([(b"k", b"after")])
        assert "t-0" in str(e.value) and original in str(e.value)
        # a later flush must not report success (the kernel may say so although pages were lost)
        with pytest.raises(KafkaStorageError):
            lg.flush()
        with pytest.raises(KafkaStorageError):
            lg.roll()
        # reads of durable data go on
        recs = lg.read(0, 1 << 20, max_records=10)
        assert [r.value for r in recs] == [b"durable-%d" % i for i in range(10)]
        assert store.partition("other", 0).failed is None
    finally:
        try:
            store.close()  # must release the lock and write no clean-shutdown marker
        except KafkaStorageError:
            pass  # the file system is broken by now: closing other partitions may fail too
    assert store.closed
    assert not os.path.exists(os.path.join(root, ".kafka_cleanshutdown"))


# -- damaged sealed data is refused on read, never served ------------------------------------------
from logstore.errors import CorruptRecordError  # noqa: E402


def _sealed_store(tmp_path):
    root = str(tmp_path / "data")
    with logstore.open(root, background=False) as store:
        store.create_topic("t", 1, {"segment.bytes": "1500", "index.interval.bytes": "200"})
        lg = store.partition("t", 0)
        for i in range(60):
            lg.append([(b"k%d" % i, b"v%03d" % i + b"." * 50, (), TS + i)])
        bases = list(lg.segments.keys())
    return root, bases


def _batches(path):
    with open(path, "rb") as f:
        return list(R.iter_headers(f.read()))


def test_flipped_base_offset_in_a_sealed_segment_is_refused(tmp_path):
    """baseOffset is outside the CRC: a read must notice offsets that do not fit between their
    neighbours (or the next segment's base) and raise, naming the file and a position at or before
    the damage, instead of serving records under wrong offsets."""
    root, bases = _sealed_store(tmp_path)
    path = os.path.join(root, "t-0", f"{bases[1]:020d}.log")
    for k, bit in ((2, 1 << 6), (-1, 1 << 4), (0, 1)):  # upwards mid-segment, the last batch, the first
        shutil.copy(path, path + ".orig")
        pos, h = _batches(path)[k]
        with open(path, "r+b") as f:
            f.seek(pos + 7)
            b = f.read(1)[0]
            f.seek(pos + 7)
            f.write(bytes([b ^ bit]))
        with logstore.open(root, background=False) as store:
            lg = store.partition("t", 0)
            with pytest.raises(CorruptRecordError) as e:
                lg.read(h.base_offset, 1, max_records=1)
            assert e.value.path == path and e.value.position <= pos + 7
            assert lg.read(bases[1] - 1, 1)[0].offset == bases[1] - 1  # the segment before is fine
        os.replace(path + ".orig", path)


def test_sealed_segment_that_lost_its_end_is_refused_not_skipped(tmp_path):
    root, bases = _sealed_store(tmp_path)
    path = os.path.join(root, "t-0", f"{bases[1]:020d}.log")
    pos, h = _batches(path)[-2]
    os.truncate(path, pos)
    with logstore.open(root, background=False) as store:
        lg = store.partition("t", 0)
        assert lg.read(h.base_offset - 1, 1)[0].offset == h.base_offset - 1
        for missing in (h.base_offset, bases[2] - 1):
            with pytest.raises(CorruptRecordError) as e:
                lg.read(missing, 1)
            assert e.value.path == path and e.value.position == pos
        assert lg.read(bases[2], 1)[0].offset == bases[2]


@pytest.mark.parametrize("delta", [-(1 << 20), 1 << 20], ids=["older", "newer"])
def test_damaged_last_time_index_entry_is_not_trusted(tmp_path, delta):
    """A sealed segment's largest timestamp is its time index's last entry; a damaged one that
    looks older would hide the segment from time lookups, one that looks newer would keep it
    from time retention. Both are checked against the batch header they name."""
    root, bases = _sealed_store(tmp_path)
    ti = os.path.join(root, "t-0", f"{bases[1]:020d}.timeindex")
    size = os.path.getsize(ti)
    with open(ti, "r+b") as f:
        f.seek(size - 12)
        ts = int.from_bytes(f.read(8), "big")
        f.seek(size - 12)
        f.write((ts + delta).to_bytes(8, "big"))
    with logstore.open(root, background=False) as store:
        lg = store.partition("t", 0)
        want = bases[2] - 1  # the last record of the damaged segment
        assert lg.segments[bases[1]].max_timestamp == TS + want
        assert lg.offset_for_timestamp(TS + want) == (want, TS + want)
