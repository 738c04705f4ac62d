"""The Trainer's cache key covers every source file the trainer runs: a change to any of them re-trains; the
checkpoint dir's key is that cache key's inputs and properties."""

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


def test_the_checkpoint_key_is_the_cache_key_inputs_and_properties():
    """A killed try and its rerun (same upstream artifacts, same properties) share the checkpoint dir; another
    input artifact, other hparams or other code get another."""
    from tfx.types import standard_artifacts

    from pipeline.components.trainer import checkpoint_key

    def inputs(graph_uri="/root/GraphGen/graph/7"):
        ex, g = standard_artifacts.Examples(), standard_artifacts.Examples()
        ex.uri, g.uri = "/root/Transform/transformed_examples/9", graph_uri
        return {"examples": [ex], "graph": [g]}

    props = {"hparams": '{"epochs": 2}', "code_fingerprint": "abc", "eval_contexts": 0}
    key = checkpoint_key(inputs(), props)
    assert key == checkpoint_key(inputs(), dict(reversed(list(props.items()))))  # order does not matter
    assert checkpoint_key(inputs("/root/GraphGen/graph/8"), props) != key
    assert checkpoint_key(inputs(), dict(props, hparams='{"epochs": 3}')) != key
    assert checkpoint_key(inputs(), dict(props, code_fingerprint="abd")) != key
    assert checkpoint_key({"examples": inputs()["examples"], "pairs": inputs()["graph"]}, props) != key
