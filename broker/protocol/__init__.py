"""Kafka wire protocol for the broker: request/response codec over kio's generated message
classes (`codec`), the zero-copy Fetch response writer (`fetch_writer`) and the Produce response
writer (`produce_writer`, no kio entities per partition).

Handlers only see: `RequestHeader`, the kio request object, and return a kio response object
(or, for Fetch and Produce, a list of buffers from `write_fetch_response` /
`write_produce_response`).
"""

from __future__ import annotations

from .codec import (API_VERSIONS_KEY, ProtocolError, RequestHeader, UnsupportedVersion, decode_body,
                    decode_request, decode_response, encode_body, encode_request, encode_response, frame_prefix,
                    parse_header, request_class, response_class, response_header_flexible, skip_tagged_fields)
from .fetch_writer import PartitionResult, TopicResult, write_fetch_response
from .produce_writer import write_produce_response

__all__ = [
    "API_VERSIONS_KEY", "ProtocolError", "RequestHeader", "UnsupportedVersion", "decode_body", "decode_request",
    "decode_response", "encode_body", "encode_request", "encode_response", "frame_prefix", "parse_header",
    "request_class", "response_class", "response_header_flexible", "skip_tagged_fields", "PartitionResult", "TopicResult",
    "write_fetch_response", "write_produce_response",
]
