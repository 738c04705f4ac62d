"""The random walks of random_walks.py as Beam joins, for graphs beyond one worker's memory.

Walkers are keyed by the node they stand on and joined (CoGroupByKey) with that node's adjacency list; one
join is one half-step (item -> context, then context -> item), so a walk of L traversals is 2L joins, unrolled
in the pipeline graph. Nothing holds the whole graph: each join sees the walkers and adjacency of one key.

The key is the node's partition `node % P`, not the node itself: a partition carries numpy arrays (its nodes'
CSR slice, its walkers' positions and start items), so a half-step moves P x P array bundles through the
shuffle instead of one record per walker, and each partition advances its walkers vectorised. P = 1 is the
in-memory sampler; P = number of nodes is the textbook per-node join. Visits go to the start item's partition
and are counted there with a CombinePerKey; the top-T per start item uses random_walks' counting code.

Same distribution as random_walks.py, not the same draws: here each (half-step, partition) has its own random
stream, seeded by (seed, half-step, partition); walkers are concatenated in source-partition order, so a run is
still deterministic for a fixed seed and P on any runner.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np

from pipeline import random_walks as rw

_JOIN_STREAM = 1   # keeps these random streams apart from the in-memory sampler's


def _split_by_partition(keys: np.ndarray, num_partitions: int, *arrays):
    """Yields (partition, arrays restricted to it) for every partition present in `keys`."""
    part = keys % num_partitions
    order = np.argsort(part, kind="stable")
    part = part[order]
    bounds = np.flatnonzero(np.r_[True, part[1:] != part[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield int(part[a]), tuple(x[order[a:b]] for x in arrays)


def _pack_partition(kv, num_cols: int):
    """(partition, [(rows, cols), ...]) -> (partition, (nodes, indptr, indices)) over the partition's own
    nodes, deduplicating edges as random_walks.build_adjacency does."""
    p, batches = kv
    rows = np.concatenate([b[0] for b in batches])
    cols = np.concatenate([b[1] for b in batches])
    keys = np.sort(rows * num_cols + cols)
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    r, c = keys // num_cols, keys % num_cols
    nodes, first = np.unique(r, return_index=True)
    return p, (nodes, np.r_[first, len(r)].astype(np.int64), c)


def adjacency_partitions(edges, num_partitions: int, num_items: int, num_contexts: int, by: str, label: str):
    """edges: PCollection of (context_index array, node_id array) batches -> PCollection of
    (partition, (sorted nodes, indptr, neighbours)), partitioned by item (`by='item'`) or by context."""
    src, num_cols = (1, num_contexts) if by == "item" else (0, num_items)

    def scatter(batch):
        rows, cols = batch[src], batch[1 - src]
        yield from _split_by_partition(rows, num_partitions, rows, cols)

    return (edges
            | f"{label}Scatter" >> beam.FlatMap(scatter)
            | f"{label}Group" >> beam.GroupByKey()
            | f"{label}Pack" >> beam.Map(_pack_partition, num_cols))


class _Advance(beam.DoFn):
    """One half-step for the walkers of one partition, joined with the partition's adjacency."""

    def __init__(self, num_partitions, seed, half_step, count_visits, restart_prob):
        self._p, self._seed, self._half = num_partitions, seed, half_step
        self._count, self._restart = count_visits, restart_prob

    def process(self, kv):
        part, joined = kv
        walkers = sorted(joined["walkers"], key=lambda w: w[0])
        if not walkers:
            return
        (nodes, indptr, indices), = joined["adj"]
        pos = np.concatenate([w[1] for w in walkers])
        start = np.concatenate([w[2] for w in walkers])
        rng = np.random.default_rng([self._seed, _JOIN_STREAM, self._half, part])
        i = np.searchsorted(nodes, pos)
        nxt = rw._step(indptr, indices, i, rng)
        if self._count:
            keep = nxt != start
            for sp, (s, v) in _split_by_partition(start[keep], self._p, start[keep], nxt[keep]):
                yield beam.pvalue.TaggedOutput("visits", (sp, (s, v)))
            alive = rng.random(len(nxt)) >= self._restart
            nxt, start = nxt[alive], start[alive]
        for dest, (n, s) in _split_by_partition(nxt, self._p, nxt, start):
            yield dest, (part, n, s)


class _ConcatArrays(beam.CombineFn):
    """Collects (starts, items) visit arrays of one start partition; counting happens once, at the end."""

    def create_accumulator(self):
        return []

    def add_input(self, acc, x):
        acc.append(x)
        return acc

    def merge_accumulators(self, accs):
        return [x for a in accs for x in a]

    def extract_output(self, acc):
        if not acc:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate([a[0] for a in acc]), np.concatenate([a[1] for a in acc])


def _top_t(kv, num_items: int, num_partitions: int, top_t: int):
    """(partition, {visits, adj}) -> (node ids, nbr [B,T], counts [B,T], isolated count) for its start items."""
    part, joined = kv
    local = np.arange(part, num_items, num_partitions, dtype=np.int64)
    starts, items = joined["visits"][0] if joined["visits"] else (np.zeros(0, np.int64),) * 2
    rows = (starts - part) // num_partitions
    nbr, cnt = rw.top_t(*rw.count_visits(rows, items, num_items), len(local), top_t)
    with_edges = sum(len(a[0]) for a in joined["adj"])
    return local, nbr, cnt, len(local) - with_edges


def walk_neighborhoods(edges, num_items: int, num_contexts: int, params: rw.WalkParams, num_partitions: int,
                       label: str = "Walk"):
    """edges: PCollection of (context_index, node_id) numpy batches (train split). Returns a PCollection of
    (node ids, nbr [B,T] -1 padded, visit counts [B,T], isolated items) per item partition, covering 0..N-1."""
    p = max(1, min(num_partitions, num_items))
    item_adj = adjacency_partitions(edges, p, num_items, num_contexts, "item", f"{label}ItemAdj")
    ctx_adj = adjacency_partitions(edges, p, num_items, num_contexts, "context", f"{label}CtxAdj")
    walkers = item_adj | f"{label}Start" >> beam.Map(
        lambda kv: (kv[0], (kv[0], np.repeat(kv[1][0], params.num_walks), np.repeat(kv[1][0], params.num_walks))))
    visits = []
    for k in range(params.walk_length):
        for half, adj in ((0, item_adj), (1, ctx_adj)):
            step = 2 * k + half
            restart = params.restart_prob if k + 1 < params.walk_length else 1.0   # the last ends all
            out = ({"walkers": walkers, "adj": adj}
                   | f"{label}Join{step}" >> beam.CoGroupByKey()
                   | f"{label}Step{step}" >> beam.ParDo(
                       _Advance(p, params.seed, step, half == 1, restart)).with_outputs("visits", main="walkers"))
            walkers = out.walkers
            if half == 1:
                visits.append(out.visits)
    counted = (visits | f"{label}FlattenVisits" >> beam.Flatten()
               | f"{label}CountVisits" >> beam.CombinePerKey(_ConcatArrays()))
    parts = (item_adj.pipeline | f"{label}Partitions" >> beam.Create([(i, None) for i in range(p)]))
    return ({"visits": counted, "adj": item_adj | f"{label}AdjNodes" >> beam.Map(lambda kv: (kv[0], (kv[1][0],))),
             "part": parts}
            | f"{label}JoinVisits" >> beam.CoGroupByKey()
            | f"{label}TopT" >> beam.Map(_top_t, num_items, p, params.top_t))
