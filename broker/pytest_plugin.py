"""pytest plugin (entry point `pytest11`: `logstore`): a real Kafka-protocol broker for tests.

    def test_roundtrip(kafka_broker):          # "127.0.0.1:PORT"
        producer = KafkaProducer(bootstrap_servers=kafka_broker)
        ...

`kafka_broker` starts `logstore serve` as a child process on a free port of 127.0.0.1 with its
log dir in the test's `tmp_path`, waits until it answers ApiVersions, yields the bootstrap
address, and stops it afterwards (SIGTERM, then SIGKILL after 10 s). A broker whose test process
dies without stopping it stops itself within a second. `kafka_broker_process` is
the same broker as a `BrokerProcess` (address, data dir, pid, `stop()`, `kill()`, log text).
`start_broker(data_dir, ...)` starts one by hand, e.g. for a module-scoped fixture.

The module imports only the standard library and pytest, so loading the plugin costs nothing and
cannot fail when the broker's own code is broken: only tests that use the fixture see that, as a
start-up error carrying the broker's last log lines.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterator, Mapping

import pytest

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# The child watches its parent: if the test process dies without stopping it (SIGKILL, a CI
# timeout), the broker is re-parented, sees it within a second and stops itself cleanly (SIGTERM),
# rather than living on, holding its port and log dir.
_LAUNCH = """
import os, signal, sys, threading, time
parent = os.getppid()
def _watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=_watch, name="parent-watch", daemon=True).start()
from broker.cli import main
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerProcess:
    """A `logstore serve` child process. `bootstrap` is "127.0.0.1:PORT"."""

    def __init__(self, data_dir: str, port: int, proc: subprocess.Popen, log_path: str):
        self.data_dir = data_dir
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in `timeout` s. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __repr__(self) -> str:
        return f"BrokerProcess({self.bootstrap}, pid={self.pid}, data_dir={self.data_dir!r})"


def _answers(port: int) -> bool:
    """True when the broker answers an ApiVersions v0 request on `port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            client_id = b"pytest"
            body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big") + \
                len(client_id).to_bytes(2, "big") + client_id
            s.sendall(len(body).to_bytes(4, "big") + body)
            s.settimeout(5.0)
            head = s.recv(8)
            return len(head) >= 8 and int.from_bytes(head[4:8], "big") == 1
    except OSError:
        return False


def start_broker(data_dir: str, *, port: int | None = None, overrides: Mapping[str, str] | None = None,
                 timeout: float = START_TIMEOUT_S, env: Mapping[str, str] | None = None) -> BrokerProcess:
    """Start `logstore serve` on 127.0.0.1:`port` (a free one by default) with `log.dirs=data_dir`
    and Kafka-style `overrides`; returns once it answers ApiVersions. Raises RuntimeError with the
    broker's output if it exits or does not answer within `timeout` seconds."""
    os.makedirs(data_dir, exist_ok=True)
    port = port or free_port()
    settings = {"listeners": f"PLAINTEXT://127.0.0.1:{port}", "log.dirs": data_dir}
    settings.update(overrides or {})
    cmd = [sys.executable, "-c", _LAUNCH, "serve"]
    for k, v in settings.items():
        cmd += ["--override", f"{k}={v}"]
    fd, log_path = tempfile.mkstemp(prefix="logstore-broker-", suffix=".log",
                                    dir=os.path.dirname(os.path.abspath(data_dir)))
    with os.fdopen(fd, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    broker = BrokerProcess(data_dir, port, proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"logstore broker exited with code {proc.returncode} at start-up "
                               f"({' '.join(cmd[3:])}):\n{broker.log()[-3000:]}")
        if _answers(port):
            return broker
        time.sleep(0.05)
    broker.kill()
    raise RuntimeError(f"logstore broker did not answer on {broker.bootstrap} within {timeout:g}s:\n"
                       f"{broker.log()[-3000:]}")


@pytest.fixture
def kafka_broker_process(tmp_path) -> Iterator[BrokerProcess]:
    """A running broker (see the module docstring), stopped after the test."""
    broker = start_broker(str(tmp_path / "kafka-data"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_broker(kafka_broker_process: BrokerProcess) -> str:
    """The bootstrap address ("127.0.0.1:PORT") of a broker running for this test."""
    return kafka_broker_process.bootstrap


__all__ = ["kafka_broker", "kafka_broker_process", "start_broker", "BrokerProcess", "free_port"]
