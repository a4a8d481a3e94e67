"""`logstore consumer-groups` flags that follow kafka-consumer-groups.sh: `--describe --members
[--verbose]`, `--describe --state`, `--describe --offsets`, `--list --state [STATE...]`,
`--delete-offsets`, and the flag combinations Kafka rejects (its messages, one line on stderr,
exit 1). The installed script runs as a subprocess, on a log dir made with `logstore.open` and
the group offset store, and against a real `logstore serve` with live confluent-kafka consumers
in groups (one of them a static member)."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

import logstore
from broker.pytest_plugin import start_broker
from logstore.groups import GroupMetadataValue, GroupOffsetStore, MemberMetadata
from .cli_helpers import one_error_line
from .cli_helpers import run as cli_run

NO_MEMBERS = "\nConsumer group '{}' has no active members.\n"
SUBSCRIBED = ("Error: GROUP_SUBSCRIBED_TO_TOPIC: Deleting offsets of a topic is forbidden while the consumer group "
              "is actively subscribed to it.")
PARTITION_LEVEL = "Error: Encountered some partition-level error, see the follow-up details."


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return cli_run("consumer-groups", *args, timeout=timeout)



def state_table(group: str, coordinator: str, strategy: str, state: str, members: int) -> str:
    wg, wc = max(15, len(group)), max(25, len(coordinator))
    return (f"\n{'GROUP':<{wg}} {'COORDINATOR (ID)':<{wc}} {'ASSIGNMENT-STRATEGY':<20} {'STATE':<20} #MEMBERS\n"
            f"{group:<{wg}} {coordinator:<{wc}} {strategy:<20} {state:<20} {members}\n")


def status_table(rows: list[tuple[str, str, str]]) -> str:
    w = max([15] + [len(t) for t, _p, _s in rows])
    return "\n" + "\n".join([f"{'TOPIC':<{w}} {'PARTITION':<10} {'STATUS':<15}"]
                            + [f"{t:<{w}} {p:<10} {s:<15}" for t, p, s in rows]) + "\n"


# -- on a log dir --------------------------------------------------------------------------------

@pytest.fixture
def data(tmp_path) -> str:
    """orders (2 partitions, 5 and 3 records) and audit (1, empty); group billing has offsets of
    all three partitions, shipping of orders-0 and stored metadata with a member (a broker that
    stopped with a live member)."""
    d = str(tmp_path / "data")
    with logstore.open(d) as s:
        s.create_topic("orders", 2)
        s.create_topic("audit", 1)
        s.partition("orders", 0).append([(b"k", b"v")] * 5)
        s.partition("orders", 1).append([(b"k", b"v")] * 3)
        gos = GroupOffsetStore.of(s)
        gos.commit("billing", {("orders", 0): 4, ("orders", 1): 1, ("audit", 0): 0})
        gos.commit("shipping", {("orders", 0): 2})
        gos.store_group("shipping", GroupMetadataValue("consumer", 3, "range", "m-1", members=(
            MemberMetadata("m-1", "app", "/10.0.0.7", 10000, 30000, b"", b""),)))
    return d


def test_list_state_on_a_log_dir(data) -> None:
    dd = ["--data-dir", data]
    table = f"{'GROUP':<25} {'STATE':<20}\n{'billing':<25} {'Empty':<20}\n{'shipping':<25} {'Empty':<20}\n"
    p = run(*dd, "--list", "--state")
    assert (p.returncode, p.stdout, p.stderr) == (0, table, "")
    assert run(*dd, "--list", "--state", "EMPTY,stable").stdout == table  # a filter, case-insensitive
    assert run(*dd, "--list", "--state", "Stable", "empty").stdout == table
    assert run(*dd, "--list", "--state", "stable,PreparingRebalance").stdout == f"{'GROUP':<25} {'STATE':<20}\n"
    assert run(*dd, "--list").stdout == "billing\nshipping\n"
    assert one_error_line(run(*dd, "--list", "--state", "stable,bogus")) == (
        "Error: Invalid state list 'stable,bogus'. Valid states are: PreparingRebalance, CompletingRebalance, "
        "Stable, Dead, Empty, Assigning, Reconciling")


def test_describe_state_members_offsets_on_a_log_dir(data) -> None:
    dd = ["--data-dir", data]
    # offline no member is live: a group is Empty, its stored member list notwithstanding
    p = run(*dd, "--describe", "--group", "shipping", "--state")
    assert (p.returncode, p.stdout, p.stderr) == (0, state_table("shipping", "-", "-", "Empty", 0),
                                                  NO_MEMBERS.format("shipping"))
    for extra in ([], ["--verbose"]):
        p = run(*dd, "--describe", "--group", "shipping", "--members", *extra)
        assert (p.returncode, p.stdout, p.stderr) == (0, "", NO_MEMBERS.format("shipping"))
    # --offsets is the default view
    p = run(*dd, "--describe", "--group", "billing", "--offsets")
    assert p.returncode == 0 and p.stdout == run(*dd, "--describe", "--group", "billing").stdout
    assert [r.split()[:6] for r in p.stdout.splitlines()[2:] if r] == [
        ["billing", "audit", "0", "0", "0", "0"], ["billing", "orders", "0", "4", "5", "1"],
        ["billing", "orders", "1", "1", "3", "2"]]
    # a group that does not exist: its error, the other groups still shown, exit 1
    p = run(*dd, "--describe", "--group", "nope", "--group", "billing", "--state")
    assert p.returncode == 1
    assert p.stderr == "Error: Consumer group 'nope' does not exist.\n" + NO_MEMBERS.format("billing")
    assert p.stdout == state_table("billing", "-", "-", "Empty", 0)
    p = run(*dd, "--describe", "--all-groups", "--state")
    assert p.stdout == state_table("billing", "-", "-", "Empty", 0) + state_table("shipping", "-", "-", "Empty", 0)


def test_delete_offsets_on_a_log_dir(data) -> None:
    dd = ["--data-dir", data]
    p = run(*dd, "--delete-offsets", "--group", "billing", "--topic", "orders:1", "--topic", "audit")
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout == "Request succeeded for deleting offsets from group billing.\n" + status_table(
        [("audit", "0", "Successful"), ("orders", "1", "Successful")])
    with logstore.open(data) as s:
        assert {tp: om.offset for tp, om in GroupOffsetStore.of(s).fetch("billing").items()} == {("orders", 0): 4}
    rows = [r.split()[:4] for r in run(*dd, "--describe", "--group", "billing").stdout.splitlines()[2:] if r]
    assert rows == [["billing", "orders", "0", "4"]]

    # a topic that does not exist fails alone; the table is printed, then one error line
    p = run(*dd, "--delete-offsets", "--group", "billing", "--topic", "nosuch", "--topic", "orders:0")
    assert one_error_line(p) == PARTITION_LEVEL
    assert p.stdout == status_table([
        ("nosuch", "-", "Error: UNKNOWN_TOPIC_OR_PARTITION: This server does not host this topic-partition."),
        ("orders", "0", "Successful")])
    assert run(*dd, "--list").stdout == "shipping\n"  # billing had no offsets left and no metadata
    p = run(*dd, "--delete-offsets", "--group", "ghost", "--topic", "orders")
    assert one_error_line(p) == "Error: The group id does not exist."
    assert p.stdout == status_table([("orders", str(i), "Error: GROUP_ID_NOT_FOUND: The group id does not exist.")
                                     for i in (0, 1)])


def test_reset_offsets_without_execute_warns_as_kafka(data) -> None:
    dd = ["--data-dir", data, "--reset-offsets", "--group", "billing", "--topic", "orders:0", "--to-earliest"]
    p = run(*dd)
    assert p.returncode == 0 and p.stdout.splitlines()[2].split() == ["billing", "orders", "0", "0"]
    assert p.stderr.startswith("WARN: No action will be performed as the --execute option is missing.")
    assert run(*dd, "--dry-run").stderr == ""


@pytest.mark.parametrize("argv,message", [
    (["--list", "--group", "x"], 'Option "[group]" can\'t be used with option "[list]"'),
    (["--describe", "--group", "x", "--topic", "t"], 'Option "[topic]" can\'t be used with option "[describe]"'),
    (["--describe", "--group", "x", "--all-groups"], 'Option "[group]" can\'t be used with option "[all-groups]"'),
    (["--reset-offsets", "--group", "x", "--topic", "t", "--to-earliest", "--execute", "--dry-run"],
     "Option [reset-offsets] only accepts one of [execute] and [dry-run]"),
    (["--reset-offsets", "--group", "x", "--topic", "t", "--to-earliest", "--to-latest"],
     'Option "[to-earliest]" can\'t be used with option "[to-latest]"'),
    (["--reset-offsets", "--group", "x", "--topic", "t", "--shift-by", "1", "--to-offset", "0"],
     'Option "[to-offset]" can\'t be used with option "[shift-by]"'),
    (["--reset-offsets", "--group", "x", "--topic", "t"],
     "Option '[reset-offsets]' requires one of the following scenarios: [[to-offset], [to-current], "
     "[to-datetime], [from-file], [by-duration], [to-earliest], [to-latest], [shift-by]]"),
    (["--reset-offsets", "--group", "x", "--to-latest"],
     "One of the reset scopes should be defined: --all-topics, --topic."),
    (["--describe", "--group", "x", "--members", "--state"],
     "Option [describe] takes at most one of these options: [members], [offsets], [state]"),
    (["--describe", "--group", "x", "--offsets", "--members"],
     "Option [describe] takes at most one of these options: [members], [offsets], [state]"),
    (["--describe", "--group", "x", "--state", "stable"], "Option [describe] does not take a value for [state]"),
    (["--list", "--members"], "Option(s) [members] are unavailable given other options on the command line"),
    (["--list", "--offsets", "--verbose"],
     "Option(s) [verbose, offsets] are unavailable given other options on the command line"),
    (["--delete", "--group", "x", "--state"],
     "Option(s) [state] are unavailable given other options on the command line"),
    (["--describe", "--members"], "Option [describe] takes one of these options: [all-groups], [group]"),
    (["--delete-offsets", "--group", "x"], "Option [delete-offsets] takes the following options: [group], [topic]"),
    (["--delete", "--group", "x", "--topic", "t"],
     "The consumer does not support topic-specific offset deletion from a consumer group."),
    (["--group", "x"], "Command must include exactly one action: --list, --describe, --delete, --reset-offsets, "
                       "--delete-offsets"),
])
def test_flag_combinations_kafka_rejects(data, argv, message) -> None:
    assert one_error_line(run("--data-dir", data, *argv)) == f"Error: {message}"


def test_help_lists_the_new_flags() -> None:
    p = run("--help")
    assert p.returncode == 0
    for flag in ("--members", "--state [STATE ...]", "--offsets", "--verbose", "--delete-offsets", "--dry-run"):
        assert flag in p.stdout, flag


# -- against a broker, with live members -----------------------------------------------------------

@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(str(tmp_path_factory.mktemp("cli-groups-flags") / "data"),
                     overrides={"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "4"})
    yield b
    b.stop()


def test_live_members_state_list_and_delete_offsets(broker) -> None:
    import confluent_kafka

    from broker.admin_client import AdminClient
    bs = ["--bootstrap-server", broker.bootstrap]
    tag = uuid.uuid4().hex[:8]
    topic, other, group, static_group = f"t-{tag}", f"o-{tag}", f"live-{tag}", f"static-{tag}"
    with AdminClient(broker.bootstrap) as admin:  # in-process: each CLI run against a broker costs ~1.5 s
        admin.create_topic(topic, 2)
        admin.create_topic(other, 1)
    # an offset of `other` committed before anyone joins: the group exists, Empty
    assert run(*bs, "--reset-offsets", "--group", group, "--topic", other, "--to-earliest", "--execute").returncode == 0

    # confluent-kafka (librdkafka) consumers: they join only once their metadata has the topic
    # (kafka-python 3.0 can join first, then miss its assignment on a busy machine)
    def consumer(group_id: str, client_id: str, **extra: str) -> confluent_kafka.Consumer:
        cons = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group_id,
                                         "client.id": client_id, "session.timeout.ms": 10000,
                                         "enable.auto.commit": False, **extra})
        cons.subscribe([topic])
        return cons

    c = consumer(group, "my-client")
    sc = consumer(static_group, "static-client", **{"group.instance.id": "instance-1"})
    try:
        deadline = time.monotonic() + 30
        while not (c.assignment() and sc.assignment()):
            assert time.monotonic() < deadline, ("the consumers never got their assignments", c.assignment(),
                                                 sc.assignment())
            c.poll(0.1)
            sc.poll(0.1)

        # --members: exact columns, Kafka's padding (the format ends with a padded column and a space)
        p = run(*bs, "--describe", "--group", group, "--members")
        assert (p.returncode, p.stderr) == (0, "")
        member_id, host = p.stdout.splitlines()[2].split()[1:3]
        assert member_id.startswith("my-client-") and host == "/127.0.0.1"
        wg, wc = max(15, len(group)), max(15, len(member_id))
        hdr = f"{'GROUP':<{wg}} {'CONSUMER-ID':<{wc}} {'HOST':<15} {'CLIENT-ID':<15} {'#PARTITIONS':<15} "
        row = f"{group:<{wg}} {member_id:<{wc}} {host:<15} {'my-client':<15} {2:<15} "
        assert p.stdout == f"\n{hdr}\n{row}\n"
        p = run(*bs, "--describe", "--group", group, "--members", "--verbose")
        assert p.stdout == f"\n{hdr}ASSIGNMENT\n{row}{topic}(0,1)\n"
        # a static member adds GROUP-INSTANCE-ID
        p = run(*bs, "--describe", "--group", static_group, "--members", "--verbose")
        assert p.returncode == 0
        lines = p.stdout.splitlines()
        assert lines[1].split() == ["GROUP", "CONSUMER-ID", "GROUP-INSTANCE-ID", "HOST", "CLIENT-ID", "#PARTITIONS",
                                    "ASSIGNMENT"]
        assert lines[2].split()[2:] == ["instance-1", "/127.0.0.1", "static-client", "2", f"{topic}(0,1)"]

        # --state: coordinator, strategy, state, member count
        p = run(*bs, "--describe", "--group", group, "--state")
        assert (p.returncode, p.stderr) == (0, "")
        assert p.stdout == state_table(group, f"127.0.0.1:{broker.port}  (0)", "range", "Stable", 1)

        # --list --state: every group with its state, Kafka's widths; a filter by state names
        p = run(*bs, "--list", "--state", "STABLE")
        rows = [ln.split() for ln in p.stdout.splitlines()]
        assert rows[0] == ["GROUP", "STATE"] and [group, "Stable"] in rows and [static_group, "Stable"] in rows
        assert {r[1] for r in rows[1:]} == {"Stable"}
        w = max([15] + [len(r[0]) for r in rows[1:]]) + 10
        assert p.stdout.splitlines() == [f"{a:<{w}} {b:<20}" for a, b in rows]
        assert group not in run(*bs, "--list", "--state", "empty").stdout

        # --delete-offsets: refused for the topic the live member subscribes to, done for the other
        p = run(*bs, "--delete-offsets", "--group", group, "--topic", topic)
        assert one_error_line(p) == PARTITION_LEVEL
        assert p.stdout == status_table([(topic, "0", SUBSCRIBED), (topic, "1", SUBSCRIBED)])
        p = run(*bs, "--delete-offsets", "--group", group, "--topic", other)
        assert (p.returncode, p.stderr) == (0, "")
        assert p.stdout == f"Request succeeded for deleting offsets from group {group}.\n" + status_table(
            [(other, "0", "Successful")])
        rows = [ln.split() for ln in run(*bs, "--describe", "--group", group, "--offsets").stdout.splitlines()[2:]]
        assert sorted(r[1:3] for r in rows if r) == [[topic, "0"], [topic, "1"]]  # other's offset is gone
    finally:
        c.close()
        sc.close()
    # once the member left, the group is Empty: no members to show
    p = run(*bs, "--describe", "--group", group, "--members")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", NO_MEMBERS.format(group))


# -- --reset-offsets: --to-datetime, --by-duration, --export, --from-file ---------------------------

T0 = 1709287200000  # 2024-03-01T10:00:00.000Z
LONG_TOPIC = "a-topic-name-longer-than-24"  # Jackson's CSV writer quotes strings over 24 characters
RESET_HEADER = f"{'GROUP':<30} {'TOPIC':<30} {'PARTITION':<10} {'NEW-OFFSET':<15}"
EMPTY_WARN = "\nWarn: Partition {p} from topic {t} is empty. Falling back to latest known offset.\n"


def reset_table(rows: list[tuple[str, str, int, int]]) -> str:
    return "\n" + "\n".join([RESET_HEADER] + [f"{g:<30} {t:<30} {p!s:<10} {o!s:<15}" for g, t, p, o in rows]) + "\n"


def fill_stamped(d: str, now_ms: int) -> None:
    """events: partition 0 records at T0 + 0, 60, 120, 180 s (offsets 0-3), partition 1 at
    T0 + 30, 90 s (offsets 0-1); recent: records 3 h and 1 h before `now_ms`; empty: no records;
    LONG_TOPIC: one record at T0. Group app has committed events-0: 4, events-1: 2; other events-0: 1."""
    with logstore.open(d) as s:
        for name, n in (("events", 2), ("recent", 1), ("empty", 1), (LONG_TOPIC, 1)):
            s.create_topic(name, n, {"retention.ms": "-1"})
        for p, stamps in ((0, (0, 60, 120, 180)), (1, (30, 90))):
            for sec in stamps:
                s.partition("events", p).append([(b"k", b"v")], timestamp=T0 + sec * 1000)
        for ago_h in (3, 1):
            s.partition("recent", 0).append([(b"k", b"v")], timestamp=now_ms - ago_h * 3600_000)
        s.partition(LONG_TOPIC, 0).append([(b"k", b"v")], timestamp=T0)


@pytest.fixture
def stamped(tmp_path) -> str:
    d = str(tmp_path / "stamped")
    fill_stamped(d, int(time.time() * 1000))
    with logstore.open(d) as s:
        gos = GroupOffsetStore.of(s)
        gos.commit("app", {("events", 0): 4, ("events", 1): 2})
        gos.commit("other", {("events", 0): 1})
    return d


def committed(d: str, group: str) -> dict[tuple[str, int], int]:
    with logstore.open(d) as s:
        return {tp: om.offset for tp, om in GroupOffsetStore.of(s).fetch(group).items()}


def test_to_datetime_time_zones_dry_run_and_execute(stamped, monkeypatch) -> None:
    dd = ["--data-dir", stamped, "--reset-offsets", "--group", "app", "--all-topics"]
    # no zone is UTC, whatever the local zone (Kafka appends Z)
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    for when in ("2024-03-01T10:01:00.000", "2024-03-01T10:01:00.000Z", "2024-03-01T11:01:00.000+01:00",
                 "2024-03-01T05:01:00.000-0500", "2024-03-01T05:01:00.000-05", "2024-3-1T10:1:0.0Z"):
        p = run(*dd, "--to-datetime", when, "--dry-run")
        assert (p.returncode, p.stderr) == (0, ""), when
        assert p.stdout == reset_table([("app", "events", 0, 1), ("app", "events", 1, 1)]), when
    # at a record's timestamp: that record; after the last record of a partition: its latest
    # offset, with Kafka's warning (on stdout, before the table)
    p = run(*dd, "--to-datetime", "2024-03-01T10:01:30.000Z", "--dry-run")
    assert p.stdout == reset_table([("app", "events", 0, 2), ("app", "events", 1, 1)])
    p = run(*dd, "--to-datetime", "2024-03-01T10:02:00.001Z", "--dry-run")
    assert p.stdout == EMPTY_WARN.format(p=1, t="events") + reset_table([("app", "events", 0, 3),
                                                                         ("app", "events", 1, 2)])
    assert committed(stamped, "app") == {("events", 0): 4, ("events", 1): 2}  # dry runs change nothing
    # without --dry-run or --execute: Kafka's warning, still a dry run
    p = run(*dd, "--to-datetime", "2024-03-01T09:00:00.000Z")
    assert p.stderr.startswith("WARN: No action will be performed") and p.stdout == reset_table(
        [("app", "events", 0, 0), ("app", "events", 1, 0)])
    assert committed(stamped, "app") == {("events", 0): 4, ("events", 1): 2}

    p = run(*dd, "--to-datetime", "2024-03-01T10:01:00.000Z", "--execute")
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout == reset_table([("app", "events", 0, 1), ("app", "events", 1, 1)])
    assert committed(stamped, "app") == {("events", 0): 1, ("events", 1): 1}
    # --topic scope, a partition with no records falls back to its latest offset (0)
    p = run("--data-dir", stamped, "--reset-offsets", "--group", "fresh", "--topic", "empty", "--topic", "events:1",
            "--to-datetime", "2024-03-01T10:00:00.000Z", "--execute")
    assert p.stdout == EMPTY_WARN.format(p=0, t="empty") + reset_table([("fresh", "empty", 0, 0),
                                                                        ("fresh", "events", 1, 0)])
    assert committed(stamped, "fresh") == {("empty", 0): 0, ("events", 1): 0}


def test_by_duration(stamped) -> None:
    dd = ["--data-dir", stamped, "--reset-offsets", "--group", "g", "--topic", "recent"]
    p = run(*dd, "--by-duration", "PT2H", "--dry-run")  # records 3 h and 1 h old: the second
    assert (p.returncode, p.stdout, p.stderr) == (0, reset_table([("g", "recent", 0, 1)]), "")
    for older in ("PT4H", "P1D", "pt240m", "P0DT3H59M59.5S", "PT14399,9S"):
        assert run(*dd, "--by-duration", older, "--dry-run").stdout == reset_table([("g", "recent", 0, 0)]), older
    for newer in ("PT30M", "PT0S", "-PT1H"):  # nothing that recent: the latest offset
        p = run(*dd, f"--by-duration={newer}", "--dry-run")
        assert p.stdout == EMPTY_WARN.format(p=0, t="recent") + reset_table([("g", "recent", 0, 2)]), newer
    p = run(*dd, "--by-duration", "PT2H", "--execute")
    assert p.returncode == 0 and committed(stamped, "g") == {("recent", 0): 1}


def test_export_and_from_file(stamped, tmp_path) -> None:
    dd = ["--data-dir", stamped, "--reset-offsets"]
    # one --group: topic,partition,offset; Kafka prints the CSV then an empty line
    p = run(*dd, "--group", "app", "--all-topics", "--to-offset", "1", "--export", "--dry-run")
    assert (p.returncode, p.stdout, p.stderr) == (0, "events,0,1\nevents,1,1\n\n", "")
    # several groups (or --all-groups): group,topic,partition,offset; the dry-run warning on stderr
    p = run(*dd, "--group", "app", "--group", "other", "--all-topics", "--to-earliest", "--export")
    assert p.stdout == "app,events,0,0\napp,events,1,0\nother,events,0,0\n\n"
    assert p.stderr.startswith("WARN: No action will be performed")
    p = run(*dd, "--all-groups", "--topic", "events:0", "--to-latest", "--export", "--dry-run")
    assert p.stdout == "app,events,0,4\nother,events,0,4\n\n"
    # a long name is quoted as Jackson quotes it, and read back
    p = run(*dd, "--group", "app", "--topic", LONG_TOPIC, "--to-earliest", "--export", "--dry-run")
    assert p.stdout == f'"{LONG_TOPIC}",0,0\n\n'
    # with --export stdout is only the CSV: Kafka's warnings go to stderr
    p = run(*dd, "--group", "app", "--all-topics", "--to-datetime", "2024-03-01T10:02:00.001Z", "--export",
            "--dry-run")
    assert (p.stdout, p.stderr) == ("events,0,3\nevents,1,2\n\n", EMPTY_WARN.format(p=1, t="events"))
    assert committed(stamped, "app") == {("events", 0): 4, ("events", 1): 2}

    # --from-file needs neither --topic nor --all-topics; the exported plan, as Kafka writes it
    single = tmp_path / "single.csv"
    exported = run(*dd, "--group", "app", "--all-topics", "--to-offset", "1", "--export", "--dry-run").stdout
    single.write_text(exported.rstrip("\n") + f'\n"{LONG_TOPIC}",0,1\n')
    p = run(*dd, "--group", "app", "--from-file", str(single), "--dry-run")
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout == reset_table([("app", LONG_TOPIC, 0, 1), ("app", "events", 0, 1), ("app", "events", 1, 1)])
    assert committed(stamped, "app") == {("events", 0): 4, ("events", 1): 2}
    p = run(*dd, "--group", "app", "--from-file", str(single), "--execute", "--export")
    assert (p.stdout, p.stderr) == (f'"{LONG_TOPIC}",0,1\nevents,0,1\nevents,1,1\n\n', "")
    assert committed(stamped, "app") == {("events", 0): 1, ("events", 1): 1, (LONG_TOPIC, 0): 1}

    # group,topic,partition,offset lines: each group its own lines; a group with none: Kafka's
    # error line, the others still reset, exit 0; offsets past the ends are clamped (stderr)
    multi = tmp_path / "multi.csv"
    multi.write_text("app,events,0,3\r\nother,events,0,99\nother,events,1,-5\n\n")
    p = run(*dd, "--group", "other", "--group", "ghost", "--from-file", str(multi), "--execute")
    assert p.returncode == 0
    assert p.stdout == "\nError: No reset plan for group ghost found\n" + reset_table(
        [("other", "events", 0, 4), ("other", "events", 1, 0)])
    assert p.stderr == ("New offset (99) is higher than latest offset for topic partition events-0. Value will be "
                        "set to 4\nNew offset (-5) is lower than earliest offset for topic partition events-1. "
                        "Value will be set to 0\n")
    assert committed(stamped, "other") == {("events", 0): 4, ("events", 1): 0}
    assert committed(stamped, "app") == {("events", 0): 1, ("events", 1): 1, (LONG_TOPIC, 0): 1}
    # one --group reads the group,topic,partition,offset format too (its own lines)
    p = run(*dd, "--group", "app", "--from-file", str(multi), "--dry-run", "--export")
    assert p.stdout == "events,0,3\n\n"
    # a plan of no lines: no plan for any group, the header alone
    (tmp_path / "blank.csv").write_text("\n")
    p = run(*dd, "--group", "app", "--from-file", str(tmp_path / "blank.csv"), "--dry-run")
    assert (p.returncode, p.stdout) == (0, "\nError: No reset plan for group app found\n\n" + RESET_HEADER + "\n")


def test_to_current_and_shift_by_without_a_committed_offset(stamped) -> None:
    dd = ["--data-dir", stamped, "--reset-offsets", "--group", "app", "--dry-run"]
    # --to-current: the committed offset, else (Kafka) the latest one
    p = run(*dd, "--topic", "events", "--topic", "recent", "--to-current")
    assert p.stdout == reset_table([("app", "events", 0, 4), ("app", "events", 1, 2), ("app", "recent", 0, 2)])
    assert one_error_line(run(*dd, "--topic", "recent", "--shift-by", "-1")) == (
        "Error: Cannot shift offset for partition recent-0 since there is no current committed offset")
    # --all-topics wins over --topic (Kafka): the group's committed partitions only
    p = run(*dd, "--all-topics", "--topic", "recent", "--shift-by", "-1")
    assert p.stdout == reset_table([("app", "events", 0, 3), ("app", "events", 1, 1)])


@pytest.mark.parametrize("argv,message", [
    (["--to-datetime", "2024-03-01T10:00:00"],
     'Executing consumer group command failed due to java.text.ParseException: Unparseable date: '
     '"2024-03-01T10:00:00Z"'),
    (["--to-datetime", "2024-02-30T10:00:00.000+01:00"],
     'Executing consumer group command failed due to java.text.ParseException: Unparseable date: '
     '"2024-02-30T10:00:00.000+01:00"'),
    (["--to-datetime", "2024-03-01 10:00:00.000"],
     "Executing consumer group command failed due to java.text.ParseException: Error parsing timestamp. It does "
     "not contain a 'T' according to ISO8601 format"),
    (["--by-duration", "1h"], "Executing consumer group command failed due to Text cannot be parsed to a Duration"),
    (["--by-duration", "P1W"], "Executing consumer group command failed due to Text cannot be parsed to a Duration"),
    (["--by-duration", "PT"], "Executing consumer group command failed due to Text cannot be parsed to a Duration"),
    (["--by-duration", "PT9223372036854775808S"],
     "Executing consumer group command failed due to Text cannot be parsed to a Duration: seconds"),
    (["--by-duration", "P106751991167301D"],
     "Executing consumer group command failed due to Text cannot be parsed to a Duration: days"),
    (["--from-file", "/nonexistent/plan.csv"],
     "Executing consumer group command failed due to java.nio.file.NoSuchFileException: /nonexistent/plan.csv"),
    (["--to-datetime", "2024-03-01T10:00:00.000Z", "--by-duration", "PT1H"],
     'Option "[to-datetime]" can\'t be used with option "[by-duration]"'),
    (["--from-file", "f.csv", "--to-current"], 'Option "[to-current]" can\'t be used with option "[from-file]"'),
    (["--to-latest", "--shift-by", "1", "--to-earliest"],
     'Option "[to-earliest]" can\'t be used with option "[to-latest]"'),
    (["--by-duration", "PT1H", "--from-file", "f.csv", "--to-offset", "3"],
     'Option "[to-offset]" can\'t be used with option "[from-file]"'),
])
def test_reset_value_and_combination_errors(stamped, argv, message) -> None:
    p = run("--data-dir", stamped, "--reset-offsets", "--group", "app", "--topic", "events", "--dry-run", *argv)
    assert one_error_line(p) == f"Error: {message}"
    assert p.stdout == ""
    assert committed(stamped, "app") == {("events", 0): 4, ("events", 1): 2}


def test_reset_plan_errors(stamped, tmp_path) -> None:
    dd = ["--data-dir", stamped, "--reset-offsets", "--dry-run"]
    bad = tmp_path / "bad.csv"
    bad.write_text("events,0,1\nevents,zero,1\n")
    assert one_error_line(run(*dd, "--group", "app", "--from-file", str(bad))) == (
        f"Error: Executing consumer group command failed due to line 2 of {bad} is not a reset plan line "
        "(topic,partition,offset): 'events,zero,1'")
    bad.write_text("events,0,1\n")  # three fields where several groups need four
    assert one_error_line(run(*dd, "--all-groups", "--from-file", str(bad))) == (
        f"Error: Executing consumer group command failed due to line 1 of {bad} is not a reset plan line "
        "(group,topic,partition,offset): 'events,0,1'")
    bad.write_text("")  # Kafka: one empty line, which no record format reads
    assert "line 1 of" in one_error_line(run(*dd, "--group", "app", "--from-file", str(bad)))
    bad.write_text("app,nosuch,0,1\n")
    assert one_error_line(run(*dd, "--group", "app", "--from-file", str(bad))) == \
        "Error: Topic 'nosuch' has no partition 0"
    # the scope options are still needed without --from-file; --export changes nothing elsewhere
    assert one_error_line(run(*dd, "--group", "app", "--to-datetime", "2024-03-01T10:00:00.000", "--export")) == \
        "Error: One of the reset scopes should be defined: --all-topics, --topic."
    assert run("--data-dir", stamped, "--list", "--export").stdout == "app\nother\n"  # Kafka ignores it


def test_help_lists_the_reset_scenarios() -> None:
    out = run("--help").stdout
    for flag in ("--to-datetime DATETIME", "--by-duration DURATION", "--from-file PATH", "--export"):
        assert flag in out, flag


# -- the reset scenarios against a broker ---------------------------------------------------------

@pytest.fixture(scope="module")
def stamped_broker(tmp_path_factory):
    """A broker serving a log dir filled as `stamped` (records with known timestamps)."""
    d = str(tmp_path_factory.mktemp("cli-groups-reset") / "data")
    fill_stamped(d, int(time.time() * 1000))
    b = start_broker(d, overrides={"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "2"})
    yield b
    b.stop()


def test_reset_scenarios_against_a_broker(stamped_broker, tmp_path) -> None:
    from broker.admin_client import AdminClient
    bs = ["--bootstrap-server", stamped_broker.bootstrap, "--reset-offsets"]
    group = f"net-{uuid.uuid4().hex[:8]}"

    def offsets() -> dict[tuple[str, int], int]:
        with AdminClient(stamped_broker.bootstrap) as admin:
            return admin.offset_fetch(group)

    # --to-datetime over ListOffsets by timestamp: a dry run commits nothing
    p = run(*bs, "--group", group, "--topic", "events", "--to-datetime", "2024-03-01T11:01:30.000+01:00",
            "--dry-run")
    assert (p.returncode, p.stdout, p.stderr) == (0, reset_table([(group, "events", 0, 2),
                                                                  (group, "events", 1, 1)]), "")
    assert offsets() == {}
    p = run(*bs, "--group", group, "--topic", "events", "--topic", "empty", "--to-datetime",
            "2024-03-01T10:02:00.001", "--execute", "--export")
    assert (p.stdout, p.stderr) == ("empty,0,0\nevents,0,3\nevents,1,2\n\n",
                                    EMPTY_WARN.format(p=0, t="empty") + EMPTY_WARN.format(p=1, t="events"))
    assert offsets() == {("empty", 0): 0, ("events", 0): 3, ("events", 1): 2}
    # --by-duration
    p = run(*bs, "--group", group, "--topic", "recent", "--by-duration", "PT2H", "--execute")
    assert p.stdout == reset_table([(group, "recent", 0, 1)])
    assert offsets()[("recent", 0)] == 1
    # --export, then --from-file (no scope option) with several groups
    plan = tmp_path / "plan.csv"
    p = run(*bs, "--group", group, "--group", f"{group}-b", "--topic", "events", "--to-earliest", "--dry-run",
            "--export")
    assert p.stdout == f"{group},events,0,0\n{group},events,1,0\n{group}-b,events,0,0\n{group}-b,events,1,0\n\n"
    plan.write_text(p.stdout)
    p = run(*bs, "--group", group, "--group", f"{group}-b", "--from-file", str(plan), "--execute")
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout == reset_table([(group, "events", 0, 0), (group, "events", 1, 0),
                                    (f"{group}-b", "events", 0, 0), (f"{group}-b", "events", 1, 0)])
    assert offsets() == {("empty", 0): 0, ("events", 0): 0, ("events", 1): 0, ("recent", 0): 1}
