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
        fs.close_fds()
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
        fs.close_fds()
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
