"""Positive training pairs of a graph artifact (PairGen's input side): modules/cooccurrence.positive_pairs over
the train split, reading only the columns it needs."""

from __future__ import annotations

import pyarrow.compute as pc

from modules.cooccurrence import positive_pairs
from pipeline.configs import PAIRS, SAMPLING
from schema import graph as graph_io


def pairs_from_graph(uri: str, window: int = SAMPLING.pair_window, symmetric: bool = PAIRS.symmetric):
    """positive_pairs over a graph artifact's train split (reads only the columns it needs)."""
    t = graph_io.read_table(uri, graph_io.INTERACTIONS, columns=["context_index", "node_id", "position", "split"])
    t = t.filter(pc.equal(t.column("split"), "train"))
    n = graph_io.read_table(uri, graph_io.ITEMS, columns=["node_id"]).num_rows
    return positive_pairs(
        t.column("context_index").to_numpy(),
        t.column("node_id").to_numpy(),
        t.column("position").to_numpy(),
        n,
        window,
        symmetric,
    )
