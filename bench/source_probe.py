"""The neighbourhood-source probe (pipeline/sampling/probe.py, NeighborhoodSampler's `auto`) on bundled datasets and
their order-free copies: the probe's scores for each source and its choice, without training anything.

    .venv/bin/python bench/source_probe.py --datasets ml-100k ml-100k-unordered ml-1m ml-1m-unordered
    .venv/bin/python bench/source_probe.py --datasets ml-1m --beam   # + the Beam transition counts, timed

Graphs are built in-process as GraphGen builds them (pipeline/graph/from_csv.py) with the pipeline's sampling
defaults (configs.SAMPLING); 'mixed' is scored too, for reference (auto does not consider it). --beam also runs
the transition counts as the Beam transform through NeighborhoodSampler's executor (DirectRunner, this process)
and checks the table equals the in-memory one.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from pipeline.configs import SAMPLING  # noqa: E402
from pipeline.data import datasets  # noqa: E402
from pipeline.graph.from_csv import graph_from_csv  # noqa: E402
from pipeline.sampling import probe  # noqa: E402
from pipeline.sampling import random_walks as rw  # noqa: E402
from pipeline.sampling import transitions as sn  # noqa: E402


def probe_dataset(name: str, tmp: str) -> dict:
    data_dir = os.path.join(tmp, name)
    datasets.materialise(name, data_dir)
    g = graph_from_csv(data_dir)
    params = rw.WalkParams()
    queries = probe.queries_from_graph(g, SAMPLING.probe_contexts, SAMPLING.seed)
    out = {"dataset": name, "contexts": len(queries), "scores": {}, "seconds": {}}
    tables = {}
    for source in ("transitions", "random_walk", "mixed"):
        t0 = time.perf_counter()
        tables[source] = sn.neighborhoods_from_graph(g, source, params, window=SAMPLING.pair_window)
        out["seconds"][source] = round(time.perf_counter() - t0, 2)
        out["scores"][source] = probe.score(tables[source][0], queries)
    out["chosen"] = probe.choose(out["scores"])
    return out, g, tables


def beam_transitions(g, tables: dict, tmp: str) -> dict:
    """The Beam transform on this graph via the executor (beam_min_interactions=0); equal to the in-memory one?"""
    from pipeline.components import artifacts
    from pipeline.components.neighborhood_sampler import Executor
    from schema import graph as graph_io
    from schema import neighborhoods as neighborhood_io

    uri = os.path.join(tmp, "graph")
    graph_io.write_graph(g, uri)
    gin, out = artifacts.PinSageGraph(), artifacts.Neighborhoods()
    gin.uri, out.uri = uri, os.path.join(tmp, "beam")
    props = dict(num_walks=1, walk_length=1, restart_prob=0.5, top_t=SAMPLING.top_t, seed=0, strategy="in_memory")
    props.update(shard_size=SAMPLING.shard_size, source="transitions", window=SAMPLING.pair_window)
    t0 = time.perf_counter()
    Executor().Do({"graph": [gin]}, {"neighborhoods": [out]}, {**props, "beam_min_interactions": 0})
    seconds = time.perf_counter() - t0
    nbr, w = neighborhood_io.load_neighborhoods(out.uri, top_t=SAMPLING.top_t)
    want_nbr, want_w, _ = tables["transitions"]
    equal = bool(np.array_equal(nbr, want_nbr) and np.array_equal(w, want_w))
    return {"beam_transitions_seconds": round(seconds, 1), "beam_equals_in_memory": equal}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-100k-unordered", "ml-1m", "ml-1m-unordered"])
    ap.add_argument("--beam", action="store_true", help="also time the Beam transition counts (DirectRunner)")
    ap.add_argument("--out", default="bench/results/source_probe.json")
    a = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.datasets:
            r, g, tables = probe_dataset(name, tmp)
            if a.beam:
                r.update(beam_transitions(g, tables, os.path.join(tmp, name + "-beam")))
            results.append(r)
            cells = "  ".join(
                f"{s}: MRR@{v['top_t']} {v['mrr']:.4f}±{v['mrr_se']:.4f} HR@{v['top_t']} {v['hr_at_t']:.4f}"
                for s, v in r["scores"].items()
            )
            print(f"{name} ({r['contexts']} contexts): {cells} -> {r['chosen']}  {r['seconds']}", flush=True)
            if a.beam:
                print(f"  Beam transitions: {r['beam_transitions_seconds']} s, equal: {r['beam_equals_in_memory']}")
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
