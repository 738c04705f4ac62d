"""schema/files.py: every call gives the same result on a local path and on a URI (TF's ram://), including the
cases where TF's ram:// listing is wrong (children matched by name prefix) and where an object store has no
directory rename; a local-only process never imports TensorFlow."""

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from schema import files
from tests.fixtures import REPO_ROOT
from tests.remote_fs import fresh_root


@pytest.fixture(params=["local", "ram"])
def root(request, tmp_path):
    return str(tmp_path) if request.param == "local" else fresh_root()


def tree(root):
    """assets/ next to assets.extra/ (a SavedModel's layout: ram://'s listdir of assets/ also shows '.extra')."""
    for rel, text in (("v/assets/ids.txt", "a\nb\n"), ("v/assets.extra/warm", "w"), ("v/.tmp-1/x/y", "t")):
        files.makedirs(files.dirname(files.join(root, *rel.split("/"))))
        files.write_text(files.join(root, *rel.split("/")), text)
    files.makedirs(files.join(root, "v", "empty"))
    return files.join(root, "v")


def test_listing(root):
    v = tree(root)
    assert files.listdir(v) == [".tmp-1", "assets", "assets.extra", "empty"]
    assert files.listdir(files.join(v, "assets")) == ["ids.txt"]
    assert files.walk_files(v) == [".tmp-1/x/y", "assets.extra/warm", "assets/ids.txt"]
    assert files.glob(files.join(v, "assets*")) == [files.join(v, "assets"), files.join(v, "assets.extra")]
    assert files.glob(files.join(root, "nowhere", "*")) == []
    assert files.isdir(files.join(v, "empty")) and not files.isfile(files.join(v, "empty"))
    assert files.isfile(files.join(v, "assets", "ids.txt")) and not files.exists(files.join(v, "assets", ".extra"))
    with pytest.raises(FileNotFoundError):
        files.listdir(files.join(root, "nowhere"))


def test_copy_rename_and_delete_trees(root):
    v = tree(root)
    files.copytree(v, files.join(root, "w"))
    assert files.walk_files(files.join(root, "w")) == files.walk_files(v)
    with pytest.raises(FileExistsError):
        files.copytree(v, files.join(root, "w"))
    files.rename(files.join(root, "w"), files.join(root, "z"))  # a directory: the files go with it
    assert not files.exists(files.join(root, "w")) and files.read_text(files.join(root, "z", "assets.extra", "warm"))
    with pytest.raises(OSError):  # onto a non-empty directory: ENOTEMPTY locally, FileExistsError remote
        files.rename(v, files.join(root, "z"))
    files.rmtree(files.join(root, "z"))
    assert not files.exists(files.join(root, "z")) and files.walk_files(v)  # the sibling tree is untouched
    files.rmtree(files.join(root, "z"), ignore_errors=True)  # gone already: no error asked for, none raised
    files.remove(files.join(v, "assets", "ids.txt"))
    assert files.walk_files(files.join(v, "assets")) == []


def test_values_round_trip(root):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    files.np_save(files.join(root, "e.npy"), arr)
    np.testing.assert_array_equal(files.np_load(files.join(root, "e.npy")), arr)
    files.write_json(files.join(root, "s.json"), {"a": [1, 2]}, indent=1)
    assert files.read_json(files.join(root, "s.json")) == {"a": [1, 2]}
    with files.open(files.join(root, "l.txt"), "w", newline="\n") as f:
        f.write("é\nx\n")
    assert files.read_bytes(files.join(root, "l.txt")) == "é\nx\n".encode()
    t = pa.table({"a": np.arange(50_000), "b": [str(i) for i in range(50_000)]})
    files.write_parquet(t, files.join(root, "t.parquet"), row_group_size=10_000)
    assert files.read_parquet(files.join(root, "t.parquet"), columns=["b"]).equals(t.select(["b"]))
    pf = files.parquet_file(files.join(root, "t.parquet"))
    assert pf.metadata.num_rows == 50_000 and pf.metadata.num_row_groups == 5
    assert sum(b.num_rows for b in pf.iter_batches(batch_size=7_000, columns=["a"])) == 50_000


def test_staging_for_local_only_libraries(root, tmp_path):
    with files.staged_dir(files.join(root, "s")) as local:
        assert not files.is_remote(local)
        with open(os.path.join(local, "f"), "w") as f:
            f.write("x")
    assert files.read_text(files.join(root, "s", "f")) == "x"
    with files.local_copy(files.join(root, "s")) as local:
        assert open(os.path.join(local, "f")).read() == "x"
    if files.is_remote(root):  # the temporary local copies are gone
        assert not os.path.exists(local)


def test_uri_paths_are_not_rewritten_as_local_ones():
    assert files.abspath("gs://b/root") == "gs://b/root" and files.dirname("gs://b/root/") == "gs://b"
    assert files.join("s3://b", "x", "y") == "s3://b/x/y"
    assert files.abspath("rel") == os.path.join(os.getcwd(), "rel")


def test_local_paths_never_import_tensorflow(tmp_path):
    code = (
        "import sys; from schema import files; d = sys.argv[1]; files.makedirs(files.join(d, 'a')); "
        "files.write_json(files.join(d, 'a', 'x.json'), [1]); files.copytree(files.join(d, 'a'), files.join(d, 'b')); "
        "assert files.listdir(d) == ['a', 'b'] and files.read_json(files.join(d, 'b', 'x.json')) == [1]; "
        "sys.exit(1 if 'tensorflow' in sys.modules else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
