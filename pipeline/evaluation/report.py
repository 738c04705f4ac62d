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

import numpy as np
from scipy import stats
from sklearn.manifold import TSNE

from schema import files

METRICS = ("hr@10", "mrr", "ndcg@10", "recall@10", "hr@500", "coverage@10", "popular_share@10", "feature_agreement@10")
HEADERS = {"hr@10": "HR@10", "mrr": "MRR", "ndcg@10": "NDCG@10", "recall@10": "Recall@10", "hr@500": "HR@500"}
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


def _columns(rows) -> list[str]:
    present = {k for _, m, _ in rows for k in m}
    return [c for c in METRICS if c in present] + sorted(present - set(METRICS))


def _validation_hr(extra: dict) -> float | None:
    for key in ("validation_metrics", "validation"):
        v = extra.get(key)
        if isinstance(v, dict) and isinstance(v.get("hr@10"), (int, float)):
            return float(v["hr@10"])
    return None


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.4f}" if isinstance(v, float) else str(v)  # counts (e.g. num_contexts) stay integers


def _quality_rows(report: dict) -> list[tuple[str, dict, dict]]:
    rows = sorted(model_rows(report.get("metrics", {})), key=lambda r: -r[1].get("hr@10", -1.0))
    val = report.get("validation_metrics", {})
    return [(n, m, {"validation_metrics": val.get(n, {})}) for n, m, _ in rows]


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


def verdict(report: dict) -> str | None:
    metrics = report.get("metrics", {})
    p = metrics.get("pinsage")
    others = [kv for kv in metrics.items() if not kv[0].startswith("pinsage")]  # the baselines, not its own rows
    if not p or not others:
        return None
    best = max(others, key=lambda kv: kv[1]["hr@10"])
    word = "beats" if p["hr@10"] > best[1]["hr@10"] and p["mrr"] > best[1]["mrr"] else "does NOT beat"
    return f"pinsage {word} the best other model ({best[0]}) on test HR@10 and MRR."


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


# ------------------------------------------------------------------------------------------------ markdown
def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cell(x):
        return str(x).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(cell(x) for x in r) + " |" for r in rows
    ]


def _model_table(rows) -> tuple[list[str], list[list[str]]]:
    """(header, body) of a models table, shared by the markdown and the HTML renderings."""
    cols = _columns(rows)
    has_val = any(_validation_hr(e) is not None for _, _, e in rows)
    header = ["model"] + [HEADERS.get(c, c) for c in cols] + (["validation HR@10"] if has_val else [])
    body = [[n] + [_fmt(m.get(c)) for c in cols] + ([_fmt(_validation_hr(e))] if has_val else []) for n, m, e in rows]
    return header, body


def _md_models(rows) -> list[str]:
    return _md_table(*_model_table(rows))


def markdown(report: dict) -> str:
    lines = [f"# PinSage evaluation — {report['dataset']}", ""]
    data = report.get("data")
    if data:
        lines += ["## Dataset", ""] + _md_table(["", ""], [list(r) for r in data_summary(data)])
        counts, found = data_anomalies(data)
        lines += ["", "## Data anomalies", "", "Bad input by reason (dropped rows, blanked cells, defaults):", ""]
        lines += _md_table(["reason", "count"], [[k, v] for k, v in counts])
        lines += ["", "ExampleValidator: " + ("; ".join(found) if found else "no anomalies")]
        lines.append("")
    lines += ["## Quality vs baselines", "", f"Protocol: {report['protocol']}", ""]
    lines += _md_models(_quality_rows(report))
    v = verdict(report)
    if v:
        lines += ["", f"**{v}**"]
    if list_text(report):
        lines += ["", list_text(report)]
    if similarity_weight_text(report):
        lines += ["", similarity_weight_text(report)]
    if report.get("ablations"):
        lines += ["", "## Ablations", ""] + _md_models(model_rows(report["ablations"])) + _paper_lines(report)
    if space_line(report):
        lines += ["", "## Similarity distribution", "", space_line(report), ""]
        lines += _md_table(*space_rows(report)) + ["", SPACE_TEXT]
    if report.get("plots"):
        lines += [""] + [f"![{k}]({v})" for k, v in report["plots"].items()]
    if "example_queries" in report:
        lines += ["", "## Example queries", ""]
        for q in report["example_queries"] or []:
            lines.append(f"**{_label(q)}** →")
            lines += [f"{i}. {_label(r)} ({r['score']:.3f})" for i, r in enumerate(q["related"], 1)] + [""]
        if not report["example_queries"]:
            lines.append("(none: the run stopped before the index was built)")
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


def _label(entry: dict) -> str:
    t, i = entry.get("title") or "", entry["item_id"]
    return f"{t} (id {i})" if t and t != i else (t or i)


# ------------------------------------------------------------------------------------------------ html
_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}tr.best td{font-weight:600}
img{max-width:100%;border:1px solid #eee}.muted{color:#777}.verdict{font-weight:600}
.queries{display:flex;flex-wrap:wrap;gap:1em}.q{flex:1 1 320px;border:1px solid #ddd;padding:.4em .8em}
.q ol{padding-left:1.6em;margin:.3em 0}"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def data_uri(path: str) -> str | None:
    """The PNG at `path` as a data: URI (None if missing), so that report.html needs no side files."""
    if not files.exists(path):
        return None
    return "data:image/png;base64," + base64.b64encode(files.read_bytes(path)).decode("ascii")


def _html_table(
    header: list[str] | None, rows: list[list], numeric_from: int = 1, classes: list[str] | None = None
) -> str:
    h = "<thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in header) + "</tr></thead>" if header else ""
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(
            f'<td class="n">{_e(x)}</td>' if j >= numeric_from else f"<td>{_e(x)}</td>" for j, x in enumerate(r)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table>{h}<tbody>{''.join(body)}</tbody></table>"


def _html_models(rows, best: str | None = None) -> str:
    header, body = _model_table(rows)
    return _html_table(header, body, classes=["best" if n == best else "" for n, _, _ in rows])


def _img(report: dict, key_prefix: str, base_dir: str) -> str:
    parts = []
    for name, rel in (report.get("plots") or {}).items():
        if name.startswith(key_prefix):
            uri = data_uri(files.join(base_dir, *rel.split("/")))
            parts.append(
                f'<figure><img alt="{_e(name)}" src="{uri}"><figcaption class="muted">{_e(name)}</figcaption></figure>'
                if uri
                else f'<p class="muted">plot {_e(rel)} missing</p>'
            )
    return "".join(parts) or '<p class="muted">no plot in this run</p>'


def _html_data(data: dict) -> list[str]:
    counts, found = data_anomalies(data)
    nonzero = [[k, v] for k, v in counts if v]
    return [
        '<section id="dataset"><h2>Dataset</h2>'
        + _html_table(None, [list(r) for r in data_summary(data)], numeric_from=2)
        + "</section>",
        '<section id="anomalies"><h2>Data anomalies</h2>'
        "<p>Bad input by reason (dropped rows, blanked cells, defaults); reasons with a zero count: "
        f'<span class="muted">{_e(", ".join(k for k, v in counts if not v) or "none")}</span></p>'
        + (_html_table(["reason", "count"], nonzero) if nonzero else "<p>No bad input found.</p>")
        + "<p>ExampleValidator: "
        + ("</p><ul>" + "".join(f"<li>{_e(a)}</li>" for a in found) + "</ul>" if found else "no anomalies.</p>")
        + "</section>",
    ]


def _html_quality(report: dict) -> list[str]:
    q = _quality_rows(report)
    out = [
        '<section id="quality"><h2>Quality vs baselines</h2>'
        f'<p class="muted">Protocol: {_e(report.get("protocol", ""))}</p>'
        + _html_models(q, best=q[0][0] if q else None)
        + (f'<p class="verdict">{_e(verdict(report))}</p>' if verdict(report) else "")
        + (f"<p>{_e(list_text(report))}</p>" if list_text(report) else "")
        + (f"<p>{_e(similarity_weight_text(report))}</p>" if similarity_weight_text(report) else "")
        + "</section>"
    ]
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


def _html_examples(qs: list) -> str:
    cards = "".join(
        f'<div class="q"><b>{_e(_label(x))}</b><ol>'
        + "".join(f'<li>{_e(_label(r))} <span class="muted">{r["score"]:.3f}</span></li>' for r in x["related"])
        + "</ol></div>"
        for x in qs
    )
    return (
        '<section id="examples"><h2>Example queries</h2><p class="muted">Related items of the most engaged '
        "items, from the run's ScaNN index over the batch embeddings (what the server answers).</p>"
        + (f'<div class="queries">{cards}</div>' if qs else "<p>None: the run stopped before the index was built.</p>")
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


def render_html(report: dict, base_dir: str) -> str:
    """report.html: every section of report.md, with the plots (paths relative to `base_dir`) inlined."""
    s = [f"<h1>PinSage evaluation — {_e(report['dataset'])}</h1>"]
    if report.get("data"):
        s += _html_data(report["data"])
    s += _html_quality(report) + _html_space(report, base_dir)
    if "example_queries" in report:
        s.append(_html_examples(report["example_queries"] or []))
    s.append(_html_timings(report))
    s.append('<section id="training"><h2>Training</h2>' + _img(report, "training curves", base_dir) + "</section>")
    title = _e(f"PinSage report — {report['dataset']}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(s) + "\n</body></html>\n"
    )


def write(report: dict, out_dir: str) -> None:
    """report.json, report.md and report.html into `out_dir` (plots already under it, paths in report['plots'])."""
    files.makedirs(out_dir)
    # insertion order: stage timings in run order
    files.write_json(files.join(out_dir, "report.json"), report, indent=2, default=float)
    files.write_text(files.join(out_dir, "report.md"), markdown(report))
    files.write_text(files.join(out_dir, "report.html"), render_html(report, out_dir))
