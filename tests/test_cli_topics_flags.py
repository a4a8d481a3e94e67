"""kafka-topics / kafka-configs / kafka-dump-log flags and parsing that match Apache Kafka's tools:
`cleanup.policy=compact,delete` through `--config` and `--add-config 'k=[a,b]'`, TopicCommand's
rejected flag combinations, the --describe partition filters and --topics-with-overrides,
`--version`, configs synonyms on a log dir in the broker's form, dump-log's --offsets-decoder /
--skip-record-metadata / --index-sanity-check / decoder classes, verify's index check next to a
damaged batch, and `serve --override` errors naming the key given. Every test runs the installed
`logstore` script as a subprocess over real files (a log dir built with `logstore.open`) or
against a real broker process."""

from __future__ import annotations

import os
import uuid

import pytest

import logstore
from broker.pytest_plugin import start_broker
from logstore.groups import GroupMetadataValue, GroupOffsetStore, MemberMetadata, OffsetAndMetadata
from .cli_helpers import one_error_line, run

TOPIC_ERR = "Error while executing topic command : "
HINT = " (To alter topic configurations, the kafka-configs tool (`logstore configs`) can be used.)"




@pytest.fixture
def data(tmp_path) -> str:
    return str(tmp_path / "data")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(str(tmp_path_factory.mktemp("cli-flags-broker") / "data"),
                     overrides={"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "2"})
    yield b
    b.stop()


# -- cleanup.policy=compact,delete -------------------------------------------------------------------

def test_compact_delete_policy_through_config_and_add_config(data) -> None:
    p = run("topics", "--data-dir", data, "--create", "--topic", "a", "--config", "cleanup.policy=compact,delete",
            "--config", " retention.ms = 5000 ")
    assert (p.returncode, p.stdout, p.stderr) == (0, "Created topic a.\n", "")
    run("topics", "--data-dir", data, "--create", "--topic", "b")
    p = run("configs", "--data-dir", data, "--alter", "--entity-type", "topics", "--entity-name", "b",
            "--add-config", "cleanup.policy=[compact,delete],retention.ms=1000, segment.bytes = 1000000")
    assert (p.returncode, p.stdout) == (0, "Completed updating config for topic b.\n"), p.stderr
    with logstore.open(data) as s:
        assert s.topic("a").config == {"cleanup.policy": "compact,delete", "retention.ms": "5000"}
        assert s.topic("b").config == {"cleanup.policy": "compact,delete", "retention.ms": "1000",
                                       "segment.bytes": "1000000"}
    assert "Configs: cleanup.policy=compact,delete,retention.ms=5000" in \
        run("topics", "--data-dir", data, "--describe", "--topic", "a").stdout
    # one pair per --config: a second '=' is not a value
    assert one_error_line(run("topics", "--data-dir", data, "--create", "--topic", "x", "--config",
                              "retention.ms=1,segment.bytes=2")) == \
        f"{TOPIC_ERR}invalid --config 'retention.ms=1,segment.bytes=2': expected key=value"
    assert one_error_line(run("configs", "--data-dir", data, "--alter", "--entity-type", "topics", "--entity-name",
                              "b", "--add-config", "retention.ms")) == \
        'Invalid entity config: all configs to be added must be in the format "key=val" or "key=[val1,val2]" ' \
        "to group values which contain commas."
    assert one_error_line(run("configs", "--data-dir", data, "--alter", "--entity-type", "topics", "--entity-name",
                              "b", "--add-config", "re/tention=1")) == \
        "Invalid character found for config key: re/tention"


def test_compact_delete_and_bracket_list_through_the_broker(broker) -> None:
    bs = ["--bootstrap-server", broker.bootstrap]
    t = f"t-{uuid.uuid4().hex[:8]}"
    p = run("topics", *bs, "--create", "--topic", t, "--config", "cleanup.policy=compact,delete")
    assert (p.returncode, p.stdout) == (0, f"Created topic {t}.\n"), p.stderr
    assert "Configs: cleanup.policy=compact,delete" in run("topics", *bs, "--describe", "--topic", t).stdout
    p = run("configs", *bs, "--alter", "--entity-type", "topics", "--entity-name", t,
            "--add-config", "cleanup.policy=[compact,delete],retention.ms=1000")
    assert p.returncode == 0, p.stderr
    p = run("configs", *bs, "--describe", "--entity-type", "topics", "--entity-name", t)
    assert p.stdout.splitlines() == [
        f"Dynamic configs for topic {t} are:",
        "  cleanup.policy=compact,delete sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact,delete, "
        "DEFAULT_CONFIG:log.cleanup.policy=delete}",
        "  retention.ms=1000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=1000, "
        "DEFAULT_CONFIG:log.retention.ms=604800000}",
    ]


# -- TopicCommand's flag rules -----------------------------------------------------------------------

REJECTED = [
    (["--describe", "--partitions", "3"], 'Option "[partitions]" can\'t be used with option "[describe]"'),
    (["--create", "--topic", "t", "--if-exists"], 'Option "[if-exists]" can\'t be used with option "[create]"'),
    (["--list", "--config", "retention.ms=1"], 'Option "[config]" can\'t be used with option "[list]"'),
    (["--delete", "--topic", "t", "--partitions", "2"], 'Option "[partitions]" can\'t be used with option "[delete]"'),
    (["--alter", "--topic", "t", "--partitions", "2", "--replication-factor", "1"],
     'Option "[replication-factor]" can\'t be used with option "[alter]"'),
    (["--delete", "--topic", "t", "--if-not-exists"], 'Option "[if-not-exists]" can\'t be used with option "[delete]"'),
    (["--create", "--topic", "t", "--exclude-internal"],
     'Option "[exclude-internal]" can\'t be used with option "[create]"'),
    (["--list", "--under-replicated-partitions"],
     'Option "[under-replicated-partitions]" can\'t be used with option "[list]"'),
    (["--describe", "--at-min-isr-partitions", "--topics-with-overrides"],
     'Option "[at-min-isr-partitions]" can\'t be used with option "[topics-with-overrides]"'),
    (["--alter", "--topic", "t"], 'Missing required argument "[partitions]"'),
    (["--delete"], 'Missing required argument "[topic]"'),
    (["--describe", "--if-exists"], "--topic or --topic-id is required to describe a topic"),
    (["--alter", "--topic", "t", "--partitions", "2", "--config", "retention.ms=1"],
     f'Option combination "[data-dir],[config]" can\'t be used with option "[alter]"{HINT}'),
]


def test_flag_combinations_kafka_rejects(data) -> None:
    with logstore.open(data) as s:
        s.create_topic("t", 1)
    for flags, message in REJECTED:
        assert one_error_line(run("topics", "--data-dir", data, *flags)) == TOPIC_ERR + message, flags
    with logstore.open(data) as s:  # nothing was done
        assert s.topic("t").partitions == 1 and s.topic("t").config == {}


def test_alter_with_config_through_the_broker_is_refused(broker) -> None:
    bs = ["--bootstrap-server", broker.bootstrap]
    t = f"t-{uuid.uuid4().hex[:8]}"
    run("topics", *bs, "--create", "--topic", t)
    line = one_error_line(run("topics", *bs, "--alter", "--topic", t, "--partitions", "2", "--config",
                              "retention.ms=1"))
    assert line == f'{TOPIC_ERR}Option combination "[bootstrap-server],[config]" can\'t be used with option ' \
                   f'"[alter]"{HINT}'
    out = run("topics", *bs, "--describe", "--topic", t).stdout
    assert "PartitionCount: 1" in out and "retention.ms" not in out


# -- --describe filters, --topics-with-overrides, --version ------------------------------------------

def _partition_lines(out: str) -> list[tuple[str, str]]:
    return [(f[1].split(": ")[1], f[2].split(": ")[1]) for f in (ln.split("\t") for ln in out.splitlines())
            if len(f) > 2 and f[0] == "" and f[1].startswith("Topic: ")]


def test_describe_filters_and_topics_with_overrides(data) -> None:
    with logstore.open(data) as s:
        s.create_topic("plain", 2)
        s.create_topic("kept", 1, {"retention.ms": "1000"})
        s.create_topic("strict", 1, {"min.insync.replicas": "2"})
    base = ("topics", "--data-dir", data, "--describe")
    for flag in ("--under-replicated-partitions", "--unavailable-partitions"):
        p = run(*base, flag)
        assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    # one replica in sync: below min.insync.replicas=2, equal to the default 1 (Kafka's predicates)
    assert _partition_lines(run(*base, "--under-min-isr-partitions").stdout) == [("strict", "0")]
    assert _partition_lines(run(*base, "--at-min-isr-partitions").stdout) == [("kept", "0"), ("plain", "0"),
                                                                             ("plain", "1")]
    both = run(*base, "--at-min-isr-partitions", "--under-min-isr-partitions").stdout
    assert not any(ln.startswith("Topic: ") for ln in both.splitlines()) and len(_partition_lines(both)) == 4
    p = run(*base, "--topics-with-overrides")
    assert p.returncode == 0
    assert [ln.split("\t")[0] for ln in p.stdout.splitlines()] == ["Topic: kept", "Topic: strict"]
    assert p.stdout.splitlines()[0].endswith("Configs: retention.ms=1000")
    p = run("topics", "--data-dir", data, "--describe", "--topic", "plain", "--topics-with-overrides")
    assert (p.returncode, p.stdout) == (0, "")
    for cmd in (["topics", "--list"], ["configs"], ["dump-log"]):
        p = run(*cmd, "--version")
        assert (p.returncode, p.stdout) == (0, logstore.__version__ + "\n"), p.stderr


def test_describe_filters_through_the_broker(broker) -> None:
    bs = ["--bootstrap-server", broker.bootstrap]
    t = f"t-{uuid.uuid4().hex[:8]}"
    run("topics", *bs, "--create", "--topic", t, "--partitions", "2", "--config", "min.insync.replicas=2")
    p = run("topics", *bs, "--describe", "--topic", t, "--under-replicated-partitions")
    assert (p.returncode, p.stdout) == (0, "")
    assert _partition_lines(run("topics", *bs, "--describe", "--topic", t, "--under-min-isr-partitions").stdout) \
        == [(t, "0"), (t, "1")]
    p = run("topics", *bs, "--describe", "--topic", t, "--topics-with-overrides")
    assert p.stdout.startswith(f"Topic: {t}\t") and len(p.stdout.splitlines()) == 1


# -- configs synonyms: the same on a log dir as through the broker --------------------------------------

def test_configs_synonyms_on_a_log_dir_match_the_broker(data, broker) -> None:
    t = f"t-{uuid.uuid4().hex[:8]}"
    bs = ["--bootstrap-server", broker.bootstrap]
    run("topics", *bs, "--create", "--topic", t, "--config", "retention.ms=5000", "--config", "flush.messages=10")
    run("topics", "--data-dir", data, "--create", "--topic", t, "--config", "retention.ms=5000",
        "--config", "flush.messages=10")
    for extra in ([], ["--all"]):
        net = run("configs", *bs, "--describe", *extra, "--entity-type", "topics", "--entity-name", t)
        local = run("configs", "--data-dir", data, "--describe", *extra, "--entity-type", "topics", "--entity-name", t)
        assert net.returncode == local.returncode == 0
        assert local.stdout == net.stdout
    assert "  retention.ms=5000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=5000, " \
           "DEFAULT_CONFIG:log.retention.ms=604800000}" in local.stdout.splitlines()


# -- dump-log ------------------------------------------------------------------------------------------

def _offsets_log(data: str) -> str:
    with logstore.open(data) as s:
        s.create_topic("t", 2)
        g = GroupOffsetStore(s, partitions=1)
        g.commit("grp", {("t", 0): OffsetAndMetadata(5, "m", 1700000000000, 3)})
        sub = b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x01t" + b"\xff\xff\xff\xff"
        asg = b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x01t" + b"\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01" \
            + b"\xff\xff\xff\xff"
        g.store_group("grp", GroupMetadataValue("consumer", 4, "range", "m-1", 1700000000001, (
            MemberMetadata("m-1", "cli", "/127.0.0.1", 45000, 300000, sub, asg),)))
        g.delete_offsets("grp", [("t", 0)])
    return os.path.join(data, "__consumer_offsets-0", "00000000000000000000.log")


def test_dump_log_offsets_decoder_and_skip_record_metadata(data) -> None:
    log = _offsets_log(data)
    p = run("dump-log", "--files", log, "--offsets-decoder", "--skip-record-metadata")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    records = [ln for ln in p.stdout.splitlines() if ln.startswith("|")]
    assert records == [
        '| key: {"type":"1","data":{"group":"grp","topic":"t","partition":0}} '
        'payload: {"version":"3","data":{"offset":5,"leaderEpoch":3,"metadata":"m","commitTimestamp":1700000000000}}',
        '| key: {"type":"2","data":{"group":"grp"}} payload: {"version":"3","data":{"protocolType":"consumer",'
        '"generation":4,"protocol":"range","leader":"m-1","currentStateTimestamp":1700000000001,"members":[{'
        '"memberId":"m-1","groupInstanceId":null,"clientId":"cli","clientHost":"/127.0.0.1","rebalanceTimeout":300000,'
        '"sessionTimeout":45000,"subscription":{"topics":["t"],"userData":null},"assignment":{"assignedPartitions":'
        '[{"topic":"t","partitions":[0,1]}],"userData":null}}]}}',
        '| key: {"type":"1","data":{"group":"grp","topic":"t","partition":0}} payload: <DELETE>',
    ]
    full = run("dump-log", "--files", log, "--offsets-decoder").stdout.splitlines()
    assert full[3].startswith("| offset: 0 CreateTime: ") and full[3].endswith(records[0][1:])
    # --skip-record-metadata without data: Kafka prints an empty line per record
    p = run("dump-log", "--files", log, "--deep-iteration", "--skip-record-metadata")
    assert [ln for ln in p.stdout.splitlines() if not ln.startswith(("baseOffset", "Dumping", "Log starting"))] \
        == ["", "", ""]


def test_dump_log_decoder_classes_and_index_sanity_check(data) -> None:
    with logstore.open(data) as s:
        s.create_topic("d", 1, {"index.interval.bytes": "1"})
        for i in range(3):
            s.partition("d", 0).append([(b"k%d" % i, b"v%d" % i)])
    base = os.path.join(data, "d-0", "00000000000000000000")
    p = run("dump-log", "--files", base + ".log", "--value-decoder-class",
            "--key-decoder-class", "org.apache.kafka.tools.api.StringDecoder")
    assert [ln.split(" key: ")[1] for ln in p.stdout.splitlines() if ln.startswith("| ")] == \
        ["k0 payload: v0", "k1 payload: v1", "k2 payload: v2"]
    assert one_error_line(run("dump-log", "--files", base + ".log", "--value-decoder-class", "my.Decoder")) == \
        "Error: Failed to load decoder class my.Decoder (--value-decoder-class): only " \
        "org.apache.kafka.tools.api.StringDecoder is available"
    p = run("dump-log", "--files", f"{base}.index,{base}.timeindex", "--index-sanity-check")
    assert (p.returncode, p.stdout.splitlines()) == (0, [
        f"Dumping {base}.index", f"{base}.index passed sanity check.",
        f"Dumping {base}.timeindex", f"{base}.timeindex passed sanity check."])
    with open(base + ".timeindex", "ab") as f:
        f.write(b"\x00" * 5)
    size = os.path.getsize(base + ".timeindex")
    assert one_error_line(run("dump-log", "--files", base + ".timeindex", "--index-sanity-check")) == \
        f"Error: Time index file {os.path.abspath(base)}.timeindex is corrupt, found {size} bytes which is neither " \
        "positive nor a multiple of 12"


# -- verify: an index entry at a damaged batch -------------------------------------------------------------

def test_verify_index_entry_at_a_damaged_batch_is_not_a_bad_position(data) -> None:
    with logstore.open(data) as s:
        s.create_topic("c", 1, {"segment.bytes": "1000", "index.interval.bytes": "100"})
        for i in range(40):
            s.partition("c", 0).append([(b"k%d" % i, b"value-%03d-" % i + b"x" * 50)])
    seg = os.path.join(data, "c-0", "00000000000000000007")
    with open(seg + ".index", "rb") as f:
        entry = f.read()[8:16]
    pos = int.from_bytes(entry[4:], "big")
    offset = 7 + int.from_bytes(entry[:4], "big")
    with open(seg + ".log", "r+b") as f:  # one byte inside the batch the second index entry points at
        f.seek(pos + 38)
        b = f.read(1)
        f.seek(pos + 38)
        f.write(bytes([b[0] ^ 0xFF]))
    p = run("verify", data)
    assert p.returncode == 1
    bad = [ln for ln in p.stdout.splitlines() if ln.startswith("BAD ")]
    assert len(bad) == 2, bad
    assert bad[0].startswith(f"BAD {seg}.log at position {pos}: offsets {offset}..{offset}: CRC mismatch")
    assert bad[1] == (f"BAD {seg}.index at position 8: entry 1 (offset {offset}) points at the batch at position "
                      f"{pos} of {seg}.log, whose header agrees, but that batch is damaged (CRC mismatch, reported "
                      "above)")
    assert "not the start of a batch" not in p.stdout


# -- serve --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, message", [
    ("log.retention.ms", "abc", "invalid value 'abc' for config 'log.retention.ms': expected an integer"),
    ("log.cleanup.policy", "both", "invalid value 'both' for config 'log.cleanup.policy': must be delete, compact "
                                   "or compact,delete"),
])
def test_serve_override_error_names_the_key_given(tmp_path, key, value, message) -> None:
    p = run("serve", "--override", f"log.dirs={tmp_path / 'data'}", "--override", "listeners=PLAINTEXT://127.0.0.1:0",
            "--override", f"{key}={value}", timeout=30)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1] == f"logstore serve: {message}"
    assert not (tmp_path / "data").exists()
