"""The `logstore` console script without a broker: dump-log, verify, and the admin tools on a log
dir (`--data-dir`). Each test runs the installed script as a subprocess over real files in
tmp_path and checks the exact output shape and exit code."""

from __future__ import annotations

import base64
import os
import struct
import time

import pytest

import logstore
from logstore import records as R
from .cli_helpers import one_error_line, run

TS = (int(time.time()) - 3600) * 1000  # recent: older batches would roll a segment per append (segment.ms)




@pytest.fixture
def data(tmp_path) -> str:
    return str(tmp_path / "data")


# -- help and flags ----------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["topics", "configs", "console-producer", "console-consumer", "consumer-groups",
                                 "dump-log", "verify", "serve"])
def test_help_on_every_subcommand(cmd: str) -> None:
    p = run(cmd, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: logstore " + cmd)


def test_bad_flag_is_one_line_and_exit_1(data) -> None:
    line = one_error_line(run("topics", "--data-dir", data, "--list", "--bogus"))
    assert "unrecognized arguments: --bogus" in line
    line = one_error_line(run("dump-log"))
    assert "--files" in line


def test_exactly_one_target_and_one_action(data) -> None:
    assert one_error_line(run("topics", "--list")) == \
        "Error while executing topic command : exactly one of --bootstrap-server or --data-dir is required"
    assert one_error_line(run("topics", "--data-dir", data, "--list", "--describe")) == \
        "Error while executing topic command : Command must include exactly one action: --list, --describe, " \
        "--create, --alter or --delete"


# -- topics and configs on a log dir --------------------------------------------------------------

def test_topics_create_list_describe_alter_delete(data) -> None:
    p = run("topics", "--data-dir", data, "--create", "--topic", "orders", "--partitions", "3",
            "--config", "retention.ms=86400000", "--config", "cleanup.policy=compact")
    assert (p.returncode, p.stdout, p.stderr) == (0, "Created topic orders.\n", "")
    assert run("topics", "--data-dir", data, "--create", "--topic", "b", "--replication-factor", "1").returncode == 0
    assert run("topics", "--data-dir", data, "--list").stdout == "b\norders\n"

    with logstore.open(data) as s:
        tid = base64.urlsafe_b64encode(s.topic("orders").topic_id.bytes).decode().rstrip("=")
    p = run("topics", "--data-dir", data, "--describe", "--topic", "orders")
    assert p.returncode == 0
    assert p.stdout.splitlines() == [
        f"Topic: orders\tTopicId: {tid}\tPartitionCount: 3\tReplicationFactor: 1\t"
        "Configs: cleanup.policy=compact,retention.ms=86400000",
    ] + [f"\tTopic: orders\tPartition: {i}\tLeader: 0\tReplicas: 0\tIsr: 0\tElr: N/A\tLastKnownElr: N/A"
         for i in range(3)]

    assert run("topics", "--data-dir", data, "--alter", "--topic", "orders", "--partitions", "5").returncode == 0
    assert "PartitionCount: 5" in run("topics", "--data-dir", data, "--describe", "--topic", "orders").stdout
    line = one_error_line(run("topics", "--data-dir", data, "--alter", "--topic", "orders", "--partitions", "2"))
    assert line.startswith("Error while executing topic command : ") and "5 partitions" in line

    p = run("topics", "--data-dir", data, "--delete", "--topic", "orders")
    assert (p.returncode, p.stdout) == (0, "")
    assert run("topics", "--data-dir", data, "--list").stdout == "b\n"
    assert not os.path.exists(os.path.join(data, "orders-0"))


def test_topic_errors(data) -> None:
    run("topics", "--data-dir", data, "--create", "--topic", "t")
    assert one_error_line(run("topics", "--data-dir", data, "--create", "--topic", "t")) == \
        "Error while executing topic command : Topic 't' already exists."
    p = run("topics", "--data-dir", data, "--create", "--topic", "t", "--if-not-exists")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    assert one_error_line(run("topics", "--data-dir", data, "--alter", "--partitions", "4", "--topic", "nope")) == \
        "Error while executing topic command : Topic 'nope' does not exist as expected"
    assert run("topics", "--data-dir", data, "--delete", "--topic", "nope", "--if-exists").returncode == 0
    assert one_error_line(run("topics", "--data-dir", data, "--create", "--topic", "x", "--config", "foo=1")) == \
        "Error while executing topic command : unknown topic config 'foo'"
    assert one_error_line(run("topics", "--data-dir", data, "--create", "--topic", "x", "--config", "nokv")) == \
        "Error while executing topic command : invalid --config 'nokv': expected key=value"
    assert "partitions must be greater than 0" in one_error_line(
        run("topics", "--data-dir", data, "--create", "--topic", "x", "--partitions", "0"))
    assert "Replication factor: 3" in one_error_line(
        run("topics", "--data-dir", data, "--create", "--topic", "x", "--replication-factor", "3"))
    assert "invalid topic name" in one_error_line(run("topics", "--data-dir", data, "--create", "--topic", "a/b"))


def test_configs_alter_and_describe(data) -> None:
    run("topics", "--data-dir", data, "--create", "--topic", "t", "--config", "segment.bytes=1000000")
    p = run("configs", "--data-dir", data, "--alter", "--entity-type", "topics", "--entity-name", "t",
            "--add-config", "retention.ms=1000,cleanup.policy=compact")
    assert (p.returncode, p.stdout) == (0, "Completed updating config for topic t.\n")
    p = run("configs", "--data-dir", data, "--describe", "--entity-type", "topics", "--entity-name", "t")
    assert p.stdout.splitlines() == [
        "Dynamic configs for topic t are:",
        "  cleanup.policy=compact sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact, "
        "DEFAULT_CONFIG:log.cleanup.policy=delete}",
        "  retention.ms=1000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=1000, "
        "DEFAULT_CONFIG:log.retention.ms=604800000}",
        "  segment.bytes=1000000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:segment.bytes=1000000, "
        "DEFAULT_CONFIG:log.segment.bytes=1073741824}",
    ]
    run("configs", "--data-dir", data, "--alter", "--entity-type", "topics", "--entity-name", "t",
        "--delete-config", "segment.bytes")
    with logstore.open(data) as s:
        assert s.topic("t").config == {"retention.ms": "1000", "cleanup.policy": "compact"}
    assert one_error_line(run("configs", "--data-dir", data, "--alter", "--entity-type", "topics", "--entity-name",
                              "t", "--delete-config", "max.message.bytes")) == "Invalid config(s): max.message.bytes"
    assert "unknown topic config 'bogus.key'" in one_error_line(
        run("configs", "--data-dir", data, "--alter", "--entity-type", "topics", "--entity-name", "t",
            "--add-config", "bogus.key=1"))
    assert "invalid value 'abc' for config 'retention.ms'" in one_error_line(
        run("configs", "--data-dir", data, "--alter", "--entity-type", "topics", "--entity-name", "t",
            "--add-config", "retention.ms=abc"))
    p = run("configs", "--data-dir", data, "--describe", "--all", "--entity-type", "topics", "--entity-name", "t")
    assert "  max.message.bytes=1048588 sensitive=false synonyms={DEFAULT_CONFIG:message.max.bytes=1048588}" \
        in p.stdout.splitlines()


def test_locked_log_dir_is_one_clear_line(data) -> None:
    with logstore.open(data):
        line = one_error_line(run("topics", "--data-dir", data, "--list"))
    assert "is already open in another process" in line and f"pid {os.getpid()}" in line
    assert "--bootstrap-server" in line


def test_missing_log_dir(tmp_path) -> None:
    missing = str(tmp_path / "nope")
    assert one_error_line(run("topics", "--data-dir", missing, "--list")) == \
        f"Error while executing topic command : log dir {missing} does not exist"
    assert not os.path.exists(missing)


# -- console producer / consumer and groups on a log dir ---------------------------------------------

def test_console_roundtrip_and_groups_offline(data) -> None:
    run("topics", "--data-dir", data, "--create", "--topic", "t", "--partitions", "2")
    lines = "".join(f"k{i}:v{i}\n" for i in range(10))
    p = run("console-producer", "--data-dir", data, "--topic", "t", "--property", "parse.key=true",
            "--property", "key.separator=:", stdin=lines)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    with logstore.open(data) as s:
        for i in range(10):
            part = logstore.client.partition_for_key(f"k{i}".encode(), 2)
            assert any(r.key == f"k{i}".encode() and r.value == f"v{i}".encode()
                       for r in s.partition("t", part).read(0))
    p = run("console-consumer", "--data-dir", data, "--topic", "t", "--from-beginning", "--group", "g",
            "--property", "print.key=true", "--timeout-ms", "500")
    assert p.returncode == 0
    assert sorted(p.stdout.splitlines()) == sorted(f"k{i}\tv{i}" for i in range(10))
    assert p.stderr == "Processed a total of 10 messages\n"

    assert run("consumer-groups", "--data-dir", data, "--list").stdout == "g\n"
    with logstore.open(data) as s:
        ends = {p_: s.partition("t", p_).log_end_offset for p_ in range(2)}
    p = run("consumer-groups", "--data-dir", data, "--describe", "--group", "g")
    assert p.returncode == 0
    assert p.stderr == "\nConsumer group 'g' has no active members.\n"
    hdr = "GROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             " \
          "CONSUMER-ID     HOST            CLIENT-ID"
    rows = [f"{'g':<15} {'t':<15} {p_:<10} {ends[p_]:<15} {ends[p_]:<15} {0:<15} {'-':<15} {'-':<15} -"
            for p_ in range(2)]
    assert p.stdout == "\n" + "\n".join([hdr] + rows) + "\n\n"

    p = run("consumer-groups", "--data-dir", data, "--reset-offsets", "--group", "g", "--topic", "t:0",
            "--to-earliest", "--execute")
    assert p.stdout.splitlines() == ["", f"{'GROUP':<30} {'TOPIC':<30} {'PARTITION':<10} {'NEW-OFFSET':<15}",
                                     f"{'g':<30} {'t':<30} {'0':<10} {'0':<15}"]
    p = run("console-consumer", "--data-dir", data, "--topic", "t", "--group", "g", "--timeout-ms", "500")
    assert len(p.stdout.splitlines()) == ends[0]

    assert run("consumer-groups", "--data-dir", data, "--delete", "--group", "g").stdout == \
        "Deletion of requested consumer groups ('g') was successful.\n"
    assert one_error_line(run("consumer-groups", "--data-dir", data, "--describe", "--group", "g")) == \
        "Error: Consumer group 'g' does not exist."
    assert "Group 'g' could not be deleted due to: GROUP_ID_NOT_FOUND" in \
        one_error_line(run("consumer-groups", "--data-dir", data, "--delete", "--group", "g"))


def test_console_producer_bad_line_keeps_earlier_ones(data) -> None:
    run("topics", "--data-dir", data, "--create", "--topic", "t")
    p = run("console-producer", "--data-dir", data, "--topic", "t", "--property", "parse.key=true",
            stdin="a\tb\nno separator\n")
    assert one_error_line(p) == "ERROR No key separator found on line number 2: 'no separator'"
    with logstore.open(data) as s:
        assert [(r.key, r.value) for r in s.partition("t", 0).read(0)] == [(b"a", b"b")]
    assert one_error_line(run("console-producer", "--data-dir", data, "--topic", "nope", stdin="x\n")) == \
        "ERROR Topic 'nope' does not exist"


def test_console_consumer_formatter_properties(data) -> None:
    with logstore.open(data) as s:
        s.create_topic("t")
        s.partition("t", 0).append([(b"k", b"v", [("h1", b"x"), ("h2", None)], TS), (None, None, [], TS + 1)])
    p = run("console-consumer", "--data-dir", data, "--topic", "t", "--from-beginning", "--max-messages", "2",
            "--property", "print.timestamp=true", "--property", "print.partition=true", "--property",
            "print.offset=true", "--property", "print.headers=true", "--property", "print.key=true",
            "--property", "key.separator=|")
    assert p.stdout.splitlines() == [f"CreateTime:{TS}|Partition:0|Offset:0|h1:x,h2:null|k|v",
                                     f"CreateTime:{TS + 1}|Partition:0|Offset:1|NO_HEADERS|null|null"]
    p = run("console-consumer", "--data-dir", data, "--topic", "t", "--partition", "0", "--offset", "1",
            "--max-messages", "1", "--property", "print.value=false", "--property", "print.offset=true")
    assert p.stdout == "Offset:1\n"
    for bad in ("-5", "banana"):
        line = one_error_line(run("console-consumer", "--data-dir", data, "--topic", "t", "--partition", "0",
                                  "--offset", bad, "--max-messages", "1"))
        assert line == (f"ERROR The provided offset value '{bad}' is incorrect. Valid values are 'earliest', "
                        f"'latest', or a non-negative long."), line


# -- dump-log ----------------------------------------------------------------------------------------

def _segment(data: str, config: dict | None = None) -> str:
    with logstore.open(data) as s:
        s.create_topic("d", 1, config or {})
        lg = s.partition("d", 0)
        lg.append([(b"k1", b"hello", [], TS), (None, b"world", [("h", b"1")], TS + 5)])
        lg.append([(b"k2", None, [], TS + 10)], compression="gzip")
    return os.path.join(data, "d-0", "00000000000000000000")


def _crc(path: str, pos: int) -> int:
    with open(path, "rb") as f:
        f.seek(pos + 17)
        return struct.unpack(">I", f.read(4))[0]


def test_dump_log_kafka_shape(data) -> None:
    base = _segment(data)
    log = base + ".log"
    size0 = R.read_header(open(log, "rb").read(61)).size
    size1 = os.path.getsize(log) - size0
    p = run("dump-log", "--files", log, "--print-data-log")
    assert p.returncode == 0 and p.stderr == ""
    common = ("baseSequence: -1 lastSequence: -1 producerId: -1 producerEpoch: -1 partitionLeaderEpoch: 0 "
              "isTransactional: false isControl: false deleteHorizonMs: OptionalLong.empty")
    assert p.stdout.splitlines() == [
        f"Dumping {log}",
        "Log starting offset: 0",
        f"baseOffset: 0 lastOffset: 1 count: 2 {common} position: 0 CreateTime: {TS + 5} size: {size0} magic: 2 "
        f"compresscodec: none crc: {_crc(log, 0)} isvalid: true",
        f"| offset: 0 CreateTime: {TS} keySize: 2 valueSize: 5 sequence: -1 headerKeys: [] key: k1 payload: hello",
        f"| offset: 1 CreateTime: {TS + 5} keySize: -1 valueSize: 5 sequence: -1 headerKeys: [h] payload: world",
        f"baseOffset: 2 lastOffset: 2 count: 1 {common} position: {size0} CreateTime: {TS + 10} size: {size1} "
        f"magic: 2 compresscodec: gzip crc: {_crc(log, size0)} isvalid: true",
        f"| offset: 2 CreateTime: {TS + 10} keySize: 2 valueSize: -1 sequence: -1 headerKeys: [] key: k2",
    ]
    shallow = run("dump-log", "--files", log).stdout.splitlines()
    assert len(shallow) == 4 and shallow[2].startswith("baseOffset: 0 lastOffset: 1 count: 2 ")


def test_dump_indexes_and_torn_tail(data) -> None:
    base = _segment(data, {"index.interval.bytes": "1"})
    p = run("dump-log", "--files", f"{base}.index,{base}.timeindex")
    assert p.returncode == 0 and p.stderr == ""
    size0 = R.read_header(open(base + ".log", "rb").read(61)).size
    assert p.stdout.splitlines() == [
        # as Kafka's, an entry is written once index.interval.bytes of log precede a batch
        f"Dumping {base}.index", f"offset: 2 position: {size0}",
        f"Dumping {base}.timeindex", f"timestamp: {TS + 10} offset: 2",
    ]
    with open(base + ".log", "ab") as f:
        f.write(b"\x00" * 20)
    out = run("dump-log", "--files", base + ".log").stdout.splitlines()
    assert out[-1] == "Found 20 invalid bytes at the end of 00000000000000000000.log"
    assert one_error_line(run("dump-log", "--files", base + ".nope.log")) == f"Error: no such file: {base}.nope.log"


def test_dump_log_marks_a_corrupt_batch_invalid(data) -> None:
    base = _segment(data)
    with open(base + ".log", "r+b") as f:
        f.seek(70)
        b = f.read(1)
        f.seek(70)
        f.write(bytes([b[0] ^ 0xFF]))
    lines = run("dump-log", "--files", base + ".log").stdout.splitlines()
    assert lines[2].endswith("isvalid: false") and lines[3].endswith("isvalid: true")


# -- verify --------------------------------------------------------------------------------------------

def test_verify_clean_dir(data) -> None:
    _segment(data)
    p = run("verify", data)
    assert p.returncode == 0, p.stdout
    assert p.stdout.splitlines()[-1].startswith("OK: ")
    assert "BAD" not in p.stdout
    for col in ("topic", "partitions", "segments", "batches", "records", "bytes", "problems"):
        assert col in p.stdout


def test_verify_reports_every_bad_batch_with_file_and_position(data) -> None:
    base = _segment(data, {"index.interval.bytes": "1"})
    log = base + ".log"
    size0 = R.read_header(open(log, "rb").read(61)).size
    with open(log, "r+b") as f:  # flip a byte inside each of the two batches
        for pos in (70, size0 + 65):
            f.seek(pos)
            b = f.read(1)
            f.seek(pos)
            f.write(bytes([b[0] ^ 0x55]))
    with open(log, "ab") as f:
        f.write(b"torn")
    p = run("verify", data)
    assert p.returncode == 1
    bad = [ln for ln in p.stdout.splitlines() if ln.startswith("BAD ")]
    assert bad[0].startswith(f"BAD {log} at position 0: offsets 0..1: CRC mismatch: stored ")
    assert bad[1].startswith(f"BAD {log} at position {size0}: offsets 2..2: CRC mismatch")
    assert bad[2] == f"BAD {log} at position {os.path.getsize(log) - 4}: incomplete or invalid tail: 4 bytes at " \
                     "the end are shorter than a batch header"
    assert any("index" in b for b in bad[3:]), bad  # the index now points at batches that failed
    assert p.stdout.splitlines()[-1].startswith("FAILED: ")
    assert one_error_line(run("verify", data + "-missing")) == f"Error: log dir {data}-missing does not exist"


def test_verify_reports_an_index_that_disagrees_with_its_log(data) -> None:
    base = _segment(data, {"index.interval.bytes": "1"})
    with open(base + ".index", "r+b") as f:
        assert len(f.read()) == 8  # one entry: offset 2 at the second batch
        f.seek(4)
        f.write(struct.pack(">I", 7))  # now it points into the middle of the first batch
    p = run("verify", data)
    assert p.returncode == 1
    assert f"BAD {base}.index at position 0: entry 0 points at position 7 of {base}.log, which is not the start " \
           "of a batch" in p.stdout
    with open(base + ".index", "r+b") as f:
        f.write(struct.pack(">I", 1))  # the right position, the wrong offset (1 instead of 2)
        f.write(struct.pack(">I", R.read_header(open(base + ".log", "rb").read(61)).size))
    p = run("verify", data)
    assert f"BAD {base}.index at position 0: entry 0 says offset 1 but the batch at position" in p.stdout


def test_verify_stops_at_a_garbage_header_instead_of_cascading(data) -> None:
    base = _segment(data)
    log = base + ".log"
    with open(log, "r+b") as f:
        f.seek(16)
        f.write(b"\x07")  # magic 7
    p = run("verify", data)
    bad = [ln for ln in p.stdout.splitlines() if ln.startswith("BAD ")]
    size = os.path.getsize(log)
    assert bad == [f"BAD {log} at position 0: invalid magic byte 7; the remaining {size} bytes of the segment "
                   "are unreadable"]
    assert p.returncode == 1
