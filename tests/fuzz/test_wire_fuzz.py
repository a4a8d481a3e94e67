"""Bad input on the wire (hypothesis): the broker answers with Kafka's error codes or closes that
one connection, never crashes, and other clients carry on.

One real broker process for the module (socket.request.max.bytes 1 MiB, auto-create on, topic
`victim` with max.message.bytes 10000). Each example opens a fresh connection and sends one bad
input: a truncated frame, a size prefix that lies, an unknown API key or version, a frame over
socket.request.max.bytes, a produce of a garbage batch (bad CRC, bad magic, lying lengths,
random bytes), an invalid topic name, a batch over max.message.bytes. Then a bystander
connection, open the whole time, must still produce and fetch back, and the victim partition
must hold no byte of the bad input.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.pytest_plugin import start_broker
from logstore import records as R

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402

MAX_REQUEST = 1 << 20
COUNTS = {"inputs": 0, "answered": 0, "closed": 0}
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(str(tmp_path_factory.mktemp("fuzz") / "data"),
                     overrides={"socket.request.max.bytes": str(MAX_REQUEST), "auto.create.topics.enable": "true"})
    with wire.Conn(b.port) as c:
        _cid, body = c.call(wire.create_topics(1, "victim", 1, {"max.message.bytes": "10000"}))
        assert wire.parse_create_topics(body)[0][1] == 0
        _cid, body = c.call(wire.create_topics(2, "bystander", 1))
        assert wire.parse_create_topics(body)[0][1] == 0
    bystander = wire.Conn(b.port)
    yield b, bystander
    bystander.close()
    print(f"\nwire fuzz: {COUNTS['inputs']} bad inputs tried, {COUNTS['answered']} answered with an error code, "
          f"{COUNTS['closed']} connections closed; broker alive throughout")
    rc = b.stop()
    assert rc is not None


def good_batch(n: int = 1, size: int = 20) -> bytes:
    return R.build_batch([(b"k", b"v" * size) for _ in range(n)])


def corrupt_batch(kind: str, rnd: random.Random) -> bytes:
    b = bytearray(good_batch(rnd.randint(1, 5), rnd.randint(1, 200)))
    if kind == "crc":
        i = rnd.randrange(R.CRC_START, len(b))
        b[i] ^= 1 << rnd.randrange(8)
    elif kind == "magic":
        b[R.MAGIC_OFFSET] = rnd.choice([0, 1, 3, 7, 255])
    elif kind == "length-long":
        struct.pack_into(">i", b, 8, len(b) - 12 + rnd.randint(1, 10_000))
    elif kind == "length-short":
        struct.pack_into(">i", b, 8, rnd.randint(-5, len(b) - 13))
    elif kind == "count":
        struct.pack_into(">i", b, 57, rnd.choice([-1, 0, 2**31 - 1, rnd.randint(6, 1000)]))
    elif kind == "cut":
        del b[rnd.randrange(1, len(b)):]
    elif kind == "random":
        b = bytearray(rnd.randbytes(rnd.randint(0, 300)))
    elif kind == "trailing":
        b += rnd.randbytes(rnd.randint(1, 60))
    return bytes(b)


BAD_NAMES = ["../escape", "/etc", "a/b", "..", ".", "", "x" * 250, "bad name", "tab\there", "nul\x00",
             "ü", "..\\x"]


def read_outcome(conn: wire.Conn, cid: int | None) -> tuple[str, int | None, bytes]:
    """('answered', cid, body) or ('closed', None, b'')."""
    try:
        got, body = conn.recv()
    except (ConnectionError, OSError):
        return "closed", None, b""
    if cid is not None:
        assert got == cid, f"answer with correlation id {got} to request {cid}"
    return "answered", got, body


def victim_end(conn: wire.Conn) -> int:
    _c, body = conn.call(wire.fetch(999, "victim", 0, 0, max_bytes=1))
    return wire.parse_fetch(body)[0][3]


def bystander_roundtrip(conn: wire.Conn, n: int) -> None:
    value = b"still-here-%d" % n
    _c, body = conn.call(wire.produce(10_000 + n, "bystander", 0, R.build_batch([(None, value)])))
    [(_t, _p, err, base)] = wire.parse_produce(body)
    assert err == 0, f"the bystander's produce failed with {err} after a bad input on another connection"
    _c, body = conn.call(wire.fetch(20_000 + n, "bystander", 0, base))
    [(_t, _p, err, _hw, data)] = wire.parse_fetch(body)
    assert err == 0 and any(r.value == value for r in R.decode_batches(data))


KINDS = ["truncated", "size-lies", "unknown-api", "bad-version", "oversized", "crc", "magic", "length-long",
         "length-short", "count", "cut", "random", "trailing", "topic-name", "create-bad-name", "too-large",
         "garbage-frame"]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32 - 1))
def test_bad_input_never_hurts_the_broker_or_other_clients(broker, kind, seed):
    b, bystander = broker
    rnd = random.Random(seed)
    COUNTS["inputs"] += 1
    before = victim_end(bystander)
    cid = rnd.randint(1, 2**31 - 1)
    conn = wire.Conn(b.port, timeout=15)
    try:
        if kind == "truncated":
            f = wire.produce(cid, "victim", 0, good_batch())
            conn.send(f[:rnd.randrange(1, len(f))])
            conn.sock.shutdown(socket.SHUT_WR)
            outcome, _, _ = read_outcome(conn, None)
            assert outcome == "closed"
        elif kind == "size-lies":
            f = bytearray(wire.produce(cid, "victim", 0, good_batch()))
            struct.pack_into(">i", f, 0, len(f) - 4 - rnd.randint(1, 40))  # claims less than it is
            conn.send(bytes(f))
            conn.sock.shutdown(socket.SHUT_WR)
            outcome, _, body = read_outcome(conn, None)  # an answer to a cut request, or a close
        elif kind in ("unknown-api", "bad-version"):
            key = rnd.choice([-1, 50, 99, 1000, 32767]) if kind == "unknown-api" else rnd.choice([0, 1, 3, 18])
            ver = rnd.randint(0, 3) if kind == "unknown-api" else rnd.choice([-1, 99, 1000, 32767])
            conn.send(wire.frame(wire.header(key, ver, cid) + rnd.randbytes(rnd.randint(0, 20))))
            outcome, _, body = read_outcome(conn, cid)
            if outcome == "answered":
                assert struct.unpack_from(">h", body)[0] == 35, "an unsupported version must answer UNSUPPORTED_VERSION"
        elif kind == "oversized":
            conn.send(struct.pack(">i", MAX_REQUEST + rnd.randint(1, 1 << 30)) + wire.header(0, 3, cid))
            outcome, _, _ = read_outcome(conn, None)
            assert outcome == "closed", "a request over socket.request.max.bytes must close the connection"
        elif kind == "garbage-frame":
            conn.send(wire.frame(rnd.randbytes(rnd.randint(0, 64))))
            outcome, _, _ = read_outcome(conn, None)
        elif kind in ("topic-name", "create-bad-name"):
            name = rnd.choice(BAD_NAMES)
            req = (wire.produce(cid, name.encode("utf-8", "surrogatepass"), 0, good_batch()) if kind == "topic-name"
                   else wire.create_topics(cid, name.encode("utf-8", "surrogatepass")))
            conn.send(req)
            outcome, _, body = read_outcome(conn, cid)
            if outcome == "answered":
                if kind == "topic-name":
                    [(_t, _p, err, _b)] = wire.parse_produce(body)
                    assert err in (3, 17), f"produce to topic {name!r} answered error {err}"
                else:
                    [(_n, err, _m)] = wire.parse_create_topics(body)
                    assert err == 17, f"CreateTopics {name!r} answered error {err}, expected 17 INVALID_TOPIC_EXCEPTION"
            assert not os.path.exists(os.path.join(b.data_dir, "..", "escape-0"))
        elif kind == "too-large":
            big = R.build_batch([(b"k", os.urandom(12_000))])
            conn.send(wire.produce(cid, "victim", 0, big))
            outcome, _, body = read_outcome(conn, cid)
            assert outcome == "answered"
            [(_t, _p, err, _b)] = wire.parse_produce(body)
            assert err == 10, f"a batch over max.message.bytes answered {err}, expected 10 MESSAGE_TOO_LARGE"
        else:
            conn.send(wire.produce(cid, "victim", 0, corrupt_batch(kind, rnd)))
            outcome, _, body = read_outcome(conn, cid)
            if outcome == "answered":
                [(_t, _p, err, _b)] = wire.parse_produce(body)
                assert err in (2, 87, 43, 10), f"a {kind} batch was answered with error {err}"
        COUNTS["answered" if outcome == "answered" else "closed"] += 1
    finally:
        conn.close()
    assert b.alive(), f"the broker died on a {kind} input:\n{b.log()[-3000:]}"
    assert victim_end(bystander) == before, f"a {kind} input changed the victim partition"
    bystander_roundtrip(bystander, COUNTS["inputs"])


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_wire_fuzz_long():
    """The property above with 3000 examples (make test-slow)."""
    import subprocess
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-m", "not slow", __file__],
                       env={**os.environ, "FUZZ_EXAMPLES": "3000"}, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stdout[-5000:]
    print(r.stdout[-400:])
