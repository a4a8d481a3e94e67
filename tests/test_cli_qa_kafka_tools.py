"""QA pass against Apache Kafka's own tools (TopicCommand, ConsumerGroupCommandOptions,
ConsoleProducer, ConsoleConsumer): flags a Kafka user's scripts pass that we used to reject, and
time limits that used to be ignored against a broker that accepts connections but never answers.

  - `--command-config FILE` on `topics`, `configs` and `consumer-groups` (kafka-topics.sh,
    kafka-configs.sh and kafka-consumer-groups.sh all take it): its `client.id` is used, a
    non-PLAINTEXT `security.protocol` is refused in one line.
  - `consumer-groups --timeout MS` (Kafka's admin-call timeout): accepted, and it bounds the wait.
  - `topics --describe --topic-id ID` (and `--partition-size-limit-per-response N`), with Kafka's
    `TopicId '..' does not exist as expected` and `--if-exists`.
  - `console-producer --max-block-ms MS` and `console-consumer --timeout-ms MS` bound the wait for
    a broker that never answers (Kafka's producer gives up after max.block.ms, its consumer after
    timeout-ms); they used to wait the 30 s --command-timeout.

Every test runs the installed `logstore` script as a subprocess against a real broker process (or
a silent socket that accepts and never answers)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from broker.pytest_plugin import start_broker
from .cli_helpers import one_error_line, run

TOPIC_ERR = "Error while executing topic command : "


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(str(tmp_path_factory.mktemp("cli-qa-kafka-tools") / "data"),
                     overrides={"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "2"})
    yield b
    b.stop()


@pytest.fixture
def silent():
    """An address that accepts TCP connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield f"127.0.0.1:{s.getsockname()[1]}"
    s.close()


def _topic_id(broker, topic: str) -> str:
    first = run("topics", "--bootstrap-server", broker.bootstrap, "--describe", "--topic", topic).stdout.splitlines()[0]
    return dict(f.split(": ", 1) for f in first.split("\t"))["TopicId"]


# -- --command-config on the admin tools ------------------------------------------------------------

def test_command_config_accepted_by_topics_configs_and_consumer_groups(broker, tmp_path) -> None:
    cfg = tmp_path / "admin.properties"
    cfg.write_text("client.id=qa-admin\nsecurity.protocol=PLAINTEXT\n")
    bs = ["--bootstrap-server", broker.bootstrap, "--command-config", str(cfg)]
    p = run("topics", *bs, "--create", "--topic", "cc", "--partitions", "2")
    assert (p.returncode, p.stdout, p.stderr) == (0, "Created topic cc.\n", "")
    p = run("topics", *bs, "--list")
    assert p.returncode == 0 and "cc" in p.stdout.splitlines(), p.stderr
    p = run("configs", *bs, "--alter", "--entity-type", "topics", "--entity-name", "cc", "--add-config",
            "retention.ms=1000")
    assert (p.returncode, p.stdout) == (0, "Completed updating config for topic cc.\n"), p.stderr
    p = run("configs", *bs, "--describe", "--entity-type", "topics", "--entity-name", "cc")
    assert p.returncode == 0 and "  retention.ms=1000 " in p.stdout, p.stderr
    p = run("consumer-groups", *bs, "--list")
    assert (p.returncode, p.stderr) == (0, ""), p.stderr


def test_command_config_rejects_other_security_protocols_in_one_line(broker, tmp_path) -> None:
    cfg = tmp_path / "sasl.properties"
    cfg.write_text("security.protocol=SASL_SSL\n")
    for tool, args in (("topics", ["--list"]), ("consumer-groups", ["--list"]),
                       ("configs", ["--describe", "--entity-type", "topics"])):
        line = one_error_line(run(tool, "--bootstrap-server", broker.bootstrap, "--command-config", str(cfg), *args))
        assert f"security.protocol=SASL_SSL in {cfg} is not supported" in line, (tool, line)


def test_command_config_missing_file_is_one_line(broker, tmp_path) -> None:
    line = one_error_line(run("topics", "--bootstrap-server", broker.bootstrap, "--command-config",
                              str(tmp_path / "nope.properties"), "--list"))
    assert line.startswith(f"{TOPIC_ERR}cannot read --command-config file "), line


# -- consumer-groups --timeout --------------------------------------------------------------------

def test_consumer_groups_timeout_flag_accepted(broker) -> None:
    p = run("consumer-groups", "--bootstrap-server", broker.bootstrap, "--list", "--timeout", "5000")
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    p = run("consumer-groups", "--bootstrap-server", broker.bootstrap, "--describe", "--group", "nope-qa",
            "--timeout", "5000")
    assert one_error_line(p) == "Error: Consumer group 'nope-qa' does not exist."


def test_consumer_groups_timeout_bounds_the_wait(silent) -> None:
    t0 = time.monotonic()
    line = one_error_line(run("consumer-groups", "--bootstrap-server", silent, "--list", "--timeout", "1000",
                              timeout=20))
    assert time.monotonic() - t0 < 10
    assert line == f"Error: broker at {silent} did not answer within 1s"


# -- topics --describe --topic-id ------------------------------------------------------------------

def test_describe_by_topic_id(broker) -> None:
    bs = ["--bootstrap-server", broker.bootstrap]
    assert run("topics", *bs, "--create", "--topic", "byid", "--partitions", "2").returncode == 0
    tid = _topic_id(broker, "byid")
    p = run("topics", *bs, "--describe", "--topic-id", tid, "--partition-size-limit-per-response", "100")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"Topic: byid\tTopicId: {tid}\tPartitionCount: 2\t"), lines
    assert [ln.split("\t")[2] for ln in lines[1:]] == ["Partition: 0", "Partition: 1"]
    # both given: the id wins, with Kafka's note
    p = run("topics", *bs, "--describe", "--topic-id", tid, "--topic", "other")
    assert p.returncode == 0 and p.stdout.splitlines()[0].startswith("Only topic id will be used"), p.stdout
    assert p.stdout.splitlines()[1].startswith("Topic: byid\t")


def test_describe_unknown_topic_id(broker) -> None:
    bs = ["--bootstrap-server", broker.bootstrap]
    unknown = "AQAAAAAAAAAAAAAAAAAAAA"
    assert one_error_line(run("topics", *bs, "--describe", "--topic-id", unknown)) == \
        f"{TOPIC_ERR}TopicId '{unknown}' does not exist as expected"
    p = run("topics", *bs, "--describe", "--topic-id", unknown, "--if-exists")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    assert one_error_line(run("topics", *bs, "--describe", "--if-exists")) == \
        f"{TOPIC_ERR}--topic or --topic-id is required to describe a topic"
    assert one_error_line(run("topics", *bs, "--describe", "--topic-id", "zzz")).startswith(
        f"{TOPIC_ERR}Unable to convert base64 string to UUID")


# -- time limits against a broker that never answers -------------------------------------------------

def test_console_producer_max_block_ms_bounds_the_wait(silent) -> None:
    t0 = time.monotonic()
    p = run("console-producer", "--bootstrap-server", silent, "--topic", "t", "--max-block-ms", "1000",
            stdin="x\n", timeout=20)
    assert time.monotonic() - t0 < 10
    assert one_error_line(p) == f"ERROR broker at {silent} did not answer within 1s"


def test_console_consumer_timeout_ms_bounds_the_wait(silent) -> None:
    t0 = time.monotonic()
    p = run("console-consumer", "--bootstrap-server", silent, "--topic", "t", "--timeout-ms", "1000", timeout=20)
    assert time.monotonic() - t0 < 10
    assert p.returncode == 1 and f"ERROR broker at {silent} did not answer within 1s" in p.stderr, p.stderr


def test_timeouts_do_not_cut_a_normal_run_short(broker) -> None:
    bs = ["--bootstrap-server", broker.bootstrap]
    assert run("topics", *bs, "--create", "--topic", "tmo").returncode == 0
    p = run("console-producer", *bs, "--topic", "tmo", "--max-block-ms", "5000", stdin="a\nb\n")
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    p = run("console-consumer", *bs, "--topic", "tmo", "--from-beginning", "--timeout-ms", "1500")
    assert (p.returncode, p.stdout) == (0, "a\nb\n"), p.stderr
    assert "Processed a total of 2 messages" in p.stderr


# -- console-consumer --group commits the position it started from ------------------------------------

def test_new_group_commits_its_start_position_so_later_records_are_not_skipped(broker) -> None:
    """Kafka's auto-commit stores the position auto.offset.reset gave (latest) even when nothing
    was consumed: the group then shows CURRENT-OFFSET = LOG-END-OFFSET, and the next run of the
    group reads what was produced in between. We used to commit nothing, so the next run started
    at the new end and those records were skipped."""
    bs = ["--bootstrap-server", broker.bootstrap]
    assert run("topics", *bs, "--create", "--topic", "late").returncode == 0
    assert run("console-producer", *bs, "--topic", "late", stdin="old\n").returncode == 0
    p = run("console-consumer", *bs, "--topic", "late", "--group", "late-g", "--timeout-ms", "1000")
    assert (p.returncode, p.stdout) == (0, ""), p.stderr
    p = run("consumer-groups", *bs, "--describe", "--group", "late-g")
    rows = [ln.split() for ln in p.stdout.splitlines() if ln.startswith("late-g ")]
    assert [r[:6] for r in rows] == [["late-g", "late", "0", "1", "1", "0"]], p.stdout + p.stderr
    assert run("console-producer", *bs, "--topic", "late", stdin="new\n").returncode == 0
    p = run("console-consumer", *bs, "--topic", "late", "--group", "late-g", "--timeout-ms", "1500")
    assert (p.returncode, p.stdout) == (0, "new\n"), p.stderr


def test_new_group_commits_its_start_position_on_a_data_dir(tmp_path) -> None:
    data = str(tmp_path / "data")
    assert run("topics", "--data-dir", data, "--create", "--topic", "late").returncode == 0
    assert run("console-producer", "--data-dir", data, "--topic", "late", stdin="old\n").returncode == 0
    p = run("console-consumer", "--data-dir", data, "--topic", "late", "--group", "g", "--timeout-ms", "300")
    assert (p.returncode, p.stdout) == (0, ""), p.stderr
    assert run("console-producer", "--data-dir", data, "--topic", "late", stdin="new\n").returncode == 0
    p = run("console-consumer", "--data-dir", data, "--topic", "late", "--group", "g", "--timeout-ms", "300")
    assert (p.returncode, p.stdout) == (0, "new\n"), p.stderr


# -- console-producer: kafka-console-producer.sh's producer-config flags ------------------------------

def test_console_producer_accepts_kafkas_producer_config_flags(broker) -> None:
    bs = ["--bootstrap-server", broker.bootstrap]
    assert run("topics", *bs, "--create", "--topic", "pflags").returncode == 0
    p = run("console-producer", *bs, "--topic", "pflags", "--request-timeout-ms", "3000",
            "--message-send-max-retries", "3", "--retry-backoff-ms", "100", "--metadata-expiry-ms", "300000",
            "--max-memory-bytes", "33554432", "--max-partition-memory-bytes", "16384", "--socket-buffer-size",
            "102400", "--line-reader", "org.apache.kafka.tools.LineMessageReader", stdin="one\ntwo\n")
    assert p.returncode == 0, p.stderr
    # the configs this tool has no use for are reported once, as for --producer-property
    assert p.stderr == ("WARN Producer properties this tool does not use were ignored: buffer.memory, "
                        "metadata.max.age.ms, request.timeout.ms, retries, retry.backoff.ms, send.buffer.bytes\n")
    p = run("console-consumer", *bs, "--topic", "pflags", "--from-beginning", "--max-messages", "2")
    assert (p.returncode, p.stdout) == (0, "one\ntwo\n"), p.stderr


def test_console_producer_line_reader_other_than_the_default_is_refused(broker) -> None:
    p = run("console-producer", "--bootstrap-server", broker.bootstrap, "--topic", "t", "--line-reader",
            "com.example.MyReader", stdin="x\n")
    assert one_error_line(p) == ("ERROR --line-reader com.example.MyReader is not supported: only the default "
                                 "line reader (org.apache.kafka.tools.LineMessageReader) exists here")


# -- console-consumer: deserializers and --formatter-config -------------------------------------------

LONG_DE = "org.apache.kafka.common.serialization.LongDeserializer"
STRING_DE = "org.apache.kafka.common.serialization.StringDeserializer"


@pytest.fixture(scope="module")
def longs(broker) -> str:
    """A topic as Kafka Streams' word count writes it: String keys, 8-byte big-endian Long values,
    and one value that is not 8 bytes."""
    import struct
    from broker.admin_client import AdminClient
    from logstore import records as R
    assert run("topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", "counts").returncode == 0
    with AdminClient(broker.bootstrap) as c:
        c.produce("counts", 0, R.build_batch([(b"kafka", struct.pack(">q", 42), []), (b"bad", b"xyz", []),
                                              (b"neg", struct.pack(">q", -7), []), (None, None, [])]))
    return "counts"


def test_value_deserializer_prints_longs_as_kafka_does(broker, longs, tmp_path) -> None:
    base = ["console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", longs, "--from-beginning",
            "--max-messages", "1", "--property", "print.key=true"]
    # Kafka's quickstart: --property key.deserializer=... --property value.deserializer=...
    p = run(*base, "--property", f"key.deserializer={STRING_DE}", "--property", f"value.deserializer={LONG_DE}")
    assert (p.returncode, p.stdout) == (0, "kafka\t42\n"), p.stderr
    # the flags, and a --formatter-config file, set the same properties
    p = run(*base, "--key-deserializer", STRING_DE, "--value-deserializer", LONG_DE)
    assert (p.returncode, p.stdout) == (0, "kafka\t42\n"), p.stderr
    cfg = tmp_path / "fmt.properties"
    cfg.write_text(f"value.deserializer={LONG_DE}\nprint.key=false\n")
    p = run("console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", longs, "--from-beginning",
            "--max-messages", "1", "--formatter-config", str(cfg))
    assert (p.returncode, p.stdout) == (0, "42\n"), p.stderr


def test_value_deserializer_error_stops_or_skips(broker, longs) -> None:
    base = ["console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", longs, "--from-beginning",
            "--property", "print.key=true", "--value-deserializer", LONG_DE, "--timeout-ms", "1000"]
    p = run(*base)
    assert (p.returncode, p.stdout) == (1, "kafka\t42\n"), p.stderr
    assert p.stderr.splitlines() == [
        "Processed a total of 2 messages",
        "ERROR org.apache.kafka.common.errors.SerializationException: Size of data received by LongDeserializer "
        "is not 8"]
    p = run(*base, "--skip-message-on-error")
    assert (p.returncode, p.stdout) == (0, "kafka\t42\nneg\t-7\nnull\tnull\n"), p.stderr
    assert "skipping this message" in p.stderr and "Processed a total of 4 messages" in p.stderr


def test_unknown_deserializer_is_refused_in_one_line(broker, longs) -> None:
    p = run("console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", longs, "--from-beginning",
            "--value-deserializer", "com.example.AvroDeserializer", "--max-messages", "1")
    assert one_error_line(p).startswith("ERROR value.deserializer com.example.AvroDeserializer is not supported")


# -- configs --entity-type brokers -------------------------------------------------------------------

def test_configs_describe_broker_entities(broker) -> None:
    bs = ["--bootstrap-server", broker.bootstrap]
    # no dynamic broker config here: the headers only, as Kafka prints them
    p = run("configs", *bs, "--describe", "--entity-type", "brokers", "--entity-name", "0")
    assert (p.returncode, p.stdout, p.stderr) == (0, "Dynamic configs for broker 0 are:\n", "")
    p = run("configs", *bs, "--describe", "--entity-type", "brokers")
    assert (p.returncode, p.stdout) == (0, "Dynamic configs for broker 0 are:\n"
                                           "Default configs for brokers in the cluster are:\n"), p.stderr
    p = run("configs", *bs, "--describe", "--entity-type", "brokers", "--entity-default")
    assert (p.returncode, p.stdout) == (0, "Default configs for brokers in the cluster are:\n"), p.stderr
    # --all: every config, sorted by name, in the `  k=v sensitive=.. synonyms={..}` form
    for flags in (["--entity-type", "brokers", "--entity-name", "0"], ["--broker", "0"]):
        p = run("configs", *bs, "--describe", "--all", *flags)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0] == "All configs for broker 0 are:"
        names = [ln.split("=", 1)[0].strip() for ln in lines[1:]]
        assert names == sorted(names) and "log.retention.ms" in names and "num.partitions" in names
        assert all(ln.startswith("  ") and " sensitive=" in ln and " synonyms={" in ln for ln in lines[1:])
        assert "=None " not in p.stdout


def test_configs_broker_entity_errors(broker, tmp_path) -> None:
    bs = ["--bootstrap-server", broker.bootstrap]
    assert one_error_line(run("configs", *bs, "--describe", "--entity-type", "brokers", "--entity-name", "x")) == \
        "The entity name for brokers must be a valid integer broker id, found: x"
    p = run("configs", *bs, "--describe", "--entity-type", "brokers", "--entity-name", "7")
    assert p.stdout == "Dynamic configs for broker 7 are:\n"
    assert one_error_line(p) == "Unexpected broker id, expected 0 or empty string, but received 7"
    assert one_error_line(run("configs", *bs, "--alter", "--entity-type", "brokers", "--entity-name", "0",
                              "--add-config", "log.retention.ms=1")).startswith("broker configs are read-only here")
    assert one_error_line(run("configs", "--data-dir", str(tmp_path / "d"), "--describe", "--broker", "0")) == \
        "broker configs are described by the broker: use --bootstrap-server"


# -- dump-log --max-message-size ------------------------------------------------------------------------

def test_dump_log_accepts_max_message_size(tmp_path) -> None:
    data = str(tmp_path / "data")
    assert run("topics", "--data-dir", data, "--create", "--topic", "t").returncode == 0
    assert run("console-producer", "--data-dir", data, "--topic", "t", stdin="hello\n").returncode == 0
    seg = os.path.join(data, "t-0", "00000000000000000000.log")
    p = run("dump-log", "--files", seg, "--max-message-size", "5000000", "--print-data-log")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1].endswith("payload: hello")


# -- topics --create: the broker's defaults, --replica-assignment -------------------------------------

def test_create_without_partitions_takes_the_brokers_num_partitions(tmp_path) -> None:
    """kafka-topics.sh --create without --partitions / --replication-factor leaves them to the
    broker (num.partitions, default.replication.factor); we used to ask for 1 partition."""
    b = start_broker(str(tmp_path / "data"), overrides={"num.partitions": "3"})
    try:
        bs = ["--bootstrap-server", b.bootstrap]
        p = run("topics", *bs, "--create", "--topic", "dflt")
        assert (p.returncode, p.stdout) == (0, "Created topic dflt.\n"), p.stderr
        first = run("topics", *bs, "--describe", "--topic", "dflt").stdout.splitlines()[0]
        assert "\tPartitionCount: 3\tReplicationFactor: 1\t" in first, first
        # an explicit --partitions still wins
        assert run("topics", *bs, "--create", "--topic", "one", "--partitions", "1").returncode == 0
        assert "\tPartitionCount: 1\t" in run("topics", *bs, "--describe", "--topic", "one").stdout
    finally:
        b.stop()


def test_create_with_replica_assignment(broker, tmp_path) -> None:
    bs = ["--bootstrap-server", broker.bootstrap]
    p = run("topics", *bs, "--create", "--topic", "ra", "--replica-assignment", "0,0,0")
    assert (p.returncode, p.stdout) == (0, "Created topic ra.\n"), p.stderr
    lines = run("topics", *bs, "--describe", "--topic", "ra").stdout.splitlines()
    assert "\tPartitionCount: 3\tReplicationFactor: 1\t" in lines[0]
    assert all("\tLeader: 0\tReplicas: 0\tIsr: 0\t" in ln for ln in lines[1:]) and len(lines) == 4
    assert run("topics", *bs, "--alter", "--topic", "ra", "--partitions", "4", "--replica-assignment",
               "0,0,0,0").returncode == 0
    # the same on a log dir
    data = str(tmp_path / "data")
    assert run("topics", "--data-dir", data, "--create", "--topic", "ra", "--replica-assignment", "0,0").returncode == 0
    assert "\tPartitionCount: 2\t" in run("topics", "--data-dir", data, "--describe", "--topic", "ra").stdout


def test_replica_assignment_errors(broker) -> None:
    bs = ["--bootstrap-server", broker.bootstrap]
    for flags, message in (
            (["--create", "--topic", "rx", "--replica-assignment", "0:1"],
             "The manual partition assignment includes broker 1, but no such broker is registered."),
            (["--create", "--topic", "rx", "--replica-assignment", "0:0"],
             "Partition replica lists may not contain duplicate entries: 0"),
            (["--create", "--topic", "rx", "--replica-assignment", "0,x"], 'For input string: "x"'),
            (["--create", "--topic", "rx", "--replica-assignment", "0", "--partitions", "1"],
             'Option "[replica-assignment]" can\'t be used with option "[partitions]"'),
            (["--create", "--topic", "rx", "--replica-assignment", "0", "--replication-factor", "1"],
             'Option "[replica-assignment]" can\'t be used with option "[replication-factor]"'),
            (["--list", "--replica-assignment", "0"],
             'Option "[replica-assignment]" can\'t be used with option "[list]"')):
        assert one_error_line(run("topics", *bs, *flags)) == TOPIC_ERR + message, flags
    assert "rx" not in run("topics", *bs, "--list").stdout.split()
