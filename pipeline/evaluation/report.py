"""The evaluation report: metrics table (report.json / report.md) and the paper's diagnostic plots.

- quality table: every model under the fixed protocol (modules/evaluation.py), test and validation splits;
- training curves (loss and validation HR@10 per epoch);
- list metrics of the served related-items lists (coverage of the catalogue, share of popular items, feature
  agreement with the query; modules/evaluation.list_metrics);
- the distribution of pairwise cosine similarities of item embeddings: its mean and 5th/95th percentiles (how
  spread the space is: a mean near 1 is a collapsed cone) beside its kurtosis (the paper's Fig. 4: PinSage 0.43
  vs 1.20-2.49 for feature baselines; kurtosis describes the shape only, not the spread);
- a 2-D t-SNE map of item embeddings coloured by a categorical feature (genre on MovieLens).

The run's copy (OUT/report.*, written by pipeline/driver.py) adds the data report (dataset summary, bad input by
reason, ExampleValidator anomalies), example related-item queries and the wall time of every stage. report.html is
self-contained (plots inlined as PNG data URIs, no external CSS/JS), so it can be mailed or attached as one file.
"""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
from scipy import stats
from sklearn.manifold import TSNE

from pipeline.evaluation import cold_start
from schema import files

METRICS = ("hr@10", "mrr", "ndcg@10", "recall@10", "hr@500", "coverage@10", "popular_share@10", "feature_agreement@10")
RANK_METRICS = ("hr@10", "ndcg@10", "mrr", "recall@10", "hr@100", "hr@500")
LIST_METRICS = ("coverage@10", "popular_share@10", "feature_agreement@10")
COUNTS = ("num_contexts", "total_contexts")
HEADERS = {
    "hr@10": "HR@10",
    "mrr": "MRR",
    "ndcg@10": "NDCG@10",
    "recall@10": "Recall@10",
    "hr@100": "HR@100",
    "hr@500": "HR@500",
}
# the served signatures, the report row of each, and the baselines "more like this" is compared with
SIGNATURES = {"related_items": "pinsage", "similar_items": "pinsage_similar"}
SIMILAR_BASELINES = ("cooccurrence_knn", "features_only")
BUCKETS = ("head", "torso", "tail")
VERDICT_WORDS = {"ahead": "ahead of", "within_noise": "within noise of", "behind": "behind"}
SPACE = (("mean", "mean cosine"), ("p5", "5th pct"), ("p95", "95th pct"), ("kurtosis", "kurtosis"))

PROTOCOL = (
    "per context: last interaction = test, second-last = validation (time ties broken by item id); "
    "query = latest train item; rank all items; mask the context's train items (and its validation item "
    "for test); ties in score broken by node id; HR@10, MRR, NDCG@10, Recall@10, HR@500; list metrics over the "
    "related-items lists (top 10 of every item with >= 5 train interactions, the item itself excluded, "
    "nothing masked)"
)


def pairwise_cosines(emb: np.ndarray, num_pairs: int = 200_000, seed: int = 0) -> np.ndarray:
    """Cosine similarity of random distinct item pairs (the paper samples pairs, not all N^2)."""
    rng = np.random.default_rng(seed)
    x = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    a = rng.integers(0, len(x), num_pairs)
    b = rng.integers(0, len(x), num_pairs)
    keep = a != b
    return np.einsum("ij,ij->i", x[a[keep]], x[b[keep]])


def kurtosis(values: np.ndarray) -> float:
    """Excess kurtosis (Fisher), as scipy.stats.kurtosis: 0 for a normal distribution."""

    return float(stats.kurtosis(values, fisher=True))


def space_spread(cosines: np.ndarray) -> dict:
    """How spread an embedding space is, from random-pair cosines: mean, 5th and 95th percentile (a cone near 1
    means every item looks like every other), with the excess kurtosis beside them (shape only)."""
    c = np.asarray(cosines, np.float64)
    p5, p95 = np.percentile(c, [5, 95])
    return {"mean": float(c.mean()), "p5": float(p5), "p95": float(p95), "kurtosis": kurtosis(c)}


def _save(fig, path: str) -> None:
    """A figure as PNG at `path` (local or a URI: matplotlib writes to a buffer, the buffer goes in one write)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    files.write_bytes(path, buf.getvalue())


def plot_training_curves(history: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(history.get("epoch", []), history.get("loss", []), marker="o")
    ax[0].set(title="training loss", xlabel="epoch")
    if history.get("val_hr@10"):
        ax[1].plot(history["epoch"], history["val_hr@10"], marker="o")
    ax[1].set(title="validation HR@10", xlabel="epoch")
    fig.tight_layout()
    _save(fig, path)


def plot_cosine_distribution(cosines: dict[str, np.ndarray], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, c in cosines.items():
        ax.hist(c, bins=100, range=(-1, 1), histtype="step", density=True, label=f"{name} (kurtosis {kurtosis(c):.2f})")
    ax.set(title="pairwise cosine similarity of item embeddings", xlabel="cosine", ylabel="density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_embedding_map(
    emb: np.ndarray, labels: np.ndarray, label_names: list[str], path: str, max_points: int = 3000, seed: int = 0
) -> None:
    """t-SNE of a sample of items, coloured by `labels` (index into label_names, -1 = none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(emb))[:max_points]
    xy = TSNE(n_components=2, init="pca", random_state=seed, perplexity=30).fit_transform(emb[idx])
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    lab = labels[idx]
    top = [int(v) for v in np.argsort(-np.bincount(lab[lab >= 0], minlength=len(label_names)))[:10]]
    for k in top:
        m = lab == k
        ax.scatter(xy[m, 0], xy[m, 1], s=4, label=label_names[k])
    m = ~np.isin(lab, top)
    ax.scatter(xy[m, 0], xy[m, 1], s=3, c="lightgrey", label="other")
    ax.set(title="item embeddings (t-SNE)", xticks=[], yticks=[])
    ax.legend(fontsize=7, markerscale=3, loc="best")
    fig.tight_layout()
    _save(fig, path)


# ------------------------------------------------------------------------------------------------ example queries
def related_items(searcher, embeddings: np.ndarray, item_ids, titles, query_rows, k: int = 10) -> list[dict]:
    """Top-k related items of catalogue items, as the server answers them (serving/server.py): the index's top
    k+1 for the item's query vector (`embeddings`: the item embeddings, or a query-head model's query vectors),
    the item itself dropped."""
    q = np.asarray(embeddings[np.asarray(query_rows)], np.float32)
    idx, dist = searcher.search_batched(q, final_num_neighbors=min(k + 1, len(item_ids)))
    out = []
    for row, ids, scores in zip(query_rows, np.asarray(idx), np.asarray(dist)):
        keep = [(int(i), float(s)) for i, s in zip(ids, scores) if int(i) != int(row)][:k]
        out.append(
            {
                "item_id": str(item_ids[row]),
                "title": str(titles[row]) if titles is not None else "",
                "related": [
                    {
                        "item_id": str(item_ids[i]),
                        "title": str(titles[i]) if titles is not None else "",
                        "score": round(s, 4),
                    }
                    for i, s in keep
                ],
            }
        )
    return out


def example_query_rows(train_degree, buckets, per_bucket: int = 2, seed: int = 0) -> list[tuple[int, str]]:
    """(node id, bucket name) of the example queries: per popularity bucket (`buckets`: each item's 0 head /
    1 torso / 2 tail, modules.evaluation.popularity_buckets) its most engaged item, then seeded random items of
    the bucket (deterministic); only items with a train interaction (a query has one)."""
    deg, bucket = np.asarray(train_degree, np.int64), np.asarray(buckets)
    rng = np.random.default_rng(seed)
    out = []
    for b, name in enumerate(BUCKETS):
        members = np.flatnonzero((bucket == b) & (deg > 0))
        members = members[np.argsort(-deg[members], kind="stable")]
        if len(members) == 0:
            continue
        rest = rng.choice(members[1:], size=min(per_bucket - 1, len(members) - 1), replace=False)
        picked = [int(members[0])] + sorted((int(r) for r in rest), key=lambda r: (-deg[r], r))
        out += [(r, name) for r in picked]
    return out


# ------------------------------------------------------------------------------------------------ quality chart
QUALITY_PLOT = "plots/quality.png"
NO_SE_CAPTION = "Test split; this report has no standard errors (written before protocol v2)."
QUALITY_CAPTION = (
    "Test split; bars are ±1 SE. A difference counts as ahead / behind only beyond 2 SE of the paired "
    "per-context difference (the verdicts), not by non-overlapping bars."
)


def has_se(report: dict) -> bool:
    """Whether the report's test metrics carry standard errors (protocol v2 reports do)."""
    return any(k.endswith("_se") for m in (report.get("metrics") or {}).values() for k in m)


def _bar_colour(name: str, served: set[str]) -> str:
    """Served rows in blue (the similar_items row lighter), baselines in grey."""
    if name not in served:
        return "#9e9e9e"
    return "#6baed6" if name == SIGNATURES["similar_items"] else "#1f77b4"


def _num(v) -> float:
    return np.nan if v is None else float(v)  # a bucket without contexts has no value


def _errors(values: list) -> list | None:
    """Error bar lengths, None when the report has no SE for any of them (no zero-length caps drawn)."""
    return None if all(v is None for v in values) else [v or 0.0 for v in values]


def plot_quality(report: dict, path: str) -> bool:
    """Every model's test HR@10 and NDCG@10 with ±1 SE error bars, and HR@10 by the query item's popularity
    (served rows and their best baselines) when the report has it. False when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(n, m) for n, m, _ in _quality_rows(report) if "hr@10" in m]
    pop = report.get("by_popularity") or {}
    if not rows:
        return False
    names = [n for n, _ in rows][::-1]  # best at the top of a horizontal bar chart
    served = {served_model(report, s) for s in SIGNATURES} - {None}
    panels = [("hr@10", "HR@10"), ("ndcg@10", "NDCG@10")]
    fig, axes = plt.subplots(1, 3 if pop else 2, figsize=(10.5 if pop else 8, 0.3 * len(names) + 1.2))
    m = dict(rows)
    for ax, (key, title) in zip(axes, panels):
        vals = [_num(m[n].get(key)) for n in names]
        errs = _errors([m[n].get(key + "_se") for n in names])
        ax.barh(names, vals, xerr=errs, color=[_bar_colour(n, served) for n in names], capsize=3, height=0.6)
        ax.set_title(f"{title} (test{', ±1 SE' if has_se(report) else ''})", fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[1].set_yticklabels([])
    if pop:
        _plot_popularity(axes[2], report, pop, served)
    fig.tight_layout()
    _save(fig, path)
    return True


def _plot_popularity(ax, report: dict, pop: dict, served: set[str]) -> None:
    """Grouped bars: HR@10 per popularity bucket for the served rows and their best baselines."""
    best = [s["baseline"] for s in (signature_summary(report, g) for g in SIGNATURES) if s]
    models = [n for n in dict.fromkeys(sorted(served) + best) if n in pop]
    width = 0.8 / max(len(models), 1)
    for i, n in enumerate(models):
        y = np.arange(len(BUCKETS)) + (i - (len(models) - 1) / 2) * width
        vals = [_num(pop[n].get(b, {}).get("hr@10")) for b in BUCKETS]
        errs = _errors([pop[n].get(b, {}).get("hr@10_se") for b in BUCKETS])
        colour = _bar_colour(n, served) if n in served else ("#616161", "#bdbdbd")[i % 2]
        ax.barh(y, vals, xerr=errs, height=width, capsize=2, label=n, color=colour)
    ax.set_yticks(np.arange(len(BUCKETS)), BUCKETS)
    ax.invert_yaxis()
    ax.set_title("HR@10 by query popularity (±1 SE)", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


# ------------------------------------------------------------------------------------------------ tables
def _numeric(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def model_rows(section) -> list[tuple[str, dict, dict]]:
    """(name, test metrics, extra fields) for any set of model rows: {name: metrics}, {name: {"metrics": ...}}
    or [{"name": ..., "metrics": ...}] — the evaluator's table and whatever ablation rows a later stage adds."""
    items = (
        section.items()
        if isinstance(section, dict)
        else ((str(r.get("name", i)), r) for i, r in enumerate(section or []) if isinstance(r, dict))
    )
    rows = []
    for name, v in items:
        if not isinstance(v, dict):
            continue
        nested = next((v[key] for key in ("metrics", "test", "test_metrics") if isinstance(v.get(key), dict)), None)
        metrics = _numeric(nested if nested is not None else v)
        extra = {
            k: x for k, x in v.items() if nested is not None and k not in ("name", "metrics", "test", "test_metrics")
        }
        rows.append((name, metrics, extra))
    return rows


def _columns(rows, order=RANK_METRICS + LIST_METRICS) -> list[str]:
    """The metric columns present in `rows` (standard errors go in their metric's cell, counts in their own)."""
    present = {k for _, m, _ in rows for k in m if not k.endswith("_se") and k not in COUNTS}
    return [c for c in order if c in present] + sorted(present - set(RANK_METRICS + LIST_METRICS))


def _validation_hr(extra: dict) -> float | None:
    return _validation(extra)[0]


def _validation(extra: dict) -> tuple[float | None, float | None]:
    """(validation HR@10, its SE) of a model row's extra fields."""
    for key in ("validation_metrics", "validation"):
        v = extra.get(key)
        if isinstance(v, dict) and isinstance(v.get("hr@10"), (int, float)):
            return float(v["hr@10"]), v.get("hr@10_se")
    return None, None


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.4f}" if isinstance(v, float) else str(v)  # counts (e.g. num_contexts) stay integers


def fmt_se(value, se=None, sep: str = " ±") -> str:
    """A metric with its standard error, compactly: "0.104 ±0.010" ("0.104" without one, "–" without a value)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if not isinstance(value, float):
        return str(value)
    return f"{value:.3f}" if se is None else f"{value:.3f}{sep}{se:.3f}"


def _contexts(m: dict) -> str:
    n, total = m.get("num_contexts"), m.get("total_contexts")
    return "–" if n is None else (f"{n} / {total}" if total is not None and total != n else str(n))


def _quality_rows(report: dict) -> list[tuple[str, dict, dict]]:
    rows = sorted(model_rows(report.get("metrics", {})), key=lambda r: -r[1].get("hr@10", -1.0))
    val = report.get("validation_metrics", {})
    return [(n, m, {"validation_metrics": val.get(n, {})}) for n, m, _ in rows]


def _model_table(rows, cols: list[str] | None = None, counts: bool = False) -> tuple[list[str], list[list[str]]]:
    """(header, body) of a models table, shared by the markdown and the HTML renderings: each cell the value
    ± its SE; the validation HR@10 and the number of contexts when asked and present."""
    cols = _columns(rows) if cols is None else cols
    has_val = any(_validation_hr(e) is not None for _, _, e in rows)
    has_n = counts and any("num_contexts" in m for _, m, _ in rows)
    header = ["model"] + [HEADERS.get(c, c) for c in cols]
    header += (["validation HR@10"] if has_val else []) + (["contexts"] if has_n else [])
    body = []
    for n, m, e in rows:
        cells = [fmt_se(m.get(c), m.get(c + "_se")) for c in cols]
        cells += ([fmt_se(*_validation(e))] if has_val else []) + ([_contexts(m)] if has_n else [])
        body.append([n] + cells)
    return header, body


def quality_tables(report: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(caption, header, body) of the quality tables: ranking metrics, then list metrics (two narrow tables that
    fit a window instead of one wide one)."""
    rows = _quality_rows(report)
    cols = _columns(rows)
    rank = [c for c in cols if c in RANK_METRICS]
    lists = [c for c in cols if c not in RANK_METRICS]  # anything unknown goes with the list metrics
    se = " (value ±1 SE)" if has_se(report) else ""
    out = [(f"Ranking, test split{se}", *_model_table(rows, rank, counts=True))]
    with_lists = [r for r in rows if any(c in r[1] for c in lists)]
    if lists and with_lists:
        bare = [(n, m, {}) for n, m, _ in with_lists]
        out.append((f"Served lists{se[:-1] + ' where measured)' if se else ''}", *_model_table(bare, lists)))
    return out


def verdict_rows(report: dict) -> tuple[list[str], list[list[str]]] | None:
    """(header, body): each baseline against each served signature's row, paired on the blessing metric."""
    verdicts = report.get("verdicts") or {}
    if not verdicts:
        return None
    details = report.get("verdict_details") or {}
    sigs = [s for s in SIGNATURES if any(s in v for v in verdicts.values())]
    header = ["baseline"] + [f"{s} (`{served_model(report, s) or '?'}`)" for s in sigs]
    body = []
    for base in sorted(verdicts, key=lambda b: -(report.get("metrics", {}).get(b, {}).get("hr@10", -1.0))):
        cells = []
        for s in sigs:
            v, d = verdicts[base].get(s), (details.get(base) or {}).get(s) or {}
            diff = f" ({d['diff']:+.3f} ±{d['se']:.3f})" if "diff" in d and "se" in d else ""
            cells.append("–" if v is None else v.replace("_", " ") + diff)
        body.append([base] + cells)
    return header, body


def popularity_rows(report: dict) -> tuple[list[str], list[list[str]]] | None:
    """(header, body) of test HR@10 by the query item's popularity bucket, models in the quality table's order."""
    pop = report.get("by_popularity") or {}
    if not pop:
        return None
    order = [n for n, _, _ in _quality_rows(report) if n in pop] + sorted(set(pop) - set(report.get("metrics", {})))
    buckets = [b for b in BUCKETS if any(b in pop[n] for n in order)]
    first = next(pop[n] for n in order)
    header = ["model"] + [
        f"{b} (n={first[b]['num_contexts']})" if "num_contexts" in first.get(b, {}) else b for b in buckets
    ]
    body = [
        [n] + [fmt_se(pop[n].get(b, {}).get("hr@10"), pop[n].get(b, {}).get("hr@10_se")) for b in buckets]
        for n in order
    ]
    return header, body


POPULARITY_TEXT = (
    "Test HR@10 (±1 SE) by the popularity of each context's query item: items sorted by train interactions and "
    "cut where the running total passes one third (head) and two thirds (torso) of all train interactions; the "
    "rest is the tail."
)


# What the paper's Table 1 says of each ablation relative to the full model (True: the full model is better).
# The paper trained with max-margin and found cross-entropy worse (mean-pooling-xent 29 % vs mean-pooling 41 %
# hit rate); this project's default loss is the sampled softmax, so its `max_margin_loss` row is the paper's
# preferred loss and the paper expects it to win. The two no-graph rows stand for the paper's feature baselines
# (visual / annotation / combined embeddings), all below PinSage.
PAPER_EXPECTS_FULL_MODEL_BETTER = {
    "mean_pooling": True,
    "max_pooling": True,
    "no_hard_negatives": True,
    "max_margin_loss": False,
    "features_only_mlp": True,
    "id_embedding_only": True,
}


def ablations_vs_paper(pinsage: dict | None, ablations: dict) -> list[dict]:
    """Per ablation: the test HR@10 of it and of the full model, and whether their order matches the paper's."""
    out = []
    for name, row in sorted(ablations.items()):
        m = row.get("metrics", row)
        if not pinsage or "hr@10" not in m:
            continue
        full_better = pinsage["hr@10"] > m["hr@10"]
        expected = PAPER_EXPECTS_FULL_MODEL_BETTER.get(name)
        out.append(
            {
                "ablation": name,
                "hr@10": m["hr@10"],
                "pinsage_hr@10": pinsage["hr@10"],
                "full_model_better": full_better,
                "paper_expects_full_model_better": expected,
                "matches_paper": None if expected is None else full_better == expected,
            }
        )
    return out


def _paper_lines(report: dict) -> list[str]:
    rows = report.get("ablations_vs_paper") or []
    if not rows:
        return []
    lines = ["", "Ordering vs the paper's Table 1 (test HR@10):", ""]
    for r in rows:
        order = "pinsage > " + r["ablation"] if r["full_model_better"] else r["ablation"] + " >= pinsage"
        paper = {True: "matches the paper", False: "differs from the paper", None: "not in the paper"}[
            r["matches_paper"]
        ]
        lines.append(f"- {order} ({r['pinsage_hr@10']:.4f} vs {r['hr@10']:.4f}): {paper}")
    return lines


# ------------------------------------------------------------------------------------------------ summary
def protocol_text(report: dict) -> str:
    """The protocol paragraph: report.json's protocol block (version 2) or its plain string (version 1)."""
    p = report.get("protocol", "")
    if isinstance(p, dict):
        return f"version {p.get('version', '?')}: {p.get('text', '')}".rstrip(": ")
    return str(p)


def served_model(report: dict, signature: str) -> str | None:
    """The metrics row a served signature is measured by (without a query head both signatures are `pinsage`)."""
    metrics = report.get("metrics") or {}
    named = ((report.get("blessing") or {}).get("signatures") or {}).get(signature, {}).get("model")
    for name in (named, SIGNATURES[signature], "pinsage"):
        if name in metrics:
            return name
    return None


def _baselines(report: dict, signature: str) -> list[str]:
    """The baselines a signature is compared with: the blessing's list, else the contract's defaults."""
    metrics = report.get("metrics") or {}
    named = ((report.get("blessing") or {}).get("signatures") or {}).get(signature, {}).get("baselines")
    every = [n for n in metrics if not n.startswith("pinsage")]  # the model's own rows are no baselines
    if named:
        return [n for n in named if n in metrics]
    return [n for n in SIMILAR_BASELINES if n in metrics] if signature == "similar_items" else every


def signature_summary(report: dict, signature: str) -> dict | None:
    """A served list against its best baseline on the blessing metric (test split): values, SEs, and the paired
    verdict when the report has one. None when the report has no row for the signature or no baseline."""
    metrics = report.get("metrics") or {}
    blessing = report.get("blessing") or {}
    metric = blessing.get("metric", "hr@10")
    model = served_model(report, signature)
    base = [b for b in _baselines(report, signature) if metric in metrics[b]]
    if model is None or metric not in metrics[model] or not base:
        return None
    block = (blessing.get("signatures") or {}).get(signature) or {}
    best = block.get("best_baseline") if block.get("best_baseline") in base else None
    best = best or max(base, key=lambda b: metrics[b][metric])
    detail = ((report.get("verdict_details") or {}).get(best) or {}).get(signature) or {}
    detail = dict(detail, verdict=((report.get("verdicts") or {}).get(best) or {}).get(signature))
    if block.get("best_baseline") == best and block.get("verdict"):  # the blessing's own call, as it decided
        detail.update({k: block[k] for k in ("verdict", "diff", "se") if k in block})
    return {
        "signature": signature,
        "model": model,
        "metric": metric,
        "value": metrics[model][metric],
        "se": metrics[model].get(metric + "_se"),
        "baseline": best,
        "baseline_value": metrics[best][metric],
        "baseline_se": metrics[best].get(metric + "_se"),
        "verdict": detail["verdict"],
        "diff": detail.get("diff"),
        "diff_se": detail.get("se"),
    }


def summary_sentence(s: dict) -> str:
    """ "related_items (`pinsage`): HR@10 0.104 ± 0.010 — within noise of the best baseline, cooccurrence_knn
    (0.097 ± 0.010)", with the paired difference when the report has it."""
    name = HEADERS.get(s["metric"], s["metric"])
    head = f"{s['signature']} (`{s['model']}`): {name} {fmt_se(s['value'], s['se'], ' ± ')}"
    base = f"{s['baseline']} ({fmt_se(s['baseline_value'], s['baseline_se'], ' ± ')})"
    if s["verdict"] not in VERDICT_WORDS:
        return f"{head} — best baseline {base} (no paired verdict in this report)"
    paired = ""
    if s["diff"] is not None and s["diff_se"] is not None:
        paired = f"; paired difference {s['diff']:+.3f} ± {s['diff_se']:.3f}"
    return f"{head} — {VERDICT_WORDS[s['verdict']]} the best baseline, {base}{paired}"


def blessing_line(report: dict) -> tuple[str, bool] | None:
    """("blessed: pushed" or "not blessed: reasons; not pushed (use --push-unblessed)", blessed); None for a
    report without a blessing. `pushed` (the Pusher's pushed.json, when the publish step adds it) names the
    version or a push of an unblessed model; without it the Pusher's rule is assumed (push when blessed, without a
    tower that is not blessed). A blessed version's line names the tower left out of it, or pushed anyway."""
    b = report.get("blessing")
    if not isinstance(b, dict) and "blessed" not in report:
        return None
    b = b if isinstance(b, dict) else {}
    blessed = bool(b.get("blessed", report.get("blessed")))
    push = report.get("pushed")
    pushed = push.get("pushed", True) if isinstance(push, dict) else (blessed if push is None else bool(push))
    version = f" (version {push['version']})" if isinstance(push, dict) and "version" in push else ""
    if blessed:
        text = "blessed: pushed" + version if pushed else "blessed: not pushed"
        left = b.get("left_out") or {}
        if left and pushed:  # the tower is blessed on its own: left out of the version unless pushed anyway
            anyway = isinstance(push, dict) and not set(left) <= set(push.get("left_out") or ())
            names, why = ", ".join(left), "; ".join(left.values())
            text += (
                f" with {names} not blessed ({why}) anyway (--push-unblessed)"
                if anyway
                else f" without {names} ({why})"
            )
        return text, True
    reasons = "; ".join(b.get("reasons") or []) or "no reason given"
    tail = f"pushed anyway{version} (--push-unblessed)" if pushed else "not pushed (use --push-unblessed)"
    return f"not blessed: {reasons}; {tail}", False


def wall_time_line(report: dict) -> str | None:
    """The run's wall time: the CLI's total when recorded, else the pipeline's (ingest and every stage)."""
    run = report.get("run_timings") or {}
    total = run.get("total_s", run.get("pipeline_s"))
    if total is None:
        return None
    what = "total" if "total_s" in run else "ingest and every stage"
    stages = run.get("stages") or {}
    cached = f", {len(run.get('cached') or [])} of {len(stages)} stages from the cache" if stages else ""
    return f"run wall time {_duration(float(total))}: {what}{cached}"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def dataset_line(report: dict) -> str:
    """The dataset's name and size (from the data report when the run's copy has one) and the protocol version."""
    g = (report.get("data") or {}).get("graph") or {}
    size = ""
    if g:
        size = f" — {g.get('num_items', '?')} items, {g.get('num_contexts', '?')} contexts, "
        size += f"{g.get('num_interactions', '?')} interactions"
    p = report.get("protocol")
    version = f"; evaluation protocol v{p['version']}" if isinstance(p, dict) and "version" in p else ""
    return f"{report.get('dataset', '?')}{size}{version}"


def data_summary(data: dict) -> list[tuple[str, str]]:
    """(what, value) lines of the dataset summary from a data report (pipeline/driver.write_data_report)."""
    ing, g = data.get("ingest", {}), data.get("graph", {})
    out = [("dataset", str(data.get("dataset", "")))]
    for table in ("items", "interactions"):
        t = ing.get(table, {})
        if t:
            out.append((f"{table} rows read / kept", f"{t.get('rows_read', '?')} / {t.get('rows_kept', '?')}"))
    if g:
        c = g.get("counts", {})
        out += [
            (
                "graph items / contexts / interactions",
                f"{g.get('num_items', '?')} / {g.get('num_contexts', '?')} / {g.get('num_interactions', '?')}",
            ),
            (
                "train / validation / test interactions",
                " / ".join(str(c.get(f"interactions.{s}", 0)) for s in ("train", "validation", "test")),
            ),
        ]
    feats = data.get("features") or {}
    if feats:
        out.append(
            (
                "item features",
                ", ".join(
                    f"{k} ({v.get('kind', '?') if isinstance(v, dict) else v})" for k, v in sorted(feats.items())
                ),
            )
        )
    if data.get("features_inferred"):
        out.append(("feature kinds inferred (no dataset.yaml entry)", ", ".join(data["features_inferred"])))
    return out


def data_anomalies(data: dict) -> tuple[list[tuple[str, int]], list[str]]:
    """(every ingest/graph count by reason, ExampleValidator anomalies as '[table] text')."""
    counts = dict(data.get("ingest", {}).get("counts", {}))
    counts.update(
        {
            k: v
            for k, v in data.get("graph", {}).get("counts", {}).items()
            if "dropped" in k or "without" in k or "fewer" in k
        }
    )
    found = [f"[{t}] {a}" for t, lst in sorted(data.get("example_validator_anomalies", {}).items()) for a in lst]
    return sorted(counts.items()), found


def _timing_rows(report: dict) -> list[tuple[str, float, str]]:
    """(stage, wall s in this run, note): a cache hit is noted with the stage's wall time when it last ran."""
    run = report.get("run_timings") or {}
    cached, executed = set(run.get("cached", [])), run.get("executed", {})
    rows = []
    for name, s in run.get("stages", {}).items():
        note = ""
        if name in cached:
            note = f"cached ({executed[name]:.1f} s when it ran)" if name in executed else "cached"
        rows.append((name, float(s), note))
    return rows


# ------------------------------------------------------------------------------------------------ list / space text
def list_text(report: dict) -> str | None:
    """What the list columns of the quality table mean (None when the report has none)."""
    info = report.get("lists")
    if not info:
        return None
    n, total = info.get("query_items"), info.get("total_query_items")
    sample = f" (a random sample of {n} of {total})" if n is not None and total is not None and n < total else ""
    feature = info.get("feature")
    agr = (
        f"feature_agreement@10 = share of slots whose item shares at least one `{feature}` value with the query "
        f"(queries without a value left out; how on-topic the lists are)."
        if feature
        else "feature_agreement@10: the dataset has no categorical feature."
    )
    similar = (
        " Rows `pinsage` and `pinsage_similar` are the two signatures the server answers: related_items (u_q . "
        'z_i, the query head\'s "what a person engages with next") and similar_items (z_q . z_i, the items whose '
        "embeddings are closest to the query's)."
        if "pinsage_similar" in (report.get("metrics") or {})
        else ""
    )
    if "context_tower_one_item" in (report.get("metrics") or {}):
        similar += (
            " Row `context_tower_one_item` is the context tower asked with a one-item history (recommend for one "
            "item), reported beside the served item-to-item rows, not a baseline."
        )
    return (
        "List metrics — what a person is served: each query item's related-items list is the model's top 10, the "
        f"item itself excluded and nothing masked; query items: every item with >= "
        f"{info.get('min_train_interactions', 5)} train interactions{sample}. "
        "coverage@10 = share of the items with >= 1 train interaction that appear in at least one list (how much "
        "of the catalogue the lists reach); popular_share@10 = share of all list slots taken by the "
        f"{info.get('popular_items', 50)} most-interacted items (how much the lists lean on the head); " + agr + similar
    )


def similarity_weight_text(report: dict) -> str | None:
    """How the served query's similarity weight lambda was set (None without a query head)."""
    sw = (report.get("training") or {}).get("similarity_weight")
    if not sw:
        return None
    head = (
        "Served query: u_q = normalise(u'_q + lambda z_q), i.e. the query head's \"what comes next\" score plus "
        f'lambda times the indexed space\'s "what is like it" (z_q . z_i); lambda = {sw["chosen"]:g}'
    )
    if sw.get("rule") != "one standard error":
        return f"{head} ({sw.get('rule', 'fixed')})."
    tried = ", ".join(f"{w:g}: {_fmt(h)}" for w, h in zip(sw["weights"], sw["validation_hr@10"]))
    return (
        f"{head}, the largest lambda whose validation HR@10 is within one standard error "
        f"({_fmt(sw['standard_error'])}) of the best (validation HR@10 by lambda: {tried})."
    )


SPACE_TEXT = (
    "Cosine similarity of random item pairs in each model's indexed space. The mean and the 5th–95th percentile "
    "range say how spread the space is: a mean near 1 with a narrow range is a collapsed cone (every item is "
    "close to every other, so lists look alike and approximate search has little room), a mean near 0 with a wide "
    "range is a space that is used. Kurtosis (excess, 0 for a normal distribution) only describes the shape of "
    "the distribution: a low kurtosis does not mean the space is spread out — a narrow cone can have kurtosis 0. "
    "(The paper's Fig. 4: kurtosis 0.43 for PinSage vs 1.20–2.49 for feature baselines.)"
)


def space_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """(header, body) of the similarity table: each embedding model's random-pair cosine spread and kurtosis
    (reports from before the spread was measured: kurtosis only)."""
    space = report.get("space") or {k: {"kurtosis": v} for k, v in (report.get("kurtosis") or {}).items()}
    header = ["model"] + [h for _, h in SPACE]
    return header, [[name] + [_fmt(row.get(k)) for k, _ in SPACE] for name, row in space.items()]


def space_line(report: dict) -> str | None:
    """One line with every model's kurtosis and spread (the line `pinsage run` prints after the quality table)."""
    space = report.get("space") or {k: {"kurtosis": v} for k, v in (report.get("kurtosis") or {}).items()}
    if not space:
        return None
    parts = []
    for name, r in space.items():
        spread = f", mean {r['mean']:.2f} [{r['p5']:.2f}, {r['p95']:.2f}]" if "mean" in r else ""
        parts.append(f"{name} {r['kurtosis']:.2f}{spread}")
    return (
        "Kurtosis of pairwise cosine similarities, with their mean [5th, 95th percentile] over random item pairs "
        "(a mean near 1 is a collapsed space): " + "; ".join(parts)
    )


# ------------------------------------------------------------------------------------------------ history
HISTORY_TOWER = "context_tower"
HISTORY_SIGNATURE = "recommend"
HISTORY_COLUMNS = ("hr@10", "ndcg@10", "mrr", "hr@100", "coverage@10", "popular_share@10")
HISTORY_TEXT = (
    "Recommendations from a history (protocol v2): per context, validation = its train items in order -> its "
    "validation item, test = train items and the validation item -> its test item; every item ranked with the "
    "history's items masked, ties by node id; coverage@10 and popular_share@10 over the contexts' top-10 lists "
    "(coverage's SE: a bootstrap over contexts). The last column: `context_tower` against each baseline, the "
    "paired test difference in HR@10 ±SE, ahead / behind beyond 2 SE."
)


def history_rows(report: dict) -> tuple[list[str], list[list[str]]] | None:
    """(header, body) of the history table, best test HR@10 first: each metric ± SE, validation HR@10, and the
    context tower's paired verdict against the row; None for a report without history queries."""
    test = report.get("history_metrics") or {}
    if not test:
        return None
    val = report.get("history_validation_metrics") or {}
    verdicts, details = report.get("history_verdicts") or {}, report.get("history_verdict_details") or {}
    header = ["model"] + [HEADERS.get(c, c) for c in HISTORY_COLUMNS] + ["validation HR@10", f"`{HISTORY_TOWER}` vs it"]
    body = []
    for name in sorted(test, key=lambda n: -test[n].get("hr@10", -1.0)):
        m, v = test[name], val.get(name, {})
        d = (details.get(name) or {}).get(HISTORY_SIGNATURE) or {}
        word = (verdicts.get(name) or {}).get(HISTORY_SIGNATURE)
        diff = f" ({d['diff']:+.3f} ±{d['se']:.3f})" if "diff" in d and "se" in d else ""
        cell = "–" if word is None else word.replace("_", " ") + diff
        body.append(
            [name]
            + [fmt_se(m.get(c), m.get(c + "_se")) for c in HISTORY_COLUMNS]
            + [fmt_se(v.get("hr@10"), v.get("hr@10_se")), cell]
        )
    return header, body


def history_summary(report: dict) -> dict | None:
    """The context tower against the best history baseline on test HR@10, shaped as signature_summary's result
    (signature `recommend`); None without a tower row or a baseline."""
    test = report.get("history_metrics") or {}
    base = [b for b in test if b != HISTORY_TOWER and "hr@10" in test[b]]
    if HISTORY_TOWER not in test or not base:
        return None
    best = max(base, key=lambda b: test[b]["hr@10"])
    d = ((report.get("history_verdict_details") or {}).get(best) or {}).get(HISTORY_SIGNATURE) or {}
    return {
        "signature": HISTORY_SIGNATURE,
        "model": HISTORY_TOWER,
        "metric": "hr@10",
        "value": test[HISTORY_TOWER]["hr@10"],
        "se": test[HISTORY_TOWER].get("hr@10_se"),
        "baseline": best,
        "baseline_value": test[best]["hr@10"],
        "baseline_se": test[best].get("hr@10_se"),
        "verdict": ((report.get("history_verdicts") or {}).get(best) or {}).get(HISTORY_SIGNATURE),
        "diff": d.get("diff"),
        "diff_se": d.get("se"),
    }


def history_summary_line(report: dict) -> str | None:
    s = history_summary(report)
    return None if s is None else summary_sentence(s).replace("best baseline", "best history baseline", 1)


def history_notes(report: dict) -> list[str]:
    """The history section's lines under its table: the note, the tower's form and training, the baselines'
    validation choices, what was skipped and why."""
    info = report.get("history_evaluation") or {}
    lines = [info["note"] + "."] if info.get("note") else []
    tower = info.get("tower") or {}
    if tower:
        probe = tower.get("form_probe") or {}
        how = "given" if not probe else f"picked by the validation probe ({probe.get('rule', '')})"
        lines.append(
            f"Tower: form {tower.get('form', '?')} ({how}), the {tower.get('max_len', '?')} most recent items; "
            f"best epoch {tower.get('best_epoch', '?')} of {len(tower.get('epoch') or [])} (validation HR@10 "
            f"{_fmt(tower.get('best_val_hr@10'))}), trained in {_duration(float(tower.get('train_seconds') or 0))}."
        )
    for name, c in sorted((info.get("chosen") or {}).items()):
        tried = ", ".join(f"{k}: {_fmt(v)}" for k, v in (c.get("validation") or {}).items())
        lines.append(f"{name}: {c.get('param')} = {c.get('value'):g}, chosen on validation HR@10 ({tried}).")
    lines += [f"{name} not run: {why}." for name, why in sorted((info.get("skipped") or {}).items())]
    return lines


def _md_history(report: dict) -> list[str]:
    rows = history_rows(report)
    if rows is None:
        return []
    lines = ["", "## Recommendations from a history", "", HISTORY_TEXT, ""] + _md_table(*rows) + [""]
    return lines + [f"- {x}" for x in history_notes(report)]


def _html_history(report: dict) -> str:
    rows = history_rows(report)
    if rows is None:
        return ""
    notes = "".join(f"<li>{_code(x)}</li>" for x in history_notes(report))
    return (
        '<section id="history"><h2>Recommendations from a history</h2>'
        f'<p class="muted">{_code(HISTORY_TEXT)}</p>' + _html_table(*rows) + f'<ul class="muted">{notes}</ul></section>'
    )


# ------------------------------------------------------------------------------------------------ markdown
def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cell(x):
        return str(x).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(cell(x) for x in r) + " |" for r in rows
    ]


def _md_models(rows) -> list[str]:
    return _md_table(*_model_table(rows))


def summary_lines(report: dict) -> list[str]:
    """The summary's lines, top of report.md and report.html: dataset, each served list against its best
    baseline, the blessing, the run's wall time."""
    lines = [f"dataset: {dataset_line(report)}"]
    lines += [summary_sentence(s) for s in (signature_summary(report, g) for g in SIGNATURES) if s]
    h = history_summary_line(report)
    lines += [h] if h else []
    b = blessing_line(report)
    lines += [b[0]] if b else []
    w = wall_time_line(report)
    return lines + ([w] if w else [])


def _md_quality(report: dict) -> list[str]:
    lines = ["## Quality vs baselines", ""]
    for caption, header, body in quality_tables(report):
        lines += [f"{caption}:", ""] + _md_table(header, body) + [""]
    v = verdict_rows(report)
    if v:
        lines += [f"{verdict_caption(report)}:", ""] + _md_table(*v) + [""]
    lines.append(f"Protocol: {protocol_text(report)}")
    for text in (list_text(report), similarity_weight_text(report)):
        lines += ["", text] if text else []
    return lines


def _md_examples(qs: list) -> list[str]:
    lines = ["", "## Example queries", ""]
    for bucket, group in _grouped(qs):
        lines += [f"### {BUCKET_TEXT[bucket]}", ""] if bucket else []
        for q in group:
            n = q.get("train_interactions")
            lines.append(f"**{_query_label(q)}**" + (f" ({n} train interactions)" if n is not None else "") + " →")
            lines += [f"{i}. {_label(r)} ({r['score']:.3f})" for i, r in enumerate(q["related"], 1)] + [""]
    if not qs:
        lines.append("(none: the run stopped before the index was built)")
    return lines


def _md_data(data: dict) -> list[str]:
    lines = ["", "## Dataset", ""] + _md_table(["", ""], [list(r) for r in data_summary(data)])
    counts, found = data_anomalies(data)
    nonzero, zero = [[k, v] for k, v in counts if v], [k for k, v in counts if not v]
    lines += ["", "## Data anomalies", "", "Bad input by reason (dropped rows, blanked cells, defaults):", ""]
    lines += _md_table(["reason", "count"], nonzero) if nonzero else ["No bad input found."]
    lines += ["", f"{_nothing(len(zero))}: {', '.join(zero)}"] if zero else []
    return lines + ["", "ExampleValidator: " + ("; ".join(found) if found else "no anomalies")]


def _nothing(n: int) -> str:
    return f"{n} check{'s' if n != 1 else ''} found nothing"


def markdown(report: dict) -> str:
    lines = [f"# PinSage evaluation — {report['dataset']}", "", "## Summary", ""]
    lines += [f"- {line}" for line in summary_lines(report)]
    plots = report.get("plots") or {}
    lines += [f"\n![{k}]({v})" for k, v in plots.items() if k.startswith("quality")] + [""]
    lines += _md_quality(report)
    lines += _md_history(report)
    if (report.get("cold_start") or {}).get("held_out_items"):
        lines += [""] + cold_start.markdown_lines(report["cold_start"])
    pop = popularity_rows(report)
    if pop:
        lines += ["", "## HR@10 by query popularity", "", POPULARITY_TEXT, ""] + _md_table(*pop)
    if "example_queries" in report:
        lines += _md_examples(report["example_queries"] or [])
    if report.get("data"):
        lines += _md_data(report["data"])
    if report.get("ablations"):
        lines += ["", "## Ablations", ""] + _md_models(model_rows(report["ablations"])) + _paper_lines(report)
    if space_line(report):
        lines += ["", "## Similarity distribution", "", space_line(report), ""]
        lines += _md_table(*space_rows(report)) + ["", SPACE_TEXT]
    lines += [""] + [f"![{k}]({v})" for k, v in plots.items() if not k.startswith("quality")]
    trows = _timing_rows(report)
    if trows:
        lines += ["", "## Timings per stage", ""]
        lines += _md_table(["stage", "wall (s)", ""], [[n, f"{s:.1f}", c] for n, s, c in trows])
        total = (report.get("run_timings") or {}).get("pipeline_s")
        if total is not None:
            lines += ["", f"Pipeline wall time (ingest and every stage): {total:.1f} s"]
    if report.get("timings"):
        lines += ["", "Evaluator timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report["timings"].items())]
    return "\n".join(lines) + "\n"


def verdict_caption(report: dict) -> str:
    b = report.get("blessing") or {}
    metric = HEADERS.get(b.get("metric", "hr@10"), b.get("metric"))
    return (
        f"Verdicts on {metric}, test split: each served list against each baseline (paired difference ±SE; "
        f"ahead / behind beyond {b.get('z', 2.0):g} SE)"
    )


BUCKET_TEXT = {
    "head": "head: the most engaged items, together a third of the train interactions",
    "torso": "torso: the next third of the train interactions",
    "tail": "tail: the least engaged items, the last third",
}


def _label(entry: dict) -> str:
    t, i = entry.get("title") or "", entry["item_id"]
    return f"{t} (id {i})" if t and t != i else (t or i)


def _query_label(q: dict) -> str:
    """An example's query (query_id / query_title; item_id / title in reports from before the buckets)."""
    return _label({"item_id": q.get("query_id", q.get("item_id", "?")), "title": q.get("query_title", q.get("title"))})


def _grouped(qs: list) -> list[tuple[str | None, list]]:
    """The examples by popularity bucket, head to tail; entries without a bucket last, under None."""
    known = [(b, [q for q in qs if q.get("bucket") == b]) for b in BUCKETS]
    other = [q for q in qs if q.get("bucket") not in BUCKETS]
    return [(b, g) for b, g in known if g] + ([(None, other)] if other else [])


# ------------------------------------------------------------------------------------------------ html
_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;
margin:1.2em auto;padding:0 1em;color:#222;font-size:15px}h1{font-size:1.5em;margin:.2em 0 .4em}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em;font-size:1.3em}h3{font-size:1.05em}
.wrap{max-width:100%;overflow-x:auto}table{border-collapse:collapse;margin:.3em 0 .8em;font-size:.93em}
td,th{border:1px solid #ddd;padding:.22em .55em;text-align:left}th{background:#f4f4f4;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img{max-width:100%;border:1px solid #eee}.muted{color:#777}.cap{margin:.8em 0 .1em;font-weight:600}
figure{margin:.6em 0}figcaption{font-size:.88em}
#summary{border:1px solid #cfd8dc;background:#f7fafc;padding:.5em 1em;border-radius:6px}
#summary ul{margin:.3em 0;padding-left:1.2em}#summary li{margin:.2em 0}#summary figure{margin:.4em 0 .2em}
.badge{display:inline-block;padding:0 .45em;border-radius:4px;font-size:.85em;font-weight:600;margin-right:.3em}
.v-ahead,.bless-yes{background:#e6f4ea;color:#137333}.v-within_noise,.v-none{background:#eceff1;color:#455a64}
.v-behind,.bless-no{background:#fce8e6;color:#a50e0e}code{font-size:.95em}
details{margin:.4em 0}summary{cursor:pointer;color:#555}
.queries{display:flex;flex-wrap:wrap;gap:1em}.q{flex:1 1 320px;border:1px solid #ddd;padding:.4em .8em}
.q ol{padding-left:1.6em;margin:.3em 0}"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _code(text: str) -> str:
    """Escaped text with `names` as <code>."""
    return re.sub(r"`([^`<>]*)`", r"<code>\1</code>", _e(text))


def data_uri(path: str) -> str | None:
    """The PNG at `path` as a data: URI (None if missing), so that report.html needs no side files."""
    if not files.exists(path):
        return None
    return "data:image/png;base64," + base64.b64encode(files.read_bytes(path)).decode("ascii")


def _html_table(header: list[str] | None, rows: list[list], numeric_from: int = 1) -> str:
    th = ('<th class="n">{}</th>', "<th>{}</th>")
    h = "".join(th[j < numeric_from].format(_code(c)) for j, c in enumerate(header or []))
    h = f"<thead><tr>{h}</tr></thead>" if header else ""
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{_e(x)}</td>' if j >= numeric_from else f"<td>{_e(x)}</td>" for j, x in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f'<div class="wrap"><table>{h}<tbody>{body}</tbody></table></div>'


def _html_models(rows) -> str:
    return _html_table(*_model_table(rows))


def _img(report: dict, key_prefix: str, base_dir: str, caption: str | None = None) -> str:
    parts = []
    for name, rel in (report.get("plots") or {}).items():
        if name.startswith(key_prefix):
            uri = data_uri(files.join(base_dir, *rel.split("/")))
            parts.append(
                f'<figure><img alt="{_e(name)}" src="{uri}">'
                f'<figcaption class="muted">{_e(caption or name)}</figcaption></figure>'
                if uri
                else f'<p class="muted">plot {_e(rel)} missing</p>'
            )
    return "".join(parts) or '<p class="muted">no plot in this run</p>'


def _html_summary(report: dict, base_dir: str) -> str:
    items = [f"<li><b>dataset</b> {_e(dataset_line(report))}</li>"]
    for s in (signature_summary(report, g) for g in SIGNATURES):
        if s:
            v = s["verdict"] if s["verdict"] in VERDICT_WORDS else "none"
            word = {"none": "no verdict"}.get(v, v.replace("_", " "))
            items.append(f'<li class="sig"><span class="badge v-{v}">{word}</span>{_code(summary_sentence(s))}</li>')
    h = history_summary(report)
    if h:
        v = h["verdict"] if h["verdict"] in VERDICT_WORDS else "none"
        word = {"none": "no verdict"}.get(v, v.replace("_", " "))
        text = _code(history_summary_line(report))
        items.append(f'<li class="sig history"><span class="badge v-{v}">{word}</span>{text}</li>')
    b = blessing_line(report)
    if b:
        cls, word = ("bless-yes", "blessed") if b[1] else ("bless-no", "not blessed")
        text = b[0].split(": ", 1)[1] if b[0].startswith(word + ": ") else b[0]
        items.append(f'<li class="blessing"><span class="badge {cls}">{word}</span>{_e(text)}</li>')
    w = wall_time_line(report)
    items += [f'<li class="muted">{_e(w)}</li>'] if w else []
    chart = (
        _img(report, "quality", base_dir, QUALITY_CAPTION if has_se(report) else NO_SE_CAPTION)
        if "quality" in "".join(report.get("plots") or {})
        else ""
    )
    return f'<section id="summary"><ul>{"".join(items)}</ul>{chart}</section>'


def _html_quality(report: dict) -> list[str]:
    tables = "".join(f'<p class="cap">{_e(c)}</p>' + _html_table(h, b) for c, h, b in quality_tables(report))
    v = verdict_rows(report)
    if v:
        tables += f'<p class="cap">{_e(verdict_caption(report))}</p>' + _html_table(*v, numeric_from=99)
    texts = (f"Protocol: {protocol_text(report)}", list_text(report), similarity_weight_text(report))
    out = [
        '<section id="quality"><h2>Quality vs baselines</h2>'
        + tables
        + "".join(f'<p class="muted">{_code(t)}</p>' for t in texts if t)
        + "</section>"
    ]
    pop = popularity_rows(report)
    if pop:
        out.append(
            '<section id="popularity"><h2>HR@10 by query popularity</h2>'
            f'<p class="muted">{_e(POPULARITY_TEXT)}</p>' + _html_table(*pop) + "</section>"
        )
    if report.get("ablations"):
        paper = _paper_lines(report)
        out.append(
            '<section id="ablations"><h2>Ablations</h2>'
            + _html_models(model_rows(report["ablations"]))
            + (
                "<p>" + _e(paper[1]) + "</p><ul>" + "".join(f"<li>{_e(x[2:])}</li>" for x in paper[3:]) + "</ul>"
                if paper
                else ""
            )
            + "</section>"
        )
    return out


def _html_data(data: dict) -> list[str]:
    counts, found = data_anomalies(data)
    nonzero, zero = [[k, v] for k, v in counts if v], [k for k, v in counts if not v]
    collapsed = (
        f'<details><summary>{_e(_nothing(len(zero)))}</summary><p class="muted">{_e(", ".join(zero))}</p></details>'
        if zero
        else ""
    )
    return [
        '<section id="dataset"><h2>Dataset</h2>'
        + _html_table(None, [list(r) for r in data_summary(data)], numeric_from=2)
        + "</section>",
        '<section id="anomalies"><h2>Data anomalies</h2><p>Bad input by reason (dropped rows, blanked cells, '
        "defaults):</p>"
        + (_html_table(["reason", "count"], nonzero) if nonzero else "<p>No bad input found.</p>")
        + collapsed
        + "<p>ExampleValidator: "
        + ("</p><ul>" + "".join(f"<li>{_e(a)}</li>" for a in found) + "</ul>" if found else "no anomalies.</p>")
        + "</section>",
    ]


def _html_space(report: dict, base_dir: str) -> list[str]:
    header, body = space_rows(report)
    return [
        '<section id="similarity"><h2>Similarity distribution</h2>'
        + (_html_table(header, body) if body else "<p>–</p>")
        + f"<p>{_e(SPACE_TEXT)}</p>"
        + _img(report, "cosine similarity", base_dir)
        + "</section>",
        '<section id="embedding-map"><h2>Embedding map</h2>' + _img(report, "embedding map", base_dir) + "</section>",
    ]


def _html_query(q: dict) -> str:
    n = q.get("train_interactions")
    count = f' <span class="muted">{n} train interactions</span>' if n is not None else ""
    return (
        f'<div class="q"><b>{_e(_query_label(q))}</b>{count}<ol>'
        + "".join(f'<li>{_e(_label(r))} <span class="muted">{r["score"]:.3f}</span></li>' for r in q["related"])
        + "</ol></div>"
    )


def _html_examples(qs: list) -> str:
    groups = "".join(
        (f'<h3 class="bucket" id="bucket-{b}">{_e(BUCKET_TEXT[b])}</h3>' if b else "")
        + '<div class="queries">'
        + "".join(_html_query(q) for q in group)
        + "</div>"
        for b, group in _grouped(qs)
    )
    return (
        '<section id="examples"><h2>Example queries</h2><p class="muted">Related items of items from the head, '
        "torso and tail of the catalogue (per bucket its most engaged item and a seeded random one), from the "
        "run's ScaNN index over the batch embeddings (what the server answers).</p>"
        + (groups or "<p>None: the run stopped before the index was built.</p>")
        + "</section>"
    )


def _html_timings(report: dict) -> str:
    trows = _timing_rows(report)
    run = report.get("run_timings") or {}
    tim = ""
    if trows:
        tim += _html_table(["stage", "wall (s)", ""], [[n, f"{t:.1f}", c] for n, t, c in trows], numeric_from=1)
        if run.get("pipeline_s") is not None:
            tim += f"<p>Pipeline wall time (ingest and every stage): <b>{run['pipeline_s']:.1f} s</b></p>"
    if report.get("timings"):
        tim += (
            '<p class="muted">Evaluator timings (s): '
            + _e(", ".join(f"{k} {v:.1f}" for k, v in report["timings"].items()))
            + "</p>"
        )
    return '<section id="timings"><h2>Timings per stage</h2>' + (tim or "<p>–</p>") + "</section>"


def _html_cold_start(section: dict) -> str:
    parts = ['<section id="cold-start"><h2>Item cold start</h2>', f"<p>{_e(cold_start.summary_line(section))}</p>"]
    for caption, header, rows in cold_start.tables(section):
        parts += [f"<p>{_e(caption)}:</p>", _html_table(header, rows)]
    lines = cold_start.verdict_lines(section)
    parts += ["<ul>" + "".join(f"<li>{_e(ln)}</li>" for ln in lines) + "</ul>"] if lines else []
    return "\n".join(parts) + "</section>"


def render_html(report: dict, base_dir: str) -> str:
    """report.html: every section of report.md, with the plots (paths relative to `base_dir`) inlined; the
    summary and the quality chart first, so that they are what a reader sees without scrolling."""
    s = [f"<h1>PinSage evaluation — {_e(report['dataset'])}</h1>", _html_summary(report, base_dir)]
    s += _html_quality(report)
    s += [_html_history(report)] if report.get("history_metrics") else []
    if (report.get("cold_start") or {}).get("held_out_items"):
        s.append(_html_cold_start(report["cold_start"]))
    if "example_queries" in report:
        s.append(_html_examples(report["example_queries"] or []))
    if report.get("data"):
        s += _html_data(report["data"])
    s += _html_space(report, base_dir)
    s.append(_html_timings(report))
    s.append('<section id="training"><h2>Training</h2>' + _img(report, "training curves", base_dir) + "</section>")
    title = _e(f"PinSage report — {report['dataset']}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_CSS}</style></head><body>\n" + "\n".join(s) + "\n</body></html>\n"
    )


def write(report: dict, out_dir: str) -> None:
    """report.json, report.md and report.html into `out_dir` (plots already under it, paths in report['plots']);
    the quality chart is drawn here from the report itself, so every writer of a report gets it."""
    files.makedirs(files.join(out_dir, "plots"))
    if plot_quality(report, files.join(out_dir, *QUALITY_PLOT.split("/"))):
        report = dict(report, plots={"quality vs baselines": QUALITY_PLOT, **(report.get("plots") or {})})
    # insertion order: stage timings in run order
    files.write_json(files.join(out_dir, "report.json"), report, indent=2, default=float)
    files.write_text(files.join(out_dir, "report.md"), markdown(report))
    files.write_text(files.join(out_dir, "report.html"), render_html(report, out_dir))
