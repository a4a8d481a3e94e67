"""Security basics: the default listener is loopback only, topic names cannot escape the log dir,
and the log dir lock keeps a second store or broker off a dir in use."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

import logstore
from broker.config import BrokerConfig
from broker.pytest_plugin import free_port, start_broker

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz"))
import wire  # noqa: E402

ESCAPES = ["../x", "../../etc", "/etc", "/tmp/x", "a/b", "..", ".", "", "x/../../y", "..\\x", "nul\x00x",
           "~root", "x" * 250, "a b", "é"]


def tree(path) -> set[str]:
    out = set()
    for d, dirs, files in os.walk(path):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(d, n), path))
    return out


def test_store_refuses_topic_names_that_leave_the_log_dir(tmp_path):
    data = tmp_path / "data"
    with logstore.open(str(data), background=False) as store:
        outside = tree(tmp_path) - {p for p in tree(tmp_path) if p.startswith("data")}
        for name in ESCAPES:
            with pytest.raises(logstore.InvalidTopicError) as e:
                store.create_topic(name, 1)
            assert repr(name)[1:-1][:20] in str(e.value) or name[:20] in str(e.value), str(e.value)
        assert store.topics() == []
        assert {p for p in tree(tmp_path) if not p.startswith("data")} == outside
        assert not any(n for n in os.listdir(data) if n.endswith("-0") and n != "__cluster_metadata-0")


def test_broker_refuses_topic_names_that_leave_the_log_dir(tmp_path):
    data = tmp_path / "data"
    b = start_broker(str(data), overrides={"auto.create.topics.enable": "true"})
    try:
        before = {p for p in tree(tmp_path) if not p.startswith("data")}
        with wire.Conn(b.port) as c:
            for i, name in enumerate(ESCAPES):
                raw = name.encode()
                _cid, body = c.call(wire.create_topics(i + 1, raw))
                [(_n, err, _msg)] = wire.parse_create_topics(body)
                assert err == 17, f"CreateTopics {name!r} answered {err}, expected 17 INVALID_TOPIC_EXCEPTION"
                _cid, body = c.call(wire.produce(100 + i, raw, 0, logstore.build_batch([(None, b"x")])))
                [(_t, _p, err, _b)] = wire.parse_produce(body)
                assert err in (3, 17), f"produce to {name!r} (auto-create on) answered {err}"
                _cid, body = c.call(wire.metadata(200 + i, [name]))
                errs = [e for e, _n in wire.parse_metadata_topics(body)]
                assert errs and all(e in (3, 17) for e in errs), f"metadata for {name!r} answered {errs}"
        assert b.alive()
        assert {p for p in tree(tmp_path) if not p.startswith("data")} - before <= {
            p for p in tree(tmp_path) if p.startswith("logstore-broker-")}, "a file appeared outside the log dir"
        parts = [n for n in os.listdir(data) if not n.startswith("__") and os.path.isdir(data / n)]
        assert parts == [], f"partition directories were created for invalid names: {parts}"
    finally:
        b.stop()


def test_default_listener_is_loopback_only(tmp_path):
    cfg = BrokerConfig()
    assert cfg.listener.host == "127.0.0.1" and cfg.listener.port == 9092
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 9092))
        except OSError:
            pytest.skip("port 9092 is in use on this machine: cannot start a broker on the default listener")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from broker.cli import main; sys.exit(main(sys.argv[1:]))",
                             "serve", "--override", f"log.dirs={tmp_path / 'data'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        listening = []
        while time.monotonic() < deadline and not listening:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            listening = [c for c in psutil.Process(proc.pid).net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN]
            time.sleep(0.1)
        assert listening, "the broker never listened"
        assert all(c.laddr.ip == "127.0.0.1" for c in listening), f"listening on {[c.laddr for c in listening]}"
        # and it is not reachable on this machine's other addresses
        others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                  if a.family == socket.AF_INET and not a.address.startswith("127.")]
        for ip in others:
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((ip, 9092)) != 0, f"the default broker accepted a connection on {ip}"
    finally:
        proc.kill()
        proc.wait()


def test_lock_keeps_a_second_store_or_broker_off_the_dir(tmp_path):
    data = str(tmp_path / "data")
    with logstore.open(data, background=False):
        with pytest.raises(logstore.LogDirLockedError) as e:
            logstore.open(data, background=False)
        assert data in str(e.value) and "locked" in str(e.value)
        # another process: a broker on the same dir refuses to start, saying why
        with pytest.raises(RuntimeError) as e2:
            start_broker(data, port=free_port(), timeout=30)
        assert "lock" in str(e2.value).lower(), str(e2.value)[-1000:]
    b = start_broker(data)  # the dir is free again once the store closed
    try:
        with pytest.raises(RuntimeError) as e3:
            start_broker(data, port=free_port(), timeout=30)
        assert "lock" in str(e3.value).lower()
        assert b.alive()
    finally:
        b.stop()
