"""`protocol.write_produce_response` packs exactly the frame kio's generic writer encodes.

For every served Produce version (3-11) and random outcomes (errors, messages with non-ASCII
text, null messages, LogAppendTime or not, long topic names, empty partition lists), the frame
equals `encode_response` of the equivalent kio ProduceResponse, byte for byte; and a real
ProduceRequest through a running broker decodes with kio's reader.
"""

from __future__ import annotations

import datetime
import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.handlers._util import make
from broker.protocol import RequestHeader, decode_response, encode_response, request_class
from broker.protocol.produce_writer import MAX_VERSION, MIN_VERSION, write_produce_response

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

_part = st.tuples(st.integers(0, 2**31 - 1), st.sampled_from([0, 2, 3, 10, 17, 21, 45, 87]),
                  st.integers(-1, 2**62), st.one_of(st.just(-1), st.integers(0, 2**42)),
                  st.integers(-1, 2**62), st.one_of(st.none(), st.text(max_size=40)))
_topics = st.lists(st.tuples(st.text(max_size=300), st.lists(_part, max_size=5)), max_size=4)


def _kio_frame(version: int, corr: int, topics) -> bytes:
    req = request_class(0, version)
    mod = importlib.import_module(req.__module__.rsplit(".", 1)[0] + ".response")
    body = make(mod.ProduceResponse, responses=tuple(
        make(mod.TopicProduceResponse, name=name, partition_responses=tuple(
            make(mod.PartitionProduceResponse, index=i, error_code=err, base_offset=base,
                 log_append_time=None if at < 0 else _EPOCH + datetime.timedelta(milliseconds=at),
                 log_start_offset=lso, record_errors=(), error_message=msg)
            for i, err, base, at, lso, msg in parts))
        for name, parts in topics))
    return encode_response(RequestHeader(0, version, corr, "t", bool(req.__flexible__)), body)


@settings(max_examples=150, deadline=None)
@given(st.integers(MIN_VERSION, MAX_VERSION), st.integers(-2**31, 2**31 - 1), _topics)
def test_same_bytes_as_kio(version: int, corr: int, topics) -> None:
    ours = write_produce_response(version, corr, topics)
    assert ours == _kio_frame(version, corr, topics)
    # and it reads back with kio's decoder
    got_corr, body = decode_response(0, version, ours[4:])
    assert got_corr == corr
    assert [t.name for t in body.responses] == [t[0] for t in topics]


@pytest.mark.parametrize("version", [2, 12])
def test_unserved_versions_are_refused(version: int) -> None:
    with pytest.raises(ValueError, match=f"Produce v{version}"):
        write_produce_response(version, 1, [])
