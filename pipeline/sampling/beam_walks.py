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

The module also holds the Beam pieces of the shard-parallel paths (WalkShard: NeighborhoodSampler's in-memory
strategy; NegativeShard: PairGen's PPR negatives) and the shared output plumbing, so that Beam workers unpickle
them without importing TFX / TensorFlow (about 0.5 GiB per worker process).
"""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modules import progress
from pipeline.sampling import ppr
from pipeline.sampling import random_walks as rw
from pipeline.sampling.pairs import pairs_from_graph
from schema import neighborhoods as neighborhood_io
from schema import pairs

_JOIN_STREAM = 1  # keeps these random streams apart from the in-memory sampler's


def split_by_partition(keys: np.ndarray, num_partitions: int, *arrays):
    """Yields (partition, arrays restricted to it) for every partition present in `keys`."""
    if len(keys) == 0:
        return
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
        yield from split_by_partition(rows, num_partitions, rows, cols)

    return (
        edges
        | f"{label}Scatter" >> beam.FlatMap(scatter)
        | f"{label}Group" >> beam.GroupByKey()
        | f"{label}Pack" >> beam.Map(_pack_partition, num_cols)
    )


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
        ((nodes, indptr, indices),) = joined["adj"]
        pos = np.concatenate([w[1] for w in walkers])
        start = np.concatenate([w[2] for w in walkers])
        rng = np.random.default_rng([self._seed, _JOIN_STREAM, self._half, part])
        i = np.searchsorted(nodes, pos)
        nxt = rw._step(indptr, indices, i, rng)
        if self._count:
            keep = nxt != start
            for sp, (s, v) in split_by_partition(start[keep], self._p, start[keep], nxt[keep]):
                yield beam.pvalue.TaggedOutput("visits", (sp, (s, v)))
            alive = rng.random(len(nxt)) >= self._restart
            nxt, start = nxt[alive], start[alive]
        for dest, (n, s) in split_by_partition(nxt, self._p, nxt, start):
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


def walk_neighborhoods(
    edges, num_items: int, num_contexts: int, params: rw.WalkParams, num_partitions: int, label: str = "Walk"
):
    """edges: PCollection of (context_index, node_id) numpy batches (train split). Returns a PCollection of
    (node ids, nbr [B,T] -1 padded, visit counts [B,T], isolated items) per item partition, covering 0..N-1."""
    p = max(1, min(num_partitions, num_items))
    item_adj = adjacency_partitions(edges, p, num_items, num_contexts, "item", f"{label}ItemAdj")
    ctx_adj = adjacency_partitions(edges, p, num_items, num_contexts, "context", f"{label}CtxAdj")
    walkers = item_adj | f"{label}Start" >> beam.Map(
        lambda kv: (kv[0], (kv[0], np.repeat(kv[1][0], params.num_walks), np.repeat(kv[1][0], params.num_walks)))
    )
    visits = []
    for k in range(params.walk_length):
        for half, adj in ((0, item_adj), (1, ctx_adj)):
            step = 2 * k + half
            restart = params.restart_prob if k + 1 < params.walk_length else 1.0  # the last ends all
            out = (
                {"walkers": walkers, "adj": adj}
                | f"{label}Join{step}" >> beam.CoGroupByKey()
                | f"{label}Step{step}"
                >> beam.ParDo(_Advance(p, params.seed, step, half == 1, restart)).with_outputs("visits", main="walkers")
            )
            walkers = out.walkers
            if half == 1:
                visits.append(out.visits)
    counted = (
        visits
        | f"{label}FlattenVisits" >> beam.Flatten()
        | f"{label}CountVisits" >> beam.CombinePerKey(_ConcatArrays())
    )
    parts = item_adj.pipeline | f"{label}Partitions" >> beam.Create([(i, None) for i in range(p)])
    return (
        {
            "visits": counted,
            "adj": item_adj | f"{label}AdjNodes" >> beam.Map(lambda kv: (kv[0], (kv[1][0],))),
            "part": parts,
        }
        | f"{label}JoinVisits" >> beam.CoGroupByKey()
        | f"{label}TopT" >> beam.Map(_top_t, num_items, p, params.top_t)
    )


class WalkShard(beam.DoFn):
    """Walks one shard of start items on the worker's copy of the train CSR (loaded once per worker)."""

    def __init__(self, graph_uri: str, params: rw.WalkParams):
        self._uri, self._params = graph_uri, params

    def setup(self):
        self._adj = rw.load_adjacency(self._uri)

    def process(self, shard):
        i, lo, hi = shard
        nbr, cnt = rw.sample_chunk(self._adj, lo, hi, self._params, i)
        progress.advance("random walks", self._adj.num_items, hi - lo, "items")
        isolated = int((self._adj.item_degree[lo:hi] == 0).sum())
        dup = {"duplicate_edges": self._adj.duplicate_edges} if i == 0 else {}
        yield np.arange(lo, hi, dtype=np.int64), nbr, cnt, isolated, dup


def train_edge_batches(table):
    """A pyarrow batch of interactions -> (context_index, node_id) arrays of its train rows."""

    t = table.filter(pc.equal(table.column("split"), "train"))
    if t.num_rows:
        yield t.column("context_index").to_numpy(), t.column("node_id").to_numpy()


def shard_table(shard):
    node_ids, nbr, cnt = shard[:3]
    return neighborhood_io.to_table(node_ids, nbr, rw.l1_weights(cnt))


def shard_stats(shard):
    node_ids, nbr, cnt, isolated = shard[:4]
    return {**rw.chunk_stats(nbr, cnt, isolated), **(shard[4] if len(shard) > 4 else {})}


def sum_dicts(dicts) -> dict:
    """Associative merge of additive counters (a CombineGlobally function)."""
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def write_stats(stats, path: str):
    """Merges per-shard counters into one JSON file (`path`, exactly) on any runner's file system."""
    return (
        stats
        | "MergeStats" >> beam.CombineGlobally(sum_dicts)
        | "StatsJson" >> beam.Map(json.dumps, sort_keys=True)
        | "WriteStats" >> beam.io.WriteToText(path, shard_name_template="", num_shards=1)
    )


PPR_STREAM = 2  # random streams apart from the neighbourhood sampler's


def positives(graph_uri: str, props: dict):
    q, i, count, stats = pairs_from_graph(graph_uri, int(props["window"]), bool(props["symmetric"]))
    return pairs.pairs_table(q, i, count), stats


class NegativeShard(beam.DoFn):
    """PPR hard negatives for the pair queries whose node id falls in one shard."""

    def __init__(self, graph_uri: str, props: dict, window: tuple[int, int]):
        self._uri, self._props, self._window = graph_uri, props, window

    def setup(self):
        self._adj = rw.load_adjacency(self._uri)
        q, i, _, _ = pairs_from_graph(self._uri, int(self._props["window"]), bool(self._props["symmetric"]))
        self._queries = np.unique(q)
        order = np.argsort(np.r_[q, i], kind="stable")
        self._ex_q, self._ex_i = np.r_[q, i][order], np.r_[i, q][order]  # both directions, sorted by query

    def process(self, shard):

        k, lo, hi = shard
        a, b = np.searchsorted(self._ex_q, [lo, hi])
        queries = self._queries[(self._queries >= lo) & (self._queries < hi)]
        p = self._props
        steps, total = int(p["ppr_walk_length"]), len(self._queries)

        def on_step(step):  # the shard's queries, spread over its walk steps, for the stage's progress line
            done = step * len(queries) // steps - (step - 1) * len(queries) // steps
            progress.advance("PPR hard negatives", total, done, "queries")

        neg, stats = ppr.ppr_negatives(
            self._adj,
            queries,
            self._ex_q[a:b],
            self._ex_i[a:b],
            self._window,
            int(p["ppr_num_walks"]),
            int(p["ppr_walk_length"]),
            float(p["ppr_restart_prob"]),
            int(p["max_negatives"]),
            rw.chunk_rng(int(p["seed"]), k, PPR_STREAM),
            on_step,
        )
        table = pa.Table.from_arrays(
            [pa.array(queries), neighborhood_io.padded_to_lists(neg, neg >= 0)], names=["query", "negatives"]
        )
        yield beam.pvalue.TaggedOutput("stats", stats)
        yield table
