"""Consumer groups with real Kafka clients (confluent-kafka, kafka-python, aiokafka) against a
real broker process on 127.0.0.1: membership and failover (each member its own process, one
killed with SIGKILL), resuming at the committed offset, offsets surviving a broker kill -9.

The broker runs with group.initial.rebalance.delay.ms=0 and group.min.session.timeout.ms=1000 so
rebalances take about a second; members use session.timeout.ms=3000.
"""

from __future__ import annotations

import subprocess
import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.compat.group_helpers import (  # noqa: E402
    MemberProcess, commit_each, covers, running_broker, start, wait_for)

SESSION_MS = 3000


# -- the broker as a real process (group_helpers.BROKER_PROPS: rebalances take about a second) -----------
@pytest.fixture
def broker(tmp_path):
    yield from running_broker(tmp_path / "data")


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(name, partitions, 1)])[name]
    fut.result(timeout=20)


def produce(bootstrap: str, topic: str, n: int, partition: int = 0) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), key=f"k{i}".encode(), partition=partition)
    assert p.flush(20) == 0


# -- a group member in its own process ----------------------------------------------------------------
MEMBER = r'''
import json, sys, time
lib, bootstrap, group, topic, strategy = sys.argv[1:6]
session = int(sys.argv[6])
instance = sys.argv[7] if len(sys.argv) > 7 else None
last = None
def report(parts):
    """Print the assignment (its sorted partitions) if it changed since the last time."""
    global last
    a = sorted(parts)
    if a != last:
        print(json.dumps(a), flush=True)
        last = a
if lib == "confluent":
    from confluent_kafka import Consumer
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "session.timeout.ms": session,
            "heartbeat.interval.ms": 300, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "partition.assignment.strategy": strategy, "client.id": "member-" + lib, "log_level": 3}
    if instance:
        conf["group.instance.id"] = instance
    c = Consumer(conf)
    def revoked(consumer, parts):
        print(json.dumps({"revoked": len(parts)}), flush=True)
        if strategy == "cooperative-sticky":
            consumer.incremental_unassign(parts)
        else:
            consumer.unassign()
    c.subscribe([topic], on_revoke=revoked)
    while True:
        c.poll(0.1)
        report(p.partition for p in c.assignment())
elif lib == "kafka-python":
    from kafka import KafkaConsumer
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    assignors = {"range": [RangePartitionAssignor], "roundrobin": [RoundRobinPartitionAssignor]}[strategy]
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, session_timeout_ms=session,
                      heartbeat_interval_ms=300, enable_auto_commit=False, auto_offset_reset="earliest",
                      partition_assignment_strategy=assignors, client_id="member-" + lib)
    while True:
        c.poll(100)
        report(p.partition for p in c.assignment())
else:
    import asyncio
    from aiokafka import AIOKafkaConsumer
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    assignors = {"range": (RangePartitionAssignor,), "roundrobin": (RoundRobinPartitionAssignor,)}[strategy]
    async def main():
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, session_timeout_ms=session,
                             heartbeat_interval_ms=300, enable_auto_commit=False, auto_offset_reset="earliest",
                             partition_assignment_strategy=assignors, client_id="member-" + lib)
        await c.start()
        while True:
            await c.getmany(timeout_ms=100)
            report(p.partition for p in c.assignment())
    asyncio.run(main())
'''


class Member(MemberProcess):
    """A group member process; `assignment` is its latest (a list of partitions), `revocations`
    counts its rebalances that took partitions away (confluent only)."""

    def __init__(self, lib: str, bootstrap: str, group: str, topic: str, strategy: str, *,
                 session_ms: int = SESSION_MS, instance: str | None = None):
        args = [lib, bootstrap, group, topic, strategy, str(session_ms)]
        super().__init__(MEMBER, args + ([instance] if instance else []), stderr=subprocess.DEVNULL)


def partitioned(members: list[Member], n: int, idle: int = 0) -> bool:
    """Every partition owned by exactly one live member; exactly `idle` members own none."""
    return covers(members, list(range(n)), idle)


CASES = [("confluent", "range"), ("confluent", "cooperative-sticky"), ("kafka-python", "range"),
         ("aiokafka", "roundrobin")]


@pytest.mark.parametrize("lib,strategy", CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_group_shares_partitions_and_survives_sigkill(broker, lib, strategy):
    create_topic(broker.bootstrap, "t4", 4)
    members: list[Member] = []
    try:
        members += [Member(lib, broker.bootstrap, "grp", "t4", strategy) for _ in range(2)]
        wait_for(lambda: partitioned(members, 4), 40, "two members sharing 4 partitions")
        assert sorted(len(m.assignment) for m in members) == [2, 2]
        members.append(Member(lib, broker.bootstrap, "grp", "t4", strategy))
        wait_for(lambda: partitioned(members, 4), 40, "three members sharing 4 partitions")
        assert sorted(len(m.assignment) for m in members) == [1, 1, 2]
        members += [Member(lib, broker.bootstrap, "grp", "t4", strategy) for _ in range(2)]
        wait_for(lambda: partitioned(members, 4, idle=1), 40, "five members: four busy, one idle")
        victim = next(m for m in members if m.assignment)
        lost = list(victim.assignment)
        killed_at = time.monotonic()
        victim.kill()
        members.remove(victim)
        moved_at = wait_for(lambda: partitioned(members, 4) and any(set(lost) & set(m.assignment) for m in members),
                            40, "the killed member's partitions to move", hold=1.0)
        # the coordinator notices within the session timeout; the rejoin round follows at once
        assert moved_at - killed_at < SESSION_MS / 1000 + 6, moved_at - killed_at
    finally:
        for m in members:
            m.kill()


def test_static_member_restart_gets_its_partitions_back_without_a_rebalance(broker):
    create_topic(broker.bootstrap, "t4", 4)
    static = Member("confluent", broker.bootstrap, "static", "t4", "range", session_ms=10000, instance="inst-a")
    other = Member("confluent", broker.bootstrap, "static", "t4", "range", session_ms=10000)
    members = [static, other]
    try:
        wait_for(lambda: partitioned(members, 4) and all(m.assignment for m in members), 40, "two members")
        mine, others, revocations = list(static.assignment), list(other.assignment), other.revocations
        static.kill()  # no LeaveGroup: a static member's restart is expected to come back
        members[0] = static = Member("confluent", broker.bootstrap, "static", "t4", "range", session_ms=10000,
                                     instance="inst-a")
        wait_for(lambda: static.assignment == mine, 20, "the restarted static member to get its partitions back")
        time.sleep(1.0)
        assert other.assignment == others and other.revocations == revocations  # nobody else moved
    finally:
        for m in members:
            m.kill()


def test_describe_and_list_groups_with_admin_client(broker):
    create_topic(broker.bootstrap, "t4", 4)
    members = [Member("confluent", broker.bootstrap, "desc", "t4", "range") for _ in range(2)]
    try:
        wait_for(lambda: partitioned(members, 4), 40, "two members")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        listed = admin.list_consumer_groups().result(timeout=10)
        assert [g.group_id for g in listed.valid] == ["desc"]
        d = admin.describe_consumer_groups(["desc"])["desc"].result(timeout=10)
        assert str(d.state).endswith("STABLE") and d.partition_assignor == "range"
        assert sorted(m.client_id for m in d.members) == ["member-confluent"] * 2
        assert all(m.host.lstrip("/") == "127.0.0.1" for m in d.members)
        owned = sorted(tp.partition for m in d.members for tp in m.assignment.topic_partitions)
        assert owned == [0, 1, 2, 3]
        fut = admin.delete_consumer_groups(["desc"])["desc"]
        with pytest.raises(Exception, match="NON_EMPTY_GROUP|not empty"):
            fut.result(timeout=10)
    finally:
        for m in members:
            m.kill()


# -- committed offsets ------------------------------------------------------------------------------------
def consume_and_commit(lib: str, bootstrap: str, group: str, topic: str, n: int) -> list[int]:
    """Consume `n` records from partition 0 with a group member of `lib`, commit after each,
    close; returns their offsets."""
    got: list[int] = []
    deadline = time.monotonic() + 30
    if lib == "confluent":
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                      "auto.offset.reset": "earliest", "session.timeout.ms": SESSION_MS,
                      "heartbeat.interval.ms": 500})
        c.subscribe([topic])
        commit_each(c, got, n, deadline, poll_s=0.5)
        c.close()
    elif lib == "kafka-python":
        from kafka import KafkaConsumer
        from kafka.structs import OffsetAndMetadata as KOM
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                          auto_offset_reset="earliest", session_timeout_ms=SESSION_MS, max_poll_records=1,
                          heartbeat_interval_ms=500)
        while len(got) < n and time.monotonic() < deadline:
            for tp, recs in c.poll(500).items():
                for r in recs:
                    if len(got) < n:
                        got.append(r.offset)
                        c.commit({tp: KOM(r.offset + 1, "", -1)})
        c.close()
    else:
        import asyncio
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition as ATP

        async def main() -> None:
            c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                 auto_offset_reset="earliest", session_timeout_ms=SESSION_MS,
                                 heartbeat_interval_ms=500)
            await c.start()
            try:
                while len(got) < n and time.monotonic() < deadline:
                    batch = await c.getmany(timeout_ms=500, max_records=1)
                    for tp, recs in batch.items():
                        for r in recs:
                            got.append(r.offset)
                            await c.commit({ATP(tp.topic, tp.partition): r.offset + 1})
            finally:
                await c.stop()
        asyncio.run(main())
    return got


@pytest.mark.parametrize("lib", ["confluent", "kafka-python", "aiokafka"])
def test_restarted_consumer_resumes_at_committed_offset(broker, lib):
    create_topic(broker.bootstrap, "r", 1)
    produce(broker.bootstrap, "r", 30)
    assert consume_and_commit(lib, broker.bootstrap, "resume", "r", 10) == list(range(10))
    # a new consumer of the group (another library, to show the offsets are shared) goes on at 10
    other = "confluent" if lib != "confluent" else "kafka-python"
    assert consume_and_commit(other, broker.bootstrap, "resume", "r", 5) == list(range(10, 15))
    assert consume_and_commit(lib, broker.bootstrap, "resume", "r", 3) == [15, 16, 17]


def committed(bootstrap: str, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(t, p) for t, p in tps], timeout=15)
    finally:
        c.close()
    return {(tp.topic, tp.partition): tp.offset for tp in got}


def test_offsets_survive_broker_kill_9(tmp_path):
    b = start(tmp_path / "data")
    try:
        create_topic(b.bootstrap, "d", 3)
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "durable", "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition("d", 0, 5), TopicPartition("d", 1, 7), TopicPartition("d", 2, 11)],
                 asynchronous=False)
        c.close()
        assert committed(b.bootstrap, "durable", [("d", 0), ("d", 1), ("d", 2)]) == \
            {("d", 0): 5, ("d", 1): 7, ("d", 2): 11}
    finally:
        b.kill()
    b = start(tmp_path / "data")
    try:
        assert committed(b.bootstrap, "durable", [("d", 0), ("d", 1), ("d", 2)]) == \
            {("d", 0): 5, ("d", 1): 7, ("d", 2): 11}
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        assert "durable" in [g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid]
    finally:
        b.stop()
