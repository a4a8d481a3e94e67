"""The group API handlers at every version they serve: requests and responses go through kio's
wire codec both ways (bytes in, bytes out), against a real coordinator over a real log dir."""

from __future__ import annotations

import asyncio
import datetime
import importlib
import io
from dataclasses import dataclass

import pytest
from kio.serial import entity_reader, entity_writer

import logstore
from broker.coordinator import CoordinatorConfig, GroupCoordinator, errors as E
from broker.handlers import groups as H

from .test_coordinator import subscription


@dataclass
class Ctx:
    coordinator: GroupCoordinator
    client_id: str = "client-1"
    client_host: str = "127.0.0.1"
    node_id: int = 0
    host: str = "127.0.0.1"
    port: int = 9092


def wire(obj):
    """Encode then decode with kio: what a real peer would send or receive."""
    cls = type(obj)
    buf = io.BytesIO()
    entity_writer(cls)(buf, obj)
    return entity_reader(cls)(buf.getvalue(), 0)[0]


def req(api: str, v: int, **kw):
    mod = importlib.import_module(f"kio.schema.{api}.v{v}.request")
    return mod


async def call(ctx, request):
    handler = H.HANDLERS[int(type(request).__api_key__)]
    return wire(await handler(ctx, wire(request)))


def build(cls, **kw):
    from dataclasses import fields
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in kw.items() if k in names})


async def setup(tmp_path):
    store = logstore.open(str(tmp_path), background=False)
    store.create_topic("t", 4)
    c = GroupCoordinator(store, CoordinatorConfig(offsets_topic_num_partitions=2, group_initial_rebalance_delay_ms=0,
                                                  group_min_session_timeout_ms=10))
    await c.start()
    return store, c, Ctx(c)


MS = datetime.timedelta(milliseconds=1)


@pytest.mark.parametrize("v", range(0, 10))
def test_join_sync_heartbeat_leave_every_version(tmp_path, v):
    async def main():
        store, c, ctx = await setup(tmp_path)
        jm = req("join_group", v)
        sub = subscription("t")

        def join(member_id):
            return build(jm.JoinGroupRequest, group_id="g", session_timeout=3000 * MS, rebalance_timeout=3000 * MS,
                         member_id=member_id, group_instance_id=None, protocol_type="consumer",
                         protocols=(jm.JoinGroupRequestProtocol(name="range", metadata=sub),), reason=None)
        r = await call(ctx, join(""))
        if v >= 4:
            assert r.error_code == E.MEMBER_ID_REQUIRED and r.member_id.startswith("client-1-")
            r = await call(ctx, join(r.member_id))
        assert r.error_code == 0 and r.generation_id == 1 and r.leader == r.member_id
        assert r.protocol_name == "range" and [m.member_id for m in r.members] == [r.member_id]
        me = r.member_id
        sv = min(v, 5)
        sm = req("sync_group", sv)
        s = await call(ctx, build(sm.SyncGroupRequest, group_id="g", generation_id=1, member_id=me, group_instance_id=None,
                                  protocol_type="consumer", protocol_name="range",
                                  assignments=(sm.SyncGroupRequestAssignment(member_id=me, assignment=b"\x00\x01"),)))
        assert s.error_code == 0 and s.assignment == b"\x00\x01"
        hv = min(v, 4)
        hm = req("heartbeat", hv)
        h = await call(ctx, build(hm.HeartbeatRequest, group_id="g", generation_id=1, member_id=me, group_instance_id=None))
        assert h.error_code == 0
        h = await call(ctx, build(hm.HeartbeatRequest, group_id="g", generation_id=7, member_id=me, group_instance_id=None))
        assert h.error_code == E.ILLEGAL_GENERATION
        dm = req("describe_groups", min(v, 6))
        d = await call(ctx, build(dm.DescribeGroupsRequest, groups=("g", "nope"), include_authorized_operations=False))
        g, nope = d.groups
        assert (g.group_state, g.protocol_data, g.members[0].client_id, g.members[0].client_host) == \
            ("Stable", "range", "client-1", "/127.0.0.1")
        assert g.members[0].member_assignment == b"\x00\x01"
        assert nope.group_state == "Dead" and nope.error_code == (E.GROUP_ID_NOT_FOUND if v >= 6 else 0)
        lv = min(v, 5)
        lm = req("leave_group", lv)
        if lv < 3:
            lr = await call(ctx, lm.LeaveGroupRequest(group_id="g", member_id=me))
            assert lr.error_code == 0
        else:
            lr = await call(ctx, lm.LeaveGroupRequest(group_id="g", members=(
                build(lm.MemberIdentity, member_id=me, group_instance_id=None, reason="bye"),
                build(lm.MemberIdentity, member_id="ghost", group_instance_id=None, reason=None))))
            assert [(m.member_id, m.error_code) for m in lr.members] == [(me, 0), ("ghost", E.UNKNOWN_MEMBER_ID)]
        await asyncio.sleep(0.01)
        assert c.describe("g").state == "Empty"
        await c.stop()
        store.close()
    asyncio.run(main())


@pytest.mark.parametrize("cv,fv", [(2, 1), (3, 3), (5, 5), (6, 7), (7, 8), (8, 8), (9, 9)])
def test_commit_and_fetch_versions(tmp_path, cv, fv):
    async def main():
        store, c, ctx = await setup(tmp_path)
        cm = req("offset_commit", cv)
        part = build(cm.OffsetCommitRequestPartition, partition_index=1, committed_offset=42, committed_leader_epoch=3,
                     committed_metadata="meta")
        bad = build(cm.OffsetCommitRequestPartition, partition_index=99, committed_offset=1, committed_leader_epoch=-1,
                    committed_metadata=None)
        r = await call(ctx, build(cm.OffsetCommitRequest, group_id="g", generation_id_or_member_epoch=-1, member_id="",
                                  group_instance_id=None, retention_time=-1 * MS,
                                  topics=(cm.OffsetCommitRequestTopic(name="t", partitions=(part, bad)),)))
        assert [(p.partition_index, p.error_code) for p in r.topics[0].partitions] == \
            [(1, 0), (99, E.UNKNOWN_TOPIC_OR_PARTITION)]
        fm = req("offset_fetch", fv)
        if fv >= 8:
            f = await call(ctx, fm.OffsetFetchRequest(require_stable=False, groups=(
                build(fm.OffsetFetchRequestGroup, group_id="g", member_id=None, member_epoch=-1,
                      topics=(fm.OffsetFetchRequestTopics(name="t", partition_indexes=(1, 2)),)),
                build(fm.OffsetFetchRequestGroup, group_id="other", member_id=None, member_epoch=-1, topics=None))))
            g, other = f.groups
            parts = g.topics[0].partitions
            assert other.topics == () and other.error_code == 0
        else:
            f = await call(ctx, build(fm.OffsetFetchRequest, group_id="g", require_stable=False,
                                      topics=(fm.OffsetFetchRequestTopic(name="t", partition_indexes=(1, 2)),)))
            parts = f.topics[0].partitions
        got = {p.partition_index: (p.committed_offset, p.metadata) for p in parts}
        assert got == {1: (42, "meta"), 2: (-1, "")}
        if fv >= 5:
            assert parts[0].committed_leader_epoch == (3 if cv >= 6 else -1)
        await c.stop()
        store.close()
    asyncio.run(main())


@pytest.mark.parametrize("v", range(0, 7))
def test_find_coordinator_versions(tmp_path, v):
    async def main():
        store, c, ctx = await setup(tmp_path)
        m = req("find_coordinator", v)
        if v >= 4:
            r = await call(ctx, m.FindCoordinatorRequest(key_type=0, coordinator_keys=("a", "b")))
            assert [(x.key, x.node_id, x.host, x.port, x.error_code) for x in r.coordinators] == \
                [("a", 0, "127.0.0.1", 9092, 0), ("b", 0, "127.0.0.1", 9092, 0)]
            r = await call(ctx, m.FindCoordinatorRequest(key_type=7, coordinator_keys=("a",)))
            assert r.coordinators[0].error_code == E.INVALID_REQUEST
        else:
            r = await call(ctx, build(m.FindCoordinatorRequest, key="g", key_type=0))
            assert (r.error_code, r.node_id, r.host, r.port) == (0, 0, "127.0.0.1", 9092)
        await c.stop()
        store.close()
    asyncio.run(main())


@pytest.mark.parametrize("v", range(0, 6))
def test_list_and_delete_groups(tmp_path, v):
    async def main():
        store, c, ctx = await setup(tmp_path)
        from broker.coordinator import OffsetAndMetadata
        await c.commit("empty", -1, "", {("t", 0): OffsetAndMetadata(3)})
        m = req("list_groups", v)
        r = await call(ctx, build(m.ListGroupsRequest, states_filter=(), types_filter=()))
        assert [(g.group_id, g.protocol_type) for g in r.groups] == [("empty", "")]
        if v >= 4:
            assert r.groups[0].group_state == "Empty"
            r = await call(ctx, build(m.ListGroupsRequest, states_filter=("Stable",), types_filter=()))
            assert r.groups == ()
        dm = req("delete_groups", min(v, 2))
        r = await call(ctx, dm.DeleteGroupsRequest(groups_names=("empty", "nope")))
        assert [(x.group_id, x.error_code) for x in r.results] == [("empty", 0), ("nope", E.GROUP_ID_NOT_FOUND)]
        await c.stop()
        store.close()
    asyncio.run(main())


def test_offset_delete(tmp_path):
    async def main():
        store, c, ctx = await setup(tmp_path)
        from broker.coordinator import OffsetAndMetadata
        await c.commit("g", -1, "", {("t", 0): OffsetAndMetadata(3), ("t", 1): OffsetAndMetadata(4)})
        m = req("offset_delete", 0)
        r = await call(ctx, m.OffsetDeleteRequest(group_id="g", topics=(m.OffsetDeleteRequestTopic(
            name="t", partitions=(m.OffsetDeleteRequestPartition(partition_index=0),)),)))
        assert r.error_code == 0 and r.topics[0].partitions[0].error_code == 0
        assert (await c.fetch("g"))[1].keys() == {("t", 1)}
        r = await call(ctx, m.OffsetDeleteRequest(group_id="nope", topics=()))
        assert r.error_code == E.GROUP_ID_NOT_FOUND
        await c.stop()
        store.close()
    asyncio.run(main())
