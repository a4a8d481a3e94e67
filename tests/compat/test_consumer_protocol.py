"""The consumer group protocol of KIP-848 (`group.protocol=consumer`) against a real broker process:
real confluent-kafka consumers (librdkafka's ConsumerGroupHeartbeat client) for membership,
failover, resuming from commits and new partitions; raw ConsumerGroupHeartbeat requests for the
reconciliation rules and error codes Kafka answers.

The broker runs with small `group.consumer.heartbeat.interval.ms` / `session.timeout.ms` so
rebalances take well under a second and a killed member is fenced in a few seconds. Every wait is
a deadline on an observed condition, never a fixed sleep.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic  # noqa: E402

from broker.admin_client.connection import Connection, code_of  # noqa: E402
from broker.pytest_plugin import BrokerProcess, start_broker  # noqa: E402
from tests.compat import group_helpers  # noqa: E402
from tests.compat.group_helpers import FAST_REBALANCE, ConsumerThread, consumer_conf  # noqa: E402

SESSION_MS = 3000
PROPS = {"offsets.topic.num.partitions": "3", **FAST_REBALANCE,
         "group.consumer.heartbeat.interval.ms": "250", "group.consumer.session.timeout.ms": str(SESSION_MS)}
DEADLINE_S = 25.0


@pytest.fixture
def broker(tmp_path):
    b = start_broker(str(tmp_path / "data"), overrides=PROPS)
    yield b
    b.stop()


def wait_for(cond: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    group_helpers.wait_for(cond, timeout, what, hold=0, interval=0.05)


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result is in
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(20)


def produce(bootstrap: str, topic: str, per_partition: int, partitions: int, start: int = 0) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for part in range(partitions):
        for i in range(start, start + per_partition):
            p.produce(topic, value=f"{part}-{i}".encode(), partition=part)
    assert p.flush(20) == 0


class Member(ConsumerThread):
    """A confluent-kafka consumer polled by its own thread; `assignment` is its latest set of
    (topic, partition), `values` what it consumed."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], **extra):
        self.values: list[str] = []
        self._lock = threading.Lock()
        super().__init__(consumer_conf(bootstrap, group, **extra), topics, wait_interval=0.05)

    def on_message(self, m) -> None:
        with self._lock:
            self.values.append(m.value().decode())

    def consumed(self) -> list[str]:
        with self._lock:
            return list(self.values)


def settled(members: list[Member], expected: set[tuple[str, int]]) -> bool:
    """Every expected partition owned by exactly one member, nothing else owned."""
    owned = [tp for m in members for tp in m.assignment]
    return len(owned) == len(set(owned)) and set(owned) == expected


def parts(topic: str, n: int) -> set[tuple[str, int]]:
    return {(topic, p) for p in range(n)}


# -- librdkafka consumers ------------------------------------------------------------------------------
def test_one_member_consumes_everything(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "t1", 4)
    produce(broker.bootstrap, "t1", 10, 4)
    m = Member(broker.bootstrap, "g1", ["t1"])
    try:
        wait_for(lambda: len(m.consumed()) == 40, "40 records")
        assert sorted(m.consumed()) == sorted(f"{p}-{i}" for p in range(4) for i in range(10))
        assert m.assignment == frozenset(parts("t1", 4))
    finally:
        m.close()


@pytest.mark.parametrize("n", [2, 3])
def test_members_split_the_partitions(broker: BrokerProcess, n: int) -> None:
    create_topic(broker.bootstrap, "t", 6)
    members = [Member(broker.bootstrap, "g", ["t"]) for _ in range(n)]
    try:
        wait_for(lambda: settled(members, parts("t", 6)) and all(len(m.assignment) == 6 // n for m in members),
                 f"6 partitions split evenly over {n} members")
    finally:
        for m in members:
            m.close()


def test_extra_members_idle_and_closing_member_is_taken_over(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "t", 3)
    members = [Member(broker.bootstrap, "g", ["t"]) for _ in range(4)]
    try:
        wait_for(lambda: settled(members, parts("t", 3)) and sorted(len(m.assignment) for m in members) == [0, 1, 1, 1],
                 "3 partitions over 4 members, one idle")
        busy = [m for m in members if m.assignment]
        busy[0].close()
        members.remove(busy[0])
        wait_for(lambda: settled(members, parts("t", 3)) and all(m.assignment for m in members),
                 "the closed member's partition taken over by the idle one")
    finally:
        for m in members:
            m.close()


KILLED = r'''
import json, sys
from confluent_kafka import Consumer
bootstrap, group, topic = sys.argv[1:4]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
              "auto.offset.reset": "earliest", "log_level": 0})
c.subscribe([topic])
last = None
while True:
    c.poll(0.05)
    a = sorted(p.partition for p in c.assignment())
    if a != last:
        print(json.dumps(a), flush=True)
        last = a
'''


def test_killed_member_is_fenced_after_session_timeout(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "t", 4)
    proc = subprocess.Popen([sys.executable, "-c", KILLED, broker.bootstrap, "g", "t"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    seen: list[list[int]] = []
    threading.Thread(target=lambda: [seen.append(json.loads(line)) for line in proc.stdout], daemon=True).start()
    m = Member(broker.bootstrap, "g", ["t"])
    try:
        wait_for(lambda: bool(seen) and len(seen[-1]) == 2 and len(m.assignment) == 2,
                 "two members with two partitions each")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = time.monotonic()
        wait_for(lambda: m.assignment == frozenset(parts("t", 4)), "the survivor owning every partition")
        # not before the killed member's session ran out (a little slack for clocks)
        assert time.monotonic() - killed_at >= SESSION_MS / 1000 * 0.8
    finally:
        if proc.poll() is None:
            proc.kill()
        m.close()


def test_commits_survive_a_restart_and_a_new_member_resumes(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    b = start_broker(data, overrides=PROPS)
    try:
        create_topic(b.bootstrap, "t", 2)
        produce(b.bootstrap, "t", 5, 2)
        m = Member(b.bootstrap, "g", ["t"])
        try:
            wait_for(lambda: len(m.consumed()) == 10, "the first 10 records")
            m.commit()
        finally:
            m.close()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        got = admin.list_consumer_group_offsets(
            [confluent_kafka.ConsumerGroupTopicPartitions("g")])["g"].result(20)
        assert {(tp.partition, tp.offset) for tp in got.topic_partitions} == {(0, 5), (1, 5)}
    finally:
        b.stop()
    b = start_broker(data, port=b.port, overrides=PROPS)
    try:
        produce(b.bootstrap, "t", 3, 2, start=5)
        m = Member(b.bootstrap, "g", ["t"])
        try:
            wait_for(lambda: len(m.consumed()) == 6, "the 6 records after the committed offsets")
            assert sorted(m.consumed()) == sorted(f"{p}-{i}" for p in range(2) for i in range(5, 8))
        finally:
            m.close()
    finally:
        b.stop()


def test_member_survives_a_broker_restart(tmp_path: Path) -> None:
    """Group metadata is not persisted: the member's next heartbeat is refused and it rejoins."""
    data = str(tmp_path / "data")
    b = start_broker(data, overrides=PROPS)
    m = None
    try:
        create_topic(b.bootstrap, "t", 2)
        produce(b.bootstrap, "t", 1, 2)
        m = Member(b.bootstrap, "g", ["t"])
        wait_for(lambda: len(m.consumed()) == 2, "the records produced before the restart")
        m.commit()  # so the restarted broker knows the group id (offsets only, as an empty classic group)
        b.stop()
        b = start_broker(data, port=b.port, overrides=PROPS)
        produce(b.bootstrap, "t", 1, 2, start=1)
        wait_for(lambda: len(m.consumed()) >= 4, "records produced after the restart")
        assert sorted(m.consumed()) == ["0-0", "0-1", "1-0", "1-1"]
        wait_for(lambda: m.assignment == frozenset(parts("t", 2)), "the assignment after the restart")
    finally:
        if m is not None:
            m.close()
        b.stop()


def test_added_partitions_get_assigned(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "t", 2)
    members = [Member(broker.bootstrap, "g", ["t"]) for _ in range(2)]
    try:
        wait_for(lambda: settled(members, parts("t", 2)), "2 partitions over 2 members")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_partitions([NewPartitions("t", 4)])["t"].result(20)
        wait_for(lambda: settled(members, parts("t", 4)) and all(len(m.assignment) == 2 for m in members),
                 "4 partitions over 2 members")
        produce(broker.bootstrap, "t", 1, 4)
        wait_for(lambda: sum(len(m.consumed()) for m in members) == 4, "a record of every partition")
    finally:
        for m in members:
            m.close()


def test_classic_and_consumer_groups_side_by_side(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "t", 2)
    produce(broker.bootstrap, "t", 3, 2)
    new = Member(broker.bootstrap, "g-new", ["t"])
    classic = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-classic", "group.protocol": "classic",
                        "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "log_level": 3})
    classic.subscribe(["t"])
    try:
        got: list = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < 6 and time.monotonic() < deadline:
            msg = classic.poll(0.2)
            if msg is not None and not msg.error():
                got.append(msg)
        assert len(got) == 6
        wait_for(lambda: len(new.consumed()) == 6, "the consumer-protocol group's 6 records")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        listed = admin.list_consumer_groups().result(20)
        by_id = {g.group_id: g for g in listed.valid}
        assert {"g-new", "g-classic"} <= set(by_id)
        assert by_id["g-new"].type == confluent_kafka.ConsumerGroupType.CONSUMER
        assert by_id["g-classic"].type == confluent_kafka.ConsumerGroupType.CLASSIC
        # admin describe of the consumer-protocol group (ConsumerGroupDescribe)
        d = admin.describe_consumer_groups(["g-new"])["g-new"].result(20)
        assert len(d.members) == 1
        assert {(tp.topic, tp.partition) for tp in d.members[0].assignment.topic_partitions} == parts("t", 2)
        assert d.type == confluent_kafka.ConsumerGroupType.CONSUMER
        # the classic group is still described through DescribeGroups
        d = admin.describe_consumer_groups(["g-classic"])["g-classic"].result(20)
        assert d.type == confluent_kafka.ConsumerGroupType.CLASSIC and len(d.members) == 1
        assert {(tp.topic, tp.partition) for tp in d.members[0].assignment.topic_partitions} == parts("t", 2)
        # a classic member cannot join the live consumer-protocol group
        with Connection(broker.bootstrap) as c:
            r = c.request(11, {"group_id": "g-new", "session_timeout": 6000, "rebalance_timeout": 6000,
                               "member_id": "", "protocol_type": "consumer",
                               "protocols": [{"name": "range", "metadata": b"\x00\x00\x00\x00\x00\x00"}]}, version=5)
            assert code_of(r.error_code) == 23  # INCONSISTENT_GROUP_PROTOCOL
    finally:
        classic.close()
        new.close()


# -- raw ConsumerGroupHeartbeat: reconciliation and errors ---------------------------------------------------
def hb(c: Connection, group: str, member: str, epoch: int, *, version: int = 1, topics: list[str] | None = None,
       owned: list[tuple[uuid.UUID, list[int]]] | None = None, instance: str | None = None,
       rebalance_timeout: int = -1, **extra):
    data = {"group_id": group, "member_id": member, "member_epoch": epoch, "instance_id": instance,
            "rack_id": None, "rebalance_timeout": rebalance_timeout, "subscribed_topic_names": topics,
            "server_assignor": None,
            "topic_partitions": None if owned is None else [{"topic_id": t, "partitions": ps} for t, ps in owned]}
    data.update(extra)
    return c.request(68, data, version=version)


def join(c: Connection, group: str, member: str, topics: list[str], **kw):
    return hb(c, group, member, 0, topics=topics, owned=[], rebalance_timeout=10000, **kw)


def assigned(resp) -> dict[uuid.UUID, set[int]]:
    if resp.assignment is None:
        return {}
    return {tp.topic_id: set(tp.partitions) for tp in resp.assignment.topic_partitions if tp.partitions}


def flat(a: dict[uuid.UUID, set[int]]) -> list[tuple[uuid.UUID, list[int]]]:
    return [(t, sorted(ps)) for t, ps in a.items()]


def test_reconciliation_waits_for_revocation(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "t", 4)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    with Connection(broker.bootstrap) as c:
        r = join(c, "g", a, ["t"])
        assert code_of(r.error_code) == 0 and r.member_id == a and r.member_epoch == 1
        assert int(r.heartbeat_interval / r.heartbeat_interval.resolution) // 1000 == 250
        a_parts = assigned(r)
        (tid,) = a_parts
        assert a_parts[tid] == {0, 1, 2, 3}
        # b joins: epoch 2; its target is 2 partitions, all still held by a, so it gets nothing yet
        r = join(c, "g", b, ["t"])
        assert code_of(r.error_code) == 0 and r.member_epoch == 2 and assigned(r) == {}
        b_epoch = r.member_epoch
        # a, still owning all 4, is told its smaller assignment first and stays at epoch 1
        r = hb(c, "g", a, 1, owned=flat(a_parts))
        assert code_of(r.error_code) == 0 and r.member_epoch == 1
        kept = assigned(r)[tid]
        assert len(kept) == 2 and kept < {0, 1, 2, 3}
        # b still gets nothing while a owns them
        r = hb(c, "g", b, b_epoch, owned=[])
        assert code_of(r.error_code) == 0 and assigned(r) == {} and r.assignment is None
        # a revokes: it moves to epoch 2
        r = hb(c, "g", a, 1, owned=[(tid, sorted(kept))])
        assert code_of(r.error_code) == 0 and r.member_epoch == 2
        # now b receives the other two
        r = hb(c, "g", b, b_epoch, owned=[])
        assert code_of(r.error_code) == 0 and assigned(r) == {tid: {0, 1, 2, 3} - kept}
        # describe: both members at epoch 2, Stable once b reports them
        r = hb(c, "g", b, 2, owned=[(tid, sorted({0, 1, 2, 3} - kept))])
        assert code_of(r.error_code) == 0 and r.member_epoch == 2
        d = c.request(69, {"group_ids": ["g"], "include_authorized_operations": False}, version=1).groups[0]
        assert code_of(d.error_code) == 0 and d.group_state == "Stable" and d.group_epoch == 2
        assert d.assignor_name == "uniform"
        got = {m.member_id: {p for tp in m.assignment.topic_partitions for p in tp.partitions} for m in d.members}
        assert got == {a: kept, b: {0, 1, 2, 3} - kept}
        assert all(tp.topic_name == "t" for m in d.members for tp in m.assignment.topic_partitions)
        # a leaves: b gets everything at epoch 3
        r = hb(c, "g", a, -1)
        assert code_of(r.error_code) == 0 and r.member_epoch == -1
        r = hb(c, "g", b, 2, owned=[(tid, sorted({0, 1, 2, 3} - kept))])
        assert r.member_epoch == 3 and assigned(r) == {tid: {0, 1, 2, 3}}


def test_heartbeat_errors(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "t", 2)
    a = str(uuid.uuid4())
    with Connection(broker.bootstrap) as c:
        # bad fields: INVALID_REQUEST (42)
        assert code_of(hb(c, "g", a, 0, topics=["t"], owned=[]).error_code) == 42  # no rebalance timeout
        assert code_of(hb(c, "g", a, 0, topics=None, owned=[], rebalance_timeout=1000).error_code) == 42
        assert code_of(hb(c, "g", "", 0, topics=["t"], owned=[], rebalance_timeout=1000).error_code) == 42  # v1
        assert code_of(hb(c, "", a, 0, topics=["t"], owned=[], rebalance_timeout=1000).error_code) == 42
        assert code_of(hb(c, "g", a, -3).error_code) == 42
        assert code_of(hb(c, "g", a, 0, topics=["t"], owned=[], rebalance_timeout=1000,
                          server_assignor="sticky").error_code) == 112  # UNSUPPORTED_ASSIGNOR
        # unknown member / group: UNKNOWN_MEMBER_ID (25)
        assert code_of(hb(c, "nope", a, 3, owned=[]).error_code) == 25
        r = join(c, "g", a, ["t"])
        assert code_of(r.error_code) == 0 and r.member_epoch == 1
        assert code_of(hb(c, "g", str(uuid.uuid4()), 1, owned=[]).error_code) == 25
        # epochs ahead of or behind the coordinator's: FENCED_MEMBER_EPOCH (110)
        assert code_of(hb(c, "g", a, 5, owned=[]).error_code) == 110
        # v0: the coordinator names the member
        r = hb(c, "g0", "", 0, version=0, topics=["t"], owned=[], rebalance_timeout=1000)
        assert code_of(r.error_code) == 0 and r.member_id and r.member_epoch == 1
        # static members: a second instance holder is UNRELEASED_INSTANCE_ID (111) until -2
        s1, s2 = str(uuid.uuid4()), str(uuid.uuid4())
        r = join(c, "gs", s1, ["t"], instance="i1")
        assert code_of(r.error_code) == 0
        s1_parts = assigned(r)
        assert code_of(join(c, "gs", s2, ["t"], instance="i1").error_code) == 111
        assert code_of(hb(c, "gs", s2, 1, owned=[], instance="i1").error_code) == 82  # FENCED_INSTANCE_ID
        r = hb(c, "gs", s1, -2, instance="i1")
        assert code_of(r.error_code) == 0 and r.member_epoch == -2
        r = join(c, "gs", s2, ["t"], instance="i1")  # takes over the instance and its partitions
        assert code_of(r.error_code) == 0 and assigned(r) == s1_parts
        # a live classic group's id: GROUP_ID_NOT_FOUND (69)
        r = c.request(11, {"group_id": "gc", "session_timeout": 6000, "rebalance_timeout": 6000, "member_id": "",
                           "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": b""}]}, version=3)
        assert code_of(r.error_code) == 0
        assert code_of(join(c, "gc", str(uuid.uuid4()), ["t"]).error_code) == 69


def test_group_max_size(tmp_path: Path) -> None:
    b = start_broker(str(tmp_path / "data"), overrides={**PROPS, "group.consumer.max.size": "1"})
    try:
        create_topic(b.bootstrap, "t", 1)
        with Connection(b.bootstrap) as c:
            assert code_of(join(c, "g", str(uuid.uuid4()), ["t"]).error_code) == 0
            assert code_of(join(c, "g", str(uuid.uuid4()), ["t"]).error_code) == 81  # GROUP_MAX_SIZE_REACHED
    finally:
        b.stop()


def test_offsets_with_member_epochs(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "t", 1)
    a = str(uuid.uuid4())

    def commit(c: Connection, member: str, epoch: int, version: int = 9) -> int:
        r = c.request(8, {"group_id": "g", "generation_id_or_member_epoch": epoch, "member_id": member,
                          "group_instance_id": None, "topics": [{"name": "t", "partitions": [
                              {"partition_index": 0, "committed_offset": 7, "committed_leader_epoch": -1,
                               "committed_metadata": ""}]}]}, version=version)
        return code_of(r.topics[0].partitions[0].error_code)

    def fetch(c: Connection, member: str | None, epoch: int) -> int:
        r = c.request(9, {"groups": [{"group_id": "g", "member_id": member, "member_epoch": epoch,
                                      "topics": [{"name": "t", "partition_indexes": [0]}]}],
                          "require_stable": False}, version=9)
        return code_of(r.groups[0].error_code)

    with Connection(broker.bootstrap) as c:
        assert commit(c, "", -1) == 0  # admin commit while the group does not exist / is empty
        r = join(c, "g", a, ["t"])
        epoch = r.member_epoch
        assert commit(c, a, epoch) == 0
        assert commit(c, a, epoch + 1) == 113  # STALE_MEMBER_EPOCH
        assert commit(c, str(uuid.uuid4()), epoch) == 25
        assert commit(c, "", -1) == 25  # no member, but the group has members
        assert commit(c, a, epoch, version=8) == 35  # members must use OffsetCommit v9+
        assert fetch(c, a, epoch) == 0
        assert fetch(c, a, epoch + 1) == 113
        assert fetch(c, str(uuid.uuid4()), epoch) == 25
        assert fetch(c, None, -1) == 0  # admin
        # DeleteGroups: not while it has members; fine once it is empty (offsets go too)
        assert code_of(c.request(42, {"groups_names": ["g"]}, version=2).results[0].error_code) == 68
        assert code_of(hb(c, "g", a, -1).error_code) == 0
        lg = c.request(16, {"states_filter": [], "types_filter": ["consumer"]}, version=5)
        assert [(g.group_id, g.group_state, g.group_type, g.protocol_type) for g in lg.groups] == \
            [("g", "Empty", "consumer", "consumer")]
        assert c.request(16, {"states_filter": [], "types_filter": ["classic"]}, version=5).groups == ()
        dg = c.request(15, {"groups": ["g"], "include_authorized_operations": False}, version=5).groups[0]
        assert dg.group_state == "Dead"
        assert code_of(c.request(42, {"groups_names": ["g"]}, version=2).results[0].error_code) == 0
        r = c.request(9, {"groups": [{"group_id": "g", "member_id": None, "member_epoch": -1, "topics": None}],
                          "require_stable": False}, version=9)
        assert r.groups[0].topics == ()


def test_regex_subscription(broker: BrokerProcess) -> None:
    """v1 `subscribed_topic_regex` (librdkafka sends `^…` subscriptions as one), matched by the
    broker, including topics created later."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic("ra", 2, 1), NewTopic("rb", 1, 1), NewTopic("x", 1, 1)]).values():
        f.result(20)
    m = Member(broker.bootstrap, "g", ["^r.*"])
    try:
        wait_for(lambda: m.assignment == frozenset({("ra", 0), ("ra", 1), ("rb", 0)}), "the topics matching ^r.*")
        admin.create_topics([NewTopic("rc", 1, 1)])["rc"].result(20)
        wait_for(lambda: ("rc", 0) in m.assignment, "the new matching topic")
        assert not any(t == "x" for t, _ in m.assignment)
    finally:
        m.close()


def test_member_that_does_not_revoke_is_fenced_after_its_rebalance_timeout(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "t", 2)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    with Connection(broker.bootstrap) as c:
        r = hb(c, "g", a, 0, topics=["t"], owned=[], rebalance_timeout=1000)
        a_parts = assigned(r)
        r = join(c, "g", b, ["t"])
        b_epoch = r.member_epoch
        r = hb(c, "g", a, 1, owned=flat(a_parts))  # told to give one up; it never does
        assert code_of(r.error_code) == 0 and r.member_epoch == 1 and len(next(iter(assigned(r).values()))) == 1

        def b_has_both() -> bool:
            hb(c, "g", a, 1, owned=flat(a_parts))  # a stays alive (its session never runs out)
            r = hb(c, "g", b, b_epoch, owned=[])
            return code_of(r.error_code) == 0 and sum(len(ps) for ps in assigned(r).values()) == 2 \
                if r.assignment is not None else False
        wait_for(b_has_both, "b owning both partitions once a is fenced by its rebalance timeout", timeout=15)
        assert code_of(hb(c, "g", a, 1, owned=flat(a_parts)).error_code) == 25  # a was removed


def test_range_assignor_and_session_timeout(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "t", 5)
    a, b = "a" + str(uuid.uuid4())[1:], "b" + str(uuid.uuid4())[1:]
    with Connection(broker.bootstrap) as c:
        r = join(c, "g", a, ["t"], server_assignor="range")
        (tid,) = assigned(r)
        r = join(c, "g", b, ["t"], server_assignor="range")
        r = hb(c, "g", a, 1, owned=[(tid, [0, 1, 2, 3, 4])])
        assert assigned(r) == {tid: {0, 1, 2}}  # range: the first member in id order takes 3
        r = hb(c, "g", a, 1, owned=[(tid, [0, 1, 2])])
        assert r.member_epoch == 2
        d = c.request(69, {"group_ids": ["g"], "include_authorized_operations": False}, version=0).groups[0]
        assert d.assignor_name == "range"
        targets = {m.member_id: {p for tp in m.target_assignment.topic_partitions for p in tp.partitions}
                   for m in d.members}
        assert targets == {a: {0, 1, 2}, b: {3, 4}}
        # b stops heartbeating: after the session timeout a gets everything back

        def a_has_all() -> bool:
            r = hb(c, "g", a, 2, owned=[(tid, [0, 1, 2])])
            return code_of(r.error_code) == 0 and r.assignment is not None and assigned(r) == {tid: set(range(5))}
        started = time.monotonic()
        wait_for(a_has_all, "b fenced by its session timeout", timeout=15)
        assert time.monotonic() - started >= SESSION_MS / 1000 * 0.8


# -- the assignors themselves (pure functions) ------------------------------------------------------------
def test_uniform_assignor_balances_and_sticks() -> None:
    from broker.coordinator.consumer_assignment import assign
    t1, t2 = uuid.uuid4(), uuid.uuid4()
    topics = {"a": (t1, 7), "b": (t2, 3)}
    first = assign("uniform", {"m1": ["a", "b"], "m2": ["a", "b"], "m3": ["a", "b"]}, topics, {})
    counts = sorted(sum(len(ps) for ps in a.values()) for a in first.values())
    assert counts == [3, 3, 4]
    owned = [(t, p) for a in first.values() for t, ps in a.items() for p in ps]
    assert len(owned) == len(set(owned)) == 10
    # a fourth member takes partitions only from the others' surplus; everyone else keeps most
    second = assign("uniform", {"m1": ["a", "b"], "m2": ["a", "b"], "m3": ["a", "b"], "m4": ["a", "b"]}, topics, first)
    assert sorted(sum(len(ps) for ps in a.values()) for a in second.values()) == [2, 2, 3, 3]
    for m in ("m1", "m2", "m3"):
        kept = {(t, p) for t, ps in second[m].items() for p in ps}
        assert kept <= {(t, p) for t, ps in first[m].items() for p in ps}
    # heterogeneous subscriptions: only subscribers get a topic's partitions
    het = assign("uniform", {"m1": ["a"], "m2": ["a", "b"]}, topics, {})
    assert t2 not in het["m1"] and het["m2"][t2] == frozenset({0, 1, 2})
    assert sorted(sum(len(ps) for ps in a.values()) for a in het.values()) == [5, 5]
    # a subscriber to a missing topic gets nothing of it
    assert assign("uniform", {"m1": ["zzz"]}, topics, {}) == {"m1": {}}


def test_range_assignor() -> None:
    from broker.coordinator.consumer_assignment import assign
    t1 = uuid.uuid4()
    got = assign("range", {"b": ["a"], "a": ["a"], "c": ["a"]}, {"a": (t1, 7)}, {})
    assert got == {"a": {t1: frozenset({0, 1, 2})}, "b": {t1: frozenset({3, 4})}, "c": {t1: frozenset({5, 6})}}
