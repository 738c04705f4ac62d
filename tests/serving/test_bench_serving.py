"""bench/serving.py runs end to end at a tiny size (--smoke): a model version built and served by `python -m
serving`, loaded by gRPC clients, figures written as JSON; recommend with a context tower, batched and unbatched.
Run as a subprocess: tests do not import benchmarks (tests/test_layers.py)."""

import json
import subprocess
import sys

from tests.fixtures import REPO_ROOT


def run_bench(tmp_path, *flags) -> dict:
    out = tmp_path / "out.json"
    cmd = [sys.executable, "-m", "bench.serving", "--smoke", "--work-dir", str(tmp_path), "--out", str(out), *flags]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_recommend_workload_batched_and_unbatched(tmp_path):
    res = run_bench(tmp_path, "--workload", "recommend", "--enable-batching")
    rows = res["rows"]
    assert sorted((r["server"], r["clients"]) for r in rows) == [
        (s, c) for s in ("batched", "unbatched") for c in (1, 2)
    ]
    for r in rows:
        assert r["workload"] == "recommend" and r["history"] == 50 and r["items"] == 2000
        assert r["requests"] > 0 and r["errors"] == 0, r
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert set(res["qps_ratio_batched_over_unbatched"]) == {"1", "2"}
    assert res["workload"] == "recommend" and "15 ms" in res["target"]


def test_related_workload_is_the_default(tmp_path):
    res = run_bench(tmp_path, "--clients", "2")
    (row,) = res["rows"]
    assert row["workload"] == "related" and row["history"] is None and row["clients"] == 2
    assert row["requests"] > 0 and row["errors"] == 0
