"""`logstore get-offsets`, `delete-records` and `log-dirs` (kafka-get-offsets.sh,
kafka-delete-records.sh, kafka-log-dirs.sh) against a live broker (a real `logstore serve` process)
and on a log dir, and the broker's DescribeLogDirs (35) read by our client at every version and by
kafka-python's KafkaAdminClient. Exact output lines, Kafka's ordering and JSON, each error case.

Most cases run the command in-process (`broker.cli.main`, output through capsys) to stay quick on
a loaded machine; a few run the installed console script to check it end to end."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

import logstore
from broker.cli import main
from broker.pytest_plugin import start_broker
from logstore.records import build_batch
from .cli_helpers import one_error_line, run

TS = (int(time.time()) - 3600) * 1000  # recent, so retention leaves the records alone
# partition -> records (key, value, headers, timestamp): p0 three, p1 one, p2 none
SEED = {0: [(None, b"a", [], TS), (None, b"b", [], TS + 1000), (None, b"c", [], TS + 2000)],
        1: [(b"k", b"x", [], TS + 5000)]}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(str(tmp_path_factory.mktemp("offset-tools") / "data"))
    yield b
    b.stop()


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def seed_net(bootstrap: str, topic: str, partitions: int = 3, seed: dict | None = None) -> None:
    from broker.admin_client import AdminClient
    with AdminClient(bootstrap) as c:
        c.create_topic(topic, partitions)
        for p, recs in (SEED if seed is None else seed).items():
            c.produce(topic, p, build_batch(recs))


def seed_dir(path: str, topic: str, partitions: int = 3, seed: dict | None = None) -> None:
    with logstore.open(path, background=False) as s:
        s.create_topic(topic, partitions)
        for p, recs in (SEED if seed is None else seed).items():
            s.partition(topic, p).append(recs)


@pytest.fixture(params=["net", "dir"])
def seeded(request, broker, tmp_path):
    """(target flags, topic, log dir) of a topic seeded with SEED, on the broker or on a log dir."""
    topic = _name()
    if request.param == "net":
        seed_net(broker.bootstrap, topic)
        return ["--bootstrap-server", broker.bootstrap], topic, broker.data_dir
    data = str(tmp_path / "data")
    seed_dir(data, topic)
    return ["--data-dir", data], topic, data


def cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return rc, out, err


def err1(capsys, *args: str) -> str:
    """Run a command that must fail: exit 1, nothing on stdout, one line on stderr (returned)."""
    rc, out, err = cli(capsys, *args)
    assert (rc, out) == (1, ""), (rc, out, err)
    assert len(err.splitlines()) == 1, err
    return err.rstrip("\n")


# -- get-offsets --------------------------------------------------------------------------------------

def test_get_offsets_times(capsys, seeded) -> None:
    tgt, t, _ = seeded
    got = {when: cli(capsys, "get-offsets", *tgt, "--topic", t, *(["--time", when] if when else []))
           for when in ("", "-1", "latest", "-2", "earliest", "-3", "max-timestamp", str(TS + 500), str(TS + 10**6))}
    latest = f"{t}:0:3\n{t}:1:1\n{t}:2:0\n"
    assert got[""] == got["-1"] == got["latest"] == (0, latest, "")
    assert got["-2"] == got["earliest"] == (0, f"{t}:0:0\n{t}:1:0\n{t}:2:0\n", "")
    # no offset for a timestamp (an empty partition, or nothing at or after it): no line, as Kafka
    assert got["-3"] == got["max-timestamp"] == (0, f"{t}:0:2\n{t}:1:0\n", "")
    assert got[str(TS + 500)] == (0, f"{t}:0:1\n{t}:1:0\n", "")
    assert got[str(TS + 10**6)] == (0, "", "")


def test_get_offsets_partition_filters(capsys, seeded) -> None:
    tgt, t, _ = seeded

    def offs(*flags: str) -> str:
        rc, out, err = cli(capsys, "get-offsets", *tgt, *flags)
        assert (rc, err) == (0, ""), err
        return out

    assert offs("--topic", t, "--partitions", "0,2") == f"{t}:0:3\n{t}:2:0\n"
    assert offs("--topic-partitions", f"{t}:1") == f"{t}:1:1\n"
    assert offs("--topic-partitions", f"{t}:1-3") == f"{t}:1:1\n{t}:2:0\n"    # upper bound exclusive
    assert offs("--topic-partitions", f"{t}:-1") == f"{t}:0:3\n"
    assert offs("--topic-partitions", f"{t}:2-") == f"{t}:2:0\n"
    assert offs("--topic-partitions", f"{t}:0,{t}:2") == f"{t}:0:3\n{t}:2:0\n"
    assert offs("--topic-partitions", t, "--time", "earliest") == f"{t}:0:0\n{t}:1:0\n{t}:2:0\n"
    # --topic is a regex matched in full; a comma in it means "or", as Kafka's topic filter
    assert offs("--topic", t[:-2] + "..", "--partitions", "1") == f"{t}:1:1\n"
    assert offs("--topic", f"{t},no-such", "--partitions", "1") == f"{t}:1:1\n"


def test_get_offsets_sorted_as_kafka(capsys, broker, tmp_path) -> None:
    """Kafka sorts by the string "topic-partition": t-10 before t-2."""
    t = _name()
    seed_net(broker.bootstrap, t, partitions=12, seed={})
    seed_dir(str(tmp_path / "d"), t, partitions=12, seed={})
    want = "".join(f"{t}:{p}:0\n" for p in (0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9))
    assert cli(capsys, "get-offsets", "--bootstrap-server", broker.bootstrap, "--topic", t) == (0, want, "")
    assert cli(capsys, "get-offsets", "--data-dir", str(tmp_path / "d"), "--topic", t) == (0, want, "")


def test_get_offsets_internal_topics(capsys, broker) -> None:
    bs = ["--bootstrap-server", broker.bootstrap]
    rc, out, _ = cli(capsys, "get-offsets", *bs, "--topic", "__consumer_offsets", "--partitions", "0")
    assert rc == 0 and len(out.splitlines()) == 1 and out.startswith("__consumer_offsets:0:"), out
    assert err1(capsys, "get-offsets", *bs, "--topic", "__consumer_offsets", "--exclude-internal-topics") == \
        "Error occurred: Could not match any topic-partitions with the specified filters"
    rc, out, _ = cli(capsys, "get-offsets", *bs, "--exclude-internal-topics")
    assert rc == 0 and out and "__consumer_offsets" not in out


def test_get_offsets_errors(capsys, seeded) -> None:
    tgt, t, _ = seeded
    p = "Error occurred: "
    assert err1(capsys, "get-offsets", *tgt, "--topic", "no-such-topic") == \
        p + "Could not match any topic-partitions with the specified filters"
    assert err1(capsys, "get-offsets", *tgt, "--topic", t, "--partitions", "7") == \
        p + "Could not match any topic-partitions with the specified filters"
    assert err1(capsys, "get-offsets", *tgt, "--topic-partitions", f"{t}:9") == \
        p + "Could not match any topic-partitions with the specified filters"
    assert err1(capsys, "get-offsets", *tgt, "--topic", t, "--topic-partitions", f"{t}:0") == \
        p + "--topic-partitions cannot be used with --topic or --partitions"
    assert err1(capsys, "get-offsets", *tgt, "--time", "yesterday") == \
        p + "Malformed time argument yesterday. Please use -1 or latest / -2 or earliest / -3 or max-timestamp / " \
            "-4 or earliest-local / -5 or latest-tiered, or a specified long format timestamp"
    assert err1(capsys, "get-offsets", *tgt, "--partitions", "0,x") == \
        p + "--partitions expects a comma separated list of numeric partition ids, but received: 0,x"
    assert err1(capsys, "get-offsets", *tgt, "--topic-partitions", f"{t}:x") == \
        p + f"Invalid rule specification: {t}:x"
    assert err1(capsys, "get-offsets", *tgt, "--topic", "t[") == p + "t[ is an invalid regex."
    assert err1(capsys, "get-offsets", "--topic", t) == \
        p + "exactly one of --bootstrap-server or --data-dir is required"


# -- delete-records -----------------------------------------------------------------------------------

def _json_file(tmp_path, body: object) -> str:
    path = tmp_path / f"offsets-{uuid.uuid4().hex[:6]}.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return str(path)


def test_delete_records(capsys, seeded, tmp_path) -> None:
    tgt, t, _ = seeded
    f = _json_file(tmp_path, {"partitions": [
        {"topic": t, "partition": 0, "offset": 2}, {"topic": t, "partition": 1, "offset": -1},
        {"topic": t, "partition": 9, "offset": 0}, {"topic": t, "partition": 2, "offset": 5},
        {"topic": "no-such-topic", "partition": 0, "offset": 1}], "version": 1})
    assert cli(capsys, "delete-records", *tgt, "--offset-json-file", f) == (0, (
        "Executing records delete operation\n"
        "Records delete operation completed:\n"
        f"partition: {t}-0\tlow_watermark: 2\n"
        f"partition: {t}-1\tlow_watermark: 1\n"     # -1: up to the high watermark
        f"partition: {t}-9\terror: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: "
        "This server does not host this topic-partition.\n"
        f"partition: {t}-2\terror: org.apache.kafka.common.errors.OffsetOutOfRangeException: "
        "The requested offset is not within the range of offsets maintained by the server.\n"
        "partition: no-such-topic-0\terror: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: "
        "This server does not host this topic-partition.\n"), "")
    assert cli(capsys, "get-offsets", *tgt, "--topic", t, "--time", "earliest") == \
        (0, f"{t}:0:2\n{t}:1:1\n{t}:2:0\n", "")
    # "version" is optional (1); an empty list deletes nothing
    f = _json_file(tmp_path, {"partitions": [{"topic": t, "partition": 0, "offset": 3}]})
    assert cli(capsys, "delete-records", *tgt, "--offset-json-file", f)[1].endswith(
        f"partition: {t}-0\tlow_watermark: 3\n")
    f = _json_file(tmp_path, {"partitions": [], "version": 1})
    assert cli(capsys, "delete-records", *tgt, "--offset-json-file", f) == \
        (0, "Executing records delete operation\nRecords delete operation completed:\n", "")


@pytest.mark.parametrize("body,message", [
    ('{"partitions": [', "The input string is not a valid JSON: {f} line 1 column 17: Expecting value"),
    ("", "The input string is not a valid JSON: {f} line 1 column 1: Expecting value"),
    ("[1]", "The input string is not a valid JSON object: {f} holds a JSON list"),
    ({"version": 1}, "Missing partitions field in {f}"),
    ({"partitions": [], "version": 2}, "Not supported version field value 2 in {f}"),
    ({"partitions": [], "version": "1"}, '{f}: `version` must be an integer, got "1"'),
    ({"partitions": {"topic": "t"}}, '{f}: `partitions` must be an array, got {{"topic": "t"}}'),
    ({"partitions": [{"topic": "t", "partition": 0}]}, "{f}: partitions[0]: No such field exists: `offset`"),
    ({"partitions": [{"topic": "t", "partition": "0", "offset": 1}]},
     '{f}: partitions[0]: `partition` must be an integer, got "0"'),
    ({"partitions": [{"topic": 5, "partition": 0, "offset": 1}]}, "{f}: partitions[0]: `topic` must be a string, got 5"),
    ({"partitions": [{"topic": "t", "partition": 0, "offset": 1.5}]},
     "{f}: partitions[0]: `offset` must be an integer, got 1.5"),
    ({"partitions": [7]}, "{f}: partitions[0]: expected an object, got 7"),
    ({"partitions": [{"topic": "t", "partition": 0, "offset": 1}, {"topic": "t", "partition": 0, "offset": 2}]},
     "Offset json file contains duplicate topic partitions: t-0"),
])
def test_delete_records_bad_json(capsys, tmp_path, body, message) -> None:
    f = _json_file(tmp_path, body)
    # checked before the target is opened: this log dir does not exist
    assert err1(capsys, "delete-records", "--data-dir", str(tmp_path / "none"), "--offset-json-file", f) == \
        message.format(f=f)


def test_delete_records_missing_file_and_flag(capsys, tmp_path) -> None:
    missing = str(tmp_path / "nope.json")
    assert err1(capsys, "delete-records", "--data-dir", str(tmp_path), "--offset-json-file", missing) == \
        f"cannot read --offset-json-file {missing}: No such file or directory"
    assert err1(capsys, "delete-records", "--data-dir", str(tmp_path)) == \
        'Missing required argument "[offset-json-file]"'


# -- log-dirs -----------------------------------------------------------------------------------------

def _log_bytes(data: str, topic: str, p: int) -> int:
    d = os.path.join(data, f"{topic}-{p}")
    return sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d) if n.endswith(".log"))


def test_log_dirs_describe(capsys, seeded) -> None:
    tgt, t, data = seeded
    rc, out, err = cli(capsys, "log-dirs", *tgt, "--describe", "--topic-list", t)
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[:2] == ["Querying brokers for log directories information",
                         "Received log directory information from brokers 0"]
    assert len(lines) == 3
    parts = [{"partition": f"{t}-{p}", "size": _log_bytes(data, t, p), "offsetLag": 0, "isFuture": False}
             for p in range(3)]
    assert parts[0]["size"] > parts[1]["size"] > 0 and parts[2]["size"] == 0
    # Kafka's bytes: compact, keys in its HashMaps' order
    assert lines[2] == json.dumps({"brokers": [{"broker": 0, "logDirs": [
        {"partitions": parts, "error": None, "logDir": os.path.abspath(data)}]}], "version": 1},
        separators=(",", ":"))
    # every topic without --topic-list; --broker-list of the one broker
    rc, out, _ = cli(capsys, "log-dirs", *tgt, "--describe", "--broker-list", "0")
    names = [p["partition"] for p in json.loads(out.splitlines()[2])["brokers"][0]["logDirs"][0]["partitions"]]
    assert {f"{t}-0", f"{t}-1", f"{t}-2"} <= set(names)
    assert json.loads(out.splitlines()[2])["version"] == 1
    rc, out, _ = cli(capsys, "log-dirs", *tgt, "--describe", "--topic-list", "no-such-topic")
    assert json.loads(out.splitlines()[2])["brokers"][0]["logDirs"][0]["partitions"] == []


def test_log_dirs_errors(capsys, seeded) -> None:
    tgt, _t, _ = seeded
    assert err1(capsys, "log-dirs", *tgt) == 'Missing required argument "[describe]"'
    assert err1(capsys, "log-dirs", *tgt, "--describe", "--broker-list", "0,5,3") == \
        "ERROR: The given brokers do not exist from --broker-list: 3,5. Current existent brokers: 0"
    assert err1(capsys, "log-dirs", *tgt, "--describe", "--broker-list", "zero") == \
        "--broker-list expects a comma separated list of broker ids, but received: zero"


# -- --command-config ---------------------------------------------------------------------------------

def test_command_config(capsys, broker, tmp_path) -> None:
    t = _name()
    seed_net(broker.bootstrap, t)
    bs = ["--bootstrap-server", broker.bootstrap]
    cfg = tmp_path / "admin.properties"
    cfg.write_text("client.id=my-tool\nsecurity.protocol=PLAINTEXT\nrequest.timeout.ms=5000\n")
    rc, out, err = cli(capsys, "get-offsets", *bs, "--topic", t, "--command-config", str(cfg))
    assert (rc, out) == (0, f"{t}:0:3\n{t}:1:1\n{t}:2:0\n")
    assert err == "WARN Admin client properties this tool does not use were ignored: request.timeout.ms\n"
    cfg.write_text("security.protocol=SASL_SSL\n")
    assert err1(capsys, "log-dirs", *bs, "--describe", "--command-config", str(cfg)) == \
        f"security.protocol=SASL_SSL in {cfg} is not supported: the broker speaks PLAINTEXT only"
    line = err1(capsys, "get-offsets", *bs, "--command-config", str(tmp_path / "missing.properties"))
    assert line.startswith(f"Error occurred: cannot read --command-config file {tmp_path / 'missing.properties'}")


# -- the console script, end to end ---------------------------------------------------------------

def test_console_script(broker, tmp_path) -> None:
    t = _name()
    seed_net(broker.bootstrap, t)
    bs = ["--bootstrap-server", broker.bootstrap]
    for cmd in ("get-offsets", "delete-records", "log-dirs"):
        p = run(cmd, "--help")
        assert p.returncode == 0 and p.stdout.startswith(f"usage: logstore {cmd}"), p.stderr
    p = run("get-offsets", *bs, "--topic-partitions", f"{t}:0-2", "--time", "-1")
    assert (p.returncode, p.stdout, p.stderr) == (0, f"{t}:0:3\n{t}:1:1\n", "")
    f = _json_file(tmp_path, {"partitions": [{"topic": t, "partition": 0, "offset": 1}], "version": 1})
    p = run("delete-records", *bs, "--offset-json-file", f)
    assert (p.returncode, p.stdout) == (0, "Executing records delete operation\nRecords delete operation "
                                           f"completed:\npartition: {t}-0\tlow_watermark: 1\n")
    assert one_error_line(run("delete-records", *bs, "--offset-json-file", _json_file(tmp_path, "{oops"))) \
        .startswith("The input string is not a valid JSON: ")
    p = run("log-dirs", *bs, "--describe", "--topic-list", t)
    assert p.returncode == 0 and json.loads(p.stdout.splitlines()[2])["brokers"][0]["broker"] == 0
    assert one_error_line(run("get-offsets", "--bootstrap-server", "127.0.0.1:1", "--topic", t)) \
        .startswith("Error occurred: cannot connect to broker at 127.0.0.1:1")


# -- DescribeLogDirs (35) on the broker ---------------------------------------------------------------

def test_describe_log_dirs_every_version(broker) -> None:
    from broker.admin_client import AdminClient
    t = _name()
    seed_net(broker.bootstrap, t)
    with AdminClient(broker.bootstrap) as c:
        for v in (1, 2, 3, 4):
            resp = c.request(35, {"topics": [{"topic": t, "partitions": [0, 1, 7]}]}, version=v)
            (r,) = resp.results
            assert (int(r.error_code), r.log_dir) == (0, os.path.abspath(broker.data_dir))
            assert [(x.name, [int(p.partition_index) for p in x.partitions]) for x in r.topics] == [(t, [0, 1])]
            sizes = [int(p.partition_size) for p in r.topics[0].partitions]
            assert sizes == [_log_bytes(broker.data_dir, t, 0), _log_bytes(broker.data_dir, t, 1)]
            assert all(int(p.offset_lag) == 0 and p.is_future_key is False for p in r.topics[0].partitions)
            if v >= 3:
                assert int(resp.error_code) == 0
            if v >= 4:
                assert 0 < int(r.usable_bytes) <= int(r.total_bytes)
        # the client's call: null = every partition; a topic listed without partitions has none
        (d,) = c.describe_log_dirs()
        assert {(t, 0), (t, 1), (t, 2)} <= {(x[0], x[1]) for x in d["partitions"]}
        assert d["total_bytes"] > 0
        assert c.describe_log_dirs({t: []})[0]["partitions"] == []
        assert c.describe_log_dirs({"no-such-topic": [0]})[0]["partitions"] == []


def test_describe_log_dirs_kafka_python(broker) -> None:
    from kafka import KafkaAdminClient
    t = _name()
    seed_net(broker.bootstrap, t)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        (b,) = admin.describe_log_dirs()
        (d,) = b["log_dirs"]
        assert (b["broker"], d["error_code"], d["log_dir"]) == (0, 0, os.path.abspath(broker.data_dir))
        mine = {x["name"]: x["partitions"] for x in d["topics"]}[t]
        assert [(p["partition_index"], p["partition_size"], p["offset_lag"], p["is_future_key"]) for p in mine] == \
            [(p, _log_bytes(broker.data_dir, t, p), 0, False) for p in range(3)]
        assert 0 < d["usable_bytes"] <= d["total_bytes"]
        (b,) = admin.describe_log_dirs(topic_partitions={t: [1]})
        assert [(x["name"], [p["partition_index"] for p in x["partitions"]]) for x in b["log_dirs"][0]["topics"]] \
            == [(t, [1])]
    finally:
        admin.close()
