"""Damaged files: bit flips and truncations in `.log`, `.index`, `.timeindex` and checkpoints.

A template log dir (one partition, several sealed segments, closed cleanly) is copied for each
trial and one file is damaged at a random position. Then, opening it with the real engine:
- index and time index damage is harmless: recovery or lookups notice an entry that does not
  point at its batch and fall back to the log; every offset and timestamp lookup is right;
- checkpoint damage costs a full recovery scan, never data;
- a torn tail of the active segment after an unclean stop is cut back to the last whole batch,
  and nothing before it is lost;
- damage inside flushed data (a sealed segment below the recovery point) is never served as
  data and never silently skipped: a read either returns exactly what was appended at that
  offset or raises CorruptRecordError naming the damaged file and a position at or before the
  damage;
- `logstore verify DIR` reports each damaged `.log` and `.index` with the file and exits 1.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time

import pytest

import logstore
from logstore import checkpoint as ckpt
from logstore import records as R

NOW = int(time.time() * 1000)
TOPIC_CFG = {"segment.bytes": "2000", "index.interval.bytes": "150"}
LOGSTORE = os.path.join(os.path.dirname(sys.executable), "logstore")


def build_template(path: str) -> dict[int, tuple]:
    """A cleanly closed log dir; returns offset → (key, value, timestamp)."""
    rng = random.Random(7)
    expected: dict[int, tuple] = {}
    with logstore.open(path, background=False) as store:
        store.create_topic("t", 1, TOPIC_CFG)
        lg = store.partition("t", 0)
        ts = NOW - 10_000
        while lg.log_end_offset < 160:
            recs = []
            for _ in range(rng.randint(1, 3)):
                ts += rng.randint(1, 5)
                recs.append((b"k%d" % rng.randrange(50), rng.randbytes(rng.randint(10, 80)), (), ts))
            first = lg.append(recs)
            for i, (k, v, _h, t) in enumerate(recs):
                expected[first + i] = (k, v, t)
        assert len(lg.segments) >= 5
    return expected


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("corruption") / "template")
    expected = build_template(path)
    return path, expected


def part_files(root: str, ext: str) -> list[str]:
    d = os.path.join(root, "t-0")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(ext))


def batch_starts(path: str) -> list[tuple[int, R.BatchHeader]]:
    with open(path, "rb") as f:
        data = f.read()
    return list(R.iter_headers(data))


def flip(path: str, pos: int, rng: random.Random) -> None:
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([b ^ (1 << rng.randrange(8))]))


def verify_cli(root: str) -> subprocess.CompletedProcess:
    return subprocess.run([LOGSTORE, "verify", root, "--no-progress"], capture_output=True, text=True, timeout=120)


def read_each(lg, expected: dict, damaged: str | None, damage_at: int | None) -> int:
    """Read every expected offset alone. Returns how many reads raised CorruptRecordError; fails on
    any wrong, skipped or unexplained answer."""
    errors = 0
    for o in sorted(expected):
        if o < lg.log_start_offset or o >= lg.log_end_offset:
            raise AssertionError(f"offset {o} is no longer in the log [{lg.log_start_offset}, {lg.log_end_offset})")
        try:
            got = lg.read(o, 1, max_records=1)
        except logstore.CorruptRecordError as e:
            assert damaged is not None, f"read of offset {o} failed on an undamaged log: {e}"
            assert e.path == damaged or damaged in str(e), f"error does not name the damaged file {damaged}: {e}"
            assert e.position is not None and (damage_at is None or e.position <= damage_at), (
                f"error position {e.position} is after the damage at {damage_at}: {e}")
            errors += 1
            continue
        assert got, f"read of offset {o} returned nothing"
        r = got[0]
        assert r.offset == o, (f"read of offset {o} returned offset {r.offset}: wrong offsets served or records skipped "
                               f"(damage in {damaged} at {damage_at})")
        assert (r.key, r.value, r.timestamp) == expected[o], f"offset {o} returned wrong data {r!r}"
    return errors


def fresh(template, tmp_path, name: str) -> str:
    src, _ = template
    dst = str(tmp_path / name)
    shutil.copytree(src, dst)
    return dst


def unclean(root: str) -> None:
    """As after kill -9: no clean-shutdown marker (the recovery point stays at the log end)."""
    marker = os.path.join(root, ".kafka_cleanshutdown")
    if os.path.exists(marker):
        os.unlink(marker)


TRIALS = int(os.environ.get("CORRUPTION_TRIALS", "12"))


@pytest.mark.parametrize("clean", [True, False], ids=["clean-open", "unclean-open"])
def test_bit_flips_in_sealed_log_are_reported_never_served(template, tmp_path, clean):
    _, expected = template
    rng = random.Random(11 + clean)
    detected = 0
    for trial in range(TRIALS):
        root = fresh(template, tmp_path, f"t{trial}")
        logs = part_files(root, ".log")[:-1]  # sealed, all below the recovery point
        path = rng.choice(logs)
        starts = batch_starts(path)
        bpos, h = rng.choice(starts)
        # anywhere in the batch but its leader epoch, which no checksum covers (as in Kafka)
        off = rng.choice([i for i in range(h.size) if not 12 <= i < 16])
        pos = bpos + off
        flip(path, pos, rng)
        if not clean:
            unclean(root)
        cli = verify_cli(root)
        assert cli.returncode == 1 and path in cli.stdout, (
            f"verify did not report the flip at {path}:{pos} (batch at {bpos}, byte {off}):\n{cli.stdout}{cli.stderr}")
        with logstore.open(root, background=False) as store:
            errors = read_each(store.partition("t", 0), expected, path, pos)
        detected += errors > 0
        shutil.rmtree(root)
    assert detected == TRIALS, f"only {detected} of {TRIALS} flips were refused on read"
    print(f"\ncorruption: {TRIALS} bit flips in sealed .log files ({'clean' if clean else 'unclean'} open), "
          f"all reported by verify and refused on read")


@pytest.mark.parametrize("ext", [".index", ".timeindex"])
def test_index_damage_never_gives_wrong_answers(template, tmp_path, ext):
    _, expected = template
    rng = random.Random(ext == ".index")
    reported = 0
    missed: list[str] = []
    for trial in range(TRIALS):
        root = fresh(template, tmp_path, f"t{trial}")
        candidates = [p for p in part_files(root, ext) if os.path.getsize(p) > 0]
        path = rng.choice(candidates)
        size = os.path.getsize(path)
        detectable = True
        if rng.random() < 0.7:
            at = rng.randrange(size)
            flip(path, at, rng)
            what = f"bit flip at {path}:{at}"
        else:
            at = rng.randrange(size)
            os.truncate(path, at)
            what = f"truncation of {path} to {at} bytes"
            detectable = at % (8 if ext == ".index" else 12) != 0  # fewer whole entries is a valid index
        if trial % 2:
            unclean(root)
        cli = verify_cli(root)
        if (cli.returncode == 1 and path in cli.stdout) or not detectable:
            reported += 1
        else:
            missed.append(what)
        with logstore.open(root, background=False) as store:
            lg = store.partition("t", 0)
            assert read_each(lg, expected, None, None) == 0
            for o in rng.sample(sorted(expected), 25):
                ts = expected[o][2]
                want = min(x for x in expected if expected[x][2] >= ts)
                got = lg.offset_for_timestamp(ts)
                assert got == (want, expected[want][2]), f"offset_for_timestamp({ts}) = {got}, want {want}"
        shutil.rmtree(root)
    if ext == ".index":
        assert reported == TRIALS, f"verify reported only {reported} of {TRIALS} damaged offset indexes; missed: {missed}"
    print(f"\ncorruption: {TRIALS} damaged {ext} files, every lookup right, {reported} reported by verify")


def test_torn_tail_of_unflushed_active_segment_is_truncated(template, tmp_path):
    _, expected = template
    rng = random.Random(3)
    for trial in range(TRIALS):
        root = fresh(template, tmp_path, f"t{trial}")
        active = part_files(root, ".log")[-1]
        base = int(os.path.basename(active)[:20])
        starts = batch_starts(active)
        # the recovery point is the active segment's base: its batches were never flushed
        ckpt.write_checkpoint(os.path.join(root, ckpt.RECOVERY_POINT_FILE), {("t", 0): base})
        unclean(root)
        cut_batch = rng.randrange(len(starts))
        bpos, h = starts[cut_batch]
        cut = bpos + rng.randrange(1, h.size)
        if rng.random() < 0.5:
            os.truncate(active, cut)  # torn write: the file ends inside a batch
        else:
            with open(active, "r+b") as f:  # a page of garbage where the tail should be
                f.truncate(cut)
                f.seek(cut)
                f.write(rng.randbytes(rng.randint(1, 300)))
        with logstore.open(root, background=False) as store:
            lg = store.partition("t", 0)
            assert lg.log_end_offset == h.base_offset, (
                f"torn batch at {active}:{bpos} (offset {h.base_offset}): log end is {lg.log_end_offset}")
            assert lg.stats.bytes_truncated > 0
            kept = {o: v for o, v in expected.items() if o < h.base_offset}
            assert read_each(lg, kept, None, None) == 0
            lg.append([(b"after", b"recovery", (), NOW)])
            assert lg.read(h.base_offset)[0].value == b"recovery"
        shutil.rmtree(root)


@pytest.mark.parametrize("name", [ckpt.RECOVERY_POINT_FILE, ckpt.LOG_START_OFFSET_FILE])
def test_damaged_checkpoint_costs_a_scan_not_data(template, tmp_path, name):
    _, expected = template
    rng = random.Random(5)
    for trial in range(TRIALS // 2):
        root = fresh(template, tmp_path, f"t{trial}")
        path = os.path.join(root, name)
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            ckpt.write_checkpoint(path, {("t", 0): 0})
        size = os.path.getsize(path)
        r = rng.random()
        if r < 0.4:
            flip(path, rng.randrange(size), rng)
        elif r < 0.7:
            os.truncate(path, rng.randrange(size))
        else:
            with open(path, "wb") as f:
                f.write(rng.randbytes(rng.randint(1, 64)))
        unclean(root)
        with logstore.open(root, background=False) as store:
            lg = store.partition("t", 0)
            assert lg.log_start_offset == 0
            assert read_each(lg, expected, None, None) == 0
        shutil.rmtree(root)


def test_truncated_sealed_segment_is_refused_not_skipped(template, tmp_path):
    """A sealed segment below the recovery point that lost its end (a bad disk, a bad copy):
    its missing offsets must raise, never be answered with the next segment's records."""
    _, expected = template
    rng = random.Random(9)
    for trial in range(TRIALS // 2):
        root = fresh(template, tmp_path, f"t{trial}")
        path = rng.choice(part_files(root, ".log")[:-1])
        starts = batch_starts(path)
        bpos, h = starts[rng.randrange(len(starts))]
        cut = bpos + rng.randrange(0, h.size)
        os.truncate(path, cut)
        if trial % 2:
            unclean(root)
        cli = verify_cli(root)
        assert cli.returncode == 1 and path in cli.stdout, f"verify missed the truncation of {path}:\n{cli.stdout}"
        with logstore.open(root, background=False) as store:
            lg = store.partition("t", 0)
            errors = read_each(lg, expected, path, None)
            assert errors > 0
        shutil.rmtree(root)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_corruption_long():
    """The cases above with 150 trials each (make test-slow)."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", __file__],
                       env={**os.environ, "CORRUPTION_TRIALS": "150"}, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stdout[-5000:]
