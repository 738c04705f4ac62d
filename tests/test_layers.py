"""The layers point one way (README, Layout): schema <- modules <- serving <- pipeline.

Every import statement of every module is parsed (function-level ones included), so a new upward import fails
here, not in a review. And the server process must not load TFX or the pipeline at all.
"""

import ast
import os
import subprocess
import sys

import pytest

from tests.fixtures import REPO_ROOT

FIRST_PARTY = ("schema", "modules", "serving", "pipeline")
ALLOWED = {
    "schema": {"schema"},
    "modules": {"schema", "modules"},
    "serving": {"schema", "modules", "serving"},
    "pipeline": set(FIRST_PARTY),
}
FORBIDDEN_THIRD_PARTY = {"schema": {"tfx", "apache_beam"}, "modules": {"tfx"}, "serving": {"tfx", "apache_beam"}}


def imports_of(path: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in the file, at any depth; relative imports resolve to the file's
    own package."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    own = os.path.relpath(path, REPO_ROOT).split(os.sep)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, own if node.level else (node.module or "").split(".")[0]))
    return out


def package_files(pkg: str) -> list[str]:
    out = []
    for root, _, files in os.walk(os.path.join(REPO_ROOT, pkg)):
        out += [os.path.join(root, f) for f in files if f.endswith(".py") and "__pycache__" not in root]
    return sorted(out)


def violations(pkg: str) -> list[str]:
    bad = []
    for path in package_files(pkg):
        for line, top in imports_of(path):
            upward = top in FIRST_PARTY and top not in ALLOWED[pkg]
            if upward or top in FORBIDDEN_THIRD_PARTY.get(pkg, ()):
                bad.append(f"{os.path.relpath(path, REPO_ROOT)}:{line} imports {top}")
    return bad


@pytest.mark.parametrize("pkg", FIRST_PARTY)
def test_no_module_imports_a_layer_above_its_own(pkg):
    assert package_files(pkg), f"no files found under {pkg}/"
    assert violations(pkg) == []


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The check itself can fail: an upward import inside a function is reported."""
    pkg = tmp_path / "modules"
    pkg.mkdir()
    f = pkg / "m.py"
    f.write_text("import numpy\n\ndef f():\n    from pipeline import driver\n    from . import other\n")
    got = imports_of(str(f))
    assert (4, "pipeline") in got and (1, "numpy") in got and len(got) == 3


def test_the_server_does_not_load_tfx_or_the_pipeline():
    code = (
        "import sys, serving.server; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tfx', 'pipeline', 'apache_beam')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_the_contracts_load_without_tensorflow():
    code = (
        "import sys, schema.graph, schema.neighborhoods, schema.pairs, schema.embeddings, schema.versions, "
        "schema.build, schema.constants; sys.exit(1 if 'tensorflow' in sys.modules else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_every_function_is_at_most_80_lines():
    long = []
    for pkg in FIRST_PARTY + ("bench", "tests"):
        for path in package_files(pkg):
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > 80:
                        long.append(f"{os.path.relpath(path, REPO_ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []
