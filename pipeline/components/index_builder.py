"""IndexBuilder (custom TFX component): an Embeddings artifact -> an Index artifact (modules/index.py's layout).

A thin shell: the index is built, measured and serialized by modules.index.build_index. With GraphGen's
`item_examples` and the dataset's `features` (dataset.yaml kinds, as JSON), each item's numeric and categorical
feature columns go into the index as its displayable attributes (schema/versions.py attributes.bin), which the
related-items page shows beside the title: numbers as plain text (1995.0 -> "1995"), a categorical cell split on
its separator into a list. Text and dense-vector columns are not shown (long, or not readable).
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Union

import numpy as np
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from modules.index import BRUTE_FORCE_BELOW, REORDER, build_index
from pipeline.components import artifacts
from schema import files
from schema.embeddings import read_embeddings, read_query_embeddings

DISPLAYED_KINDS = ("numeric", "categorical")  # dataset.yaml feature kinds shown as attributes


class IndexBuilderSpec(ComponentSpec):
    PARAMETERS = {
        "brute_force_below": ExecutionParameter(type=int),
        "num_leaves": ExecutionParameter(type=int),
        "leaves_to_search": ExecutionParameter(type=int),
        "reorder": ExecutionParameter(type=int),
        "recall_queries": ExecutionParameter(type=int),
        "seed": ExecutionParameter(type=int),
        "features": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "embeddings": ChannelParameter(type=artifacts.Embeddings),
        "item_examples": ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }
    OUTPUTS = {"index": ChannelParameter(type=artifacts.Index)}


def _number_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.6g}"


def _cell(values: list, kind: str, separator: Optional[str]) -> Union[str, List[str], None]:
    """One item's cell (a tf.Example-shaped list) as display text; None when it is empty."""
    if kind == "numeric":
        texts = [_number_text(v) for v in values if v is not None and np.isfinite(v)]
    else:
        texts = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values if v is not None]
        if separator:
            texts = [part.strip() for t in texts for part in t.split(separator)]
        texts = [t for t in texts if t.strip()]
    if not texts:
        return None
    return texts[0] if len(texts) == 1 and not separator else texts


def item_attributes(examples_dir: str, features: Dict[str, dict], num_items: int) -> Optional[List[dict]]:
    """Per node id, {column: text | [text, ...]} of the numeric and categorical `features` found in GraphGen's
    item examples (Parquet, one list column per feature, node_id); None when the dataset has no such column."""
    shown = {c: f for c, f in features.items() if f.get("kind") in DISPLAYED_KINDS}
    if not shown:
        return None
    out: List[dict] = [{} for _ in range(num_items)]
    for path in sorted(files.glob(files.join(examples_dir, "*.parquet"))):
        table = files.read_parquet(path)
        cols = [c for c in shown if c in table.column_names]
        nodes = table.column("node_id").to_pylist()
        values = {c: table.column(c).to_pylist() for c in cols}
        for j, node in enumerate(nodes):
            if not node or not 0 <= node[0] < num_items:
                continue
            for c in cols:
                text = _cell(values[c][j] or [], shown[c]["kind"], shown[c].get("separator"))
                if text is not None:
                    out[node[0]][c] = text
    return out


def _attributes(input_dict, exec_properties, num_items: int) -> Optional[List[dict]]:
    given, features = input_dict.get("item_examples"), exec_properties.get("features")
    if not given or not features:
        return None
    art = artifact_utils.get_single_instance(given)
    split = artifact_utils.decode_split_names(art.split_names)[0]
    return item_attributes(artifact_utils.get_split_uri([art], split), json.loads(features), num_items)


class Executor(base_executor.BaseExecutor):
    """Reads embeddings.npy + item_ids.txt (+ titles.txt, + the item examples' attributes) and writes the index
    directory into the Index artifact."""

    def Do(self, input_dict, output_dict, exec_properties):
        uri = artifact_utils.get_single_uri(input_dict["embeddings"])
        emb, ids, titles = read_embeddings(uri)
        out = artifact_utils.get_single_instance(output_dict["index"])
        stats = build_index(
            emb,
            ids,
            out.uri,
            titles=titles,
            attributes=_attributes(input_dict, exec_properties, len(ids)),
            query_embeddings=read_query_embeddings(uri),
            recall_queries=int(exec_properties["recall_queries"]),
            seed=int(exec_properties["seed"]),
            brute_force_below=int(exec_properties["brute_force_below"]),
            num_leaves=int(exec_properties["num_leaves"]),
            leaves_to_search=int(exec_properties["leaves_to_search"]),
            reorder=int(exec_properties["reorder"]),
        )
        out.set_string_custom_property("kind", stats["kind"])
        out.set_float_custom_property("recall_at_10", stats["recall_at_10"])


class IndexBuilder(base_component.BaseComponent):
    """embeddings (Embeddings) (+ item_examples and features: the items' attributes) -> index (Index);
    `num_leaves=0` / `leaves_to_search=0` pick ~sqrt(N) / max(8, leaves/40).

        index = IndexBuilder(embeddings=bulk_embedder.outputs['embeddings'],
                             item_examples=graph_gen.outputs['item_examples'], features=dataset_features)
        index.outputs['index']
    """

    SPEC_CLASS = IndexBuilderSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        embeddings: types.BaseChannel,
        item_examples: Optional[types.BaseChannel] = None,
        features: Optional[dict] = None,
        brute_force_below: int = BRUTE_FORCE_BELOW,
        num_leaves: int = 0,
        leaves_to_search: int = 0,
        reorder: int = REORDER,
        recall_queries: int = 1000,
        seed: int = 0,
    ):
        super().__init__(
            spec=IndexBuilderSpec(
                embeddings=embeddings,
                item_examples=item_examples,
                features=json.dumps(features) if features else None,
                index=types.Channel(type=artifacts.Index),
                brute_force_below=brute_force_below,
                num_leaves=num_leaves,
                leaves_to_search=leaves_to_search,
                reorder=reorder,
                recall_queries=recall_queries,
                seed=seed,
            )
        )
