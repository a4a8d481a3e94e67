"""One TCP connection to one Kafka-protocol broker: framing, version negotiation, request building.

Owns: the socket (connect to the first bootstrap address that answers, TCP_NODELAY), Kafka's
framing, ApiVersions negotiation, and `build_request`, which turns a dict into the `kio`
dataclass of the negotiated version. `AdminClient` (client.py) adds the API calls on top.

Framing (Kafka's): i32 size, then the request header (api key i16, api version i16, correlation
id i32, client id string; plus tagged fields in header v2, used by flexible versions), then the
body. A response is i32 size, correlation id i32 (plus tagged fields in response header v1, for
flexible versions other than ApiVersions), then the body.

Invariants: each API is used at min(`MAX_VERSIONS[key]`, the broker's highest), recorded in
`versions` when the connection opens; an API absent from `versions` raises
`KafkaError(UNSUPPORTED_VERSION)` before anything is sent. One request is in flight at a time
(not thread-safe). Every socket failure, timeout, correlation mismatch or undecodable response
raises `BrokerUnreachable` naming the broker's address. `build_request`: keys the version lacks
are dropped, fields it needs but the dict omits get a neutral zero value, so one call site
serves several versions.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import socket
import struct
import types
import typing
import uuid
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

from ..protocol import skip_tagged_fields
from .codes import API_API_VERSIONS, API_NAMES, MAX_VERSIONS, BrokerUnreachable, KafkaError

_I32 = struct.Struct(">i")
_HDR = struct.Struct(">hhi")


def parse_bootstrap(servers: str) -> list[tuple[str, int]]:
    """"h1:p1,h2:p2" → [(h1, p1), ...]. Raises ValueError naming a bad entry."""
    out = []
    for item in servers.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"invalid bootstrap server {item!r}: expected HOST:PORT")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ValueError("no bootstrap server given")
    return out


# ------------------------------------------------------------------------------- building

def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), True
    return tp, False


def _zero(tp: Any) -> Any:
    tp, optional = _strip_optional(tp)
    if optional:
        return None
    origin = typing.get_origin(tp)
    if origin is tuple:
        return ()
    if isinstance(tp, type):
        if issubclass(tp, datetime.timedelta):
            return datetime.timedelta(0)
        if issubclass(tp, bool):
            return False
        if issubclass(tp, int):
            return 0
        if issubclass(tp, float):
            return 0.0
        if issubclass(tp, str):
            return ""
        if issubclass(tp, bytes):
            return b""
        if issubclass(tp, uuid.UUID):
            return uuid.UUID(int=0)
    return None


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    tp, _ = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_convert(inner, v) for v in value)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return build_request(tp, value)
    if isinstance(tp, type):
        if issubclass(tp, datetime.timedelta) and not isinstance(value, datetime.timedelta):
            return datetime.timedelta(milliseconds=value)
        if issubclass(tp, bytes) and isinstance(value, (bytearray, memoryview)):
            return bytes(value)
    return value


def build_request(cls: Any, data: dict) -> Any:
    """`data` as an instance of the kio dataclass `cls` (see the module docstring)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(f.type, data[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            kwargs[f.name] = _zero(f.type)
    return cls(**kwargs)


def code_of(v: Any) -> int:
    """An error code field as an int (kio gives enum members; None counts as 0)."""
    return int(getattr(v, "value", v) or 0)


# ------------------------------------------------------------------------------- the connection

class Connection:
    """A connection to one broker. Not thread-safe. Use as a context manager."""

    def __init__(self, bootstrap: str, *, client_id: str = "logstore-cli", timeout: float = 10.0):
        self.addresses = parse_bootstrap(bootstrap)
        self.client_id = client_id
        self.timeout = timeout
        self._corr = 0
        self._sock: socket.socket | None = None
        self.address = ""
        self.versions: dict[int, int] = {}
        errors = []
        for host, port in self.addresses:
            try:
                self._sock = socket.create_connection((host, port), timeout=timeout)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.address = f"{host}:{port}"
                break
            except OSError as e:
                errors.append(f"{host}:{port} ({e.strerror or e})")
        if self._sock is None:
            raise BrokerUnreachable(f"cannot connect to broker at {', '.join(errors)}")
        self._negotiate()

    # -- framing -------------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes:
        assert self._sock is not None
        parts = []
        while n:
            try:
                b = self._sock.recv(min(n, 1 << 20))
            except socket.timeout:
                raise BrokerUnreachable(f"broker at {self.address} did not answer within {self.timeout:g}s") from None
            except OSError as e:
                raise BrokerUnreachable(f"connection to broker at {self.address} failed: {e.strerror or e}") from None
            if not b:
                raise BrokerUnreachable(f"broker at {self.address} closed the connection")
            parts.append(b)
            n -= len(b)
        return b"".join(parts)

    def _roundtrip(self, api_key: int, version: int, body: Any, resp_cls: Any, *, timeout: float | None = None,
                   expect_response: bool = True) -> Any:
        assert self._sock is not None
        self._corr += 1
        corr = self._corr
        flexible = bool(getattr(type(body), "__flexible__", False))
        buf = io.BytesIO()
        buf.write(_HDR.pack(api_key, version, corr))
        cid = self.client_id.encode()
        buf.write(struct.pack(">h", len(cid)) + cid)
        if flexible:
            buf.write(b"\x00")  # header tagged fields
        entity_writer(type(body))(buf, body)
        payload = buf.getvalue()
        try:
            self._sock.settimeout(timeout if timeout is not None else self.timeout)
            self._sock.sendall(_I32.pack(len(payload)) + payload)
        except OSError as e:
            raise BrokerUnreachable(f"connection to broker at {self.address} failed: {e.strerror or e}") from None
        if not expect_response:  # Produce with acks=0: the broker sends nothing back
            return None
        (size,) = _I32.unpack(self._recv_exact(4))
        data = self._recv_exact(size)
        (got,) = _I32.unpack_from(data, 0)
        if got != corr:
            raise BrokerUnreachable(f"broker at {self.address} answered correlation id {got}, expected {corr}")
        pos = 4
        try:
            if flexible and api_key != API_API_VERSIONS:
                pos = skip_tagged_fields(data, pos, "response header")
            resp, _n = entity_reader(resp_cls)(data, pos)
        except Exception as e:  # kio raises its own types for short or malformed buffers
            raise BrokerUnreachable(f"malformed {API_NAMES.get(api_key, api_key)} v{version} response from the "
                                    f"broker at {self.address}: {type(e).__name__}: {e}") from None
        return resp

    def request(self, api_key: int, data: dict, *, version: int | None = None, timeout: float | None = None,
                expect_response: bool = True) -> Any:
        """Send `data` as the request `api_key` at the negotiated version; returns the response
        (None when `expect_response` is False)."""
        v = self.versions.get(api_key) if version is None else version
        if v is None:
            raise KafkaError(35, f"the broker at {self.address} does not support {API_NAMES.get(api_key, api_key)}")
        body = build_request(load_request_schema(api_key, v), data)
        return self._roundtrip(api_key, v, body, load_response_schema(api_key, v), timeout=timeout,
                               expect_response=expect_response)

    def _negotiate(self) -> None:
        for v in (3, 0):
            resp = self.request(API_API_VERSIONS, {"client_software_name": "logstore-cli",
                                                   "client_software_version": "0.1.0"}, version=v)
            code = code_of(resp.error_code)
            if code == 35 and v > 0:
                continue
            if code:
                raise KafkaError(code, where=f" (ApiVersions from {self.address})")
            break
        for k in resp.api_keys:
            key = int(k.api_key)
            mine = MAX_VERSIONS.get(key)
            if mine is None or int(k.min_version) > mine:
                continue
            self.versions[key] = min(mine, int(k.max_version))

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> typing.Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
