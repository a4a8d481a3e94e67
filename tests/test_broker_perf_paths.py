"""The benchmark's confluent-kafka client loops (bench/broker_e2e.py) against a real broker.

The produce loop queues records in chunks with positional arguments and retries the record that
hit BufferError; the consume loop counts every record once and looks at each value. Both switch
the Python GC off only while they run, and record the client settings in their result.
"""

from __future__ import annotations

import gc

import pytest

pytest.importorskip("confluent_kafka")

from bench import broker_clients as be  # noqa: E402  (the client side of bench/broker_e2e.py)
from broker.server import BrokerThread  # noqa: E402


@pytest.fixture
def broker(tmp_path):
    with BrokerThread({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path / "data"),
                       "offsets.topic.num.partitions": "1"}) as b:
        yield b


def _count(broker: BrokerThread, topic: str) -> int:
    lg = broker.store.partition(topic, 0)
    return lg.log_end_offset - lg.log_start_offset


def test_produce_loop_retries_the_record_that_met_buffer_error(broker, monkeypatch):
    # a 50-record local queue: the 3,000 records of this run hit BufferError many times, and every
    # record must still be queued exactly once (no record lost or doubled at a chunk boundary)
    broker.store.create_topic("retry", 1)
    monkeypatch.setattr(be, "PRODUCER_TUNING", {**be.PRODUCER_TUNING, "queue.buffering.max.messages": 50})
    r = be._client_produce_confluent({"bootstrap": broker.bootstrap, "topic": "retry", "records": 3_000,
                                      "acks": 1, "linger_ms": 1})
    assert r["errors"] == 0 and r["unflushed"] == 0
    assert r["records"] == 3_000
    assert _count(broker, "retry") == 3_000
    assert r["producer_config"]["queue.buffering.max.messages"] == 50
    assert r["client_config"] == be.CLIENT_TUNING
    assert gc.isenabled()


def test_produce_loop_spreads_over_partitions_and_consume_reads_every_record(broker):
    broker.store.create_topic("spread", 3)
    r = be._client_produce_confluent({"bootstrap": broker.bootstrap, "topic": "spread", "records": 2_500,
                                      "acks": 1, "partitions": 3})
    assert r["errors"] == 0 and r["records"] == 2_500
    per_part = [broker.store.partition("spread", p).log_end_offset for p in range(3)]
    assert per_part == [834, 833, 833]
    c = be._client_consume_confluent({"bootstrap": broker.bootstrap, "topic": "spread", "records": 2_500,
                                      "partitions": 3, "timeout": 30, "consume_batch": 100})
    assert c["records"] == 2_500 and c["errors"] == 0
    assert c["mb_s"] > 0 and c["consume_batch"] == 100
    assert c["consumer_config"] == be.CONSUMER_TUNING and c["client_config"] == be.CLIENT_TUNING
    assert gc.isenabled()
