"""The ScaNN index: item embeddings -> a serialized searcher + the id map, loading it back, and exact top-k.

The TFX component around it is pipeline/components/index_builder.py.

Why ScaNN with these settings: partitioning into ~sqrt(N) leaves keeps each query to a few per cent of the
catalogue, anisotropic hashing (AH) scores those candidates from 4-bit codes (2 dims per code), and exact
re-ranking of the best `reorder` candidates with the float vectors gives back the exact top-10 almost always
(bench/index.py measures the recall). The embeddings are L2-normalised, so dot product == cosine. Below
`brute_force_below` items an exact scan is as fast as the tree and needs no training, so we use ScaNN's brute
force and say so in the stats.

Index directory layout (what `load_index` reads; the Pusher copies it into a version's assets/):
    scann/               searcher.serialize() output (asset paths rewritten at load time, so the dir can move)
    item_ids.txt         source item id per ScaNN row (node-id order), one per line
    titles.txt           optional, one per line, same order
    index_stats.json     kind, parameters, N, d, recall@10 vs exact on a sample, build seconds
    embeddings.npy, query_embeddings.npy, item_ids.npy, titles.bin, titles_offsets.npy, attributes.bin,
    attributes_offsets.npy
                         the serving arrays (schema/versions.py): what a server memory-maps instead of
                         rebuilding from the text files and the SavedModel
"""

from __future__ import annotations

import os
import re
import time
from typing import NamedTuple, Optional, Sequence

import numpy as np
import scann

from schema import files
from schema.embeddings import IDS_FILE, TITLES_FILE, check_inputs, read_lines, write_lines
from schema.versions import Attributes, write_serving_arrays

SCANN_DIR = "scann"
STATS_FILE = "index_stats.json"
BRUTE_FORCE_BELOW = 20_000
# Exact re-ranking of the best 400 AH candidates: ScaNN's usual 100 loses true top-10 items on large clustered
# catalogues, and 400 float dot products per query cost next to nothing (bench/index.py measures the recall).
# Leaves searched: max(8, leaves/40), i.e. 25 of 1000 at 1M.
REORDER = 400


# ---------------------------------------------------------------------------------------------------- search
def exact_top_k(embeddings: np.ndarray, queries: np.ndarray, k: int, chunk: int = 0) -> np.ndarray:
    """Exact top-k rows by dot product (numpy, chunked so that [chunk, N] scores stay ~256 MB)."""
    chunk = chunk or max(1, min(256, (64 << 20) // embeddings.shape[0]))
    out = np.empty((len(queries), k), np.int64)
    for s in range(0, len(queries), chunk):
        scores = queries[s : s + chunk] @ embeddings.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
        out[s : s + chunk] = np.take_along_axis(part, order, 1)
    return out


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each exact top-k found in the approximate top-k."""
    k = exact.shape[1]
    return float(np.mean([len(set(a[:k]) & set(e)) / k for a, e in zip(approx, exact)]))


def build_searcher(
    embeddings: np.ndarray,
    k: int = 10,
    brute_force_below: int = BRUTE_FORCE_BELOW,
    num_leaves: int = 0,
    leaves_to_search: int = 0,
    reorder: int = REORDER,
    training_sample_size: int = 250_000,
):
    """A ScaNN searcher and the parameters it was built with (`num_leaves=0` means ~sqrt(N))."""

    n = embeddings.shape[0]
    builder = scann.scann_ops_pybind.builder(embeddings, k, "dot_product")
    if n < brute_force_below:
        return builder.score_brute_force().build(), {"kind": "brute_force"}
    num_leaves = num_leaves or max(2, int(round(np.sqrt(n))))
    leaves_to_search = leaves_to_search or max(min(num_leaves, 8), int(np.ceil(num_leaves / 40)))
    dims_per_block = 2 if embeddings.shape[1] % 2 == 0 else 1
    searcher = (
        builder.tree(
            num_leaves=num_leaves,
            num_leaves_to_search=leaves_to_search,
            training_sample_size=min(n, training_sample_size),
        )
        .score_ah(dims_per_block, anisotropic_quantization_threshold=0.2)
        .reorder(max(reorder, k))
        .build()
    )
    return searcher, {
        "kind": "scann_tree_ah",
        "num_leaves": num_leaves,
        "leaves_to_search": leaves_to_search,
        "dims_per_block": dims_per_block,
        "reorder": max(reorder, k),
    }


def build_index(
    embeddings: np.ndarray,
    item_ids: Sequence[str],
    out_dir: str,
    titles: Optional[Sequence[str]] = None,
    recall_queries: int = 1000,
    seed: int = 0,
    query_embeddings: Optional[np.ndarray] = None,
    attributes: Optional[Sequence[Attributes]] = None,
    **searcher_kw,
) -> dict:
    """Builds, measures and serializes the index into `out_dir` (layout in the module docstring); returns the stats.

    Recall@10 is measured at build time on `recall_queries` catalogue items used as queries (the related-items
    case: their query vectors when `query_embeddings` are given) against an exact numpy scan, so a bad index is
    visible in index_stats.json before it is pushed. `attributes` (one {column: text | [text, ...]} per item, the
    related-items page's display) go into the serving arrays only."""
    emb = check_inputs(embeddings, list(item_ids), titles)
    queries = emb if query_embeddings is None else np.asarray(query_embeddings, np.float32)
    start = time.time()
    searcher, params = build_searcher(emb, **searcher_kw)
    build_s = time.time() - start

    rng = np.random.default_rng(seed)
    sample = rng.choice(emb.shape[0], size=min(recall_queries, emb.shape[0]), replace=False)
    k = min(10, emb.shape[0])
    approx, _ = searcher.search_batched(queries[sample], final_num_neighbors=k)
    recall = recall_at_k(np.asarray(approx), exact_top_k(emb, queries[sample], k))

    with files.staged_dir(files.join(out_dir, SCANN_DIR)) as local:  # ScaNN writes local files only
        searcher.serialize(local)
    write_lines(files.join(out_dir, IDS_FILE), item_ids, "item ids")
    if titles is not None:
        write_lines(files.join(out_dir, TITLES_FILE), titles, "titles")
    write_serving_arrays(out_dir, item_ids, titles, emb, query_embeddings, attributes)
    stats = dict(
        params,
        num_items=int(emb.shape[0]),
        dim=int(emb.shape[1]),
        distance="dot_product",
        brute_force=params["kind"] == "brute_force",
        brute_force_below=searcher_kw.get("brute_force_below", BRUTE_FORCE_BELOW),
        recall_at_10=round(recall, 4),
        recall_queries=int(len(sample)),
        build_seconds=round(build_s, 3),
        has_titles=titles is not None,
        has_attributes=attributes is not None,
    )
    files.write_json(files.join(out_dir, STATS_FILE), stats, indent=1, sort_keys=True)
    return stats


# ---------------------------------------------------------------------------------------------------- loading
class LoadedIndex(NamedTuple):
    searcher: object  # scann ScannSearcher: search / search_batched(queries, final_num_neighbors=k)
    item_ids: Optional[np.ndarray]  # object array of source ids, row order (None: not read, see load_index)
    titles: Optional[np.ndarray]
    stats: dict


def load_searcher(scann_dir: str):
    """Loads a serialized searcher from wherever the directory now lives.

    ScaNN 1.3.2 writes the asset paths into scann_assets.pbtxt exactly as given to serialize() (relative to the
    writer's cwd, or absolute), so a copied directory would point back at the original. We rewrite each path to
    the file of the same name in `scann_dir` in memory, leaving the (possibly read-only) files untouched."""

    scann_dir = os.path.abspath(scann_dir)
    with open(os.path.join(scann_dir, "scann_assets.pbtxt")) as f:
        text = f.read()
    text = re.sub(
        r'asset_path: "([^"]*)"',
        lambda m: 'asset_path: "%s"' % os.path.join(scann_dir, os.path.basename(m.group(1))),
        text,
    )
    pybind = scann.scann_ops_pybind
    return pybind.ScannSearcher(pybind.scann_pybind.ScannNumpy(scann_dir, text))


def load_index(index_dir: str, text: bool = True) -> LoadedIndex:
    """Searcher + ids (+ titles, stats) from a directory written by build_index (local or a URI: ScaNN reads
    local files only, and holds the index in memory once loaded, so a remote one is loaded from a temporary copy);
    text=False leaves the ids and titles unread (None): a server takes them from the serving arrays instead
    (schema/versions.py)."""
    with files.local_copy(files.join(index_dir, SCANN_DIR)) as local:
        searcher = load_searcher(local)
    stats = files.read_json(files.join(index_dir, STATS_FILE))
    if not text:
        return LoadedIndex(searcher, None, None, stats)
    ids = np.asarray(read_lines(files.join(index_dir, IDS_FILE)), dtype=object)
    titles_path = files.join(index_dir, TITLES_FILE)
    titles = np.asarray(read_lines(titles_path), dtype=object) if files.exists(titles_path) else None
    if len(ids) != stats["num_items"]:
        raise ValueError(f"{index_dir}: {len(ids)} ids but the index has {stats['num_items']} rows")
    return LoadedIndex(searcher, ids, titles, stats)
