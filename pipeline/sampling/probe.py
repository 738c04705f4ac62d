"""Which neighbourhood source fits this graph: the validation probe behind NeighborhoodSampler(source='auto').

Each candidate table (configs.PROBE_CANDIDATES: random-walk visits, transition counts) is scored as an
item-to-item recommender on the validation split under the evaluation protocol (modules/evaluation.build_queries:
per context, query = its latest train item, target = its validation item, the context's train items masked), for
the same seeded sample of contexts the evaluator draws: the query's neighbours, in table order with the masked
ones removed, are the recommendation. The table with the higher MRR@T (1 / rank of the target, 0 when it is not
among the T) is kept; HR@T breaks a tie, and a full tie keeps the first candidate, the paper's random walks.
Test interactions are never read.

Why this is a principle and not a MovieLens constant: the protocol scores next-item retrieval, and the probe asks
each source that very question on held-out data of *this* graph, so the choice follows whatever the data holds:
sequence (the next item is a recent item's transition) or only co-membership (the order-free check,
datasets.shuffle_order). Why MRR decides rather than HR@T: when both tables hold the target somewhere in their
top T, only the rank separates them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from modules.evaluation import Queries, build_queries
from pipeline.configs import PROBE_CANDIDATES
from schema import files
from schema import graph as graph_io

COLUMNS = ["context_index", "node_id", "position", "split"]


def sample_contexts(validation_contexts: np.ndarray, max_contexts: int, seed: int) -> np.ndarray:
    """The contexts build_queries(graph, 'validation', max_contexts=..., seed=...) evaluates (the same draw)."""
    ctx = np.sort(np.asarray(validation_contexts, np.int64))
    if max_contexts and len(ctx) > max_contexts:
        ctx = ctx[np.sort(np.random.default_rng(seed).choice(len(ctx), max_contexts, replace=False))]
    return ctx


def queries_from_uri(graph_uri: str, max_contexts: int, seed: int) -> Queries:
    """The validation Queries of a graph artifact for the sampled contexts, reading only the validation rows and
    then the sampled contexts' rows (Parquet row filters): the probe's memory follows the sample, not the graph."""
    paths = graph_io.table_files(graph_uri, graph_io.INTERACTIONS)
    val = pa.concat_tables(
        [files.read_parquet(f, columns=COLUMNS, filters=[("split", "=", "validation")]) for f in paths]
    )
    contexts = sample_contexts(val.column("context_index").to_numpy(), max_contexts, seed)
    rows = [("context_index", "in", contexts.tolist() or [-1])]
    t = pa.concat_tables([files.read_parquet(f, columns=COLUMNS, filters=rows) for f in paths])
    n = sum(files.parquet_file(f).metadata.num_rows for f in graph_io.table_files(graph_uri, graph_io.ITEMS))
    c = sum(files.parquet_file(f).metadata.num_rows for f in graph_io.table_files(graph_uri, graph_io.CONTEXTS))
    col = {k: t.column(k).to_numpy() for k in COLUMNS}
    sub = graph_io.Graph(  # the sampled contexts' rows only; ids are not needed to rank
        item_ids=np.empty(n, object),
        train_degree=np.zeros(n, np.int64),
        context_ids=np.empty(c, object),
        context_index=col["context_index"],
        node_id=col["node_id"],
        timestamp=np.zeros(t.num_rows, np.int64),
        weight=np.ones(t.num_rows),
        split=col["split"].astype(object),
        position=col["position"],
    )
    return build_queries(sub, "validation")


def queries_from_graph(graph, max_contexts: int, seed: int) -> Queries:
    """The same from an in-memory schema.graph.Graph."""
    return build_queries(graph, "validation", max_contexts=max_contexts or None, seed=seed)


def score(nbr: np.ndarray, queries: Queries) -> dict:
    """HR@T and MRR@T of the neighbourhood table `nbr` [N, T] (ranked, -1 padded) as a recommender of each
    query's target, the context's seen items removed from the list first; with the MRR's standard error."""
    nbr = np.asarray(nbr)
    m, n = len(queries), queries.num_items
    lists = nbr[queries.query]  # [M, T]
    rows = np.repeat(np.arange(m), np.diff(queries.seen_indptr))
    seen = np.sort(rows * n + queries.seen_indices)
    keys = np.arange(m)[:, None] * n + lists
    at = np.minimum(np.searchsorted(seen, keys), max(len(seen) - 1, 0))
    masked = (seen[at] == keys) & (lists >= 0) if len(seen) else np.zeros(lists.shape, bool)
    hits = lists == queries.target[:, None]
    found = hits.any(1)
    before = np.cumsum(~masked & (lists >= 0), axis=1) - 1  # unmasked entries up to each slot, minus the slot
    rank = np.where(found, before[np.arange(m), hits.argmax(1)] + 1, 0)
    rr = np.where(found, 1.0 / np.maximum(rank, 1), 0.0)
    d = max(m, 1)
    return {
        "contexts": int(m),
        "top_t": int(nbr.shape[1]),
        "hr_at_t": float(found.sum() / d),
        "mrr": float(rr.sum() / d),
        "mrr_se": float(rr.std() / np.sqrt(d)) if m else 0.0,
    }


def choose(scores: dict, candidates=PROBE_CANDIDATES) -> str:
    """The candidate with the highest MRR, then HR@T; a full tie keeps the earliest in `candidates`."""
    return min(candidates, key=lambda c: (-scores[c]["mrr"], -scores[c]["hr_at_t"], candidates.index(c)))
