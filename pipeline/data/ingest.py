"""Ingest: check the input contract, type every cell, count every bad one, write canonical CSVs.

Why this stage exists before CsvExampleGen: CsvExampleGen infers each column's type from its values, so a single
malformed timestamp turns the whole column into strings, and a single 'abc' in a numeric feature makes Transform
fail to parse the table. Here each cell is checked against the contract (`dataset.yaml`, or kinds inferred and
reported) with vectorised pandas; bad rows are dropped and bad cells blanked, each *counted by reason*; the canonical
CSVs then always infer to the declared types, and the counts go into the run's data report. Cross-row problems that
need the whole graph (duplicate interactions, the temporal split) are GraphGen's.

Besides the canonical CSVs (the human-readable copy), each table is written as a TFX Examples artifact payload in
Parquet (`examples/<table>/Split-<table>/data_parquet-*.parquet`, every column a one-value list as in a
tf.Example, an empty list for a missing cell) which the pipeline imports as-is: StatisticsGen reads it through
tfx-bsl's ParquetTFXIO and GraphGen as Arrow batches. CsvExampleGen turned CSV rows into tf.Examples at ~7k
rows/s on the DirectRunner (24 min at 10M interactions); this is pyarrow work of seconds (BUILD_NOTES.md, scale).
The interactions, the large table, are typed with pyarrow.compute; pandas only sees the rare malformed cells.

Input contract (README, "Data contract"):
- items.csv:         item_id + feature columns
- interactions.csv:  context_id, item_id, timestamp (epoch seconds or ISO-8601), optional weight (> 0, default 1)
- dataset.yaml:      optional; `features: {column: {kind: numeric|categorical|text|dense_vector, separator, dim}}`
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pandas as pd
import yaml
import csv
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ITEMS_FILE = "items.csv"
INTERACTIONS_FILE = "interactions.csv"
SPEC_FILE = "dataset.yaml"
REPORT_FILE = "ingest_report.json"
EXAMPLES_DIR = "examples"  # <canon>/examples/<table>/Split-<table>/data_parquet-*.parquet
EXAMPLES_FILE_PREFIX = "data_parquet"
ROWS_PER_FILE = 1_000_000
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


def read_contract_table(path: str, required: tuple[str, ...]):
    """read_contract_csv with pyarrow (every cell a string, whitespace-trimmed): the large-table reader."""

    if not os.path.exists(path):
        raise InputError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: file is empty (expected a header row and data rows)")
    with open(path, newline="") as f:
        header = [c.strip() for c in next(csv.reader(f), [])]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path}: missing required column(s) {missing}; found {header}")
    if len(header) != len(set(header)):
        raise InputError(f"{path}: duplicate column names {header}")
    try:
        t = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot be parsed as CSV: {e}") from e
    if t.num_rows == 0:
        raise InputError(f"{path}: has a header but no data rows")
    for c in header:  # Arrow ends an unterminated quoted value at the line end and keeps the newline in it
        if pc.any(pc.match_substring(t.column(c), "\n")).as_py():
            raise InputError(f"{path}: cannot be parsed as CSV: unterminated quoted value in column {c!r}")
    return pa.table({c: pc.utf8_trim_whitespace(t.column(c).combine_chunks()) for c in header})


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
        if lens.min() >= 2 and lens.nunique() == 1 and pd.to_numeric(parts.explode(), errors="coerce").notna().all():
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


def _all_match(arr, pattern: str) -> bool:

    return bool(pc.all(pc.match_substring_regex(arr, pattern)).as_py() is not False)


_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def _parse_column(arr, pattern: str, arrow_type, slow):
    """Typed values of a string column (NA where `slow` says so): the cells matching `pattern` are cast by
    Arrow, the others (rare: blanks, ISO dates, 'inf', junk) go through the pandas `slow` parser."""

    fast = pc.match_substring_regex(arr, pattern).to_numpy(zero_copy_only=False)
    out = pd.Series(pd.NA, index=pd.RangeIndex(len(arr)), dtype="Int64" if arrow_type == "int64" else "Float64")
    if fast.any():
        try:
            out[fast] = pc.cast(arr.filter(pa.array(fast)), arrow_type).to_numpy()
        except pa.ArrowInvalid:  # e.g. an integer beyond int64: let pandas decide, cell by cell
            fast[:] = False
    if (~fast).any():
        rest = pd.Series(arr.filter(pa.array(~fast)).to_numpy(zero_copy_only=False), index=np.flatnonzero(~fast))
        out[~fast] = slow(rest).astype(out.dtype)
    return out


def _feature_lists(arr):
    """One value per row as list<T>, a null as an empty list: the layout of a tf.Example feature, which TFDV and
    tfx-bsl's ParquetTFXIO read."""

    valid = np.ones(len(arr), bool) if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(arr) + 1, np.int32)
    np.cumsum(valid, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), arr.drop_null())


def write_examples(table, out_dir: str, split: str, rows_per_file: int = ROWS_PER_FILE) -> str:
    """Writes an Arrow table (one value per cell, nulls = missing) as the Parquet payload of an Examples artifact
    with one split; returns the artifact directory."""

    split_dir = os.path.join(out_dir, f"Split-{split}")
    os.makedirs(split_dir, exist_ok=True)
    t = pa.table({c: _feature_lists(table.column(c).combine_chunks()) for c in table.column_names})
    n = max(1, -(-t.num_rows // rows_per_file))
    for k in range(n):
        pq.write_table(
            t.slice(k * rows_per_file, rows_per_file),
            os.path.join(split_dir, f"{EXAMPLES_FILE_PREFIX}-{k:05d}-of-{n:05d}.parquet"),
        )
    return out_dir


def _content_dir(data_dir: str, out_root: str) -> str:
    """out_root/<sha256 of the input files>: an unchanged dataset maps to the same directory (a TFX cache hit)."""
    h = hashlib.sha256(b"ingest-v2")
    for name in (ITEMS_FILE, INTERACTIONS_FILE, SPEC_FILE):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
    return os.path.join(out_root, h.hexdigest()[:16])


def canonicalise(data_dir: str, out_root: str) -> tuple[str, dict]:
    """Checks and types the dataset in `data_dir`, writes canonical CSVs under `out_root/<content hash>/`.

    Returns (canonical_dir, report). The directory is keyed by the inputs' content so that an unchanged dataset
    maps to the same ExampleGen input (TFX cache hit) and a changed one to a new one.
    Raises InputError for a file that cannot be used at all.
    """
    items_path = os.path.join(data_dir, ITEMS_FILE)
    inter_path = os.path.join(data_dir, INTERACTIONS_FILE)
    canon = _content_dir(data_dir, out_root)
    if os.path.exists(os.path.join(canon, REPORT_FILE)):
        with open(os.path.join(canon, REPORT_FILE)) as f:
            return canon, json.load(f)

    items = read_contract_csv(items_path, ITEM_REQUIRED)
    inter = read_contract_table(inter_path, INTERACTION_REQUIRED)
    spec = resolve_spec(data_dir, items)
    counts: dict[str, int] = {}
    n_items_raw, n_inter_raw = len(items), inter.num_rows
    extra = [c for c in inter.column_names if c not in INTERACTION_COLUMNS]
    items = _clean_items(items, spec, counts)
    inter = _clean_interactions(inter, items["item_id"].to_numpy(), counts, inter_path)

    item_id_type = _id_type(items["item_id"])
    context_id_type = "int" if _all_match(inter.column("context_id"), _INT_RE) else "string"
    os.makedirs(os.path.join(canon, "items"), exist_ok=True)
    os.makedirs(os.path.join(canon, "interactions"), exist_ok=True)
    items.to_csv(os.path.join(canon, "items", ITEMS_FILE), index=False)
    pacsv.write_csv(inter, os.path.join(canon, "interactions", INTERACTIONS_FILE))
    write_examples(_typed_items(items, spec, item_id_type), os.path.join(canon, EXAMPLES_DIR, "items"), "items")
    write_examples(
        _typed_interactions(inter, item_id_type, context_id_type),
        os.path.join(canon, EXAMPLES_DIR, "interactions"),
        "interactions",
    )
    report = {
        "data_dir": os.path.abspath(data_dir),
        "items": {"rows_read": n_items_raw, "rows_kept": int(len(items)), "id_type": item_id_type},
        "interactions": {
            "rows_read": n_inter_raw,
            "rows_kept": int(len(inter)),
            "context_id_type": context_id_type,
            "ignored_columns": extra,
        },
        "counts": {k: v for k, v in counts.items()},
        "spec": spec,
    }
    with open(os.path.join(canon, SPEC_FILE), "w") as f:
        yaml.safe_dump({k: spec[k] for k in ("name", "features")}, f, sort_keys=False)
    tmp = os.path.join(canon, REPORT_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, os.path.join(canon, REPORT_FILE))  # the report marks the directory complete
    return canon, report


def _clean_items(items: pd.DataFrame, spec: dict, counts: dict) -> pd.DataFrame:
    """Items: ids, duplicates, per-kind cell typing; every drop and blank counted into `counts`."""
    items = items.apply(lambda c: c.str.strip())
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
            parts = s.str.split(sep, regex=False)
            vals = pd.to_numeric(parts.explode(), errors="coerce").astype(np.float64)  # index: the item's row
            finite = pd.Series(np.isfinite(vals.to_numpy()), index=vals.index).groupby(level=0).all()
            good = (parts.str.len() == dim) & finite.reindex(s.index, fill_value=False)
            bad = (s.str.len() > 0) & ~good
            counts[f"items.{col}.invalid_vector_blanked"] = int(bad.sum())
            items.loc[bad, col] = ""
    return items


def _np_bool(a) -> np.ndarray:
    return a.to_numpy(zero_copy_only=False)


def _clean_interactions(inter, item_ids: np.ndarray, counts: dict, inter_path: str):
    """Interactions (pyarrow: the table with 10M+ rows): ids, known items, timestamps, weights; drops counted."""
    cols = inter.column_names
    ctx_s, item_s, ts_s = (inter.column(c).combine_chunks() for c in ("context_id", "item_id", "timestamp"))
    w_s = (
        inter.column("weight").combine_chunks()
        if "weight" in cols
        else pa.array(["1.0"]).take(np.zeros(inter.num_rows, np.int64))
    )
    missing_id = _np_bool(pc.or_(pc.equal(pc.utf8_length(ctx_s), 0), pc.equal(pc.utf8_length(item_s), 0)))
    counts["interactions.dropped.missing_id"] = int(missing_id.sum())
    known = _np_bool(pc.is_in(item_s, value_set=pa.array(item_ids, pa.string())))
    unknown = ~missing_id & ~known
    counts["interactions.dropped.unknown_item_id"] = int(unknown.sum())
    ts = _parse_column(ts_s, _INT_RE, "int64", parse_timestamps)
    bad_ts = ~missing_id & ~unknown & ts.isna().to_numpy()
    counts["interactions.dropped.malformed_timestamp"] = int(bad_ts.sum())
    w_blank = _np_bool(pc.equal(pc.utf8_length(w_s), 0))
    w = _parse_column(w_s, _FLOAT_RE, "float64", lambda x: pd.to_numeric(x, errors="coerce"))
    w[w_blank] = 1.0
    wv = w.to_numpy(dtype=np.float64, na_value=np.nan)
    bad_w = ~missing_id & ~unknown & ~bad_ts & (np.isnan(wv) | ~np.isfinite(wv) | (wv <= 0))
    counts["interactions.dropped.invalid_weight"] = int(bad_w.sum())
    counts["interactions.weight_defaulted_to_1"] = int((w_blank & ~missing_id & ~unknown & ~bad_ts).sum())
    keep = ~(missing_id | unknown | bad_ts | bad_w)
    if not keep.any():
        raise InputError(f"{inter_path}: no usable interactions left after dropping bad rows: {counts}")
    keep_a = pa.array(keep)
    return pa.table(
        {
            "context_id": ctx_s.filter(keep_a),
            "item_id": item_s.filter(keep_a),
            "timestamp": pa.array(ts.to_numpy(dtype=np.int64, na_value=0)[keep]),
            "weight": pa.array(wv[keep]),
        }
    )


def _typed_items(items: pd.DataFrame, spec: dict, id_type: str):
    """The canonical items as Arrow columns typed as CsvExampleGen inferred them from the canonical CSV: int ids
    INT, numeric features FLOAT, everything else BYTES; a blank cell is missing (null)."""

    cols = {}
    for c in items.columns:
        v = items[c]
        if c == "item_id" and id_type == "int":
            cols[c] = pa.array(v.astype(np.int64).to_numpy())
        elif spec["features"].get(c, {}).get("kind") == "numeric":
            cols[c] = pa.array(pd.to_numeric(v.where(v.str.len() > 0)).to_numpy(np.float64), from_pandas=True)
        else:
            cols[c] = pa.array(v.to_numpy(), pa.string(), mask=(v.str.len() == 0).to_numpy())
    return pa.table(cols)


def _typed_interactions(inter, item_id_type: str, context_id_type: str):

    def ids(col, kind):
        return pc.cast(col, pa.int64()) if kind == "int" else col

    return pa.table(
        {
            "context_id": ids(inter.column("context_id"), context_id_type),
            "item_id": ids(inter.column("item_id"), item_id_type),
            "timestamp": inter.column("timestamp"),
            "weight": inter.column("weight"),
        }
    )


def problems(report: dict) -> dict[str, int]:
    """The non-zero counts of a report: what a user must be told about."""
    return {k: v for k, v in report["counts"].items() if v}
