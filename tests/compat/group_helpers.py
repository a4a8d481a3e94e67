"""What the consumer-group tests with real clients share (tests/compat/test_groups_clients.py,
test_qa_groups.py, test_consumer_protocol.py and tests/test_cli_groups_consumer_protocol.py):

- `BROKER_PROPS` / `FAST_REBALANCE`: broker settings under which rebalances take about a second;
  `start(data_dir)` starts `logstore serve` with them, `running_broker(data_dir)` is the body of a
  fixture (`yield from running_broker(tmp_path / "data")`);
- `wait_for(pred, timeout, what, hold=...)`: a deadline on an observed condition;
- `MemberProcess`: a classic group member running a script in its own process (SIGKILL is a real
  crash), `covers(...)`: whether a set of such members owns a set of partitions exactly once;
- `tps(topic, n)`: "topic:p" names; `admin(bootstrap)` / `create_topic(...)`: a confluent
  AdminClient and a new topic (the `members` fixture, killing a test's MemberProcesses after it,
  is in tests/compat/conftest.py);
- `commit_each(...)`: a confluent-kafka consumer committing every record it polls;
- `ConsumerThread` / `consumer_conf(...)`: a KIP-848 (`group.protocol=consumer`) confluent-kafka
  consumer polled by a thread of the test process.

Modules importing this first skip without confluent-kafka (`pytest.importorskip("confluent_kafka")`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Callable, Iterator

from broker.pytest_plugin import BrokerProcess, start_broker

FAST_REBALANCE = {
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
}
BROKER_PROPS = {"offsets.topic.num.partitions": "5", **FAST_REBALANCE}


# -- the broker as a real process (the project's pytest plugin starts `logstore serve`) -------------------
def start(data_dir: Path, **kw) -> BrokerProcess:
    """`logstore serve` on `data_dir` with BROKER_PROPS; `kw` goes to start_broker (port=...)."""
    return start_broker(str(data_dir), overrides=BROKER_PROPS, **kw)


def running_broker(data_dir: Path) -> Iterator[BrokerProcess]:
    """A fixture's body: the broker of `start(data_dir)`, stopped after the test."""
    b = start(data_dir)
    yield b
    b.stop()


def wait_for(pred: Callable[[], object], timeout: float, what: str, hold: float = 1.0,
             interval: float = 0.05) -> float:
    """Wait until `pred()` is truthy and stays so for `hold` seconds (0: the first time it is),
    checking every `interval` seconds; returns when it first held. Fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    since = None
    while time.monotonic() < deadline:
        if pred():
            since = since or time.monotonic()
            if time.monotonic() - since >= hold:
                return since
        else:
            since = None
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


# -- a classic group member in its own process ------------------------------------------------------------
class MemberProcess:
    """A group member: `script` run by this Python in a process of its own. The script prints its
    assignment (a JSON list) whenever it changes, {"revoked": n} from its rebalance listener and
    {"assigning": n} when it starts a (slow) assignment as the leader. `assignment` is its latest;
    `revocations` and `assignings` count those events."""

    def __init__(self, script: str, args: list[str], stderr: int | IO) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                                     stderr=stderr, text=True)
        self.assignment: list | None = None
        self.revocations = 0
        self.assignings = 0
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                got = json.loads(line)
            except ValueError:
                continue
            if isinstance(got, dict):
                if "revoked" in got:
                    self.revocations += 1
                elif "assigning" in got:
                    self.assignings += 1
            else:
                self.assignment = got

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def covers(members: list[MemberProcess], parts: list, idle: int = 0) -> bool:
    """Every partition of `parts` owned by exactly one member; exactly `idle` members own none."""
    got = [m.assignment for m in members]
    if any(a is None for a in got):
        return False
    flat = [p for a in got for p in a]  # type: ignore[union-attr]
    return sorted(flat) == sorted(parts) and sum(1 for a in got if not a) == idle


def commit_each(c, got: list[int], n: int, deadline: float, poll_s: float) -> None:
    """Poll the confluent-kafka consumer `c` (`poll_s` seconds a poll) until `got` holds `n` offsets
    or time.monotonic() passes `deadline`, appending each record's offset and committing it
    synchronously before the next poll."""
    while len(got) < n and time.monotonic() < deadline:
        msg = c.poll(poll_s)
        if msg is None or msg.error():
            continue
        got.append(msg.offset())
        c.commit(message=msg, asynchronous=False)


# -- a KIP-848 consumer polled by a thread of the test process ----------------------------------------------
def consumer_conf(bootstrap: str, group: str, **extra) -> dict:
    """A `group.protocol=consumer` consumer's configuration: from the earliest offset, no auto
    commit, quiet; `extra` on top."""
    c = {"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
         "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 3}
    c.update(extra)
    return c


class ConsumerThread:
    """A confluent-kafka consumer subscribed to `topics`, polled by its own thread; `assignment`
    is its latest set of (topic, partition), `errors` its consume and commit errors. Subclasses
    keep what they need of each record in `on_message` (called by the thread; the subclass sets
    its own fields before calling this constructor). `commit()` has the thread commit its
    positions and waits for it (checking every `wait_interval` seconds)."""

    def __init__(self, conf: dict, topics: list[str], wait_interval: float = 0.05) -> None:
        from confluent_kafka import Consumer
        self.consumer = Consumer(conf)
        self.consumer.subscribe(topics)
        self.assignment: frozenset[tuple[str, int]] = frozenset()
        self.errors: list[str] = []
        self.wait_interval = wait_interval
        self._stop = threading.Event()
        self._commit = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def on_message(self, m) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            m = self.consumer.poll(0.05)
            if m is not None:
                if m.error():
                    self.errors.append(str(m.error()))
                else:
                    self.on_message(m)
            if self._commit.is_set():
                try:
                    self.consumer.commit(asynchronous=False)
                except Exception as e:  # noqa: BLE001 -- nothing consumed yet, etc.: kept in `errors`
                    self.errors.append(f"commit: {e}")
                self._commit.clear()
            self.assignment = frozenset((tp.topic, tp.partition) for tp in self.consumer.assignment())

    def commit(self, timeout: float = 25.0) -> None:
        self._commit.set()
        wait_for(lambda: not self._commit.is_set(), timeout, "the commit", hold=0, interval=self.wait_interval)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.consumer.close()


# -- what the group test modules build their scenarios from --------------------------------------------
def tps(topic: str, n: int, start: int = 0) -> list[str]:
    return [f"{topic}:{i}" for i in range(start, n)]


def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from confluent_kafka.admin import NewTopic
    a = admin(bootstrap)  # kept referenced until the future is done
    a.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=20)
