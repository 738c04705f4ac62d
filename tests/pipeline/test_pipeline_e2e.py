"""The pipeline on LocalDagRunner over real ML-100K, every stage's output checked against an independent reference.

The data gets three bad rows injected so that the data report is checked end to end: an unknown item, an exact
duplicate and a malformed timestamp. The TFX CLI test runs a 120-user subset (up to sampling) to stay short.
The run pushes whatever the Evaluator's blessing says (push_unblessed), so that the serving checks do not depend
on a short training beating the baselines; the blessing itself is checked on its artifact, and a rerun without
the override pushes only a blessed model.
"""

import argparse
import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
import tensorflow_gnn as tfgnn

from pipeline import configs, driver
from schema import build, versions
from schema import embeddings as embeddings_io
from schema import graph as graph_io
from schema import neighborhoods as neighborhood_io
from schema import pairs as pairs_io
from tests.fixtures import REPO_ROOT

pytestmark = pytest.mark.slow
N_USERS = 120
SAMPLING = dataclasses.replace(configs.SAMPLING, num_walks=100)
HPARAMS = {"epochs": 2, "seed": 0}
BLESSING = dataclasses.replace(configs.BLESSING, push_unblessed=True)
TOWER = {"epochs": 2}  # a short context tower: the test checks the wiring and the report, not quality
CONFIG = dict(sampling=SAMPLING, hparams=HPARAMS, blessing=BLESSING, context_tower=TOWER)


def _with_bad_rows(ml100k_dir, d, n_users=None):
    shutil.copy(os.path.join(ml100k_dir, "items.csv"), d / "items.csv")
    shutil.copy(os.path.join(ml100k_dir, "dataset.yaml"), d / "dataset.yaml")
    inter = pd.read_csv(os.path.join(ml100k_dir, "interactions.csv"))
    if n_users:
        inter = inter[inter["context_id"] <= n_users]
    bad = pd.DataFrame(
        [
            {"context_id": 1, "item_id": 99999, "timestamp": 874965758, "weight": 3.0},  # unknown item
            inter.iloc[0].to_dict(),  # exact duplicate
        ]
    )
    text = (
        pd.concat([inter, bad.astype(inter.dtypes)]).to_csv(index=False) + "2,1,yesterday,3.0\n"
    )  # malformed timestamp
    (d / "interactions.csv").write_text(text)
    return str(d), inter


@pytest.fixture(scope="module")
def subset(ml100k_dir, tmp_path_factory):
    return _with_bad_rows(ml100k_dir, tmp_path_factory.mktemp("ml100k-subset"), N_USERS)


@pytest.fixture(scope="module")
def full(ml100k_dir, tmp_path_factory):
    return _with_bad_rows(ml100k_dir, tmp_path_factory.mktemp("ml100k-bad"))


@pytest.fixture(scope="module")
def run(full, tmp_path_factory):
    data_dir, _ = full
    out = str(tmp_path_factory.mktemp("run"))
    pipeline, ingest_report = driver.build(out, configs.RunConfig(data_dir=data_dir, **CONFIG))
    timings = driver.run_local(pipeline)
    report = driver.write_data_report(out, ingest_report)
    return out, report, timings


def _tie_hash(inter) -> np.ndarray:
    """Protocol v2's tie-break key per row, from its written definition (pipeline/graph/split.py's docstring):
    SipHash of each id string keyed by the seed 0 as 16 hex digits, mixed per (context, item) pair."""
    m = np.uint64(0x9E3779B97F4A7C15)

    def h(col):
        return pd.util.hash_array(inter[col].astype(str).to_numpy(object), hash_key="0" * 16, categorize=False)

    with np.errstate(over="ignore"):
        x = (h("context_id") * m) ^ h("item_id")
        x ^= x >> np.uint64(32)
        x *= m
        x ^= x >> np.uint64(29)
    return x


def _reference_split(inter):
    ref = inter.assign(tie=_tie_hash(inter)).sort_values(["context_id", "timestamp", "tie"]).copy()
    ref["position"] = ref.groupby("context_id").cumcount()
    n = ref.groupby("context_id")["item_id"].transform("size")
    ref["split"] = np.where(ref["position"] == n - 1, "test", np.where(ref["position"] == n - 2, "validation", "train"))
    return ref


def test_graph_matches_a_pandas_reference(run, full):
    out, _, _ = run
    _, inter = full
    g = graph_io.load_graph(driver.latest_artifact_dir(out, "GraphGen", "graph"))
    items = pd.read_csv(os.path.join(full[0], "items.csv"))
    assert g.num_items == 1682 and g.num_contexts == 943
    # node ids follow numeric item id order; context ids numeric order
    assert list(g.item_ids[:3]) == ["1", "2", "3"] and list(g.item_ids) == [str(i) for i in sorted(items.item_id)]
    assert list(g.context_ids) == [str(i) for i in range(1, 943 + 1)]

    ref = _reference_split(inter)
    got = pd.DataFrame(
        {
            "context_id": g.context_ids[g.context_index].astype(int),
            "item_id": g.item_ids[g.node_id].astype(int),
            "timestamp": g.timestamp,
            "split": g.split,
            "position": g.position,
        }
    )
    assert len(got) == len(ref) == len(inter)
    merged = ref.merge(got, on=["context_id", "item_id"], suffixes=("_ref", ""))
    assert len(merged) == len(ref)
    assert (merged["split"] == merged["split_ref"]).all()
    assert (merged["position"] == merged["position_ref"]).all()
    # invariants: each context's test item is its latest interaction; no held-out pair appears in train
    for ctx, grp in got.groupby("context_id"):
        t = grp[grp.split == "test"]
        assert len(t) == 1 and t.timestamp.iloc[0] == grp.timestamp.max()
        held = set(grp[grp.split != "train"].item_id)
        assert not held & set(grp[grp.split == "train"].item_id)
    # train degree = number of train interactions per item
    deg = np.bincount(g.node_id[g.split == "train"], minlength=g.num_items)
    np.testing.assert_array_equal(g.train_degree, deg)


def test_bad_rows_are_counted_in_the_data_report(run):
    out, report, _ = run
    with open(os.path.join(out, "data_report.json")) as f:
        on_disk = json.load(f)
    assert on_disk == json.loads(json.dumps(report))
    c = report["ingest"]["counts"]
    assert c["interactions.dropped.unknown_item_id"] == 1
    assert c["interactions.dropped.malformed_timestamp"] == 1
    assert report["graph"]["counts"]["graph.dropped.duplicate_interaction"] == 1
    assert report["graph"]["counts"].get("graph.dropped.unknown_item_id", 0) == 0
    assert c["items.year.missing"] == 1  # ML-100K's 'unknown' movie (id 267)
    anomalies = report["example_validator_anomalies"]["items"]
    assert any(a.startswith("year:") for a in anomalies)  # surfaced from ExampleValidator
    assert report["example_validator_anomalies"]["interactions"] == []
    lines = driver.summarize_data_report(report)
    assert any("malformed_timestamp: 1" in ln for ln in lines)


def test_transform_output_conforms_to_the_graph_schema(run):
    out, _, _ = run
    gs = tfgnn.read_schema(os.path.join(build.bundled_dir("ml-100k"), build.GRAPH_SCHEMA))
    node_spec = tfgnn.create_graph_spec_from_schema_pb(gs).node_sets_spec["item"].features_spec
    tdir = driver.latest_artifact_dir(out, "Transform", "transformed_examples")
    # GraphGen's item examples are a Parquet payload, so Transform writes Parquet: one list column per feature
    files = glob.glob(os.path.join(tdir, "Split-items", "*.parquet"))
    assert files, os.listdir(os.path.join(tdir, "Split-items"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    batch = {}
    for name, spec in node_spec.items():
        col = table.column(name).combine_chunks()
        assert col.type.value_type == pa.from_numpy_dtype(spec.dtype.as_numpy_dtype), (name, col.type)
        lengths = pc.list_value_length(col).to_numpy()
        values = col.flatten().to_numpy()
        if isinstance(spec, tf.RaggedTensorSpec):
            batch[name] = np.split(values, np.cumsum(lengths)[:-1])
        else:
            width = int(np.prod(spec.shape[1:]))
            assert (lengths == width).all(), name
            batch[name] = values.reshape([len(lengths)] + spec.shape[1:].as_list())
    assert len(batch["node_id"]) == 1682
    assert sorted(batch["node_id"].tolist()) == list(range(1682))
    mh = batch["genres_multi_hot"]
    assert mh.shape == (1682, build.MULTI_HOT_WIDTH + 1) and set(np.unique(mh)) <= {0.0, 1.0}
    assert (mh.sum(1) >= 1).all()  # every movie has a genre (or 'unknown')
    year = batch["year"]
    assert abs(year.mean()) < 0.01 and abs(year.std() - 1) < 0.01
    assert batch["year_missing"].sum() == 1


def test_rerun_hits_the_tfx_cache(run, full):
    out, _, _ = run

    def executions():
        return sorted(glob.glob(os.path.join(out, "tfx", "*", "*", "*")))

    before = executions()
    pipeline, _ = driver.build(out, configs.RunConfig(data_dir=full[0], **CONFIG))
    driver.run_local(pipeline)
    assert executions() == before  # no component executed again: all cached


def test_sampling_stages_read_the_graph_and_agree_with_it(run):
    out, _, timings = run
    assert {"GraphGen", "Transform", "NeighborhoodSampler", "PairGen"} <= set(timings)
    g = graph_io.load_graph(driver.latest_artifact_dir(out, "GraphGen", "graph"))
    nbr_dir = driver.latest_artifact_dir(out, "NeighborhoodSampler", "neighborhoods")
    nbr, w = neighborhood_io.load_neighborhoods(nbr_dir)
    assert nbr.shape == (g.num_items, SAMPLING.top_t)
    stats = neighborhood_io.read_stats(nbr_dir)  # the default source: the validation probe's choice
    assert stats["source_requested"] == "auto" and stats["source"] == stats["probe"]["chosen"]
    assert os.path.exists(os.path.join(nbr_dir, "source_probe.json"))
    has = g.train_degree > 0
    np.testing.assert_allclose(w[has].sum(1), 1.0, atol=1e-5)  # L1-normalised importance weights
    assert (nbr[~has] == -1).all()  # no train edges -> empty neighbourhood
    # every neighbour (either source) is reachable within walk_length item->context->item hops of the *train*
    # graph, and the neighbours are ordered by weight (visit or transition count), heaviest first
    import scipy.sparse as sp

    ctx, node, _ = g.edges("train")
    a = sp.csr_matrix((np.ones(len(node)), (node, ctx)), shape=(g.num_items, g.num_contexts))
    hop = ((a @ a.T) > 0).astype(np.float64)
    reach = sp.identity(g.num_items, format="csr")
    for _ in range(SAMPLING.walk_length):
        reach = ((reach @ hop) > 0).astype(np.float64)
    rows, cols = np.nonzero(nbr >= 0)
    assert np.asarray(reach[rows, nbr[rows, cols]]).ravel().all()
    assert (np.diff(w, axis=1) <= 1e-7).all()
    # positives: pairs within 3 positions of the same context's train history, recomputed with pandas
    pdir = driver.latest_artifact_dir(out, "PairGen", "pairs")
    q, i, cnt = pairs_io.load_pairs(pdir)
    tr = pd.DataFrame({"c": ctx, "n": node, "p": g.position[g.split == "train"]}).sort_values(["c", "p"])
    ref = {}
    for _, grp in tr.groupby("c"):
        seq = grp["n"].tolist()
        for a in range(len(seq)):
            for b in range(a + 1, min(a + 4, len(seq))):
                if seq[a] != seq[b]:
                    ref[(seq[a], seq[b])] = ref.get((seq[a], seq[b]), 0) + 1
    assert dict(zip(zip(q.tolist(), i.tolist()), cnt.tolist())) == ref


def test_trainer_learns_and_evaluator_reports_against_baselines(run):
    out, _, _ = run
    from modules import evaluation, trainer
    from modules import train as train_lib
    from modules.model import PinSageHParams, build_model

    rdir = driver.latest_artifact_dir(out, "PinSageEvaluator", "report")
    with open(os.path.join(rdir, "report.json")) as f:
        rep = json.load(f)
    assert rep["dataset"] == "ml-100k" and rep["protocol"]["version"] == 2 and "mask" in rep["protocol"]["text"]
    models = {"pinsage", "pinsage_similar", "popularity", "cooccurrence_knn", "transition_counts", "rwr"}
    models |= {"features_only", "context_tower_one_item"}  # the last: the run trains a context tower
    assert set(rep["metrics"]) == models and set(rep["validation_metrics"]) == models
    lists = {"coverage@10", "popular_share@10", "feature_agreement@10"}
    for m in rep["metrics"].values():
        assert {"hr@10", "mrr", "ndcg@10", "recall@10", "hr@500"} | lists <= set(m)
        assert 0 <= m["mrr"] <= m["hr@10"] <= m["hr@500"] <= 1
        assert all(0 <= m[k] <= 1 for k in lists)
    g = graph_io.load_graph(driver.latest_artifact_dir(out, "GraphGen", "graph"))
    assert rep["lists"]["feature"] == "genres" and rep["lists"]["query_items"] == int((g.train_degree >= 5).sum())
    assert rep["metrics"]["popularity"]["coverage@10"] < 0.01  # one list for every query: 10-11 items
    assert set(rep["space"]) == {"pinsage", "features_only"}
    for sp in rep["space"].values():
        assert -1 <= sp["p5"] <= sp["mean"] <= sp["p95"] <= 1 and np.isfinite(sp["kurtosis"])
    for name in ("training curves", "cosine similarity distribution", "embedding map coloured by genres"):
        assert os.path.getsize(os.path.join(rdir, rep["plots"][name])) > 10_000
    assert set(rep["kurtosis"]) == {"pinsage", "features_only"}

    # the report's numbers are the protocol's: recompute two of them independently of the component
    mdir = driver.latest_artifact_dir(out, "PinSageTrainer", "model")
    emb = np.load(os.path.join(mdir, "embeddings.npy"))
    query = np.load(os.path.join(mdir, trainer.QUERY_EMBEDDINGS_FILE))  # the default model has a query head
    assert emb.shape[0] == 1682 and query.shape == emb.shape
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    trained = evaluation.evaluate(evaluation.EmbeddingScorer(emb, query_emb=query), g, "validation")
    assert trained["hr@10"] == pytest.approx(rep["validation_metrics"]["pinsage"]["hr@10"])
    pop = evaluation.evaluate(evaluation.PopularityScorer(g), g, "validation")
    assert pop["hr@10"] == pytest.approx(rep["validation_metrics"]["popularity"]["hr@10"])
    rwr = evaluation.evaluate(evaluation.DenseScorer(evaluation.rwr_matrix(g)), g, "test")
    assert rwr["hr@10"] == pytest.approx(rep["metrics"]["rwr"]["hr@10"])
    nodes = np.flatnonzero(g.train_degree >= 5)
    s = query[nodes] @ emb.T
    s[np.arange(len(nodes)), nodes] = -np.inf
    shown = np.unique(np.argsort(-s, axis=1, kind="stable")[:, :10])
    cov = np.isin(np.flatnonzero(g.train_degree >= 1), shown).mean()
    assert cov == pytest.approx(rep["metrics"]["pinsage"]["coverage@10"], abs=2 / g.num_items)  # float ties
    similar = evaluation.evaluate(evaluation.EmbeddingScorer(emb), g, "test")  # similar_items: z . z
    assert similar["mrr"] == pytest.approx(rep["metrics"]["pinsage_similar"]["mrr"])

    # training helps: validation HR@10 above the same architecture untrained, and above popularity
    inputs = trainer.load_inputs(
        driver.latest_artifact_dir(out, "Transform", "transformed_examples"),
        os.path.join(build.bundled_dir("ml-100k"), build.GRAPH_SCHEMA),
        driver.latest_artifact_dir(out, "GraphGen", "graph"),
        driver.latest_artifact_dir(out, "NeighborhoodSampler", "neighborhoods"),
        driver.latest_artifact_dir(out, "PairGen", "pairs"),
    )
    untrained = build_model(
        PinSageHParams(**HPARAMS),
        inputs["spec"],
        num_items=g.num_items,
        text_vocab_size=train_lib._text_vocab_size(inputs["features"]),
    )
    emb0 = train_lib.embed_all(untrained, inputs["features"], inputs["nbr"], inputs["w"])
    before = evaluation.evaluate(evaluation.EmbeddingScorer(emb0), g, "validation")
    assert trained["hr@10"] > before["hr@10"] + 0.02
    assert trained["hr@10"] > pop["hr@10"]


def test_bulk_embeddings_are_indexed_pushed_and_served(run, capsys):
    out, _, _ = run
    from modules import evaluation
    from pipeline import cli

    emb_dir = driver.latest_artifact_dir(out, "BulkEmbedder", "embeddings")
    emb, ids, titles = embeddings_io.read_embeddings(emb_dir)
    query = embeddings_io.read_query_embeddings(emb_dir)
    mdir = driver.latest_artifact_dir(out, "PinSageTrainer", "model")
    direct = np.load(os.path.join(mdir, "embeddings.npy"))
    assert np.abs(emb - direct).max() <= 1e-4  # layer-wise == the model applied to each K-hop subgraph
    assert np.abs(query - np.load(os.path.join(mdir, "query_embeddings.npy"))).max() <= 1e-4
    assert ids[:2] == ["1", "2"] and titles[0].startswith("Toy Story")
    model_dir = os.path.join(out, "serving_model", "pinsage")
    assert versions.list_versions(model_dir) == [1]
    assert os.path.exists(os.path.join(model_dir, "1", "saved_model.pb"))
    assert os.path.isdir(os.path.join(model_dir, "1", "assets", "index", "scann"))

    result = cli.serve_and_query(out, k=10)  # through the TF Serving gRPC API
    g = graph_io.load_graph(driver.latest_artifact_dir(out, "GraphGen", "graph"))
    queries = evaluation.demo_query_items(g.train_degree)  # a head, a middle and a tail item
    assert len(queries) == 3 and g.train_degree[queries[0]] > g.train_degree[queries[1]] > g.train_degree[queries[2]]
    for row, q in zip(result["item_ids"], queries):
        s = query[q] @ emb.T  # the query head's u_q against the indexed z
        s[q] = -np.inf
        exact = {ids[i] for i in np.argsort(-s)[:10]}
        assert ids[q] not in row and len(row) == 10
        assert len(exact & set(row)) >= 9  # ScaNN vs exact top-10
    s = emb[queries[0]] @ emb.T  # the head item's similar_items list: its own z against z
    s[queries[0]] = -np.inf
    (similar,) = result["similar_items"]["item_ids"]
    assert ids[queries[0]] not in similar and len(set(similar) & {ids[i] for i in np.argsort(-s)[:10]}) >= 9
    printed = capsys.readouterr().out
    for q, stratum in zip(queries, ("head", "middle", "tail")):  # each query's title above its list
        assert f"related to {ids[q]}  {titles[q]}  [{stratum}: {g.train_degree[q]} train interactions]:" in printed
    q = queries[0]
    assert f"similar to (z . z) {ids[q]}  {titles[q]}  [head: {g.train_degree[q]} train interactions]:" in printed


def test_run_report_html_has_the_example_queries_of_the_index(run):
    out, report, timings = run
    import html

    path = driver.publish_report(
        driver.latest_artifact_dir(out, "PinSageEvaluator", "report"),
        out,
        data_report=report,
        examples=driver.example_queries(out, per_bucket=1, k=10),
        timings={"stages": dict(timings), "cached": timings.cached},
    )
    assert path == os.path.join(out, "report.html")
    page = open(path, encoding="utf-8").read()
    assert '<section id="examples">' in page and '<section id="timings">' in page
    assert "## Example queries" in open(os.path.join(out, "report.md"), encoding="utf-8").read()
    # one query from each of the head, torso and tail: each bucket's most engaged movie; its related items are
    # the exact top-10 of the batch embeddings
    emb_dir = driver.latest_artifact_dir(out, "BulkEmbedder", "embeddings")
    emb, ids, titles = embeddings_io.read_embeddings(emb_dir)
    query = embeddings_io.read_query_embeddings(emb_dir)
    g = graph_io.load_graph(driver.latest_artifact_dir(out, "GraphGen", "graph"))
    with open(os.path.join(out, "report.json")) as f:
        examples = json.load(f)["example_queries"]
    assert [ex["bucket"] for ex in examples] == ["head", "torso", "tail"]
    assert examples[0]["query_id"] == ids[int(np.argmax(g.train_degree))]  # the head's most engaged movie
    for ex in examples:
        q = ids.index(ex["query_id"])
        assert ex["train_interactions"] == g.train_degree[q] and ex["query_title"] == titles[q]
        s = query[q] @ emb.T
        s[q] = -np.inf
        exact = [ids[i] for i in np.argsort(-s)[:10]]
        assert len({r["item_id"] for r in ex["related"]} & set(exact)) >= 9
        assert html.escape(f"{ex['query_title']} (id {ids[q]})", quote=True) in page


def _blessing_artifact(out) -> tuple[str, list[str]]:
    """The Evaluator's ModelBlessing directory and its files."""
    d = driver.last_run_output_dir(out, "PinSageEvaluator", "blessing")
    assert d and d == driver.latest_artifact_dir(out, "PinSageEvaluator", "blessing")
    return d, sorted(os.listdir(d))


def test_the_context_tower_is_trained_and_scored_on_history_queries(run):
    """ContextTowerTrainer after the Trainer (form picked by the probe, a SavedModel and its history), and the
    evaluator's history section in the contract's keys, rendered in the run's report."""
    out, _, timings = run
    assert "ContextTowerTrainer" in timings
    tdir = driver.latest_artifact_dir(out, "ContextTowerTrainer", "context_tower")
    with open(os.path.join(tdir, "history.json")) as f:
        hist = json.load(f)
    assert hist["form"] in ("sequence", "set") and hist["form_probe"]["form"] == hist["form"]
    assert hist["epoch"] == [1, 2] and np.isfinite(hist["best_val_hr@10"]) and hist["train_seconds"] > 0
    assert os.path.exists(os.path.join(tdir, "saved_model", "saved_model.pb"))
    rdir = driver.latest_artifact_dir(out, "PinSageEvaluator", "report")
    with open(os.path.join(rdir, "report.json")) as f:
        rep = json.load(f)
    rows = {"context_tower", "popularity", "transitions_last_item", "itemknn_history", "rwr_history", "ease"}
    rows |= {"mean_embedding", "item_to_item_last"}  # 1682 items: EASE runs
    keys = {"hr@10", "ndcg@10", "mrr", "hr@100", "coverage@10", "popular_share@10"}
    for block in ("history_metrics", "history_validation_metrics"):
        assert set(rep[block]) == rows
        for m in rep[block].values():
            assert keys | {k + "_se" for k in keys} <= set(m) and 0 <= m["mrr"] <= m["hr@10"] <= m["hr@100"] <= 1
    assert np.isfinite(rep["history_metrics"]["context_tower"]["hr@10"])
    assert set(rep["history_verdicts"]) == rows - {"context_tower"}
    assert all(v["recommend"] in ("ahead", "within_noise", "behind") for v in rep["history_verdicts"].values())
    assert set(rep["history_verdict_details"]) == set(rep["history_verdicts"])
    info = rep["history_evaluation"]
    assert info["in_blessing"] is True and set(info["chosen"]) == {"itemknn_history", "ease"}
    assert info["tower"]["form"] == hist["form"] and rep["timings"]["history_evaluation"] > 0
    with open(os.path.join(rdir, "report.md")) as f:
        md = f.read()
    assert "## Recommendations from a history" in md and "- recommend (`context_tower`)" in md


def test_the_context_embedder_pushes_a_vector_per_context_that_serves_as_recommend(run, capsys):
    """ContextEmbedder after the BulkEmbedder: one u_c per context in the pushed version; recommend_context
    answers as recommend over the context's whole history (every split, in position order)."""
    from pipeline import cli

    out, _, timings = run
    assert "ContextEmbedder" in timings
    g = graph_io.load_graph(driver.latest_artifact_dir(out, "GraphGen", "graph"))
    with open(
        os.path.join(driver.latest_artifact_dir(out, "ContextEmbedder", "context_vectors"), "context_vectors.json")
    ) as f:
        stats = json.load(f)
    assert stats["contexts"] == g.num_contexts and stats["history_items"] == len(g.node_id) and stats["seconds"] > 0
    result = cli.serve_and_query(out, k=10)
    busiest = np.bincount(g.context_index[g.split == "train"], minlength=g.num_contexts).argmax()
    rows = np.flatnonzero(g.context_index == busiest)
    history = [str(g.item_ids[n]) for n in g.node_id[rows[np.argsort(g.position[rows])]]]
    assert result["recommend_context"]["history_used"] == [len(history)]
    assert not set(result["recommend_context"]["item_ids"][0]) & set(history)
    assert (
        f"recommended for context {g.context_ids[busiest]}  [stored vector; {len(history)}" in capsys.readouterr().out
    )
    model_dir = os.path.join(out, "serving_model", "pinsage")
    version = os.path.join(model_dir, str(versions.latest_version(model_dir)))
    assert len(versions.read_context_arrays(versions.context_dir(version)).context_ids) == g.num_contexts
    from serving import client
    from serving.config import ServingConfig
    from serving.server import serve

    server = serve(ServingConfig(model_dir, port=0, poll_seconds=60, rest_api_port=None), block=False)
    try:
        some = [str(c) for c in g.context_ids[:: max(1, g.num_contexts // 5)]]
        by_context = client.recommend_context(f"localhost:{server.port}", some, 10)
        order = np.lexsort((g.position, g.context_index))
        index = {str(c): i for i, c in enumerate(g.context_ids)}
        whole = [[str(g.item_ids[n]) for n in g.node_id[order][g.context_index[order] == index[c]]] for c in some]
        by_history = client.recommend(f"localhost:{server.port}", whole, 10)
    finally:
        server.stop()
    assert by_context["item_ids"] == by_history["item_ids"]
    np.testing.assert_allclose(by_context["scores"], by_history["scores"], atol=1e-4)


def test_the_evaluator_blesses_the_model_in_a_tfx_blessing_artifact(run, capsys):
    out, _, _ = run
    d, names = _blessing_artifact(out)
    assert names in (["BLESSED"], ["NOT_BLESSED"]) and os.path.getsize(os.path.join(d, names[0])) == 0
    with open(os.path.join(driver.latest_artifact_dir(out, "PinSageEvaluator", "report"), "report.json")) as f:
        rep = json.load(f)
    assert rep["blessed"] is (names == ["BLESSED"]) and rep["blessing"]["blessed"] is rep["blessed"]
    assert rep["blessing"]["metric"] == "hr@10" and set(rep["blessing"]["signatures"]) == {
        "related_items",
        "similar_items",
        "recommend",
    }
    assert rep["blessing"]["signatures"]["recommend"]["model"] == "context_tower"
    assert bool(rep["blessing"]["reasons"]) is not rep["blessed"]
    # the tower is blessed on its own: a tower behind is left out, it does not refuse the version
    assert rep["recommend_blessed"] is rep["blessing"]["recommend_blessed"] in (True, False)
    assert list(rep["blessing"]["left_out"]) == ([] if rep["recommend_blessed"] else ["recommend"])
    assert not any(r.startswith("recommend") for r in rep["blessing"]["reasons"])
    assert set(rep["blessing"]["signatures"]["similar_items"]["baselines"]) == set(configs.SIMILARITY_BASELINES)
    # the run pushed either way (push_unblessed), and its pushed.json says whether the model was blessed
    pushed = driver.pushed_model(out)
    assert pushed["pushed"] is True and pushed["version"] == 1 and pushed["blessed"] is rep["blessed"]
    assert pushed["recommend_blessed"] is rep["recommend_blessed"] and pushed["left_out"] == []  # push_unblessed
    assert "recommend" in pushed["signatures"]
    from pipeline import cli

    capsys.readouterr()
    cli._print_blessing(argparse.Namespace(stop_after=None), out)
    printed = capsys.readouterr().out.splitlines()
    signatures = ["[pinsage] related_items", "[pinsage] similar_items", "[pinsage] recommend"]
    assert [ln.split(" (")[0] for ln in printed[:3]] == signatures  # recommend: the tower is in the blessing
    want = "blessed: pushed version 1" if rep["blessed"] else "; pushed version 1 anyway (--push-unblessed)"
    if rep["blessed"] and not rep["recommend_blessed"]:  # the tower went in only by the override
        want = "blessed: pushed version 1 with recommend NOT blessed ("
    assert want in printed[3] and printed[3].startswith("[pinsage] " + ("b" if rep["blessed"] else "NOT"))


def test_without_the_override_only_a_blessed_model_is_pushed(run, full, capsys):
    """A rerun with the default blessing config: everything up to the Pusher from the cache, and the Pusher,
    whose push_unblessed changed, pushes version 2 of a blessed model, or nothing for an unblessed one. Last in
    this file: it adds a version."""
    out, _, _ = run
    from pipeline import cli

    _, names = _blessing_artifact(out)
    config = configs.RunConfig(data_dir=full[0], **dict(CONFIG, blessing=configs.BLESSING))
    pipeline, _ = driver.build(out, config)
    timings = driver.run_local(pipeline)
    assert "PinSagePusher" not in timings.cached
    assert {"PinSageTrainer", "PinSageEvaluator", "BulkEmbedder", "IndexBuilder"} <= set(timings.cached)
    pushed = driver.pushed_model(out)
    model_dir = os.path.join(out, "serving_model", "pinsage")
    capsys.readouterr()
    cli._print_blessing(argparse.Namespace(stop_after=None), out)
    printed = capsys.readouterr().out
    assert printed.startswith("[pinsage] related_items (pinsage, test hr@10): ")
    if names == ["BLESSED"]:
        assert (pushed["pushed"], pushed["version"]) == (True, 2) and versions.list_versions(model_dir) == [1, 2]
        if pushed["recommend_blessed"]:
            assert "[pinsage] blessed: pushed version 2\n" in printed and "recommend" in pushed["signatures"]
        else:  # the tower was not blessed: the version is pushed without it
            assert "[pinsage] blessed: pushed version 2 without recommend (recommend: behind " in printed
            assert pushed["left_out"] == ["recommend"] and "recommend" not in pushed["signatures"]
        return
    assert (pushed["pushed"], pushed["version"]) == (False, None) and versions.list_versions(model_dir) == [1]
    assert "; nothing pushed (rerun with --push-unblessed to push anyway)" in printed
    assert cli.serve_and_query(out) == {}  # version 1 is there, but it is not this run's model
    assert "nothing served: the model was NOT blessed" in capsys.readouterr().out


def test_cli_reports_an_unusable_file_as_a_clear_error(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "items.csv").write_text("item_id,title\n1,a\n")
    (d / "interactions.csv").write_text("")
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--data-dir", str(d), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2
    assert "interactions.csv: file is empty" in r.stderr


def test_cli_refuses_an_unknown_ablation_before_running(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--dataset",
            "ml-100k",
            "--output",
            str(tmp_path / "out"),
            "--ablations",
            "mean_pooling",
            "no_such_variant",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2
    assert "unknown ablation(s) ['no_such_variant']" in r.stderr and "mean_pooling" in r.stderr
    assert not os.path.exists(tmp_path / "out" / "metadata.sqlite")  # nothing ran


def _sampling_artifacts(out):
    """Every array of the graph, neighbourhood and pairs artifacts of a run, plus their stats (wall times out)."""
    g_uri = driver.latest_artifact_dir(out, "GraphGen", "graph")
    n_uri = driver.latest_artifact_dir(out, "NeighborhoodSampler", "neighborhoods")
    p_uri = driver.latest_artifact_dir(out, "PairGen", "pairs")
    g = graph_io.load_graph(g_uri)
    arrays = {f"graph.{k}": np.asarray(v) for k, v in vars(g).items()}
    arrays.update(zip(("neighborhoods.nbr", "neighborhoods.w"), neighborhood_io.load_neighborhoods(n_uri)))
    arrays.update(zip(("pairs.query", "pairs.positive", "pairs.count"), pairs_io.load_pairs(p_uri)))
    arrays["pairs.hard_negatives"] = pairs_io.load_hard_negatives(p_uri, g.num_items)
    stats = {}
    for name, uri in (("graph", g_uri), ("neighborhoods", n_uri), ("pairs", p_uri)):
        for path in glob.glob(os.path.join(uri, "*.json")):
            with open(path) as f:
                stats[f"{name}/{os.path.basename(path)}"] = _without_times(json.load(f))
    return arrays, stats


def _without_times(record):
    """A stats record with its wall times (`seconds`, the probe's `candidate_seconds`) left out, at any depth."""
    if isinstance(record, dict):
        return {k: _without_times(v) for k, v in record.items() if k not in ("seconds", "candidate_seconds")}
    return record


def test_tfx_cli_local_engine_runs_the_same_pipeline(subset, tmp_path):
    """`tfx pipeline create/run --engine local` and `pinsage run` on the same inputs: the same components and
    the same graph, neighbourhood and pairs artifacts. Both stop after sampling to keep the test short, so model
    weights are not compared."""
    repo = REPO_ROOT
    env = dict(
        os.environ,
        LOCAL_HOME=str(tmp_path / "tfx-home"),
        PINSAGE_DATA_DIR=subset[0],
        PINSAGE_OUTPUT=str(tmp_path / "out"),
        PINSAGE_STOP_AFTER="sampling",
    )
    tfx_cli = os.path.join(os.path.dirname(sys.executable), "tfx")
    for args in (
        [
            "pipeline",
            "create",
            "--engine",
            "local",
            "--pipeline_path",
            os.path.join(repo, "pipeline", "local_runner.py"),
        ],
        ["run", "create", "--engine", "local", "--pipeline_name", driver.PIPELINE_NAME],
    ):
        r = subprocess.run([tfx_cli] + args, env=env, capture_output=True, text=True, timeout=900, cwd=repo)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    g = graph_io.read_stats(driver.latest_artifact_dir(str(tmp_path / "out"), "GraphGen", "graph"))
    assert g["num_items"] == 1682 and g["num_contexts"] == N_USERS

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--data-dir",
            subset[0],
            "--output",
            str(tmp_path / "cli"),
            "--stop-after",
            "sampling",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=repo,
        env=dict(os.environ, PYTHONPATH=repo),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[pinsage] done in" in r.stdout
    components = sorted(os.listdir(tmp_path / "out" / "tfx"))
    assert components == sorted(os.listdir(tmp_path / "cli" / "tfx"))
    assert {"GraphGen", "Transform", "NeighborhoodSampler", "PairGen", "items_validator"} <= set(components)
    a, a_stats = _sampling_artifacts(str(tmp_path / "out"))
    b, b_stats = _sampling_artifacts(str(tmp_path / "cli"))
    assert a_stats == b_stats and set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
