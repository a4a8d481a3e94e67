"""A real process killed with SIGKILL at every step of a cleaning reopens consistent.

The cleaning runs in a child (cleaner_child.py) that stops at step k of the swap protocol
(`write`, `cleaned`, `.cleaned` → `.swap` renames, old segments → `.deleted`, `.swap` → live,
table replaced, checkpoint) and is killed there. Reopening must give, group by group, either
the old or the new segments — exactly the new ones once that group's `.log.swap` existed —
with no leftover temporary file and indexes that agree with the log.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import logstore

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "cleaner_child.py")
NOW = int(time.time() * 1000)


def read_all(lg) -> list:
    return list(lg.iter_records())


def snapshot(path, variant="plain") -> list:
    with open_store(path, variant) as s:
        return [(r.offset, r.key, r.value, r.timestamp) for r in read_all(s.partition("c", 0))]


VARIANTS = {
    # several groups in one pass, small cleaned segments merging, tombstones expiring
    "plain": dict(codec="none", keys=12, dedupe=None),
    # compressed batches, and a key map too small for the dirty section: several passes
    "zstd-passes": dict(codec="zstd", keys=60, dedupe=1024),
}


def open_store(path, variant):
    dedupe = VARIANTS[variant]["dedupe"]
    return logstore.open(path, {"log.cleaner.dedupe.buffer.size": dedupe} if dedupe else {}, background=False)


def build_template(path, variant="plain") -> None:
    """A compacted partition whose next cleaning rewrites several groups of segments, among them
    small cleaned ones that merge, with tombstones (delete.retention.ms 0: dropped on the next
    cleaning after the first that keeps them)."""
    v = VARIANTS[variant]
    nkeys = v["keys"]
    with open_store(path, variant) as s:
        s.create_topic("c", 1, {"cleanup.policy": "compact", "segment.bytes": "1500",
                                "min.cleanable.dirty.ratio": "0", "delete.retention.ms": "0"})
        lg = s.partition("c", 0)
        for i in range(120):
            lg.append([(b"k%d" % (i % nkeys), b"a%d" % i, (), NOW + i)], compression=v["codec"])
        lg.append([(b"k3", None, (), NOW), (b"k5", None, (), NOW)], compression=v["codec"])
        lg.roll()
        s.run_cleaner(now_ms=NOW)
        later = [k for k in range(nkeys) if k not in (3, 5)]
        for i in range(60):  # k3 and k5 stay deleted: their tombstones expire in the cleaning
            lg.append([(b"k%d" % later[(i * 7) % len(later)], b"b%d" % i, (), NOW + 1000 + i)],
                      compression=v["codec"])
        lg.roll()


def run_child(path, stop_at: int, variant: str = "plain") -> list[str]:
    """Run the child until it stops at `stop_at` (then SIGKILL it) or ends. Returns its step names."""
    dedupe = VARIANTS[variant]["dedupe"]
    proc = subprocess.Popen([sys.executable, CHILD, str(path), str(NOW + 10_000), str(stop_at)]
                            + ([str(dedupe)] if dedupe else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    steps: list[str] = []
    try:
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("STEP "):
                steps.append(line.split(" ", 2)[2].strip())
            elif line.startswith("STOPPED"):
                os.kill(proc.pid, signal.SIGKILL)
                break
            elif line.startswith("TOTAL"):
                break
            assert time.monotonic() < deadline, "child made no progress"
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if stop_at >= 0:
        assert rc == -signal.SIGKILL, proc.stderr.read()  # type: ignore[union-attr]
    else:
        assert rc == 0, proc.stderr.read()  # type: ignore[union-attr]
    return steps


@pytest.fixture(scope="module", params=[
    "plain", pytest.param("zstd-passes", marks=pytest.mark.slow)])
def template(request, tmp_path_factory):
    variant = request.param
    base = tmp_path_factory.mktemp("cleaner-crash")
    tpl = base / "template"
    build_template(tpl, variant)
    # the states a cleaning goes through: before, then after each group's swap
    states = [snapshot(tpl, variant)]
    ref = base / "reference"
    shutil.copytree(tpl, ref)
    seen: list[str] = []
    with open_store(ref, variant) as s:
        lg = s.partition("c", 0)

        def hook(name: str) -> None:
            seen.append(name)
            if name.startswith("replaced:"):
                states.append([(r.offset, r.key, r.value, r.timestamp) for r in read_all(lg)])

        s.log_cleaner.step_hook = hook
        stats = s.run_cleaner(now_ms=NOW + 10_000)
    assert len(states) >= 3, "the workload should clean at least two groups"
    if variant == "zstd-passes":
        assert len(stats) >= 2 and stats[0].map_full, "the workload should need several passes"
    return variant, tpl, states, seen


def test_full_child_run_matches_the_in_process_cleaning(template, tmp_path):
    variant, tpl, states, seen = template
    d = tmp_path / "d"
    shutil.copytree(tpl, d)
    steps = run_child(d, -1, variant)
    assert steps == seen
    assert snapshot(d, variant) == states[-1]


def test_sigkill_at_every_step_reopens_to_old_or_new_segments(template, tmp_path):
    variant, tpl, states, seen = template
    final_keys = {k: v for _o, k, v, _t in states[-1]}
    for k, name in enumerate(seen):
        d = tmp_path / f"step{k}"
        shutil.copytree(tpl, d)
        steps = run_child(d, k, variant)
        assert steps[-1] == name, (k, steps[-1], name)
        # groups past the point of no return: their `.log.swap` existed when the child died
        swapped = sum(1 for s in steps if s == "swap.log")
        with open_store(d, variant) as s:
            lg = s.partition("c", 0)
            names = os.listdir(lg.dir)
            assert not [n for n in names if n.endswith((".cleaned", ".swap", ".deleted"))], (k, name, names)
            got = [(r.offset, r.key, r.value, r.timestamp) for r in read_all(lg)]
            assert got == states[swapped], f"crash after step {k} ({name}): expected state {swapped}"
            for off, *_ in got:  # the indexes agree with the log
                assert lg.read(off, 1)[0].offset == off
            # and the partition goes on: a new cleaning ends where the uninterrupted one did
            s.run_cleaner(now_ms=NOW + 10_000)
            assert {r.key: r.value for r in read_all(lg)} == final_keys
        shutil.rmtree(d)
