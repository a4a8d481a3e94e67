"""Consumer-group benchmarks: rebalance time for 8 consumers joining, and OffsetCommit requests/s.

    .venv/bin/python -m bench.bench_groups [--seconds 3] [--no-broker]

Figures (printed, and written to bench/results/groups.json):
  in-process (GroupCoordinator + the wire handlers, requests and responses through kio's codec):
    rebalance_8_ms          8 members JoinGroup (v9, MEMBER_ID_REQUIRED round included) + SyncGroup,
                            from the first request to the last assignment delivered
    rejoin_1_of_8_ms        a 9th member joins a Stable group of 8: every member rejoins and syncs
    commit_rps              OffsetCommit v9 of one partition, one after another
    commit_fsync_rps        the same, each commit fsynced before the answer (fsync_commits=True; the
                            same path as flush.messages=1 on __consumer_offsets)
    baseline_append_rps     Log.append of the same record, no coordinator: the floor we compare to
  real broker (`logstore serve` via broker.pytest_plugin, 127.0.0.1, confluent-kafka; skipped if it cannot start):
    clients_rebalance_8_ms  8 confluent consumers subscribe at once until all 4*8 partitions are owned
                            once (group.initial.rebalance.delay.ms=0, heartbeat.interval.ms=100)
    clients_commit_rps      Consumer.commit(asynchronous=False) of one offset, in a loop
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import logstore
from broker.coordinator import CoordinatorConfig, GroupCoordinator
from broker.handlers import groups as H

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "groups.json"
MS = datetime.timedelta(milliseconds=1)


class _Ctx:
    def __init__(self, coordinator: GroupCoordinator, client_id: str):
        self.coordinator = coordinator
        self.client_id = client_id
        self.client_host = "127.0.0.1"
        self.node_id, self.host, self.port = 0, "127.0.0.1", 9092


def _wire(obj):
    from kio.serial import entity_reader, entity_writer
    buf = io.BytesIO()
    entity_writer(type(obj))(buf, obj)
    return entity_reader(type(obj))(buf.getvalue(), 0)[0]


async def _call(ctx, request):
    return _wire(await H.HANDLERS[int(type(request).__api_key__)](ctx, _wire(request)))


def _subscription(topic: str) -> bytes:
    import struct
    return struct.pack(">hih", 0, 1, len(topic)) + topic.encode() + struct.pack(">i", -1)


async def _member(coord: GroupCoordinator, group: str, name: str, topic: str, assign) -> float:
    from kio.schema.join_group.v9 import request as J
    from kio.schema.sync_group.v5 import request as S
    ctx = _Ctx(coord, name)

    def join(mid: str):
        return J.JoinGroupRequest(group_id=group, session_timeout=10000 * MS, rebalance_timeout=10000 * MS,
                                  member_id=mid, group_instance_id=None, protocol_type="consumer",
                                  protocols=(J.JoinGroupRequestProtocol(name="range", metadata=_subscription(topic)),),
                                  reason=None)
    r = await _call(ctx, join(""))
    r = await _call(ctx, join(r.member_id))
    gen, me = r.generation_id, r.member_id
    assignments = ()
    if r.members:
        assignments = tuple(S.SyncGroupRequestAssignment(member_id=m.member_id, assignment=assign(i))
                            for i, m in enumerate(r.members))
    s = await _call(ctx, S.SyncGroupRequest(group_id=group, generation_id=gen, member_id=me, group_instance_id=None,
                                            protocol_type="consumer", protocol_name="range", assignments=assignments))
    assert s.error_code == 0, s
    return time.perf_counter()


async def _inproc(seconds: float) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as d:
        store = logstore.open(d, background=False)
        store.create_topic("t", 32)
        coord = GroupCoordinator(store, CoordinatorConfig(group_initial_rebalance_delay_ms=0,
                                                          group_min_session_timeout_ms=10))
        await coord.start()
        assign = lambda i: b"\x00" * (16 + i)  # noqa: E731 - opaque bytes, as a client assignor makes
        runs = []
        for run in range(5):  # a fresh group each run
            group = "bench" if run == 4 else f"warmup-{run}"
            t0 = time.perf_counter()
            ends = await asyncio.gather(*(_member(coord, group, f"c{i}", "t", assign) for i in range(8)))
            runs.append((max(ends) - t0) * 1000)
        out["rebalance_8_ms"] = round(min(runs), 2)
        out["rebalance_8_ms_runs"] = [round(x, 2) for x in runs]
        # the 9th joiner: the 8 must notice (heartbeat REBALANCE_IN_PROGRESS) and rejoin; here they
        # rejoin at once, so this is the coordinator's own share of a rebalance
        members = list(coord.groups["bench"].members)
        gen = coord.groups["bench"].generation
        t0 = time.perf_counter()
        ninth = asyncio.ensure_future(coord.join("bench", "", session_timeout_ms=10000, rebalance_timeout_ms=10000,
                                                 protocol_type="consumer", protocols=[("range", b"")],
                                                 client_id="c8"))
        await asyncio.sleep(0)
        rejoins = [coord.join("bench", m, session_timeout_ms=10000, rebalance_timeout_ms=10000,
                              protocol_type="consumer", protocols=[("range", _subscription("t"))], client_id=m)
                   for m in members]
        results = await asyncio.gather(ninth, *rejoins)
        leader = next(r for r in results if r.members)
        await asyncio.gather(*(coord.sync("bench", leader.generation, r.member_id,
                                          assignments={m[0]: b"x" for m in leader.members} if r.members else None)
                               for r in results))
        assert leader.generation == gen + 1
        out["rejoin_1_of_8_ms"] = round((time.perf_counter() - t0) * 1000, 2)

        from kio.schema.offset_commit.v9 import request as C
        ctx = _Ctx(coord, "committer")
        for fsync, key in ((False, "commit_rps"), (True, "commit_fsync_rps")):
            coord.config.fsync_commits = fsync
            n = 0
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                req = C.OffsetCommitRequest(group_id="committer", generation_id_or_member_epoch=-1, member_id="",
                                            group_instance_id=None, topics=(C.OffsetCommitRequestTopic(
                                                name="t", partitions=(C.OffsetCommitRequestPartition(
                                                    partition_index=n % 32, committed_offset=n,
                                                    committed_leader_epoch=-1, committed_metadata=""),)),))
                r = await _call(ctx, req)
                assert r.topics[0].partitions[0].error_code == 0
                n += 1
            out[key] = round(n / (time.perf_counter() - t0))
        from logstore.groups import OffsetAndMetadata, encode_offset_key, encode_offset_value
        lg = store.partition("t", 0)
        key, val = encode_offset_key("committer", "t", 0), encode_offset_value(OffsetAndMetadata(1, "", 0))
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            lg.append([(key, val)], flush=False)
            n += 1
        out["baseline_append_rps"] = round(n / (time.perf_counter() - t0))
        out["commit_vs_append_ratio"] = round(out["commit_rps"] / out["baseline_append_rps"], 3)
        await coord.stop()
        store.close()
    return out


def _clients(seconds: float) -> dict:
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    out: dict = {}
    from broker.pytest_plugin import start_broker
    with tempfile.TemporaryDirectory() as d:
        broker = start_broker(os.path.join(d, "data"), overrides={
            "offsets.topic.num.partitions": "5", "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000"})
        boot = broker.bootstrap
        try:
            admin = AdminClient({"bootstrap.servers": boot})  # held: a dropped client cancels its futures
            admin.create_topics([NewTopic("b32", 32, 1)])["b32"].result(20)
            consumers = [Consumer({"bootstrap.servers": boot, "group.id": "bench8", "session.timeout.ms": 6000,
                                   "heartbeat.interval.ms": 100, "enable.auto.commit": False, "log_level": 3})
                         for _ in range(8)]
            t0 = time.perf_counter()
            for c in consumers:
                c.subscribe(["b32"])
            done = None
            while time.perf_counter() - t0 < 60:
                for c in consumers:
                    c.poll(0.01)
                owned = sorted(p.partition for c in consumers for p in c.assignment())
                if owned == list(range(32)) and all(c.assignment() for c in consumers):
                    done = time.perf_counter()
                    break
            out["clients_rebalance_8_ms"] = round((done - t0) * 1000, 1) if done else None
            for c in consumers:
                c.close()
            c = Consumer({"bootstrap.servers": boot, "group.id": "bench-commit", "enable.auto.commit": False})
            n = 0
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                c.commit(offsets=[TopicPartition("b32", n % 32, n)], asynchronous=False)
                n += 1
            out["clients_commit_rps"] = round(n / (time.perf_counter() - t0))
            c.close()
        finally:
            broker.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each rate measurement")
    ap.add_argument("--no-broker", action="store_true", help="in-process figures only")
    args = ap.parse_args(argv)
    res = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                          time.gmtime())}
    res.update(asyncio.run(_inproc(args.seconds)))
    if not args.no_broker:
        try:
            res.update(_clients(args.seconds))
        except Exception as e:  # the figure is absent, and we say why
            res["clients_error"] = f"{type(e).__name__}: {e}"
    for k, v in res.items():
        print(f"{k:28} {v}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
