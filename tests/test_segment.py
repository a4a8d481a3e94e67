"""One segment (logstore/segment.py): append, find_position against damaged indexes, recovery,
truncation, sealing, and a write that the disk refuses."""

from __future__ import annotations

import contextlib
import os
import resource
import signal

import numpy as np
import pytest

from logstore import records as R
from logstore.errors import KafkaStorageError
from logstore.segment import LogSegment

TS = 1_700_000_000_000


def fill(seg: LogSegment, n_batches: int, *, start: int = 0, value: bytes = b"v" * 100, ts_of=None) -> list[tuple[int, int, int]]:
    """Append n_batches batches of 1..4 records; returns (position, base offset, last offset) of each."""
    out = []
    off = seg.next_offset if start == 0 else start
    for i in range(n_batches):
        count = 1 + i % 4
        ts = ts_of(i) if ts_of else TS + i
        data = R.build_batch([(b"k%d" % i, value)] * count, off, timestamp=ts)
        pos = seg.size
        seg.append(data, [(0, off + count - 1, ts)])
        out.append((pos, off, off + count - 1))
        off += count
    return out


def new_segment(d, base=0, **kw) -> LogSegment:
    return LogSegment(str(d), base, index_interval_bytes=kw.pop("interval", 300), max_index_bytes=kw.pop("index_bytes", 1 << 16),
                      active=True, create=True, **kw)


def reopen(d, base=0, active=False, **kw) -> LogSegment:
    return LogSegment(str(d), base, index_interval_bytes=kw.pop("interval", 300),
                      max_index_bytes=kw.pop("index_bytes", 1 << 16), active=active)


def test_find_position_of_every_offset(tmp_path):
    seg = new_segment(tmp_path, 100)
    batches = fill(seg, 60)
    assert seg.index.entries > 5
    for pos, base, last in batches:
        for off in range(base, last + 1):
            assert seg.find_position(off)[0] == pos
    assert seg.find_position(batches[-1][2] + 1) is None
    assert seg.find_position(0)[0] == 0  # below the base: the first batch
    s = seg.read_slice(batches[10][1] + 1, 1)  # min_one: the whole batch even if max_bytes is 1
    assert s.position == batches[10][0] and s.size == batches[11][0] - batches[10][0]
    seg.close()


def _sealed_with_zero_values(tmp_path):
    seg = new_segment(tmp_path)
    batches = fill(seg, 40, value=bytes(200))
    seg.seal()
    seg.close()
    return batches


def _write_index(tmp_path, entries):
    arr = np.array(entries, dtype=[("off", ">u4"), ("pos", ">u4")])
    arr.tofile(str(tmp_path / "00000000000000000000.index"))


@pytest.mark.parametrize("damage", ["mid_batch", "wrong_batch", "past_end"])
def test_a_damaged_index_never_hides_records(tmp_path, damage):
    batches = _sealed_with_zero_values(tmp_path)
    pos, base, last = batches[20]
    if damage == "mid_batch":  # points at zeros inside a batch: a header of batch length 0
        entries = [(last, pos + R.HEADER_SIZE + 40)]
    elif damage == "wrong_batch":  # a real batch start, but not the one holding that offset
        entries = [(last, batches[25][0])]
    else:
        entries = [(last, 10**6)]
    _write_index(tmp_path, entries)
    seg = reopen(tmp_path)
    assert seg.next_offset == batches[-1][2] + 1  # the tail scan does not trust the bad entry
    for p, b, la in batches:
        for off in (b, la):
            assert seg.find_position(off)[0] == p, (off, damage)
    assert "does not point at its batch" in seg.check_indexes() or "past the log" in seg.check_indexes()
    seg.close()


def test_recover_a_sealed_segment_rebuilds_both_indexes(tmp_path):
    seg = new_segment(tmp_path)
    batches = fill(seg, 50)
    seg.seal()
    entries = (seg.index.entries, seg.time_index.entries)
    seg.close()
    for ext in (".index", ".timeindex"):
        os.unlink(tmp_path / f"00000000000000000000{ext}")
    seg = reopen(tmp_path)
    assert seg.recover() == (0, None)
    assert (seg.index.entries, seg.time_index.entries) == entries
    assert os.path.getsize(seg.index.path) == 8 * entries[0]  # trimmed again: sealed
    assert seg.check_indexes() is None
    assert seg.max_timestamp == TS + 49 and seg.next_offset == batches[-1][2] + 1
    for p, b, _ in batches:
        assert seg.find_position(b)[0] == p
    seg.close()


def test_recover_cuts_at_a_torn_or_corrupt_batch(tmp_path):
    seg = new_segment(tmp_path)
    batches = fill(seg, 30)
    seg.close()
    size = os.path.getsize(seg.log_path)
    # a flipped bit in batch 17's payload: the segment ends before it
    with open(seg.log_path, "r+b") as f:
        f.seek(batches[17][0] + R.HEADER_SIZE + 3)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x10]))
    seg = reopen(tmp_path, active=True)
    truncated, reason = seg.recover()
    assert truncated == size - batches[17][0]
    assert f"CRC mismatch at position {batches[17][0]} of {seg.log_path}" in reason
    assert seg.next_offset == batches[17][1] and os.path.getsize(seg.log_path) == batches[17][0]
    # a torn tail: half a batch
    fill(seg, 2)
    seg.close()
    full = os.path.getsize(seg.log_path)
    os.truncate(seg.log_path, full - 20)
    seg = reopen(tmp_path, active=True)
    truncated, reason = seg.recover()
    assert "truncated batch" in reason and seg.log_path in reason
    assert seg.next_offset == batches[17][1] + 1  # the first of the two new batches survived (1 record)
    seg.close()


def test_recover_rejects_offsets_going_backwards(tmp_path):
    seg = new_segment(tmp_path)
    batches = fill(seg, 5)
    data = R.build_batch([(b"k", b"again")], batches[2][1], timestamp=TS)  # reuses offsets
    seg.append(data, [(0, batches[2][1], TS)])
    seg.close()
    seg = reopen(tmp_path, active=True)
    truncated, reason = seg.recover()
    assert truncated == len(data) and "expected at least" in reason
    seg.close()


def test_truncate_to_removes_the_whole_batch_holding_the_offset(tmp_path):
    seg = new_segment(tmp_path)
    batches = fill(seg, 40)
    pos, base, last = batches[25]
    assert last > base
    seg.truncate_to(base + 1)  # inside a batch of several records
    assert seg.next_offset == base and seg.size == pos == os.path.getsize(seg.log_path)
    assert seg.index.last_entry()[0] < base and seg.time_index.last_entry()[1] < base
    assert seg.max_timestamp == TS + 24
    assert seg.truncate_to(base + 100) == 0  # beyond the end: nothing
    new = fill(seg, 3)
    assert new[0][1] == base and new[0][0] == pos
    for p, b, _ in batches[:25] + new:
        assert seg.find_position(b)[0] == p
    seg.truncate_to(0)
    assert seg.size == 0 and seg.next_offset == 0 and seg.index.entries == 0
    seg.close()


@pytest.mark.parametrize("order", ["increasing", "shuffled"])
def test_a_sealed_segment_reports_its_largest_timestamp(tmp_path, order):
    # big index interval: the last batches are not indexed, so only the final entry written at
    # seal time carries the largest timestamp to a reopened segment
    ts_of = (lambda i: TS + i) if order == "increasing" else (lambda i: TS + (i * 7919) % 1000)
    seg = new_segment(tmp_path, interval=4096)
    batches = fill(seg, 30, ts_of=ts_of)
    assert seg.index.last_entry()[0] < batches[-3][2]  # the last batches are past the last entry
    seg.seal()
    seg.close()
    again = reopen(tmp_path, interval=4096)
    assert again.max_timestamp == max(ts_of(i) for i in range(30))
    again.close()


def test_clean_index_file_checks(tmp_path):
    seg = new_segment(tmp_path)
    fill(seg, 20)
    seg.seal()
    assert seg.index_files_ok()
    with open(seg.index.path, "ab") as f:
        f.write(b"\x01\x02\x03")  # a torn last entry
    assert not seg.index_files_ok()
    os.unlink(seg.index.path)
    assert not seg.index_files_ok()
    seg.close()


def test_release_closes_the_file_and_it_reopens_on_demand(tmp_path):
    seg = new_segment(tmp_path)
    batches = fill(seg, 20)
    seg.seal()
    assert seg._fd is not None
    seg.release()
    assert seg._fd is None and seg.index._mm is None
    assert seg.find_position(batches[5][1])[0] == batches[5][0]
    seg.close()


@contextlib.contextmanager
def file_size_limit(limit: int):
    """A real write failure: RLIMIT_FSIZE makes writes past `limit` fail with EFBIG (SIGXFSZ is
    ignored meanwhile). Nothing else may write a big file in between."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_refused_write_leaves_no_partial_batch(tmp_path):
    seg = new_segment(tmp_path)
    fill(seg, 5)
    size, leo = seg.size, seg.next_offset
    data = R.build_batch([(b"k", b"x" * 5000)], leo, timestamp=TS)
    with file_size_limit(size + 1000):  # the write gets 1000 bytes in, then EFBIG
        with pytest.raises(KafkaStorageError, match=f"cannot append to .* at position {size}"):
            seg.append(data, [(0, leo, TS)])
    assert seg.size == size == os.path.getsize(seg.log_path) and seg.next_offset == leo
    seg.append(data, [(0, leo, TS)])  # the disk is back: the same batch goes in
    assert seg.next_offset == leo + 1
    seg.close()
    again = reopen(tmp_path, active=True)
    assert again.recover() == (0, None)
    again.close()
