"""No executor or library function touches an artifact URI through a local-only file API.

`open`, `os.path.exists`, `glob`, `shutil`, `np.load`, pyarrow-by-path ... only know the local disk, so one of them
on an artifact URI breaks a `gs://` / `s3://` pipeline root. Artifact I/O goes through schema/files.py (tf.io.gfile
for a URI); what is local by design is in ALLOWED below, each entry with its reason. Every call of the project's
packages is parsed (any depth, aliases resolved: `import pyarrow.parquet as pq` makes `pq.read_table`
pyarrow.parquet.read_table), so a new local-only call fails here unless it is allowed here, with a reason.
"""

from __future__ import annotations

import ast
import os

from tests.fixtures import REPO_ROOT
from tests.test_layers import package_files

PACKAGES = ("schema", "modules", "serving", "pipeline")
# os.path's string functions (join, basename, dirname, split, splitext) are fine on a URI; these are not
# (they look at the local disk, or rewrite a URI: abspath('gs://b') == '<cwd>/gs:/b', normpath drops a '/').
OS_PATH = {"exists", "lexists", "isdir", "isfile", "islink", "getsize", "getmtime", "abspath", "realpath"}
OS_PATH |= {"normpath", "relpath", "samefile", "expanduser"}
OS = {"listdir", "scandir", "walk", "makedirs", "mkdir", "rmdir", "removedirs", "remove", "unlink", "rename"}
OS |= {"replace", "link", "symlink", "stat", "chmod", "utime", "truncate"}
MODULES = {"glob", "shutil", "tempfile", "pathlib"}  # every function of these
NAMED = {
    "builtins.open",
    "io.open",
    "numpy.load",
    "numpy.save",
    "numpy.savez",
    "numpy.savez_compressed",
    "numpy.fromfile",
    "numpy.loadtxt",
    "numpy.savetxt",
    "pyarrow.parquet.read_table",
    "pyarrow.parquet.write_table",
    "pyarrow.parquet.ParquetFile",
    "pyarrow.parquet.ParquetWriter",
    "pyarrow.parquet.read_metadata",
    "pyarrow.parquet.read_schema",
    "pyarrow.csv.read_csv",
    "pyarrow.csv.write_csv",
    "pandas.read_csv",
    "pandas.read_parquet",
}
METHODS = {"to_csv", "to_parquet", "savefig"}  # pandas, matplotlib (pathlib: its Path(...) is caught above)

# (file, function, call) -> why it may stay local; "*" = any: ("x.py", "*", "*") is the whole file, ("x.py", "f",
# "*") every call in f; "<module>" = module-level code. Executor-side entries name the call, so that a new local
# call beside an allowed one still fails.
_SERVER = "the server process reads its --model_base_path on local disk (TF Serving itself reads gs:// too)"
_SOURCE = "this repository's own source files (the trainer's code fingerprint)"
_CSV_FOLDER = "the cold-start hold-out: a copy of the user's local CSV folder, read and written as ingest.py does"
ALLOWED = {
    ("schema/files.py", "*", "*"): "the one place that calls the local APIs, for local paths only",
    ("schema/__init__.py", "_openblas_coretype", "builtins.open"): "reads /proc/cpuinfo",
    ("schema/build.py", "<module>", "os.path.abspath"): "SCHEMA_DIR: the checked-in schema files beside this module",
    ("modules/index.py", "load_searcher", "*"): "ScaNN's loader reads local files only; load_index passes a local copy",
    ("modules/export.py", "export_serving_model", "tempfile.TemporaryDirectory"): "the id table asset, copied into "
    "the SavedModel by tf.saved_model.save",
    ("pipeline/components/pusher.py", "Do", "tempfile.TemporaryDirectory"): "the export, copied to the URI by push",
    ("pipeline/evaluation/report.py", "_save", "fig.savefig"): "into a buffer, written through schema/files",
    ("pipeline/graph/beam_graph.py", "process", "pyarrow.parquet.write_table"): "into a buffer, written via gfile",
    ("pipeline/components/trainer.py", "<module>", "os.path.abspath"): _SOURCE,
    ("pipeline/components/trainer.py", "_module_file", "os.path.isfile"): _SOURCE,
    ("pipeline/components/trainer.py", "_imported_modules", "builtins.open"): _SOURCE,
    ("pipeline/components/trainer.py", "code_fingerprint", "*"): _SOURCE,
    ("pipeline/pipeline.py", "<module>", "os.path.abspath"): "MODULES_DIR: the Transform module file in this repo",
    ("pipeline/local_runner.py", "<module>", "os.path.abspath"): "the TFX CLI's entry point fixes sys.path",
    ("pipeline/local_runner.py", "_pipeline", "os.path.abspath"): "the local run's PINSAGE_OUTPUT directory",
    ("pipeline/scratch.py", "*", "*"): "TFX's own temporary files on the machine that runs the stage, never an "
    "artifact",
    ("pipeline/cli.py", "*", "*"): "the CLI: the user's --output directory, its report and timings",
    ("pipeline/driver.py", "*", "*"): "the local run: ingest into --output, content-addressed inputs, the run report",
    ("pipeline/kubeflow_v2_runner.py", "*", "*"): "compiles offline: ingest into the local --staging, then copied",
    ("pipeline/data/datasets.py", "*", "*"): "downloads and unpacks the bundled datasets into a local folder",
    ("pipeline/data/ingest.py", "*", "*"): "reads the user's CSV folder, writes the canonical inputs under --output",
    ("pipeline/data/regenerate_schemas.py", "*", "*"): "a maintainer tool writing the checked-in schemas",
    ("pipeline/graph/from_csv.py", "*", "*"): "a reference reader of a local CSV folder (tests and benches)",
    ("pipeline/evaluation/cold_start.py", "_read", "pandas.read_csv"): _CSV_FOLDER,
    ("pipeline/evaluation/cold_start.py", "hold_out", "*"): _CSV_FOLDER,
    ("pipeline/evaluation/cold_start.py", "read_held_out", "*"): _CSV_FOLDER,
    ("serving/loader.py", "scan", "*"): _SERVER,
    ("schema/versions.py", "_npy", "numpy.load"): "memory-maps a served version's arrays: " + _SERVER,
    ("schema/versions.py", "read_serving_arrays", "*"): "memory-maps a served version's arrays: " + _SERVER,
    ("serving/version.py", "_from_arrays", "*"): _SERVER,
    ("serving/model_config.py", "parse_text_file", "builtins.open"): "the server's local --model_config_file",
    ("serving/model_config.py", "model_specs", "*"): _SERVER,
    ("serving/rest.py", "<module>", "os.path.abspath"): "the REST page's own static files",
    ("serving/rest.py", "catalogue_from_server", "os.path.exists"): _SERVER,
    ("serving/version.py", "__init__", "*"): "a served version's saved_model.pb: " + _SERVER,
    ("serving/core.py", "__init__", "os.path.abspath"): "the model base path: " + _SERVER,
    ("serving/core.py", "_reload_config", "builtins.open"): "the server's local --model_config_file",
    ("serving/core.py", "_poll", "builtins.open"): "the server's local --model_config_file",
    ("serving/core.py", "warmup", "os.path.exists"): _SERVER,
    ("serving/server.py", "resolve_model_dir", "*"): _SERVER,
}


def allowed(rel: str, fn: str, name: str) -> tuple | None:
    """The ALLOWED key that covers this call, or None."""
    return next((k for k in ((rel, "*", "*"), (rel, fn, "*"), (rel, fn, name)) if k in ALLOWED), None)


def _aliases(tree) -> dict:
    """Local name -> dotted module/function it stands for, from the file's import statements."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _dotted(func, aliases) -> str | None:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    root = aliases.get(func.id, "builtins." + func.id if func.id == "open" else func.id)
    return ".".join([root] + parts[::-1])


def local_only(name: str, attr: str | None) -> bool:
    mod, _, fn = name.rpartition(".")
    return (
        name in NAMED
        or (mod == "os.path" and fn in OS_PATH)
        or (mod == "os" and fn in OS)
        or name.split(".")[0] in MODULES
        or attr in METHODS
    )


def calls(path: str) -> list[tuple[int, str, str]]:
    """(line, enclosing function, dotted call name) of every local-only call in the file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    aliases, out = _aliases(tree), []

    def visit(node, fn):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn
            if isinstance(child, ast.Call):
                name = _dotted(child.func, aliases)
                attr = child.func.attr if isinstance(child.func, ast.Attribute) else None
                if name and local_only(name, attr) or (name is None and attr in METHODS):
                    out.append((child.lineno, fn, name or f"?.{attr}"))
            visit(child, inner)

    visit(tree, "<module>")
    return out


def violations() -> list[str]:
    bad = []
    for pkg in PACKAGES:
        for path in package_files(pkg):
            rel = os.path.relpath(path, REPO_ROOT)
            for line, fn, name in calls(path):
                if not allowed(rel, fn, name):
                    bad.append(f"{rel}:{line} {fn}: {name}")
    return bad


def test_no_local_only_file_api_outside_the_allow_list():
    assert violations() == []


def test_every_allow_list_entry_is_still_needed():
    """An entry whose file no longer calls a local API (or no longer exists) goes, so the list stays true."""
    used = set()
    for pkg in PACKAGES:
        for path in package_files(pkg):
            rel = os.path.relpath(path, REPO_ROOT)
            used |= {allowed(rel, fn, name) for _, fn, name in calls(path)}
    assert sorted(set(ALLOWED) - used) == []


def test_the_checker_sees_aliases_nested_calls_and_methods(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "import os\nimport numpy as np\nimport pyarrow.parquet as pq\nfrom os import path as p\n"
        "from schema import files\n\n"
        "def g(uri, fig):\n"
        "    def h():\n        return pq.read_table(os.path.join(uri, 'x'))\n"
        "    np.save(files.join(uri, 'e.npy'), 1)\n    fig.savefig(uri)\n"
        "    return p.exists(uri), open(uri), files.open(uri), os.path.basename(uri)\n"
    )
    got = calls(str(f))
    assert got == [
        (9, "h", "pyarrow.parquet.read_table"),
        (10, "g", "numpy.save"),
        (11, "g", "fig.savefig"),
        (12, "g", "os.path.exists"),
        (12, "g", "builtins.open"),
    ]
