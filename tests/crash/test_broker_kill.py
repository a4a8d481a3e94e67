"""kill -9 the broker under load: every acknowledged record survives, committed offsets too.

A real `logstore serve` process (broker.pytest_plugin.start_broker) serves a topic with
`flush.messages=1`. Producer threads send acks=all produce requests (hand-built frames,
tests/fuzz/wire.py) and record every acknowledged (partition, offset, value); a committer moves a
consumer group's committed offsets. The broker is killed with SIGKILL at random moments under
that load and restarted on the same log dir, again and again. At the end every acknowledged
record is fetched back, byte for byte, at the offset it was acknowledged at, and the group's
committed offsets are those last acknowledged by OffsetCommit.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time

import pytest

from broker.pytest_plugin import free_port, start_broker
from logstore import records as R

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz"))
import wire  # noqa: E402

TOPIC = "acked"
PARTITIONS = 2


class Producer(threading.Thread):
    """Sends acks=all produces until stopped, reconnecting across broker restarts."""

    def __init__(self, ident: int, port: int, stop: threading.Event):
        super().__init__(daemon=True, name=f"producer-{ident}")
        self.pid_, self.port, self.stop_ev = ident, port, stop
        self.acked: list[tuple[int, int, bytes]] = []
        self.errors: dict[int, int] = {}
        self.seq = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        cid = 0
        conn = None
        try:
            while not self.stop_ev.is_set():
                if conn is None:
                    try:
                        conn = wire.Conn(self.port, timeout=10)
                    except OSError:
                        time.sleep(0.05)
                        continue
                self.seq += 1
                value = b"p%d-%d-" % (self.pid_, self.seq) + os.urandom(16).hex().encode()
                p = self.seq % PARTITIONS
                batch = R.build_batch([(b"k%d" % self.pid_, value)])
                cid += 1
                try:
                    got_cid, body = conn.call(wire.produce(cid, TOPIC, p, batch, acks=-1))
                except (OSError, ConnectionError):
                    conn.close()
                    conn = None  # killed mid-request: not acknowledged, may or may not be there
                    continue
                assert got_cid == cid, f"response for correlation id {got_cid}, expected {cid}"
                [(_t, part, err, base)] = wire.parse_produce(body)
                if err == 0:
                    self.acked.append((part, base, value))
                else:
                    self.errors[err] = self.errors.get(err, 0) + 1
        except BaseException as e:  # surfaced by the test
            self.failure = e
        finally:
            if conn is not None:
                conn.close()


def fetch_all(port: int, partition: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    offset, cid = 0, 0
    with wire.Conn(port) as conn:
        while True:
            cid += 1
            _c, body = conn.call(wire.fetch(cid, TOPIC, partition, offset, max_bytes=1 << 20))
            [(_t, _p, err, hw, data)] = wire.parse_fetch(body)
            assert err == 0, f"fetch of partition {partition} at {offset} failed with error {err}"
            if offset >= hw:
                return out
            got = False
            for rec in R.decode_batches(data):
                if rec.offset >= offset:
                    out[rec.offset] = rec.value
                    offset = rec.offset + 1
                    got = True
            assert got, f"fetch at {offset} below the high watermark {hw} returned no record"


def create_topic(port: int) -> None:
    with wire.Conn(port) as conn:
        _c, body = conn.call(wire.create_topics(1, TOPIC, PARTITIONS, {"flush.messages": "1"}))
        [(_n, err, msg)] = wire.parse_create_topics(body)
        assert err in (0, 36), f"CreateTopics failed: {err} {msg}"


def commit_and_check_group(bootstrap: str, group: str, expect: dict | None, commit: dict) -> None:
    """Check the group's committed offsets are `expect`, then commit `commit` ({partition: offset})."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      request_timeout_ms=15_000)
    try:
        tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        if expect is not None:
            got = {tp.partition: c.committed(tp) for tp in tps}
            assert got == expect, f"group {group} committed offsets after kill -9: {got}, expected {expect}"
        c.assign(tps)
        c.commit({TopicPartition(TOPIC, p): OffsetAndMetadata(o, "", -1) if _leader_epoch_arg() else
                  OffsetAndMetadata(o, "") for p, o in commit.items()})
    finally:
        c.close(autocommit=False)


def _leader_epoch_arg() -> bool:
    from kafka.structs import OffsetAndMetadata
    return len(OffsetAndMetadata._fields) >= 3


def run_kill_cycles(tmp_path, cycles: int, producers: int) -> dict:
    data = str(tmp_path / "data")
    port = free_port()
    overrides = {"log.flush.interval.messages": "1", "offsets.topic.num.partitions": "2",
                 "group.initial.rebalance.delay.ms": "0"}
    broker = start_broker(data, port=port, overrides=overrides)
    rng = random.Random(1)
    stop = threading.Event()
    threads: list[Producer] = []
    group_expect: dict | None = None
    group = "rel-group"
    group_checks = 0
    try:
        create_topic(port)
        threads = [Producer(i, port, stop) for i in range(producers)]
        for t in threads:
            t.start()
        for cycle in range(cycles):
            time.sleep(rng.uniform(0.15, 0.5))  # under load
            broker.kill()
            broker = start_broker(data, port=port, overrides=overrides)
            if cycle % 7 == 3:
                commit = {p: rng.randint(0, 50) for p in range(PARTITIONS)}
                commit_and_check_group(broker.bootstrap, group, group_expect, commit)
                group_expect = commit
                group_checks += 1
            for t in threads:
                if t.failure is not None:
                    raise AssertionError(f"{t.name} failed in cycle {cycle}: {t.failure!r}") from t.failure
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(30)
            if t.failure is not None:
                raise t.failure
        # one last kill: even the newest acknowledged records must survive it
        broker.kill()
        broker = start_broker(data, port=port, overrides=overrides)
        if group_expect is not None:
            commit_and_check_group(broker.bootstrap, group, group_expect, group_expect)
            group_checks += 1
        acked = [a for t in threads for a in t.acked]
        stored = {p: fetch_all(port, p) for p in range(PARTITIONS)}
        lost = [(p, o) for p, o, v in acked if stored[p].get(o) != v]
        assert not lost, (f"{len(lost)} of {len(acked)} acknowledged records are missing or different after "
                          f"{cycles} kill -9 cycles, e.g. (partition, offset) {lost[:10]}")
        offsets = [(p, o) for p, o, _ in acked]
        assert len(set(offsets)) == len(offsets), "two acknowledged produces got the same offset"
        errors: dict = {}
        for t in threads:
            for k, v in t.errors.items():
                errors[k] = errors.get(k, 0) + v
        return {"cycles": cycles + 1, "acked": len(acked), "lost": len(lost), "errors": errors,
                "group_checks": group_checks}
    finally:
        stop.set()
        broker.stop()


def test_kill9_under_load_loses_no_acknowledged_record(tmp_path):
    res = run_kill_cycles(tmp_path, cycles=20, producers=4)
    assert res["acked"] > 100, res
    print(f"\nkill -9: {res['cycles']} SIGKILL cycles under acks=all load, {res['acked']} acknowledged records "
          f"read back, records lost: {res['lost']}, error answers {res['errors']}, "
          f"{res['group_checks']} committed-offset checks")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill9_under_load_long(tmp_path):
    res = run_kill_cycles(tmp_path, cycles=100, producers=8)
    print(f"\nkill -9 (long): {res}")
