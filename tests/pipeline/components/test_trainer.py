"""The Trainer's cache key covers every source file the trainer runs: a change to any of them re-trains."""

import os
import shutil

from pipeline.components.trainer import DEFAULT_RUN_FN, code_files, code_fingerprint
from tests.fixtures import REPO_ROOT

MODULE = DEFAULT_RUN_FN.rpartition(".")[0]


def rel(paths):
    return {os.path.relpath(p, REPO_ROOT) for p in paths}


def test_code_files_follow_the_imports_into_schema_and_modules():
    files = rel(code_files(MODULE))
    # what run_fn reaches through imports, at any depth (function-level ones included)
    assert {
        "modules/trainer.py",
        "modules/train.py",
        "modules/embedding.py",
        "modules/evaluation.py",
        "modules/cooccurrence.py",
        "modules/__init__.py",
        "schema/graph.py",
        "schema/pairs.py",
        "schema/neighborhoods.py",
        "schema/embeddings.py",
        "schema/__init__.py",
    } <= files
    assert not any(f.startswith(("pipeline/", "serving/")) for f in files)


def copy_tree(dst):
    for pkg in ("schema", "modules"):
        shutil.copytree(os.path.join(REPO_ROOT, pkg), dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))


def test_a_changed_byte_in_any_imported_module_changes_the_fingerprint(tmp_path):
    copy_tree(tmp_path)
    base = code_fingerprint(MODULE, root=str(tmp_path))
    assert base == code_fingerprint(MODULE, root=REPO_ROOT)  # paths are relative: the copy has the same key
    for f in ("schema/pairs.py", "modules/evaluation.py", "schema/__init__.py"):
        path = tmp_path / f
        original = path.read_bytes()
        path.write_bytes(original + b"\n# changed\n")
        assert code_fingerprint(MODULE, root=str(tmp_path)) != base, f
        path.write_bytes(original)
    assert code_fingerprint(MODULE, root=str(tmp_path)) == base
    (tmp_path / "modules" / "unrelated.py").write_text("x = 1\n")  # imported by nothing the trainer runs
    assert code_fingerprint(MODULE, root=str(tmp_path)) == base
