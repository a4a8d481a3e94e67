"""Fixtures the compat test modules share."""

from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture
def members() -> Iterator[list]:
    """The group member processes a test starts (it appends them); each is killed after the test."""
    started: list = []
    yield started
    for m in started:
        m.kill()
