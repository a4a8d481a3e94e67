"""Consumer groups with real clients against a real broker process: the cases where a Kafka
user's group code behaved differently against logstore than against Apache Kafka, and a few
scenarios checked to behave the same.

Fixed here (each test fails without its fix):
- a restarted static member (group.instance.id) whose subscription metadata changed (sticky
  assignors put their owned partitions and generation in it) takes its place back without a
  rebalance, and, before JoinGroup v9, is not told it leads (so it runs no assignment);
- OffsetCommit from outside the group protocol (admin / assign() consumers) while the group is
  CompletingRebalance is refused UNKNOWN_MEMBER_ID, not REBALANCE_IN_PROGRESS;
- group.max.size holds when several members were given their id (MEMBER_ID_REQUIRED) at once.
Checked: a member's commits survive a broker SIGKILL and the group carries on without a
rebalance; pattern subscriptions pick up new topics and partitions added by CreatePartitions.

Each member runs in its own process (SIGKILL is a real crash); the broker runs with
group.initial.rebalance.delay.ms=0 and group.min.session.timeout.ms=1000.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
pytest.importorskip("kafka")
from confluent_kafka.admin import NewPartitions  # noqa: E402

from tests.compat.group_helpers import (  # noqa: E402
    MemberProcess, admin, commit_each, covers, create_topic, running_broker, start, tps, wait_for)


@pytest.fixture
def broker(tmp_path):
    yield from running_broker(tmp_path / "data")




def add_partitions(bootstrap: str, name: str, total: int) -> None:
    a = admin(bootstrap)
    a.create_partitions([NewPartitions(name, total)])[name].result(timeout=20)


# -- a group member in its own process ------------------------------------------------------------
# argv[1] is a JSON object: lib, bootstrap, group, topics | pattern, strategy, session, instance,
# slow_assign_s (kafka-python: an assignor that takes that long for two members or more, holding
# the group in CompletingRebalance).
# Prints its assignment (a sorted JSON list of "topic:partition") whenever it changes, and
# {"revoked": n} from its rebalance listener. SIGTERM closes the consumer (LeaveGroup).
MEMBER = r'''
import json, logging, signal, sys, time
opts = json.loads(sys.argv[1])
lib, bootstrap, group = opts["lib"], opts["bootstrap"], opts["group"]
topics, pattern = opts.get("topics"), opts.get("pattern")
strategy, session, instance = opts.get("strategy", "range"), opts.get("session", 6000), opts.get("instance")
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
STOP = []
signal.signal(signal.SIGTERM, lambda *a: STOP.append(1))
def say(x):
    print(json.dumps(x), flush=True)
def parts(assignment):
    return sorted(f"{p.topic}:{p.partition}" for p in assignment)
last = None
def report(assignment):
    """Say the assignment if it changed since the last time."""
    global last
    a = parts(assignment)
    if a != last:
        say(a)
        last = a
if lib == "confluent":
    from confluent_kafka import Consumer
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "session.timeout.ms": session,
            "heartbeat.interval.ms": 300, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "partition.assignment.strategy": strategy, "client.id": "qa-" + lib, "log_level": 3,
            "topic.metadata.refresh.interval.ms": 1000}
    if instance:
        conf["group.instance.id"] = instance
    c = Consumer(conf)
    def revoked(consumer, ps):
        say({"revoked": len(ps)})
        if strategy == "cooperative-sticky":
            consumer.incremental_unassign(ps)
        else:
            consumer.unassign()
    c.subscribe([pattern] if pattern else topics, on_revoke=revoked)
    while not STOP:
        c.poll(0.1)
        report(c.assignment())
    c.close()
elif lib == "kafka-python":
    from kafka import ConsumerRebalanceListener, KafkaConsumer
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
    assignor = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor,
                "sticky": StickyPartitionAssignor}[strategy]
    if opts.get("slow_assign_s"):
        class Slow(assignor):
            @classmethod
            def assign(cls, cluster, members):
                if len(members) > 1:  # slow once there is someone to share with
                    print(json.dumps({"assigning": len(members)}), flush=True)
                    time.sleep(opts["slow_assign_s"])
                return super().assign(cluster, members)
        assignor = Slow
    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            say({"revoked": len(revoked)})
        def on_partitions_assigned(self, assigned):
            pass
    kw = dict(bootstrap_servers=bootstrap, group_id=group, session_timeout_ms=session, heartbeat_interval_ms=300,
              enable_auto_commit=False, auto_offset_reset="earliest", partition_assignment_strategy=[assignor],
              client_id="qa-" + lib, metadata_max_age_ms=1000)
    if instance:
        kw["group_instance_id"] = instance
    c = KafkaConsumer(**kw)
    c.subscribe(topics, listener=Listener())
    while not STOP:
        c.poll(100)
        report(c.assignment())
    c.close()
else:
    import asyncio
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    assignor = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}[strategy]
    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            say({"revoked": len(revoked)})
        async def on_partitions_assigned(self, assigned):
            pass
    async def main():
        kw = dict(bootstrap_servers=bootstrap, group_id=group, session_timeout_ms=session, heartbeat_interval_ms=300,
                  enable_auto_commit=False, auto_offset_reset="earliest", partition_assignment_strategy=(assignor,),
                  client_id="qa-" + lib, metadata_max_age_ms=1000)
        if instance:
            kw["group_instance_id"] = instance
        c = AIOKafkaConsumer(**kw)
        if pattern:
            c.subscribe(pattern=pattern, listener=Listener())
        else:
            c.subscribe(topics, listener=Listener())
        await c.start()
        while not STOP:
            await c.getmany(timeout_ms=100)
            report(c.assignment())
        await c.stop()
    asyncio.run(main())
'''


class Member(MemberProcess):
    """A group member process. `assignment` is its latest (a list of "topic:partition");
    `revocations` counts the calls of its revocation listener; `assignings` the slow assignments
    it started as leader; `log` is its stderr (client logs)."""

    def __init__(self, tmp_path: Path, lib: str, bootstrap: str, group: str, *, topics: list[str] | None = None,
                 pattern: str | None = None, strategy: str = "range", session_ms: int = 6000,
                 instance: str | None = None, slow_assign_s: float = 0):
        opts = dict(lib=lib, bootstrap=bootstrap, group=group, topics=topics, pattern=pattern, strategy=strategy,
                    session=session_ms, instance=instance, slow_assign_s=slow_assign_s)
        self.err_path = tmp_path / f"member-{time.monotonic_ns()}.log"
        with open(self.err_path, "wb") as err:
            super().__init__(MEMBER, [json.dumps(opts)], stderr=err)

    def log(self) -> str:
        return self.err_path.read_text(errors="replace")

    def close(self) -> None:
        """SIGTERM: the member closes its consumer (LeaveGroup) and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()




# -- static membership -----------------------------------------------------------------------------
def test_static_member_restart_with_sticky_metadata_needs_no_rebalance(broker, members, tmp_path):
    """kafka-python's sticky assignor puts the member's partitions and generation in its
    subscription, so a restarted static member joins with other metadata than it left with.
    Kafka replaces it without a rebalance while the group's protocol stays the same; logstore
    used to rebalance (the other member lost its partitions for a round). The restarted member
    was the leader: before JoinGroup v9 it must not be told so (Kafka names the old leader id),
    else it runs an assignment that a Stable group never hands out."""
    create_topic(broker.bootstrap, "t4", 4)
    kw = dict(topics=["t4"], strategy="sticky", session_ms=10000)
    leader = Member(tmp_path, "kafka-python", broker.bootstrap, "st", instance="inst-a", **kw)
    members.append(leader)
    wait_for(lambda: leader.assignment == tps("t4", 4), 25, "the first static member (the leader) to own all")
    other = Member(tmp_path, "kafka-python", broker.bootstrap, "st", instance="inst-b", **kw)
    members.append(other)
    wait_for(lambda: covers([leader, other], tps("t4", 4)) and leader.assignment and other.assignment, 25,
             "two static members sharing 4 partitions")
    mine, others, revocations = list(leader.assignment), list(other.assignment), other.revocations

    leader.kill()  # a crash: no LeaveGroup, back within the session timeout
    again = Member(tmp_path, "kafka-python", broker.bootstrap, "st", instance="inst-a", **kw)
    members.append(again)
    wait_for(lambda: again.assignment == mine, 20, "the restarted static member to get its partitions back")
    time.sleep(1.5)  # a rebalance, if one had started, would have reached the other member by now
    assert other.assignment == others and other.revocations == revocations, "the other member was rebalanced"
    assert "Elected group leader" not in again.log(), "the restarted static member was told it leads (JoinGroup < v9)"


# -- OffsetCommit from outside the group while it rebalances ------------------------------------------
def alter_offsets_error(bootstrap: str, group: str, topic: str, offset: int) -> str:
    """AlterConsumerGroupOffsets (an OffsetCommit with generation -1 and no member id) of
    partition 0; returns the error's name, or "NONE"."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
    a = admin(bootstrap)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, offset)])
    fut = a.alter_consumer_group_offsets([request])[group]
    try:
        res = fut.result(timeout=20)
    except KafkaException as e:
        return e.args[0].name()
    err = res.topic_partitions[0].error
    return err.name() if err is not None else "NONE"


def group_state(bootstrap: str, group: str) -> str:
    a = admin(bootstrap)
    d = a.describe_consumer_groups([group])[group].result(timeout=20)
    return str(d.state).rsplit(".", 1)[-1]


@pytest.mark.slow  # kafka-python 3.0.12's own rebalance loop fails its first join now and then (2 runs in 8)
def test_commit_from_outside_the_group_during_completing_rebalance(broker, members, tmp_path):
    """The leader's assignor takes seconds, so the group sits in CompletingRebalance. An
    OffsetCommit that names no member (an admin, or a consumer using assign()) is refused
    UNKNOWN_MEMBER_ID, as in every other non-Empty state (Kafka checks the member before the
    state); logstore answered REBALANCE_IN_PROGRESS, a retriable error that sends a client
    retrying for as long as rebalances go on."""
    create_topic(broker.bootstrap, "t4", 4)
    kw = dict(topics=["t4"], strategy="range", session_ms=30000)  # > the assignor's 15 s
    # 15 s: the three admin calls below must all land while the assignor still runs, on a
    # loaded 2-core machine too (with 6 s one CI run saw the group Stable again)
    leader = Member(tmp_path, "kafka-python", broker.bootstrap, "slow", slow_assign_s=15, **kw)
    members.append(leader)
    wait_for(lambda: leader.assignment == tps("t4", 4), 25, "the leader to own all partitions", hold=0.2)
    assert alter_offsets_error(broker.bootstrap, "slow", "t4", 3) == "UNKNOWN_MEMBER_ID"  # Stable

    members.append(Member(tmp_path, "kafka-python", broker.bootstrap, "slow", **kw))
    wait_for(lambda: leader.assignings >= 1, 20, "the leader to start assigning for two", hold=0)
    assert group_state(broker.bootstrap, "slow") == "COMPLETING_REBALANCING"
    assert alter_offsets_error(broker.bootstrap, "slow", "t4", 3) == "UNKNOWN_MEMBER_ID"
    assert group_state(broker.bootstrap, "slow") == "COMPLETING_REBALANCING"  # still: the answer was not luck
    # (not waited for here: the group settling afterwards is covered by the other group tests, and
    # kafka-python 3.0.12's own rebalance loop made that wait time out once in a CI run)


# -- group.max.size --------------------------------------------------------------------------------------
def test_group_max_size_holds_for_members_given_an_id_at_once(tmp_path):
    """Three consumers start at the same moment against group.max.size=2: each first JoinGroup
    (v4+) is answered MEMBER_ID_REQUIRED while the group is still empty, then all three join
    again with their ids. Kafka lets two in and answers the third GROUP_MAX_SIZE_REACHED;
    logstore checked the size at the first join only and let all three in. Driven through the
    coordinator on a real log dir, since three clients cannot be made to interleave so."""
    import asyncio

    import logstore
    from broker.coordinator import CoordinatorConfig, GroupCoordinator, errors as E

    async def main() -> None:
        store = logstore.open(str(tmp_path / "data"), background=False)
        store.create_topic("t", 4)
        c = GroupCoordinator(store, CoordinatorConfig(offsets_topic_num_partitions=1, group_max_size=2,
                                                      group_initial_rebalance_delay_ms=200,
                                                      group_min_session_timeout_ms=10))
        await c.start()
        try:
            def join(member_id: str = ""):
                return c.join("g", member_id, session_timeout_ms=5000, rebalance_timeout_ms=5000,
                              protocol_type="consumer", protocols=[("range", b"\x00\x00\x00\x00\x00\x00")],
                              client_id="c", client_host="/127.0.0.1", require_known_member_id=True)
            firsts = [await join() for _ in range(3)]
            assert [r.error for r in firsts] == [E.MEMBER_ID_REQUIRED] * 3
            got = await asyncio.wait_for(asyncio.gather(*(join(r.member_id) for r in firsts)), 10)
            assert sorted(r.error for r in got) == sorted([E.NONE, E.NONE, E.GROUP_MAX_SIZE_REACHED])
            assert len(c.describe("g").members) == 2
            assert (await join()).error == E.GROUP_MAX_SIZE_REACHED  # full: a fourth is refused at once
        finally:
            await c.stop()
            store.close()

    asyncio.run(main())


# -- a member's commits across a broker crash ------------------------------------------------------------
def test_member_commits_survive_broker_kill_and_the_group_carries_on(tmp_path):
    """A live group member commits each record (OffsetCommit with its member id and generation),
    the broker is killed with SIGKILL and restarted on the same dir and port: every commit it
    acknowledged is there, and the same member, reconnecting, commits on in the same group
    (the group was reloaded from __consumer_offsets with its generation and member)."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    b = start(tmp_path / "data")
    try:
        create_topic(b.bootstrap, "d", 1)
        p = Producer({"bootstrap.servers": b.bootstrap, "log_level": 3})
        for i in range(30):
            p.produce("d", value=b"v%d" % i, partition=0)
        assert p.flush(20) == 0
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "dur", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                      "log_level": 3})
        c.subscribe(["d"])

        def consume(n: int, got: list[int]) -> None:
            commit_each(c, got, n, time.monotonic() + 20, poll_s=0.2)

        got: list[int] = []
        consume(10, got)
        assert got == list(range(10))
        b.kill()
        b = start(tmp_path / "data", port=b.port)
        probe = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "dur", "log_level": 3})
        try:
            assert [tp.offset for tp in probe.committed([TopicPartition("d", 0)], timeout=15)] == [10]
        finally:
            probe.close()
        consume(20, got)
        assert got == list(range(20))
        c.close()
        lines = b.log().splitlines()
        after_restart = lines[next(i for i, line in enumerate(lines) if "group coordinator loaded" in line):]
        before_close = after_restart[:next((i for i, line in enumerate(after_restart) if " left" in line),
                                           len(after_restart))]
        assert not [line for line in before_close if "preparing rebalance" in line], "the group rebalanced"
        probe = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "dur", "log_level": 3})
        try:
            assert [tp.offset for tp in probe.committed([TopicPartition("d", 0)], timeout=15)] == [20]
        finally:
            probe.close()
    finally:
        b.stop()


# -- pattern subscription, topics and partitions added while running -----------------------------------
@pytest.mark.parametrize("lib,strategy", [("confluent", "cooperative-sticky"), ("aiokafka", "roundrobin")])
def test_pattern_subscription_picks_up_new_topic_and_new_partitions(broker, members, tmp_path, lib, strategy):
    """Two members subscribed to ^orders-.*: a topic created later and partitions added to it
    (CreatePartitions) are assigned after the metadata refresh, each to exactly one member.
    (kafka-python 3.0's pattern subscription is left out: its join task is dropped when a
    poll() times out mid-join, which loops or stalls it whatever the broker.)"""
    create_topic(broker.bootstrap, "orders-a", 2)
    create_topic(broker.bootstrap, "other", 2)
    group = [Member(tmp_path, lib, broker.bootstrap, "pat", pattern="^orders-.*", strategy=strategy)
             for _ in range(2)]
    members.extend(group)
    wait_for(lambda: covers(group, tps("orders-a", 2)), 30, "orders-a shared")
    create_topic(broker.bootstrap, "orders-b", 2)
    wait_for(lambda: covers(group, tps("orders-a", 2) + tps("orders-b", 2)), 30, "orders-b assigned")
    add_partitions(broker.bootstrap, "orders-b", 4)
    wait_for(lambda: covers(group, tps("orders-a", 2) + tps("orders-b", 4)), 30, "orders-b's new partitions assigned")


def test_commit_from_outside_the_group_while_it_completes_a_rebalance_is_unknown_member(tmp_path):
    """The same rule as the slow test above, on the coordinator directly (no client timing): a
    group whose leader joined but has not synced is in CompletingRebalance, and a commit naming no
    member gets UNKNOWN_MEMBER_ID (Kafka checks the member before the state), not the retriable
    REBALANCE_IN_PROGRESS."""
    import asyncio

    import logstore
    from broker.coordinator import CoordinatorConfig, GroupCoordinator, errors as E
    from broker.coordinator import OffsetAndMetadata

    async def main() -> None:
        store = logstore.open(str(tmp_path / "data"), background=False)
        store.create_topic("t", 1)
        c = GroupCoordinator(store, CoordinatorConfig(offsets_topic_num_partitions=1,
                                                      group_initial_rebalance_delay_ms=0,
                                                      group_min_session_timeout_ms=10))
        await c.start()
        try:
            r = await c.join("g", "", session_timeout_ms=5000, rebalance_timeout_ms=5000, protocol_type="consumer",
                             protocols=[("range", b"\x00\x00\x00\x00\x00\x00")], client_id="c",
                             client_host="/127.0.0.1", require_known_member_id=False)
            assert r.error == E.NONE
            assert c.describe("g").state == "CompletingRebalance"
            got = await c.commit("g", -1, "", {("t", 0): OffsetAndMetadata(3)})
            assert got == {("t", 0): E.UNKNOWN_MEMBER_ID}
        finally:
            await c.stop()
            store.close()

    asyncio.run(main())
