"""The evaluation report: metrics table (report.json / report.md) and the paper's diagnostic plots.

- quality table: every model under the fixed protocol (pipeline/evaluation.py), test and validation splits;
- training curves (loss and validation HR@10 per epoch);
- the distribution of pairwise cosine similarities of item embeddings and its kurtosis (the paper's Fig. 4:
  PinSage 0.43 vs 1.20-2.49 for feature baselines — a wide spread means the space is used, not collapsed);
- a 2-D t-SNE map of item embeddings coloured by a categorical feature (genre on MovieLens).
"""
from __future__ import annotations

import json
import os

import numpy as np

PROTOCOL = ("per context: last interaction = test, second-last = validation (time ties broken by item id); "
            "query = latest train item; rank all items; mask the context's train items (and its validation item "
            "for test); ties in score broken by node id; HR@10, MRR, NDCG@10, Recall@10, HR@500")


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
    from scipy import stats

    return float(stats.kurtosis(values, fisher=True))


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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cosine_distribution(cosines: dict[str, np.ndarray], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, c in cosines.items():
        ax.hist(c, bins=100, range=(-1, 1), histtype="step", density=True,
                label=f"{name} (kurtosis {kurtosis(c):.2f})")
    ax.set(title="pairwise cosine similarity of item embeddings", xlabel="cosine", ylabel="density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_embedding_map(emb: np.ndarray, labels: np.ndarray, label_names: list[str], path: str,
                       max_points: int = 3000, seed: int = 0) -> None:
    """t-SNE of a sample of items, coloured by `labels` (index into label_names, -1 = none)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: dict) -> str:
    lines = [f"# PinSage evaluation — {report['dataset']}", "", f"Protocol: {report['protocol']}", "",
             "| model | HR@10 | MRR | NDCG@10 | Recall@10 | HR@500 | validation HR@10 |",
             "|---|---|---|---|---|---|---|"]
    val = report.get("validation_metrics", {})
    for name, m in sorted(report["metrics"].items(), key=lambda kv: -kv[1]["hr@10"]):
        v = val.get(name, {}).get("hr@10", float("nan"))
        lines.append(f"| {name} | {m['hr@10']:.4f} | {m['mrr']:.4f} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} "
                     f"| {m['hr@500']:.4f} | {v:.4f} |")
    best = max((kv for kv in report["metrics"].items() if kv[0] != "pinsage"), key=lambda kv: kv[1]["hr@10"])
    p = report["metrics"].get("pinsage")
    if p:
        verdict = "beats" if p["hr@10"] > best[1]["hr@10"] and p["mrr"] > best[1]["mrr"] else "does NOT beat"
        lines += ["", f"**pinsage {verdict} the best other model ({best[0]}) on test HR@10 and MRR.**"]
    if report.get("kurtosis"):
        lines += ["", "Kurtosis of pairwise cosine similarities: " +
                  ", ".join(f"{k} {v:.2f}" for k, v in report["kurtosis"].items())]
    if report.get("plots"):
        lines += [""] + [f"![{k}]({v})" for k, v in report["plots"].items()]
    if report.get("timings"):
        lines += ["", "Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report["timings"].items())]
    return "\n".join(lines) + "\n"


def write(report: dict, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True, default=float)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(markdown(report))
