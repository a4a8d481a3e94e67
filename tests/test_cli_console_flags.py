"""console-producer / console-consumer flags and behaviours matched to Kafka's tools: KIP-798
headers (`parse.headers`), `--sync` / `--timeout` / `--broker-list` / `--max-block-ms`, consumer
properties and config files (group.id, auto.offset.reset, client.id), `--include`, `--formatter`,
`--skip-message-on-error`, the error for a corrupt record batch and for an illegal topic name.
The installed script runs as a subprocess over real log dirs (made with `logstore.open`) and
against a real broker process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

import logstore
from broker.pytest_plugin import start_broker
from logstore import records as R
from .cli_helpers import LOGSTORE, one_error_line, run

TS = (int(time.time()) - 3600) * 1000




def batches(data: str, topic: str, partition: int = 0) -> list[R.BatchHeader]:
    with open(os.path.join(data, f"{topic}-{partition}", "00000000000000000000.log"), "rb") as f:
        return [h for _, h in R.iter_headers(f.read())]


def records(data: str, topic: str, partition: int = 0) -> list[tuple]:
    with logstore.open(data) as s:
        return [(r.key, r.value, [tuple(h) for h in r.headers]) for r in s.partition(topic, partition).read(0)]


def flip_byte_in_batch(log: str, batch_index: int) -> None:
    with open(log, "r+b") as f:
        pos = [p for p, _ in R.iter_headers(f.read())][batch_index] + 70  # inside the records, under the CRC
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.fixture
def data(tmp_path) -> str:
    d = str(tmp_path / "data")
    with logstore.open(d) as s:
        s.create_topic("t")
    return d


# -- console-producer: KIP-798 headers ------------------------------------------------------------

def test_producer_parses_headers_key_and_value(data) -> None:
    lines = "h1:v1,h2:v2\tk1\tval 1\nh3:NIL\tNIL\tval 2\nNIL\tk3\tval:3,x\n"
    p = run("console-producer", "--data-dir", data, "--topic", "t", "--property", "parse.headers=true",
            "--property", "parse.key=true", "--property", "null.marker=NIL", stdin=lines)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    assert records(data, "t") == [
        (b"k1", b"val 1", [("h1", b"v1"), ("h2", b"v2")]),
        (None, b"val 2", [("h3", None)]),  # a header value (and a key) equal to null.marker is null
        (b"k3", b"val:3,x", []),  # headers part equal to null.marker: no headers
    ]
    assert len(batches(data, "t")) == 1  # without --sync the lines go out as one batch


def test_producer_custom_header_separators_and_errors(data) -> None:
    p = run("console-producer", "--data-dir", data, "--topic", "t", "--property", "parse.headers=true",
            "--property", "headers.delimiter=|", "--property", "headers.separator=;",
            "--property", "headers.key.separator==", stdin="a=1;b=2|hello\nc=3;oops|world\nnot reached|x\n")
    # Kafka's message for a pair without the key separator; the line before it was still produced
    assert one_error_line(p) == "ERROR No header key separator found in pair 'oops' on line number 2"
    assert records(data, "t") == [(None, b"hello", [("a", b"1"), ("b", b"2")])]

    p = run("console-producer", "--data-dir", data, "--topic", "t", "--property", "parse.headers=true",
            stdin="no delimiter here\n")
    assert one_error_line(p) == "ERROR No headers delimiter found on line number 1: 'no delimiter here'"

    # ignore.error: a pair without a separator is a header without value, a line without the
    # delimiter is all value
    p = run("console-producer", "--data-dir", data, "--topic", "t", "--property", "parse.headers=true",
            "--property", "ignore.error=true", stdin="x:1,lonely\tv\nplain line\n")
    assert p.returncode == 0, p.stderr
    assert records(data, "t")[1:] == [(None, b"v", [("x", b"1"), ("lonely", None)]), (None, b"plain line", [])]

    assert one_error_line(run("console-producer", "--data-dir", data, "--topic", "t", "--property",
                              "headers.separator=:", stdin="x\n")) == \
        "ERROR headers.separator and headers.key.separator may not be equal"


# -- console-producer: --sync, --timeout, properties ----------------------------------------------

def test_producer_sync_timeout_and_producer_properties(data) -> None:
    p = run("console-producer", "--data-dir", data, "--topic", "t", "--sync", "--max-block-ms", "5000",
            "--request-required-acks", "1", "--producer-property", "foo.bar=1", stdin="a\nb\nc\n")
    assert (p.returncode, p.stdout) == (0, "")
    assert p.stderr == "WARN Producer properties this tool does not use were ignored: foo.bar\n"
    assert [h.record_count for h in batches(data, "t")] == [1, 1, 1]  # --sync: one request per record
    # --timeout is linger.ms: 0 sends each record as soon as it is read
    p = run("console-producer", "--data-dir", data, "--topic", "t", "--timeout", "0", stdin="d\ne\n")
    assert (p.returncode, p.stderr) == (0, "")
    assert [h.record_count for h in batches(data, "t")] == [1, 1, 1, 1, 1]
    assert one_error_line(run("console-producer", "--data-dir", data, "--topic", "t", "--producer-property",
                              "acks=2", stdin="x\n")) == \
        "ERROR Invalid value 2 for configuration acks: String must be one of: all, -1, 0, 1"


# -- console-consumer on a log dir ------------------------------------------------------------------

def test_consumer_include_formatter_and_topic_checks(data) -> None:
    with logstore.open(data) as s:
        for t in ("a1", "a2", "b"):
            s.create_topic(t)
            s.partition(t, 0).append([(t.encode(), f"{t}-v".encode(), [], TS)])
    p = run("console-consumer", "--data-dir", data, "--include", "a.*", "--from-beginning", "--timeout-ms", "300",
            "--formatter", "org.apache.kafka.tools.consumer.DefaultMessageFormatter", "--skip-message-on-error",
            "--property", "print.key=true")
    assert p.returncode == 0, p.stderr
    assert sorted(p.stdout.splitlines()) == ["a1\ta1-v", "a2\ta2-v"]
    assert p.stderr == "Processed a total of 2 messages\n"
    assert one_error_line(run("console-consumer", "--data-dir", data, "--from-beginning")) == \
        "ERROR Exactly one of include/topic is required."
    line = one_error_line(run("console-consumer", "--data-dir", data, "--topic", "t", "--formatter",
                              "com.example.MyFormatter"))
    assert line.startswith("ERROR Formatter class 'com.example.MyFormatter' is not available")


def test_consumer_properties_group_and_reset(data, tmp_path) -> None:
    with logstore.open(data) as s:
        s.partition("t", 0).append([(None, b"one", [], TS), (None, b"two", [], TS)])
    # group.id acts as --group, auto.offset.reset=earliest as --from-beginning
    p = run("console-consumer", "--data-dir", data, "--topic", "t", "--consumer-property", "group.id=g",
            "--consumer-property", "auto.offset.reset=earliest", "--consumer-property", "fetch.min.bytes=1",
            "--timeout-ms", "300")
    assert p.stdout == "one\ntwo\n"
    assert p.stderr == ("WARN Consumer properties this tool does not use were ignored: fetch.min.bytes\n"
                        "Processed a total of 2 messages\n")
    with logstore.open(data) as s:
        s.partition("t", 0).append([(None, b"three", [], TS)])
    cfg = tmp_path / "consumer.properties"
    cfg.write_text("# the same group, from a file\ngroup.id = g\nauto.offset.reset: none\n")
    p = run("console-consumer", "--data-dir", data, "--topic", "t", "--consumer.config", str(cfg),
            "--timeout-ms", "300")
    assert (p.stdout, p.stderr) == ("three\n", "Processed a total of 1 messages\n")  # resumed from g's commit

    assert one_error_line(run("console-consumer", "--data-dir", data, "--topic", "t", "--group", "a",
                              "--consumer-property", "group.id=b")) == (
        "ERROR The group ids provided in different places (directly using '--group', via '--consumer-property', "
        "or via '--consumer.config') do not match. Detected group ids: 'a', 'b'")
    assert one_error_line(run("console-consumer", "--data-dir", data, "--topic", "t", "--from-beginning",
                              "--consumer-property", "auto.offset.reset=latest")) == (
        "ERROR Can't simultaneously specify --from-beginning and 'auto.offset.reset=latest', please remove one "
        "option")
    p = run("console-consumer", "--data-dir", data, "--topic", "t", "--consumer-property", "auto.offset.reset=none",
            "--timeout-ms", "300")
    assert p.returncode == 1
    assert p.stderr == ("Processed a total of 0 messages\n"
                        "ERROR Undefined offset with no reset policy for partitions: [t-0]\n")


def test_consumer_corrupt_batch_on_a_log_dir(data) -> None:
    with logstore.open(data) as s:
        for i in range(3):
            s.partition("t", 0).append([(None, f"v{i}{j}".encode(), [], TS) for j in range(3)])
    log = os.path.join(data, "t-0", "00000000000000000000.log")
    flip_byte_in_batch(log, 1)
    p = run("console-consumer", "--data-dir", data, "--topic", "t", "--from-beginning", "--timeout-ms", "300")
    assert p.returncode == 1
    assert p.stdout == "v00\nv01\nv02\n"  # what came before the bad batch is printed, as Kafka's consumer does
    lines = p.stderr.splitlines()
    assert lines[0] == "Processed a total of 3 messages"
    assert lines[1].startswith("ERROR Record batch for partition t-0 at offset 3 is invalid, cause: CRC mismatch "
                               f"at position {batches(data, 't')[0].size} of {log}: stored 0x")
    assert len(lines) == 2


# -- through a broker ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(str(tmp_path_factory.mktemp("cli-console-broker") / "data"),
                     overrides={"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "2"})
    yield b
    b.stop()


@pytest.fixture
def admin(broker):
    from broker.admin_client import AdminClient
    with AdminClient(broker.bootstrap) as c:
        yield c


def test_producer_flags_and_headers_through_broker(broker, admin) -> None:
    topic = f"h-{uuid.uuid4().hex[:8]}"
    admin.create_topic(topic, 1)
    p = run("console-producer", "--broker-list", broker.bootstrap, "--topic", topic, "--sync",
            "--request-required-acks", "1", "--max-block-ms", "10000", "--timeout", "50",
            "--property", "parse.headers=true", "--property", "parse.key=true",
            stdin="h1:v1,h2:v2\tk\tvalue\n\tk2\tno headers?\n")
    # a headers part that is empty holds one pair without a key separator: Kafka's error
    assert one_error_line(p) == "ERROR No header key separator found in pair '' on line number 2"
    p = run("console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", topic, "--from-beginning",
            "--max-messages", "1", "--timeout-ms", "10000", "--property", "print.headers=true",
            "--property", "print.key=true")
    assert (p.returncode, p.stdout) == (0, "h1:v1,h2:v2\tk\tvalue\n"), p.stderr


def test_illegal_topic_name_names_topic_and_reason(broker) -> None:
    reason = ("(Topic name is invalid: 'bad name' contains one or more characters other than ASCII alphanumerics, "
              "'.', '_' and '-')")
    assert one_error_line(run("console-producer", "--bootstrap-server", broker.bootstrap, "--topic", "bad name",
                              stdin="x\n")) == f"ERROR Invalid topics: [bad name] {reason}"
    assert one_error_line(run("console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", "bad name",
                              "--timeout-ms", "100")) == f"ERROR Invalid topics: [bad name] {reason}"


def test_corrupt_batch_through_broker_names_partition_and_offset(broker, admin) -> None:
    topic = f"c-{uuid.uuid4().hex[:8]}"
    admin.create_topic(topic, 1)
    for i in range(3):
        admin.produce(topic, 0, R.build_batch([(None, f"v{i}{j}".encode()) for j in range(3)]))
    flip_byte_in_batch(os.path.join(broker.data_dir, f"{topic}-0", "00000000000000000000.log"), 2)
    p = run("console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", topic, "--from-beginning",
            "--timeout-ms", "3000")
    assert p.returncode == 1
    assert p.stdout.splitlines() == [f"v{i}{j}" for i in range(2) for j in range(3)]
    lines = p.stderr.splitlines()
    assert lines[0] == "Processed a total of 6 messages"
    assert lines[1].startswith(f"ERROR Record batch for partition {topic}-0 at offset 6 is invalid, cause: "
                               "CRC mismatch: stored 0x"), lines
    assert len(lines) == 2


def test_include_with_group_and_client_id_through_broker(broker, admin) -> None:
    prefix = f"inc-{uuid.uuid4().hex[:8]}"
    group = f"g-{prefix}"
    for n in (1, 2):
        admin.create_topic(f"{prefix}-{n}", 1)
        admin.produce(f"{prefix}-{n}", 0, R.build_batch([(None, f"{n}-a".encode()), (None, f"{n}-b".encode())]))
    admin.create_topic(f"{prefix}x", 1)  # does not match the whole pattern
    admin.produce(f"{prefix}x", 0, R.build_batch([(None, b"not me")]))
    proc = subprocess.Popen([LOGSTORE, "console-consumer", "--bootstrap-server", broker.bootstrap,
                             "--include", f"{prefix}-[0-9]+", "--consumer-property", f"group.id={group}",
                             "--consumer-property", "client.id=my-console", "--consumer-property",
                             "auto.offset.reset=earliest"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = [proc.stdout.readline() for _ in range(4)]
        assert sorted(got) == ["1-a\n", "1-b\n", "2-a\n", "2-b\n"]
        members = admin.describe_group(group)["members"]
        assert [m["client_id"] for m in members] == ["my-console"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, out, err) == (0, "", "Processed a total of 4 messages\n")
    assert admin.offset_fetch(group) == {(f"{prefix}-1", 0): 2, (f"{prefix}-2", 0): 2}  # committed on exit
