"""Kafka wire protocol for the broker: request/response codec over kio's generated message
classes (`codec`) and the zero-copy Fetch response writer (`fetch_writer`).

Handlers only see: `RequestHeader`, the kio request object, and return a kio response object
(or, for Fetch, a list of buffers from `write_fetch_response`).
"""

from __future__ import annotations

from .codec import (API_VERSIONS_KEY, ProtocolError, RequestHeader, UnsupportedVersion, decode_body,
                    decode_request, decode_response, encode_body, encode_request, encode_response, frame_prefix,
                    parse_header, request_class, response_class, response_header_flexible)
from .fetch_writer import PartitionResult, TopicResult, write_fetch_response

__all__ = [
    "API_VERSIONS_KEY", "ProtocolError", "RequestHeader", "UnsupportedVersion", "decode_body", "decode_request",
    "decode_response", "encode_body", "encode_request", "encode_response", "frame_prefix", "parse_header",
    "request_class", "response_class", "response_header_flexible", "PartitionResult", "TopicResult",
    "write_fetch_response",
]
