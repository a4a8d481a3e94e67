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


def test_broker_stops_itself_when_its_test_process_dies(tmp_path) -> None:
    """A test process killed with SIGKILL (a CI timeout) cannot stop its brokers: each notices
    it lost its parent, shuts down cleanly and frees its log dir."""
    import signal
    import time
    data = tmp_path / "d"
    script = ("import sys, time; from broker.pytest_plugin import start_broker; "
              f"b = start_broker({str(data)!r}); print(b.pid, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait(30)
    def gone() -> bool:   # exited (a zombie until whoever adopted it reaps it)
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if gone():
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"broker {pid} outlived its test process by 30 s")
    import logstore
    with logstore.open(str(data)) as store:   # the lock is free and the stop was clean
        logs = "".join(p.read_text() for p in tmp_path.glob("logstore-broker-*.log"))
        assert store.clean_open, logs[-3000:]


def test_sigterm_right_after_start_is_a_clean_stop(tmp_path) -> None:
    """The broker answers before its start-up has finished (the group coordinator loads after the
    listener opens): a SIGTERM in that window still flushes and writes the clean-shutdown marker."""
    from broker.pytest_plugin import start_broker
    import logstore
    for i in range(3):
        data = str(tmp_path / f"d{i}")
        b = start_broker(data)
        assert b.stop() == 0, b.log()[-2000:]
        with logstore.open(data) as store:
            assert store.clean_open, b.log()[-2000:]
