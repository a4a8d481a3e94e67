"""Request/response codec: frames in, kio objects out, and back. Sans-IO.

Owns: parsing the request header (v1, or v2 for flexible versions: api_key i16, api_version i16,
correlation_id i32, client_id nullable string, then tagged fields in v2), decoding the body with
kio's generated reader for (api_key, version), and encoding a response body with the right
response header: v1 (correlation id + empty tagged fields) for flexible versions, v0 otherwise,
and always v0 for ApiVersions (so a client that does not yet know our versions can read it).

Invariants: readers get `bytes` or a read-only memoryview (kio rejects writable buffers); a body
that does not decode raises `ProtocolError` (the server then closes that connection). Bytes after
the body are ignored, as Kafka ignores them. Produce's `records` arrive as `bytes` and are passed on untouched.

Wire layout of a frame (big-endian): size i32 | header | body. `encode_response` returns the
whole frame, size prefix included.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kio.index import KioIndexError, load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

API_VERSIONS_KEY = 18
_HDR = struct.Struct(">hhih")
_I32 = struct.Struct(">i")
_RESP_HDR_V0 = struct.Struct(">ii")       # size, correlation id
_RESP_HDR_V1 = struct.Struct(">iiB")      # size, correlation id, empty tagged fields


class ProtocolError(Exception):
    """A request that cannot be parsed: the connection it came on is closed."""


class UnsupportedVersion(ProtocolError):
    """The (api_key, api_version) has no schema here; `header` is what could be parsed."""

    def __init__(self, message: str, header: "RequestHeader"):
        super().__init__(message)
        self.header = header


@dataclass(slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    flexible: bool = False   # the request's version is a flexible one (header v2, response header v1)


@lru_cache(maxsize=None)
def request_class(api_key: int, version: int) -> type:
    return load_request_schema(api_key, version)


@lru_cache(maxsize=None)
def response_class(api_key: int, version: int) -> type:
    return load_response_schema(api_key, version)


@lru_cache(maxsize=None)
def _reader(cls: type) -> Any:
    return entity_reader(cls)


@lru_cache(maxsize=None)
def _writer(cls: type) -> Any:
    return entity_writer(cls)


def _read_uvarint(buf: bytes, pos: int, where: str = "request header") -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(buf):
            raise ProtocolError(f"truncated varint in {where}")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise ProtocolError(f"varint too long in {where}")


def skip_tagged_fields(buf: bytes, pos: int, where: str = "request header") -> int:
    """The position after the tagged-field section at `pos` (a header's; the fields are skipped).
    Raises ProtocolError naming `where` when it is truncated."""
    n, pos = _read_uvarint(buf, pos, where)
    for _ in range(n):
        _tag, pos = _read_uvarint(buf, pos, where)
        size, pos = _read_uvarint(buf, pos, where)
        pos += size
    if pos > len(buf):
        raise ProtocolError(f"truncated tagged fields in {where}")
    return pos


def parse_header(frame: bytes | memoryview) -> tuple[RequestHeader, int]:
    """Parse the request header of `frame` (the bytes after the size prefix). Returns the header
    and the offset of the body. Raises UnsupportedVersion when no schema exists for the version
    (the header then carries api_key, api_version and correlation_id)."""
    if len(frame) < 10:
        raise ProtocolError(f"request of {len(frame)} bytes is shorter than a request header")
    api_key, version, corr, n = _HDR.unpack_from(frame, 0)
    pos = 10
    client_id = None
    if n >= 0:
        if pos + n > len(frame):
            raise ProtocolError("client id runs past the end of the request")
        client_id = bytes(frame[pos:pos + n]).decode("utf-8", "replace")
        pos += n
    header = RequestHeader(api_key, version, corr, client_id)
    try:
        cls = request_class(api_key, version)
    except KioIndexError:
        # only "kio has no such key or version": an OSError loading a schema's module (out of
        # descriptors) is not an unsupported version, and says what it is further up
        raise UnsupportedVersion(f"no schema for api key {api_key} version {version}", header) from None
    header.flexible = bool(cls.__flexible__)
    if header.flexible:
        pos = skip_tagged_fields(frame, pos)
    return header, pos


def decode_request(frame: bytes | memoryview) -> tuple[RequestHeader, Any]:
    """Decode one request frame (without the size prefix; bytes or a read-only memoryview) into
    (header, kio request object)."""
    header, pos = parse_header(frame)
    cls = request_class(header.api_key, header.api_version)
    try:
        body, size = _reader(cls)(frame, pos)
    except Exception as e:
        raise ProtocolError(f"cannot decode {cls.__name__} v{header.api_version}: {e}") from None
    # Trailing bytes are ignored, as Kafka does: librdkafka's "all topics" Metadata v9+ request
    # leaves a 4-byte array-count placeholder where a 1-byte compact null belongs.
    return header, body


def encode_request(header: RequestHeader, body: Any) -> bytes:
    """Client side (tests, tools): a full frame for `body` with a v1/v2 request header."""
    cls = type(body)
    cid = None if header.client_id is None else header.client_id.encode()
    out = bytearray(_HDR.pack(cls.__api_key__, cls.__version__, header.correlation_id,
                              -1 if cid is None else len(cid)))
    if cid:
        out += cid
    if cls.__flexible__:
        out.append(0)
    out += encode_body(body)
    return _I32.pack(len(out)) + bytes(out)


def encode_body(body: Any) -> bytes:
    buf = io.BytesIO()
    _writer(type(body))(buf, body)
    return buf.getvalue()


def decode_body(cls: type, data: bytes, pos: int = 0) -> Any:
    body, size = _reader(cls)(data, pos)
    if pos + size != len(data):
        raise ProtocolError(f"{len(data) - pos - size} trailing bytes after {cls.__name__}")
    return body


def response_header_flexible(api_key: int, flexible: bool) -> bool:
    return flexible and api_key != API_VERSIONS_KEY


def frame_prefix(correlation_id: int, body_size: int, header_v1: bool) -> bytes:
    """Size prefix + response header for a body of `body_size` bytes."""
    if header_v1:
        return _RESP_HDR_V1.pack(body_size + 5, correlation_id, 0)
    return _RESP_HDR_V0.pack(body_size + 4, correlation_id)


def encode_response(header: RequestHeader, body: Any) -> bytes:
    """The full response frame (size prefix, response header, body)."""
    data = encode_body(body)
    return frame_prefix(header.correlation_id, len(data),
                        response_header_flexible(header.api_key, header.flexible)) + data


def decode_response(api_key: int, version: int, frame: bytes) -> tuple[int, Any]:
    """Client side: decode a response frame without its size prefix → (correlation id, body)."""
    cls = response_class(api_key, version)
    corr = _I32.unpack_from(frame, 0)[0]
    pos = 4
    if response_header_flexible(api_key, bool(cls.__flexible__)):
        pos = skip_tagged_fields(frame, pos)
    return corr, decode_body(cls, frame, pos)
