"""The benchmark harness runs end to end, so it does not rot between full runs.

`python -m bench --quick --tiny` (tiny sizes: a few thousand records, 2 MB cleaner log) against
the real broker started with `logstore serve`, results into tmp_path: every section must finish,
write its JSON with machine facts and figures, draw its plots and print the summary table. The
figures themselves mean nothing at these sizes and are not judged, only that they were measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_harness_runs_end_to_end(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--results", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "logstore benchmarks (QUICK)" in r.stdout

    summary = json.loads((tmp_path / "summary-quick.json").read_text())
    assert summary["figures"]["errors"] == {}
    assert summary["machine"]["cpus"] >= 1 and "numpy" in summary["versions"]

    emb = json.loads((tmp_path / "embedded-quick.json").read_text())["figures"]
    for key in ("plain_append_rps", "sqlite_append_rps", "append_rps", "append_batch_rps", "read_rps",
                "read_pure_rps", "flush1_append_rps", "index_lookup_us", "open_partitions_clean_s"):
        assert emb[key] > 0, key
    assert emb["fast_decoder"] == "aiokafka._crecords"
    assert all(row["recovery_bytes_scanned"] >= row["log_bytes"] for row in emb["recovery"])

    micro = json.loads((tmp_path / "micro-quick.json").read_text())["figures"]
    assert micro["pytest_exit"] == 0
    assert micro["test_decode_batch[fast]"]["records_per_s"] > 0
    assert micro["test_recovery_scan_per_mb"]["mb_s"] > 0

    brk = json.loads((tmp_path / "broker-quick.json").read_text())["figures"]
    assert "logstore_error" not in brk, brk.get("logstore_error")
    assert brk["tcp_baseline"]["mb_s"] > 0
    ls = brk["logstore"]
    for wl in ("produce_acks1", "consume", "produce_kafka_python", "consume_kafka_python"):
        assert "error" not in ls[wl], (wl, ls[wl])
        assert ls[wl]["rps"] > 0, wl
    assert ls["consume"]["records"] == brk["records"]
    assert ls["consume_kafka_python"]["records"] == ls["produce_kafka_python"]["records"]
    lat = brk["latency_1000"]
    assert lat["received"] == lat["sent"] and 0 < lat["p50_us"] <= lat["p99_us"]
    assert [row["partitions"] for row in brk["scaling"]] == [3]
    assert all(not row.get("error") and row["consumed"] == row["produced"] == 2000 and row["rss_bytes"] > 0 for row in brk["scaling"])

    cleaner = json.loads((tmp_path / "cleaner-quick.json").read_text())
    assert cleaner["clean_mb_s"] > 0

    for png in ("embedded-quick.png", "broker_throughput-quick.png", "latency-quick.png", "scaling-quick.png"):
        assert (tmp_path / png).stat().st_size > 1000, png
