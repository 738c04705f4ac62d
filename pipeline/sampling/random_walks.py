"""Importance neighbourhoods by random walks (PinSage §3.2; Pixie-style), vectorised numpy over CSR.

A walk from start item u makes up to `walk_length` traversals item -> context -> item; after each traversal it
counts a visit to the item it reached (never u itself) and then ends with probability `restart_prob` (the next of
the `num_walks` walks starts again from u). The top-T items by visit count, with their L1-normalised counts, are
u's importance neighbourhood. In expectation, visits(u, .) = sum_k (1-p)^(k-1) P^k[u, .] with the item->item
transition P = D_i^-1 A D_c^-1 A^T — what the tests check against.

Why vectorised and chunked: every walker of a chunk of start items advances at once (a neighbour choice is
`indices[indptr[v] + floor(rand * degree(v))]`), so a step is a few numpy gathers over millions of walkers;
chunks bound memory. Each chunk draws from its own generator seeded by (seed, chunk index), so the result does
not depend on which worker ran which chunk. Visits are counted by sorting int64 keys `row * N + item`, and the
per-row top-T comes from one more sort of a composite key (row, -count, item): ties go to the lower item id.

Graph hygiene: a duplicated (context, item) train edge is collapsed into one edge (re-engaging with an item in
the same context must not make walks prefer that edge) and counted; items without train edges get an empty
neighbourhood and are counted as isolated; ids outside 0..N-1 / 0..C-1 raise (a corrupt artifact, not bad data).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.compute as pc

from modules import progress
from pipeline.configs import SAMPLING
from schema import graph as graph_io


@dataclasses.dataclass(frozen=True)
class WalkParams:
    """One walk configuration (pipeline/configs.SamplingConfig holds the defaults and their reasons)."""

    num_walks: int = SAMPLING.num_walks
    walk_length: int = SAMPLING.walk_length
    restart_prob: float = SAMPLING.restart_prob
    top_t: int = SAMPLING.top_t
    seed: int = SAMPLING.seed


@dataclasses.dataclass
class Adjacency:
    """Both directions of the deduplicated bipartite train graph as CSR arrays."""

    num_items: int
    num_contexts: int
    item_indptr: np.ndarray  # [N+1] item -> contexts
    item_ctx: np.ndarray
    ctx_indptr: np.ndarray  # [C+1] context -> items
    ctx_items: np.ndarray
    duplicate_edges: int = 0

    @property
    def item_degree(self) -> np.ndarray:
        return np.diff(self.item_indptr)


def build_adjacency(context_index, node_id, num_items: int, num_contexts: int) -> Adjacency:
    ctx = np.asarray(context_index, dtype=np.int64)
    node = np.asarray(node_id, dtype=np.int64)
    if len(node) and (node.min() < 0 or node.max() >= num_items or ctx.min() < 0 or ctx.max() >= num_contexts):
        raise ValueError(f"edge ids out of range: items must be in [0, {num_items}), contexts in [0, {num_contexts})")
    ctx_indptr, ctx_items, n_unique = _sorted_csr(ctx, node, num_contexts, num_items)
    item_indptr, item_ctx, _ = _sorted_csr(node, ctx, num_items, num_contexts)
    return Adjacency(
        num_items, num_contexts, item_indptr, item_ctx, ctx_indptr, ctx_items, duplicate_edges=int(len(node) - n_unique)
    )


def _sorted_csr(rows, cols, num_rows: int, num_cols: int):
    """Deduplicated CSR from one int64 sort of `row * num_cols + col` (several times faster than the argsort
    in graph_io.csr at 10M edges, and it drops duplicate edges on the way)."""
    keys = np.sort(rows * num_cols + cols)
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
    indptr = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // num_cols, minlength=num_rows), out=indptr[1:])
    return indptr, keys % num_cols, len(keys)


def load_adjacency(uri: str, split: str = "train") -> Adjacency:
    """Reads only the columns the walks need (not `load_graph`, which materialises every string column)."""

    inter = graph_io.read_table(uri, graph_io.INTERACTIONS, columns=["context_index", "node_id", "split"])
    inter = inter.filter(pc.equal(inter.column("split"), split))
    n = graph_io.read_table(uri, graph_io.ITEMS, columns=["node_id"]).num_rows
    c = graph_io.read_table(uri, graph_io.CONTEXTS, columns=["context_index"]).num_rows
    return build_adjacency(inter.column("context_index").to_numpy(), inter.column("node_id").to_numpy(), n, c)


def _step(indptr: np.ndarray, indices: np.ndarray, pos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniform neighbour per walker (every walker's node has degree >= 1 by construction)."""
    lo = indptr[pos]
    deg = indptr[pos + 1] - lo
    off = (rng.random(len(pos)) * deg).astype(np.int64)
    np.minimum(off, deg - 1, out=off)  # guards float rounding of rand * deg up to deg
    return indices[lo + off]


def walk_visits(
    adj: Adjacency,
    starts: np.ndarray,
    num_walks: int,
    walk_length: int,
    restart_prob: float,
    rng: np.random.Generator,
    on_step=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw visits of `num_walks` walks from each start: (row into `starts`, visited item), start excluded.
    Starts without train edges make no walks. `on_step(k)` (progress) is called after step k = 1..walk_length."""
    starts = np.asarray(starts, dtype=np.int64)
    has_edges = adj.item_degree[starts] > 0
    row = np.repeat(np.flatnonzero(has_edges), num_walks)
    pos = starts[row]
    rows, items = [], []
    for k in range(walk_length):
        pos = _step(adj.ctx_indptr, adj.ctx_items, _step(adj.item_indptr, adj.item_ctx, pos, rng), rng)
        keep = pos != starts[row]
        rows.append(row[keep])
        items.append(pos[keep])
        if k + 1 < walk_length:
            alive = rng.random(len(pos)) >= restart_prob
            row, pos = row[alive], pos[alive]
        if on_step is not None:
            on_step(k + 1)
    return np.concatenate(rows), np.concatenate(items)


def count_visits(rows: np.ndarray, items: np.ndarray, num_items: int):
    """(row, item, count) per distinct visited pair, ordered by row, count descending, item ascending."""
    keys = np.sort(rows * num_items + items)
    if len(keys) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    counts = np.diff(np.r_[first, len(keys)])
    keys = keys[first]
    r, it = keys // num_items, keys % num_items
    m = int(counts.max())
    if (int(r.max()) + 1) * (m + 1) * num_items < 2**63:  # one int64 sort of (row, -count, item)
        comp = np.sort((r * (m + 1) + (m - counts)) * num_items + it)
        it, rest = comp % num_items, comp // num_items
        return rest // (m + 1), it, m - rest % (m + 1)
    order = np.lexsort((it, -counts, r))
    return r[order], it[order], counts[order]


def top_t(rows, items, counts, num_rows: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """From count_visits' ordering: [num_rows, t] items (-1 padded) and their counts (0 padded)."""
    first = np.searchsorted(rows, np.arange(num_rows))
    rank = np.arange(len(rows)) - first[rows]
    keep = rank < t
    nbr = np.full((num_rows, t), -1, dtype=np.int64)
    cnt = np.zeros((num_rows, t), dtype=np.int64)
    nbr[rows[keep], rank[keep]] = items[keep]
    cnt[rows[keep], rank[keep]] = counts[keep]
    return nbr, cnt


def l1_weights(cnt: np.ndarray) -> np.ndarray:
    total = cnt.sum(axis=1, keepdims=True)
    return np.divide(cnt, total, out=np.zeros(cnt.shape), where=total > 0).astype(np.float32)


def chunk_rng(seed: int, chunk_index: int, stream: int = 0) -> np.random.Generator:
    """Generator for one chunk of start items: a pure function of (seed, chunk, stream)."""
    return np.random.default_rng([seed, chunk_index, stream])


def sample_chunk(adj: Adjacency, lo: int, hi: int, params: WalkParams, chunk_index: int):
    """Neighbourhoods of start items lo..hi-1: (nbr [B,T], counts [B,T])."""
    rng = chunk_rng(params.seed, chunk_index)
    rows, items = walk_visits(adj, np.arange(lo, hi), params.num_walks, params.walk_length, params.restart_prob, rng)
    return top_t(*count_visits(rows, items, adj.num_items), hi - lo, params.top_t)


def chunks(num_items: int, shard_size: int) -> list[tuple[int, int, int]]:
    """(chunk index, lo, hi) covering 0..num_items-1; chunk boundaries fix the random streams."""
    return [(i, lo, min(lo + shard_size, num_items)) for i, lo in enumerate(range(0, num_items, shard_size))]


def sample_neighborhoods(adj: Adjacency, params: WalkParams, shard_size: int = SAMPLING.shard_size):
    """All items' neighbourhoods in this process: (nbr [N,T] -1 padded, weights [N,T] float32, counts [N,T])."""
    parts = []
    with progress.Progress("random walks", adj.num_items, "items") as meter:
        for i, lo, hi in chunks(adj.num_items, shard_size):
            parts.append(sample_chunk(adj, lo, hi, params, i))
            meter.update(hi - lo)
    nbr = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, params.top_t), np.int64)
    cnt = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, params.top_t), np.int64)
    return nbr, l1_weights(cnt), cnt


def chunk_stats(nbr: np.ndarray, cnt: np.ndarray, isolated: int) -> dict:
    """Additive counters for neighbourhood_stats.json (merged across shards by summing)."""
    filled = nbr >= 0
    return {
        "items": int(len(nbr)),
        "isolated_items": int(isolated),
        "filled_slots": int(filled.sum()),
        "count1_slots": int((filled & (cnt == 1)).sum()),
        "empty_neighborhoods": int((~filled.any(1)).sum()),
    }


def finalize_stats(s: dict) -> dict:
    s = dict(s)
    s["mean_neighborhood_size"] = s["filled_slots"] / max(s["items"], 1)
    s["count1_fraction"] = s["count1_slots"] / max(s["filled_slots"], 1)
    return s


def neighborhood_stability(
    adj: Adjacency,
    num_walks: int,
    top_t_: int = SAMPLING.top_t,
    walk_length: int = SAMPLING.walk_length,
    restart_prob: float = SAMPLING.restart_prob,
    starts=None,
    seeds=(1, 2),
) -> dict:
    """How settled the top-T is at `num_walks` walks per item: the fraction of filled top-T slots holding a
    single visit (a coin flip decided them), and the mean overlap |top-T(seed a) ∩ top-T(seed b)| / |top-T|
    between two independent runs over the same start items, and the shared weight sum_v min(w_a(v), w_b(v)) of
    the two L1-normalised top-T (1 = same items with the same weights; forgiving to swaps among near-ties)."""
    starts = np.arange(adj.num_items) if starts is None else np.asarray(starts, np.int64)
    tops = []
    for s in seeds:
        rows, items = walk_visits(adj, starts, num_walks, walk_length, restart_prob, np.random.default_rng(s))
        tops.append(top_t(*count_visits(rows, items, adj.num_items), len(starts), top_t_))
    (na, ca), (nb, cb) = tops
    row = np.arange(len(starts))[:, None] * adj.num_items
    ka, kb = (row + na)[na >= 0], (row + nb)[nb >= 0]
    wa, wb = l1_weights(ca)[na >= 0], l1_weights(cb)[nb >= 0]
    _, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    r = ka[ia] // adj.num_items
    size = np.maximum((na >= 0).sum(1), 1)
    inter = np.bincount(r, minlength=len(starts))
    mass = np.bincount(r, np.minimum(wa[ia], wb[ib]), minlength=len(starts))
    has = (na >= 0).any(1)
    if not has.any():
        return {"num_walks": num_walks, "count1_fraction": 0.0, "top_t_overlap": 1.0, "weight_overlap": 1.0}
    return {
        "num_walks": num_walks,
        "count1_fraction": float((ca[na >= 0] == 1).mean()),
        "top_t_overlap": float((inter / size)[has].mean()),
        "weight_overlap": float(mass[has].mean()),
    }
