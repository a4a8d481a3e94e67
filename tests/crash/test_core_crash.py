"""Crash safety of the storage engine core: a real writer process killed with SIGKILL in a loop,
torn tails at every byte, flipped bits before and after the recovery point, damaged indexes and
checkpoints. After each, the store must reopen to a prefix of what was written that holds
everything flushed, with no torn or corrupt batch visible and indexes that agree with the log.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zlib

import pytest

import logstore
from logstore import checkpoint as ckpt
from logstore import records as R
from logstore.config import LogConfig
from logstore.errors import CorruptRecordError
from logstore.log import Log
from logstore.store import CLEAN_SHUTDOWN_FILE

HERE = os.path.dirname(os.path.abspath(__file__))
WRITER = os.path.join(HERE, "core_writer.py")
sys.path.insert(0, HERE)
from core_writer import TOPIC, value  # noqa: E402

NOW = int(time.time() * 1000)


# ------------------------------------------------------------------------------ checks

def flushed_offsets(path: str) -> dict[int, int]:
    """Highest offset per partition the writer reported durable (a torn last line is ignored)."""
    out: dict[int, int] = {}
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return out
    for line in text.split(b"\n")[:-1]:
        p, off = map(int, line.split())
        out[p] = max(out.get(p, -1), off)
    return out


def check_partition_files(lg: Log) -> None:
    """Every byte of every segment is a whole, valid batch; offsets run on across segments."""
    expect = lg.segments.peekitem(0)[0]
    for base, seg in lg.segments.items():
        with open(seg.log_path, "rb") as f:
            data = f.read()
        assert len(data) == seg.size, seg.log_path
        pos = 0
        while pos < len(data):
            h = R.validate_batch(data, pos, path=seg.log_path)
            assert h.base_offset == expect, (seg.log_path, pos, h.base_offset, expect)
            expect = h.last_offset + 1
            pos += h.size
        assert seg.next_offset == expect
        assert seg.check_indexes() is None
    assert lg.log_end_offset == expect


def read_all(lg: Log) -> list[R.Record]:
    out: list[R.Record] = []
    off = lg.log_start_offset
    while off < lg.log_end_offset:
        recs = lg.read(off, 1 << 16)
        assert recs and recs[0].offset == off, off
        out += recs
        off = recs[-1].offset + 1
    return out


def verify_store(d: str, flushed: dict[int, int]) -> tuple[int, int]:
    with logstore.open(d, background=False) as s:
        leos = []
        for p in (0, 1):
            lg = s.partition(TOPIC, p)
            recs = read_all(lg)
            assert [r.offset for r in recs] == list(range(lg.log_end_offset)), f"partition {p} not contiguous"
            for r in recs:
                assert r.key == b"k%d" % r.offset and r.value == value(p, r.offset), (p, r.offset)
            assert lg.log_end_offset > flushed.get(p, -1), (
                f"partition {p}: offset {flushed.get(p)} was flushed but the log ends at {lg.log_end_offset}"
                f"; recovery: {s.recovery_stats}")
            check_partition_files(lg)
            # the indexes agree with the log: lookups of sampled offsets land on them
            for off in random.Random(p).sample(range(lg.log_end_offset), min(50, lg.log_end_offset)):
                assert lg.read(off, 1)[0].offset == off
            leos.append(lg.log_end_offset)
    return leos[0], leos[1]


# ------------------------------------------------------------------------------ kill -9 loop

def tear_unflushed_tail(d: str, flushed: dict[int, int], rng: random.Random) -> None:
    """Cut each partition's last segment at a random byte after the batch holding its last
    flushed offset (nothing flushed is touched)."""
    for p in (0, 1):
        part = os.path.join(d, f"{TOPIC}-{p}")
        last = max(n for n in os.listdir(part) if n.endswith(".log"))
        path = os.path.join(part, last)
        with open(path, "rb") as f:
            data = f.read()
        safe = 0  # end of the batch holding the last flushed offset, if in this segment
        for pos, h in R.iter_headers(data):
            if h.base_offset <= flushed.get(p, -1):
                safe = pos + h.size
        if len(data) > safe + 1:
            os.truncate(path, rng.randrange(safe + 1, len(data)))


def kill_loop(tmp_path, cycles: int, seed: int) -> None:
    rng = random.Random(seed)
    d = str(tmp_path / "data")
    flushed_file = str(tmp_path / "flushed")
    total_flushed = 0
    for cycle in range(cycles):
        proc = subprocess.Popen([sys.executable, WRITER, d, flushed_file, str(seed * 1000 + cycle)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line.startswith("ready"), f"writer failed to start (cycle {cycle}): {line}{proc.stderr.read()}"
            time.sleep(rng.uniform(0.02, 0.6))
            assert proc.poll() is None, f"writer exited by itself (cycle {cycle}): {proc.stderr.read()}"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        flushed = flushed_offsets(flushed_file)
        total_flushed = sum(v + 1 for v in flushed.values())
        if cycle % 2:
            # verify a copy: the next writer then recovers the killed store itself. A kill -9
            # never tears a write (pwrite is one syscall), so the copy also gets a torn tail cut
            # into its unflushed part, as a power cut would leave it
            copy = str(tmp_path / f"copy-{cycle}")
            shutil.copytree(d, copy)
            tear_unflushed_tail(copy, flushed, rng)
            verify_store(copy, flushed)
            shutil.rmtree(copy)
        else:
            verify_store(d, flushed)  # recovers in place, then closes cleanly
    assert total_flushed > 0, "the writer never flushed: the loop proved nothing"


def test_sigkill_loop(tmp_path):
    kill_loop(tmp_path, cycles=10, seed=1)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # every cycle re-reads the whole (growing) log: 100 cycles take minutes
def test_sigkill_loop_long(tmp_path):
    kill_loop(tmp_path, cycles=100, seed=2)


# ------------------------------------------------------------------------------ torn tails

def build_partition(d: str, batches: int = 40, segment_bytes: int = 4000) -> tuple[Log, list[tuple[int, int]]]:
    """A partition of several segments; returns the log (flushed, open) and (offset, value) pairs."""
    lg = Log(d, "t", 0, LogConfig({"segment.bytes": segment_bytes, "index.interval.bytes": 300,
                                     "segment.index.bytes": 4096}))
    written = []
    for i in range(batches):
        n = 1 + i % 5
        base = lg.append([(b"k", b"b%d-r%d" % (i, j) + b"z" * (i % 30)) for j in range(n)], timestamp=NOW + i)
        written += [(base + j, b"b%d-r%d" % (i, j) + b"z" * (i % 30)) for j in range(n)]
    lg.flush()
    return lg, written


def test_torn_tail_at_every_byte_of_the_last_batch(tmp_path):
    d = str(tmp_path / "p")
    lg, written = build_partition(d)
    seg = lg.active_segment
    last_pos, last_h = list(seg._iter_headers_from(0))[-1]
    path, full = seg.log_path, seg.size
    lg.close()
    with open(path, "rb") as f:
        original = f.read()
    keep = [(o, v) for o, v in written if o < last_h.base_offset]
    for cut in range(last_h.size):
        with open(path, "wb") as f:
            f.write(original[:last_pos + cut])
        lg = Log(d, "t", 0, LogConfig({"segment.bytes": 4000, "index.interval.bytes": 300,
                                       "segment.index.bytes": 4096}),
                 recovery_point=last_h.base_offset, clean=False)
        assert lg.log_end_offset == last_h.base_offset, cut
        assert lg.stats.bytes_truncated == cut
        if cut:
            assert f"position {last_pos} of {path}" in " ".join(lg.stats.problems)
        assert os.path.getsize(path) == last_pos
        got = read_all(lg)
        assert [(r.offset, r.value) for r in got] == keep
        check_partition_files(lg)
        lg.recovery_point = lg.log_end_offset  # nothing to fsync: keeps 200 reopens fast
        lg.close()
    assert full == last_pos + last_h.size


def test_torn_tail_through_the_store(tmp_path, crash_copy):
    d = str(tmp_path / "d")
    s = logstore.open(d, background=False)
    s.create_topic("t", 1, {"segment.bytes": 3000})
    lg = s.partition("t", 0)
    for i in range(50):
        lg.append([(b"k", b"%d" % i + b"-" * 50)])
    s.flush()
    last = lg.active_segment
    positions = [p for p, _ in last._iter_headers_from(0)]
    copies = []
    for cut in (1, R.HEADER_SIZE - 1, R.HEADER_SIZE + 5):
        c = crash_copy(d)
        os.truncate(os.path.join(c, "t-0", os.path.basename(last.log_path)), positions[-1] + cut)
        copies.append(c)
    s.close()
    for c in copies:
        with logstore.open(c, background=False) as s2:
            lg2 = s2.partition("t", 0)
            assert lg2.log_end_offset == 49
            assert [r.value[:2] for r in read_all(lg2)][-1] == b"48"
            assert s2.recovery_stats.bytes_truncated > 0
            assert lg2.append([(b"k", b"again")]) == 49


# ------------------------------------------------------------------------------ flipped bits

def _flip(path: str, position: int, bit: int = 2) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        b = f.read(1)
        f.seek(position)
        f.write(bytes([b[0] ^ (1 << bit)]))


@pytest.mark.parametrize("where", ["payload", "crc", "attributes", "record_count", "timestamps", "magic_v0"])
def test_flipped_bit_below_the_recovery_point_is_reported_on_read(tmp_path, where):
    d = str(tmp_path / "d")
    with logstore.open(d, background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": 2000})
        lg = s.partition("t", 0)
        for i in range(60):
            lg.append([(b"k", b"%d" % i + b"." * 80)])
        first = lg.segments.peekitem(0)[1]
        victim = list(first._iter_headers_from(0))[3]  # the 4th batch of the first segment
        seg_path = first.log_path
    pos, h = victim
    at = {"payload": pos + R.HEADER_SIZE + 10, "crc": pos + 18, "attributes": pos + 22,
          "record_count": pos + 60, "timestamps": pos + 30, "magic_v0": pos + R.MAGIC_OFFSET}[where]
    _flip(seg_path, at, bit=1 if where == "magic_v0" else 2)  # magic 2 -> 0 looks like an old client's
    for unclean in (False, True):
        if unclean:
            os.unlink(os.path.join(d, CLEAN_SHUTDOWN_FILE))
        with logstore.open(d, background=False) as s:
            lg = s.partition("t", 0)
            assert lg.log_end_offset == 60  # below the recovery point: not scanned, not cut
            assert s.recovery_stats.segments_scanned <= 2
            assert lg.read(2, 1)[0].offset == 2
            with pytest.raises(CorruptRecordError) as e:
                lg.read(h.base_offset, 1)
            assert e.value.path == seg_path and e.value.position == pos
            assert f"position {pos} of {seg_path}" in str(e.value)
            assert lg.read(h.base_offset + 1, 1)[0].offset == h.base_offset + 1  # the rest reads


def test_flipped_bit_past_the_recovery_point_is_cut_on_recovery(tmp_path, crash_copy):
    d = str(tmp_path / "d")
    s = logstore.open(d, background=False)
    s.create_topic("t", 1, {"segment.bytes": 2000})
    lg = s.partition("t", 0)
    for i in range(20):
        lg.append([(b"k", b"%d" % i + b"." * 80)])
    s.flush()  # recovery point 20, checkpointed
    for i in range(20, 60):
        lg.append([(b"k", b"%d" % i + b"." * 80)])  # not flushed: past the recovery point
    target = lg.segments.peekitem(-2)[1]  # a sealed segment past the recovery point's segment
    assert target.base_offset > 20
    pos, h = list(target._iter_headers_from(0))[2]
    c = crash_copy(d)
    s.close()
    bad_path = os.path.join(c, "t-0", os.path.basename(target.log_path))
    _flip(bad_path, pos + R.HEADER_SIZE + 5)
    with logstore.open(c, background=False) as s2:
        lg2 = s2.partition("t", 0)
        assert lg2.log_end_offset == h.base_offset
        problems = " ".join(s2.recovery_stats.problems)
        assert f"CRC mismatch at position {pos} of {bad_path}" in problems
        assert [int(r.value.split(b".")[0]) for r in read_all(lg2)] == list(range(h.base_offset))
        check_partition_files(lg2)
        assert lg2.append([(b"k", b"next")]) == h.base_offset


# ------------------------------------------------------------------------------ damaged indexes

def _damage(path: str, how: str, rng: random.Random) -> None:
    if how == "deleted":
        os.unlink(path)
    elif how == "truncated_torn":
        size = os.path.getsize(path)
        os.truncate(path, max(size - 5, 1))
    elif how == "truncated_whole":
        size = os.path.getsize(path)
        entry = 12 if path.endswith(".timeindex") else 8
        os.truncate(path, (size // entry // 2) * entry)
    elif how == "garbage":
        size = os.path.getsize(path)
        with open(path, "wb") as f:
            f.write(rng.randbytes(size))


@pytest.mark.parametrize("how", ["deleted", "truncated_torn", "truncated_whole", "garbage"])
@pytest.mark.parametrize("which", [".index", ".timeindex"])
@pytest.mark.parametrize("clean", [True, False])
def test_damaged_indexes_are_rebuilt_or_harmless(tmp_path, how, which, clean):
    """Reads, lookups and appends stay right whatever happened to the indexes. Time lookups stay
    exact except where a time index's damage cannot be seen without scanning the log: a clean open
    trusts index contents (as Kafka's does: it checks lengths only), and a time index cut at an
    entry boundary looks like a shorter, valid one (its segment's largest timestamp is then
    underestimated until the segment is recovered)."""
    exact_time = not (which == ".timeindex" and (how == "truncated_whole" or (how == "garbage" and clean)))
    rng = random.Random(zlib.crc32(f"{how}{which}{clean}".encode()) + int(os.environ.get("CORE_CRASH_SEED", "0")))
    d = str(tmp_path / "d")
    stamps = [NOW - 100_000 + rng.randint(0, 50_000) for _ in range(400)]
    with logstore.open(d, background=False) as s:
        s.create_topic("t", 1, {"segment.bytes": 6000, "index.interval.bytes": 200})
        lg = s.partition("t", 0)
        for i in range(0, 400, 2):
            lg.append([(b"k", b"%d" % i + b"-" * 40, [], stamps[i]), (b"k", b"%d" % (i + 1), [], stamps[i + 1])])
        bases = list(lg.segments)
    assert len(bases) >= 4
    part = os.path.join(d, "t-0")
    for base in (bases[0], bases[len(bases) // 2], bases[-1]):  # sealed ones and the active one
        p = os.path.join(part, f"{base:020d}{which}")
        if how != "deleted" and os.path.getsize(p) < 16:
            continue
        _damage(p, how, rng)
    if not clean:
        os.unlink(os.path.join(d, CLEAN_SHUTDOWN_FILE))
    with logstore.open(d, background=False) as s:
        lg = s.partition("t", 0)
        rs = s.recovery_stats
        if how in ("deleted", "truncated_torn"):
            assert rs.indexes_rebuilt >= 2 and rs.problems
        assert lg.log_end_offset == 400
        for off in range(0, 400, 7):
            r = lg.read(off, 1)[0]
            assert r.offset == off and r.value.startswith(b"%d" % off)
        for target in sorted(rng.sample(stamps, 25)):
            want = next((o, t) for o, t in enumerate(stamps) if t >= target)
            got = lg.offset_for_timestamp(target)
            if exact_time:
                assert got == want
            else:  # still a record at or after the target time, never garbage
                assert got is not None and got[1] >= target and lg.read(got[0], 1)[0].timestamp == got[1]
        assert lg.append([(b"k", b"after")]) == 400
        if not clean or how != "garbage":
            for seg in lg.segments.values():
                assert seg.check_indexes() is None, seg.log_path


# ------------------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("damage", ["garbage", "torn", "missing"])
def test_damaged_checkpoints_after_a_crash_lose_nothing(tmp_path, crash_copy, damage):
    d = str(tmp_path / "d")
    s = logstore.open(d, background=False)
    s.create_topic("t", 2, {"segment.bytes": 1500})
    for i in range(50):
        s.partition("t", i % 2).append([(b"k", b"%d" % i + b"#" * 60)])
    s.flush()
    c = crash_copy(d)
    s.close()
    for name in (ckpt.RECOVERY_POINT_FILE, ckpt.LOG_START_OFFSET_FILE):
        path = os.path.join(c, name)
        if damage == "missing":
            if os.path.exists(path):
                os.unlink(path)
        elif damage == "torn":
            with open(path, "r+b") as f:
                f.truncate(max(os.path.getsize(path) - 3, 2))
        else:
            with open(path, "wb") as f:
                f.write(b"\x00\x01garbage\n")
    with logstore.open(c, background=False) as s2:
        for p in (0, 1):
            got = [int(r.value.split(b"#")[0]) for r in read_all(s2.partition("t", p))]
            assert got == list(range(p, 50, 2))
            check_partition_files(s2.partition("t", p))
