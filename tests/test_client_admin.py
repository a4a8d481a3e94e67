"""broker/admin_client/: the CLI's own Kafka-protocol client, against a live broker process,
and its consumer-protocol byte layouts against kafka-python's."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from kafka.protocol.old.consumer_protocol import (ConsumerProtocolMemberAssignment_v0,
                                                  ConsumerProtocolMemberMetadata_v0)

from broker.admin_client import (EARLIEST, LATEST, AdminClient, BrokerUnreachable, GroupMember, KafkaError,
                                 decode_assignment, decode_subscription, encode_assignment, encode_subscription,
                                 parse_bootstrap, range_assign)
from broker.pytest_plugin import start_broker
from logstore import records as R


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(str(tmp_path_factory.mktemp("admin") / "data"),
                     overrides={"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "3",
                                "group.min.session.timeout.ms": "1000"})
    yield b
    b.stop()


def test_subscription_and_assignment_bytes_match_kafka_python() -> None:
    sub = encode_subscription(["a", "bb"])
    decoded = ConsumerProtocolMemberMetadata_v0.decode(sub)
    assert (decoded.version, decoded.topics, decoded.user_data) == (0, ["a", "bb"], None)
    assert decode_subscription(ConsumerProtocolMemberMetadata_v0(0, ["x", "y"], b"").encode()) == ["x", "y"]
    asg = encode_assignment([("a", 2), ("a", 0), ("b", 1)])
    kp = ConsumerProtocolMemberAssignment_v0.decode(asg)
    assert sorted((tp.topic, tp.partition) for tp in kp.partitions()) == [("a", 0), ("a", 2), ("b", 1)]
    theirs = ConsumerProtocolMemberAssignment_v0(0, [("t", [3, 1])], b"").encode()
    assert decode_assignment(theirs) == [("t", 3), ("t", 1)]


def test_range_assignor_as_kafka() -> None:
    plan = range_assign({"m2": ["t"], "m1": ["t", "u"]}, {"t": 5, "u": 2})
    assert plan == {"m1": [("t", 0), ("t", 1), ("t", 2), ("u", 0), ("u", 1)], "m2": [("t", 3), ("t", 4)]}
    assert range_assign({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": 2}) == {"a": [("t", 0)], "b": [("t", 1)], "c": []}


def test_parse_bootstrap() -> None:
    assert parse_bootstrap("h1:1, [::1]:2") == [("h1", 1), ("::1", 2)]
    for bad in ("", "host", "host:", ":9092", "h:p"):
        with pytest.raises(ValueError):
            parse_bootstrap(bad)


def test_unreachable_names_every_address_tried() -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    with pytest.raises(BrokerUnreachable) as e:
        AdminClient(",".join(f"127.0.0.1:{p}" for p in ports), timeout=2)
    assert all(f"127.0.0.1:{p}" in str(e.value) for p in ports)


def test_topics_produce_fetch_offsets(broker) -> None:
    with AdminClient(broker.bootstrap) as c:
        assert c.versions[18] >= 3 and 0 in c.versions and 1 in c.versions
        c.create_topic("adm", 2, configs={"retention.ms": "123456"})
        with pytest.raises(KafkaError) as e:
            c.create_topic("adm", 2)
        assert e.value.code == 36
        md = c.metadata(["adm"])
        assert md["brokers"][0][2] == broker.port
        assert [p[0] for p in md["topics"]["adm"]["partitions"]] == [0, 1]
        cfg = {x["name"]: x for x in c.describe_configs("adm")}
        assert cfg["retention.ms"]["value"] == "123456" and cfg["retention.ms"]["source"] == 1
        assert cfg["segment.bytes"]["default"]
        base = c.produce("adm", 1, R.build_batch([(b"k", b"v1"), (None, b"v2")]))
        assert base == 0
        assert c.produce("adm", 1, R.build_batch([(None, b"v3")]), acks=1) == 2
        assert c.produce("adm", 0, R.build_batch([(None, b"zero")]), acks=0) == -1  # no response to wait for
        deadline = time.monotonic() + 10
        while c.list_offsets([("adm", 0)], LATEST)[("adm", 0)] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        res = c.fetch({("adm", 1): 1, ("adm", 0): 0}, max_wait_ms=10)
        code, hw, data = res[("adm", 1)]
        assert (code, hw) == (0, 3)
        assert [r.value for r in R.decode_batches(data) if r.offset >= 1] == [b"v2", b"v3"]
        assert res[("adm", 0)][:2] == (0, 1)
        assert c.list_offsets([("adm", 1), ("adm", 0)], LATEST) == {("adm", 1): 3, ("adm", 0): 1}
        assert c.list_offsets([("adm", 1)], EARLIEST) == {("adm", 1): 0}
        c.create_partitions("adm", 3)
        assert len(c.metadata(["adm"])["topics"]["adm"]["partitions"]) == 3
        c.alter_configs("adm", {"cleanup.policy": "compact"}, ["retention.ms"])
        cfg = {x["name"]: x for x in c.describe_configs("adm")}
        assert cfg["cleanup.policy"]["value"] == "compact" and cfg["retention.ms"]["default"]
        c.delete_topics(["adm"])
        with pytest.raises(KafkaError) as e:
            c.delete_topics(["adm"])
        assert e.value.code == 3


def test_two_group_members_split_partitions_and_commit(broker) -> None:
    with AdminClient(broker.bootstrap) as c:
        c.create_topic("grp", 4)
    clients = [AdminClient(broker.bootstrap, client_id=f"m{i}") for i in range(2)]
    members = [GroupMember(cl, "two", ["grp"], session_timeout_ms=6000, rebalance_timeout_ms=10000)
               for cl in clients]
    try:
        first = members[0].join()
        assert sorted(first) == [("grp", p) for p in range(4)]
        got: dict[int, list] = {}
        t = threading.Thread(target=lambda: got.__setitem__(1, members[1].join()))
        t.start()
        deadline = time.monotonic() + 30
        while members[0].heartbeat():  # the second join makes the group rebalance
            assert time.monotonic() < deadline
            time.sleep(0.1)
        got[0] = members[0].join()
        t.join(30)
        assert sorted(got[0] + got[1]) == [("grp", p) for p in range(4)]
        assert len(got[0]) == len(got[1]) == 2
        assert members[0].generation == members[1].generation
        members[0].commit({tp: 7 for tp in got[0]})
        assert clients[1].offset_fetch("two", got[0]) == {tp: 7 for tp in got[0]}
        d = clients[1].describe_group("two")
        assert d["state"] == "Stable" and {m["client_id"] for m in d["members"]} == {"m0", "m1"}
        assert sorted(tp for m in d["members"] for tp in m["assignment"]) == [("grp", p) for p in range(4)]
    finally:
        for m in members:
            m.leave()
        for cl in clients:
            cl.close()
