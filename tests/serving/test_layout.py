"""serving/'s layout: the REST front end drives the request core through its public methods only (no `_` name of
another module), and no file of serving/ grows past a size one can review. tests/test_layers.py checks that no two
files import each other."""

import ast
import os

from tests.fixtures import REPO_ROOT

SERVING = os.path.join(REPO_ROOT, "serving")
MAX_LINES = 600


def private_names_from_elsewhere(source: str) -> list[str]:
    """`line: name` for every `_`-prefixed name the module takes from another module: a name it imports
    (`from m import _x`, `import m._x`), or an attribute read off anything but its own `self` / `cls`
    (`core._predict`, `self.server._status`, `m._x`). Dunders (`__name__`) are Python's, not another module's."""

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            bad += [f"{node.lineno}: {a.name}" for a in node.names if private(a.name)]
        elif isinstance(node, ast.Import):
            bad += [f"{node.lineno}: {a.name}" for a in node.names if any(map(private, a.name.split(".")))]
        elif isinstance(node, ast.Attribute) and private(node.attr):
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own:
                bad.append(f"{node.lineno}: {ast.unparse(node)}")
    return bad


def test_rest_uses_only_public_names_of_other_modules():
    with open(os.path.join(SERVING, "rest.py"), encoding="utf-8") as f:
        assert private_names_from_elsewhere(f.read()) == []


def test_the_private_name_check_can_fail():
    source = (
        "from serving.core import _helper, ModelServer\n"
        "import serving._internal\n"
        "class Api:\n"
        "    def answer(self, request):\n"
        "        self._cache = {}\n"  # its own attribute: fine
        "        return self.server._predict(request), ModelServer._respond_one, __name__\n"
    )
    assert sorted(private_names_from_elsewhere(source)) == [
        "1: _helper",
        "2: serving._internal",
        "6: ModelServer._respond_one",
        "6: self.server._predict",
    ]


def test_no_serving_file_is_over_the_size_limit():
    sizes = {}
    for name in sorted(os.listdir(SERVING)):
        if name.endswith(".py"):
            with open(os.path.join(SERVING, name), encoding="utf-8") as f:
                sizes[name] = sum(1 for _ in f)
    assert sizes and {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
