"""broker/zerocopy.py: a response's file regions leave by sendfile, in order with everything the
transport holds, over real TCP connections on 127.0.0.1 (uvloop and asyncio's own loop), and
through a real broker to a real client."""

from __future__ import annotations

import asyncio
import os

import pytest

from broker.zerocopy import direct_fd, write_parts
from logstore.file_slice import FdHandle, FileSlice

LOOPS = ["asyncio"] + (["uvloop"] if __import__("importlib").util.find_spec("uvloop") else [])


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _slice(path: str, data: bytes, pos: int, size: int) -> FileSlice:
    with open(path, "wb") as f:
        f.write(data)
    fd = os.open(path, os.O_RDONLY)
    return FileSlice(fd, pos, size, path, FdHandle(fd))


async def _pair(loop: asyncio.AbstractEventLoop):
    """(server-side transport, reader of what the client receives); the client reads only when
    asked, so the sender's socket buffer fills and sendfile comes up short."""
    accepted: asyncio.Future = loop.create_future()

    class Side(asyncio.Protocol):
        def connection_made(self, transport):  # noqa: ANN001
            accepted.set_result(transport)

    server = await loop.create_server(Side, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    transport = await accepted
    return server, transport, reader, writer


@pytest.mark.parametrize("kind", LOOPS)
@pytest.mark.parametrize("queued_first", [False, True])
def test_parts_arrive_in_order_with_sendfile_and_short_writes(tmp_path, kind, queued_first) -> None:
    payload = os.urandom(8 << 20)          # far more than a loopback socket buffer takes at once
    region = (1000, len(payload) - 3000)

    async def run() -> tuple[bytes, int]:
        server, transport, reader, writer = await _pair(asyncio.get_running_loop())
        fd = direct_fd(transport)
        assert fd is not None
        s = _slice(str(tmp_path / "seg.log"), payload, *region)
        small = _slice(str(tmp_path / "small.log"), b"0123456789", 2, 5)
        before = b""
        if queued_first:
            # an earlier response still in the transport: nothing may overtake it
            before = os.urandom(4 << 20)
            transport.write(before)
            assert transport.get_write_buffer_size() > 0
        parts = [b"HEAD", bytearray(b"-prefix-"), s, b"", b"mid", small, memoryview(b"--tail")]
        by_sendfile = write_parts(transport, fd, parts)
        want = before + b"HEAD-prefix-" + payload[region[0]:region[0] + region[1]] + b"mid23456--tail"
        got = await asyncio.wait_for(reader.readexactly(len(want)), 60)
        transport.close()
        writer.close()
        server.close()
        await server.wait_closed()
        assert got == want
        return got, by_sendfile

    loop = _new_loop(kind)
    try:
        _got, by_sendfile = loop.run_until_complete(run())
    finally:
        loop.close()
    if queued_first:
        assert by_sendfile == 0          # the transport held data: everything went after it
    else:
        assert 0 < by_sendfile <= region[1] + 5


def test_a_broken_socket_raises_for_the_caller_to_close(tmp_path) -> None:
    async def run() -> None:
        server, transport, reader, writer = await _pair(asyncio.get_running_loop())
        fd = direct_fd(transport)
        writer.transport.abort()          # the peer resets the connection
        await asyncio.sleep(0.05)
        s = _slice(str(tmp_path / "seg.log"), os.urandom(1 << 20), 0, 1 << 20)
        with pytest.raises(OSError):
            for _ in range(50):           # the reset may take a write or two to be seen
                write_parts(transport, fd, [b"x" * 10, s])
                await asyncio.sleep(0.01)
        transport.abort()
        server.close()
        await server.wait_closed()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()


def test_broker_sends_large_fetches_by_sendfile(tmp_path) -> None:
    """A consumer reading 20 MB through the broker gets every byte, and the broker sent most of
    them by sendfile (small answers, below SENDFILE_MIN_BYTES, are read into memory instead)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    from broker.server import BrokerThread
    with BrokerThread({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path / "d"),
                       "group.initial.rebalance.delay.ms": 0}) as bt:
        bs = f"127.0.0.1:{bt.port}"
        bt.broker.store.create_topic("big", 1)
        n = 20_000
        p = Producer({"bootstrap.servers": bs, "linger.ms": 50, "batch.size": 1 << 20})
        for i in range(n):
            p.produce("big", i.to_bytes(4, "big") + bytes(996), None, 0)
        assert p.flush(30) == 0
        c = Consumer({"bootstrap.servers": bs, "group.id": "g", "enable.auto.commit": False,
                      "fetch.max.bytes": 8 << 20, "max.partition.fetch.bytes": 8 << 20})
        c.assign([TopicPartition("big", 0, OFFSET_BEGINNING)])
        got = 0
        try:
            while got < n:
                msgs = c.consume(1000, 10)
                assert msgs, f"no records after {got}"
                for m in msgs:
                    assert m.error() is None
                    assert int.from_bytes(m.value()[:4], "big") == got and m.offset() == got
                    got += 1
        finally:
            c.close()
        assert bt.broker.sendfile_bytes > 10 << 20
