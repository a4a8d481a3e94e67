"""Idempotent-producer state (logstore/producer_state.py): duplicates, order, epochs, rebuild."""

from __future__ import annotations

import pytest

from logstore import records as R
from logstore.errors import DuplicateSequenceError, InvalidProducerEpochError, OutOfOrderSequenceError
from logstore.producer_state import KEEP_BATCHES, ProducerStateManager


def test_in_order_duplicates_and_gaps():
    m = ProducerStateManager()
    m.check(1, 0, 0, 4, "p")
    m.update(1, 0, 0, 4, 100, 104, 10)
    m.check(1, 0, 5, 5, "p")
    m.update(1, 0, 5, 5, 105, 105, 11)
    with pytest.raises(DuplicateSequenceError) as e:
        m.check(1, 0, 0, 4, "p")
    assert (e.value.first_offset, e.value.last_offset, e.value.timestamp) == (100, 104, 10)
    with pytest.raises(OutOfOrderSequenceError, match="producer 1 on p: expected 6, got 8"):
        m.check(1, 0, 8, 9, "p")
    with pytest.raises(OutOfOrderSequenceError):
        m.check(1, 0, 1, 5, "p")  # overlaps, but is not one of the batches kept


def test_only_the_last_five_batches_are_remembered():
    m = ProducerStateManager()
    for i in range(KEEP_BATCHES + 2):
        m.check(3, 0, i, i, "p")
        m.update(3, 0, i, i, i, i, 0)
    oldest_kept = KEEP_BATCHES + 1 - (KEEP_BATCHES - 1)
    with pytest.raises(DuplicateSequenceError):
        m.check(3, 0, oldest_kept, oldest_kept, "p")
    with pytest.raises(OutOfOrderSequenceError):
        m.check(3, 0, 0, 0, "p")  # too old to be recognised


def test_epochs():
    m = ProducerStateManager()
    m.update(9, 2, 0, 9, 0, 9, 0)
    with pytest.raises(InvalidProducerEpochError, match="epoch 1 is older than the current epoch 2"):
        m.check(9, 1, 10, 10, "p")
    with pytest.raises(OutOfOrderSequenceError, match="must start at sequence 0"):
        m.check(9, 3, 10, 10, "p")
    m.check(9, 3, 0, 0, "p")


def test_sequence_wraps_at_2_31():
    m = ProducerStateManager()
    m.update(4, 0, 2**31 - 2, 2**31 - 1, 0, 1, 0)
    m.check(4, 0, 0, 3, "p")


def test_state_is_rebuilt_from_batch_headers_once():
    calls = []
    hdrs = [R.read_header(R.build_batch([(b"k", b"v")] * 3, 10, producer_id=7, producer_epoch=0, base_sequence=0)),
            R.read_header(R.build_batch([(b"k", b"v")], 13, producer_id=7, producer_epoch=0, base_sequence=3)),
            R.read_header(R.build_batch([(b"k", b"v")], 14))]  # not idempotent: ignored

    def loader():
        calls.append(1)
        return hdrs

    m = ProducerStateManager(loader)
    with pytest.raises(DuplicateSequenceError) as e:
        m.check(7, 0, 0, 2, "p")  # a retry at sequence 0 is recognised after a reopen too
    assert e.value.first_offset == 10
    m.check(7, 0, 4, 4, "p")
    m.check(8, 0, 0, 0, "p")
    assert calls == [1]
    m.truncate()
    assert m.producers == {}
    m.check(8, 0, 0, 0, "p")
    assert calls == [1, 1]
