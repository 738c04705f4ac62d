"""The TFX module file of the PinSage trainer: `run_fn(fn_args)` (the TFX Trainer convention).

The stock Trainer component only takes Examples/TransformGraph/Schema inputs, and PinSage also needs the
graph, the importance neighbourhoods and the training pairs, so pipeline/components/trainer.py (PinSageTrainer)
builds TFX's own `FnArgs` with those artifact URIs in `custom_config` and calls this function, the way the stock
Trainer calls a user module.

What it writes:
  serving_model_dir/       the trained Keras model as a SavedModel (input: one minibatch GraphTensor)
  serving_model_dir/../embeddings.npy   [N, d] float32 item embeddings by node id (model applied directly)
  serving_model_dir/../history.json     per-epoch loss / pairs/s / validation metrics, resumed_from_step
  serving_model_dir/../query_embeddings.npy, query_head/   with hparams.query_head (u_q, scored u_q . z_i)
  serving_model_dir/../ablations/<name>/  with custom_config["ablations"]: modules/model.ABLATIONS variants
  model_run_dir/           TensorBoard logs
"""

import time

import numpy as np
import tensorflow as tf

from modules import embedding as bulk_embedder
from modules import (
    evaluation,
    layers,  # noqa: F401  (registers QueryHead)
)
from modules import features as features_lib
from modules import model as model_lib
from modules import train as train_lib
from modules.model import PinSageHParams
from schema import files
from schema import graph as graph_io
from schema import neighborhoods as neighborhood_io
from schema import pairs as pairs_io
from schema.embeddings import EMBEDDINGS_FILE, QUERY_EMBEDDINGS_FILE

QUERY_HEAD_DIR = "query_head"  # only with hparams.query_head: the z -> u Keras model
ABLATIONS_DIR = "ablations"  # <name>/embeddings.npy (+ query_embeddings.npy) per variant
HISTORY_FILE = "history.json"


def load_query_head(model_uri: str):
    """The query head saved beside the model (QUERY_HEAD_DIR of a Model artifact), or None (no query head)."""
    head_dir = files.join(model_uri, QUERY_HEAD_DIR)
    if not files.isdir(head_dir):
        return None

    return tf.keras.models.load_model(head_dir, compile=False)


def load_inputs(
    transformed_examples_dir: str, graph_schema_path: str, graph_uri: str, neighborhoods_uri: str, pairs_uri: str
) -> dict:
    """Everything training needs, in memory, keyed by node id."""

    spec = features_lib.feature_spec(graph_schema_path)
    feats = features_lib.load_item_features(transformed_examples_dir, spec)
    graph = graph_io.load_graph(graph_uri)
    nbr, w = neighborhood_io.load_neighborhoods(neighborhoods_uri)
    q, p, count = pairs_io.load_pairs(pairs_uri)
    hard = pairs_io.load_hard_negatives(pairs_uri, num_items=graph.num_items)
    if nbr.shape[0] != graph.num_items:
        raise ValueError(f"neighbourhoods cover {nbr.shape[0]} items, the graph has {graph.num_items}")
    return {
        "spec": spec,
        "features": feats,
        "graph": graph,
        "nbr": nbr,
        "w": w,
        "query": q,
        "positive": p,
        "count": count,
        "hard": hard,
    }


def embed_items(model, inputs: dict) -> np.ndarray:
    """[N, d] embeddings of every item, layer by layer (pipeline/bulk_embedder.embed_in_memory: each item's state
    computed once per layer instead of once per K-hop subgraph that holds it; equal to embed_all within float
    error, tests/pipeline/embedding/test_bulk_embedder.py)."""

    return bulk_embedder.embed_in_memory(
        bulk_embedder.LayerwiseModel(model), inputs["features"], inputs["nbr"], inputs["w"]
    )


def validation_fn_for(inputs: dict, split: str = "validation", max_contexts: int | None = None):
    """validation_fn(model, epoch) -> protocol metrics of the model's embeddings on `split` (docs/DESIGN.md), on a
    fixed sample of `max_contexts` contexts when given (the evaluator's --eval-contexts)."""

    queries = evaluation.build_queries(inputs["graph"], split, max_contexts=max_contexts)

    def fn(model, epoch):
        emb = embed_items(model, inputs)
        scorer = evaluation.EmbeddingScorer(emb, query_emb=train_lib.query_embeddings(model, emb))
        return evaluation.metrics_from_ranks(evaluation.ranks(scorer, queries))

    return fn


def choose_similarity_weight(model, emb: np.ndarray, inputs: dict, hparams: PinSageHParams, max_contexts=None):
    """Sets the served query's similarity weight lambda (layers.QueryHead) and returns how it was chosen.

    A fixed hparams.similarity_weight is applied as given. None chooses from model.SIMILARITY_WEIGHTS on the
    validation split by the one-standard-error rule (Breiman et al. 1984, "Classification and Regression Trees"
    §3.4.3; Hastie et al., "The Elements of Statistical Learning" §7.10): the largest lambda whose validation
    HR@10 is within one standard error sqrt(h (1 - h) / n) of the best lambda's. Differences inside that band are
    noise (the same run on two machines differs by about that much), and a larger lambda takes the
    lists further from the shared popular direction of the query vectors. Without a validation split: lambda 0.
    """
    head = train_lib.query_head_of(model)
    if head is None:
        return None
    if hparams.similarity_weight is not None:
        train_lib.set_similarity_weight(head, hparams.similarity_weight)
        return {"chosen": float(hparams.similarity_weight), "rule": "fixed"}
    g = inputs["graph"]
    if not np.any(g.split == "validation"):
        train_lib.set_similarity_weight(head, 0.0)
        return {"chosen": 0.0, "rule": "no validation split"}
    queries = evaluation.build_queries(g, "validation", max_contexts=max_contexts)
    hr = []
    for lam in model_lib.SIMILARITY_WEIGHTS:
        train_lib.set_similarity_weight(head, lam)
        scorer = evaluation.EmbeddingScorer(emb, query_emb=train_lib.query_embeddings(model, emb))
        hr.append(evaluation.metrics_from_ranks(evaluation.ranks(scorer, queries))[f"hr@{evaluation.K}"])
    chosen, se = one_standard_error_choice(model_lib.SIMILARITY_WEIGHTS, hr, len(queries))
    train_lib.set_similarity_weight(head, chosen)
    return {
        "chosen": chosen,
        "rule": "one standard error",
        "weights": list(model_lib.SIMILARITY_WEIGHTS),
        f"validation_hr@{evaluation.K}": hr,
        "standard_error": se,
    }


def one_standard_error_choice(values, hit_rates, n: int) -> tuple[float, float]:
    """(the largest value whose hit rate is >= best - SE, SE), SE = sqrt(h (1 - h) / n) of the best hit rate h
    over n queries (binomial)."""
    best = float(np.max(hit_rates))
    se = float(np.sqrt(best * (1.0 - best) / n))
    return float(max(v for v, h in zip(values, hit_rates) if h >= best - se)), se


def train_and_embed(
    inputs: dict,
    hparams: PinSageHParams,
    out_dir: str,
    log_dir: str | None = None,
    validate: bool = True,
    max_contexts: int | None = None,
    checkpoint_dir: str | None = None,
):
    """Trains, embeds every item, writes embeddings + history under out_dir; returns (model, emb, history).
    Checkpoints go to checkpoint_dir (default out_dir/train); training resumes from the one it holds."""
    t0 = time.time()
    model, history = train_lib.train(
        inputs["features"],
        inputs["nbr"],
        inputs["w"],
        inputs["query"],
        inputs["positive"],
        inputs["hard"],
        hparams,
        model_dir=checkpoint_dir or files.join(out_dir, "train"),
        log_dir=log_dir,
        pair_counts=inputs.get("count"),
        validation_fn=validation_fn_for(inputs, max_contexts=max_contexts) if validate else None,
        feature_spec=inputs["spec"],
    )
    emb = embed_items(model, inputs)
    blend = choose_similarity_weight(model, emb, inputs, hparams, max_contexts=max_contexts)
    if blend is not None:
        history["similarity_weight"] = blend
    files.makedirs(out_dir)
    files.np_save(files.join(out_dir, EMBEDDINGS_FILE), emb.astype(np.float32))
    if train_lib.query_head_of(model) is not None:
        query = train_lib.query_embeddings(model, emb).astype(np.float32)
        files.np_save(files.join(out_dir, QUERY_EMBEDDINGS_FILE), query)
    history["train_seconds"] = time.time() - t0
    history["hparams"] = hparams.to_dict()
    files.write_json(files.join(out_dir, HISTORY_FILE), history, indent=1)
    return model, emb, history


def run_fn(fn_args):
    """TFX Trainer entry point. custom_config: graph_uri, neighborhoods_uri, pairs_uri, graph_schema, hparams,
    ablations (optional list of modules/model.ABLATIONS names), eval_contexts (optional validation sample),
    checkpoint_dir (optional: a directory that outlives the execution, so that a re-run after a kill resumes
    training from its last checkpoint; the model's under main/, each ablation's under ablations/<name>/)."""
    cfg = fn_args.custom_config
    ckpt = cfg.get("checkpoint_dir") or None
    hp = PinSageHParams.from_dict(dict(cfg.get("hparams") or {}))
    inputs = load_inputs(
        fn_args.train_files[0], cfg["graph_schema"], cfg["graph_uri"], cfg["neighborhoods_uri"], cfg["pairs_uri"]
    )
    out_dir = files.dirname(fn_args.serving_model_dir.rstrip("/"))
    model, _, _ = train_and_embed(
        inputs,
        hp,
        out_dir,
        log_dir=fn_args.model_run_dir,
        max_contexts=cfg.get("eval_contexts") or None,
        checkpoint_dir=ckpt and files.join(ckpt, "main"),
    )
    for name in cfg.get("ablations") or ():
        # Same inputs, pairs and loss settings; only what the ablation names differs. Embeddings only (the
        # evaluator reports them next to the model); no SavedModel is kept for a variant.
        train_and_embed(
            inputs,
            model_lib.ablation_hparams(hp, name),
            files.join(out_dir, ABLATIONS_DIR, name),
            validate=False,
            checkpoint_dir=ckpt and files.join(ckpt, ABLATIONS_DIR, name),
        )
    model.save(fn_args.serving_model_dir, include_optimizer=False)
    head = train_lib.query_head_of(model)
    if head is not None:
        head.save(files.join(out_dir, QUERY_HEAD_DIR), include_optimizer=False)


def load_model_embeddings(model_uri: str) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(embeddings, query embeddings or None, {ablation name: (embeddings, query embeddings or None)})."""

    def load(d):
        q = files.join(d, QUERY_EMBEDDINGS_FILE)
        return files.np_load(files.join(d, EMBEDDINGS_FILE)), (files.np_load(q) if files.exists(q) else None)

    emb, query = load(model_uri)
    root = files.join(model_uri, ABLATIONS_DIR)
    names = files.listdir(root) if files.isdir(root) else []
    return (
        emb,
        query,
        {n: load(files.join(root, n)) for n in names if files.exists(files.join(root, n, EMBEDDINGS_FILE))},
    )
