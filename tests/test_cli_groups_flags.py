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
     "Option '[reset-offsets]' requires one of the following scenarios: "
     "[[to-offset], [to-earliest], [to-latest], [to-current], [shift-by]]"),
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
