"""BulkEmbedder: trained model + item features + neighbourhoods -> an embedding for every item, layer by layer
(modules/embedding.py), as a Beam TFX component.

Inputs: `model` (standard Model; the Keras SavedModel at <uri>/Format-Serving), `examples` (Transform's
transformed item examples; the first split is read, as PinSageTrainer does), `neighborhoods`, `graph` (item ids,
and titles if its items table has a `title` column); exec property `graph_schema` (path of the TF-GNN
GraphSchema .pbtxt giving the feature spec). Output `embeddings` (Embeddings): embeddings.npy [N, d] float32 in
node-id order + item_ids.txt (+ titles.txt) + embedding_rows-*.tfrecord (tf.Example node_id, item_id,
embedding) + bulk_embedder_stats.json.

Strategies (EmbedConfig.strategy): 'beam': the join-per-layer Beam pipeline on the component's runner (what `auto`
means without a pipeline to resolve it); 'in_memory': one process, numpy tables per layer (small catalogues). Both
give the same vectors.

    embedder = BulkEmbedder(model=trainer.outputs['model'], examples=transform.outputs['transformed_examples'],
                            neighborhoods=sampler.outputs['neighborhoods'], graph=graph_gen.outputs['graph'],
                            graph_schema=GRAPH_SCHEMA_PATH)
    embedder.outputs['embeddings']
"""

from __future__ import annotations

import time

from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import path_utils

from modules import embedding as be
from modules import features as features_lib
from modules import train, trainer
from pipeline.components import artifacts
from pipeline.configs import EMBED, EmbedConfig
from pipeline.embedding import beam_embedder
from schema import embeddings as embeddings_io
from schema import files
from schema import graph as graph_io
from schema import neighborhoods as neighborhood_io

STRATEGIES = ("beam", "in_memory")
STATS_FILE = "bulk_embedder_stats.json"


class BulkEmbedderSpec(ComponentSpec):
    PARAMETERS = {
        "graph_schema": ExecutionParameter(type=str),
        "strategy": ExecutionParameter(type=str),
        "batch_size": ExecutionParameter(type=int),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "neighborhoods": ChannelParameter(type=artifacts.Neighborhoods),
        "graph": ChannelParameter(type=artifacts.PinSageGraph),
    }
    OUTPUTS = {"embeddings": ChannelParameter(type=artifacts.Embeddings)}


def example_dir(examples_artifacts) -> str:
    examples = artifact_utils.get_single_instance(examples_artifacts)
    split = artifact_utils.decode_split_names(examples.split_names)[0]
    return artifact_utils.get_split_uri([examples], split)


def query_vectors(input_dict, emb):
    """The trained query head (modules/trainer.py QUERY_HEAD_DIR) applied to every embedding, or None without
    one. A row-wise map of a small MLP over vectors already in memory for the index, so not a Beam stage."""

    head = trainer.load_query_head(artifact_utils.get_single_uri(input_dict["model"]))
    return None if head is None else train.apply_query_head(head, emb)


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties):

        strategy = exec_properties.get("strategy") or "beam"
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        batch_size = int(exec_properties.get("batch_size") or EMBED.batch_size)
        model_dir = path_utils.serving_model_dir(artifact_utils.get_single_uri(input_dict["model"]))
        examples = example_dir(input_dict["examples"])
        nbr_uri = artifact_utils.get_single_uri(input_dict["neighborhoods"])
        graph_uri = artifact_utils.get_single_uri(input_dict["graph"])
        out = artifact_utils.get_single_instance(output_dict["embeddings"])
        spec = features_lib.feature_spec(exec_properties["graph_schema"])
        item_ids, titles = graph_io.graph_items(graph_uri)
        files.makedirs(out.uri)
        start = time.time()
        if strategy == "in_memory":
            lw = be.LayerwiseModel.from_saved_model(model_dir)
            feats = features_lib.load_item_features(examples, spec)
            nbr, w = neighborhood_io.load_neighborhoods(nbr_uri)
            if nbr.shape[0] != len(item_ids):
                raise ValueError(f"neighbourhoods cover {nbr.shape[0]} items, the graph has {len(item_ids)}")
            emb = be.embed_in_memory(lw, feats, nbr, w, batch_size=batch_size)
            be.write_rows(out.uri, emb, item_ids)
        else:
            with self._make_beam_pipeline() as p:
                beam_embedder.embed_beam(
                    p,
                    model_dir,
                    features_lib._files(examples),
                    spec,
                    nbr_uri,
                    graph_uri,
                    out.uri,
                    batch_size=batch_size,
                )
            node_ids, _, rows = be.read_rows(out.uri)
            emb = be.assemble(node_ids, rows, len(item_ids))
        embeddings_io.write_embeddings(out.uri, emb, item_ids, titles, query_embeddings=query_vectors(input_dict, emb))
        seconds = time.time() - start
        files.write_json(
            files.join(out.uri, STATS_FILE),
            {
                "strategy": strategy,
                "items": len(item_ids),
                "dim": int(emb.shape[1]),
                "seconds": seconds,
                "items_per_second": len(item_ids) / max(seconds, 1e-9),
                "batch_size": batch_size,
            },
            indent=1,
            sort_keys=True,
        )
        out.set_int_custom_property("num_items", len(item_ids))
        out.set_string_custom_property("strategy", strategy)


class BulkEmbedder(base_beam_component.BaseBeamComponent):
    """model + examples + neighborhoods + graph -> embeddings (Embeddings); see the module docstring."""

    SPEC_CLASS = BulkEmbedderSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        examples: types.BaseChannel,
        neighborhoods: types.BaseChannel,
        graph: types.BaseChannel,
        graph_schema: str,
        config: EmbedConfig = EMBED,
    ):
        # `auto` is the pipeline's to resolve from its runner (pipeline.resolve_embed_strategy); a component made
        # without one takes the Beam path, which runs on any runner
        strategy = "beam" if config.strategy == "auto" else config.strategy
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        super().__init__(
            spec=BulkEmbedderSpec(
                model=model,
                examples=examples,
                neighborhoods=neighborhoods,
                graph=graph,
                graph_schema=graph_schema,
                strategy=strategy,
                batch_size=config.batch_size,
                embeddings=types.Channel(type=artifacts.Embeddings),
            )
        )
