"""Load: 200 concurrent connections producing and fetching for a bounded time.

Each connection pipelines requests (up to 4 in flight), alternating acks=1 produces and fetches
on an 8-partition topic. Checked: every request gets exactly one answer, on its connection, in
the order sent (correlation ids), none with an error; produce offsets on a partition never
repeat; the broker's RSS (psutil) stays bounded — below a ceiling and not still climbing in the
last third of the run.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
import sys
import time

import psutil
import pytest

from broker.pytest_plugin import start_broker
from logstore import records as R

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz"))
import wire  # noqa: E402

TOPIC = "load"
PARTITIONS = 8
RSS_CEILING = 400 << 20


async def client(port: int, ident: int, deadline: float, stats: dict, offsets: dict) -> None:
    rnd = random.Random(ident)
    for attempt in range(50):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.1 * (attempt + 1))
    else:
        raise AssertionError(f"connection {ident} could not connect")
    pending: asyncio.Queue = asyncio.Queue(maxsize=4)
    cid = ident * 1_000_000

    async def send() -> None:
        nonlocal cid
        while time.monotonic() < deadline:
            cid += 1
            p = rnd.randrange(PARTITIONS)
            if cid % 2:
                batch = R.build_batch([(b"c%d" % ident, rnd.randbytes(rnd.randint(10, 400)))
                                       for _ in range(rnd.randint(1, 5))])
                frame, kind = wire.produce(cid, TOPIC, p, batch, acks=1), "produce"
            else:
                frame, kind = wire.fetch(cid, TOPIC, p, max(0, offsets.get(p, 0) - rnd.randint(0, 50)),
                                         max_bytes=rnd.choice([1024, 16384])), "fetch"
            await pending.put((cid, kind, p))
            writer.write(frame)
            await writer.drain()
        await pending.put(None)

    async def receive() -> None:
        while True:
            item = await pending.get()
            if item is None:
                return
            want, kind, p = item
            size = struct.unpack(">i", await reader.readexactly(4))[0]
            data = await reader.readexactly(size)
            got = struct.unpack_from(">i", data)[0]
            assert got == want, f"connection {ident}: answer {got} arrived where {want} was due"
            body = data[4:]
            if kind == "produce":
                [(_t, part, err, base)] = wire.parse_produce(body)
                assert err == 0, f"produce answered {err}"
                assert (part, base) not in stats["bases"], f"offset {base} of partition {part} given twice"
                stats["bases"].add((part, base))
                offsets[part] = max(offsets.get(part, 0), base)
            else:
                [(_t, _p, err, _hw, _data)] = wire.parse_fetch(body)
                assert err in (0, 1), f"fetch answered {err}"
            stats[kind] += 1

    try:
        await asyncio.gather(send(), receive())
    finally:
        writer.close()


async def run_load(port: int, connections: int, seconds: float, pid: int) -> dict:
    stats: dict = {"produce": 0, "fetch": 0, "bases": set()}
    offsets: dict = {}
    proc = psutil.Process(pid)
    rss: list[int] = []
    deadline = time.monotonic() + seconds

    async def sample() -> None:
        while time.monotonic() < deadline + 1:
            rss.append(proc.memory_info().rss)
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(client(port, i, deadline, stats, offsets) for i in range(connections)))
    await sampler
    return {"produce": stats["produce"], "fetch": stats["fetch"], "rss": rss}


def load_test(tmp_path, connections: int, seconds: float) -> dict:
    b = start_broker(str(tmp_path / "data"))
    try:
        import wire as w
        with w.Conn(b.port) as c:
            _cid, body = c.call(w.create_topics(1, TOPIC, PARTITIONS, {"segment.bytes": str(8 << 20)}))
            assert w.parse_create_topics(body)[0][1] == 0
        res = asyncio.run(run_load(b.port, connections, seconds, b.pid))
        assert b.alive(), b.log()[-3000:]
    finally:
        b.stop()
    rss = res["rss"]
    third = max(1, len(rss) // 3)
    res["rss_max_mb"] = round(max(rss) / 2**20, 1)
    res["rss_mid_mb"] = round(max(rss[third:2 * third] or rss) / 2**20, 1)
    res["rss_last_mb"] = round(max(rss[-third:]) / 2**20, 1)
    assert max(rss) < RSS_CEILING, f"broker RSS reached {res['rss_max_mb']} MB"
    assert res["rss_last_mb"] <= res["rss_mid_mb"] * 1.25 + 10, (
        f"broker RSS still climbing: {res['rss_mid_mb']} MB mid-run, {res['rss_last_mb']} MB at the end")
    return res


def test_200_connections_produce_and_fetch(tmp_path):
    res = load_test(tmp_path, 200, float(os.environ.get("LOAD_SECONDS", "20")))
    assert res["produce"] > 1000 and res["fetch"] > 1000, res
    print(f"\nload: 200 connections, {res['produce']} produces + {res['fetch']} fetches answered in order, "
          f"none lost; broker RSS max {res['rss_max_mb']} MB (mid {res['rss_mid_mb']}, end {res['rss_last_mb']})")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_200_connections_long(tmp_path):
    res = load_test(tmp_path, 200, 180)
    print(f"\nload (long): {res['produce']} produces, {res['fetch']} fetches, RSS max {res['rss_max_mb']} MB")
