"""Hand-built Kafka frames for the reliability tests: no client library between us and the broker.

Only non-flexible versions (plain i16-length strings, i32-count arrays), so a frame is a few
`struct.pack` calls and a test can cut, pad or lie in any field. Layouts (big-endian):

    frame            size i32 | header | body
    request header   api_key i16, api_version i16, correlation_id i32, client_id i16-string
    response frame   size i32 | correlation_id i32 | body

    ApiVersions v0   (empty)
    Metadata v1      topics [string] (-1: all)
    CreateTopics v2  topics [name, partitions i32, replication i16, assignments [], configs [k, v]],
                     timeout_ms i32, validate_only i8
    Produce v3       transactional_id i16-string(-1), acks i16, timeout_ms i32,
                     topics [name, partitions [index i32, records i32-bytes]]
    Fetch v4         replica_id i32, max_wait_ms i32, min_bytes i32, max_bytes i32, isolation i8,
                     topics [name, partitions [index i32, offset i64, max_bytes i32]]
"""

from __future__ import annotations

import socket
import struct
from typing import Iterable

API_PRODUCE, API_FETCH, API_METADATA, API_VERSIONS, API_CREATE_TOPICS = 0, 1, 3, 18, 19


def s16(s: str | bytes | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">h", len(b)) + b


def arr(items: Iterable[bytes]) -> bytes:
    items = list(items)
    return struct.pack(">i", len(items)) + b"".join(items)


def header(api_key: int, version: int, cid: int, client_id: str = "rel") -> bytes:
    return struct.pack(">hhi", api_key, version, cid) + s16(client_id)


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def api_versions(cid: int) -> bytes:
    return frame(header(API_VERSIONS, 0, cid))


def metadata(cid: int, topics: list[str] | None) -> bytes:
    body = struct.pack(">i", -1) if topics is None else arr(s16(t) for t in topics)
    return frame(header(API_METADATA, 1, cid) + body)


def create_topics(cid: int, name: str | bytes, partitions: int = 1, configs: dict | None = None) -> bytes:
    cfg = arr(s16(k) + s16(v) for k, v in (configs or {}).items())
    topic = s16(name) + struct.pack(">ih", partitions, 1) + arr([]) + cfg
    return frame(header(API_CREATE_TOPICS, 2, cid) + arr([topic]) + struct.pack(">ib", 10_000, 0))


def produce(cid: int, topic: str | bytes, partition: int, records: bytes, acks: int = -1) -> bytes:
    part = struct.pack(">ii", partition, len(records)) + records
    body = s16(None) + struct.pack(">hi", acks, 30_000) + arr([s16(topic) + arr([part])])
    return frame(header(API_PRODUCE, 3, cid) + body)


def fetch(cid: int, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20, max_wait_ms: int = 0) -> bytes:
    part = struct.pack(">iqi", partition, offset, max_bytes)
    body = struct.pack(">iiiib", -1, max_wait_ms, 1, max_bytes, 0) + arr([s16(topic) + arr([part])])
    return frame(header(API_FETCH, 4, cid) + body)


# -- responses ------------------------------------------------------------------------------

class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, fmt: str):
        v = struct.unpack_from(">" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(">" + fmt)
        return v[0] if len(v) == 1 else v

    def string(self) -> str | None:
        n = self.take("h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def bytes_(self) -> bytes | None:
        n = self.take("i")
        if n < 0:
            return None
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b


def parse_produce(body: bytes) -> list[tuple[str, int, int, int]]:
    """[(topic, partition, error_code, base_offset)]"""
    r = Reader(body)
    out = []
    for _ in range(r.take("i")):
        t = r.string()
        for _ in range(r.take("i")):
            p, err, base, _ts = r.take("ihqq")
            out.append((t, p, err, base))
    return out


def parse_fetch(body: bytes) -> list[tuple[str, int, int, int, bytes]]:
    """[(topic, partition, error_code, high_watermark, records)]"""
    r = Reader(body)
    r.take("i")  # throttle
    out = []
    for _ in range(r.take("i")):
        t = r.string()
        for _ in range(r.take("i")):
            p, err, hw, _lso = r.take("ihqq")
            n = r.take("i")
            for _ in range(max(n, 0)):
                r.take("qq")
            out.append((t, p, err, hw, r.bytes_() or b""))
    return out


def parse_create_topics(body: bytes) -> list[tuple[str, int, str | None]]:
    r = Reader(body)
    r.take("i")
    return [(r.string(), r.take("h"), r.string()) for _ in range(r.take("i"))]


def parse_metadata_topics(body: bytes) -> list[tuple[int, str]]:
    r = Reader(body)
    for _ in range(r.take("i")):
        r.take("i"), r.string(), r.take("i"), r.string()
    r.take("i")
    out = []
    for _ in range(r.take("i")):
        err, name = r.take("h"), r.string()
        r.take("b")
        for _ in range(r.take("i")):
            r.take("hii")
            for _ in range(2):
                for _ in range(r.take("i")):
                    r.take("i")
        out.append((err, name))
    return out


class Conn:
    """One blocking connection; `call` sends a frame and returns (correlation id, body)."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv(self) -> tuple[int, bytes]:
        n = struct.unpack(">i", self.recv_exact(4))[0]
        data = self.recv_exact(n)
        return struct.unpack_from(">i", data)[0], data[4:]

    def call(self, data: bytes) -> tuple[int, bytes]:
        self.send(data)
        return self.recv()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
