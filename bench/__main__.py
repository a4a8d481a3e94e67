"""The benchmark harness: `make bench` (`python -m bench`), or `make bench QUICK=1` (`--quick`).

    .venv/bin/python -m bench [--quick] [--only micro,embedded,broker,cleaner] [--no-peers]

Runs each section in its own process, in this order, so one section's garbage, page cache
habits or crash cannot colour another's figures:
  micro     pytest-benchmark over bench/micro/ (codec, CRC, index lookup, segment append/read,
            recovery scan)                                   -> results/micro.json
  embedded  bench/embedded.py (API append/read against a plain file and sqlite3, flush.messages=1,
            index lookup, open/recovery scaling)             -> results/embedded.json
  broker    bench/broker_e2e.py (real clients against `logstore serve` in another process,
            loopback TCP baseline, latency, partition scaling, peers)   -> results/broker.json
  cleaner   bench/bench_cleaner.py (log compaction throughput; owned by the cleaner's author)
                                                             -> results/cleaner.json
  fsync     bench/bench_fsync.py (acks=all group commit; another author's; full runs only)
  groups    bench/bench_groups.py (rebalance, OffsetCommit; another author's; full runs only)
With --quick every result file is `<name>-quick.json`, so a quick run never overwrites a full one.
Then writes PNG plots beside the JSON, `summary.json` (every headline figure against its target),
and prints the summary table. A section that fails is reported in the table and the summary;
the others still run. Budget: under 10 minutes on 2 cores, under 1 minute with --quick.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .common import RESULTS, ROOT, say, write_result

SECTIONS = ("micro", "embedded", "broker", "cleaner", "fsync", "groups")
# scripts by other authors with no quick mode and a fixed output file: full runs only
FULL_ONLY = {"fsync": ("bench.bench_fsync", ["--seconds", "3"], "fsync.json"),
             "groups": ("bench.bench_groups", ["--seconds", "2"], "groups.json")}


def _suffix(quick: bool) -> str:
    return "-quick" if quick else ""


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, timeout=timeout, capture_output=True, text=True,
                           env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - t0, f"timed out after {timeout:.0f} s"
    tail = "\n".join((r.stderr or "").strip().splitlines()[-5:])
    return r.returncode, time.perf_counter() - t0, tail


def run_micro(quick: bool, results: Path, tiny: bool = False) -> dict[str, Any]:
    raw = results / f"micro-raw{_suffix(quick)}.json"
    cmd = [sys.executable, "-m", "pytest", "-q", str(ROOT / "bench" / "micro"), "-p", "no:cacheprovider",
           "--timeout=300", f"--benchmark-json={raw}", "--benchmark-columns=min,mean,median,rounds",
           "--benchmark-max-time=" + ("0.05" if quick else "0.5"), "--benchmark-min-rounds=" + ("2" if quick else "5")]
    if tiny:
        cmd += ["--benchmark-min-rounds=1", "--benchmark-max-time=0.000001", "--benchmark-warmup=off"]
    rc, dt, tail = _run(cmd, 240, {"BENCH_TINY": "1"} if tiny else None)
    if not raw.exists():
        raise RuntimeError(f"pytest-benchmark wrote nothing (exit {rc}): {tail}")
    data = json.loads(raw.read_text())
    fig: dict[str, Any] = {"pytest_exit": rc, "seconds": dt}
    for b in data.get("benchmarks", []):
        st, extra = b["stats"], b.get("extra_info", {})
        row = {"mean_us": st["mean"] * 1e6, "median_us": st["median"] * 1e6, "min_us": st["min"] * 1e6,
               "rounds": st["rounds"]}
        if "records" in extra:
            row["records_per_s"] = extra["records"] / st["median"]
        if "bytes" in extra:
            row["mb_s"] = extra["bytes"] / st["median"] / 1e6
        fig[b["name"]] = row
    if rc != 0:
        fig["error"] = f"pytest exit {rc}: {tail}"
    write_result("micro" + _suffix(quick), fig, quick=quick, results_dir=results)
    return fig


def _module(name: str, module: str, timeout: float, extra: list[str],
            tiny_args: list[str]) -> Callable[[bool, Path, bool], dict]:
    def run(quick: bool, results: Path, tiny: bool = False) -> dict[str, Any]:
        cmd = [sys.executable, "-m", module, *(["--quick"] if quick else []), *extra, *(tiny_args if tiny else [])]
        if module == "bench.bench_cleaner":
            cmd += ["--out", str(results / f"{name}{_suffix(quick)}.json")]
        else:
            cmd += ["--results", str(results)]
        rc, dt, tail = _run(cmd, timeout)
        path = results / f"{name}{_suffix(quick)}.json"
        if rc != 0:
            raise RuntimeError(f"{module} exited {rc} after {dt:.0f} s: {tail}")
        doc = json.loads(path.read_text())
        return doc.get("figures", doc)
    return run


def _script(module: str, args: list[str], result: str) -> Callable[[bool, Path, bool], dict]:
    def run(quick: bool, results: Path, tiny: bool = False) -> dict[str, Any]:
        rc, dt, tail = _run([sys.executable, "-m", module, *args], 300)
        if rc != 0:
            raise RuntimeError(f"{module} exited {rc} after {dt:.0f} s: {tail}")
        return json.loads((RESULTS / result).read_text())
    return run


def headline(res: dict[str, dict]) -> list[tuple[str, Any, str, bool | None, str]]:
    """(figure, value, target text, met?, unit) rows for the summary table."""
    rows: list[tuple[str, Any, str, bool | None, str]] = []
    e, b, c = res.get("embedded") or {}, res.get("broker") or {}, res.get("cleaner") or {}

    def add(name: str, value: Any, target: str, ok: bool | None, unit: str = "") -> None:
        rows.append((name, value, target, ok, unit))

    if e:
        add("embedded append (Log.append, 1,000/batch)", e.get("append_rps"), ">= 2 M/s", _ge(e.get("append_rps"), 2e6), "rec/s")
        add("embedded append_batch (pre-encoded)", e.get("append_batch_rps"), ">= 2 M/s",
            _ge(e.get("append_batch_rps"), 2e6), "rec/s")
        add("  plain framed file append (baseline)", e.get("plain_append_rps"), "", None, "rec/s")
        add("  sqlite3 WAL append (baseline)", e.get("sqlite_append_rps"), "", None, "rec/s")
        add("  append / plain file", e.get("append_vs_plain"), ">= 0.70", _ge(e.get("append_vs_plain"), 0.7), "x")
        add("  append_batch / plain file", e.get("append_batch_vs_plain"), ">= 0.70",
            _ge(e.get("append_batch_vs_plain"), 0.7), "x")
        add("  append / sqlite3", e.get("append_vs_sqlite"), ">= 4", _ge(e.get("append_vs_sqlite"), 4), "x")
        add("  append_batch / sqlite3", e.get("append_batch_vs_sqlite"), ">= 4",
            _ge(e.get("append_batch_vs_sqlite"), 4), "x")
        add("embedded read (Log.read, fast decoder)", e.get("read_rps"), ">= 2 M/s", _ge(e.get("read_rps"), 2e6), "rec/s")
        add("  read with GC paused", e.get("read_gc_off_rps"), "", None, "rec/s")
        add("  read, pure-Python decoder", e.get("read_pure_rps"), "", None, "rec/s")
        add("  plain file parse (baseline)", e.get("plain_read_rps"), "", None, "rec/s")
        add("  sqlite3 SELECT (baseline)", e.get("sqlite_read_rps"), "", None, "rec/s")
        add("flush.messages=1 append", e.get("flush1_append_rps"), "", None, "rec/s")
        add(f"index lookup ({e.get('index_entries', 0):,} entries)", e.get("index_lookup_us"), "<= 5 us",
            _le(e.get("index_lookup_us"), 5), "us")
        add(f"clean open, {e.get('open_partitions', 0):,} partitions", e.get("open_partitions_clean_s"), "<= 1 s",
            _le(e.get("open_partitions_clean_s"), 1) if e.get("open_partitions") == 1000 else None, "s")
        for r in e.get("recovery") or []:
            add(f"recovery scan, {r['segments']} segments", r.get("recovery_mb_s"), "", None, "MB/s")
    if b:
        ls = b.get("logstore") or {}
        if b.get("logstore_error"):
            add("broker", "not run", b["logstore_error"][:60], False)
        tcp = b.get("tcp_baseline") or {}
        add("loopback TCP, same bytes (baseline)", tcp.get("rps_equivalent"), "", None, "rec/s")
        for wl, target, lim in (("produce_acks1", ">= 1 M/s", 1e6), ("produce_acksall", "", None),
                                ("consume", ">= 1.5 M/s", 1.5e6), ("produce_kafka_python", "", None),
                                ("consume_kafka_python", "", None)):
            r = ls.get(wl)
            if r is None:
                continue
            if "error" in r:
                add(f"broker {wl}", "error", r["error"][:60], False)
                continue
            add(f"broker {wl}", r.get("rps"), target, _ge(r.get("rps"), lim) if lim else None, "rec/s")
            ceiling = (b.get("client_ceiling") or {}).get({"produce_acks1": "produce", "consume": "consume"}.get(wl, ""))
            if ceiling and ceiling.get("rps"):
                add(f"  client alone, no broker work (ceiling)", ceiling["rps"], "", None, "rec/s")
                add(f"  {wl} / client ceiling", r.get("rps", 0) / ceiling["rps"], "", None, "x")
        for key in ("latency_10000", "latency_10000_linger5", "latency_100000", "latency_100000_linger5"):
            r = b.get(key)
            if not r:
                continue
            if "error" in r:
                add(f"{key} p99", "error", r["error"][:60], False)
                continue
            ok = _le(r.get("p99_us"), 5000) if key == "latency_10000" else None
            add(f"e2e latency @{int(r['rate']):,}/s linger {r.get('linger_ms', 1)} ms p50/p99/p99.9",
                f"{r['p50_us'] / 1000:.2f} / {r['p99_us'] / 1000:.2f} / {r['p999_us'] / 1000:.2f}",
                "p99 <= 5 ms" if ok is not None else "", ok, "ms")
        for r in b.get("scaling") or []:
            add(f"broker {r['partitions']:,} partitions produce / consume",
                f"{(r.get('produce_rps') or 0) / 1e3:,.0f} K / {(r.get('consume_rps') or 0) / 1e3:,.0f} K",
                "", None if not r.get("error") else False, "rec/s")
            if r.get("rss_bytes"):
                ok = _le(r["rss_bytes"], 150 * 2**20) if r["partitions"] == 1000 else None
                add(f"  broker RSS after the {r['partitions']:,}-partition step", r["rss_bytes"] / 2**20,
                    "<= 150 MB" if ok is not None else "", ok, "MiB")
        for name, pr in (b.get("peers") or {}).items():
            if "error" in pr:
                add(f"peer {name}", "error", pr["error"][:60], None)
                continue
            for wl in ("produce_acks1", "consume"):
                r = pr.get(wl) or {}
                if "rps" in r:
                    ratio = r.get("logstore_vs_peer")
                    add(f"peer {name} {wl}", r["rps"], f"logstore/peer = {ratio:.2f}" if ratio else "", None, "rec/s")
        for name, why in (b.get("peers_skipped") or {}).items():
            add(f"peer {name}", "skipped", why[:60], None)
    if c:
        add("cleaner throughput", c.get("clean_mb_s"), "", None, "MiB/s")
        add("  clean / read records", c.get("ratio_to_read_records"), "", None, "x")
    f = res.get("fsync") or {}
    if f:
        add("acks=all + flush.messages=1, 1 producer", (f.get("one_producer") or {}).get("acks_per_s"), "", None,
            "req/s")
        add("  16 producers (group commit)", (f.get("sixteen_producers") or {}).get("acks_per_s"),
            f"fsync baseline {f.get('fsync_baseline_per_s')}/s", None, "req/s")
    g = res.get("groups") or {}
    if g:
        add("group rebalance, 8 members (in-process)", g.get("rebalance_8_ms"), "", None, "ms")
        add("OffsetCommit (in-process)", g.get("commit_rps"), "", None, "req/s")
    return rows


def _ge(v: Any, lim: float | None) -> bool | None:
    return None if not isinstance(v, (int, float)) or lim is None else v >= lim


def _le(v: Any, lim: float) -> bool | None:
    return None if not isinstance(v, (int, float)) else v <= lim


def _fmt(v: Any, unit: str) -> str:
    if isinstance(v, float) or isinstance(v, int):
        if unit == "rec/s":
            return f"{v / 1e6:.2f} M" if v >= 1e5 else f"{v:,.0f}"
        if unit in ("x",):
            return f"{v:.2f}"
        if unit in ("us", "s", "ms"):
            return f"{v:.3g}"
        return f"{v:,.1f}"
    return str(v)


def print_table(rows: list, errors: dict[str, str], elapsed: float, quick: bool) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a runtime dependency; plain text if it is somehow missing
        for name, v, target, ok, unit in rows:
            print(f"{name:55s} {_fmt(v, unit):>14s} {unit:6s} {target:20s} {'' if ok is None else ok}")
        return
    t = Table(title=f"logstore benchmarks{' (QUICK)' if quick else ''}: {elapsed:.0f} s", show_lines=False)
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("unit")
    t.add_column("target / note")
    t.add_column("", justify="center")
    for name, v, target, ok, unit in rows:
        mark = "" if ok is None else ("[green]met[/]" if ok else "[red]missed[/]")
        t.add_row(name, _fmt(v, unit), unit, target, mark)
    for sec, err in errors.items():
        t.add_row(f"[red]section {sec} failed[/]", "", "", err[:80], "[red]error[/]")
    Console(width=130).print(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: the whole run in under a minute")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--no-peers", action="store_true", help="do not run the peer brokers")
    ap.add_argument("--results", default=str(RESULTS), help="directory for JSON and PNG results")
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the smoke test's sizes
    args = ap.parse_args(argv)
    quick = args.quick or args.tiny
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    broker_extra = ["--no-peers"] if args.no_peers else []
    runners: dict[str, Callable[[bool, Path, bool], dict]] = {
        "micro": run_micro,
        "embedded": _module("embedded", "bench.embedded", 400, [], ["--tiny"]),
        "broker": _module("broker", "bench.broker_e2e", 420, broker_extra, ["--tiny"]),
        "cleaner": _module("cleaner", "bench.bench_cleaner", 300, [], ["--size-mb", "2"]),
    }
    res: dict[str, dict] = {}
    errors: dict[str, str] = {}
    durations: dict[str, float] = {}
    t_all = time.perf_counter()
    for name, (module, extra, result) in FULL_ONLY.items():
        runners[name] = _script(module, extra, result)
    for sec in SECTIONS:
        if sec not in wanted:
            continue
        if sec in FULL_ONLY and quick:
            say(f"== {sec}: not run with --quick ({FULL_ONLY[sec][0]} has no quick mode)")
            continue
        say(f"== {sec}")
        t0 = time.perf_counter()
        try:
            res[sec] = runners[sec](quick, results, args.tiny)
        except Exception as e:
            errors[sec] = str(e)
            say(f"   {sec} failed: {e}")
        durations[sec] = time.perf_counter() - t0
        say(f"   {sec}: {durations[sec]:.0f} s")
    elapsed = time.perf_counter() - t_all
    plots: list[str] = []
    try:
        from .plots import plot_all
        plots = [str(p) for p in plot_all(res, results, suffix=_suffix(quick))]
    except Exception as e:
        errors["plots"] = f"{type(e).__name__}: {e}"
    rows = headline(res)
    summary = {"sections_seconds": durations, "total_seconds": elapsed, "errors": errors, "plots": plots,
               "headline": [{"figure": n, "value": v, "unit": u, "target": t, "met": ok} for n, v, t, ok, u in rows]}
    # a partial run (--only) must not replace the summary of a whole one
    name = "summary" if set(wanted) == set(SECTIONS) else "summary-only-" + "-".join(w for w in SECTIONS if w in wanted)
    path = write_result(name + _suffix(quick), summary, quick=quick, results_dir=results)
    print_table(rows, errors, elapsed, quick)
    say(f"results: {results} (summary: {path.name}; plots: {', '.join(Path(p).name for p in plots) or 'none'})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
