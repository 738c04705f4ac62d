"""The run report (pipeline/evaluation/report.py, driver.publish_report): report.md / report.html from a small report.json,
data report and real plots, read back with the stdlib HTML parser rather than by matching our own strings."""

import base64
import json
import os
from html.parser import HTMLParser

import numpy as np
import pytest

from modules import index as index_builder
from pipeline.data import datasets
from pipeline.evaluation import report as report_lib

PNG = b"\x89PNG\r\n\x1a\n"
NASTY = "<b>Tom & Jerry</b> <script>x()</script>"


class _Doc(HTMLParser):
    """Section ids, images, table rows (cell texts) and text per section of an HTML page."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.sections, self.imgs, self.rows, self.tags = [], [], [], []
        self.text: dict[str, str] = {}
        self._row, self._cell = None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(a["id"])
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        key = self.sections[-1] if self.sections else ""
        self.text[key] = self.text.get(key, "") + data


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """A report as the evaluator + driver make it, with real matplotlib plots (tiny data)."""
    d = tmp_path_factory.mktemp("report")
    os.makedirs(d / "plots")
    rng = np.random.default_rng(0)
    report_lib.plot_training_curves(
        {"epoch": [1, 2], "loss": [0.9, 0.5], "val_hr@10": [0.05, 0.08]}, str(d / "plots" / "training.png")
    )
    cos = {"pinsage": rng.normal(0, 0.3, 2000), "features_only": rng.normal(0.4, 0.1, 2000)}
    report_lib.plot_cosine_distribution(cos, str(d / "plots" / "cosine_similarity.png"))
    emb = datasets.clustered_vectors(80, 8, clusters=4)
    report_lib.plot_embedding_map(
        emb,
        rng.integers(-1, 3, 80),
        ["Drama", "Comedy & <Kids>", "War"],
        str(d / "plots" / "embedding_map.png"),
        max_points=80,
    )
    m = {
        "pinsage": dict(zip(report_lib.METRICS, (0.12, 0.05, 0.07, 0.12, 0.7, 0.47, 0.12, 0.61))),
        "popularity": dict(zip(report_lib.METRICS, (0.04, 0.02, 0.03, 0.04, 0.5, 0.0065, 1.0, 0.25))),
    }
    report = {
        "dataset": "tiny",
        "protocol": "per context: last = test",
        "metrics": m,
        "validation_metrics": {"pinsage": {"hr@10": 0.11}, "popularity": {"hr@10": 0.03}},
        "kurtosis": {k: report_lib.kurtosis(v) for k, v in cos.items()},
        "space": {k: report_lib.space_spread(v) for k, v in cos.items()},
        "lists": {
            "query_items": 1100,
            "total_query_items": 1100,
            "min_train_interactions": 5,
            "popular_items": 50,
            "feature": "genres",
        },
        "plots": {
            "training curves": "plots/training.png",
            "cosine similarity distribution": "plots/cosine_similarity.png",
            "embedding map coloured by genres": "plots/embedding_map.png",
        },
        "timings": {"evaluation": 1.5, "plots": 2.0, "training": 30.0},
    }
    with open(d / "report.json", "w") as f:
        json.dump(report, f)
    return d, report


DATA = {
    "dataset": "tiny",
    "ingest": {
        "items": {"rows_read": 5, "rows_kept": 4},
        "interactions": {"rows_read": 20, "rows_kept": 17},
        "counts": {
            "interactions.dropped.unknown_item_id": 2,
            "interactions.dropped.malformed_timestamp": 1,
            "interactions.dropped.invalid_weight": 0,
            "items.dropped.duplicate_item_id": 1,
        },
    },
    "features": {"title": {"kind": "text"}, "genres": {"kind": "categorical"}},
    "features_inferred": [],
    "graph": {
        "num_items": 4,
        "num_contexts": 3,
        "num_interactions": 16,
        "counts": {
            "interactions.train": 10,
            "interactions.validation": 3,
            "interactions.test": 3,
            "graph.dropped.duplicate_interaction": 1,
        },
    },
    "example_validator_anomalies": {"items": ["year: Missing <values> (x & y)"], "interactions": []},
}
EXAMPLES = [
    {
        "item_id": "1",
        "title": NASTY,
        "related": [
            {"item_id": "7", "title": "Heat (1995)", "score": 0.91},
            {"item_id": "8", "title": "Up & Away <2>", "score": 0.8},
        ],
    },
    {"item_id": "2", "title": "", "related": [{"item_id": "1", "title": NASTY, "score": 0.5}]},
]
TIMINGS = {
    "stages": {"ingest": 3.0, "GraphGen": 0.12, "Transform": 0.1, "PinSageTrainer": 95.0},
    "cached": ["GraphGen", "Transform"],
    "executed": {"GraphGen": 15.04, "PinSageTrainer": 95.0},
    "pipeline_s": 140.0,
}


@pytest.fixture(scope="module")
def published(report_dir, tmp_path_factory):
    from pipeline import driver

    src, _ = report_dir
    out = tmp_path_factory.mktemp("out")
    path = driver.publish_report(str(src), str(out), data_report=DATA, timings=TIMINGS, examples=EXAMPLES)
    assert path == os.path.join(out, "report.html")
    return out


def test_html_has_every_section_and_inlines_every_plot(published, report_dir):
    src, report = report_dir
    page = (published / "report.html").read_text(encoding="utf-8")
    doc = _Doc(page)
    # the summary and the quality chart first, then what a reader digs into
    assert doc.sections == [
        "summary",
        "quality",
        "examples",
        "dataset",
        "anomalies",
        "similarity",
        "embedding-map",
        "timings",
        "training",
    ]
    # self-contained: no external stylesheet, script or image; each plot is the PNG file's own bytes
    assert not {"link", "script"} & set(doc.tags)
    plots = json.loads((published / "report.json").read_text())["plots"]
    assert plots == {"quality vs baselines": "plots/quality.png", **report["plots"]}  # the chart drawn by write()
    assert len(doc.imgs) == len(plots) and doc.imgs[0]["alt"] == "quality vs baselines"
    for img in doc.imgs:
        head, b64 = img["src"].split(",", 1)
        assert head == "data:image/png;base64"
        png = base64.b64decode(b64, validate=True)
        assert png.startswith(PNG)
        assert png == (published / plots[img["alt"]]).read_bytes()
    for name, rel in report["plots"].items():  # the evaluator's plots, copied next to report.md
        assert (published / rel).read_bytes() == (src / rel).read_bytes()
    # contents per section
    assert "unknown_item_id" in doc.text["anomalies"] and "year: Missing <values> (x & y)" in doc.text["anomalies"]
    assert ["interactions.dropped.unknown_item_id", "2"] in doc.rows
    assert ["interactions.dropped.invalid_weight", "0"] not in doc.rows  # zero counts collapsed, not tabled
    assert "1 check found nothing" in doc.text["anomalies"]
    assert ["train / validation / test interactions", "10 / 3 / 3"] in doc.rows
    # two narrow tables: ranking metrics (with the validation HR@10), list metrics
    assert ["model", "HR@10", "NDCG@10", "MRR", "Recall@10", "HR@500", "validation HR@10"] in doc.rows
    assert ["pinsage", "0.120", "0.070", "0.050", "0.120", "0.700", "0.110"] in doc.rows
    assert ["model", "coverage@10", "popular_share@10", "feature_agreement@10"] in doc.rows
    assert ["pinsage", "0.470", "0.120", "0.610"] in doc.rows
    assert "related_items (pinsage): HR@10 0.120 — best baseline popularity (0.040)" in doc.text["summary"]
    assert "no paired verdict" in doc.text["summary"] and "popularity" not in doc.sections
    assert "coverage@10 = share of the items with >= 1 train interaction" in doc.text["quality"]
    assert "shares at least one <code>genres</code> value" in page  # backticks become code
    # the similarity table: mean, 5th / 95th percentile and kurtosis of random-pair cosines, per model
    assert ["model", "mean cosine", "5th pct", "95th pct", "kurtosis"] in doc.rows
    c = cos_of(report)
    want = [f"{c.mean():.4f}", f"{np.percentile(c, 5):.4f}", f"{np.percentile(c, 95):.4f}", f"{kurtosis(c):.4f}"]
    assert ["features_only"] + want in doc.rows
    assert "spread out, i.e." not in page and "does not mean the space is spread out" in doc.text["similarity"]
    stages = [r[0] for r in doc.rows if r and r[0] in TIMINGS["stages"]]
    assert stages == list(TIMINGS["stages"])  # run order, not sorted
    assert ["GraphGen", "0.1", "cached (15.0 s when it ran)"] in doc.rows and ["Transform", "0.1", "cached"] in doc.rows
    assert ["PinSageTrainer", "95.0", ""] in doc.rows
    assert (
        "140.0 s" in doc.text["timings"]
        and "run wall time 2.3 min (140 s): ingest and every stage, 2 of 4 stages from the cache" in doc.text["summary"]
    )


def cos_of(report):
    """features_only's random-pair cosines as the fixture drew them (seed 0, after pinsage's)."""
    rng = np.random.default_rng(0)
    rng.normal(0, 0.3, 2000)
    return rng.normal(0.4, 0.1, 2000)


def kurtosis(c):
    m = c - c.mean()
    return float((m**4).mean() / (m**2).mean() ** 2 - 3.0)


def test_space_spread_by_hand():
    c = np.array([0.0, 0.5, 0.5, 1.0, 0.9, 0.2, 0.6, 0.3, 0.8, 0.7])
    got = report_lib.space_spread(c)
    s = sorted(c)  # linear interpolation at (n - 1) q: 0.45 -> between s[0] and s[1]; 8.55 -> s[8] and s[9]
    assert got["mean"] == pytest.approx(0.55)
    assert got["p5"] == pytest.approx(s[0] + 0.45 * (s[1] - s[0]))
    assert got["p95"] == pytest.approx(s[8] + 0.55 * (s[9] - s[8]))
    assert got["kurtosis"] == pytest.approx(kurtosis(c))


def test_html_escapes_titles_and_anomaly_text(published):
    page = (published / "report.html").read_text(encoding="utf-8")
    doc = _Doc(page)
    assert "<b>Tom" not in page and "<script>x()" not in page and "<values>" not in page
    text = doc.text["examples"]
    assert f"{NASTY} (id 1)" in text and "Heat (1995) (id 7)" in text and "Up & Away <2> (id 8)" in text
    assert text.index("Heat (1995)") < text.index("Up & Away <2>")  # rank order kept
    assert "script" not in doc.tags


def test_markdown_and_json_carry_the_run_sections(published):
    md = (published / "report.md").read_text(encoding="utf-8")
    for h in (
        "## Summary",
        "## Dataset",
        "## Data anomalies",
        "## Quality vs baselines",
        "## Similarity distribution",
        "## Example queries",
        "## Timings per stage",
    ):
        assert h in md
    ex = md[md.index("## Example queries") : md.index("## Timings per stage")]
    assert "1. Heat (1995) (id 7) (0.910)" in ex and "2. Up & Away <2> (id 8) (0.800)" in ex
    assert (
        "| GraphGen | 0.1 | cached (15.0 s when it ran) |" in md
        and "| interactions.dropped.malformed_timestamp | 1 |" in md
    )
    assert "![embedding map coloured by genres](plots/embedding_map.png)" in md
    q = md[md.index("## Quality vs baselines") :].split("\n## ")[0]  # what `pinsage run` prints (cli._publish)
    assert "| coverage@10 | popular_share@10 | feature_agreement@10 |" in q and "| 0.470 | 0.120 | 0.610 |" in q
    assert "popular_share@10 = share of all list slots taken by the 50 most-interacted items" in q
    (line,) = [ln for ln in md.splitlines() if ln.startswith("Kurtosis of pairwise")]  # also printed by the CLI
    sp = json.loads((published / "report.json").read_text())["space"]["pinsage"]
    assert f"pinsage {sp['kurtosis']:.2f}, mean {sp['mean']:.2f} [{sp['p5']:.2f}, {sp['p95']:.2f}]" in line
    on_disk = json.loads((published / "report.json").read_text())
    assert on_disk["example_queries"] == EXAMPLES and on_disk["run_timings"] == TIMINGS and on_disk["data"] == DATA


@pytest.mark.parametrize(
    "ablations",
    [
        {"no_hard_negatives": {"hr@10": 0.09, "mrr": 0.04}, "1 layer": {"hr@10": 0.10, "mrr": 0.045, "coverage": 0.3}},
        {
            "no_hard_negatives": {"metrics": {"hr@10": 0.09, "mrr": 0.04}, "validation_metrics": {"hr@10": 0.08}},
            "1 layer": {"metrics": {"hr@10": 0.10, "mrr": 0.045, "coverage": 0.3}, "note": "K=1"},
        },
        [
            {"name": "no_hard_negatives", "metrics": {"hr@10": 0.09, "mrr": 0.04}},
            {"name": "1 layer", "test": {"hr@10": 0.10, "mrr": 0.045, "coverage": 0.3}},
        ],
    ],
)
def test_ablation_rows_of_any_shape_are_rendered(report_dir, tmp_path, ablations):
    _, report = report_dir
    rep = dict(report, ablations=ablations)
    doc = _Doc(report_lib.render_html(rep, str(tmp_path)))
    assert "ablations" in doc.sections
    start = doc.rows.index(
        ["model", "HR@10", "MRR", "coverage"]
        + (["validation HR@10"] if isinstance(ablations, dict) and "metrics" in ablations["1 layer"] else [])
    )
    got = {r[0]: r[1:4] for r in doc.rows[start + 1 : start + 3]}
    assert got == {"no_hard_negatives": ["0.090", "0.040", "–"], "1 layer": ["0.100", "0.045", "0.300"]}
    assert "## Ablations" in report_lib.markdown(rep)


def test_related_items_are_the_exact_top_k_without_the_query():
    emb = datasets.clustered_vectors(300, 16, clusters=10, seed=1)
    ids = [f"i{n}" for n in range(300)]
    titles = [f"<t{n}>" for n in range(300)]
    searcher, _ = index_builder.build_searcher(emb, k=6)  # brute force below 20k items: exact
    rows = [0, 17, 299]
    got = report_lib.related_items(searcher, emb, ids, titles, rows, k=5)
    for q, r in zip(got, rows):
        s = emb @ emb[r]
        s[r] = -np.inf
        want = np.argsort(-s, kind="stable")[:5]
        assert q["item_id"] == ids[r] and q["title"] == titles[r]
        assert [x["item_id"] for x in q["related"]] == [ids[i] for i in want]
        assert [x["title"] for x in q["related"]] == [titles[i] for i in want]
        np.testing.assert_allclose([x["score"] for x in q["related"]], s[want], atol=1e-3)


def test_stage_progress_names_cache_hits_and_stages_whose_inputs_did_not_resolve(capsys):
    """Fed the records TFX's LocalDagRunner and launcher log (same format strings, same levels)."""
    import logging

    from pipeline import driver

    h = driver._StageProgress(total=3)

    def log(level, fmt, *args):
        h.handle(logging.LogRecord("absl", level, __file__, 0, fmt, args, None))

    log(logging.INFO, "Component %s is running.", "GraphGen")
    log(logging.INFO, "A cached execution %d is used.", 7)
    log(logging.INFO, "Component %s is finished.", "GraphGen")
    log(logging.INFO, "Component %s is running.", "PairGen")
    log(logging.ERROR, "[%s] Input resolution error: %s", "PairGen", "min_count has not met")
    log(logging.INFO, "Component %s is finished.", "PairGen")
    log(logging.INFO, "Component %s is running.", "Transform")
    log(logging.INFO, "Component %s is finished.", "Transform")
    out = capsys.readouterr().out
    assert "stage 1/3 GraphGen ..." in out and "stage GraphGen cached in" in out
    assert "stage PairGen NOT RUN" in out and "stage Transform done in" in out
    assert (
        h.timings.cached == ["GraphGen"]
        and h.failed == ["PairGen"]
        and list(h.timings) == ["GraphGen", "PairGen", "Transform"]
    )


def test_ablation_ordering_against_the_paper_is_computed_and_rendered():
    pinsage = {"hr@10": 0.16, "mrr": 0.07}
    abl = {
        "mean_pooling": {"metrics": {"hr@10": 0.15, "mrr": 0.07}},  # below: as the paper
        "max_margin_loss": {"metrics": {"hr@10": 0.09, "mrr": 0.04}},  # below: the paper expected above
        "two_layers_more": {"metrics": {"hr@10": 0.17, "mrr": 0.08}},
    }  # not a paper row
    rows = {r["ablation"]: r for r in report_lib.ablations_vs_paper(pinsage, abl)}
    assert rows["mean_pooling"]["matches_paper"] is True and rows["mean_pooling"]["full_model_better"]
    assert rows["max_margin_loss"]["matches_paper"] is False
    assert rows["two_layers_more"]["matches_paper"] is None and not rows["two_layers_more"]["full_model_better"]
    md = "\n".join(report_lib._paper_lines({"ablations_vs_paper": list(rows.values())}))
    assert "pinsage > mean_pooling (0.1600 vs 0.1500): matches the paper" in md
    assert "max_margin_loss" in md and "differs from the paper" in md
    assert "two_layers_more >= pinsage" in md and "not in the paper" in md


def test_the_similarity_weight_and_how_it_was_chosen_are_stated():
    chosen = {
        "chosen": 0.05,
        "rule": "one standard error",
        "weights": [0.0, 0.05, 0.1],
        "validation_hr@10": [0.2, 0.195, 0.15],
        "standard_error": 0.0123,
    }
    text = report_lib.similarity_weight_text({"training": {"similarity_weight": chosen}})
    assert "lambda = 0.05, the largest lambda whose validation HR@10 is within one standard error (0.0123)" in text
    assert "(validation HR@10 by lambda: 0: 0.2000, 0.05: 0.1950, 0.1: 0.1500)" in text
    fixed = report_lib.similarity_weight_text({"training": {"similarity_weight": {"chosen": 0.3, "rule": "fixed"}}})
    assert fixed.endswith("lambda = 0.3 (fixed).")
    assert report_lib.similarity_weight_text({"training": {}}) is None  # no query head: nothing to state


# ------------------------------------------------------------------------------------------------ protocol v2 report
def _row(hr, ndcg, n=943, **lists):
    """A model's test metrics in report.json's v2 shape: each metric with its SE."""
    se = lambda p: float(np.sqrt(p * (1 - p) / n))  # noqa: E731 (binomial SE, as the evaluator's)
    row = {"hr@10": hr, "hr@10_se": se(hr), "ndcg@10": ndcg, "ndcg@10_se": 0.003, "mrr": ndcg * 0.9}
    row.update({"mrr_se": 0.003, "recall@10": hr, "recall@10_se": se(hr), "hr@500": 0.8, "hr@500_se": 0.013})
    row.update({"num_contexts": n, "total_contexts": n})
    for k, v in lists.items():
        row[k.replace("_at_", "@")] = v
    return row


def v2_report(related="within_noise", similar="behind", blessed=False) -> dict:
    """A hand-made report.json in the protocol v2 contract's shape (verdicts, SEs, popularity, blessing)."""
    m = {
        "pinsage": _row(0.104, 0.054, coverage_at_10=0.49, popular_share_at_10=0.2, feature_agreement_at_10=0.73),
        "cooccurrence_knn": _row(0.097, 0.048, coverage_at_10=0.91, popular_share_at_10=0.13),
        "transition_counts": _row(0.092, 0.047, coverage_at_10=0.57),
        "pinsage_similar": _row(0.078, 0.043, coverage_at_10=0.94),
        "popularity": _row(0.050, 0.025, coverage_at_10=0.007, popular_share_at_10=1.0),
        "features_only": _row(0.035, 0.018, coverage_at_10=0.96),
    }
    m["pinsage"]["popular_share@10_se"] = 0.004
    base = ("cooccurrence_knn", "transition_counts", "popularity", "features_only")
    verdicts = {b: {"related_items": "ahead"} for b in base}
    details = {b: {"related_items": {"metric": "hr@10", "diff": 0.104 - m[b]["hr@10"], "se": 0.006}} for b in base}
    for b in ("cooccurrence_knn", "features_only"):
        verdicts[b]["similar_items"] = "ahead"
        details[b]["similar_items"] = {"metric": "hr@10", "diff": 0.078 - m[b]["hr@10"], "se": 0.006}
    verdicts["cooccurrence_knn"] = {"related_items": related, "similar_items": similar}
    reasons = ["similar_items: behind cooccurrence_knn on hr@10 (diff -0.019, SE 0.006)"] if not blessed else []
    sigs = {
        "related_items": {"model": "pinsage", "best_baseline": "cooccurrence_knn", "verdict": related},
        "similar_items": {"model": "pinsage_similar", "best_baseline": "cooccurrence_knn", "verdict": similar},
    }
    sigs["related_items"]["baselines"] = list(base)
    sigs["similar_items"]["baselines"] = ["cooccurrence_knn", "features_only"]
    pop = {
        name: {
            b: {"hr@10": row["hr@10"] * f, "hr@10_se": 0.015, "num_contexts": n}
            for b, f, n in (("head", 1.3, 420), ("torso", 0.9, 310), ("tail", 0.5, 213))
        }
        for name, row in m.items()
    }
    return {
        "dataset": "tiny",
        "protocol": {"version": 2, "split_seed": 0, "text": "last = test, test query = the validation item"},
        "metrics": m,
        "validation_metrics": {n: {"hr@10": r["hr@10"] + 0.05, "hr@10_se": 0.011} for n, r in m.items()},
        "verdicts": verdicts,
        "verdict_details": details,
        "by_popularity": pop,
        "blessing": {"blessed": blessed, "metric": "hr@10", "z": 2.0, "signatures": sigs, "reasons": reasons},
        "blessed": blessed,
        "data": DATA,
        "run_timings": TIMINGS,
        "example_queries": V2_EXAMPLES,
    }


V2_EXAMPLES = [  # out of bucket order on purpose: the report groups them head, torso, tail
    {"query_id": "9", "query_title": "Tail One", "bucket": "tail", "train_interactions": 2, "related": []},
    {
        "query_id": "1",
        "query_title": NASTY,
        "bucket": "head",
        "train_interactions": 583,
        "related": [{"item_id": "7", "title": "Heat (1995)", "score": 0.91}],
    },
    {"query_id": "5", "query_title": "Torso", "bucket": "torso", "train_interactions": 40, "related": []},
    {"query_id": "2", "query_title": "", "bucket": "head", "train_interactions": 300, "related": []},
]


@pytest.mark.parametrize(
    "verdict, words", [("ahead", "ahead of"), ("within_noise", "within noise of"), ("behind", "behind")]
)
def test_the_summary_sentence_states_the_verdict_against_the_best_baseline(verdict, words):
    rep = v2_report(related=verdict)
    s = report_lib.signature_summary(rep, "related_items")
    assert report_lib.summary_sentence(s) == (
        f"related_items (`pinsage`): HR@10 0.104 ± 0.010 — {words} the best baseline, cooccurrence_knn "
        "(0.097 ± 0.010); paired difference +0.007 ± 0.006"
    )
    doc = _Doc(report_lib.render_html(rep, "/nonexistent"))
    assert words + " the best baseline" in doc.text["summary"] and verdict.replace("_", " ") in doc.text["summary"]
    assert f"- {report_lib.summary_sentence(s)}" in report_lib.markdown(rep)


def test_similar_items_is_compared_with_the_similarity_baselines_only():
    rep = v2_report()
    del rep["blessing"]  # the contract's defaults: cooccurrence_knn and features_only, the best one picked
    rep["metrics"]["cooccurrence_knn"]["hr@10"] = 0.03  # transition_counts (0.092) is higher but no such baseline
    s = report_lib.signature_summary(rep, "similar_items")
    assert (s["model"], s["baseline"], s["verdict"]) == ("pinsage_similar", "features_only", "ahead")
    assert report_lib.signature_summary(rep, "related_items")["baseline"] == "transition_counts"
    # without a query head both signatures are the pinsage row
    del rep["metrics"]["pinsage_similar"]
    assert report_lib.signature_summary(rep, "similar_items")["model"] == "pinsage"


def test_a_v1_report_has_no_verdict_and_no_se():
    rep = {"dataset": "x", "protocol": "v1 text", "metrics": {"pinsage": {"hr@10": 0.1}, "rwr": {"hr@10": 0.08}}}
    lines = report_lib.summary_lines(rep)
    assert lines == [
        "dataset: x",
        "related_items (`pinsage`): HR@10 0.100 — best baseline rwr (0.080) (no paired verdict in this report)",
    ]  # no similar-items baseline in the report, no blessing, no timings
    assert report_lib.verdict_rows(rep) is None and report_lib.popularity_rows(rep) is None


@pytest.mark.parametrize(
    "blessed, pushed, want",
    [
        (True, None, "blessed: pushed"),
        (True, {"pushed": True, "version": 3}, "blessed: pushed (version 3)"),
        (False, None, "not blessed: {r}; not pushed (use --push-unblessed)"),
        (False, {"pushed": False}, "not blessed: {r}; not pushed (use --push-unblessed)"),
        (False, {"pushed": True, "version": 4}, "not blessed: {r}; pushed anyway (version 4) (--push-unblessed)"),
    ],
)
def test_the_blessing_line(blessed, pushed, want):
    rep = v2_report(blessed=blessed)
    if pushed is not None:
        rep["pushed"] = pushed
    reason = "similar_items: behind cooccurrence_knn on hr@10 (diff -0.019, SE 0.006)"
    assert report_lib.blessing_line(rep) == (want.format(r=reason), blessed)
    text = _Doc(report_lib.render_html(rep, "/nonexistent")).text["summary"]
    assert ("not blessed" in text) is (not blessed) and want.format(r=reason).split(": ", 1)[1] in text
    assert report_lib.blessing_line({"metrics": {}}) is None


def test_the_blessing_line_of_a_version_without_its_tower():
    rep = v2_report(blessed=True)
    why = "recommend: behind ease on hr@10 (diff -0.050, SE 0.010)"
    rep["blessing"].update(recommend_blessed=False, left_out={"recommend": why})
    assert report_lib.blessing_line(rep) == (f"blessed: pushed without recommend ({why})", True)
    rep["pushed"] = {"pushed": True, "version": 2, "left_out": ["recommend"]}
    assert report_lib.blessing_line(rep) == (f"blessed: pushed (version 2) without recommend ({why})", True)
    assert f"without recommend ({why})" in _Doc(report_lib.render_html(rep, "/nonexistent")).text["summary"]
    rep["pushed"] = {"pushed": True, "version": 3, "left_out": []}
    assert report_lib.blessing_line(rep) == (
        f"blessed: pushed (version 3) with recommend not blessed ({why}) anyway (--push-unblessed)",
        True,
    )


def test_values_carry_their_standard_error_compactly():
    assert report_lib.fmt_se(0.1039, 0.00994) == "0.104 ±0.010"
    assert report_lib.fmt_se(0.1039) == "0.104" and report_lib.fmt_se(None, 0.1) == "–"
    assert report_lib.fmt_se(943, None) == "943"
    page = report_lib.render_html(v2_report(), "/nonexistent")
    doc = _Doc(page)
    rank = ["model", "HR@10", "NDCG@10", "MRR", "Recall@10", "HR@500", "validation HR@10", "contexts"]
    assert rank in doc.rows
    assert ["pinsage", "0.104 ±0.010", "0.054 ±0.003", "0.049 ±0.003", "0.104 ±0.010", "0.800 ±0.013"] + [
        "0.154 ±0.011",
        "943",
    ] in doc.rows
    assert ["pinsage", "0.490", "0.200 ±0.004", "0.730"] in doc.rows  # list metrics: SE where measured
    # the verdict table: each baseline against each served list, the paired difference beside the word
    assert ["cooccurrence_knn", "within noise (+0.007 ±0.006)", "behind (-0.019 ±0.006)"] in doc.rows
    assert ["popularity", "ahead (+0.054 ±0.006)", "–"] in doc.rows
    # no row in bold: a lead within noise is no lead, the verdicts say who is ahead
    quality = page[page.index('<section id="quality">') :].split("</section>")[0]
    assert "<b>" not in quality and "<strong>" not in quality and 'class="best"' not in quality
    # HR@10 by popularity: buckets with their context counts
    assert ["model", "head (n=420)", "torso (n=310)", "tail (n=213)"] in doc.rows
    assert ["pinsage", "0.135 ±0.015", "0.094 ±0.015", "0.052 ±0.015"] in doc.rows
    assert doc.sections.index("popularity") == doc.sections.index("quality") + 1


def test_checks_that_found_nothing_are_collapsed():
    page = report_lib.render_html(v2_report(), "/nonexistent")
    doc = _Doc(page)
    anomalies = page[page.index('<section id="anomalies">') :].split("</section>")[0]
    details = anomalies[anomalies.index("<details>") : anomalies.index("</details>")]
    assert "<summary>1 check found nothing</summary>" in details and "invalid_weight" in details
    assert ["interactions.dropped.unknown_item_id", "2"] in doc.rows  # non-zero counts stay in the table
    assert "unknown_item_id" not in details
    md = report_lib.markdown(v2_report())
    assert "1 check found nothing: interactions.dropped.invalid_weight" in md
    assert "| interactions.dropped.invalid_weight |" not in md


def test_example_queries_are_grouped_by_bucket():
    page = report_lib.render_html(v2_report(), "/nonexistent")
    examples = page[page.index('<section id="examples">') :].split("</section>")[0]
    order = [examples.index(f'id="bucket-{b}"') for b in ("head", "torso", "tail")]
    assert order == sorted(order)
    head = examples[order[0] : order[1]]
    assert "Tom &amp; Jerry" in head and "583 train interactions" in head and ">2</b>" in head  # untitled: its id
    assert "Torso" in examples[order[1] : order[2]] and "Tail One" in examples[order[2] :]
    assert "<b>Tom" not in page
    md = report_lib.markdown(v2_report())
    ex = md[md.index("## Example queries") :]
    assert ex.index("### head") < ex.index("### torso") < ex.index("### tail")
    assert f"**{NASTY} (id 1)** (583 train interactions) →" in ex and "1. Heat (1995) (id 7) (0.910)" in ex


def test_example_query_rows_pick_the_top_and_a_seeded_random_item_per_bucket():
    deg = np.array([50, 0, 30, 20, 10, 9, 8, 3, 2, 1, 1, 0])
    buckets = np.array([0, 2, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2])  # by hand: thirds of the 134 train interactions
    picks = report_lib.example_query_rows(deg, buckets, per_bucket=2, seed=0)
    assert [b for _, b in picks] == ["head", "head", "torso", "torso", "tail", "tail"]
    assert [picks[0][0], picks[2][0], picks[4][0]] == [0, 3, 7]  # each bucket's most engaged item first
    assert picks[1][0] == 2 and picks[3][0] in (4, 5, 6) and picks[5][0] in (8, 9, 10)  # never a zero-degree item
    assert picks == report_lib.example_query_rows(deg, buckets, per_bucket=2, seed=0)  # deterministic
    seeds = {tuple(report_lib.example_query_rows(deg, buckets, 2, seed=s)) for s in range(20)}
    assert len(seeds) > 1  # the random pick does depend on the seed
    assert report_lib.example_query_rows(deg, buckets, per_bucket=1) == [(0, "head"), (3, "torso"), (7, "tail")]


def test_write_draws_the_quality_chart_into_the_summary(tmp_path):
    report_lib.write(v2_report(), str(tmp_path))
    png = (tmp_path / "plots" / "quality.png").read_bytes()
    assert png.startswith(PNG)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    summary = page[page.index('<section id="summary">') :].split("</section>")[0]
    assert 'alt="quality vs baselines"' in summary and base64.b64encode(png).decode() in summary
    assert "±1 SE" in summary
    assert json.loads((tmp_path / "report.json").read_text())["plots"] == {"quality vs baselines": "plots/quality.png"}
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert md.index("![quality vs baselines](plots/quality.png)") < md.index("## Quality vs baselines")
    assert "dataset: tiny — 4 items, 3 contexts, 16 interactions; evaluation protocol v2" in md


def test_the_summary_follows_the_blessings_own_call():
    rep = v2_report(related="ahead")
    rep["blessing"]["signatures"]["related_items"].update(verdict="within_noise", diff=0.01, se=0.006)
    s = report_lib.signature_summary(rep, "related_items")
    assert (s["verdict"], s["diff"], s["diff_se"]) == ("within_noise", 0.01, 0.006)
    rep["blessing"]["signatures"]["related_items"]["best_baseline"] = None  # the blessing judged nothing
    assert report_lib.signature_summary(rep, "related_items")["verdict"] == "ahead"
