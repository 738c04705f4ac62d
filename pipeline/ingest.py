"""Ingest: check the input contract, type every cell, count every bad one, write canonical CSVs.

Why this stage exists before CsvExampleGen: CsvExampleGen infers each column's type from its values, so a single
malformed timestamp turns the whole column into strings, and a single 'abc' in a numeric feature makes Transform
fail to parse the table. Here each cell is checked against the contract (`dataset.yaml`, or kinds inferred and
reported) with vectorised pandas; bad rows are dropped and bad cells blanked, each *counted by reason*; the canonical
CSVs then always infer to the declared types, and the counts go into the run's data report. Cross-row problems that
need the whole graph (duplicate interactions, the temporal split) are GraphGen's.

Input contract (README, "Data contract"):
- items.csv:         item_id + feature columns
- interactions.csv:  context_id, item_id, timestamp (epoch seconds or ISO-8601), optional weight (> 0, default 1)
- dataset.yaml:      optional; `features: {column: {kind: numeric|categorical|text|dense_vector, separator, dim}}`
"""
from __future__ import annotations

import hashlib
import json
import os
import re

import numpy as np
import pandas as pd
import yaml

ITEMS_FILE = "items.csv"
INTERACTIONS_FILE = "interactions.csv"
SPEC_FILE = "dataset.yaml"
REPORT_FILE = "ingest_report.json"
KINDS = ("numeric", "categorical", "text", "dense_vector")
ITEM_REQUIRED = ("item_id",)
INTERACTION_REQUIRED = ("context_id", "item_id", "timestamp")
INTERACTION_COLUMNS = ("context_id", "item_id", "timestamp", "weight")
_INT_RE = r"^-?(0|[1-9][0-9]*)$"


class InputError(ValueError):
    """An input that cannot be used at all (unreadable, empty, wrong columns). The message names the file."""


def read_contract_csv(path: str, required: tuple[str, ...]) -> pd.DataFrame:
    """Reads one contract CSV with every cell as a string (typing is done per column, with counts)."""
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: file is empty (expected a header row and data rows)")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise InputError(f"{path}: cannot be parsed as CSV: {e}") from e
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing required column(s) {missing}; found {list(df.columns)}")
    if len(df.columns) != len(set(df.columns)):
        raise InputError(f"{path}: duplicate column names {list(df.columns)}")
    if len(df) == 0:
        raise InputError(f"{path}: has a header but no data rows")
    return df


def infer_kind(values: pd.Series) -> dict:
    """Guesses a feature column's kind from its non-empty values (reported as inferred in the data report)."""
    v = values[values.str.len() > 0]
    if len(v) == 0:
        return {"kind": "categorical"}
    if pd.to_numeric(v, errors="coerce").notna().mean() >= 0.95:
        return {"kind": "numeric"}
    for sep in (" ", ";", ","):
        parts = v.head(200).str.split(sep)
        lens = parts.str.len()
        if lens.min() >= 2 and lens.nunique() == 1 and \
                pd.to_numeric(parts.explode(), errors="coerce").notna().all():
            return {"kind": "dense_vector", "separator": sep, "dim": int(lens.iloc[0])}
    if v.str.contains("|", regex=False).mean() > 0.05:
        return {"kind": "categorical", "separator": "|"}
    if v.nunique() <= max(50, 0.2 * len(v)):
        return {"kind": "categorical"}
    return {"kind": "text"}


def resolve_spec(data_dir: str, items: pd.DataFrame) -> dict:
    """The dataset spec: dataset.yaml when present (validated), else inferred. Every item column is covered."""
    path = os.path.join(data_dir, SPEC_FILE)
    spec = {"name": os.path.basename(os.path.normpath(data_dir)), "features": {}}
    given = {}
    if os.path.exists(path):
        try:
            with open(path) as f:
                loaded = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise InputError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(loaded, dict) or not isinstance(loaded.get("features", {}), dict):
            raise InputError(f"{path}: expected a mapping with a 'features' mapping")
        spec["name"] = str(loaded.get("name", spec["name"]))
        given = loaded.get("features") or {}
        unknown_cols = sorted(set(given) - set(items.columns))
        if unknown_cols:
            raise InputError(f"{path}: features {unknown_cols} are not columns of items.csv")
    inferred = []
    for col in items.columns:
        if col == "item_id":
            continue
        if col in given:
            f = dict(given[col] or {})
            if f.get("kind") not in KINDS:
                raise InputError(f"{path}: feature {col!r} has kind {f.get('kind')!r}; expected one of {KINDS}")
            if f["kind"] == "dense_vector" and not isinstance(f.get("dim"), int):
                raise InputError(f"{path}: dense_vector feature {col!r} needs an integer 'dim'")
        else:
            f = infer_kind(items[col])
            inferred.append(col)
        spec["features"][col] = f
    spec["inferred"] = inferred
    return spec


def _blank_counts(s: pd.Series) -> int:
    return int((s.str.len() == 0).sum())


def parse_timestamps(s: pd.Series) -> pd.Series:
    """Epoch seconds (integers, or floats with a zero fraction) or ISO-8601 datetimes -> Int64 (NA when malformed)."""
    num = pd.to_numeric(s, errors="coerce")
    ok_num = num.notna() & np.isfinite(num) & (num == np.floor(num.fillna(0)))
    out = pd.Series(pd.NA, index=s.index, dtype="Int64")
    out[ok_num] = num[ok_num].astype("int64")
    rest = ~ok_num & (s.str.len() > 0) & num.isna()
    if rest.any():
        dt = pd.to_datetime(s[rest], errors="coerce", utc=True)
        good = dt.notna()
        out.loc[dt.index[good]] = (dt[good].astype("int64") // 10**9).astype("int64")
    return out


def _id_type(*cols: pd.Series) -> str:
    return "int" if all(c.str.match(_INT_RE).all() for c in cols) else "string"


def canonicalise(data_dir: str, out_root: str) -> tuple[str, dict]:
    """Checks and types the dataset in `data_dir`, writes canonical CSVs under `out_root/<content hash>/`.

    Returns (canonical_dir, report). The directory is keyed by the inputs' content so that an unchanged dataset
    maps to the same ExampleGen input (TFX cache hit) and a changed one to a new one.
    Raises InputError for a file that cannot be used at all.
    """
    items_path = os.path.join(data_dir, ITEMS_FILE)
    inter_path = os.path.join(data_dir, INTERACTIONS_FILE)
    h = hashlib.sha256(b"ingest-v1")
    for p in (items_path, inter_path, os.path.join(data_dir, SPEC_FILE)):
        if os.path.exists(p):
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
    canon = os.path.join(out_root, h.hexdigest()[:16])
    if os.path.exists(os.path.join(canon, REPORT_FILE)):
        with open(os.path.join(canon, REPORT_FILE)) as f:
            return canon, json.load(f)

    items = read_contract_csv(items_path, ITEM_REQUIRED)
    inter = read_contract_csv(inter_path, INTERACTION_REQUIRED)
    spec = resolve_spec(data_dir, items)
    counts: dict[str, int] = {}

    # --- items: ids, duplicates, per-kind cell typing -------------------------------------------
    items = items.apply(lambda c: c.str.strip())
    n_items_raw = len(items)
    missing_id = items["item_id"].str.len() == 0
    counts["items.dropped.missing_item_id"] = int(missing_id.sum())
    items = items[~missing_id]
    dup = items["item_id"].duplicated(keep="first")
    counts["items.dropped.duplicate_item_id"] = int(dup.sum())
    items = items[~dup].copy()
    for col, f in spec["features"].items():
        s = items[col]
        counts[f"items.{col}.missing"] = _blank_counts(s)
        if f["kind"] == "numeric":
            num = pd.to_numeric(s, errors="coerce")
            bad = (s.str.len() > 0) & (num.isna() | ~np.isfinite(num))
            counts[f"items.{col}.invalid_numeric_blanked"] = int(bad.sum())
            # repr() keeps a decimal point, so ExampleGen infers FLOAT for the column whatever the values.
            items[col] = [repr(float(x)) if not b and x == x else "" for x, b in zip(num, bad)]
        elif f["kind"] == "dense_vector":
            sep, dim = f.get("separator", " "), f["dim"]
            parts = s.str.split(sep)
            vals = parts.apply(lambda p: pd.to_numeric(pd.Series(p), errors="coerce").to_numpy())
            good = vals.apply(lambda a: len(a) == dim and np.isfinite(a).all())
            bad = (s.str.len() > 0) & ~good
            counts[f"items.{col}.invalid_vector_blanked"] = int(bad.sum())
            items.loc[bad, col] = ""

    # --- interactions: ids, known items, timestamps, weights -----------------------------------
    inter = inter.apply(lambda c: c.str.strip())
    n_inter_raw = len(inter)
    if "weight" not in inter.columns:
        inter["weight"] = "1.0"
    extra = [c for c in inter.columns if c not in INTERACTION_COLUMNS]
    missing_id = (inter["context_id"].str.len() == 0) | (inter["item_id"].str.len() == 0)
    counts["interactions.dropped.missing_id"] = int(missing_id.sum())
    unknown = ~missing_id & ~inter["item_id"].isin(items["item_id"])
    counts["interactions.dropped.unknown_item_id"] = int(unknown.sum())
    ts = parse_timestamps(inter["timestamp"])
    bad_ts = ~missing_id & ~unknown & ts.isna()
    counts["interactions.dropped.malformed_timestamp"] = int(bad_ts.sum())
    w_blank = inter["weight"].str.len() == 0
    w = pd.to_numeric(inter["weight"], errors="coerce").where(~w_blank, 1.0)
    bad_w = ~missing_id & ~unknown & ~bad_ts & (w.isna() | ~np.isfinite(w) | (w <= 0))
    counts["interactions.dropped.invalid_weight"] = int(bad_w.sum())
    counts["interactions.weight_defaulted_to_1"] = int((w_blank & ~missing_id & ~unknown & ~bad_ts).sum())
    keep = ~(missing_id | unknown | bad_ts | bad_w)
    inter = pd.DataFrame({"context_id": inter["context_id"][keep], "item_id": inter["item_id"][keep],
                          "timestamp": ts[keep].astype("int64"), "weight": w[keep].astype("float64")})
    if len(inter) == 0:
        raise InputError(f"{inter_path}: no usable interactions left after dropping bad rows: {counts}")

    item_id_type = _id_type(items["item_id"])
    context_id_type = _id_type(inter["context_id"])
    os.makedirs(os.path.join(canon, "items"), exist_ok=True)
    os.makedirs(os.path.join(canon, "interactions"), exist_ok=True)
    items.to_csv(os.path.join(canon, "items", ITEMS_FILE), index=False)
    # '%.6f' keeps a decimal point (4.0 -> "4.000000") so ExampleGen infers the weight column as FLOAT.
    inter.assign(weight=np.char.mod("%.6f", inter["weight"].to_numpy())).to_csv(
        os.path.join(canon, "interactions", INTERACTIONS_FILE), index=False)

    report = {
        "data_dir": os.path.abspath(data_dir),
        "items": {"rows_read": n_items_raw, "rows_kept": int(len(items)), "id_type": item_id_type},
        "interactions": {"rows_read": n_inter_raw, "rows_kept": int(len(inter)),
                         "context_id_type": context_id_type, "ignored_columns": extra},
        "counts": {k: v for k, v in counts.items()},
        "spec": spec,
    }
    with open(os.path.join(canon, SPEC_FILE), "w") as f:
        yaml.safe_dump({k: spec[k] for k in ("name", "features")}, f, sort_keys=False)
    tmp = os.path.join(canon, REPORT_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, os.path.join(canon, REPORT_FILE))   # the report marks the directory complete
    return canon, report


def problems(report: dict) -> dict[str, int]:
    """The non-zero counts of a report: what a user must be told about."""
    return {k: v for k, v in report["counts"].items() if v}
