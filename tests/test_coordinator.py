"""GroupCoordinator driven directly on a real asyncio loop over a real log dir: the classic
protocol state machine, its timers, its errors, and offsets that survive a reopen."""

from __future__ import annotations

import asyncio
import struct

import pytest

import logstore
from broker.coordinator import CoordinatorConfig, GroupCoordinator, OffsetAndMetadata, errors as E
from logstore.groups import OFFSETS_TOPIC, GroupOffsetStore, partition_for_group

SESSION = 400  # ms; the test coordinator allows sessions from 10 ms


def subscription(*topics: str) -> bytes:
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


PROTOS = [("range", subscription("t")), ("roundrobin", subscription("t"))]


async def open_coordinator(path, **cfg) -> tuple[logstore.LogStore, GroupCoordinator]:
    store = logstore.open(str(path), background=False)
    if not store.has_topic("t"):
        store.create_topic("t", 4)
    conf = dict(offsets_topic_num_partitions=3, group_initial_rebalance_delay_ms=0, group_min_session_timeout_ms=10)
    conf.update(cfg)
    c = GroupCoordinator(store, CoordinatorConfig(**conf))
    await c.start()
    return store, c


async def close(store, c) -> None:
    await c.stop()
    store.close()


def join(c, gid="g", member="", *, instance=None, session=SESSION, rebalance=None, protos=PROTOS, known=True,
         client="c1"):
    return c.join(gid, member, session_timeout_ms=session, rebalance_timeout_ms=rebalance or session * 2,
                  protocol_type="consumer", protocols=protos, group_instance_id=instance, client_id=client,
                  client_host="/127.0.0.1", require_known_member_id=known)


async def first_join(c, gid="g", **kw):
    r = await join(c, gid, **kw)
    if kw.get("instance") is None:
        assert r.error == E.MEMBER_ID_REQUIRED and r.member_id.startswith(kw.get("client", "c1") + "-")
        r = await join(c, gid, r.member_id, **kw)
    return r


def test_single_member_join_sync_heartbeat(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        r = await first_join(c)
        assert r.error == E.NONE and r.generation == 1 and r.leader == r.member_id
        assert r.protocol_name == "range" and [m[0] for m in r.members] == [r.member_id]
        s = await c.sync("g", 1, r.member_id, assignments={r.member_id: b"A"})
        assert (s.error, s.assignment, s.protocol_name) == (E.NONE, b"A", "range")
        assert await c.heartbeat("g", 1, r.member_id) == E.NONE
        assert await c.heartbeat("g", 0, r.member_id) == E.ILLEGAL_GENERATION
        assert await c.heartbeat("g", 1, "nobody") == E.UNKNOWN_MEMBER_ID
        assert await c.heartbeat("nogroup", 1, r.member_id) == E.UNKNOWN_MEMBER_ID
        d = c.describe("g")
        assert d.state == "Stable" and d.protocol == "range" and d.members[0].assignment == b"A"
        assert c.list_groups() == [("g", "consumer", "Stable")]
        assert c.list_groups(states=["empty"]) == []
        await close(store, c)
    asyncio.run(main())


def test_second_member_triggers_rebalance_and_both_get_assignments(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        a = await first_join(c, client="a")
        await c.sync("g", 1, a.member_id, assignments={a.member_id: b"all"})
        b_task = asyncio.ensure_future(first_join(c, client="b"))
        await asyncio.sleep(0.05)
        assert c.describe("g").state == "PreparingRebalance"
        assert await c.heartbeat("g", 1, a.member_id) == E.REBALANCE_IN_PROGRESS
        ra = await join(c, member=a.member_id, client="a")
        rb = await b_task
        assert ra.generation == rb.generation == 2
        assert ra.leader == a.member_id == rb.leader  # the leader stays
        assert sorted(m[0] for m in ra.members) == sorted([a.member_id, rb.member_id]) and rb.members == []
        sb = asyncio.ensure_future(c.sync("g", 2, rb.member_id))
        await asyncio.sleep(0.02)
        assert not sb.done()  # a follower waits for the leader's assignment
        sa = await c.sync("g", 2, a.member_id, assignments={a.member_id: b"p0p1", rb.member_id: b"p2p3"})
        assert (sa.assignment, (await sb).assignment) == (b"p0p1", b"p2p3")
        assert c.describe("g").state == "Stable"
        assert await c.sync("g", 1, a.member_id) == type(sa)(E.ILLEGAL_GENERATION)
        await close(store, c)
    asyncio.run(main())


def test_dead_member_is_removed_after_session_timeout(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        a = await first_join(c, client="a", session=300)
        await c.sync("g", 1, a.member_id, assignments={})
        b_task = asyncio.ensure_future(first_join(c, client="b", session=300))
        await asyncio.sleep(0.01)
        await join(c, member=a.member_id, client="a", session=300)
        b = await b_task
        await asyncio.gather(c.sync("g", 2, a.member_id, assignments={}), c.sync("g", 2, b.member_id))
        # b stops heartbeating; a keeps on
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        err = E.NONE
        while loop.time() < deadline:
            err = await c.heartbeat("g", 2, a.member_id)
            if err:
                break
            await asyncio.sleep(0.05)
        assert err == E.REBALANCE_IN_PROGRESS
        r = await join(c, member=a.member_id, client="a", session=300)
        assert r.generation == 3 and [m[0] for m in r.members] == [a.member_id]
        assert await c.heartbeat("g", 2, b.member_id) == E.UNKNOWN_MEMBER_ID
        await close(store, c)
    asyncio.run(main())


def test_a_joiner_whose_connection_closes_does_not_stall_the_rebalance(tmp_path):
    """A new member's JoinGroup is parked while the group rebalances, and its connection closes
    (the server cancels the request's task). As in Kafka, it still counts as joined: the rebalance
    completes as soon as the old member rejoins, and the dead one is removed after its session
    timeout, not after the rebalance timeout (5 minutes by default) with nothing assigned."""
    async def main():
        store, c = await open_coordinator(tmp_path)
        loop = asyncio.get_running_loop()
        a = await first_join(c, client="a", session=400, rebalance=60_000)
        await c.sync("g", 1, a.member_id, assignments={a.member_id: b"all"})
        r = await join(c, client="b", session=400, rebalance=60_000)
        b_task = asyncio.ensure_future(join(c, member=r.member_id, client="b", session=400, rebalance=60_000))
        await asyncio.sleep(0.05)
        assert c.describe("g").state == "PreparingRebalance"
        b_task.cancel()  # what server.py does to the requests of a closed connection
        await asyncio.sleep(0.01)
        started = loop.time()
        ra = await asyncio.wait_for(join(c, member=a.member_id, client="a", session=400, rebalance=60_000), 5)
        assert ra.error == E.NONE and ra.generation == 2 and len(ra.members) == 2
        assert loop.time() - started < 1, "the rebalance waited for the member whose connection closed"
        await c.sync("g", 2, a.member_id, assignments={a.member_id: b"all"})
        # b never heartbeats: its session (400 ms) ends and a third generation has a alone
        err = E.NONE
        while err == E.NONE and loop.time() - started < 5:
            await asyncio.sleep(0.05)
            err = await c.heartbeat("g", 2, a.member_id)
        assert err == E.REBALANCE_IN_PROGRESS
        ra = await asyncio.wait_for(join(c, member=a.member_id, client="a", session=400, rebalance=60_000), 5)
        assert ra.generation == 3 and [m[0] for m in ra.members] == [a.member_id]
        assert loop.time() - started < 5
        await close(store, c)
    asyncio.run(main())


def test_member_that_does_not_rejoin_is_dropped_at_rebalance_timeout(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        a = await first_join(c, client="a", session=5000, rebalance=300)
        await c.sync("g", 1, a.member_id, assignments={})
        started = asyncio.get_running_loop().time()
        b = await first_join(c, client="b", session=5000, rebalance=300)  # a never rejoins
        waited = asyncio.get_running_loop().time() - started
        assert b.error == E.NONE and b.generation == 2 and b.leader == b.member_id
        assert 0.25 <= waited < 2.0
        assert await c.heartbeat("g", 1, a.member_id) == E.UNKNOWN_MEMBER_ID
        await close(store, c)
    asyncio.run(main())


def test_initial_rebalance_delay_gathers_joiners_into_one_generation(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path, group_initial_rebalance_delay_ms=300)
        results = await asyncio.gather(*(first_join(c, client=f"m{i}", rebalance=3000) for i in range(4)))
        assert {r.generation for r in results} == {1}
        leader = [r for r in results if r.members]
        assert len(leader) == 1 and len(leader[0].members) == 4
        await close(store, c)
    asyncio.run(main())


def test_join_errors(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path, group_min_session_timeout_ms=100,
                                          group_max_session_timeout_ms=1000)
        assert (await join(c, session=50)).error == E.INVALID_SESSION_TIMEOUT
        assert (await join(c, session=2000)).error == E.INVALID_SESSION_TIMEOUT
        assert (await join(c, "")).error == E.INVALID_GROUP_ID
        assert (await join(c, member="made-up")).error == E.UNKNOWN_MEMBER_ID
        a = await first_join(c)
        other = await c.join("g", "", session_timeout_ms=SESSION, protocol_type="connect",
                             protocols=[("x", b"")], require_known_member_id=False)
        assert other.error == E.INCONSISTENT_GROUP_PROTOCOL
        other = await join(c, protos=[("sticky", b"")], known=False)
        assert other.error == E.INCONSISTENT_GROUP_PROTOCOL
        assert a.error == E.NONE
        await close(store, c)
    asyncio.run(main())


def test_static_member_rejoin_keeps_assignment_and_fences_old_id(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        a = await join(c, instance="i-1", client="a")
        assert a.error == E.NONE and a.generation == 1  # static members get no MEMBER_ID_REQUIRED
        await c.sync("g", 1, a.member_id, assignments={a.member_id: b"mine"}, group_instance_id="i-1")
        again = await join(c, instance="i-1", client="a")  # restarted: no member id
        assert again.error == E.NONE and again.generation == 1 and again.member_id != a.member_id
        assert again.skip_assignment and again.leader == again.member_id
        s = await c.sync("g", 1, again.member_id, group_instance_id="i-1")
        assert s.assignment == b"mine"
        assert await c.heartbeat("g", 1, a.member_id, "i-1") == E.FENCED_INSTANCE_ID
        assert (await c.commit("g", 1, a.member_id, {("t", 0): OffsetAndMetadata(1)},
                               group_instance_id="i-1")) == {("t", 0): E.FENCED_INSTANCE_ID}
        top, res = await c.leave("g", [(a.member_id, "i-1")])
        assert res == [(a.member_id, "i-1", E.FENCED_INSTANCE_ID)]
        top, res = await c.leave("g", [("", "i-1")])
        assert res == [(again.member_id, "i-1", E.NONE)]
        assert c.describe("g").state in ("PreparingRebalance", "Empty")
        await close(store, c)
    asyncio.run(main())


def test_leave_group_batch_and_unknown(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        a = await first_join(c)
        await c.sync("g", 1, a.member_id, assignments={})
        top, res = await c.leave("g", [(a.member_id, None), ("ghost", None)])
        assert top == E.NONE and res == [(a.member_id, None, E.NONE), ("ghost", None, E.UNKNOWN_MEMBER_ID)]
        await asyncio.sleep(0.01)
        assert c.describe("g").state == "Empty"
        assert (await c.leave("nogroup", [("x", None)]))[1] == [("x", None, E.UNKNOWN_MEMBER_ID)]
        await close(store, c)
    asyncio.run(main())


def test_commit_rules_and_fetch(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        # outside the group protocol: generation -1, no member id, group Empty / unknown
        res = await c.commit("simple", -1, "", {("t", 0): OffsetAndMetadata(5, "m"), ("t", 9): OffsetAndMetadata(1),
                                                ("nope", 0): OffsetAndMetadata(1)})
        assert res == {("t", 0): E.NONE, ("t", 9): E.UNKNOWN_TOPIC_OR_PARTITION, ("nope", 0): E.UNKNOWN_TOPIC_OR_PARTITION}
        err, got = await c.fetch("simple", [("t", 0), ("t", 1)])
        assert err == E.NONE and got[("t", 0)].offset == 5 and got[("t", 0)].metadata == "m" and got[("t", 1)] is None
        assert (await c.commit("unknown", 3, "m", {("t", 0): OffsetAndMetadata(1)})) == {("t", 0): E.ILLEGAL_GENERATION}
        big = OffsetAndMetadata(1, "x" * 5000)
        assert (await c.commit("simple", -1, "", {("t", 1): big})) == {("t", 1): E.OFFSET_METADATA_TOO_LARGE}
        a = await first_join(c)
        assert (await c.commit("g", 1, a.member_id, {("t", 0): OffsetAndMetadata(1)})) == {("t", 0): E.REBALANCE_IN_PROGRESS}
        await c.sync("g", 1, a.member_id, assignments={})
        assert (await c.commit("g", 1, a.member_id, {("t", 0): OffsetAndMetadata(7)})) == {("t", 0): E.NONE}
        assert (await c.commit("g", 0, a.member_id, {("t", 0): OffsetAndMetadata(8)})) == {("t", 0): E.ILLEGAL_GENERATION}
        assert (await c.commit("g", 1, "x", {("t", 0): OffsetAndMetadata(8)})) == {("t", 0): E.UNKNOWN_MEMBER_ID}
        assert (await c.commit("g", -1, "", {("t", 0): OffsetAndMetadata(8)})) == {("t", 0): E.UNKNOWN_MEMBER_ID}
        err, everything = await c.fetch("g")
        assert {tp: om.offset for tp, om in everything.items()} == {("t", 0): 7}
        await close(store, c)
    asyncio.run(main())


def test_offsets_and_groups_survive_reopen_in_kafka_partition(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        a = await first_join(c)
        await c.sync("g", 1, a.member_id, assignments={a.member_id: b"asg"})
        await c.commit("g", 1, a.member_id, {("t", 0): OffsetAndMetadata(11), ("t", 3): OffsetAndMetadata(33)})
        p = partition_for_group("g", 3)
        assert store.partition(OFFSETS_TOPIC, p).log_end_offset >= 2
        assert all(store.partition(OFFSETS_TOPIC, q).log_end_offset == 0 for q in range(3) if q != p)
        await close(store, c)
        store, c = await open_coordinator(tmp_path)
        err, got = await c.fetch("g", [("t", 0), ("t", 3)])
        assert {tp: om.offset for tp, om in got.items()} == {("t", 0): 11, ("t", 3): 33}
        d = c.describe("g")
        assert d.state == "Stable" and d.members[0].member_id == a.member_id and d.members[0].assignment == b"asg"
        # the reloaded member keeps its place if it heartbeats in time
        assert await c.heartbeat("g", 1, a.member_id) == E.NONE
        await close(store, c)
    asyncio.run(main())


def test_delete_groups_and_offset_delete(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        a = await first_join(c)
        await c.sync("g", 1, a.member_id, assignments={})
        await c.commit("g", 1, a.member_id, {("t", 0): OffsetAndMetadata(1)})
        await c.commit("e", -1, "", {("t", 0): OffsetAndMetadata(2), ("t", 1): OffsetAndMetadata(3)})
        assert await c.delete_groups(["g", "e", "nope"]) == {"g": E.NON_EMPTY_GROUP, "e": E.NONE,
                                                              "nope": E.GROUP_ID_NOT_FOUND}
        assert (await c.fetch("e", [("t", 0)]))[1] == {("t", 0): None}
        # OffsetDelete on a non-empty consumer group: subscribed topic refused
        top, res = await c.delete_offsets("g", [("t", 0)])
        assert top == E.NONE and res == {("t", 0): E.GROUP_SUBSCRIBED_TO_TOPIC}
        assert (await c.delete_offsets("nope", [("t", 0)]))[0] == E.GROUP_ID_NOT_FOUND
        await c.leave("g", [(a.member_id, None)])
        top, res = await c.delete_offsets("g", [("t", 0)])
        assert res == {("t", 0): E.NONE}
        assert (await c.fetch("g", [("t", 0)]))[1] == {("t", 0): None}
        await close(store, c)
        store, c = await open_coordinator(tmp_path)
        assert c.list_groups() == [("g", "consumer", "Empty")]
        assert (await c.fetch("e"))[1] == {}
        await close(store, c)
    asyncio.run(main())


def test_offsets_expire_for_empty_groups_only(tmp_path):
    async def main():
        now = [10_000_000]
        store, c = await open_coordinator(tmp_path, offsets_retention_minutes=1)
        c.clock = lambda: now[0]
        await c.commit("idle", -1, "", {("t", 0): OffsetAndMetadata(4)})
        a = await first_join(c)
        await c.sync("g", 1, a.member_id, assignments={})
        await c.commit("g", 1, a.member_id, {("t", 1): OffsetAndMetadata(5)})
        now[0] += 59_000
        assert c.expire_offsets() == {}
        now[0] += 2_000
        assert c.expire_offsets() == {"idle": [("t", 0)]}
        assert [g[0] for g in c.list_groups()] == ["g"]  # the idle group is gone (Dead)
        assert (await c.fetch("g", [("t", 1)]))[1][("t", 1)].offset == 5
        await close(store, c)
        store, c = await open_coordinator(tmp_path)
        assert [g[0] for g in c.list_groups()] == ["g"]
        await close(store, c)
    asyncio.run(main())


def test_deleting_a_topic_removes_its_offsets(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        store.create_topic("gone", 2)
        await c.commit("g", -1, "", {("gone", 0): OffsetAndMetadata(1), ("t", 0): OffsetAndMetadata(2)})
        store.delete_topic("gone")
        assert {tp for tp in (await c.fetch("g"))[1]} == {("t", 0)}
        await close(store, c)
        store, c = await open_coordinator(tmp_path)
        assert {tp for tp in (await c.fetch("g"))[1]} == {("t", 0)}
        await close(store, c)
    asyncio.run(main())


def test_pending_member_expires_and_not_coordinator_after_stop(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        r = await join(c, session=100)
        assert r.error == E.MEMBER_ID_REQUIRED
        await asyncio.sleep(0.3)
        assert (await join(c, member=r.member_id, session=100)).error == E.UNKNOWN_MEMBER_ID
        await c.stop()
        assert (await join(c)).error == E.NOT_COORDINATOR
        assert await c.heartbeat("g", 1, "m") == E.NOT_COORDINATOR
        store.close()
    asyncio.run(main())


def test_embedded_store_and_coordinator_share_offsets(tmp_path):
    store = logstore.open(str(tmp_path), background=False)
    store.create_topic("t", 4)
    g = GroupOffsetStore(store, 3)
    g.commit("app", {("t", 2): 42})
    store.close()

    async def main():
        store, c = await open_coordinator(tmp_path)
        assert (await c.fetch("app", [("t", 2)]))[1][("t", 2)].offset == 42
        await c.commit("app", -1, "", {("t", 2): OffsetAndMetadata(43)})
        await close(store, c)
    asyncio.run(main())
    with logstore.open(str(tmp_path), background=False) as store:
        assert GroupOffsetStore(store, 3).committed("app", "t", 2) == 43


def test_config_from_server_properties_names():
    cfg = CoordinatorConfig.from_mapping({"offsets.topic.num.partitions": "7", "group.initial.rebalance.delay.ms": 0,
                                          "unrelated.key": "x"})
    assert cfg.offsets_topic_num_partitions == 7 and cfg.group_initial_rebalance_delay_ms == 0
    assert cfg.group_min_session_timeout_ms == 6000 and cfg.offsets_retention_minutes == 10080
    assert cfg.offsets_topic_segment_bytes == 104857600


@pytest.mark.parametrize("n", [2, 5])
def test_protocol_vote_prefers_common_first_choice(tmp_path, n):
    async def main():
        store, c = await open_coordinator(tmp_path, group_initial_rebalance_delay_ms=200)
        protos = [("cooperative-sticky", b"x"), ("range", b"y")]
        rs = await asyncio.gather(*(first_join(c, protos=protos if i else [("range", b"y")], client=f"m{i}",
                                               rebalance=2000) for i in range(n)))
        assert {r.protocol_name for r in rs} == {"range"}
        await close(store, c)
    asyncio.run(main())


def test_periodic_expiry_runs_on_the_loop(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path, offsets_retention_minutes=1,
                                          offsets_retention_check_interval_ms=50)
        c.clock = lambda: 0
        await c.commit("old", -1, "", {("t", 0): OffsetAndMetadata(1)})
        await asyncio.sleep(0.2)
        assert [g[0] for g in c.list_groups()] == ["old"]
        c.clock = lambda: 61_000
        for _ in range(100):
            await asyncio.sleep(0.02)
            if not c.list_groups():
                break
        assert c.list_groups() == [] and (await c.fetch("old"))[1] == {}
        await close(store, c)
    asyncio.run(main())


def test_flush_messages_1_on_the_offsets_topic_fsyncs_each_commit(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        lg = store.partition(OFFSETS_TOPIC, partition_for_group("g", 3))
        await c.commit("g", -1, "", {("t", 0): OffsetAndMetadata(1)})
        assert lg.recovery_point < lg.log_end_offset  # acked after the append only (Kafka's default)
        store.alter_topic_config(OFFSETS_TOPIC, {"flush.messages": "1"})
        await c.commit("g", -1, "", {("t", 0): OffsetAndMetadata(2)})
        assert lg.recovery_point == lg.log_end_offset  # fsynced before the answer
        await close(store, c)
    asyncio.run(main())


def test_offsets_topic_created_from_broker_settings(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path, offsets_topic_num_partitions=7,
                                          offsets_topic_segment_bytes=1 << 20)
        assert store.topic(OFFSETS_TOPIC).partitions == 7
        cfg = store.topic_config(OFFSETS_TOPIC)
        assert cfg.segment_bytes == 1 << 20 and cfg.cleanup_policy == "compact"
        await close(store, c)
    asyncio.run(main())


def test_offsets_of_a_topic_deleted_offline_are_dropped_at_start(tmp_path):
    async def main():
        store, c = await open_coordinator(tmp_path)
        store.create_topic("x", 1)
        await c.commit("g", -1, "", {("x", 0): OffsetAndMetadata(1), ("t", 0): OffsetAndMetadata(2)})
        await close(store, c)
        with logstore.open(str(tmp_path), background=False) as s:  # no coordinator listening
            s.delete_topic("x")
        store, c = await open_coordinator(tmp_path)
        assert set((await c.fetch("g"))[1]) == {("t", 0)}
        await close(store, c)
    asyncio.run(main())
