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


def test_producers_idle_for_the_expiration_time_are_forgotten():
    ps = ProducerStateManager()
    ps.update(1, 0, 0, 4, 0, 4, 1_000)      # newest batch at t=1000
    ps.update(2, 0, 0, 0, 5, 5, 1_000)
    ps.update(2, 0, 1, 1, 6, 6, 50_000)     # producer 2 wrote again later
    assert ps.remove_expired(now_ms=10_999, expiration_ms=10_000) == []
    assert ps.remove_expired(now_ms=11_000, expiration_ms=10_000) == [1]  # Kafka: now - last >= expiration
    assert set(ps.producers) == {2}
    # a forgotten producer is a new one: its next batch is accepted at any sequence, as Kafka
    # accepts a producer id it does not know, and a duplicate of its old batch is not recognised
    ps.check(1, 0, 5, 9, "t-0")
    ps.check(1, 0, 0, 4, "t-0")
    with pytest.raises(DuplicateSequenceError):
        ps.check(2, 0, 1, 1, "t-0")  # the live producer still deduplicates


def test_a_table_not_yet_loaded_does_not_expire():
    loads = []

    def loader():
        loads.append(1)
        return []

    ps = ProducerStateManager(loader)
    assert ps.remove_expired(now_ms=10**13, expiration_ms=1) == [] and not loads and not ps.loaded


def test_store_expires_producers_on_its_background_thread(tmp_path):
    import time

    import logstore
    from logstore.producer_state import expire_producers

    def batch(pid: int, seq: int, ts: int) -> bytes:
        return R.build_batch([(None, b"v")], timestamp=ts, producer_id=pid, producer_epoch=0, base_sequence=seq)

    now = int(time.time() * 1000)
    with logstore.open(tmp_path / "d", {"producer.id.expiration.ms": "60000"}, background=False) as s:
        s.create_topic("t", 1)
        lg = s.partition("t", 0)
        lg.append_batch(batch(7, 0, now - 120_000))   # idle for two minutes
        lg.append_batch(batch(8, 0, now))
        assert set(lg.producer_state.producers) == {7, 8}
        assert expire_producers(s) == 1 and set(lg.producer_state.producers) == {8}
        lg.roll()  # the snapshot written at the roll holds only the live producer
    with logstore.open(tmp_path / "d", {"producer.id.expiration.ms": "60000",
                                         "producer.id.expiration.check.interval.ms": "50"}) as s:
        lg = s.partition("t", 0)
        lg.append_batch(batch(9, 0, now - 120_000))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and 9 in lg.producer_state.producers:
            time.sleep(0.05)
        assert set(lg.producer_state.producers) == {8}
    with pytest.raises(logstore.errors.InvalidConfigError, match="producer.id.expiration.ms"):
        logstore.open(tmp_path / "e", {"producer.id.expiration.ms": "0"})
