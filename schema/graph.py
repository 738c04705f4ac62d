"""The graph artifact: what GraphGen writes and every later stage reads.

Layout of a graph artifact directory (all Parquet, sharded by Beam as `<table>-SSSSS-of-NNNNN.parquet`):

- `items-*.parquet`        node_id:int64 (contiguous 0..N-1), item_id:string (source id), title:string (the
                           items.csv `title` column when there is one, else ''), train_degree:int64
- `contexts-*.parquet`     context_index:int64 (contiguous 0..C-1), context_id:string (source id)
- `interactions-*.parquet` context_index:int64, node_id:int64, timestamp:int64, weight:float64,
                           split:string ('train' | 'validation' | 'test'),
                           position:int64 (0-based rank in the context's history, sorted by
                           (timestamp, then a seeded hash of (context id, item id)) as fixed in
                           docs/DESIGN.md)
- `graph_stats.json`       sizes, split counts, id type and the rows GraphGen dropped, by reason

Parquet because Beam reads and writes it on every runner and pyarrow loads it into numpy in one call for the
in-memory fast paths; the tables are keyed by contiguous int ids so that later stages index arrays directly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schema import files

ITEMS = "items"
CONTEXTS = "contexts"
INTERACTIONS = "interactions"
STATS_FILE = "graph_stats.json"
SPLITS = ("train", "validation", "test")


def _arrow_schemas():

    interactions = pa.schema(
        [
            ("context_index", pa.int64()),
            ("node_id", pa.int64()),
            ("timestamp", pa.int64()),
            ("weight", pa.float64()),
            ("split", pa.string()),
            ("position", pa.int64()),
        ]
    )
    items = pa.schema(
        [("node_id", pa.int64()), ("item_id", pa.string()), ("title", pa.string()), ("train_degree", pa.int64())]
    )
    contexts = pa.schema([("context_index", pa.int64()), ("context_id", pa.string())])
    return interactions, items, contexts


INTERACTION_SCHEMA, ITEM_SCHEMA, CONTEXT_SCHEMA = _arrow_schemas()


def table_files(uri: str, table: str) -> list[str]:
    found = files.glob(files.join(uri, f"{table}-*.parquet"))
    if not found:
        raise FileNotFoundError(f"graph artifact {uri!r} has no {table} table ({table}-*.parquet)")
    return found


def read_table(uri: str, table: str, columns: list[str] | None = None):
    """Reads one table of a graph artifact as a pyarrow Table (all shards, in shard order)."""

    parts = [files.read_parquet(f, columns=columns) for f in table_files(uri, table)]
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def read_stats(uri: str) -> dict:
    return files.read_json(files.join(uri, STATS_FILE))


@dataclasses.dataclass
class Graph:
    """The bipartite interaction graph in memory, with int ids (numpy arrays, not Python dicts)."""

    item_ids: np.ndarray  # [N] source item ids as str, index = node_id
    train_degree: np.ndarray  # [N] int64
    context_ids: np.ndarray  # [C] source context ids as str, index = context_index
    context_index: np.ndarray  # [E] int64, one row per interaction (all splits)
    node_id: np.ndarray  # [E] int64
    timestamp: np.ndarray  # [E] int64
    weight: np.ndarray  # [E] float64
    split: np.ndarray  # [E] str
    position: np.ndarray  # [E] int64

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_contexts(self) -> int:
        return len(self.context_ids)

    def edges(self, split: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(context_index, node_id, weight) of one split's interactions."""
        m = self.split == split
        return self.context_index[m], self.node_id[m], self.weight[m]


def _strings(column) -> np.ndarray:
    """A low-cardinality string column (the split: 3 values over every interaction) as a numpy object array,
    through Arrow's dictionary encoding: one Python string per distinct value instead of one per row
    (to_pylist of 10M rows took ~10 s)."""

    enc = pc.dictionary_encode(column).combine_chunks()
    if enc.indices.null_count:
        raise ValueError(f"graph artifact: {enc.indices.null_count} null values in a string column")
    values = np.asarray(enc.dictionary.to_pylist(), dtype=object)
    return values[enc.indices.to_numpy(zero_copy_only=False)] if len(values) else np.zeros(len(column), object)


def load_graph(uri: str) -> Graph:
    items = read_table(uri, ITEMS).sort_by("node_id")
    contexts = read_table(uri, CONTEXTS).sort_by("context_index")
    inter = read_table(uri, INTERACTIONS).sort_by([("context_index", "ascending"), ("position", "ascending")])
    node_ids = items.column("node_id").to_numpy()
    if not np.array_equal(node_ids, np.arange(len(node_ids))):
        raise ValueError(f"graph artifact {uri!r}: node ids are not contiguous 0..N-1")
    return Graph(
        item_ids=np.asarray(items.column("item_id").to_pylist(), dtype=object),
        train_degree=items.column("train_degree").to_numpy(),
        context_ids=np.asarray(contexts.column("context_id").to_pylist(), dtype=object),
        context_index=inter.column("context_index").to_numpy(),
        node_id=inter.column("node_id").to_numpy(),
        timestamp=inter.column("timestamp").to_numpy(),
        weight=inter.column("weight").to_numpy(),
        split=_strings(inter.column("split")),
        position=inter.column("position").to_numpy(),
    )


def csr(rows: np.ndarray, cols: np.ndarray, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) adjacency of rows -> cols, built with numpy sorting (no Python loops)."""
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=num_rows), out=indptr[1:])
    return indptr, cols[order].astype(np.int64)


def write_tables(uri: str, item_ids, context_ids, interactions: dict, stats: dict | None = None, titles=None):
    """Writes a graph artifact from in-memory columns (one shard per table): `interactions` holds context_index,
    node_id, timestamp, split, position (and optionally weight, default 1); the train degree is computed."""

    files.makedirs(uri)
    n = len(item_ids)
    node = np.asarray(interactions["node_id"], dtype=np.int64)
    split = np.asarray(interactions["split"], dtype=object)
    items = {
        "node_id": np.arange(n, dtype=np.int64),
        "item_id": [str(x) for x in item_ids],
        "train_degree": np.bincount(node[split == "train"], minlength=n).astype(np.int64),
    }
    item_schema = ITEM_SCHEMA
    if titles is None:  # GraphGen always writes a title column; readers treat a missing one as "no titles"
        item_schema = item_schema.remove(item_schema.get_field_index("title"))
    else:
        items["title"] = [str(x) for x in titles]
    contexts = {
        "context_index": np.arange(len(context_ids), dtype=np.int64),
        "context_id": [str(x) for x in context_ids],
    }
    rows = {
        "context_index": np.asarray(interactions["context_index"], dtype=np.int64),
        "node_id": node,
        "timestamp": np.asarray(interactions["timestamp"], dtype=np.int64),
        "weight": np.asarray(interactions.get("weight", np.ones(len(node))), dtype=np.float64),
        "split": [str(s) for s in split],
        "position": np.asarray(interactions["position"], dtype=np.int64),
    }
    for table, cols, schema in (
        (ITEMS, items, item_schema),
        (CONTEXTS, contexts, CONTEXT_SCHEMA),
        (INTERACTIONS, rows, INTERACTION_SCHEMA),
    ):
        files.write_parquet(pa.table(cols, schema=schema), files.join(uri, f"{table}-00000-of-00001.parquet"))
    files.write_json(files.join(uri, STATS_FILE), stats or {"num_items": n, "num_contexts": len(context_ids)})


def write_graph(graph: Graph, uri: str) -> None:
    """Writes an in-memory Graph as a graph artifact (one shard per table)."""
    cols = ("context_index", "node_id", "timestamp", "weight", "split", "position")
    write_tables(uri, graph.item_ids, graph.context_ids, {c: getattr(graph, c) for c in cols})


def graph_items(graph_uri: str):
    """(item ids by node id, titles or None) from the graph's items table (titles: an optional `title` column)."""
    t = read_table(graph_uri, ITEMS).sort_by("node_id")
    ids = [str(x) for x in t.column("item_id").to_pylist()]
    titles = [str(x) for x in t.column("title").to_pylist()] if "title" in t.column_names else None
    return ids, titles
