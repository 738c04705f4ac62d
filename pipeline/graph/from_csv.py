"""A Graph straight from a CSV-contract directory, split exactly as GraphGen does, without TFX (benches, tests).

Node ids / context indices are the ids' positions in id order and the split is split.split_partition, ties in time
by split.id_hashes of the sorted id arrays — the same functions GraphGen's Beam transform calls. Assumes clean input
(ids stripped, integer timestamps): Ingest's checks are not repeated here.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from pipeline.graph.split import id_hashes, sorted_ids, split_partition
from schema.graph import Graph


def graph_from_csv(data_dir: str) -> Graph:
    read = dict(dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True)
    items = pd.read_csv(os.path.join(data_dir, "items.csv"), usecols=["item_id"], **read)["item_id"].str.strip()
    inter = pd.read_csv(os.path.join(data_dir, "interactions.csv"), **read)
    item_ids, _ = sorted_ids(items.to_numpy())
    node_of = pd.Series(np.arange(len(item_ids)), index=item_ids)
    inter = inter[inter["item_id"].str.strip().isin(node_of.index)]
    context_ids, _ = sorted_ids(inter["context_id"].str.strip().to_numpy())
    ctx_of = pd.Series(np.arange(len(context_ids)), index=context_ids)
    weight = pd.to_numeric(inter["weight"]).to_numpy(np.float64) if "weight" in inter else np.ones(len(inter))
    cols, _, _ = split_partition(
        ctx_of.loc[inter["context_id"].str.strip()].to_numpy().astype(np.int64),
        node_of.loc[inter["item_id"].str.strip()].to_numpy().astype(np.int64),
        pd.to_numeric(inter["timestamp"]).to_numpy(np.int64),
        weight,
        id_hashes(context_ids),
        id_hashes(item_ids),
    )
    node = cols["node_id"]
    return Graph(
        item_ids=item_ids.astype(object),
        train_degree=np.bincount(node[cols["split"] == "train"], minlength=len(item_ids)),
        context_ids=context_ids.astype(object),
        context_index=cols["context_index"],
        node_id=node,
        timestamp=cols["timestamp"],
        weight=cols["weight"].astype(np.float64),
        split=cols["split"],
        position=cols["position"].astype(np.int64),
    )
