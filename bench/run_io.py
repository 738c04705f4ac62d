"""What the bench scripts that re-score a finished `pinsage run --output` directory share: finding its artifacts
and writing their JSON to bench/results/<prefix>-<run dir name>.json."""

from __future__ import annotations

import argparse
import json
import os

from pipeline import driver
from schema import graph as graph_io

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def run_artifacts(ap: argparse.ArgumentParser, run: str, need_model: bool = False):
    """(graph, model dir or None) of a finished run; a usage error (exit 2) naming the directory otherwise."""
    graph_dir = driver.latest_artifact_dir(run, "GraphGen", "graph")
    model_dir = driver.latest_artifact_dir(run, "PinSageTrainer", "model")
    if graph_dir is None or (need_model and model_dir is None):
        what = "GraphGen graph or PinSageTrainer model" if need_model else "GraphGen graph"
        ap.error(f"--run {run}: no {what} there (a finished `pinsage run`?)")
    return graph_io.load_graph(graph_dir), model_dir


def write_result(prefix: str, run: str, payload: dict, out: str | None = None) -> str:
    """Writes `payload` to `out` (default RESULTS/<prefix>-<run dir name>.json) and says where."""
    out = out or os.path.join(RESULTS, f"{prefix}-{os.path.basename(os.path.normpath(run))}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(payload, f, indent=2)
    print(f"-> {out}")
    return out
