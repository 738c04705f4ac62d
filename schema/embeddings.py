"""The Embeddings artifact (what the Trainer and BulkEmbedder write, IndexBuilder and Pusher read) and the
one-value-per-line text files that travel with it and with an index.

Layout of an embeddings directory:
    embeddings.npy         [N, d] float32 item embeddings, row = node id (the indexed space z)
    query_embeddings.npy   optional, [N, d] float32: a query-head model's query vectors u_q (scored u_q . z_i)
    item_ids.txt           source item id per row, one per line
    titles.txt             optional, one per line, same order
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from schema import files

IDS_FILE = "item_ids.txt"
TITLES_FILE = "titles.txt"
EMBEDDINGS_FILE = "embeddings.npy"
QUERY_EMBEDDINGS_FILE = "query_embeddings.npy"


def write_lines(path: str, values: Sequence[str], what: str) -> None:
    """One value per line; a newline inside a value would shift every later row, so it is refused."""
    with files.open(path, "w", newline="\n") as f:
        for v in values:
            v = str(v)
            if "\n" in v or "\r" in v:
                raise ValueError(f"{what} may not contain line breaks: {v!r}")
            f.write(v + "\n")


def read_lines(path: str) -> List[str]:
    with files.open(path, "r", newline="\n") as f:
        return f.read().split("\n")[:-1]


def check_inputs(embeddings: np.ndarray, item_ids: Sequence[str], titles: Optional[Sequence[str]]) -> np.ndarray:
    """float32 [N, d], one unique id (and title) per row: every later stage relies on row == node id."""
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty [N, d] array, got shape {emb.shape}")
    if len(item_ids) != emb.shape[0]:
        raise ValueError(f"{len(item_ids)} item ids for {emb.shape[0]} embedding rows")
    if len(set(item_ids)) != len(item_ids):
        raise ValueError("item ids are not unique")
    if titles is not None and len(titles) != emb.shape[0]:
        raise ValueError(f"{len(titles)} titles for {emb.shape[0]} embedding rows")
    if not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or inf")
    return emb


def read_embeddings(uri: str):
    """(embeddings [N, d] float32, ids, titles or None) from an `Embeddings` artifact directory."""
    emb = files.np_load(files.join(uri, EMBEDDINGS_FILE))
    ids = read_lines(files.join(uri, IDS_FILE))
    titles_path = files.join(uri, TITLES_FILE)
    titles = read_lines(titles_path) if files.exists(titles_path) else None
    return emb, ids, titles


def read_query_embeddings(uri: str) -> Optional[np.ndarray]:
    """The query vectors of an `Embeddings` artifact (a model with a query head), or None: then an item's own
    embedding is its query vector."""
    path = files.join(uri, QUERY_EMBEDDINGS_FILE)
    return files.np_load(path) if files.exists(path) else None


def write_embeddings(
    uri: str,
    embeddings: np.ndarray,
    item_ids: Sequence[str],
    titles: Optional[Sequence[str]] = None,
    query_embeddings: Optional[np.ndarray] = None,
) -> None:
    """The `Embeddings` artifact layout (what BulkEmbedder writes and IndexBuilder reads)."""
    emb = check_inputs(embeddings, list(item_ids), titles)
    files.makedirs(uri)
    files.np_save(files.join(uri, EMBEDDINGS_FILE), emb)
    if query_embeddings is not None:
        query_embeddings = np.ascontiguousarray(query_embeddings, np.float32)
        if query_embeddings.shape != emb.shape:
            raise ValueError(f"query embeddings {query_embeddings.shape} != embeddings {emb.shape}")
        bad = np.flatnonzero(~np.isfinite(query_embeddings).all(axis=1))
        if len(bad):
            raise ValueError(f"{len(bad)} query embeddings have NaN/inf values, e.g. rows {bad[:5].tolist()}")
        files.np_save(files.join(uri, QUERY_EMBEDDINGS_FILE), query_embeddings)
    write_lines(files.join(uri, IDS_FILE), item_ids, "item ids")
    if titles is not None:
        write_lines(files.join(uri, TITLES_FILE), titles, "titles")
