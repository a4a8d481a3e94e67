"""The broker under real load and real crashes, as Kafka users hit it (real `logstore serve`
processes on free ports of 127.0.0.1, log dirs in tmp_path, unmodified clients):

- a client that pipelines many Fetch requests and then stops reading its socket: the broker's
  memory stays bounded (at most MAX_IN_FLIGHT responses held per connection, file regions unread),
  other connections are served meanwhile, and once the client reads again every response comes
  back complete and in request order;
- idempotent acks=all producers of all three client libraries (each with its own codec) on a topic
  with small segments and the default flush policy (no fsync per produce), while a consumer group
  rebalances (a second member joins and leaves) and commits, and the broker is SIGKILLed twice
  under that load and restarted on the same port: every acknowledged record is stored once, at the
  offset it was acknowledged at, in each producer's order, offsets are contiguous, and the group's
  committed offsets survive a further SIGKILL;
- topics deleted and recreated, and grown, while produced to and consumed by a group: the broker
  logs no handler failure, a topic nobody touches loses nothing, and the producer and the group
  pick up the added partitions.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import struct
import sys
import threading
import time

import pytest

from broker.pytest_plugin import free_port, start_broker
from logstore import records as R

from tests.test_server import RawClient, req

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz"))
import wire  # noqa: E402


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError(f"closed by the broker after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


# -- a client that stops reading: bounded memory ------------------------------------------------------
def test_pipelined_fetches_of_a_client_that_stops_reading_keep_broker_memory_bounded(tmp_path) -> None:
    import psutil
    b = start_broker(str(tmp_path / "data"), overrides={"offsets.topic.num.partitions": "1"})
    try:
        batches, value_size, nreq = 20, 500_000, 1500
        with wire.Conn(b.port) as c:
            _c, body = c.call(wire.create_topics(1, "big", 1, {"max.message.bytes": str(1 << 20)}))
            assert wire.parse_create_topics(body)[0][1] == 0
            for i in range(batches):
                value = bytes([i]) * value_size
                _c, body = c.call(wire.produce(2 + i, "big", 0, R.build_batch([(b"%d" % i, value)])))
                assert wire.parse_produce(body)[0][2:] == (0, i)
        broker_proc = psutil.Process(b.pid)
        rss0 = broker_proc.memory_info().rss
        # 1500 fetches of one ~500 KB batch each (750 MB of answers), sent at once, none read yet
        s = socket.create_connection(("127.0.0.1", b.port))
        try:
            pipeline = b"".join(wire.fetch(1000 + i, "big", 0, i % batches, max_bytes=1 << 20) for i in range(nreq))
            # sent from a thread: a broker that stops reading may leave part of it in our send buffer
            sender = threading.Thread(target=s.sendall, args=(pipeline,), daemon=True)
            sender.start()
            peak = rss0
            for _ in range(20):        # 2 s for the broker to take what it will of the pipeline
                time.sleep(0.1)
                peak = max(peak, broker_proc.memory_info().rss)
            # other clients are served meanwhile
            with wire.Conn(b.port, timeout=10) as other:
                _c, body = other.call(wire.fetch(7, "big", 0, batches - 1, max_bytes=1 << 20))
                [(_t, _p, err, hw, data)] = wire.parse_fetch(body)
                assert (err, hw, [r.offset for r in R.decode_batches(data)]) == (0, batches, [batches - 1])
            peak = max(peak, broker_proc.memory_info().rss)
            grown_mb = (peak - rss0) >> 20
            assert grown_mb < 200, (f"broker RSS grew by {grown_mb} MB for one connection that pipelined {nreq} "
                                    f"fetches and stopped reading (it holds every answer in memory)")
            # the client reads again: every answer, complete and in request order
            s.settimeout(60)
            for i in range(nreq):
                size = struct.unpack(">i", _recv_exact(s, 4))[0]
                frame = _recv_exact(s, size)
                assert struct.unpack(">i", frame[:4])[0] == 1000 + i
                [(_t, _p, err, hw, data)] = wire.parse_fetch(frame[4:])
                recs = list(R.decode_batches(data))
                assert err == 0 and recs and recs[0].offset == i % batches, (i, err, [r.offset for r in recs])
                assert all(r.value == bytes([r.offset]) * value_size for r in recs), i
            sender.join(10)
        finally:
            s.close()
        assert b.alive()
    finally:
        b.stop()


# -- SIGKILL under mixed-client idempotent load with a rebalancing group --------------------------------
KILL_TOPIC = "load"
KILL_PARTS = 6
KILL_GROUP = "load-group"


def _ck_sender(bs: str, n: int, q) -> None:
    from confluent_kafka import Producer
    acked: dict[int, list] = {}
    errors: list[str] = []

    def cb(err, msg) -> None:
        if err:
            errors.append(str(err))
        else:
            acked.setdefault(msg.partition(), []).append((msg.offset(), msg.value().decode()))

    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                  "compression.type": "lz4", "message.timeout.ms": 120000, "reconnect.backoff.ms": 50,
                  "reconnect.backoff.max.ms": 500, "retry.backoff.ms": 50})
    for i in range(n):
        v = f"ck-{i}"
        while True:
            try:
                p.produce(KILL_TOPIC, key=v.encode(), value=v.encode(), partition=i % KILL_PARTS, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.01)
        if i % 100 == 0:
            p.poll(0)
            time.sleep(0.02)          # paced: the broker is killed while records are in flight
    left = p.flush(120)
    q.put(("ck", left, errors[:5], len(errors), acked))


def _kp_sender(bs: str, n: int, q) -> None:
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bs, acks="all", enable_idempotence=True, linger_ms=5,
                      compression_type="gzip", delivery_timeout_ms=120000, request_timeout_ms=10000,
                      reconnect_backoff_ms=50)
    futs = []
    for i in range(n):
        v = f"kp-{i}"
        futs.append((i % KILL_PARTS, v, p.send(KILL_TOPIC, key=v.encode(), value=v.encode(), partition=i % KILL_PARTS)))
        if i % 100 == 0:
            time.sleep(0.02)
    p.flush(120)
    acked: dict[int, list] = {}
    errors: list[str] = []
    for part, v, f in futs:
        try:
            acked.setdefault(part, []).append((f.get(0).offset, v))
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
    p.close()
    q.put(("kp", 0, errors[:5], len(errors), acked))


def _aio_sender(bs: str, n: int, q) -> None:
    async def run() -> tuple[dict, list]:
        from aiokafka import AIOKafkaProducer
        p = AIOKafkaProducer(bootstrap_servers=bs, enable_idempotence=True, acks="all", linger_ms=5,
                             compression_type="zstd", request_timeout_ms=10000, retry_backoff_ms=50)
        await p.start()
        futs = []
        errors: list[str] = []
        for i in range(n):
            v = f"aio-{i}"
            for _attempt in range(600):      # send() itself fails while the broker is down
                try:
                    futs.append((i % KILL_PARTS, v, await p.send(KILL_TOPIC, key=v.encode(), value=v.encode(),
                                                                 partition=i % KILL_PARTS)))
                    break
                except Exception:  # noqa: BLE001
                    await asyncio.sleep(0.1)
            else:
                errors.append(f"aio-{i} could not be sent")
            if i % 100 == 0:
                await asyncio.sleep(0.02)
        acked: dict[int, list] = {}
        for part, v, f in futs:
            try:
                acked.setdefault(part, []).append(((await f).offset, v))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        await p.stop()
        return acked, errors

    acked, errors = asyncio.run(run())
    q.put(("aio", 0, errors[:5], len(errors), acked))


def _member(bs: str, name: str, total: int | None, seconds: float, q) -> None:
    """A kafka-python group member committing after each poll: for `seconds`, or (total given) until
    the group's committed offsets add up to `total`."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(KILL_TOPIC, bootstrap_servers=bs, group_id=KILL_GROUP, enable_auto_commit=False,
                      auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=1000,
                      max_poll_records=300, request_timeout_ms=15000)
    end = time.monotonic() + seconds
    seen = 0
    errors: list[str] = []
    committed_total = -1
    owned = 0
    while time.monotonic() < end:
        try:
            batches = c.poll(timeout_ms=200)
            seen += sum(len(m) for m in batches.values())
            owned = max(owned, len(c.assignment()))
            if batches:
                c.commit()
            if total is not None and c.assignment() and len(c.assignment()) == KILL_PARTS:
                committed_total = sum(c.committed(TopicPartition(KILL_TOPIC, p)) or 0 for p in range(KILL_PARTS))
                if committed_total == total:
                    break
        except Exception as e:  # noqa: BLE001 (the broker is being killed: the member carries on)
            errors.append(repr(e))
            time.sleep(0.2)
    try:
        c.close(autocommit=False)
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e))
    q.put(("member-" + name, committed_total, errors[:3], len(errors), (seen, owned)))


def _end_offsets(port: int) -> list[int] | None:
    try:
        with RawClient(port, timeout=5) as c:
            body = req(2, 7, replica_id=-1, isolation_level=0, topics=[{"name": KILL_TOPIC, "partitions": [
                {"partition_index": p, "timestamp": -1} for p in range(KILL_PARTS)]}])
            parts = c.call(body).topics[0].partitions
            return None if any(int(p.error_code) for p in parts) else [int(p.offset) for p in parts]
    except (OSError, ConnectionError):
        return None


def _committed(bs: str) -> dict[int, int | None]:
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bs, group_id=KILL_GROUP, enable_auto_commit=False, request_timeout_ms=15000)
    try:
        return {p: c.committed(TopicPartition(KILL_TOPIC, p)) for p in range(KILL_PARTS)}
    finally:
        c.close(autocommit=False)


def _read_all(bs: str, end: list[int]) -> dict[int, list[tuple[int, str]]]:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bs, "group.id": "qa-load-verify", "enable.auto.commit": False})
    got: dict[int, list[tuple[int, str]]] = {p: [] for p in range(KILL_PARTS)}
    try:
        c.assign([TopicPartition(KILL_TOPIC, p, 0) for p in range(KILL_PARTS)])
        deadline = time.monotonic() + 60
        while sum(map(len, got.values())) < sum(end) and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                assert m.error() is None, m.error()
                got[m.partition()].append((m.offset(), m.value().decode()))
    finally:
        c.close()
    return got


def run_kill_load(tmp_path, n: int, kills: int) -> dict:
    data = str(tmp_path / "data")
    port = free_port()
    ov = {"offsets.topic.num.partitions": "2", "group.initial.rebalance.delay.ms": "0"}
    b = start_broker(data, port=port, overrides=ov)
    procs = []
    try:
        with RawClient(port) as c:
            r = c.call(req(19, 7, topics=[{"name": KILL_TOPIC, "num_partitions": KILL_PARTS, "replication_factor": 1,
                                           "assignments": [], "configs": [{"name": "segment.bytes", "value": "32768"}]}],
                           timeout=5000, validate_only=False))
            assert int(r.topics[0].error_code) == 0
        total = 3 * n
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        procs = [ctx.Process(target=f, args=(b.bootstrap, n, q), daemon=True) for f in (_ck_sender, _kp_sender, _aio_sender)]
        procs.append(ctx.Process(target=_member, args=(b.bootstrap, "a", total, 150, q), daemon=True))
        for p in procs:
            p.start()
        second = ctx.Process(target=_member, args=(b.bootstrap, "b", None, 6, q), daemon=True)
        done = 0
        deadline = time.monotonic() + 90
        while done < kills:
            assert time.monotonic() < deadline, f"only {done} of {kills} kills: the producers made no progress"
            leo = _end_offsets(port)
            if leo is not None and sum(leo) >= (done + 1) * total // (kills + 2):
                b.kill()
                done += 1
                b = start_broker(data, port=port, overrides=ov)
                if done == 1:
                    second.start()       # joins (a rebalance), then leaves (another) after 6 s
                    procs.append(second)
            else:
                time.sleep(0.05)
        results = {}
        deadline = time.monotonic() + 170
        while len(results) < len(procs):
            assert time.monotonic() < deadline, f"clients did not finish: {sorted(results)}"
            try:
                r = q.get(timeout=1)
                results[r[0]] = r
            except Exception:  # noqa: BLE001 (queue.Empty)
                assert all(p.is_alive() or p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
        for p in procs:
            p.join(30)
        end = _end_offsets(port)
        assert end is not None and sum(end) == total, (end, total)
        got = _read_all(b.bootstrap, end)
        for p in range(KILL_PARTS):
            assert [o for o, _ in got[p]] == list(range(end[p])), f"partition {p}: offsets not contiguous"
            values = [v for _, v in got[p]]
            assert len(set(values)) == len(values), f"partition {p}: duplicates"
        stored = {p: dict(got[p]) for p in range(KILL_PARTS)}
        for name in ("ck", "kp", "aio"):
            _n, left, errors, nerrors, acked = results[name]
            assert (left, nerrors) == (0, 0), (name, errors)
            assert sum(map(len, acked.values())) == n, name
            for p, lst in acked.items():
                lost = [(o, v) for o, v in lst if stored[p].get(o) != v]
                assert not lost, f"{name}: acknowledged records missing or moved in partition {p}: {lost[:5]}"
                assert [v for _, v in got[p] if v.startswith(name + "-")] == [v for _, v in lst], (name, p)
        _n, committed_total, errors, _ne, _seen = results["member-a"]
        assert committed_total == total, f"the group's committed offsets reached {committed_total} of {total}: {errors}"
        before = _committed(b.bootstrap)
        assert before == dict(enumerate(end)), before
        b.kill()
        b = start_broker(data, port=port, overrides=ov)
        assert _committed(b.bootstrap) == before
        return {"records": total, "kills": kills + 1, "member_b_seen": results["member-b"][4]}
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        b.stop()


def test_sigkill_under_mixed_client_idempotent_load_with_a_rebalancing_group(tmp_path) -> None:
    res = run_kill_load(tmp_path, n=2000, kills=2)
    print(f"\nSIGKILL under load: {res}")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_under_mixed_client_idempotent_load_long(tmp_path) -> None:
    res = run_kill_load(tmp_path, n=10000, kills=8)
    print(f"\nSIGKILL under load (long): {res}")


# -- topics deleted, recreated and grown under load ----------------------------------------------------
def test_topics_deleted_recreated_and_grown_while_produced_and_consumed(tmp_path) -> None:
    import threading as th
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
    b = start_broker(str(tmp_path / "data"), overrides={"offsets.topic.num.partitions": "1",
                                                         "group.initial.rebalance.delay.ms": "0",
                                                         "auto.create.topics.enable": "false"})
    stop = th.Event()
    acked_keep: list[tuple[int, int, bytes]] = []
    errors: dict[str, int] = {}
    consumed: dict[str, set] = {"keep": set(), "churn": set(), "grow": set()}
    failures: list[BaseException] = []
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for t in consumed:
            admin.create_topics([NewTopic(t, 3, 1)])[t].result(15)

        def produce() -> None:
            try:
                p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 2,
                              "message.timeout.ms": 10000, "topic.metadata.refresh.interval.ms": 500})

                def cb(err, msg) -> None:
                    if err:
                        errors[msg.topic()] = errors.get(msg.topic(), 0) + 1
                    elif msg.topic() == "keep":
                        acked_keep.append((msg.partition(), msg.offset(), msg.value()))
                i = 0
                while not stop.is_set():
                    for t in consumed:
                        try:
                            p.produce(t, key=b"%d" % i, value=b"%s-%d" % (t.encode(), i), on_delivery=cb)
                        except BufferError:
                            p.poll(0.05)
                    i += 1
                    if i % 20 == 0:
                        p.poll(0.002)
                assert p.flush(30) == 0
            except BaseException as e:  # noqa: BLE001
                failures.append(e)

        def consume() -> None:
            try:
                c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "churn-group",
                              "auto.offset.reset": "earliest", "topic.metadata.refresh.interval.ms": 500,
                              "allow.auto.create.topics": False})
                c.subscribe(list(consumed))
                while not stop.is_set():
                    m = c.poll(0.2)
                    if m is not None and not m.error():
                        consumed[m.topic()].add(m.partition())
                c.close()
            except BaseException as e:  # noqa: BLE001
                failures.append(e)

        threads = [th.Thread(target=produce, daemon=True), th.Thread(target=consume, daemon=True)]
        for t in threads:
            t.start()
        for r in range(4):
            time.sleep(1.0)
            admin.delete_topics(["churn"])["churn"].result(15)
            time.sleep(0.3)
            admin.create_topics([NewTopic("churn", 2 + r, 1)])["churn"].result(15)
            admin.create_partitions([NewPartitions("grow", 4 + r)])["grow"].result(15)
        # the producer (keyed, default partitioner) and the group reach all 6 partitions of "grow"
        deadline = time.monotonic() + 30
        while consumed["grow"] != set(range(6)) and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(60)
        assert not failures, failures
        assert consumed["grow"] == set(range(6)), consumed
        assert "keep" not in errors, errors
        bad = [line for line in b.log().splitlines() if " failed" in line or "Traceback" in line or "ERROR" in line]
        assert not bad, bad[:5]
        # every acknowledged record of the untouched topic is there once, at its offset
        stored: dict[int, dict[int, bytes]] = {p: {} for p in range(3)}
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "churn-verify", "enable.auto.commit": False})
        try:
            c.assign([TopicPartition("keep", p, 0) for p in range(3)])
            deadline = time.monotonic() + 60
            while sum(map(len, stored.values())) < len(acked_keep) and time.monotonic() < deadline:
                for m in c.consume(1000, 0.5):
                    assert m.error() is None, m.error()
                    stored[m.partition()][m.offset()] = m.value()
        finally:
            c.close()
        assert len(acked_keep) > 1000
        assert all(stored[p].get(o) == v for p, o, v in acked_keep)
        assert sorted(v for d in stored.values() for v in d.values()) == sorted(v for _, _, v in acked_keep)
        assert b.alive()
    finally:
        stop.set()
        b.stop()
