"""`logstore consumer-groups` on KIP-848 consumer-protocol groups (`group.protocol=consumer`), as
Kafka 4's kafka-consumer-groups.sh shows them: ListGroups lists them, ConsumerGroupDescribe (API
69) describes them. Checked against a real `logstore serve` with real confluent-kafka consumers
(librdkafka's ConsumerGroupHeartbeat client) polled by threads of the test process; the CLI runs
in-process (`broker.cli.main`, output through capsys).

  - a live group: --list [--state], --describe (offsets with the members' CONSUMER-ID / HOST /
    CLIENT-ID), --members [--verbose] (Kafka 4's CURRENT-EPOCH CURRENT-ASSIGNMENT TARGET-EPOCH
    TARGET-ASSIGNMENT), --state [--verbose] (ASSIGNMENT-STRATEGY `uniform`, STATE Stable,
    GROUP-EPOCH TARGET-ASSIGNMENT-EPOCH); --reset-offsets and --delete refused while it has members;
  - the same group once its members left: Empty, committed offsets without consumers, offsets
    reset, the group deleted, then reported as not existing;
  - a classic group (offsets only) next to a consumer group with --all-groups: the classic one
    prints as before (no epoch columns even with --verbose).

Every wait is a deadline on an observed condition (the group as ConsumerGroupDescribe shows it,
what the consumers consumed), never a fixed sleep.
"""

from __future__ import annotations

import uuid
from typing import Callable

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from broker.admin_client import AdminClient  # noqa: E402
from broker.cli import main  # noqa: E402
from broker.cli.backends import GroupInfo, NetBackend  # noqa: E402
from broker.pytest_plugin import start_broker  # noqa: E402
from logstore.records import build_batch  # noqa: E402
from tests.compat import group_helpers  # noqa: E402
from tests.compat.group_helpers import ConsumerThread, consumer_conf  # noqa: E402

PROPS = {
    "offsets.topic.num.partitions": "1",
    "group.initial.rebalance.delay.ms": "0",
    "group.consumer.heartbeat.interval.ms": "500",
    "group.consumer.session.timeout.ms": "6000",
}
DEADLINE_S = 25.0
RECORDS = {0: 3, 1: 2, 2: 1}  # partition -> records produced


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(str(tmp_path_factory.mktemp("cg-consumer") / "data"), overrides=PROPS)
    yield b
    b.stop()


def wait_for(cond: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    group_helpers.wait_for(cond, timeout, what, hold=0, interval=0.1)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["consumer-groups", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return rc, out, err


def seed_topic(bootstrap: str) -> str:
    topic = f"t-{uuid.uuid4().hex[:6]}"
    with AdminClient(bootstrap) as c:
        c.create_topic(topic, len(RECORDS))
        for p, n in RECORDS.items():
            c.produce(topic, p, build_batch([(None, f"{p}-{i}".encode(), [], None) for i in range(n)]))
    return topic


def group_info(bootstrap: str, group: str) -> GroupInfo:
    be = NetBackend(bootstrap, 10.0)
    try:
        return be.group_info(group, coordinator=False)
    finally:
        be.close()


class Member(ConsumerThread):
    """A confluent-kafka consumer (group.protocol=consumer) polled by its own thread; keeps its
    position per partition and commits its positions when asked."""

    def __init__(self, bootstrap: str, group: str, topic: str, client_id: str):
        self.position: dict[tuple[str, int], int] = {}  # next offset to consume, by partition
        super().__init__(consumer_conf(bootstrap, group, **{"client.id": client_id}), [topic], wait_interval=0.1)

    def on_message(self, m) -> None:
        self.position[(m.topic(), m.partition())] = m.offset() + 1

    def commit(self) -> None:
        super().commit(DEADLINE_S)
        assert not [e for e in self.errors if e.startswith("commit")], self.errors


def stable_group(bootstrap: str, group: str, topic: str, n: int = 2) -> tuple[list[Member], GroupInfo]:
    """`n` members in `group` that between them own every partition of `topic`, have consumed
    all its records and committed; the group as ConsumerGroupDescribe then shows it (Stable)."""
    members = [Member(bootstrap, group, topic, f"client-{i}") for i in range(n)]
    everything = {(topic, p) for p in RECORDS}

    def settled() -> bool:
        owned = [tp for m in members for tp in m.assignment]
        return len(owned) == len(set(owned)) == len(everything) and all(m.assignment for m in members) \
            and all(m.position.get(tp) == RECORDS[tp[1]] for m in members for tp in m.assignment)

    def described() -> GroupInfo | None:
        info = group_info(bootstrap, group)
        owned = {tp for mm in info.members for tp in mm["assignment"]}
        return info if info.state == "Stable" and len(info.members) == n and owned == everything else None

    try:
        wait_for(settled, "the members to own every partition and consume it to its end")
        for m in members:
            m.commit()  # each one its assigned partitions
        wait_for(lambda: described() is not None, "the group to be Stable with every partition assigned")
        return members, described() or group_info(bootstrap, group)
    except BaseException:
        for m in members:
            m.close()
        raise


def test_live_then_empty_consumer_group(broker, capsys) -> None:
    bs = broker.bootstrap
    topic = seed_topic(bs)
    group = f"cg-{uuid.uuid4().hex[:6]}"
    members, info = stable_group(bs, group, topic)
    try:
        assert info.group_type == "consumer" and info.protocol == "uniform"
        by_id = {m["member_id"]: m for m in info.members}
        coordinator = f"127.0.0.1:{broker.port}  (0)"

        # --list, --list --state [filter]
        rc, out, _ = cli(capsys, "--bootstrap-server", bs, "--list")
        assert rc == 0 and group in out.splitlines()
        rc, out, _ = cli(capsys, "--bootstrap-server", bs, "--list", "--state")
        assert rc == 0 and f"{group:<25} {'Stable':<20}" in out.splitlines()
        rc, out, _ = cli(capsys, "--bootstrap-server", bs, "--list", "--state", "empty")
        assert rc == 0 and group not in out

        # --describe (offsets): every partition at its member, committed = end, lag 0
        rc, out, err = cli(capsys, "--bootstrap-server", bs, "--describe", "--group", group)
        assert (rc, err) == (0, "")
        lines = out.split("\n")
        assert lines[0] == "" and lines[1].split() == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET",
                                                       "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]
        rows = {(r.split()[1], int(r.split()[2])): r.split() for r in lines[2:] if r.strip()}
        assert set(rows) == {(topic, p) for p in RECORDS}
        for (t, p), r in rows.items():
            m = by_id[r[6]]
            assert (t, p) in m["assignment"]
            assert r[3:6] == [str(RECORDS[p]), str(RECORDS[p]), "0"]
            assert r[7:] == [m["client_host"], m["client_id"]] and m["client_id"] in ("client-0", "client-1")
        idw = max(15, *(len(i) for i in by_id))
        assert lines[1] == (f"{'GROUP':<15} {'TOPIC':<15} {'PARTITION':<10} {'CURRENT-OFFSET':<15} "
                            f"{'LOG-END-OFFSET':<15} {'LAG':<15} {'CONSUMER-ID':<{idw}} {'HOST':<15} CLIENT-ID")

        # --members: Kafka's columns, the current assignment's size
        rc, out, err = cli(capsys, "--bootstrap-server", bs, "--describe", "--group", group, "--members")
        assert (rc, err) == (0, "")
        lines = out.split("\n")
        assert lines[1] == f"{'GROUP':<15} {'CONSUMER-ID':<{idw}} {'HOST':<15} {'CLIENT-ID':<15} {'#PARTITIONS':<15} "
        got = {ln.split()[1]: ln for ln in lines[2:] if ln.strip()}
        assert set(got) == set(by_id)
        for mid, m in by_id.items():
            assert got[mid] == (f"{group:<15} {mid:<{idw}} {m['client_host']:<15} {m['client_id']:<15} "
                                f"{len(m['assignment']):<15} ")

        # --members --verbose: Kafka 4's epochs and current / target assignments of a consumer group
        rc, out, err = cli(capsys, "--bootstrap-server", bs, "--describe", "--group", group, "--members", "--verbose")
        assert (rc, err) == (0, "")
        lines = out.split("\n")
        assert lines[1].split() == ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS", "CURRENT-EPOCH",
                                    "CURRENT-ASSIGNMENT", "TARGET-EPOCH", "TARGET-ASSIGNMENT"]
        for ln in lines[2:]:
            if not ln.strip():
                continue
            cells = ln.split()
            mid = cells[1]
            parts = sorted(p for t, p in by_id[mid]["assignment"])
            text = f"{topic}({','.join(str(p) for p in parts)})"
            # Stable: each member is at the target assignment epoch with its target partitions
            assert cells[4:] == [str(len(parts)), str(info.assignment_epoch), text, str(info.assignment_epoch), text]
            assert ln.startswith(got[mid])

        # --state [--verbose]: the server assignor, Stable, the epochs with --verbose
        rc, out, err = cli(capsys, "--bootstrap-server", bs, "--describe", "--group", group, "--state")
        assert (rc, err) == (0, "")
        assert out == (f"\n{'GROUP':<15} {'COORDINATOR (ID)':<25} {'ASSIGNMENT-STRATEGY':<20} {'STATE':<20} #MEMBERS\n"
                       f"{group:<15} {coordinator:<25} {'uniform':<20} {'Stable':<20} 2\n")
        rc, out, err = cli(capsys, "--bootstrap-server", bs, "--describe", "--group", group, "--state", "--verbose")
        assert (rc, err) == (0, "")
        assert out == (f"\n{'GROUP':<15} {'COORDINATOR (ID)':<25} {'ASSIGNMENT-STRATEGY':<20} {'STATE':<20} "
                       f"{'GROUP-EPOCH':<15} {'TARGET-ASSIGNMENT-EPOCH':<25} #MEMBERS\n"
                       f"{group:<15} {coordinator:<25} {'uniform':<20} {'Stable':<20} "
                       f"{info.group_epoch!s:<15} {info.assignment_epoch!s:<25} 2\n")
        assert info.group_epoch == info.assignment_epoch and info.group_epoch >= 1

        # an active group: offsets are not reset, the group is not deleted
        rc, out, err = cli(capsys, "--bootstrap-server", bs, "--reset-offsets", "--group", group, "--all-topics",
                           "--to-earliest", "--execute")
        assert (rc, out) == (1, "")
        assert err == (f"Error: Assignments can only be reset if the group '{group}' is inactive, but the current "
                       f"state is Stable.\n")
        rc, out, err = cli(capsys, "--bootstrap-server", bs, "--delete", "--group", group)
        assert (rc, out) == (1, "")
        assert err == (f"Error: Deletion of some consumer groups failed: Group '{group}' could not be deleted due to: "
                       f"NON_EMPTY_GROUP (The group is not empty.)\n")
    finally:
        for m in members:
            m.close()

    # the members left: Empty, with its committed offsets
    wait_for(lambda: group_info(bs, group).state == "Empty", "the group to be Empty")
    note = f"\nConsumer group '{group}' has no active members.\n"
    rc, out, err = cli(capsys, "--bootstrap-server", bs, "--describe", "--group", group)
    assert (rc, err) == (0, note)
    rows = [ln.split() for ln in out.split("\n")[2:] if ln.strip()]
    assert rows == [[group, topic, str(p), str(n), str(n), "0", "-", "-", "-"] for p, n in sorted(RECORDS.items())]
    rc, out, err = cli(capsys, "--bootstrap-server", bs, "--describe", "--group", group, "--members", "--verbose")
    assert (rc, out, err) == (0, "", note)
    rc, out, err = cli(capsys, "--bootstrap-server", bs, "--describe", "--group", group, "--state")
    assert (rc, err) == (0, note)
    assert out.split("\n")[2].split() == [group, "127.0.0.1:" + str(broker.port), "(0)", "uniform", "Empty", "0"]
    rc, out, _ = cli(capsys, "--bootstrap-server", bs, "--list", "--state", "Empty")
    assert rc == 0 and f"{group:<25} {'Empty':<20}" in out.splitlines()

    # inactive: offsets reset
    rc, out, err = cli(capsys, "--bootstrap-server", bs, "--reset-offsets", "--group", group, "--topic", topic,
                       "--to-earliest", "--execute")
    assert (rc, err) == (0, ""), err
    assert [ln.split() for ln in out.split("\n")[2:] if ln.strip()] == [[group, topic, str(p), "0"] for p in sorted(RECORDS)]
    rc, out, err = cli(capsys, "--bootstrap-server", bs, "--describe", "--group", group)
    assert [ln.split()[3:6] for ln in out.split("\n")[2:] if ln.strip()] == \
        [["0", str(n), str(n)] for _p, n in sorted(RECORDS.items())]

    # deleted, then gone
    rc, out, err = cli(capsys, "--bootstrap-server", bs, "--delete", "--group", group)
    assert (rc, out, err) == (0, f"Deletion of requested consumer groups ('{group}') was successful.\n", "")
    rc, out, err = cli(capsys, "--bootstrap-server", bs, "--describe", "--group", group, "--state")
    assert (rc, out, err) == (1, "", f"Error: Consumer group '{group}' does not exist.\n")
    rc, out, _ = cli(capsys, "--bootstrap-server", bs, "--list")
    assert rc == 0 and group not in out.splitlines()


def test_all_groups_mixes_classic_and_consumer_groups(broker, capsys) -> None:
    bs = broker.bootstrap
    topic = seed_topic(bs)
    classic = f"cl-{uuid.uuid4().hex[:6]}"
    group = f"cg-{uuid.uuid4().hex[:6]}"
    # a classic group known by its offsets only (reset of a group that does not exist yet)
    rc, _out, err = cli(capsys, "--bootstrap-server", bs, "--reset-offsets", "--group", classic, "--topic", topic,
                        "--to-latest", "--execute")
    assert (rc, err) == (0, ""), err
    members, info = stable_group(bs, group, topic, n=1)
    try:
        coordinator = f"127.0.0.1:{broker.port}  (0)"
        rc, out, _ = cli(capsys, "--bootstrap-server", bs, "--list", "--state")
        lines = out.splitlines()
        assert f"{classic:<25} {'Empty':<20}" in lines and f"{group:<25} {'Stable':<20}" in lines
        rc, out, _ = cli(capsys, "--bootstrap-server", bs, "--list", "--state", "stable")
        assert group in out and classic not in out

        rc, out, err = cli(capsys, "--bootstrap-server", bs, "--describe", "--all-groups", "--state", "--verbose")
        assert rc == 0 and f"\nConsumer group '{classic}' has no active members.\n" in err
        assert (f"\n{'GROUP':<15} {'COORDINATOR (ID)':<25} {'ASSIGNMENT-STRATEGY':<20} {'STATE':<20} #MEMBERS\n"
                f"{classic:<15} {coordinator:<25} {'-':<20} {'Empty':<20} 0\n") in out
        assert (f"\n{'GROUP':<15} {'COORDINATOR (ID)':<25} {'ASSIGNMENT-STRATEGY':<20} {'STATE':<20} "
                f"{'GROUP-EPOCH':<15} {'TARGET-ASSIGNMENT-EPOCH':<25} #MEMBERS\n"
                f"{group:<15} {coordinator:<25} {'uniform':<20} {'Stable':<20} "
                f"{info.group_epoch!s:<15} {info.assignment_epoch!s:<25} 1\n") in out

        rc, out, err = cli(capsys, "--bootstrap-server", bs, "--describe", "--all-groups")
        assert rc == 0
        rows = [ln.split() for ln in out.splitlines() if ln.startswith((classic, group))]
        mid = info.members[0]["member_id"]
        assert [r for r in rows if r[0] == group] == \
            [[group, topic, str(p), str(n), str(n), "0", mid, info.members[0]["client_host"], "client-0"]
             for p, n in sorted(RECORDS.items())]
        assert [r for r in rows if r[0] == classic] == \
            [[classic, topic, str(p), str(n), str(n), "0", "-", "-", "-"] for p, n in sorted(RECORDS.items())]
    finally:
        for m in members:
            m.close()
