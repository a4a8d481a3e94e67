"""The asyncio server over real sockets on 127.0.0.1: framing, ApiVersions negotiation, responses
in request order under pipelining, request size limit, malformed requests, idle connections,
clean shutdown. `RawClient` (also used by tests/test_broker_*.py) speaks the protocol through
kio classes with blocking sockets."""

from __future__ import annotations

import datetime
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from broker.protocol import RequestHeader, decode_response, encode_request, request_class
from broker.server import Broker, BrokerThread

TD0 = datetime.timedelta(0)


class RawClient:
    """A blocking Kafka protocol client for tests: `call(obj)` sends a kio request, returns the body."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.corr = 0

    def send(self, body: Any, client_id: str | None = "raw") -> int:
        self.corr += 1
        cls = type(body)
        self.sock.sendall(encode_request(RequestHeader(cls.__api_key__, cls.__version__, self.corr, client_id), body))
        return self.corr

    def recv_frame(self) -> bytes:
        head = self._exact(4)
        return self._exact(int.from_bytes(head, "big"))

    def recv(self, api_key: int, version: int) -> tuple[int, Any]:
        return decode_response(api_key, version, self.recv_frame())

    def call(self, body: Any) -> Any:
        corr = self.send(body)
        got, resp = self.recv(type(body).__api_key__, type(body).__version__)
        assert got == corr
        return resp

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by the broker")
            buf += chunk
        return bytes(buf)

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def req(api_key: int, version: int, **kw: Any) -> Any:
    """A kio request object of (api_key, version); nested entities are given as dicts or lists of dicts."""
    from broker.handlers._util import make
    cls = request_class(api_key, version)
    return _build(cls, kw, make)


def _build(cls: type, kw: dict, make: Any) -> Any:
    import typing
    from dataclasses import fields
    hints = typing.get_type_hints(cls)
    args = {}
    for f in fields(cls):
        if f.name not in kw:
            continue
        v = kw[f.name]
        t = hints[f.name]
        inner = _entity_type(t)
        if inner is not None and isinstance(v, (list, tuple)):
            v = tuple(_build(inner, x, make) if isinstance(x, dict) else x for x in v)
        elif inner is not None and isinstance(v, dict):
            v = _build(inner, v, make)
        elif isinstance(v, list):
            v = tuple(v)
        elif f.name in ("timeout", "max_wait", "transaction_timeout", "timeout_ms") and isinstance(v, int):
            v = datetime.timedelta(milliseconds=v)
        args[f.name] = v
    return make(cls, **args)


def _entity_type(t: Any) -> type | None:
    import typing
    from dataclasses import is_dataclass
    for a in (typing.get_args(t) or (t,)):
        if is_dataclass(a):
            return a
        for b in typing.get_args(a):
            if is_dataclass(b):
                return b
    return None


@pytest.fixture
def broker(tmp_path):
    with BrokerThread({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path / "data"),
                       "offsets.topic.num.partitions": "1"}) as b:
        yield b


# ----------------------------------------------------------------------------------------------
def test_api_versions_every_version(broker) -> None:
    with RawClient(broker.port) as c:
        for v in range(0, 5):
            kw = {"client_software_name": "t", "client_software_version": "1"} if v >= 3 else {}
            r = c.call(req(18, v, **kw))
            assert int(r.error_code) == 0
            keys = {k.api_key: (k.min_version, k.max_version) for k in r.api_keys}
            assert keys[0] == (0, 11) and keys[1] == (4, 16) and keys[3] == (0, 12) and keys[18] == (0, 4)
            assert 11 in keys  # the group APIs are registered by broker.handlers.groups


def test_unsupported_api_versions_version_gets_v0_error_and_ranges(broker) -> None:
    with RawClient(broker.port) as c:
        # ApiVersions v99: header v2 (flexible) with a body we cannot know
        c.sock.sendall(struct.pack(">ihhih", 14, 18, 99, 42, -1) + b"\x00\x02x\x00")
        corr, r = decode_response(18, 0, c.recv_frame())
        assert corr == 42 and int(r.error_code) == 35
        assert any(k.api_key == 1 and k.max_version == 16 for k in r.api_keys)
        # the connection stays usable
        assert int(c.call(req(18, 0)).error_code) == 0


def test_pipelined_responses_come_back_in_request_order(broker) -> None:
    with RawClient(broker.port) as c:
        c.call(req(19, 7, topics=[{"name": "p", "num_partitions": 1, "replication_factor": 1, "assignments": [],
                                   "configs": []}], timeout=5000))
        # a long-poll fetch first (finishes last), then quick requests: answers keep request order
        t0 = time.monotonic()
        corrs = [c.send(req(1, 12, max_wait=600, min_bytes=1, max_bytes=1 << 20, isolation_level=0, session_id=0,
                            session_epoch=-1, topics=[{"topic": "p", "partitions": [
                                {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}]}],
                            forgotten_topics_data=[], rack_id=""))]
        for _ in range(20):
            corrs.append(c.send(req(18, 2)))
            corrs.append(c.send(req(3, 12, topics=None, allow_auto_topic_creation=False,
                                    include_topic_authorized_operations=False)))
        got = []
        for i, corr in enumerate(corrs):
            key, v = (1, 12) if i == 0 else ((18, 2) if i % 2 else (3, 12))
            gc, _ = c.recv(key, v)
            got.append(gc)
        assert got == corrs
        assert time.monotonic() - t0 >= 0.5


def test_request_over_socket_request_max_bytes_closes_only_that_connection(tmp_path) -> None:
    with BrokerThread({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path / "d"),
                       "socket.request.max.bytes": "1000"}) as b:
        with RawClient(b.port) as bad, RawClient(b.port) as good:
            bad.sock.sendall(struct.pack(">i", 5000) + b"\x00" * 100)
            assert bad.closed_by_peer()
            assert int(good.call(req(18, 0)).error_code) == 0


@pytest.mark.parametrize("garbage", [
    b"\x00\x00\x00\x02\x00\x03",                                   # shorter than a header
    struct.pack(">ihhih", 8, 3, 12, 1, -1),                        # Metadata v12 without a body
    struct.pack(">ihhih", 10, 999, 0, 1, -1) + b"\x00\x00",        # unknown API key
    struct.pack(">ihhih", 10, 0, 1, 1, -1) + b"\x00\x00",          # Produce v1: advertised, not served
    b"\xff\xff\xff\xff",                                           # negative size
])
def test_malformed_request_closes_that_connection_only(broker, garbage: bytes) -> None:
    with RawClient(broker.port) as bad, RawClient(broker.port) as good:
        bad.sock.sendall(garbage)
        assert bad.closed_by_peer()
        assert int(good.call(req(18, 0)).error_code) == 0


def test_idle_connections_are_closed(tmp_path) -> None:
    with BrokerThread({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path / "d"),
                       "connections.max.idle.ms": "300"}) as b:
        with RawClient(b.port) as c:
            assert int(c.call(req(18, 0)).error_code) == 0
            t0 = time.monotonic()
            assert c.closed_by_peer(timeout=10)
            assert 0.2 <= time.monotonic() - t0 < 5


def test_in_process_broker_reports_real_port(tmp_path) -> None:
    import asyncio
    asyncio.run(_in_process(tmp_path))
    assert os.path.exists(tmp_path / "d" / ".kafka_cleanshutdown")


async def _in_process(tmp_path) -> None:
    import asyncio
    async with Broker({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path / "d")}) as b:
        assert b.port > 0 and b.bootstrap == f"127.0.0.1:{b.port}"
        reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
        writer.write(encode_request(RequestHeader(18, 0, 1, "x"), req(18, 0)))
        size = int.from_bytes(await reader.readexactly(4), "big")
        corr, r = decode_response(18, 0, await reader.readexactly(size))
        assert corr == 1 and int(r.error_code) == 0
        writer.close()


def test_serve_subprocess_sigterm_is_a_clean_shutdown(tmp_path) -> None:
    props = tmp_path / "server.properties"
    props.write_text("# test\nlisteners=PLAINTEXT://127.0.0.1:0\nnum.io.threads=8\nprocess.roles=broker,controller\n"
                     f"log.dirs={tmp_path / 'data'}\noffsets.topic.num.partitions=1\n")
    proc = subprocess.Popen([sys.executable, "-m", "broker", "serve", str(props), "--override", "num.partitions=2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = None
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("listening on 127.0.0.1:"):
                port = int(line.rsplit(":", 1)[1])
                break
        assert port, "".join(lines)
        with RawClient(port) as c:
            r = c.call(req(3, 12, topics=[{"name": "auto", "topic_id": None}], allow_auto_topic_creation=True,
                           include_topic_authorized_operations=False))
            assert len(r.topics[0].partitions) == 2
        proc.terminate()
        assert proc.wait(30) == 0
        assert os.path.exists(tmp_path / "data" / ".kafka_cleanshutdown")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_serve_rejects_unknown_config_key(tmp_path) -> None:
    p = subprocess.run([sys.executable, "-m", "broker", "serve", "--override", "zookeeper.connect=x",
                        "--override", f"log.dirs={tmp_path}"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "zookeeper.connect" in p.stderr and "Traceback" not in p.stderr


def test_many_connections_in_parallel(broker) -> None:
    errors = []

    def worker() -> None:
        try:
            with RawClient(broker.port) as c:
                for _ in range(20):
                    assert int(c.call(req(18, 3, client_software_name="t", client_software_version="1")).error_code) == 0
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
