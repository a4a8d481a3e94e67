"""Unmodified Kafka clients against a real broker on 127.0.0.1 (port 0, log dir in tmp): the same
scenario with confluent-kafka (librdkafka), kafka-python, aiokafka and kcat.

Scenario: create a topic with the client's admin API (kcat has none: auto-creation), produce
keyed and unkeyed records with headers and explicit timestamps with every compression type through
an idempotent producer, consume from the beginning, from an offset and from a timestamp
(offsets_for_times) checking every key, value, header and timestamp; delete and recreate the
topic; records appended through the embedded API are consumed by the client, and records
produced by the client are read back by the embedded API. Consumers use manual assignment.
Also: a long-poll fetch of librdkafka is woken by new data; an idempotent producer whose responses
are lost (a proxy drops connections) retries, and the log holds every record once, in order.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time

import pytest

from broker.server import BrokerThread

from tests.broker_helpers import module_broker
from tests.broker_helpers import unique_topic as _topic

COMPRESSIONS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 12


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with module_broker(tmp_path_factory, "compat", {"group.initial.rebalance.delay.ms": "0"}) as b:
        yield b


def _records(base_ts: int) -> list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]], int]]:
    """(compression, key, value, headers, timestamp) in produce order: offsets are list indexes."""
    out = []
    i = 0
    for codec in COMPRESSIONS:
        for j in range(PER_CODEC):
            key = f"key-{i}".encode() if j % 2 == 0 else None
            headers = [("trace", f"t{i}".encode()), ("codec", codec.encode())] if j % 3 else []
            value = (f"value-{codec}-{i}-".encode() * (1 + j * 7))
            out.append((codec, key, value, headers, base_ts + i * 10))
            i += 1
    return out


def _check(got: list[tuple[int, bytes | None, bytes, list, int]], expected: list, start: int = 0) -> None:
    assert len(got) == len(expected) - start, (len(got), len(expected) - start)
    for (off, key, value, headers, ts), (_codec, ekey, evalue, eheaders, ets) in zip(got, expected[start:]):
        assert (key, value, [(k, bytes(v)) for k, v in headers], ts) == (ekey, evalue, eheaders, ets), off
    assert [g[0] for g in got] == list(range(start, len(expected)))


def _embedded_check(broker, topic: str, expected: list) -> None:
    recs = broker.store.partition(topic, 0).read(0, 1 << 24)
    assert [(r.key, r.value, r.headers, r.timestamp) for r in recs] == [
        (k, v, tuple(h), ts) for _c, k, v, h, ts in expected]


# -- confluent-kafka ---------------------------------------------------------------------------------
def test_confluent_kafka(broker) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    bs = broker.bootstrap
    t = _topic("ck")
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)])[t].result(30)
    expected = _records(int(time.time() * 1000) - 60_000)
    for codec in COMPRESSIONS:
        p = Producer({"bootstrap.servers": bs, "compression.type": codec, "enable.idempotence": True,
                      "linger.ms": 5, "acks": "all"})
        for c, k, v, h, ts in expected:
            if c == codec:
                p.produce(t, value=v, key=k, headers=h, timestamp=ts, partition=0)
        assert p.flush(30) == 0

    def consume(start: int, n: int) -> list:
        c = Consumer({"bootstrap.servers": bs, "group.id": "unused", "enable.auto.commit": False,
                      "fetch.wait.max.ms": 100})
        c.assign([TopicPartition(t, 0, start)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got.append((m.offset(), m.key(), m.value(), m.headers() or [], m.timestamp()[1]))
        c.close()
        return got

    _check(consume(OFFSET_BEGINNING, len(expected)), expected)
    _check(consume(37, len(expected) - 37), expected, 37)
    c = Consumer({"bootstrap.servers": bs, "group.id": "unused", "enable.auto.commit": False})
    found = c.offsets_for_times([TopicPartition(t, 0, expected[23][4])], timeout=30)
    assert found[0].offset == 23
    found = c.offsets_for_times([TopicPartition(t, 0, expected[23][4] - 5)], timeout=30)
    assert found[0].offset == 23
    lo, hi = c.get_watermark_offsets(TopicPartition(t, 0), timeout=30)
    assert (lo, hi) == (0, len(expected))
    c.close()
    _embedded_check(broker, t, expected)

    # the embedded API appends; the client consumes
    broker.store.partition(t, 0).append([(b"emb", b"edded", [("x", b"y")], 12345)])
    got = consume(len(expected), 1)
    assert got == [(len(expected), b"emb", b"edded", [("x", b"y")], 12345)]

    # delete and recreate: offsets start again at 0
    admin.delete_topics([t])[t].result(30)
    deadline = time.monotonic() + 30
    while True:
        try:
            admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)])[t].result(30)
            break
        except Exception:  # noqa: BLE001 (deletion may still be visible for a moment)
            assert time.monotonic() < deadline
            time.sleep(0.2)
    p = Producer({"bootstrap.servers": bs})
    p.produce(t, value=b"reborn", partition=0)
    assert p.flush(30) == 0
    got = consume(OFFSET_BEGINNING, 1)
    assert [(g[0], g[2]) for g in got] == [(0, b"reborn")]


def test_confluent_long_poll_is_woken_by_new_data(broker) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    bs = broker.bootstrap
    t = _topic("lp")
    broker.store.create_topic(t, 1)
    c = Consumer({"bootstrap.servers": bs, "group.id": "unused", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 5000, "fetch.min.bytes": 1})
    c.assign([TopicPartition(t, 0, 0)])
    assert c.poll(1.0) is None          # nothing yet; a fetch is parked on the broker
    sent = {}

    def produce_later() -> None:
        time.sleep(0.5)
        p = Producer({"bootstrap.servers": bs, "linger.ms": 0})
        sent["t"] = time.monotonic()
        p.produce(t, value=b"now", partition=0)
        p.flush(10)

    th = threading.Thread(target=produce_later)
    th.start()
    m = None
    deadline = time.monotonic() + 20
    while m is None and time.monotonic() < deadline:
        m = c.poll(0.1)
    got_at = time.monotonic()
    th.join()
    c.close()
    assert m is not None and m.value() == b"now"
    assert got_at - sent["t"] < 2.0      # far less than fetch.wait.max.ms: the append woke the fetch


# -- kafka-python --------------------------------------------------------------------------------------
def test_kafka_python(broker) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    bs = broker.bootstrap
    t = _topic("kp")
    admin = KafkaAdminClient(bootstrap_servers=bs)
    admin.create_topics([NewTopic(t, 1, 1)])
    expected = _records(int(time.time() * 1000) - 60_000)
    for codec in COMPRESSIONS:
        p = KafkaProducer(bootstrap_servers=bs, compression_type=None if codec == "none" else codec,
                          enable_idempotence=True, acks="all", linger_ms=5)
        for c, k, v, h, ts in expected:
            if c == codec:
                p.send(t, value=v, key=k, headers=h, timestamp_ms=ts, partition=0)
        p.flush(30)
        p.close()
    tp = TopicPartition(t, 0)

    def consume(start: int | None, n: int) -> list:
        c = KafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100)
        c.assign([tp])
        if start is None:
            c.seek_to_beginning(tp)
        else:
            c.seek(tp, start)
        got = []
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            for msgs in c.poll(timeout_ms=500).values():
                got += [(m.offset, m.key, m.value, list(m.headers), m.timestamp) for m in msgs]
        c.close()
        return got

    _check(consume(None, len(expected)), expected)
    _check(consume(41, len(expected) - 41), expected, 41)
    c = KafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False)
    assert c.offsets_for_times({tp: expected[17][4]})[tp].offset == 17
    assert c.beginning_offsets([tp])[tp] == 0 and c.end_offsets([tp])[tp] == len(expected)
    c.close()
    _embedded_check(broker, t, expected)

    broker.store.partition(t, 0).append([(None, b"from-embedded", [], 99)])
    assert consume(len(expected), 1) == [(len(expected), None, b"from-embedded", [], 99)]

    admin.delete_topics([t])
    admin.create_topics([NewTopic(t, 1, 1)])
    p = KafkaProducer(bootstrap_servers=bs)
    p.send(t, value=b"again", partition=0)
    p.flush(30)
    p.close()
    assert [(g[0], g[2]) for g in consume(None, 1)] == [(0, b"again")]
    admin.close()


# -- aiokafka ----------------------------------------------------------------------------------------------
def test_aiokafka(broker) -> None:
    asyncio.run(_aiokafka(broker))


async def _aiokafka(broker) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    bs = broker.bootstrap
    t = _topic("aio")
    admin = AIOKafkaAdminClient(bootstrap_servers=bs)
    await admin.start()
    await admin.create_topics([NewTopic(t, 1, 1)])
    expected = _records(int(time.time() * 1000) - 60_000)
    for codec in COMPRESSIONS:
        p = AIOKafkaProducer(bootstrap_servers=bs, compression_type=None if codec == "none" else codec,
                             enable_idempotence=True, linger_ms=5)
        await p.start()
        try:
            futs = [await p.send(t, value=v, key=k, headers=h, timestamp_ms=ts, partition=0)
                    for c, k, v, h, ts in expected if c == codec]
            await asyncio.gather(*futs)
        finally:
            await p.stop()
    tp = TopicPartition(t, 0)

    async def consume(start: int | None, n: int) -> list:
        c = AIOKafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False, fetch_max_wait_ms=100)
        await c.start()
        try:
            c.assign([tp])
            if start is None:
                await c.seek_to_beginning(tp)
            else:
                c.seek(tp, start)
            got = []
            deadline = time.monotonic() + 30
            while len(got) < n and time.monotonic() < deadline:
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    got += [(m.offset, m.key, m.value, list(m.headers), m.timestamp) for m in msgs]
            return got
        finally:
            await c.stop()

    _check(await consume(None, len(expected)), expected)
    _check(await consume(29, len(expected) - 29), expected, 29)
    c = AIOKafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False)
    await c.start()
    try:
        assert (await c.offsets_for_times({tp: expected[45][4]}))[tp].offset == 45
        assert (await c.end_offsets([tp]))[tp] == len(expected)
    finally:
        await c.stop()
    _embedded_check(broker, t, expected)

    await admin.delete_topics([t])
    await admin.create_topics([NewTopic(t, 1, 1)])
    p = AIOKafkaProducer(bootstrap_servers=bs)
    await p.start()
    await p.send_and_wait(t, b"fresh", partition=0)
    await p.stop()
    assert [(g[0], g[2]) for g in await consume(None, 1)] == [(0, b"fresh")]
    await admin.close()


# -- kcat ----------------------------------------------------------------------------------------------------
def test_kcat(broker) -> None:
    assert shutil.which("kcat"), "kcat is not installed (`make test` installs it with apt-get)"
    bs = broker.bootstrap
    t = _topic("kc")
    expected = []
    t0 = int(time.time() * 1000)
    for codec in COMPRESSIONS:
        lines = []
        for j in range(6):
            i = len(expected)
            key = f"key-{i}" if j % 2 == 0 else ""
            value = f"value-{codec}-{i}"
            lines.append(f"{key}\t{value}")
            expected.append((key.encode(), value.encode(), codec))   # kcat -K sends "" keys, not null
        # -K: key delimiter; -H: a header on every message; auto-created topic (kcat has no admin)
        p = subprocess.run(["kcat", "-b", bs, "-P", "-t", t, "-p", "0", "-z", codec, "-K", "\t",
                            "-H", f"codec={codec}", "-X", "enable.idempotence=true"],
                           input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
    t1 = int(time.time() * 1000)

    def consume(*offset_args: str) -> list[list[str]]:
        p = subprocess.run(["kcat", "-b", bs, "-C", "-t", t, "-p", "0", "-e", *offset_args,
                            "-f", "%o\x1f%k\x1f%s\x1f%h\x1f%T\x1e"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return [rec.split("\x1f") for rec in p.stdout.split("\x1e") if rec.strip("\n")]

    got = consume("-o", "beginning")
    assert len(got) == len(expected)
    for i, (off, key, value, headers, ts) in enumerate(got):
        ekey, evalue, codec = expected[i]
        assert int(off) == i and value == evalue.decode() and key == ekey.decode()
        assert headers == f"codec={codec}"
        assert t0 - 1000 <= int(ts) <= t1 + 1000
    got = consume("-o", "17")
    assert [int(g[0]) for g in got] == list(range(17, len(expected)))
    all_ts = [int(g[4]) for g in consume("-o", "beginning")]
    target = all_ts[11]
    got = consume("-o", f"s@{target}")      # offsets_for_times: first offset with timestamp >= target
    assert int(got[0][0]) == min(i for i, ts in enumerate(all_ts) if ts >= target)
    recs = broker.store.partition(t, 0).read(0)
    assert [(r.key, r.value) for r in recs] == [(k, v) for k, v, _c in expected]
    assert all(r.headers == (("codec", c.encode()),) for r, (_k, _v, c) in zip(recs, expected))


# -- idempotent producer with retries --------------------------------------------------------------------
class _DroppingProxy:
    """A TCP proxy that forwards requests and drops the connection instead of forwarding chosen
    responses (by global response count), so the client must retry requests the broker has
    already executed."""

    def __init__(self, drop: set[int]):
        import socket
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.target = None
        self.drop = drop
        self.count = 0
        self.dropped = 0
        self.lock = threading.Lock()
        self.stopped = False
        self.threads: list[threading.Thread] = []

    def start(self, target_port: int) -> None:
        self.target = target_port
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self) -> None:
        import socket
        while not self.stopped:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.target))
            for fn in (self._up, self._down):
                t = threading.Thread(target=fn, args=(c, b), daemon=True)
                t.start()
                self.threads.append(t)

    @staticmethod
    def _close(*socks) -> None:
        import socket
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _up(self, c, b) -> None:
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        self._close(c, b)

    def _down(self, c, b) -> None:
        buf = b""
        try:
            while True:
                data = b.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
                    n = 4 + int.from_bytes(buf[:4], "big")
                    frame, buf = buf[:n], buf[n:]
                    with self.lock:
                        self.count += 1
                        drop = self.count in self.drop
                    if drop:
                        self.dropped += 1
                        raise OSError("dropped")
                    c.sendall(frame)
        except OSError:
            pass
        self._close(c, b)

    def stop(self) -> None:
        self.stopped = True
        self._close(self.listener)


def test_idempotent_producer_retries_leave_no_duplicates(tmp_path) -> None:
    from confluent_kafka import Producer
    proxy = _DroppingProxy(drop={8, 14, 23, 31})
    cfg = {"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path / "data"),
           "advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy.port}", "offsets.topic.num.partitions": "1"}
    with BrokerThread(cfg) as b:
        proxy.start(b.port)
        try:
            b.store.create_topic("idem", 1)
            p = Producer({"bootstrap.servers": f"127.0.0.1:{proxy.port}", "enable.idempotence": True,
                          "linger.ms": 2, "batch.num.messages": 40, "retry.backoff.ms": 50,
                          "max.in.flight.requests.per.connection": 5})
            n = 3000
            errors = []
            for i in range(n):
                p.produce("idem", value=b"%d" % i, partition=0,
                          on_delivery=lambda err, msg: errors.append(err) if err else None)
                if i % 100 == 0:
                    p.poll(0)
                    time.sleep(0.005)
            assert p.flush(60) == 0
            assert not errors, errors[:3]
            assert proxy.dropped >= 2          # retries really happened
            recs = b.store.partition("idem", 0).read(0, 1 << 24)
            assert [r.value for r in recs] == [b"%d" % i for i in range(n)]    # once each, in order
        finally:
            proxy.stop()
