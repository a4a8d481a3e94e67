"""The `kafka_broker` pytest fixture (entry point pytest11 `logstore`), used the way an
application's test suite would: produce with confluent-kafka, consume with kafka-python."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest


def test_produce_confluent_consume_kafka_python(kafka_broker: str) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from kafka import KafkaConsumer, TopicPartition

    host, port = kafka_broker.split(":")
    assert host == "127.0.0.1" and int(port) > 0
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    admin.create_topics([NewTopic("orders", num_partitions=2, replication_factor=1)])["orders"].result(30)

    p = Producer({"bootstrap.servers": kafka_broker, "partitioner": "murmur2_random", "linger.ms": 5})
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(200)}
    for k, v in sent.items():
        p.produce("orders", value=v, key=k, headers=[("trace", k)])
    assert p.flush(30) == 0

    c = KafkaConsumer(bootstrap_servers=kafka_broker, auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=5000, group_id=None)
    c.assign([TopicPartition("orders", 0), TopicPartition("orders", 1)])
    got = {}
    for msg in c:
        got[msg.key] = (msg.value, msg.partition, dict(msg.headers))
        if len(got) == len(sent):
            break
    c.close()
    assert {k: v[0] for k, v in got.items()} == sent
    from logstore.client import partition_for_key
    for k, (_v, part, headers) in got.items():
        assert part == partition_for_key(k, 2)  # librdkafka's murmur2_random = the Java client's placement
        assert headers == {"trace": k}


def test_each_test_gets_its_own_broker_and_dir(kafka_broker_process, tmp_path) -> None:
    assert kafka_broker_process.alive()
    assert kafka_broker_process.data_dir.startswith(str(tmp_path))
    assert os.path.isdir(kafka_broker_process.data_dir)
    code = kafka_broker_process.stop()
    assert not kafka_broker_process.alive()
    assert code is not None


def test_start_broker_reports_a_broker_that_cannot_start(tmp_path) -> None:
    from broker.pytest_plugin import start_broker
    with pytest.raises(RuntimeError, match="exited with code"):
        start_broker(str(tmp_path / "d"), overrides={"no.such.setting": "1"}, timeout=30)


def test_plugin_is_registered_and_imports_nothing_heavy(tmp_path) -> None:
    probe = ("import sys, broker.pytest_plugin as p; "
             "heavy = [m for m in ('logstore', 'kio', 'broker.server', 'broker.cli', 'numpy') if m in sys.modules]; "
             "print(heavy)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out
    test = tmp_path / f"test_probe_{uuid.uuid4().hex[:6]}.py"
    test.write_text("def test_nothing():\n    pass\n")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "--fixtures", "-p", "no:cacheprovider", str(test)],
                         capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert "kafka_broker -- " in res.stdout and "kafka_broker_process -- " in res.stdout, res.stdout[-2000:]
