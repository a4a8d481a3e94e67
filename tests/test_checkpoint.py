"""Checkpoint files (logstore/checkpoint.py): Kafka's text format, atomic replacement, and errors
that name the file and line."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore import checkpoint as ckpt
from logstore.errors import CorruptRecordError

topic_names = st.text(alphabet="abcXYZ019._-", min_size=1, max_size=30)
offsets = st.dictionaries(st.tuples(topic_names, st.integers(0, 10_000)), st.integers(0, 1 << 62), max_size=30)


@settings(max_examples=50, deadline=None)
@given(data=offsets)
def test_round_trip(tmp_path_factory, data):
    path = str(tmp_path_factory.mktemp("ck") / ckpt.RECOVERY_POINT_FILE)
    ckpt.write_checkpoint(path, data)
    assert ckpt.read_checkpoint(path) == data
    assert not os.path.exists(path + ".tmp")


def test_kafka_text_format(tmp_path):
    path = str(tmp_path / "cp")
    ckpt.write_checkpoint(path, {("b", 1): 7, ("a", 0): 42})
    assert open(path).read() == "0\n2\na 0 42\nb 1 7\n"
    # a file written by Kafka reads back
    with open(path, "w") as f:
        f.write("0\n3\n__consumer_offsets 12 0\nevents 0 1234\nevents 1 99\n")
    assert ckpt.read_checkpoint(path) == {("__consumer_offsets", 12): 0, ("events", 0): 1234, ("events", 1): 99}


def test_missing_file_is_empty(tmp_path):
    assert ckpt.read_checkpoint(str(tmp_path / "none")) == {}


@pytest.mark.parametrize("text,line,why", [
    ("", 1, "missing version"),
    ("0\n", 2, "missing version or count"),
    ("1\n0\n", 1, "unknown version"),
    ("0\nx\n", 2, "is not a number"),
    ("0\n2\na 0 1\n", 2, "count 2 but 1 entries"),
    ("0\n1\na 0\n", 3, "expected 'topic partition offset'"),
    ("0\n1\na zero 5\n", 3, "not a number"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, line, why):
    path = str(tmp_path / "cp")
    with open(path, "w") as f:
        f.write(text)
    with pytest.raises(CorruptRecordError) as e:
        ckpt.read_checkpoint(path)
    assert f"malformed checkpoint file {path} at line {line}" in str(e.value) and why in str(e.value)
    assert e.value.path == path


def test_binary_garbage(tmp_path):
    path = str(tmp_path / "cp")
    with open(path, "wb") as f:
        f.write(b"\xff\xfe\x00")
    with pytest.raises(CorruptRecordError, match="is not text"):
        ckpt.read_checkpoint(path)


def test_replacement_is_atomic(tmp_path):
    """A leftover `.tmp` from a crash mid-write never replaces the file: the old one reads."""
    path = str(tmp_path / "cp")
    ckpt.write_checkpoint(path, {("t", 0): 5})
    with open(path + ".tmp", "w") as f:
        f.write("0\n1\nt 0")  # a write torn by a crash
    assert ckpt.read_checkpoint(path) == {("t", 0): 5}
    ckpt.write_checkpoint(path, {("t", 0): 6})
    assert ckpt.read_checkpoint(path) == {("t", 0): 6} and not os.path.exists(path + ".tmp")


def test_properties(tmp_path):
    path = str(tmp_path / "meta.properties")
    props = {"version": "1", "cluster.id": "abc=def", "node.id": "0"}
    ckpt.write_properties(path, props)
    with open(path, "a") as f:
        f.write("# a comment\n\nnot a property\n")
    assert ckpt.read_properties(path) == props
    assert ckpt.read_properties(str(tmp_path / "none")) == {}
