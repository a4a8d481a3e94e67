"""PNG plots of the benchmark results (matplotlib, headless Agg backend).

`plot_all(results)` takes the figures dicts by result name (as `bench/__main__.py` collects them)
and writes `bench/results/<name>.png`; a plot whose data is missing is left out. Returns paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import RESULTS


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _bars(ax, labels: list[str], values: list[float], title: str, unit: str, colors: list[str]) -> None:
    ax.barh(labels, values, color=colors)
    ax.set_title(title)
    ax.set_xlabel(unit)
    ax.invert_yaxis()
    top = max(values) if values else 1
    for i, v in enumerate(values):
        ax.text(v * 1.03 if ax.get_xscale() == "log" else v + top * 0.01, i, f"{v / 1e6:.2f} M" if v >= 1e5 else f"{v:,.0f}", va="center", fontsize=8)


def plot_embedded(fig: dict, out: Path) -> Path | None:
    keys = [("plain_append_rps", "plain file append", "grey"), ("sqlite_append_rps", "sqlite3 append", "grey"),
            ("append_rps", "Log.append", "tab:blue"), ("append_batch_rps", "Log.append_batch", "tab:blue"),
            ("plain_read_rps", "plain file read", "grey"), ("sqlite_read_rps", "sqlite3 read", "grey"),
            ("read_rps", "Log.read (fast decoder)", "tab:green"), ("read_gc_off_rps", "Log.read, GC paused", "tab:green"),
            ("read_pure_rps", "Log.read (pure decoder)", "tab:green")]
    rows = [(lab, fig[k], c) for k, lab, c in keys if isinstance(fig.get(k), (int, float))]
    if not rows:
        return None
    plt = _plt()
    f, ax = plt.subplots(figsize=(8, 4.5))
    _bars(ax, [r[0] for r in rows], [r[1] for r in rows],
          f"Embedded: {fig.get('records', 0):,} records of {fig.get('value_bytes', 100)} B", "records/s",
          [r[2] for r in rows])
    f.tight_layout()
    f.savefig(out, dpi=110)
    plt.close(f)
    return out


def plot_broker_throughput(fig: dict, out: Path) -> Path | None:
    rows = []
    tcp = fig.get("tcp_baseline", {}).get("rps_equivalent")
    if tcp:
        rows.append(("loopback TCP (same bytes)", tcp, "grey"))
    ls = fig.get("logstore") or {}
    for wl, lab in (("produce_acks1", "produce acks=1"), ("produce_acksall", "produce acks=all"),
                    ("consume", "consume"), ("produce_kafka_python", "kafka-python produce"),
                    ("consume_kafka_python", "kafka-python consume")):
        v = (ls.get(wl) or {}).get("rps")
        if v:
            rows.append((f"logstore {lab}", v, "tab:blue"))
    for name, pr in (fig.get("peers") or {}).items():
        for wl, lab in (("produce_acks1", "produce acks=1"), ("consume", "consume")):
            v = ((pr or {}).get(wl) or {}).get("rps")
            if v:
                rows.append((f"{name} {lab}", v, "tab:orange"))
    if not rows:
        return None
    plt = _plt()
    f, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    _bars(ax, [r[0] for r in rows], [r[1] for r in rows],
          f"Broker end to end: {fig.get('records', 0):,} records of 100 B\n(confluent-kafka unless named)",
          "records/s (log scale)", [r[2] for r in rows])
    ax.set_xscale("log")
    f.tight_layout()
    f.savefig(out, dpi=110)
    plt.close(f)
    return out


def plot_latency(fig: dict, out: Path) -> Path | None:
    series = [(k, v) for k, v in fig.items() if k.startswith("latency_") and isinstance(v, dict) and "p50_us" in v]
    if not series:
        return None
    plt = _plt()
    f, ax = plt.subplots(figsize=(9.5, 4))
    pct = ["p50_us", "p99_us", "p999_us", "max_us"]
    width = 0.8 / len(series)
    for i, (k, v) in enumerate(series):
        xs = [j + i * width for j in range(len(pct))]
        ax.bar(xs, [v[p] / 1000 for p in pct], width,
               label=f"{int(v['rate']):,} records/s, linger.ms={v.get('linger_ms', 1)}")
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(pct))], ["p50", "p99", "p99.9", "max"])
    ax.set_yscale("log")
    ax.set_ylabel("produce → consume latency, ms (log scale)")
    ax.set_title("End-to-end latency (confluent-kafka, acks=1)")
    ax.axhline(5, color="red", lw=0.8, ls="--", label="target p99 5 ms")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    f.tight_layout()
    f.savefig(out, dpi=110)
    plt.close(f)
    return out


def plot_scaling(broker: dict, embedded: dict, out: Path) -> Path | None:
    rows = [r for r in broker.get("scaling", []) if r.get("produce_rps")]
    rec = embedded.get("recovery") or []
    if not rows and not rec:
        return None
    plt = _plt()
    f, axes = plt.subplots(1, 3, figsize=(13, 4))
    if rows:
        ps = [r["partitions"] for r in rows]
        axes[0].plot(ps, [r["produce_rps"] for r in rows], "o-", label="produce")
        axes[0].plot(ps, [r.get("consume_rps") or 0 for r in rows], "s-", label="consume")
        axes[0].set_xscale("log")
        axes[0].set_xlabel("partitions")
        axes[0].set_ylabel("records/s")
        axes[0].set_title("Throughput vs partitions")
        axes[0].legend()
        axes[1].plot(ps, [(r.get("rss_bytes") or 0) / 2**20 for r in rows], "o-")
        axes[1].axhline(150, color="red", lw=0.8, ls="--", label="target 150 MB")
        axes[1].set_xscale("log")
        axes[1].set_xlabel("partitions in the newest topic (topics accumulate)")
        axes[1].set_ylabel("broker RSS, MiB")
        axes[1].set_title("Broker memory")
        axes[1].legend()
    if rec:
        segs = [r["segments"] for r in rec]
        axes[2].plot(segs, [r["clean_open_s"] * 1000 for r in rec], "o-", label="clean open")
        axes[2].plot(segs, [r["recovery_open_s"] * 1000 for r in rec], "s-", label="full recovery scan")
        axes[2].set_xscale("log")
        axes[2].set_yscale("log")
        axes[2].set_xlabel(f"segments ({rec[0]['log_bytes'] / 1e6:.0f} MB log)")
        axes[2].set_ylabel("ms")
        axes[2].set_title("Open / recovery time")
        axes[2].legend()
    f.tight_layout()
    f.savefig(out, dpi=110)
    plt.close(f)
    return out


def plot_all(results: dict[str, dict[str, Any]], results_dir: Path = RESULTS, suffix: str = "") -> list[Path]:
    done = []
    emb = results.get("embedded") or {}
    brk = results.get("broker") or {}
    for p in (plot_embedded(emb, results_dir / f"embedded{suffix}.png"),
              plot_broker_throughput(brk, results_dir / f"broker_throughput{suffix}.png"),
              plot_latency(brk, results_dir / f"latency{suffix}.png"),
              plot_scaling(brk, emb, results_dir / f"scaling{suffix}.png")):
        if p is not None:
            done.append(p)
    return done
