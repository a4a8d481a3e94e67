"""The `logstore` console script against a live broker (a real `logstore serve` process on a free
port): exact output shapes and exit codes of topics, configs, console-producer,
console-consumer and consumer-groups, including each error case."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import uuid

import pytest

from broker.pytest_plugin import start_broker
from logstore.client import partition_for_key
from .cli_helpers import LOGSTORE, one_error_line, run



@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(str(tmp_path_factory.mktemp("cli-broker") / "data"),
                     overrides={"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "4"})
    yield b
    b.stop()


@pytest.fixture
def bs(broker) -> list[str]:
    return ["--bootstrap-server", broker.bootstrap]


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"




def test_topics_lifecycle(bs, topic) -> None:
    p = run("topics", *bs, "--create", "--topic", topic, "--partitions", "3", "--replication-factor", "1",
            "--config", "retention.ms=3600000", "--config", "segment.bytes=1048576")
    assert (p.returncode, p.stdout, p.stderr) == (0, f"Created topic {topic}.\n", "")
    assert topic in run("topics", *bs, "--list").stdout.splitlines()
    p = run("topics", *bs, "--describe", "--topic", topic)
    lines = p.stdout.splitlines()
    assert re.fullmatch(rf"Topic: {topic}\tTopicId: [A-Za-z0-9_-]{{22}}\tPartitionCount: 3\tReplicationFactor: 1\t"
                        r"Configs: retention\.ms=3600000,segment\.bytes=1048576", lines[0]), lines[0]
    assert lines[1:] == [f"\tTopic: {topic}\tPartition: {i}\tLeader: 0\tReplicas: 0\tIsr: 0\tElr: N/A\t"
                         "LastKnownElr: N/A" for i in range(3)]
    p = run("topics", *bs, "--alter", "--topic", topic, "--partitions", "4")
    assert (p.returncode, p.stdout) == (0, "")
    assert "PartitionCount: 4" in run("topics", *bs, "--describe", "--topic", topic).stdout
    p = run("topics", *bs, "--delete", "--topic", topic)
    assert (p.returncode, p.stdout) == (0, "")
    deadline = time.monotonic() + 10
    while topic in run("topics", *bs, "--list").stdout.splitlines():
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_topic_errors(bs, topic) -> None:
    run("topics", *bs, "--create", "--topic", topic)
    assert one_error_line(run("topics", *bs, "--create", "--topic", topic)) == \
        f"Error while executing topic command : Topic '{topic}' already exists."
    assert run("topics", *bs, "--create", "--topic", topic, "--if-not-exists").returncode == 0
    assert one_error_line(run("topics", *bs, "--describe", "--topic", "no-such-topic")) == \
        "Error while executing topic command : Topic 'no-such-topic' does not exist as expected"
    assert one_error_line(run("topics", *bs, "--delete", "--topic", "no-such-topic")) == \
        "Error while executing topic command : Topic 'no-such-topic' does not exist as expected"
    line = one_error_line(run("topics", *bs, "--alter", "--topic", topic, "--partitions", "1"))
    assert line.startswith("Error while executing topic command : ")
    line = one_error_line(run("topics", *bs, "--create", "--topic", topic + "x", "--config", "no.such.config=1"))
    assert line.startswith("Error while executing topic command : ") and "no.such.config" in line
    line = one_error_line(run("topics", *bs, "--create", "--topic", topic + "y", "--replication-factor", "2"))
    assert line.startswith("Error while executing topic command : ")


def test_broker_unreachable_names_the_address() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for cmd in (["topics", "--list"], ["consumer-groups", "--list"], ["configs", "--describe", "--topic", "x"]):
        line = one_error_line(run(cmd[0], "--bootstrap-server", f"127.0.0.1:{port}", *cmd[1:]))
        assert f"cannot connect to broker at 127.0.0.1:{port}" in line, line
    line = one_error_line(run("topics", "--bootstrap-server", "localhost", "--list"))
    assert "invalid bootstrap server 'localhost': expected HOST:PORT" in line


def test_data_dir_held_by_the_broker_is_one_line(broker) -> None:
    line = one_error_line(run("topics", "--data-dir", broker.data_dir, "--list"))
    assert "is already open in another process" in line and f"pid {broker.pid}" in line


def test_configs(bs, topic) -> None:
    run("topics", *bs, "--create", "--topic", topic)
    p = run("configs", *bs, "--alter", "--entity-type", "topics", "--entity-name", topic,
            "--add-config", "retention.ms=1000,max.message.bytes=2000")
    assert (p.returncode, p.stdout) == (0, f"Completed updating config for topic {topic}.\n")
    p = run("configs", *bs, "--describe", "--entity-type", "topics", "--entity-name", topic)
    assert p.stdout.splitlines()[0] == f"Dynamic configs for topic {topic} are:"
    body = p.stdout.splitlines()[1:]
    assert len(body) == 2
    assert body[0].startswith("  max.message.bytes=2000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:"
                              "max.message.bytes=2000")
    assert body[1].startswith("  retention.ms=1000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=1000")
    p = run("configs", *bs, "--alter", "--entity-type", "topics", "--entity-name", topic,
            "--delete-config", "retention.ms")
    assert p.returncode == 0
    p = run("configs", *bs, "--describe", "--entity-type", "topics", "--entity-name", topic)
    assert len(p.stdout.splitlines()) == 2
    assert "Configs: max.message.bytes=2000" in run("topics", *bs, "--describe", "--topic", topic).stdout
    assert one_error_line(run("configs", *bs, "--alter", "--entity-type", "topics", "--entity-name", topic,
                              "--delete-config", "retention.ms")) == "Invalid config(s): retention.ms"
    assert one_error_line(run("configs", *bs, "--describe", "--entity-type", "topics", "--entity-name",
                              "no-such-topic")) == "Topic 'no-such-topic' does not exist"
    assert one_error_line(run("configs", *bs, "--alter", "--entity-type", "topics", "--entity-name",
                              "no-such-topic", "--add-config", "retention.ms=1")) == "Topic 'no-such-topic' does not exist"


def test_console_roundtrip_keyed_partitioning(bs, broker, topic) -> None:
    run("topics", *bs, "--create", "--topic", topic, "--partitions", "3")
    lines = "".join(f"key{i}:value {i}\n" for i in range(30))
    p = run("console-producer", *bs, "--topic", topic, "--property", "parse.key=true",
            "--property", "key.separator=:", stdin=lines)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    p = run("console-consumer", *bs, "--topic", topic, "--from-beginning", "--max-messages", "30",
            "--property", "print.key=true", "--property", "print.partition=true", "--timeout-ms", "10000")
    assert p.returncode == 0 and p.stderr == "Processed a total of 30 messages\n"
    got = set(p.stdout.splitlines())
    assert got == {f"Partition:{partition_for_key(f'key{i}'.encode(), 3)}\tkey{i}\tvalue {i}" for i in range(30)}
    # without --from-beginning a consumer starts at the end
    p = run("console-consumer", *bs, "--topic", topic, "--timeout-ms", "700")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "Processed a total of 0 messages\n")


def test_console_errors(bs, topic) -> None:
    assert one_error_line(run("console-consumer", *bs, "--topic", "no-such-topic-zz", "--timeout-ms", "100")) \
        .startswith("ERROR ")
    assert one_error_line(run("console-consumer", *bs, "--topic", "x", "--offset", "3")) == \
        "ERROR The partition is required when offset is specified."
    # as with --data-dir (tests/test_cli_offline.py): the same error for a negative offset
    assert one_error_line(run("console-consumer", *bs, "--topic", topic, "--partition", "0", "--offset", "-5",
                              "--timeout-ms", "100")) == (
        "ERROR The provided offset value '-5' is incorrect. Valid values are 'earliest', 'latest', or a "
        "non-negative long.")
    line = one_error_line(run("console-producer", "--bootstrap-server", "127.0.0.1:1", "--topic", "x", stdin="a\n"))
    assert "cannot connect to broker at 127.0.0.1:1" in line


def test_groups_describe_reset_delete(bs, topic) -> None:
    group = f"g-{topic}"
    run("topics", *bs, "--create", "--topic", topic, "--partitions", "2")
    run("console-producer", *bs, "--topic", topic, "--property", "parse.key=true", "--property",
        "key.separator=:", stdin="".join(f"k{i}:v{i}\n" for i in range(20)))
    p = run("console-consumer", *bs, "--topic", topic, "--group", group, "--from-beginning", "--max-messages", "20",
            "--timeout-ms", "15000")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 20, p.stderr
    assert group in run("consumer-groups", *bs, "--list").stdout.splitlines()
    ends = {part: sum(1 for i in range(20) if partition_for_key(f"k{i}".encode(), 2) == part) for part in (0, 1)}

    p = run("consumer-groups", *bs, "--describe", "--group", group)
    assert p.returncode == 0
    assert p.stderr == f"\nConsumer group '{group}' has no active members.\n"
    w = max(15, len(group))
    wt = max(15, len(topic))
    expected = "\n" + "\n".join(
        [f"{'GROUP':<{w}} {'TOPIC':<{wt}} {'PARTITION':<10} {'CURRENT-OFFSET':<15} {'LOG-END-OFFSET':<15} "
         f"{'LAG':<15} {'CONSUMER-ID':<15} {'HOST':<15} CLIENT-ID"]
        + [f"{group:<{w}} {topic:<{wt}} {part:<10} {ends[part]:<15} {ends[part]:<15} {0:<15} {'-':<15} {'-':<15} -"
           for part in (0, 1)]) + "\n\n"
    assert p.stdout == expected

    p = run("consumer-groups", *bs, "--reset-offsets", "--group", group, "--topic", topic, "--to-earliest")
    assert p.stdout.splitlines()[1].split() == ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]
    rows = [r for r in run("consumer-groups", *bs, "--describe", "--group", group).stdout.splitlines()[2:] if r]
    assert [r.split()[3] for r in rows] == [str(ends[0]), str(ends[1])]  # a dry run changes nothing
    p = run("consumer-groups", *bs, "--reset-offsets", "--group", group, "--topic", f"{topic}:1", "--to-offset",
            "1", "--execute")
    assert p.stdout.splitlines()[2].split() == [group, topic, "1", "1"]
    rows = [r for r in run("consumer-groups", *bs, "--describe", "--group", group).stdout.splitlines()[2:] if r]
    assert rows[1].split()[:6] == [group, topic, "1", "1", str(ends[1]), str(ends[1] - 1)]
    # the group resumes from the reset offset
    p = run("console-consumer", *bs, "--topic", topic, "--group", group, "--timeout-ms", "3000")
    assert len(p.stdout.splitlines()) == ends[1] - 1, p.stderr

    p = run("consumer-groups", *bs, "--delete", "--group", group)
    assert (p.returncode, p.stdout) == (0, f"Deletion of requested consumer groups ('{group}') was successful.\n")
    assert group not in run("consumer-groups", *bs, "--list").stdout.splitlines()
    assert one_error_line(run("consumer-groups", *bs, "--describe", "--group", group)) == \
        f"Error: Consumer group '{group}' does not exist."


def test_describe_shows_active_members(bs, topic) -> None:
    from kafka import KafkaConsumer
    group = f"live-{topic}"
    run("topics", *bs, "--create", "--topic", topic, "--partitions", "2")
    c = KafkaConsumer(topic, bootstrap_servers=bs[1], group_id=group, client_id="my-client",
                      auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500)
    try:
        deadline = time.monotonic() + 30
        while not c.assignment():
            assert time.monotonic() < deadline, "kafka-python consumer never got an assignment"
            c.poll(timeout_ms=200)
        p = run("consumer-groups", *bs, "--describe", "--group", group)
        rows = [ln.split() for ln in p.stdout.splitlines()[2:] if ln.strip()]
        assert [r[2] for r in rows] == ["0", "1"]
        assert [r[3] for r in rows] == ["-", "-"]  # nothing committed yet
        for r in rows:
            assert r[6].startswith("my-client-") and r[8] == "my-client"
        assert p.stderr == ""
        # a group with members cannot be deleted or reset
        line = one_error_line(run("consumer-groups", *bs, "--delete", "--group", group))
        assert "NON_EMPTY_GROUP" in line
        line = one_error_line(run("consumer-groups", *bs, "--reset-offsets", "--group", group, "--topic", topic,
                                  "--to-earliest", "--execute"))
        assert line == f"Error: Assignments can only be reset if the group '{group}' is inactive, but the current " \
                       "state is Stable."
    finally:
        c.close()


def test_console_consumer_stops_cleanly_on_sigterm(bs, topic) -> None:
    import signal
    run("topics", *bs, "--create", "--topic", topic)
    run("console-producer", *bs, "--topic", topic, stdin="one\ntwo\n")
    proc = subprocess.Popen([LOGSTORE, "console-consumer", *bs, "--topic", topic, "--from-beginning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "one\n"
        assert proc.stdout.readline() == "two\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert err == "Processed a total of 2 messages\n"
