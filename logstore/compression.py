"""Batch compression codecs, all through `cramjam`: what RecordBatch attributes bits 0-2 name.

    0 none   1 gzip (a plain gzip stream)   2 snappy   3 lz4 (the standard frame format)
    4 zstd (a plain zstd frame)

Snappy follows Kafka's Java client: it writes xerial framing, and reads either that or raw
snappy (librdkafka may send raw). xerial framing:

    magic     8 bytes  0x82 "SNAPPY" 0x00
    version   i32      1
    compat    i32      1
    then blocks of    length u32 | raw snappy of at most 32 KiB of input

`compress` / `decompress` take and return whole payloads (the records section of one batch).
An unknown codec number in stored data is a CorruptRecordError.
"""

from __future__ import annotations

import struct

import cramjam

from .errors import CorruptRecordError, InvalidConfigError

COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4, COMPRESSION_ZSTD = range(5)
COMPRESSION_CODES = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
COMPRESSION_NAMES = {v: k for k, v in COMPRESSION_CODES.items()}


def compression_code(compression: str | int) -> int:
    """The codec id of a compression.type name (Kafka's: none, gzip, snappy, lz4, zstd) or of an id
    0-4; anything else is an InvalidConfigError naming the valid values, as Kafka's producer says."""
    code = COMPRESSION_CODES.get(compression) if isinstance(compression, str) else compression
    if type(code) is not int or code not in COMPRESSION_NAMES:
        raise InvalidConfigError(f"Invalid value {compression!r} for configuration compression.type: "
                                 f"String must be one of: {', '.join(COMPRESSION_CODES)}")
    return code

_U32 = struct.Struct(">I")
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = struct.Struct(">8sii")
_XERIAL_BLOCK = 32 * 1024


def _snappy_compress(data: bytes) -> bytes:
    out = bytearray(_XERIAL_HEADER.pack(_XERIAL_MAGIC, 1, 1))
    for i in range(0, len(data), _XERIAL_BLOCK):
        block = bytes(cramjam.snappy.compress_raw(data[i:i + _XERIAL_BLOCK]))
        out += _U32.pack(len(block))
        out += block
    return bytes(out)


def _snappy_decompress(data: bytes) -> bytes:
    if data[:8] != _XERIAL_MAGIC:
        return bytes(cramjam.snappy.decompress_raw(data))
    pos = _XERIAL_HEADER.size
    parts = []
    while pos < len(data):
        (n,) = _U32.unpack_from(data, pos)
        pos += 4
        parts.append(bytes(cramjam.snappy.decompress_raw(data[pos:pos + n])))
        pos += n
    return b"".join(parts)


def compress(codec: int, data: bytes) -> bytes:
    if codec == COMPRESSION_NONE:
        return data
    if codec == COMPRESSION_GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == COMPRESSION_SNAPPY:
        return _snappy_compress(data)
    if codec == COMPRESSION_LZ4:
        return bytes(cramjam.lz4.compress(data))
    if codec == COMPRESSION_ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise ValueError(f"unknown compression codec {codec}")


def decompress(codec: int, data: bytes) -> bytes:
    if codec == COMPRESSION_NONE:
        return data
    if codec == COMPRESSION_GZIP:
        return bytes(cramjam.gzip.decompress(data))
    if codec == COMPRESSION_SNAPPY:
        return _snappy_decompress(data)
    if codec == COMPRESSION_LZ4:
        return bytes(cramjam.lz4.decompress(data))
    if codec == COMPRESSION_ZSTD:
        return bytes(cramjam.zstd.decompress(data))
    raise CorruptRecordError(f"unknown compression codec {codec} in batch attributes")
