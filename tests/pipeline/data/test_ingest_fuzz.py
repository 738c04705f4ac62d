"""Ingest's fuzz suite: every class of bad input a demanding user produces is either a clear error naming
the file (and line/column where it applies) or a counted drop/blank with the exact count; never a traceback,
never a wrapped value. The fast cases call ingest.canonicalise directly; a handful of `pinsage run --stop-after
graph` subprocess runs (marked slow) check the exit code, the message and data_report.json end to end, and that
one huge id does not blow up the run's memory.

The expected counts are written out by hand from each case's rows (not computed by the code under test)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import cli, configs
from pipeline.data import datasets, ingest
from pipeline.graph.split import sorted_ids, split_partition

ITEMS = "item_id,title,year\n1,Heat,1995\n2,Alien,1979\n3,Fargo,1996\n4,Brazil,1985\n"
INTER = "context_id,item_id,timestamp,weight\nu1,1,100,1\nu1,2,200,1\nu1,3,300,1\nu2,2,150,1\nu2,4,250,2\n"
SPEC = "features:\n  title: {kind: text}\n  year: {kind: numeric}\n"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _dir(tmp_path, items=ITEMS, inter=INTER, spec=SPEC, name="d") -> str:
    """A dataset directory; each file is text (UTF-8), bytes (written as is) or None (absent)."""
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    for fname, content in (("items.csv", items), ("interactions.csv", inter), ("dataset.yaml", spec)):
        if content is None:
            continue
        (d / fname).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(d)


def _run(tmp_path, **files):
    return ingest.canonicalise(_dir(tmp_path, **files), str(tmp_path / "out"))


def _problems(rep) -> dict:
    return ingest.problems(rep)


# ----------------------------------------------------------------------------------- clear errors (exit 2)

LATIN1 = "é".encode("latin-1")
ERRORS = {
    # encodings
    "latin1 byte in interactions.csv": (
        dict(inter=b"context_id,item_id,timestamp\nu1,1,100\nu" + LATIN1 + b"2,2,200\n"),
        "interactions.csv",
        r"line 3 \(byte offset \d+\) is not UTF-8 \(byte 0xe9",
    ),
    "latin1 byte in the header": (
        dict(inter=b"context_id,item_id,timestamp" + LATIN1 + b"\nu1,1,100\n"),
        "interactions.csv",
        r"line 1 .* is not UTF-8",
    ),
    "latin1 byte in items.csv": (
        dict(items=b"item_id,title\n1,Caf" + LATIN1 + b"\n"),
        "items.csv",
        r"line 2 .* is not UTF-8",
    ),
    "latin1 byte in dataset.yaml": (dict(spec=b"name: caf" + LATIN1 + b"\n"), "dataset.yaml", "line 1 .* not UTF-8"),
    "UTF-16 interactions.csv": (
        dict(inter="context_id,item_id,timestamp\nu1,1,100\n".encode("utf-16")),
        "interactions.csv",
        "not UTF-8",
    ),
    # not a file
    "items.csv is a directory": (dict(items="DIR"), "items.csv", "is not a regular file"),
    "interactions.csv is a directory": (dict(inter="DIR"), "interactions.csv", "is not a regular file"),
    "dataset.yaml is a directory": (dict(spec="DIR"), "dataset.yaml", "is not a regular file"),
    "items.csv missing": (dict(items=None), "items.csv", "file not found"),
    # header anomalies
    "empty column name": (dict(items="item_id,,title\n1,x,a\n"), "items.csv", r"header column\(s\) \[2\] .* no name"),
    "trailing comma in the header": (
        dict(inter="context_id,item_id,timestamp,\nu1,1,100,\n"),
        "interactions.csv",
        r"column\(s\) \[4\]",
    ),
    "duplicate after trimming": (dict(items="item_id,title, title\n1,a,b\n"), "items.csv", r"duplicate .*\['title'\]"),
    "header only": (dict(inter="context_id,item_id,timestamp\n"), "interactions.csv", "header but no data rows"),
    "required column missing": (
        dict(inter="context,item_id,timestamp\nu,1,1\n"),
        "interactions.csv",
        r"missing required column\(s\) \['context_id'\]",
    ),
    "huge header field": (
        dict(inter="context_id,item_id,timestamp," + "h" * 200_000 + "\nu1,1,100,1\n"),
        "interactions.csv",
        "header row cannot be parsed",
    ),
    "first items row longer than the header": (
        dict(items="item_id,title\n1,Heat,extra\n"),
        "items.csv",
        "line 2 has more fields than the header",
    ),
    "interactions row longer than the header": (
        dict(inter="context_id,item_id,timestamp\nu1,1,100\nu1,2,200,9\n"),
        "interactions.csv",
        r"line 3: 4 fields, the header has 3\): .*Expected 3 columns, got 4",
    ),
    "semicolon-separated file": (
        dict(inter="context_id;item_id;timestamp\nu1;1;100\n"),
        "interactions.csv",
        r"missing required column\(s\) \['context_id', 'item_id', 'timestamp'\]; found \['context_id;item_id;timestamp'\]",
    ),
    "unterminated quote in items.csv": (
        dict(items='item_id,title\n1,"Heat\n2,Alien\n'),
        "items.csv",
        "cannot be parsed as CSV: .*EOF inside string",
    ),
    "old Mac line endings": (dict(items="item_id,title\r1,Heat\r"), "items.csv", "header row cannot be parsed"),
    "column that clashes with a made feature": (
        dict(
            items="item_id,year,year_missing\n1,1995,0\n", spec="features:\n  year: numeric\n  year_missing: numeric\n"
        ),
        "items.csv",
        "columns 'year' and 'year_missing' both make the model feature 'year_missing'",
    ),
    "column named like one the pipeline adds": (
        dict(items="item_id,node_id\n1,5\n", spec=None),
        "items.csv",
        r"column\(s\) \['node_id'\] are names the pipeline adds",
    ),
    "vector dim larger than a cell": (
        dict(items="item_id,v\n1,1 2\n", spec="features:\n  v: {kind: dense_vector, dim: 100000000}\n"),
        "items.csv",
        "dense_vector column 'v' has dim 100000000",
    ),
    "everything dropped": (
        dict(inter="context_id,item_id,timestamp\nu1,99,100\n"),
        "interactions.csv",
        r"no usable interactions .*unknown_item_id': 1",
    ),
    # dataset.yaml
    "yaml not a mapping": (dict(spec="- title\n- year\n"), "dataset.yaml", "expected a mapping"),
    "yaml unknown kind": (
        dict(spec="features:\n  title: picture\n"),
        "dataset.yaml",
        r"feature 'title' has kind 'picture'; expected one of \('numeric', 'categorical', 'text', 'dense_vector'\)",
    ),
    "yaml feature is a list": (dict(spec="features:\n  title: [text]\n"), "dataset.yaml", "feature 'title' is"),
    "yaml unknown feature key": (
        dict(spec="features:\n  title: {kind: categorical, sep: '|'}\n"),
        "dataset.yaml",
        r"feature 'title' has unknown key\(s\) \['sep'\]; allowed: \['kind', 'separator', 'dim'\]",
    ),
    "yaml separator not a string": (
        dict(spec="features:\n  title: {kind: categorical, separator: 5}\n"),
        "dataset.yaml",
        "feature 'title': separator is 5; expected a string",
    ),
    "yaml dim not an integer": (
        dict(items="item_id,v\n1,1 2\n", spec="features:\n  v: {kind: dense_vector, dim: two}\n"),
        "dataset.yaml",
        "feature 'v': dim is 'two'; expected an integer",
    ),
    "yaml dim missing": (
        dict(items="item_id,v\n1,1 2\n", spec="features:\n  v: dense_vector\n"),
        "dataset.yaml",
        "needs an integer 'dim' >= 1",
    ),
    "yaml unknown column": (dict(spec="features:\n  colour: text\n"), "dataset.yaml", "not columns of items.csv"),
    "yaml unknown top-level key": (dict(spec="feature:\n  title: text\n"), "dataset.yaml", r"\['feature'\]"),
    "yaml syntax": (dict(spec="features: {title: text\n"), "dataset.yaml", "not valid YAML"),
    "yaml bad limit": (dict(spec="limits: {max_id_length: -3}\n"), "dataset.yaml", "max_id_length is -3"),
    "yaml unknown limit": (dict(spec="limits: {max_ids: 3}\n"), "dataset.yaml", "unknown limit 'max_ids'"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_unusable_input_is_a_clear_error_naming_the_file(tmp_path, case):
    files, fname, message = ERRORS[case]
    d = tmp_path / "d"
    for key, f in (("items", "items.csv"), ("inter", "interactions.csv"), ("spec", "dataset.yaml")):
        if files.get(key) == "DIR":
            (d / f).mkdir(parents=True)
            files = {**files, key: None}
    with pytest.raises(ingest.InputError, match=message) as e:
        _run(tmp_path, **files)
    assert str(e.value).startswith(os.path.join(str(d), fname) + ":"), e.value


# ------------------------------------------------------------------------- counted drops and blanks (exit 0)

DIGITS20 = "99999999999999999999"
COUNTED = {
    "timestamp beyond int64": (
        dict(inter=INTER + f"u2,1,{DIGITS20},1\n"),
        {"interactions.dropped.malformed_timestamp": 1},
    ),
    "timestamp 1e30": (dict(inter=INTER + "u2,1,1e30,1\n"), {"interactions.dropped.malformed_timestamp": 1}),
    "timestamp -1e30 and inf and nan": (
        dict(inter=INTER + "u2,1,-1e30,1\nu2,3,inf,1\nu2,3,nan,1\n"),
        {"interactions.dropped.malformed_timestamp": 3},
    ),
    "timestamp 2**63 and -2**63-1": (
        dict(inter=INTER + "u2,1,9223372036854775808,1\nu2,3,-9223372036854775809,1\n"),
        {"interactions.dropped.malformed_timestamp": 2},
    ),
    "timestamp of a megabyte of digits": (
        dict(inter=INTER + "u2,1," + "7" * (1 << 20) + ",1\n"),
        {"interactions.dropped.malformed_timestamp": 1},
    ),
    "weight beyond float32": (
        dict(inter=INTER + "u2,1,5,1e39\nu2,3,6,1e400\n"),
        {"interactions.dropped.invalid_weight": 2},
    ),
    "numeric feature beyond float32": (
        dict(items=ITEMS + "5,Big,1e39\n6,Inf,1e400\n7,Ok,3e38\n"),
        {"items.year.invalid_numeric_blanked": 2},
    ),
    "vector value beyond float32": (
        dict(
            items="item_id,v\n1,1 2\n2,1e39 2\n3,1 inf\n4,3 4\n", spec="features:\n  v: {kind: dense_vector, dim: 2}\n"
        ),
        {"items.v.invalid_vector_blanked": 2},
    ),
    "context id with NUL and item id with a tab": (
        dict(inter=INTER + "u\x002,1,5,1\n" + 'u2,"2\t2",6,1\n'),
        {"interactions.dropped.id_control_character": 2},
    ),
    "item id with a control character": (
        dict(items=ITEMS + "5\x07,Bell,1990\n"),
        {"items.dropped.id_control_character": 1},
    ),
    "context id over the id limit": (
        dict(inter=INTER + "c" * 1025 + ",1,5,1\n" + "c" * 1024 + ",1,5,1\n"),
        {"interactions.dropped.id_too_long": 1},
    ),
    "multibyte id over the limit in bytes": (
        dict(inter=INTER + "é" * 513 + ",1,5,1\n"),  # 513 characters, 1026 UTF-8 bytes
        {"interactions.dropped.id_too_long": 1},
    ),
    "item id over the id limit": (
        dict(items=ITEMS + "i" * 2000 + ",Long,1990\n", inter=INTER + "i" * 2000 + ",1,5,1\n"),
        {"items.dropped.id_too_long": 1, "interactions.dropped.id_too_long": 1},
    ),
    "text cell over the cell limit": (
        dict(items=ITEMS + "5," + "t" * 65537 + ",1990\n6," + "t" * 65536 + ",1990\n"),
        {"items.title.too_long_blanked": 1},
    ),
    "a megabyte weight and a megabyte number": (
        dict(inter=INTER + "u2,1,5," + "7" * (1 << 20) + "\n", items=ITEMS + "5,Big," + "9" * (1 << 20) + "\n"),
        {"interactions.dropped.invalid_weight": 1, "items.year.too_long_blanked": 1},
    ),
    "Windows line endings": (dict(items=ITEMS.replace("\n", "\r\n"), inter=INTER.replace("\n", "\r\n")), {}),
    "item ids as floats in interactions": (
        dict(inter=INTER + "u2,1.0,5,1\nu2, 3 ,6,1\n"),  # '1.0' is not item '1'; ' 3 ' is trimmed
        {"interactions.dropped.unknown_item_id": 1},
    ),
    "quoted empty ids and whitespace-only ids": (
        dict(inter=INTER + '"",1,5,1\n   ,1,5,1\n'),
        {"interactions.dropped.missing_id": 2},
    ),
}


@pytest.mark.parametrize("case", sorted(COUNTED))
def test_bad_cells_are_counted_exactly(tmp_path, case):
    files, expected = COUNTED[case]
    _, rep = _run(tmp_path, **files)
    assert _problems(rep) == expected
    read, kept = rep["interactions"]["rows_read"], rep["interactions"]["rows_kept"]
    dropped = sum(v for k, v in rep["counts"].items() if k.startswith("interactions.dropped."))
    assert kept + dropped == read  # nothing lost silently


def test_out_of_range_timestamps_never_wrap_and_the_split_order_stays(tmp_path):
    """Out-of-range timestamps (99999999999999999999, 1e30) are dropped, not wrapped to int64 min (which would
    sort first and take the train slot); in-range extremes are kept exactly."""
    inter = (
        "context_id,item_id,timestamp\n"
        f"u1,4,{DIGITS20}\n"  # dropped
        "u1,1,1e30\n"  # dropped
        "u1,2,-9223372036854775808\n"  # int64 min: kept exactly, the earliest
        "u1,3,1.5e9\n"  # a float with a zero fraction: 1500000000
        "u1,1,9223372036854775807\n"  # int64 max: kept exactly, the latest -> test
    )
    canon, rep = _run(tmp_path, inter=inter)
    assert _problems(rep) == {"interactions.dropped.malformed_timestamp": 2}
    t = pq.read_table(os.path.join(canon, ingest.EXAMPLES_DIR, "interactions")).to_pydict()
    assert [x[0] for x in t["timestamp"]] == [-(2**63), 1_500_000_000, 2**63 - 1]
    node = {"1": 0, "2": 1, "3": 2, "4": 3}
    items = [x[0] for x in t["item_id"]]
    cols, _, _ = split_partition(
        pd.Series([0] * 3).to_numpy(),
        pd.Series([node[str(i)] for i in items]).to_numpy(),
        pd.Series([x[0] for x in t["timestamp"]]).to_numpy(),
        pd.Series([1.0] * 3).to_numpy(),
    )
    by_split = dict(zip(cols["split"], cols["node_id"]))
    assert by_split == {"train": node["2"], "validation": node["3"], "test": node["1"]}


def test_ids_beyond_int64_make_the_id_column_a_string_column(tmp_path):
    items = f"item_id,title\n{DIGITS20},Big\n1,Small\n"
    inter = f"context_id,item_id,timestamp\n{DIGITS20},{DIGITS20},5\n7,1,6\n"
    canon, rep = _run(tmp_path, items=items, inter=inter, spec=None)
    assert rep["items"]["id_type"] == "string" and rep["interactions"]["context_id_type"] == "string"
    assert rep["interactions"]["rows_kept"] == 2 and _problems(rep) == {}
    t = pq.read_table(os.path.join(canon, ingest.EXAMPLES_DIR, "interactions")).to_pydict()
    assert [x[0] for x in t["context_id"]] == [DIGITS20, "7"]  # the exact digits, not a float or a wrapped int
    assert sorted_ids(pd.Series([DIGITS20, "7"]).to_numpy())[1] == "string"
    # int64's own bounds still make an integer column
    _, rep = _run(
        tmp_path,
        items="item_id\n9223372036854775807\n-9223372036854775808\n",
        spec=None,
        inter=("context_id,item_id,timestamp\n1,9223372036854775807,5\n2,-9223372036854775808,5\n"),
    )
    assert rep["items"]["id_type"] == "int" and rep["interactions"]["context_id_type"] == "int"


def test_id_type_clashes(tmp_path):
    """Items mixing integers and strings, '01' next to '1': string ids, all distinct, none dropped."""
    items = "item_id,title\n1,a\n01,b\nabc,c\n"
    inter = "context_id,item_id,timestamp\n5,1,1\nx,01,2\n5,abc,3\n"
    _, rep = _run(tmp_path, items=items, inter=inter, spec=None)
    assert rep["items"]["id_type"] == "string" and rep["items"]["rows_kept"] == 3
    assert rep["interactions"]["context_id_type"] == "string" and rep["interactions"]["rows_kept"] == 3


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    bom = b"\xef\xbb\xbf"
    _, rep = _run(tmp_path, items=bom + ITEMS.encode(), inter=bom + INTER.encode(), spec=bom + SPEC.encode())
    assert rep["items"]["rows_kept"] == 4 and rep["interactions"]["rows_kept"] == 5 and _problems(rep) == {}


def test_dataset_yaml_shorthand(tmp_path):
    items = "item_id,title,genres,year\n1,Heat,Action|Crime,1995\n2,Alien,Horror,1979\n"
    spec = 'features: {title: text, genres: {kind: categorical, separator: "|"}, year: numeric}\n'
    _, rep = _run(tmp_path, items=items, inter="context_id,item_id,timestamp\nu,1,1\nu,2,2\n", spec=spec)
    assert rep["spec"]["features"] == {
        "title": {"kind": "text"},
        "genres": {"kind": "categorical", "separator": "|"},
        "year": {"kind": "numeric"},
    }
    assert rep["spec"]["inferred"] == []


def test_limits_are_configurable_in_dataset_yaml_and_by_override(tmp_path):
    inter = INTER + "c" * 50 + ",1,5,1\n"
    items = ITEMS + "5," + "t" * 40 + ",1990\n"
    spec = SPEC + "limits: {max_id_length: 49, max_cell_length: 39}\n"
    _, rep = _run(tmp_path, items=items, inter=inter, spec=spec)
    assert _problems(rep) == {"interactions.dropped.id_too_long": 1, "items.title.too_long_blanked": 1}
    assert rep["limits"] == {"max_id_length": 49, "max_cell_length": 39}
    # an override (the CLI flag) wins over dataset.yaml, and a new limit is a new canonical directory
    d = _dir(tmp_path, items=items, inter=inter, spec=spec)
    canon_a, _ = ingest.canonicalise(d, str(tmp_path / "out"))
    canon_b, rep = ingest.canonicalise(d, str(tmp_path / "out"), {"max_id_length": 50, "max_cell_length": None})
    assert canon_a != canon_b and _problems(rep) == {"items.title.too_long_blanked": 1}
    with pytest.raises(ingest.InputError, match="the command line: limit max_id_length is 0"):
        ingest.canonicalise(d, str(tmp_path / "out"), {"max_id_length": 0})


def test_defaults_are_the_config(tmp_path):
    from pipeline.configs import INGEST

    _, rep = _run(tmp_path)
    assert rep["limits"] == {"max_id_length": INGEST.max_id_length, "max_cell_length": INGEST.max_cell_length}
    args = cli.build_parser().parse_args(["run", "--data-dir", "d", "--output", "o"])
    assert (args.max_id_length, args.max_cell_length) == (None, None)  # None: dataset.yaml, else the config


# ------------------------------------------------------------------------------------------- CLI flag values


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--hparams", "{epochs: 5"], "--hparams is not valid JSON"),
        (["--hparams", "[5]"], "--hparams must be a JSON object"),
        (["--hparams", '{"epochz": 5}'], r"--hparams: unknown name\(s\) \['epochz'\]"),
        (["--hparams", '{"epochs": "five"}'], "--hparams: epochs is 'five'"),
        (["--hparams", '{"learning_rate": -1}'], "--hparams: learning_rate is -1; expected a value >= 0"),
        (["--hparams", '{"epochs": null}'], "--hparams: epochs is None"),
        (["--hparams", '{"similarity_weight": "a"}'], "--hparams: similarity_weight is 'a'"),
        (["--beam-arg=--direct_num_workers=two"], "--beam-arg .*invalid int value: 'two'"),
        (["--ablations", "nonsense"], r"unknown ablation\(s\) \['nonsense'\]"),
    ],
)
def test_bad_flag_values_are_exit_2_with_a_message(tmp_path, capsys, flags, message):
    import re

    rc = cli.main(["run", "--data-dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(message, err), err
    assert "Traceback" not in err


def test_null_hparams_are_accepted_where_the_field_is_optional():
    assert configs.check_hparams({"similarity_weight": None, "max_hard_negatives": None, "epochs": 2})


@pytest.mark.parametrize("flags", [["--num-walks", "0"], ["--top-t", "x"], ["--max-id-length", "-1"], ["--seed", "-2"]])
def test_bad_numeric_flags_are_usage_errors(capsys, flags):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--data-dir", "d", "--output", "o", *flags])
    assert e.value.code == 2 and flags[0] in capsys.readouterr().err


def test_output_that_is_a_file_is_exit_2(tmp_path, capsys):
    (tmp_path / "o").write_text("x")
    rc = cli.main(["run", "--data-dir", _dir(tmp_path), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and str(tmp_path / "o") in err


# ---------------------------------------------------------------------- end to end: `pinsage run --stop-after graph`


def _pinsage_run(data_dir: str, output: str, *flags: str) -> tuple[subprocess.CompletedProcess, float]:
    """`pinsage run --stop-after graph` in a child process that reports its child's peak RSS (MiB): the
    getrusage of a fresh parent, so that each measurement is of this run only."""
    code = (
        "import resource, subprocess, sys; "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
        "print(f'MAXRSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}'); sys.exit(p.returncode)"
    )
    cmd = [sys.executable, "-c", code, sys.executable, "-m", "pipeline.cli", "run", "--data-dir", data_dir]
    cmd += ["--output", output, "--stop-after", "graph", *flags]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    rss = [ln for ln in p.stdout.splitlines() if ln.startswith("MAXRSS_KB=")]
    return p, int(rss[-1].split("=")[1]) / 1024 if rss else float("nan")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("small") / "clean")
    datasets.materialise("synthetic", d, items=300, contexts=150, edges=3000, seed=1)
    return d


@pytest.mark.slow
@pytest.mark.parametrize("case", ["latin1 byte in interactions.csv", "items.csv is a directory", "yaml unknown kind"])
def test_cli_run_on_unusable_input_exits_2_naming_the_file(small, tmp_path, case):
    files, fname, _ = ERRORS[case]
    d = tmp_path / "data"
    shutil.copytree(small, d)
    target = d / {"items": "items.csv", "inter": "interactions.csv", "spec": "dataset.yaml"}[next(iter(files))]
    content = next(iter(files.values()))
    target.unlink()
    if content == "DIR":
        target.mkdir()
    else:
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    p, _ = _pinsage_run(str(d), str(tmp_path / "out"))
    assert p.returncode == 2, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and str(target) in p.stderr


@pytest.mark.slow
def test_cli_run_counts_every_class_and_one_huge_id_does_not_cost_memory(small, tmp_path):
    """The bad-input classes in one dataset, end to end: the shorthand dataset.yaml, an item id beyond int64, a
    1e30 and a 20-digit timestamp, and a 1 MB context id (which drove GraphGen to 22 GB). Exit 0, the exact
    counts in data_report.json, and peak RSS within 1.5x of the same run without the bad rows — with the id
    dropped by the default limit, and with the limit raised so that the 1 MB id goes through GraphGen."""
    clean, rss_clean = _pinsage_run(small, str(tmp_path / "clean-out"))
    assert clean.returncode == 0, clean.stderr[-3000:]
    d = tmp_path / "bad"
    shutil.copytree(small, d)
    spec = (d / "dataset.yaml").read_text()
    (d / "dataset.yaml").write_text(spec.replace("category: {kind: categorical}", "category: categorical"))
    with open(d / "items.csv", "a") as f:
        f.write(f"{DIGITS20},c0,1.0,1.0,1.0,0 0 0 0 0 0 0 0\n")
    with open(d / "interactions.csv", "a") as f:
        f.write(f"0,0,{DIGITS20},1.0\n0,1,1e30,1.0\n")
        f.write("x" * (1 << 20) + ",0,1600000000,1.0\n")
    p, rss_bad = _pinsage_run(str(d), str(tmp_path / "bad-out"))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    report = json.load(open(tmp_path / "bad-out" / "data_report.json"))
    counts = {k: v for k, v in report["ingest"]["counts"].items() if v}
    assert counts == {"interactions.dropped.malformed_timestamp": 2, "interactions.dropped.id_too_long": 1}
    assert report["ingest"]["items"]["id_type"] == "string"  # the id beyond int64
    assert report["ingest"]["items"]["rows_kept"] == 301
    assert rss_bad <= 1.5 * rss_clean, (rss_bad, rss_clean)

    kept, rss_kept = _pinsage_run(str(d), str(tmp_path / "kept-out"), "--max-id-length", str(2 << 20))
    assert kept.returncode == 0, kept.stderr[-3000:]
    report = json.load(open(tmp_path / "kept-out" / "data_report.json"))
    assert report["ingest"]["counts"]["interactions.dropped.id_too_long"] == 0
    assert report["graph"]["num_contexts"] == report_contexts(small) + 1  # the 1 MB context is in the graph
    assert rss_kept <= 1.5 * rss_clean, (rss_kept, rss_clean)


def report_contexts(data_dir: str) -> int:
    return pd.read_csv(os.path.join(data_dir, "interactions.csv"), usecols=["context_id"])["context_id"].nunique()
