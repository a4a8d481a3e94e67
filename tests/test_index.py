"""Offset and time indexes (logstore/index.py): lookups against a model, persistence, trimming,
crash leftovers, O(log n) lookups."""

from __future__ import annotations

import bisect
import os
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore.index import OffsetIndex, TimeIndex

BASE = 1000


def increasing(min_size=0, max_size=200, start=0, max_step=1000):
    return st.lists(st.integers(min_value=1, max_value=max_step), min_size=min_size, max_size=max_size).map(
        lambda steps: list(np.cumsum([start] + steps)[1:].astype(int)))


def model_offset_lookup(entries, target):
    keys = [o for o, _ in entries]
    i = bisect.bisect_right(keys, target) - 1
    return entries[i] if i >= 0 else (BASE, 0)


@settings(max_examples=40, deadline=None)
@given(offs=increasing(max_size=150), poss=increasing(max_size=150), probes=st.lists(st.integers(BASE - 10, BASE + 200_000)))
def test_offset_index_lookup_matches_model_before_and_after_trim(tmp_path_factory, offs, poss, probes):
    n = min(len(offs), len(poss))
    entries = [(BASE + int(o), int(p)) for o, p in zip(offs[:n], poss[:n])]
    path = str(tmp_path_factory.mktemp("idx") / "0.index")
    idx = OffsetIndex(path, BASE, 4096, writable=True)
    for o, p in entries:
        idx.append(o, p)
    probes = probes + [o for o, _ in entries] + [o - 1 for o, _ in entries] + [BASE - 5, BASE]
    for t in probes:
        assert idx.lookup(t) == model_offset_lookup(entries, t)
    idx.trim()
    assert os.path.getsize(path) == 8 * n
    ro = OffsetIndex(path, BASE, 4096, writable=False)
    assert ro.entries == n
    for t in probes:
        assert ro.lookup(t) == model_offset_lookup(entries, t)
    assert ro.check(log_size=(entries[-1][1] + 1) if entries else 0) is None
    ro.close()


@settings(max_examples=40, deadline=None)
@given(stamps=st.lists(st.integers(-1, 10_000), max_size=120), probes=st.lists(st.integers(-5, 12_000)))
def test_time_index_keeps_strictly_increasing_entries_and_looks_up_like_the_model(tmp_path_factory, stamps, probes):
    path = str(tmp_path_factory.mktemp("tidx") / "0.timeindex")
    idx = TimeIndex(path, BASE, 12 * 500, writable=True)
    model: list[tuple[int, int]] = []
    for i, ts in enumerate(stamps):
        idx.append(ts, BASE + i)
        if ts > (model[-1][0] if model else -1):  # Kafka's rule: only a larger timestamp, never -1
            model.append((ts, BASE + i))
    assert idx.entries == len(model)

    def expect(t):
        i = bisect.bisect_right([ts for ts, _ in model], t) - 1
        return model[i] if i >= 0 else (-1, BASE)

    for t in probes:
        assert idx.lookup(t) == expect(t)
    idx.trim()
    ro = TimeIndex(path, BASE, 12 * 500, writable=False)
    for t in probes:
        assert ro.lookup(t) == expect(t)
    assert ro.last_entry() == (model[-1] if model else (-1, BASE))
    ro.close()


@settings(max_examples=30, deadline=None)
@given(offs=increasing(min_size=1, max_size=60), cut=st.integers(0, 70_000))
def test_truncate_to_offset_drops_entries_at_or_above(tmp_path_factory, offs, cut):
    path = str(tmp_path_factory.mktemp("tr") / "0.index")
    idx = OffsetIndex(path, BASE, 8 * 100, writable=True)
    for i, o in enumerate(offs):
        idx.append(BASE + o, i * 10 + 10)
    idx.truncate_to_offset(BASE + cut)
    kept = [o for o in offs if o < cut]
    assert idx.entries == len(kept)
    assert idx.last_entry() == ((BASE + kept[-1], len(kept) * 10) if kept else (BASE, 0))
    idx.close()


def test_crash_leftover_preallocated_zeros_are_not_entries(tmp_path):
    path = str(tmp_path / "0.index")
    idx = OffsetIndex(path, 0, 8 * 1000, writable=True)
    for i in range(1, 6):
        idx.append(i * 10, i * 100)
    idx.flush()
    idx.close()  # no trim: what a kill -9 leaves, a file of 1000 slots
    assert os.path.getsize(path) == 8 * 1000
    again = OffsetIndex(path, 0, 8 * 1000, writable=True)
    assert again.entries == 5 and again.last_entry() == (50, 500)
    tpath = str(tmp_path / "0.timeindex")
    t = TimeIndex(tpath, 0, 12 * 100, writable=True)
    t.append(5, 3)
    t.append(9, 4)
    t.close()
    assert TimeIndex(tpath, 0, 12 * 100, writable=True).entries == 2


def test_a_crash_leftover_offset_index_with_no_entry_has_none(tmp_path):
    """A kill before the first entry leaves an active offset index all zeros: that first zero
    slot is not an entry (relative offset 0 at position 0, which made a sealed segment's index
    "not point at its batch" after a later clean shutdown: the power-loss campaign, seed 103)."""
    cls, size = OffsetIndex, 8
    path = str(tmp_path / "0.idx")
    idx = cls(path, 100, size * 50, writable=True)
    assert idx.entries == 0
    idx.close()  # no trim
    assert os.path.getsize(path) == size * 50
    for writable in (True, False):
        again = cls(path, 100, size * 50, writable=writable)
        assert again.entries == 0
        assert again.lookup(150) == (100, 0) and again.last_entry() == (100, 0)
        again.close()
    # and a trimmed file holding only that slot (what the trim at a later close kept) reads as
    # an index with no entry whose file disagrees with it: check() sends it to be rebuilt
    with open(path, "r+b") as f:
        f.truncate(size)
    ro = cls(path, 100, size * 50, writable=False)
    assert ro.entries == 0 and "corrupt first entry" in ro.check(1000)


def test_truncated_then_appended_index_does_not_resurrect_stale_entries(tmp_path):
    """After truncation the dropped slots must not come back, even if a later append makes the
    stale tail look increasing again and the process dies before trimming."""
    path = str(tmp_path / "0.index")
    idx = OffsetIndex(path, 0, 8 * 100, writable=True)
    for o in (10, 20, 30, 40):
        idx.append(o, o * 10)
    idx.truncate_to_offset(25)
    idx.append(25, 250)  # slots now: 10 20 25 | stale 40
    idx.flush()
    idx.close()  # crash: not trimmed
    again = OffsetIndex(path, 0, 8 * 100, writable=True)
    assert again.entries == 3 and again.last_entry() == (25, 250)


def test_full_indexes(tmp_path):
    idx = OffsetIndex(str(tmp_path / "0.index"), 0, 8 * 3, writable=True)
    for o in (1, 2, 3):
        assert not idx.is_full()
        idx.append(o, o)
    assert idx.is_full()
    try:
        idx.append(4, 4)
        raise AssertionError("a full offset index took an entry")
    except Exception as e:
        assert "full" in str(e)
    t = TimeIndex(str(tmp_path / "0.timeindex"), 0, 12 * 2, writable=True)
    t.append(10, 1)
    t.append(20, 2)
    t.append(30, 3)  # full: ignored
    assert t.entries == 2 and t.is_full()
    # sealing records the largest timestamp even in a full index, replacing the last entry
    t.append_final(35, 5)
    assert t.last_entry() == (35, 5) and t.entries == 2
    assert t.lookup(25) == (10, 1)  # one entry earlier: a scan from there is still right
    t.append_final(30, 9)  # not larger: nothing changes
    assert t.last_entry() == (35, 5)


def test_check_reports_positions_past_the_log_and_corrupt_tails(tmp_path):
    path = str(tmp_path / "0.index")
    idx = OffsetIndex(path, 0, 8 * 10, writable=True)
    idx.append(5, 100)
    idx.append(9, 200)
    idx.trim()
    ro = OffsetIndex(path, 0, 8 * 10, writable=False)
    assert ro.check(log_size=500) is None
    assert "past the log" in ro.check(log_size=150)
    ro.close()
    with open(path, "ab") as f:
        f.write(b"\x00" * 8)  # a garbage entry after a trimmed tail
    ro = OffsetIndex(path, 0, 8 * 10, writable=False)
    assert ro.entries == 2 and "corrupt entry" in ro.check(log_size=500)
    ro.close()


def test_mapping_is_lazy(tmp_path):
    path = str(tmp_path / "0.index")
    idx = OffsetIndex(path, 0, 8 * 10, writable=False)
    assert idx._mm is None and not os.path.exists(path)
    assert idx.lookup(5) == (0, 0) and not os.path.exists(path)


def test_lookup_is_logarithmic(tmp_path):
    """A lookup on a 1M-entry index costs about what it costs on a 1K-entry one (numpy's
    searchsorted on the big-endian map would convert the whole column on every call)."""
    def build(n: int, name: str) -> OffsetIndex:
        path = str(tmp_path / name)
        arr = np.zeros(n, dtype=[("off", ">u4"), ("pos", ">u4")])
        arr["off"] = np.arange(1, n + 1) * 3
        arr["pos"] = np.arange(1, n + 1) * 64
        arr.tofile(path)
        return OffsetIndex(path, 0, 8 * n, writable=False)

    def per_lookup(idx: OffsetIndex, n: int) -> float:
        idx.lookup(1)
        targets = np.random.default_rng(1).integers(0, 3 * n, 2000).tolist()
        t0 = time.perf_counter()
        for t in targets:
            idx.lookup(t)
        return (time.perf_counter() - t0) / len(targets)

    small, big = build(1000, "s.index"), build(1_000_000, "b.index")
    assert big.lookup(3 * 500_000 + 1) == (3 * 500_000, 64 * 500_000)
    t_small = min(per_lookup(small, 1000) for _ in range(3))
    t_big = min(per_lookup(big, 1_000_000) for _ in range(3))
    assert t_big < 5 * t_small + 5e-6, (t_small, t_big)


_CLOSE_RACE = """
import os, sys, tempfile, threading
from logstore.index import OffsetIndex
d = tempfile.mkdtemp(dir=sys.argv[1])
for it in range(100):
    p = os.path.join(d, f"{it}.index")
    w = OffsetIndex(p, 0, 8 * 20000, writable=True)
    for i in range(20000):
        w.append(i * 10, i * 100)
    w.close()
    idx = OffsetIndex(p, 0, 8 * 20000, writable=False)
    idx.lookup(5)
    stop = False
    def look():
        while not stop:
            try:
                idx.lookup(123457)
            except (TypeError, AttributeError):   # closed: an error, never a crash
                pass
    ts = [threading.Thread(target=look) for _ in range(2)]
    for t in ts:
        t.start()
    idx.close()
    stop = True
    for t in ts:
        t.join()
print("ok")
"""


def test_closing_an_index_while_another_thread_searches_it_does_not_crash(tmp_path):
    """A segment closed by retention while the cleaner (another thread) searches its index: the
    map stays valid for the searcher (it used to be closed under its numpy view: SIGSEGV, every
    run of this script)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _CLOSE_RACE, str(tmp_path)], capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr[-2000:])


def test_a_closed_or_trimmed_index_keeps_no_key_array_alive(tmp_path):
    """Lookups build a native key column as large as the preallocated index (5 MB at the default
    segment.index.bytes); trim and close must drop it, or every sealed segment read once at the
    tail keeps one."""
    import gc
    import weakref

    idx = OffsetIndex(str(tmp_path / "0.index"), 0, 8 * 100_000, writable=True)
    for i in range(1, 50):
        idx.append(i * 10, i * 100)
    assert idx.lookup(255) == (250, 2500)
    ref = weakref.ref(idx._keys)
    idx.trim()
    gc.collect()
    assert ref() is None
    assert idx.lookup(255) == (250, 2500)
    ref = weakref.ref(idx._keys)
    idx.close()
    gc.collect()
    assert ref() is None
