"""Disk full: appends on a small file system fail with KafkaStorageError, the log stays readable,
and appends work again once space is freed.

Each case mounts a fresh tmpfs of 2 MiB (we run as root; skipped, saying why, only where the
mount is refused), runs tests/crash/rel_diskfull_child.py in a child process against it, and
checks the child's report. A child killed by a signal (SIGBUS from writing an mmap'd index page
on a full file system) fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "rel_diskfull_child.py")


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (mount says: {r.stderr.strip() or r.returncode}); "
                    "disk-full tests need mount permission (root outside a restricted container)")
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def run_child(mnt: str, segment_bytes: int) -> dict:
    root = os.path.join(mnt, "data")
    p = subprocess.run([sys.executable, CHILD, root, str(512 * 1024), str(segment_bytes)],
                       capture_output=True, text=True, timeout=120)
    if p.returncode < 0:
        raise AssertionError(f"the store was killed by {signal.Signals(-p.returncode).name} while the disk was "
                             f"full (an mmap'd index page written with no space left?)\n{p.stderr[-3000:]}")
    assert p.returncode == 0, f"child failed:\n{p.stderr[-3000:]}"
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("segment_bytes", [8 << 20, 256 << 10], ids=["one-segment", "rolling"])
def test_disk_full_fails_cleanly_and_recovers(small_fs, segment_bytes):
    res = run_child(small_fs, segment_bytes)
    assert res["appended"] > 50, res
    assert res["error_type"] == "KafkaStorageError" and res["error_code"] == 56, (
        f"a full disk must fail the append with KafkaStorageError (56), got {res['error_type']}: {res['error']}")
    assert "No space left" in res["error"] and "/t-0/" in res["error"], (
        f"the error must say what and where: {res['error']}")
    assert res["readable_after_full"], "after ENOSPC the log does not read back exactly what was acknowledged"
    assert res["second_append"] == "KafkaStorageError" and res["leo_after_second"] == res["leo_after_full"], res
    assert res["append_after_free"] == "ok", f"appends do not work again after space was freed: {res}"
    assert res["reopen_ok"] and res["reopen_leo"] == res["expected_leo"], res
    print(f"\ndisk full: {res['appended']} appends then ENOSPC -> KafkaStorageError; readable; 20 appends after "
          f"freeing space; reopen holds all {res['expected_leo']} records")
