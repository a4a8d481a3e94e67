"""Shared fixtures. Keep this small; add fixtures, never remove one (several test modules use it)."""

from __future__ import annotations

import shutil
from typing import Callable, Iterator

import pytest

import logstore


@pytest.fixture
def store(tmp_path) -> Iterator[logstore.LogStore]:
    """A LogStore in `tmp_path/data` without the background thread; closed after the test."""
    s = logstore.open(str(tmp_path / "data"), background=False)
    try:
        yield s
    finally:
        if not s.closed:
            s.close()


@pytest.fixture
def crash_copy(tmp_path) -> Callable[[str], str]:
    """`crash_copy(log_dir)` copies a log dir as a kill -9 would leave it (what was written is
    there, no clean-shutdown marker unless it was closed, indexes as they are on disk) into a new
    directory, and returns its path. The source may still be open."""
    n = [0]

    def copy(src: str) -> str:
        n[0] += 1
        dst = str(tmp_path / f"crash-copy-{n[0]}")
        shutil.copytree(src, dst)
        return dst

    return copy

