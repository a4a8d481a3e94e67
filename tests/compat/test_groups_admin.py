"""Group administration with kafka-python's KafkaAdminClient against a real broker process:
batched OffsetFetch (v8+), OffsetCommit from outside the group, OffsetDelete (refused for a
subscribed topic of a live group), batched LeaveGroup (remove_group_members), DescribeGroups,
ListGroups state filter, DeleteGroups (NON_EMPTY_GROUP while a member lives)."""

from __future__ import annotations

import time

import pytest

kafka = pytest.importorskip("kafka")
from kafka import KafkaAdminClient, TopicPartition  # noqa: E402
from kafka.admin import MemberToRemove  # noqa: E402
from kafka.structs import OffsetAndMetadata  # noqa: E402

try:  # tests/compat as a package or as a rootdir-inserted directory
    from .test_groups_clients import Member, broker, create_topic, partitioned, wait_for  # noqa: F401
except ImportError:
    from test_groups_clients import Member, broker, create_topic, partitioned, wait_for  # noqa: F401


def errname(e) -> str:
    if isinstance(e, str):  # delete_groups reports "OK" or the error class name
        return "NoError" if e == "OK" else e
    return getattr(e, "__name__", type(e).__name__)


def test_admin_apis_on_empty_and_live_groups(broker):  # noqa: F811
    create_topic(broker.bootstrap, "t4", 4)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    member = None
    try:
        t0, t1 = TopicPartition("t4", 0), TopicPartition("t4", 1)
        admin.alter_group_offsets("adm", {t0: OffsetAndMetadata(4, "m0", -1), t1: OffsetAndMetadata(9, "", -1)})
        got = admin.list_group_offsets({"adm": None, "nobody": None})
        assert {tp: om.offset for tp, om in got["adm"].items()} == {t0: 4, t1: 9}
        assert got["adm"][t0].metadata == "m0" and got["nobody"] == {}
        res = admin.delete_group_offsets("adm", [t0])
        assert {tp: errname(e) for tp, e in res.items()} == {t0: "NoError"}
        assert set(admin.list_group_offsets({"adm": None})["adm"]) == {t1}

        member = Member("confluent", broker.bootstrap, "live", "t4", "range")
        wait_for(lambda: partitioned([member], 4), 40, "the member to own all 4 partitions")
        desc = admin.describe_groups(["live"])
        live = desc["live"] if isinstance(desc, dict) else desc[0]
        state = live["group_state"] if isinstance(live, dict) else live.state
        assert state == "Stable"
        members = live["members"] if isinstance(live, dict) else live.members
        assert len(members) == 1
        member_id = members[0]["member_id"] if isinstance(members[0], dict) else members[0].member_id
        assert [g["group_id"] for g in admin.list_groups(states_filter=["Stable"])] == ["live"]
        assert sorted(g["group_id"] for g in admin.list_groups(states_filter=["Empty"])) == ["adm"]

        res = admin.delete_group_offsets("live", [t0])
        assert {tp: errname(e) for tp, e in res.items()} == {t0: "GroupSubscribedToTopicError"}
        res = admin.delete_groups(["live", "adm"])
        assert {g: errname(e) for g, e in dict(res).items()} == {"live": "NonEmptyGroupError", "adm": "NoError"}
        assert "adm" not in [g["group_id"] for g in admin.list_groups()]

        # LeaveGroup v3+ for the member: the group rebalances; the (alive) client joins again
        res = admin.remove_group_members("live", [MemberToRemove(member_id=member_id),
                                                  MemberToRemove(member_id="ghost")])
        assert sorted(errname(e) for e in res.values()) == ["NoError", "UnknownMemberIdError"]
        wait_for(lambda: [g["group_id"] for g in admin.list_groups(states_filter=["Stable"])] == ["live"]
                 and partitioned([member], 4), 40, "the member to rejoin", hold=0.5)

        member.kill()  # no LeaveGroup: the session timeout empties the group
        wait_for(lambda: [g["group_id"] for g in admin.list_groups(states_filter=["Empty"])] == ["live"], 40,
                 "the group to become Empty after the member's session", hold=0.1)
        res = admin.delete_groups(["live"])
        assert {g: errname(e) for g, e in dict(res).items()} == {"live": "NoError"}
        assert admin.list_groups() == []
    finally:
        if member is not None:
            member.kill()
        admin.close()
