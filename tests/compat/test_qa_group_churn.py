"""Consumer groups under churn with real clients, as a Kafka user runs them (QA).

Each group member is a process of its own running an unmodified client (confluent-kafka,
kafka-python or aiokafka; SIGKILL is a real crash) against a real `logstore serve` process on
127.0.0.1. Members consume and commit each record synchronously (at-least-once) and report on
stdout what they consumed, what the broker acknowledged as committed, their assignment and their
refused commits, so the tests check the group from the outside:

- a classic group mixing the three libraries (the `range` assignor they all have, led by
  aiokafka, then kafka-python) shares the partitions, extra members idle; when the leader is
  SIGKILLed its partitions move after its session and the new owner resumes at the last
  acknowledged commit (nothing committed is lost, at most an uncommitted record is read twice);
  partitions added to the subscribed topic (CreatePartitions) are assigned and consumed;
- a member that stops polling for longer than max.poll.interval.ms is put out of the group, its
  partitions go to the other member from the last good commit, and its late commit is refused
  with UNKNOWN_MEMBER_ID (classic; KIP-848 in the slow run);
- KIP-848 (`group.protocol=consumer`) members joining, leaving and being SIGKILLed while they
  consume and commit: no partition is ever in two members' assignments (ConsumerGroupDescribe
  snapshots taken throughout) and nothing committed is lost;
- slow run: a group whose topic is deleted (and created again) while it runs (its offsets go
  with the topic, the recreated topic is read from offset 0); a storm of members starting,
  closing and dying that ends settled with every record committed; static members (aiokafka
  after SIGKILL, KIP-848 after librdkafka's static leave) restarting within their session
  without a rebalance, then expiring; the group protocol following its members (range ->
  roundrobin -> range) while a joiner offering none of the group's protocols is refused
  (INCONSISTENT_GROUP_PROTOCOL) without disturbing it.

Fixed here (each test fails without its fix, broker/coordinator/offsets.py):
- a member's OffsetCommit (generation >= 0) to a group the coordinator does not know is
  GROUP_ID_NOT_FOUND from v9 on, as Kafka (ILLEGAL_GENERATION only before v9);
- OffsetDelete while a consumer group's subscriptions are unknown (its first rebalance, no
  protocol chosen yet) is GROUP_SUBSCRIBED_TO_TOPIC per partition, not NON_EMPTY_GROUP for the
  request; a partition that does not exist is UNKNOWN_TOPIC_OR_PARTITION before that check.

The broker runs with group.initial.rebalance.delay.ms=0 and group.min.session.timeout.ms=1000
(group_helpers.BROKER_PROPS); members use 4 s sessions (KIP-848: the broker's) and heartbeat
every 300 ms. Every wait is a deadline on an observed condition.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
pytest.importorskip("kafka")
pytest.importorskip("aiokafka")
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import NewPartitions  # noqa: E402

from broker.pytest_plugin import start_broker  # noqa: E402
from tests.compat.group_helpers import (  # noqa: E402
    BROKER_PROPS, MemberProcess, admin, create_topic, tps, wait_for)

SESSION_MS = 4000
KIP848_PROPS = {**BROKER_PROPS, "group.consumer.heartbeat.interval.ms": "300",
                "group.consumer.session.timeout.ms": str(SESSION_MS)}


@pytest.fixture
def broker(tmp_path):
    b = start_broker(str(tmp_path / "data"), overrides=KIP848_PROPS)
    yield b
    b.stop()




def produce(bootstrap: str, topic: str, partitions: list[int], per_partition: int, start: int = 0) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 3})
    for part in partitions:
        for i in range(start, start + per_partition):
            p.produce(topic, value=f"{part}-{i}".encode(), partition=part)
    assert p.flush(20) == 0


# -- a consuming, committing member in its own process ------------------------------------------------
# argv[1] is a JSON object: lib, bootstrap, group, topics, strategy, session, protocol ("classic" or
# "consumer"), max_poll_ms, stall_s (after its first record: stop polling that long, then commit it).
# Prints JSON lines: {"a": [...]} its assignment ("topic:partition", sorted) when it changes,
# {"got": [tp, offset]} a record consumed, {"ok": [tp, offset]} its commit acknowledged (the
# committed position is offset + 1), {"err": "..."} a commit refused, {"revoked": n}.
# SIGTERM closes the consumer (leaving the group).
MEMBER = r'''
import json, signal, sys, time
opts = json.loads(sys.argv[1])
lib, bootstrap, group, topics = opts["lib"], opts["bootstrap"], opts["group"], opts["topics"]
strategy, session = opts.get("strategy", "range"), opts.get("session", 4000)
max_poll_ms, stall_s = opts.get("max_poll_ms", 300000), opts.get("stall_s", 0)
STOP = []
signal.signal(signal.SIGTERM, lambda *a: STOP.append(1))
def say(**x):
    print(json.dumps(x), flush=True)
last = None
def report(assignment):
    global last
    a = sorted(f"{p.topic}:{p.partition}" for p in assignment)
    if a != last:
        say(a=a)
        last = a
stalled = []
def stall():
    if stall_s and not stalled:
        stalled.append(1)
        time.sleep(stall_s)
if lib == "confluent":
    from confluent_kafka import Consumer, KafkaException
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "client.id": "churn-" + lib, "log_level": 0,
            "topic.metadata.refresh.interval.ms": 1000, "max.poll.interval.ms": max_poll_ms}
    if opts.get("debug"):
        conf.update({"debug": opts["debug"], "log_level": 7})
    if opts.get("instance"):
        conf["group.instance.id"] = opts["instance"]
    if opts.get("protocol") == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf.update({"session.timeout.ms": session, "heartbeat.interval.ms": 300,
                     "partition.assignment.strategy": strategy})
    c = Consumer(conf)
    def revoked(consumer, ps):
        say(revoked=len(ps))
    c.subscribe(topics, on_revoke=revoked)
    while not STOP:
        m = c.poll(0.1)
        report(c.assignment())
        if m is None or m.error():
            continue
        tp = f"{m.topic()}:{m.partition()}"
        say(got=[tp, m.offset()])
        stall()
        try:
            c.commit(message=m, asynchronous=False)
            say(ok=[tp, m.offset()])
        except KafkaException as e:
            say(err=e.args[0].name())
    c.close()
elif lib == "kafka-python":
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    assignor = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}[strategy]
    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            say(revoked=len(revoked))
        def on_partitions_assigned(self, assigned):
            pass
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, session_timeout_ms=session,
                      heartbeat_interval_ms=300, enable_auto_commit=False, auto_offset_reset="earliest",
                      partition_assignment_strategy=[assignor], client_id="churn-" + lib, metadata_max_age_ms=1000,
                      max_poll_interval_ms=max_poll_ms, max_poll_records=1, group_instance_id=opts.get("instance"))
    c.subscribe(topics, listener=Listener())
    while not STOP:
        batch = c.poll(100)
        report(c.assignment())
        for ktp, recs in batch.items():
            for r in recs:
                tp = f"{ktp.topic}:{ktp.partition}"
                say(got=[tp, r.offset])
                stall()
                try:
                    c.commit({ktp: OffsetAndMetadata(r.offset + 1, "", -1)})
                    say(ok=[tp, r.offset])
                except KafkaError as e:
                    say(err=type(e).__name__)
    c.close(autocommit=False)
else:
    import asyncio
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
    from aiokafka.errors import KafkaError
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    assignor = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}[strategy]
    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            say(revoked=len(revoked))
        async def on_partitions_assigned(self, assigned):
            pass
    async def main():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, session_timeout_ms=session,
                             heartbeat_interval_ms=300, enable_auto_commit=False, auto_offset_reset="earliest",
                             partition_assignment_strategy=(assignor,), client_id="churn-" + lib,
                             metadata_max_age_ms=1000, max_poll_interval_ms=max_poll_ms,
                             group_instance_id=opts.get("instance"))
        c.subscribe(topics, listener=Listener())
        await c.start()
        while not STOP:
            batch = await c.getmany(timeout_ms=100, max_records=1)
            report(c.assignment())
            for atp, recs in batch.items():
                for r in recs:
                    tp = f"{atp.topic}:{atp.partition}"
                    say(got=[tp, r.offset])
                    if stall_s and not stalled:
                        stalled.append(1)
                        await asyncio.sleep(stall_s)
                    try:
                        await c.commit({atp: r.offset + 1})
                        say(ok=[tp, r.offset])
                    except KafkaError as e:
                        say(err=type(e).__name__)
        await c.stop()
    asyncio.run(main())
'''


class Member(MemberProcess):
    """A consuming, committing member process (see MEMBER). `assignment` is its latest (a list of
    "topic:partition"); `got` and `ok` the (tp, offset) it consumed and had committed, in order;
    `errors` its refused commits."""

    def __init__(self, tmp_path: Path, lib: str, bootstrap: str, group: str, topics: list[str], **opts) -> None:
        self.lib = lib
        self.got: list[tuple[str, int]] = []
        self.ok: list[tuple[str, int]] = []
        self.errors: list[str] = []
        self.events: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        self.err_path = tmp_path / f"member-{lib}-{time.monotonic_ns()}.log"
        args = json.dumps({"lib": lib, "bootstrap": bootstrap, "group": group, "topics": topics,
                           "session": SESSION_MS, **opts})  # opts may override the session
        with open(self.err_path, "wb") as err:
            super().__init__(MEMBER, [args], stderr=err)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append((time.monotonic(), ev))
                if "a" in ev:
                    self.assignment = ev["a"]
                elif "got" in ev:
                    self.got.append(tuple(ev["got"]))
                elif "ok" in ev:
                    self.ok.append(tuple(ev["ok"]))
                elif "err" in ev:
                    self.errors.append(ev["err"])
                elif "revoked" in ev:
                    self.revocations += 1

    def close(self) -> None:
        """SIGTERM: the member closes its consumer (leaves the group) and exits."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.err_path.read_text(errors="replace")[-3000:]




def owns_exactly(group: list[Member], parts: list[str], idle: int = 0) -> bool:
    """Every partition of `parts` in exactly one member's latest assignment; `idle` members own none."""
    got = [m.assignment for m in group]
    if any(a is None for a in got):
        return False
    flat = [p for a in got for p in a]  # type: ignore[union-attr]
    return sorted(flat) == sorted(parts) and sum(1 for a in got if not a) == idle


def consumed(group: list[Member]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for m in group:
        with m.lock:
            for tp, off in m.got:
                out.setdefault(tp, set()).add(off)
    return out


def all_consumed(group: list[Member], ends: dict[str, int]) -> bool:
    got = consumed(group)
    return all(got.get(tp, set()) >= set(range(n)) for tp, n in ends.items())


def committed_offsets(bootstrap: str, group: str) -> dict[str, int]:
    a = admin(bootstrap)
    res = a.list_consumer_group_offsets([confluent_kafka.ConsumerGroupTopicPartitions(group)])[group].result(20)
    return {f"{tp.topic}:{tp.partition}": tp.offset for tp in res.topic_partitions}


def check_handover(before: list[Member], new_owners: list[Member], tp: str, after: float, end: int) -> None:
    """`tp` moved to one of `new_owners` at monotonic time `after` (its owner was killed then): the
    first record read there since is at the position last acknowledged as committed by any of
    `before` (the members up to then), or later only by records read but whose commit was not
    acknowledged (the killed owner's last one). `end`: the partition's end offset (nothing is read
    after the handover when everything up to it was committed before)."""
    acked = read = 0
    for m in before:
        with m.lock:
            for at, ev in m.events:
                if at < after and "ok" in ev and ev["ok"][0] == tp:
                    acked = max(acked, ev["ok"][1] + 1)
                if at < after and "got" in ev and ev["got"][0] == tp:
                    read = max(read, ev["got"][1] + 1)
    firsts = []
    for m in new_owners:
        with m.lock:
            firsts += [ev["got"][1] for at, ev in m.events if at >= after and "got" in ev and ev["got"][0] == tp][:1]
    if not firsts:
        assert acked == end, f"nobody read {tp} after the handover, but only {acked} of {end} was committed"
        return
    first = min(firsts)
    assert acked <= first <= max(acked, read), \
        f"{tp}: the new owner started at {first}; {acked} was committed and {read} read before"


# -- a classic group of three client libraries ----------------------------------------------------------
def test_mixed_library_group_shares_survives_sigkill_and_grows(broker, members, tmp_path):
    """confluent-kafka, kafka-python and aiokafka members in one classic group (range assignor)
    share 4 partitions; two more join (one idles); the leader is SIGKILLed mid-stream: after its
    session its partitions move and the new owner resumes at the last acknowledged commit; the
    topic grows to 6 partitions and the group (led by another library now) assigns and consumes
    them. Every record is consumed and the final commits reach every partition's end."""
    create_topic(broker.bootstrap, "mix", 4)
    produce(broker.bootstrap, "mix", list(range(4)), 20)
    ends = {tp: 20 for tp in tps("mix", 4)}

    def join(lib: str) -> Member:
        m = Member(tmp_path, lib, broker.bootstrap, "mixed", ["mix"], strategy="range")
        members.append(m)
        return m

    # joined one by one, so the leader (the first member) is aiokafka and, once it is killed,
    # kafka-python (the next one): the python clients' assignors and metadata watches lead
    group = [join("aiokafka")]
    wait_for(lambda: group[0].assignment == tps("mix", 4), 30, "the first member to own all", hold=0)
    group += [join("kafka-python"), join("confluent")]
    wait_for(lambda: owns_exactly(group, tps("mix", 4)), 40, "three libraries sharing 4 partitions", hold=0.5)
    group += [join("confluent"), join("kafka-python")]
    wait_for(lambda: owns_exactly(group, tps("mix", 4), idle=1), 40, "five members: four busy, one idle", hold=0.5)
    wait_for(lambda: all_consumed(group, ends), 40, "the first 80 records")

    produce(broker.bootstrap, "mix", list(range(4)), 30, start=20)
    ends = {tp: 50 for tp in tps("mix", 4)}
    victim = group[0]
    assert victim.assignment, "the leader owns no partition"
    wait_for(lambda: len(victim.ok) > 0 and victim.got[-1][1] >= 20, 20, "the victim to be mid-stream", hold=0)
    lost = list(victim.assignment or [])
    victim.kill()
    killed_at = time.monotonic()
    group.remove(victim)
    moved_at = wait_for(lambda: owns_exactly(group, tps("mix", 4)), 40, "the killed member's partitions to move")
    assert moved_at - killed_at < SESSION_MS / 1000 + 10, moved_at - killed_at
    wait_for(lambda: all_consumed(group + [victim], ends), 40, "every record after the kill")
    for tp in lost:
        check_handover(members, group, tp, killed_at, ends[tp])

    add = admin(broker.bootstrap)
    add.create_partitions([NewPartitions("mix", 6)])["mix"].result(timeout=20)
    produce(broker.bootstrap, "mix", list(range(6)), 5, start=50)
    produce(broker.bootstrap, "mix", [4, 5], 50)  # partitions 4 and 5 got 5 already: 55 each
    ends = {**{tp: 55 for tp in tps("mix", 4)}, **{tp: 55 for tp in tps("mix", 6, 4)}}
    wait_for(lambda: owns_exactly(group, tps("mix", 6)), 40, "the group to assign the added partitions")
    wait_for(lambda: all_consumed(group + [victim], ends), 40, "every record of the 6 partitions")
    wait_for(lambda: committed_offsets(broker.bootstrap, "mixed") == ends, 20, "commits at every partition's end",
             hold=0, interval=0.5)


# -- max.poll.interval.ms ----------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["classic", pytest.param("consumer", marks=pytest.mark.slow)])
def test_member_exceeding_max_poll_interval_is_replaced_and_its_late_commit_refused(broker, members, tmp_path,
                                                                                    protocol):
    """A confluent-kafka member stops polling after its first record for longer than its
    max.poll.interval.ms: it is put out of the group (classic: it leaves; KIP-848: librdkafka
    waits for the application before its leave heartbeat, so its session expires first), the
    other member gets its partition and reads it from the last commit (the stalled record again),
    and the stalled member's commit, sent once it wakes, is refused by the broker with
    UNKNOWN_MEMBER_ID (it is no member any more); the group's committed offsets are the other
    member's."""
    create_topic(broker.bootstrap, "slow", 2)
    kw: dict = {"protocol": "consumer", "max_poll_ms": 2500} if protocol == "consumer" else \
        {"session": 2000, "max_poll_ms": 2500}  # librdkafka: max.poll.interval.ms >= session.timeout.ms
    other = "confluent" if protocol == "consumer" else "kafka-python"
    stall_s = SESSION_MS / 1000 + 3.5 if protocol == "consumer" else 5.0  # > max.poll (+ the KIP-848 session)
    slow = Member(tmp_path, "confluent", broker.bootstrap, "poll", ["slow"], stall_s=stall_s, **kw)
    members.append(slow)
    wait_for(lambda: slow.assignment == tps("slow", 2), 30, "the slow member to own both partitions", hold=0)
    fast = Member(tmp_path, other, broker.bootstrap, "poll", ["slow"], **({"protocol": protocol}
                                                                         if protocol == "consumer" else {}))
    members.append(fast)
    wait_for(lambda: owns_exactly([slow, fast], tps("slow", 2)) and fast.assignment, 30, "two members, one each")
    mine = slow.assignment[0]  # type: ignore[index]
    produce(broker.bootstrap, "slow", [0, 1], 5)
    wait_for(lambda: slow.got, 20, "the slow member's first record", hold=0)
    assert slow.got[0] == (mine, 0)
    wait_for(lambda: fast.assignment == tps("slow", 2), 30, "the other member to take the stalled partition", hold=0)
    wait_for(lambda: slow.errors or slow.ok, 30, "the stalled member's commit", hold=0)
    assert (slow.ok, slow.errors) == ([], ["UNKNOWN_MEMBER_ID"])
    ends = {tp: 5 for tp in tps("slow", 2)}
    wait_for(lambda: all_consumed([fast], ends), 30, "the other member to read everything")
    with fast.lock:
        assert [off for tp, off in fast.got if tp == mine] == [0, 1, 2, 3, 4]  # from the last commit: none
    wait_for(lambda: committed_offsets(broker.bootstrap, "poll") == ends, 20, "the other member's commits", hold=0,
             interval=0.5)


# -- KIP-848 ---------------------------------------------------------------------------------------------------
def snapshot_disjoint(bootstrap: str, group: str, stop: threading.Event, snaps: list, overlaps: list) -> None:
    """Describe `group` (ConsumerGroupDescribe) until `stop`: each snapshot's member assignments
    must be disjoint; overlapping ones go to `overlaps`."""
    a = admin(bootstrap)
    while not stop.is_set():
        try:
            d = a.describe_consumer_groups([group])[group].result(10)
        except Exception as e:  # noqa: BLE001 -- a transient error is kept, not fatal
            snaps.append(repr(e))
            stop.wait(0.1)
            continue
        owned = [(m.member_id, f"{tp.topic}:{tp.partition}") for m in d.members for tp in m.assignment.topic_partitions]
        snaps.append(sorted(tp for _, tp in owned))
        if len({tp for _, tp in owned}) != len(owned):
            overlaps.append(owned)
        stop.wait(0.05)


@pytest.mark.parametrize("rounds", [1, pytest.param(4, marks=pytest.mark.slow)])
def test_kip848_members_join_leave_and_die_without_double_ownership(broker, members, tmp_path, rounds):
    """confluent-kafka members with group.protocol=consumer join, close (leave) and are SIGKILLed
    while they consume and commit. ConsumerGroupDescribe snapshots taken all along never show a
    partition in two members' assignments; a killed member's partitions move after its session
    and the new owner resumes at its last acknowledged commit; every record is consumed and the
    commits reach every partition's end."""
    create_topic(broker.bootstrap, "k", 6)
    stop, snaps, overlaps = threading.Event(), [], []
    watcher = threading.Thread(target=snapshot_disjoint, args=(broker.bootstrap, "k848", stop, snaps, overlaps),
                               daemon=True)
    watcher.start()

    def join() -> Member:
        m = Member(tmp_path, "confluent", broker.bootstrap, "k848", ["k"], protocol="consumer")
        members.append(m)
        return m

    try:
        group, gone = [join(), join()], []
        per = 0
        for _ in range(rounds):
            produce(broker.bootstrap, "k", list(range(6)), 20, start=per)
            per += 20
            group.append(join())
            wait_for(lambda: owns_exactly(group, tps("k", 6)) and all(m.assignment for m in group), 30,
                     "three members sharing 6 partitions", hold=0.3)
            leaver = group.pop(0)
            leaver.close()
            gone.append(leaver)
            wait_for(lambda: owns_exactly(group, tps("k", 6)), 30, "the closed member's partitions to move", hold=0.3)
            produce(broker.bootstrap, "k", list(range(6)), 20, start=per)
            per += 20
            victim = group.pop(0)
            wait_for(lambda: victim.got and victim.got[-1][1] >= per - 20, 20, "the victim to be mid-stream", hold=0)
            lost = list(victim.assignment or [])
            victim.kill()
            killed_at = time.monotonic()
            gone.append(victim)
            group.append(join())
            wait_for(lambda: owns_exactly(group, tps("k", 6)) and all(m.assignment for m in group), 30,
                     "the killed member's partitions to move", hold=0.3)
            ends = {tp: per for tp in tps("k", 6)}
            wait_for(lambda: all_consumed(group + gone, ends), 30, "every record so far")
            for tp in lost:
                check_handover(members, group, tp, killed_at, ends[tp])
        wait_for(lambda: committed_offsets(broker.bootstrap, "k848") == ends, 20, "commits at every partition's end",
                 hold=0, interval=0.5)
    finally:
        stop.set()
        watcher.join(15)
    assert len([s for s in snaps if isinstance(s, list)]) > 10, snaps[-5:]
    assert not overlaps, f"a partition in two members' assignments: {overlaps[:3]}"
    assert all(not m.errors for m in members), [m.errors for m in members]


# -- a topic deleted under a running group ---------------------------------------------------------------------
@pytest.fixture
def broker_no_autocreate(tmp_path):
    """kafka-python's metadata requests ask for auto-creation (as against Kafka): a deleted topic
    would come straight back with num.partitions."""
    b = start_broker(str(tmp_path / "data"), overrides={**KIP848_PROPS, "auto.create.topics.enable": "false"})
    yield b
    b.stop()


@pytest.mark.slow  # about 9 s each: kept out of the default run's budget
@pytest.mark.parametrize("protocol,libs", [("classic", ("confluent", "kafka-python", "aiokafka")),
                                           ("consumer", ("confluent", "confluent"))])
def test_topic_deleted_under_a_running_group_takes_its_offsets_and_comes_back_fresh(
        broker_no_autocreate, members, tmp_path, protocol, libs):
    """A group consumes and commits two topics; one is deleted: the members drop its partitions
    (the other topic's stay owned exactly once) and its committed offsets are gone. Created again
    with another partition count, it is assigned and read from offset 0 (not from the old
    commits), and the group commits it anew."""
    b = broker_no_autocreate
    create_topic(b.bootstrap, "d", 2)
    create_topic(b.bootstrap, "keep", 2)
    produce(b.bootstrap, "d", [0, 1], 10)
    produce(b.bootstrap, "keep", [0, 1], 10)
    kw = {"protocol": "consumer"} if protocol == "consumer" else {}
    group = [Member(tmp_path, lib, b.bootstrap, "dg", ["d", "keep"], **kw) for lib in libs]
    members.extend(group)
    ends = {**{tp: 10 for tp in tps("d", 2)}, **{tp: 10 for tp in tps("keep", 2)}}
    wait_for(lambda: all_consumed(group, ends), 30, "every record of both topics")
    wait_for(lambda: committed_offsets(b.bootstrap, "dg") == ends, 20, "the commits", hold=0, interval=0.5)

    a = admin(b.bootstrap)
    a.delete_topics(["d"])["d"].result(20)
    deleted_at = time.monotonic()
    wait_for(lambda: owns_exactly(group, tps("keep", 2), idle=len(group) - 2), 30, "the group without d", hold=0.3)
    assert committed_offsets(b.bootstrap, "dg") == {tp: 10 for tp in tps("keep", 2)}

    create_topic(b.bootstrap, "d", 3)
    produce(b.bootstrap, "d", [0, 1, 2], 3)
    wait_for(lambda: owns_exactly(group, tps("d", 3) + tps("keep", 2), idle=max(0, len(group) - 5)), 30,
             "the recreated d assigned", hold=0.3)

    def reads_of_new_d() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {tp: [] for tp in tps("d", 3)}
        for m in group:
            with m.lock:
                for at, ev in m.events:
                    if at > deleted_at and "got" in ev and ev["got"][0] in out:
                        out[ev["got"][0]].append(ev["got"][1])
        return out

    wait_for(lambda: all(len(v) >= 3 for v in reads_of_new_d().values()), 30, "the recreated d read", hold=0)
    assert {tp: sorted(v) for tp, v in reads_of_new_d().items()} == {tp: [0, 1, 2] for tp in tps("d", 3)}
    wait_for(lambda: committed_offsets(b.bootstrap, "dg") == {**{tp: 3 for tp in tps("d", 3)},
                                                             **{tp: 10 for tp in tps("keep", 2)}},
             20, "the new commits", hold=0, interval=0.5)


# -- OffsetCommit naming a generation of a group the coordinator does not know ------------------------------
def test_member_commit_to_an_unknown_group_is_group_id_not_found_from_v9(broker):
    """A member's OffsetCommit (generation or member epoch >= 0) for a group the coordinator does
    not know, as a KIP-848 member's commit right after a broker restart (those groups live in
    memory) or after its group was deleted: from OffsetCommit v9 on Kafka answers
    GROUP_ID_NOT_FOUND (for both protocols), before v9 ILLEGAL_GENERATION. logstore answered
    ILLEGAL_GENERATION at every version. Nothing is stored either way, and the group is not
    created by the refused commit."""
    from broker.admin_client.connection import Connection, code_of

    create_topic(broker.bootstrap, "t", 1)

    def commit(c: Connection, group: str, generation: int, member: str, version: int) -> int:
        r = c.request(8, {"group_id": group, "generation_id_or_member_epoch": generation, "member_id": member,
                          "group_instance_id": None, "topics": [{"name": "t", "partitions": [
                              {"partition_index": 0, "committed_offset": 7, "committed_leader_epoch": -1,
                               "committed_metadata": ""}]}]}, version=version)
        return code_of(r.topics[0].partitions[0].error_code)

    with Connection(broker.bootstrap) as c:
        assert commit(c, "gone", 3, "m-1", 9) == 69  # GROUP_ID_NOT_FOUND
        assert commit(c, "gone", 3, "m-1", 8) == 22  # ILLEGAL_GENERATION
        assert commit(c, "gone", 3, "m-1", 2) == 22
        lg = c.request(16, {"states_filter": [], "types_filter": []}, version=5)
        assert [g.group_id for g in lg.groups] == []
        assert commit(c, "gone", -1, "", 9) == 0  # from outside the group protocol: creates it
    assert committed_offsets(broker.bootstrap, "gone") == {"t:0": 7}


# -- a storm of members coming and going --------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_churn_storm_ends_in_a_settled_group_with_every_record_committed(broker, members, tmp_path, protocol):
    """For about 25 s members of the three libraries (KIP-848: confluent-kafka) start, close or are
    SIGKILLed every second or so while records keep coming; then two members stay. The group
    settles (each partition owned once), every record is consumed and the commits reach every
    partition's end: no rebalance is left hanging on a member that is gone."""
    import random

    rnd = random.Random(848 if protocol == "consumer" else 7)
    create_topic(broker.bootstrap, "storm", 6)
    libs = ["confluent"] if protocol == "consumer" else ["confluent", "kafka-python", "aiokafka"]
    kw = {"protocol": "consumer"} if protocol == "consumer" else {}

    def join() -> Member:
        m = Member(tmp_path, rnd.choice(libs), broker.bootstrap, "storm", ["storm"], **kw)
        members.append(m)
        return m

    live = [join(), join()]
    per = 0
    end = time.monotonic() + 25
    while time.monotonic() < end:
        produce(broker.bootstrap, "storm", list(range(6)), 5, start=per)
        per += 5
        action = rnd.choice(["join", "join", "close", "kill"])
        if action == "join" or len(live) < 2:
            live.append(join())
        elif action == "close":
            live.pop(rnd.randrange(len(live))).close()
        else:
            live.pop(rnd.randrange(len(live))).kill()
        time.sleep(rnd.uniform(0.3, 1.5))
    while len(live) > 2:
        live.pop(0).close()
    ends = {tp: per for tp in tps("storm", 6)}
    wait_for(lambda: owns_exactly(live, tps("storm", 6)), 60, "the two remaining members to settle", hold=1.0)
    wait_for(lambda: all_consumed(members, ends), 60, "every record")
    wait_for(lambda: committed_offsets(broker.bootstrap, "storm") == ends, 30, "commits at every partition's end",
             hold=0, interval=0.5)


# -- static membership -----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("lib,protocol,stop", [("aiokafka", "classic", "kill"), ("confluent", "consumer", "close")])
def test_static_member_restart_keeps_its_partitions_and_resumes_at_its_commit(broker, members, tmp_path, lib,
                                                                              protocol, stop):
    """Two static members (group.instance.id) consume and commit; one stops (aiokafka: SIGKILL, no
    LeaveGroup; KIP-848: librdkafka's close sends the static leave, epoch -2: a SIGKILLed KIP-848
    static member cannot come back before its session ends, UNRELEASED_INSTANCE_ID, as from Kafka)
    and restarts within its session: it gets its partitions back and resumes at its commits, the
    other member is not rebalanced. Stopped again and not restarted, its partitions go to the
    other member once its session ends."""
    session = 8000
    b = broker
    kw: dict = {"protocol": "consumer"} if protocol == "consumer" else {"session": session}
    if protocol == "consumer":  # the KIP-848 session is the broker's
        b.stop()
        b = start_broker(b.data_dir, port=b.port, overrides={**KIP848_PROPS,
                                                             "group.consumer.session.timeout.ms": str(session)})
    try:
        create_topic(b.bootstrap, "st", 4)
        produce(b.bootstrap, "st", [0, 1, 2, 3], 10)
        a = Member(tmp_path, lib, b.bootstrap, "sg", ["st"], instance="inst-a", **kw)
        o = Member(tmp_path, lib, b.bootstrap, "sg", ["st"], instance="inst-b", **kw)
        members.extend([a, o])
        wait_for(lambda: owns_exactly([a, o], tps("st", 4)) and a.assignment and o.assignment, 30, "two members",
                 hold=0.5)
        wait_for(lambda: all_consumed([a, o], {tp: 10 for tp in tps("st", 4)}), 30, "the first records")
        mine, others, revocations = list(a.assignment or []), list(o.assignment or []), o.revocations
        a.kill() if stop == "kill" else a.close()
        again = Member(tmp_path, lib, b.bootstrap, "sg", ["st"], instance="inst-a", **kw)
        members.append(again)
        wait_for(lambda: again.assignment == mine, 20, "the restarted static member to get its partitions back",
                 hold=0)
        restarted_at = time.monotonic()
        produce(b.bootstrap, "st", [0, 1, 2, 3], 5, start=10)
        wait_for(lambda: all_consumed([a, o, again], {tp: 15 for tp in tps("st", 4)}), 30, "the new records")
        with again.lock:
            resumed = sorted(ev["got"] for at, ev in again.events if "got" in ev)
        assert resumed == sorted([tp, i] for tp in mine for i in range(10, 15)), \
            "the restarted member did not resume at its commits"
        assert o.assignment == others and o.revocations == revocations, "the other member was rebalanced"

        again.kill() if stop == "kill" else again.close()
        stopped_at = time.monotonic()
        moved_at = wait_for(lambda: o.assignment == tps("st", 4), session / 1000 + 20, "the other member to own all",
                            hold=0)
        assert moved_at - stopped_at >= session / 1000 * 0.8, "the static member's partitions moved before its session"
        assert restarted_at < stopped_at
    finally:
        if b is not broker:
            b.stop()


# -- OffsetDelete while a consumer group's subscriptions are not known yet ------------------------------------
def test_offset_delete_during_a_groups_first_rebalance_is_refused_per_partition(tmp_path, members):
    """With Kafka's default group.initial.rebalance.delay.ms (3 s) a new consumer group sits in
    PreparingRebalance with no protocol chosen yet, so which topics it subscribes to is unknown.
    An OffsetDelete then (kafka-python's KafkaAdminClient.delete_group_offsets, `consumer-groups
    --delete-offsets`) is refused per partition with GROUP_SUBSCRIBED_TO_TOPIC, as Kafka's
    ClassicGroup.isSubscribedToTopic takes every topic as subscribed when it cannot tell (only a
    group of another protocol type than "consumer" is NON_EMPTY_GROUP); logstore refused the
    whole request with NON_EMPTY_GROUP. A topic that does not exist is UNKNOWN_TOPIC_OR_PARTITION
    whatever the group. The offsets stay."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    b = start_broker(str(tmp_path / "data"), overrides={**BROKER_PROPS, "group.initial.rebalance.delay.ms": "3000"})
    try:
        create_topic(b.bootstrap, "od", 2)
        a = admin(b.bootstrap)
        a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions("odg", [TopicPartition("od", 0, 4)])]
                                       )["odg"].result(20)
        m = Member(tmp_path, "confluent", b.bootstrap, "odg", ["od"])
        members.append(m)

        def state() -> str:
            return str(a.describe_consumer_groups(["odg"])["odg"].result(20).state).rsplit(".", 1)[-1]

        wait_for(lambda: state() == "PREPARING_REBALANCING", 20, "the group's first rebalance to start", hold=0)
        from kafka import KafkaAdminClient
        from kafka import TopicPartition as KTP
        from kafka.errors import KafkaError
        kadmin = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=20000)
        try:
            res = kadmin.delete_group_offsets("odg", [KTP("od", 0), KTP("nope", 0)])
            got = {f"{tp.topic}:{tp.partition}": getattr(e, "__name__", type(e).__name__) for tp, e in res.items()}
        except KafkaError as e:
            got = {"request": type(e).__name__}
        finally:
            kadmin.close()
        assert state() == "PREPARING_REBALANCING", "the answer came after the first rebalance: not the case tested"
        # a topic that does not exist is UNKNOWN_TOPIC_OR_PARTITION first (KafkaApis checks it
        # before the coordinator sees the request)
        assert got == {"od:0": "GroupSubscribedToTopicError", "nope:0": "UnknownTopicOrPartitionError"}
        wait_for(lambda: m.assignment == tps("od", 2), 20, "the member's assignment", hold=0)
        assert committed_offsets(b.bootstrap, "odg") == {"od:0": 4}
    finally:
        b.stop()


# -- the group protocol follows its members ---------------------------------------------------------------------
@pytest.mark.slow
def test_group_protocol_follows_the_members_and_an_incompatible_joiner_is_refused(broker, members, tmp_path):
    """A confluent-kafka member offering range and roundrobin leads alone with range; a
    kafka-python member offering only roundrobin joins and the group switches to roundrobin; an
    aiokafka member offering only range is refused (INCONSISTENT_GROUP_PROTOCOL) without
    disturbing the group; once the roundrobin-only member leaves the group votes range again,
    and every record is consumed once the group settles."""
    create_topic(broker.bootstrap, "p", 4)
    produce(broker.bootstrap, "p", [0, 1, 2, 3], 10)
    a = admin(broker.bootstrap)

    def assignor() -> str:
        return a.describe_consumer_groups(["pg"])["pg"].result(20).partition_assignor

    lead = Member(tmp_path, "confluent", broker.bootstrap, "pg", ["p"], strategy="range,roundrobin")
    members.append(lead)
    wait_for(lambda: lead.assignment == tps("p", 4), 30, "the first member alone", hold=0.3)
    assert assignor() == "range"
    rr = Member(tmp_path, "kafka-python", broker.bootstrap, "pg", ["p"], strategy="roundrobin")
    members.append(rr)
    wait_for(lambda: owns_exactly([lead, rr], tps("p", 4)) and rr.assignment, 30, "two members", hold=0.5)
    assert assignor() == "roundrobin"
    assert sorted(lead.assignment or []) == ["p:0", "p:2"] or sorted(rr.assignment or []) == ["p:0", "p:2"]
    revocations = lead.revocations
    odd = Member(tmp_path, "aiokafka", broker.bootstrap, "pg", ["p"], strategy="range")
    members.append(odd)
    wait_for(lambda: odd.proc.poll() is not None, 30, "the range-only member to fail", hold=0)
    assert "InconsistentGroupProtocolError" in odd.log()
    assert lead.revocations == revocations and assignor() == "roundrobin", "the refused joiner disturbed the group"
    rr.close()
    wait_for(lambda: lead.assignment == tps("p", 4), 30, "the first member alone again", hold=0.3)
    assert assignor() == "range"
    wait_for(lambda: all_consumed([lead, rr], {tp: 10 for tp in tps("p", 4)}), 30, "every record")
