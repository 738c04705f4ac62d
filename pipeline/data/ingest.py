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
tfx-bsl's ParquetTFXIO and GraphGen as Arrow batches: CsvExampleGen would turn every CSV row into a tf.Example
one at a time on the DirectRunner, where this is columnar pyarrow work (docs/DESIGN.md).
The interactions, the large table, are typed with pyarrow.compute; pandas only sees the rare malformed cells.

Input contract (README, "Data contract"):
- items.csv:         item_id + feature columns
- interactions.csv:  context_id, item_id, timestamp (epoch seconds or ISO-8601), optional weight (> 0, default 1)
- dataset.yaml:      optional; `features: {column: {kind: numeric|categorical|text|dense_vector, separator, dim}}`
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import yaml

from pipeline.configs import INGEST
from schema import files

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


def _short(text, limit: int = 300) -> str:
    """An error message's quoted input, cut: a parser's message may quote a whole (possibly megabyte) row."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_file(path: str) -> None:
    """InputError unless `path` is a readable, non-empty regular file."""
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found")
    if not os.path.isfile(path):
        raise InputError(f"{path}: is not a regular file (a directory?)")
    try:
        with open(path, "rb") as f:
            empty = f.read(1) == b""
    except OSError as e:
        raise InputError(f"{path}: cannot be read: {e.strerror or e}") from None
    if empty:
        raise InputError(f"{path}: file is empty (expected a header row and data rows)")


def utf8_error(path: str) -> str:
    """Where `path` first stops being UTF-8, for the error message (only called once a reader has failed).
    Line by line so that the line number is exact and a huge file is not read whole."""
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return (
                    f"{path}: line {lineno} (byte offset {offset + e.start}) is not UTF-8 "
                    f"(byte 0x{raw[e.start]:02x}: {e.reason}); save the file as UTF-8, e.g. "
                    f"`iconv -f latin1 -t utf-8 {os.path.basename(path)}`"
                )
            offset += len(raw)
    return f"{path}: is not UTF-8"


def read_header(path: str, required: tuple[str, ...]) -> list[str]:
    """The header row's column names (whitespace-trimmed, a UTF-8 byte-order mark dropped), checked: UTF-8,
    parseable, no empty or duplicate name, the required columns present."""
    check_file(path)
    with open(path, "rb") as f:
        raw = f.readline()
    try:
        line = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(utf8_error(path)) from None
    try:
        header = [c.strip() for c in next(csv.reader([line], strict=True), [])]
    except csv.Error as e:
        raise InputError(f"{path}: the header row cannot be parsed as CSV: {e}") from None
    empty = [i + 1 for i, c in enumerate(header) if not c]
    if empty:
        raise InputError(f"{path}: header column(s) {empty} (counting from 1) have no name; found {_short(header)}")
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise InputError(f"{path}: duplicate column names {dup} in the header")
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path}: missing required column(s) {missing}; found {_short(header)}")
    return header


def read_contract_csv(path: str, required: tuple[str, ...]) -> pd.DataFrame:
    """Reads one contract CSV with every cell as a string (typing is done per column, with counts)."""
    header = read_header(path, required)
    try:
        with warnings.catch_warnings():
            # A first data row longer than the header would silently become the index (pandas), or lose its
            # extra fields (index_col=False): an error instead.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skipinitialspace=True,
                header=0,
                names=header,
                index_col=False,
                encoding="utf-8-sig",
            )
    except UnicodeDecodeError:
        raise InputError(utf8_error(path)) from None
    except pd.errors.ParserWarning:
        raise InputError(f"{path}: line 2 has more fields than the header ({len(header)} columns)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as e:
        raise InputError(f"{path}: cannot be parsed as CSV: {_short(e)}") from None
    if len(df) == 0:
        raise InputError(f"{path}: has a header but no data rows")
    return df


def _bad_row(path: str, num_columns: int) -> str:
    """' (line N)' of the first row whose field count is not `num_columns`, for the message: Arrow's parse error
    quotes the row but not its line. Only called once Arrow has failed (a Python pass over the file)."""
    line = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                line = reader.line_num
                if line > 1 and row and len(row) != num_columns:
                    return f" (line {line}: {len(row)} fields, the header has {num_columns})"
    except (csv.Error, UnicodeDecodeError, OSError) as e:
        return f" (near line {line + 1}: {e})"
    return ""


def read_contract_table(path: str, required: tuple[str, ...]):
    """read_contract_csv with pyarrow (every cell a string, whitespace-trimmed): the large-table reader."""

    header = read_header(path, required)
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
        if isinstance(e, UnicodeDecodeError) or "UTF8" in str(e):
            raise InputError(utf8_error(path)) from None
        raise InputError(f"{path}: cannot be parsed as CSV{_bad_row(path, len(header))}: {_short(e)}") from None
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


SPEC_KEYS = ("name", "features", "limits")
FEATURE_KEYS = {"kind": str, "separator": str, "dim": int}
_TYPE_NAMES = {str: "a string", int: "an integer"}


def load_dataset_yaml(data_dir: str) -> dict:
    """dataset.yaml as a mapping ({} when absent); InputError for a file that is not a YAML mapping of the
    known keys."""
    path = os.path.join(data_dir, SPEC_FILE)
    if not os.path.lexists(path):
        return {}
    check_file(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            loaded = yaml.safe_load(f)
    except UnicodeDecodeError:
        raise InputError(utf8_error(path)) from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {_short(e, 600)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict) or not isinstance(loaded.get("features") or {}, dict):
        raise InputError(f"{path}: expected a mapping with a 'features' mapping (column: kind)")
    unknown = sorted(str(k) for k in loaded if k not in SPEC_KEYS)
    if unknown:
        raise InputError(f"{path}: unknown top-level key(s) {unknown}; allowed: {list(SPEC_KEYS)}")
    return loaded


def _feature_spec(path: str, col: str, f) -> dict:
    """One dataset.yaml feature entry, validated: `{kind: ..., separator: ..., dim: ...}` or the shorthand
    `column: kind`."""
    if isinstance(f, str):
        f = {"kind": f}
    if not isinstance(f, dict):
        raise InputError(
            f"{path}: feature {col!r} is {f!r}; expected a kind ({', '.join(KINDS)}), e.g. '{col}: text', "
            f"or a mapping, e.g. '{col}: {{kind: categorical, separator: \"|\"}}'"
        )
    f = {str(k): v for k, v in f.items()}
    unknown = sorted(set(f) - set(FEATURE_KEYS))
    if unknown:
        raise InputError(f"{path}: feature {col!r} has unknown key(s) {unknown}; allowed: {list(FEATURE_KEYS)}")
    if f.get("kind") not in KINDS:
        raise InputError(f"{path}: feature {col!r} has kind {f.get('kind')!r}; expected one of {KINDS}")
    for key, typ in FEATURE_KEYS.items():
        v = f.get(key)
        if v is not None and (not isinstance(v, typ) or isinstance(v, bool)):
            raise InputError(f"{path}: feature {col!r}: {key} is {v!r}; expected {_TYPE_NAMES[typ]}")
    if f.get("separator") == "":
        raise InputError(f"{path}: feature {col!r}: separator is empty; leave it out for single values")
    if f["kind"] == "dense_vector" and not (isinstance(f.get("dim"), int) and f["dim"] >= 1):
        raise InputError(f"{path}: dense_vector feature {col!r} needs an integer 'dim' >= 1")
    return f


def resolve_spec(data_dir: str, items: pd.DataFrame, loaded: dict | None = None) -> dict:
    """The dataset spec: dataset.yaml when present (validated), else inferred. Every item column is covered."""
    path = os.path.join(data_dir, SPEC_FILE)
    loaded = load_dataset_yaml(data_dir) if loaded is None else loaded
    name = loaded.get("name", os.path.basename(os.path.normpath(data_dir)))
    if not isinstance(name, (str, int, float)) or isinstance(name, bool):
        raise InputError(f"{path}: name is {name!r}; expected a string")
    spec = {"name": str(name), "features": {}}
    given = {str(k): v for k, v in (loaded.get("features") or {}).items()}
    unknown_cols = sorted(set(given) - set(items.columns))
    if unknown_cols:
        raise InputError(f"{path}: features {unknown_cols} are not columns of items.csv")
    inferred = []
    for col in items.columns:
        if col == "item_id":
            continue
        if col in given:
            f = _feature_spec(path, col, given[col])
        else:
            f = infer_kind(items[col])
            inferred.append(col)
        spec["features"][col] = f
    spec["inferred"] = inferred
    return spec


RESERVED_COLUMNS = ("node_id", "train_degree")  # GraphGen adds them to every item row


def check_feature_names(items_path: str, spec: dict, limits: dict) -> None:
    """InputError when two item columns would make the same model feature (e.g. a numeric 'year' makes 'year' and
    'year_missing': a column 'year_missing' next to it would clash inside Transform), a column takes a name the
    pipeline adds, or a dense_vector's dim cannot fit in one cell (each value takes at least 2 bytes, '0 ': a
    larger dim would only blank every cell, and make Transform impute vectors of that width for every item)."""
    from schema.build import transformed_features

    base = set(transformed_features({"features": {}}))  # node_id, log_degree
    taken = sorted(c for c in set(RESERVED_COLUMNS) | base if c in spec["features"])
    if taken:
        raise InputError(f"{items_path}: column(s) {taken} are names the pipeline adds; rename them")
    made: dict[str, str] = {}
    for col, f in spec["features"].items():
        if f["kind"] == "dense_vector" and f["dim"] > (limits["max_cell_length"] + 1) // 2:
            raise InputError(
                f"{items_path}: dense_vector column {col!r} has dim {f['dim']}, more values than a cell of "
                f"max_cell_length={limits['max_cell_length']} bytes can hold"
            )
        for name in set(transformed_features({"features": {col: f}})) - base:
            if name in made:
                raise InputError(
                    f"{items_path}: columns {made[name]!r} and {col!r} both make the model feature {name!r} "
                    f"({spec['features'][made[name]]['kind']} and {f['kind']}); rename one"
                )
            made[name] = col


def resolve_limits(data_dir: str, loaded: dict, overrides: dict | None = None) -> dict:
    """The cell-size limits: pipeline/configs.INGEST, then dataset.yaml's `limits:`, then `overrides` (CLI)."""
    path = os.path.join(data_dir, SPEC_FILE)
    limits = dataclasses.asdict(INGEST)
    given = loaded.get("limits") or {}
    if not isinstance(given, dict):
        raise InputError(f"{path}: limits is {given!r}; expected a mapping, e.g. 'limits: {{max_id_length: 4096}}'")
    for source, values in ((path, given), ("the command line", overrides or {})):
        for k, v in values.items():
            if k not in limits:
                raise InputError(f"{source}: unknown limit {k!r}; allowed: {sorted(limits)}")
            if v is None:
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InputError(f"{source}: limit {k} is {v!r}; expected an integer >= 1 (bytes)")
            limits[k] = v
    return limits


def _blank_counts(s: pd.Series) -> int:
    return int((s.str.len() == 0).sum())


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT64_DIGITS = 18  # an integer of at most 18 digits always fits int64; longer ones are checked exactly


def _exact_ints(s: pd.Series) -> pd.Series:
    """Integer strings -> Int64, exactly (Python ints, not floats); NA beyond int64. For the rare long cells only:
    more than 20 characters can never fit, and are not parsed at all (a megabyte of digits would take seconds)."""
    vals = [int(x) if len(x) <= 20 else None for x in s]
    ok = [v is not None and INT64_MIN <= v <= INT64_MAX for v in vals]
    return pd.Series([v if o else pd.NA for v, o in zip(vals, ok)], index=s.index, dtype="Int64")


def parse_timestamps(s: pd.Series) -> pd.Series:
    """Epoch seconds (integers, or floats with a zero fraction) or ISO-8601 datetimes -> Int64 (NA when malformed
    or outside int64: a value such as 1e30 or 99999999999999999999 must not wrap around to a valid-looking
    negative time that sorts first in the temporal split)."""
    out = pd.Series(pd.NA, index=s.index, dtype="Int64")
    is_int = s.str.match(_INT_RE)
    if is_int.any():
        out[is_int] = _exact_ints(s[is_int])
    other = s[~is_int]
    num = pd.to_numeric(other, errors="coerce").astype("float64")
    # float(2**63) is exact; every float below it converts to int64 without overflow
    ok_num = np.isfinite(num) & (num == np.floor(num.fillna(0))) & (num >= -(2.0**63)) & (num < 2.0**63)
    out[ok_num[ok_num].index] = num[ok_num].astype("int64")
    rest = num.isna() & (other.str.len() > 0)
    if rest.any():
        dt = pd.to_datetime(other[rest], errors="coerce", utc=True)
        good = dt.notna()
        out.loc[dt.index[good]] = (dt[good].astype("int64") // 10**9).astype("int64")
    return out


def _int_ids(arr) -> bool:
    """Whether every id of a string column is an integer in int64 (then the column is typed INT): an integer id
    beyond int64 makes the whole column string-typed, as any other non-integer id does."""
    arr = arr if isinstance(arr, (pa.Array, pa.ChunkedArray)) else pa.array(arr, pa.string())
    if not _all_match(arr, _INT_RE):
        return False
    long = arr.filter(pc.greater(pc.utf8_length(arr), _INT64_DIGITS))
    return bool(_exact_ints(pd.Series(long.to_pylist(), dtype=object)).notna().all())


def _id_type(*cols: pd.Series) -> str:
    return "int" if all(_int_ids(c.to_numpy(dtype=object)) for c in cols) else "string"


def _all_match(arr, pattern: str) -> bool:

    return bool(pc.all(pc.match_substring_regex(arr, pattern)).as_py() is not False)


_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
F32_MAX = float(np.finfo(np.float32).max)  # numeric features, vectors and weights become float32 downstream


def _parse_column(arr, pattern: str, arrow_type, slow):
    """Typed values of a string column (NA where `slow` says so): the cells matching `pattern` are cast by
    Arrow, the others (rare: blanks, ISO dates, 'inf', junk) go through the pandas `slow` parser."""

    fast = pc.match_substring_regex(arr, pattern).to_numpy(zero_copy_only=False)
    if arrow_type == "int64":  # longer integers may not fit int64: the exact slow path decides
        fast &= pc.less_equal(pc.utf8_length(arr), _INT64_DIGITS).to_numpy(zero_copy_only=False)
    out = pd.Series(pd.NA, index=pd.RangeIndex(len(arr)), dtype="Int64" if arrow_type == "int64" else "Float64")
    if fast.any():
        try:
            out[fast] = pc.cast(arr.filter(pa.array(fast)), arrow_type).to_numpy()
        except pa.ArrowInvalid:  # e.g. a float Arrow rejects: let pandas decide, cell by cell
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

    split_dir = files.join(out_dir, f"Split-{split}")
    files.makedirs(split_dir)
    t = pa.table({c: _feature_lists(table.column(c).combine_chunks()) for c in table.column_names})
    n = max(1, -(-t.num_rows // rows_per_file))
    for k in range(n):
        files.write_parquet(
            t.slice(k * rows_per_file, rows_per_file),
            files.join(split_dir, f"{EXAMPLES_FILE_PREFIX}-{k:05d}-of-{n:05d}.parquet"),
        )
    return out_dir


def _content_dir(data_dir: str, out_root: str, limits: dict) -> str:
    """out_root/<sha256 of the input files and limits>: an unchanged dataset maps to the same directory (a TFX
    cache hit)."""
    h = hashlib.sha256(b"ingest-v3" + json.dumps(limits, sort_keys=True).encode())
    for name in (ITEMS_FILE, INTERACTIONS_FILE, SPEC_FILE):
        p = os.path.join(data_dir, name)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
    return os.path.join(out_root, h.hexdigest()[:16])


def canonicalise(data_dir: str, out_root: str, limits: dict | None = None) -> tuple[str, dict]:
    """Checks and types the dataset in `data_dir`, writes canonical CSVs under `out_root/<content hash>/`.

    Returns (canonical_dir, report). The directory is keyed by the inputs' content so that an unchanged dataset
    maps to the same ExampleGen input (TFX cache hit) and a changed one to a new one.
    `limits` overrides the cell-size limits (configs.IngestLimits fields; dataset.yaml's `limits:` otherwise).
    Raises InputError for a file that cannot be used at all.
    """
    items_path = os.path.join(data_dir, ITEMS_FILE)
    inter_path = os.path.join(data_dir, INTERACTIONS_FILE)
    check_file(items_path)
    check_file(inter_path)
    loaded = load_dataset_yaml(data_dir)
    limits = resolve_limits(data_dir, loaded, limits)
    canon = _content_dir(data_dir, out_root, limits)
    if os.path.exists(os.path.join(canon, REPORT_FILE)):
        with open(os.path.join(canon, REPORT_FILE)) as f:
            return canon, json.load(f)

    items = read_contract_csv(items_path, ITEM_REQUIRED)
    inter = read_contract_table(inter_path, INTERACTION_REQUIRED)
    spec = resolve_spec(data_dir, items, loaded)
    check_feature_names(items_path, spec, limits)
    counts: dict[str, int] = {}
    n_items_raw, n_inter_raw = len(items), inter.num_rows
    extra = [c for c in inter.column_names if c not in INTERACTION_COLUMNS]
    items = _clean_items(items, spec, counts, limits)
    if len(items) == 0:
        raise InputError(f"{items_path}: no usable items left after dropping bad rows: {problems({'counts': counts})}")
    inter = _clean_interactions(inter, items["item_id"].to_numpy(), counts, inter_path, limits)

    item_id_type = _id_type(items["item_id"])
    context_id_type = "int" if _int_ids(inter.column("context_id")) else "string"
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
        "limits": limits,
        "spec": spec,
    }
    with open(os.path.join(canon, SPEC_FILE), "w") as f:
        yaml.safe_dump({k: spec[k] for k in ("name", "features")}, f, sort_keys=False)
    tmp = os.path.join(canon, REPORT_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, os.path.join(canon, REPORT_FILE))  # the report marks the directory complete
    return canon, report


_CTRL_RE = r"[\x00-\x1f\x7f]"  # C0 control characters and DEL: never part of a real id, often a broken file


def _nbytes(values) -> np.ndarray:
    """UTF-8 length in bytes of each string (the limits are on bytes: what a cell costs in memory)."""
    arr = values if isinstance(values, pa.Array) else pa.array(np.asarray(values, dtype=object), pa.string())
    return pc.binary_length(arr).to_numpy(zero_copy_only=False)


def _clean_items(items: pd.DataFrame, spec: dict, counts: dict, limits: dict) -> pd.DataFrame:
    """Items: ids, duplicates, per-kind cell typing; every drop and blank counted into `counts`."""
    items = items.apply(lambda c: c.str.strip())
    ids = items["item_id"]
    missing_id = ids.str.len() == 0
    too_long = ~missing_id & (_nbytes(ids) > limits["max_id_length"])
    control = ~missing_id & ~too_long & ids.str.contains(_CTRL_RE, regex=True)
    counts["items.dropped.missing_item_id"] = int(missing_id.sum())
    counts["items.dropped.id_too_long"] = int(too_long.sum())
    counts["items.dropped.id_control_character"] = int(control.sum())
    items = items[~(missing_id | too_long | control)]
    dup = items["item_id"].duplicated(keep="first")
    counts["items.dropped.duplicate_item_id"] = int(dup.sum())
    items = items[~dup].copy()
    for col, f in spec["features"].items():
        s = items[col]
        counts[f"items.{col}.missing"] = _blank_counts(s)
        long = _nbytes(s) > limits["max_cell_length"]
        counts[f"items.{col}.too_long_blanked"] = int(long.sum())
        if long.any():
            s = s.where(~long, "")
            items[col] = s
        if f["kind"] == "numeric":
            num = pd.to_numeric(s, errors="coerce").astype(np.float64)
            bad = (s.str.len() > 0) & (num.isna() | ~(num.abs() <= F32_MAX))
            counts[f"items.{col}.invalid_numeric_blanked"] = int(bad.sum())
            # repr() keeps a decimal point, so ExampleGen infers FLOAT for the column whatever the values.
            items[col] = [repr(float(x)) if not b and x == x else "" for x, b in zip(num, bad)]
        elif f["kind"] == "dense_vector":
            sep, dim = f.get("separator", " "), f["dim"]
            parts = s.str.split(sep, regex=False)
            vals = pd.to_numeric(parts.explode(), errors="coerce").astype(np.float64)  # index: the item's row
            ok = np.abs(vals.to_numpy()) <= F32_MAX  # False for NaN and inf too
            finite = pd.Series(ok, index=vals.index).groupby(level=0).all()
            good = (parts.str.len() == dim) & finite.reindex(s.index, fill_value=False)
            bad = (s.str.len() > 0) & ~good
            counts[f"items.{col}.invalid_vector_blanked"] = int(bad.sum())
            items.loc[bad, col] = ""
    return items


def _np_bool(a) -> np.ndarray:
    return a.to_numpy(zero_copy_only=False)


def _bad_ids(ctx_s, item_s, counts: dict, limits: dict) -> np.ndarray:
    """Rows with a missing, too long or control-character context or item id (counted in that order)."""
    missing = _np_bool(pc.or_(pc.equal(pc.utf8_length(ctx_s), 0), pc.equal(pc.utf8_length(item_s), 0)))
    too_long = ~missing & ((_nbytes(ctx_s) > limits["max_id_length"]) | (_nbytes(item_s) > limits["max_id_length"]))
    control = (
        ~missing
        & ~too_long
        & _np_bool(pc.or_(pc.match_substring_regex(ctx_s, _CTRL_RE), pc.match_substring_regex(item_s, _CTRL_RE)))
    )
    counts["interactions.dropped.missing_id"] = int(missing.sum())
    counts["interactions.dropped.id_too_long"] = int(too_long.sum())
    counts["interactions.dropped.id_control_character"] = int(control.sum())
    return missing | too_long | control


def _clean_interactions(inter, item_ids: np.ndarray, counts: dict, inter_path: str, limits: dict):
    """Interactions (pyarrow: the table with 10M+ rows): ids, known items, timestamps, weights; drops counted."""
    cols = inter.column_names
    ctx_s, item_s, ts_s = (inter.column(c).combine_chunks() for c in ("context_id", "item_id", "timestamp"))
    w_s = (
        inter.column("weight").combine_chunks()
        if "weight" in cols
        else pa.array(["1.0"]).take(np.zeros(inter.num_rows, np.int64))
    )
    bad_id = _bad_ids(ctx_s, item_s, counts, limits)
    known = _np_bool(pc.is_in(item_s, value_set=pa.array(item_ids, pa.string())))
    unknown = ~bad_id & ~known
    counts["interactions.dropped.unknown_item_id"] = int(unknown.sum())
    ts = _parse_column(ts_s, _INT_RE, "int64", parse_timestamps)
    bad_ts = ~bad_id & ~unknown & ts.isna().to_numpy()
    counts["interactions.dropped.malformed_timestamp"] = int(bad_ts.sum())
    w_blank = _np_bool(pc.equal(pc.utf8_length(w_s), 0))
    w = _parse_column(w_s, _FLOAT_RE, "float64", lambda x: pd.to_numeric(x, errors="coerce"))
    w[w_blank] = 1.0
    wv = w.to_numpy(dtype=np.float64, na_value=np.nan)
    bad_w = ~bad_id & ~unknown & ~bad_ts & ~((wv > 0) & (wv <= F32_MAX))  # NaN fails both comparisons
    counts["interactions.dropped.invalid_weight"] = int(bad_w.sum())
    counts["interactions.weight_defaulted_to_1"] = int((w_blank & ~bad_id & ~unknown & ~bad_ts).sum())
    keep = ~(bad_id | unknown | bad_ts | bad_w)
    if not keep.any():
        raise InputError(
            f"{inter_path}: no usable interactions left after dropping bad rows: {problems({'counts': counts})}"
        )
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
