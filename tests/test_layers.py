"""The layers point one way (docs/DESIGN.md, Layout): schema <- modules <- serving <- pipeline, with pinsage (the
Python API over a version on disk) beside pipeline on top (neither imports the other), and no two files import
each other, at any depth.

Every import statement of every module is parsed (function-level ones included), so a new upward import or an
import circle fails here, not in a review (Python itself sees neither while the imports sit inside functions). And
the server process must not load TFX or the pipeline at all.
"""

import ast
import os
import subprocess
import sys

import pytest

from tests.fixtures import REPO_ROOT

FIRST_PARTY = ("schema", "modules", "serving", "pipeline", "pinsage")
ALLOWED = {
    "schema": {"schema"},
    "modules": {"schema", "modules"},
    "serving": {"schema", "modules", "serving"},
    "pipeline": {"schema", "modules", "serving", "pipeline"},
    "pinsage": {"schema", "modules", "serving", "pinsage"},
}
FORBIDDEN_THIRD_PARTY = {
    "schema": {"tfx", "apache_beam"},
    "modules": {"tfx"},
    "serving": {"tfx", "apache_beam"},
    "pinsage": {"tfx", "apache_beam"},  # a version on disk needs neither the pipeline's framework nor Beam
}


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


def package_files(pkg: str, root_dir: str = REPO_ROOT) -> list[str]:
    out = []
    for root, _, files in os.walk(os.path.join(root_dir, pkg)):
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


def _module_file(root_dir: str, dotted: str) -> str | None:
    """The file a dotted first-party module name stands for (a module file or a package's __init__.py)."""
    base = os.path.join(root_dir, *dotted.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def imported_files(path: str, root_dir: str, packages: tuple) -> set[str]:
    """The first-party files `path` imports, at any depth of its code: `import a.b`, `from a.b import c` (c a
    submodule or a name in a/b), `from . import c` and `from .b import c` resolved against the file's package."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    parts = os.path.relpath(path, root_dir)[: -len(".py")].split(os.sep)
    package = parts[:-1]  # a package's __init__ and its modules share the package
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names += [f"{module}.{a.name}" for a in node.names]
    out = set()
    for name in names:
        if name.split(".")[0] not in packages:
            continue
        target = _module_file(root_dir, name)  # a submodule, else the package / module holding the name
        if target is None and "." in name:
            target = _module_file(root_dir, name.rsplit(".", 1)[0])
        if target is not None and target != path:
            out.add(target)
    return out


def import_circles(root_dir: str, packages: tuple) -> list[list[str]]:
    """Every set of files that import each other, directly or through others (the strongly connected components
    of the file import graph with more than one file, by Tarjan's algorithm), as sorted relative paths."""
    files = [p for pkg in packages for p in package_files(pkg, root_dir)]
    edges = {p: imported_files(p, root_dir, packages) for p in files}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(os.path.relpath(p, root_dir) for p in component))

    for v in files:
        if v not in index:
            visit(v)
    return circles


def test_no_two_files_import_each_other():
    assert import_circles(REPO_ROOT, FIRST_PARTY) == []


def test_the_circle_check_sees_a_circle_through_a_function_level_import(tmp_path):
    """The check itself can fail: a -> b -> c -> a, the last edge inside a function, is one circle; a file that
    only imports into the circle is not part of it."""
    pkg = tmp_path / "serving"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from serving import b\n")
    (pkg / "b.py").write_text("import serving.c\n")
    (pkg / "c.py").write_text("def f():\n    from . import a\n    return a\n")
    (pkg / "d.py").write_text("from serving.a import something\n")
    circles = import_circles(str(tmp_path), ("serving",))
    assert circles == [[os.path.join("serving", f) for f in ("a.py", "b.py", "c.py")]]
    (pkg / "c.py").write_text("def f():\n    return 1\n")
    assert import_circles(str(tmp_path), ("serving",)) == []


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


def test_benchmarks_and_tests_stay_apart():
    """bench/ is shipped with the package and runs without the tests; a test that imported a benchmark would test
    an experiment instead of the product."""
    bench_to_tests = [f"{p}:{line}" for p in package_files("bench") for line, top in imports_of(p) if top == "tests"]
    tests_to_bench = [f"{p}:{line}" for p in package_files("tests") for line, top in imports_of(p) if top == "bench"]
    assert bench_to_tests == [] and tests_to_bench == []


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
