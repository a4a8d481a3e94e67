"""The client side of bench/broker_e2e.py: each workload runs in a fresh process.

`python -m bench.broker_e2e --client JSON` runs `CLIENT_OPS[spec["op"]](spec)` and prints its
result as one JSON line. The settings every broker gets alike (PRODUCER_TUNING,
CONSUMER_TUNING, CONSUME_BATCH, CLIENT_TUNING) live here and are recorded with each result.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from .common import MB, VALUE_BYTES

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


def _client_produce_ceiling(spec: dict) -> dict:
    """The client's own ceiling for produce: the same produce() loop as `produce`, into
    librdkafka's queue, with no broker listening at the bootstrap address (nothing is sent, so
    this is the Python call plus librdkafka's enqueue, on a CPU the broker does not share)."""
    import gc
    from confluent_kafka import Producer
    n = spec["records"]
    p = Producer({"bootstrap.servers": spec["bootstrap"], "acks": "1", "linger.ms": 5, "batch.size": 1048576,
                  **PRODUCER_TUNING, "log_level": 0, "error_cb": lambda e: None})
    value = _value()
    topic = spec["topic"]
    produce = p.produce
    gc.disable()
    t0 = time.perf_counter()
    for _ in range(n // 1000):
        for _ in range(1000):
            produce(topic, value, None, 0)
    dt = time.perf_counter() - t0
    gc.enable()
    queued = len(p)
    p.purge()
    return {"records": n, "queued": queued, "seconds": dt, "rps": n / dt, "producer_config": PRODUCER_TUNING,
            "client_config": CLIENT_TUNING}


def _client_consume_ceiling(spec: dict) -> dict:
    """The client's own ceiling for consume: the same consume() loop as `consume`, timed only after
    librdkafka has had `settle` seconds to fetch the whole topic into its local queue (its queue
    takes 1 GiB, the topic ~110 MB), so the broker is idle while the clock runs. `short_calls`
    counts consume() calls that returned fewer than a full batch before the end: 0 means the
    queue never ran dry, so the figure is the client's alone."""
    import gc
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    n = spec["records"]
    c = Consumer({"bootstrap.servers": spec["bootstrap"], "group.id": f"bench-ceiling-{os.getpid()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", **CONSUMER_TUNING})
    c.assign([TopicPartition(spec["topic"], 0, OFFSET_BEGINNING)])
    before = len(c.consume(1, 10))  # starts the fetching
    settle = spec.get("settle", 2 + n / 250_000)
    time.sleep(settle)
    got = errors = nbytes = short = 0
    consume = c.consume
    batch = spec.get("consume_batch", CONSUME_BATCH)
    want = n - before
    deadline = time.monotonic() + spec.get("timeout", 120)
    gc.disable()
    t0 = time.perf_counter()
    while got - errors < want and time.monotonic() < deadline:
        msgs = consume(batch, 0.1)
        for m in msgs:
            if m.error() is None:
                nbytes += len(m.value())
            else:
                errors += 1
        got += len(msgs)
        short += len(msgs) < batch and got - errors < want
    dt = time.perf_counter() - t0
    gc.enable()
    c.close()
    got -= errors
    return {"records": got, "settle_s": settle, "short_calls": short, "errors": errors, "seconds": dt,
            "rps": got / max(dt, 1e-9), "consumer_config": CONSUMER_TUNING, "consume_batch": batch,
            "client_config": CLIENT_TUNING}


CLIENT_OPS = {
    "produce": _client_produce_confluent, "produce_kafka_python": _client_produce_kafka_python,
    "consume": _client_consume_confluent, "consume_kafka_python": _client_consume_kafka_python,
    "latency": _client_latency, "tcp_send": _client_tcp_send, "tcp_sink": _client_tcp_sink,
    "produce_ceiling": _client_produce_ceiling, "consume_ceiling": _client_consume_ceiling,
}
