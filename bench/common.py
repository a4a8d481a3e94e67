"""Shared pieces of the benchmark harness: machine facts, versions, timing, result files.

Every benchmark module returns a plain dict of figures; `write_result(name, figures)` stores it
as `bench/results/<name>.json` together with `machine()` and `versions()`, so a result file is
self-describing. Figures are floats or ints named `<what>_<unit>` (`_rps` records per second,
`_mb_s` MB (10^6 bytes) per second, `_us` microseconds, `_ms`, `_s`, `_bytes`), ratios are
named `<a>_vs_<b>` (a / b, both measured in the same run).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import sys
import time
from contextlib import closing
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
VENV_BIN = ROOT / ".venv" / "bin"

VALUE_BYTES = 100
MB = 1_000_000


def machine() -> dict[str, Any]:
    """CPU, memory, OS and interpreter facts of this machine."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_build": " ".join(platform.python_build()),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil
        info["memory_bytes"] = psutil.virtual_memory().total
        info["load_average"] = list(os.getloadavg())
    except Exception:  # psutil is a bench dependency; a missing figure is not fatal
        pass
    return info


def versions() -> dict[str, str]:
    """Installed versions of the packages the benchmarks exercise."""
    out = {}
    for name in ("logstore", "numpy", "crc32c", "cramjam", "aiokafka", "confluent-kafka", "kafka-python",
                 "hdrhistogram", "matplotlib", "pytest-benchmark", "psutil", "uvloop"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        import confluent_kafka
        out["librdkafka"] = confluent_kafka.libversion()[0]
    except Exception:
        pass
    import sqlite3
    out["sqlite3"] = sqlite3.sqlite_version
    return out


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_result(name: str, figures: dict[str, Any], *, quick: bool, results_dir: Path = RESULTS) -> Path:
    """Store `figures` as results/<name>.json with machine and version facts. Returns the path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    doc = {"name": name, "when": now_iso(), "quick": quick, "machine": machine(), "versions": versions(),
           "figures": figures}
    path = results_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


def best_of(n: int, fn: Callable[[], Any]) -> float:
    """The shortest of `n` timings of `fn()`: on a shared machine the minimum is the least noisy."""
    return min(timed(fn)[0] for _ in range(n))


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: Any = None) -> None:
    """Wait until 127.0.0.1:port accepts a connection; raise RuntimeError on timeout or if
    `proc` (a Popen) exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def say(msg: str) -> None:
    """Progress line on stderr (stdout carries child-process JSON)."""
    print(msg, file=sys.stderr, flush=True)
