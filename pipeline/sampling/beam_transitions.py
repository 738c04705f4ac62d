"""The transition-count neighbourhoods of transitions.py ('transitions') as a Beam transform, for graphs past one
worker's memory (the in-memory scipy pass stays the fast path below SamplingConfig.beam_min_interactions).

Three shuffles, each moving numpy array bundles keyed by a partition, as beam_walks.py does:
1. train interactions keyed by context partition `context % P` (GroupByKey): each context's whole train history
   lands in one partition, whose pairs modules/cooccurrence.positive_pairs counts (the one implementation of the
   window counts: a context's train interactions sorted by position, i.e. by (time, item); symmetric);
2. the (i, j, count) pairs keyed by the item partition `i % P` and summed per distinct pair (CombinePerKey);
3. per item partition, the top-T by count, ties to the lower item id (transitions.top_t_rows, the in-memory
   ranking), joined with the items' train degrees for the isolated count.
Why array bundles and not one element per (i, j) pair: a graph this path is for has tens of millions of pair
occurrences, and Beam's per-element overhead would dominate; the counts are integer
sums, exact in any bundling or order, so the output equals the in-memory path on any runner and worker count.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow.compute as pc
import scipy.sparse as sp

from modules.cooccurrence import positive_pairs
from pipeline.sampling.beam_walks import split_by_partition
from pipeline.sampling.transitions import top_t_rows


def train_position_batches(table):
    """A pyarrow batch of interactions -> (context_index, node_id, position) arrays of its train rows."""

    t = table.filter(pc.equal(table.column("split"), "train"))
    if t.num_rows:
        yield tuple(t.column(c).to_numpy() for c in ("context_index", "node_id", "position"))


def _context_pairs(kv, num_items: int, window: int, num_partitions: int):
    """(context partition, [(ctx, node, position) batches]) -> (item partition, (i, j, count)) of its pairs."""
    _, batches = kv
    ctx, node, pos = (np.concatenate([b[k] for b in batches]) for k in range(3))
    q, i, c, _ = positive_pairs(ctx, node, pos, num_items, window=window, symmetric=True)
    yield from split_by_partition(q, num_partitions, q, i, c)


def _sum_by_key(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
    return keys[first], np.add.reduceat(counts, first) if len(first) else counts[:0]


class SumPairCounts(beam.CombineFn):
    """Sums (i, j, count) arrays per distinct pair key i * N + j; the accumulator is kept summed (compact), so a
    combiner-lifted partial sum on each worker ships each distinct pair once."""

    def __init__(self, num_items: int):
        self._n = num_items

    def create_accumulator(self):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)

    def add_input(self, acc, x):
        q, i, c = x
        return self.merge_accumulators([acc, (q * self._n + i, np.asarray(c, np.int64))])

    def merge_accumulators(self, accs):
        accs = list(accs)
        return _sum_by_key(np.concatenate([a[0] for a in accs]), np.concatenate([a[1] for a in accs]))

    def extract_output(self, acc):
        return acc


def _top_t(kv, num_items: int, num_partitions: int, top_t: int):
    """(item partition, {counts, degree}) -> (node ids, nbr [B, T], counts [B, T], isolated items)."""
    part, joined = kv
    local = np.arange(part, num_items, num_partitions, dtype=np.int64)
    keys, counts = joined["counts"][0] if joined["counts"] else (np.zeros(0, np.int64),) * 2
    rows = (keys // num_items - part) // num_partitions
    m = sp.csr_matrix((counts, (rows, keys % num_items)), shape=(len(local), num_items))
    nbr, cnt = top_t_rows(m, top_t)
    with_edges = sum(joined["degree"])
    return local, nbr, cnt.astype(np.int64), len(local) - with_edges


def _items_with_edges(table, num_partitions: int):
    """An items batch (node_id, train_degree) -> (item partition, number of its items with train edges)."""
    node = table.column("node_id").to_numpy()
    has = node[table.column("train_degree").to_numpy() > 0]
    for p, (nodes,) in split_by_partition(has, num_partitions, has):
        yield p, len(nodes)


def transition_neighborhoods(
    edges, items, num_items: int, top_t: int, window: int, num_partitions: int, label: str = "Transitions"
):
    """edges: PCollection of (context_index, node_id, position) train batches; items: PCollection of pyarrow
    batches of the items table (node_id, train_degree). Returns a PCollection of (node ids, nbr [B, T] -1 padded,
    counts [B, T], isolated items) per item partition, covering 0..N-1: beam_walks.shard_table's input."""
    p = max(1, min(num_partitions, num_items))

    def by_context(batch):
        yield from split_by_partition(batch[0], p, *batch)

    counts = (
        edges
        | f"{label}ByContext" >> beam.FlatMap(by_context)
        | f"{label}GroupContexts" >> beam.GroupByKey()
        | f"{label}Pairs" >> beam.FlatMap(_context_pairs, num_items, window, p)
        | f"{label}SumPairs" >> beam.CombinePerKey(SumPairCounts(num_items))
    )
    degree = (
        items
        | f"{label}Degrees" >> beam.FlatMap(_items_with_edges, p)
        | f"{label}SumDegrees" >> beam.CombinePerKey(sum)
    )
    parts = edges.pipeline | f"{label}Partitions" >> beam.Create([(i, None) for i in range(p)])
    return (
        {"counts": counts, "degree": degree, "part": parts}
        | f"{label}Join" >> beam.CoGroupByKey()
        | f"{label}TopT" >> beam.Map(_top_t, num_items, p, top_t)
    )
