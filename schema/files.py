"""File access for artifact URIs: one small set of calls that works on a local path and on `gs://`, `s3://`,
`hdfs://` (or any scheme TensorFlow's filesystem registry knows, `ram://` in tests) alike.

Every executor and library function that touches an artifact URI goes through here instead of `open`, `os.path.*`,
`glob`, `shutil`, `np.load`/`np.save` or pyarrow-by-path, which only know the local disk
(tests/test_no_local_io.py enforces it). A path with a `scheme://` goes to `tf.io.gfile`, the same library
TFX's own fileio delegates gs:// and s3:// to; a plain local path keeps the local call it always had, so that
local runs behave exactly as before (atomic `os.rename`, memory-mapped Parquet) and the contracts still load
without TensorFlow (tests/test_layers.py): TensorFlow is imported on the first remote path only.

pyarrow reads a remote Parquet file from its bytes (a whole-table read) or through `_GFileReader` (the footer
only, for row counts), and writes it to a buffer that is then written in one call; numpy arrays likewise.
"""

from __future__ import annotations

import builtins
import contextlib
import glob as _glob
import io
import json
import os
import posixpath
import shutil
import tempfile
from typing import Iterator, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def is_remote(path) -> bool:
    """True for a URI with a scheme (`gs://b/x`, `ram://x`), False for a local path."""
    return "://" in os.fspath(path)


def _gfile():
    import tensorflow as tf  # only here: a local-only run never needs it

    return tf.io.gfile


def join(path, *parts) -> str:
    return posixpath.join(os.fspath(path), *parts) if is_remote(path) else os.path.join(path, *parts)


def abspath(path) -> str:
    """os.path.abspath of a local path; a URI is already absolute (abspath would turn gs://b into <cwd>/gs:/b)."""
    return os.fspath(path) if is_remote(path) else os.path.abspath(path)


def dirname(path) -> str:
    return posixpath.dirname(os.fspath(path).rstrip("/")) if is_remote(path) else os.path.dirname(path)


def open(path, mode: str = "r", encoding: str = "utf-8", newline: str | None = None):  # noqa: A001
    """A file object: builtins.open for a local path (text in `encoding`), tf.io.gfile.GFile for a URI (text is
    UTF-8, newlines untranslated, i.e. as newline='\\n')."""
    if is_remote(path):
        return _gfile().GFile(os.fspath(path), mode)
    if "b" in mode:
        return builtins.open(path, mode)
    return builtins.open(path, mode, encoding=encoding, newline=newline)


def exists(path) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path) -> bool:
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def isfile(path) -> bool:
    if is_remote(path):
        return exists(path) and not isdir(path)
    return os.path.isfile(path)


def makedirs(path) -> None:
    """Creates the directory and its parents; no error if it exists (object stores have no empty directories
    on their own: gfile writes a marker where needed)."""
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def _children(path) -> List[str]:
    """A remote directory's entries as full paths, by a `*` glob: TF's ram:// listdir (and walk) match children by
    name prefix, so `assets` would list `.extra` of a sibling `assets.extra`; a glob matches whole names on every
    filesystem (a dot-name included)."""
    return sorted(p.rstrip("/") for p in _gfile().glob(posixpath.join(os.fspath(path).rstrip("/"), "*")))


def listdir(path) -> List[str]:
    """Entry names, sorted (FileNotFoundError for a directory that does not exist, as os.listdir)."""
    if is_remote(path):
        if not isdir(path):
            raise FileNotFoundError(f"no directory {path}")
        return [posixpath.basename(p) for p in _children(path)]
    return sorted(os.listdir(path))


def glob(pattern) -> List[str]:
    """Paths matching a `*` / `?` pattern (not recursive), sorted."""
    if is_remote(pattern):
        try:
            return sorted(_gfile().glob(pattern))
        except _gfile_not_found():
            return []
    return sorted(_glob.glob(pattern))


def walk_files(root) -> List[str]:
    """Every file under `root` (recursively), as '/'-separated paths relative to it, sorted."""
    if not is_remote(root):
        return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
    out, todo = [], [("", os.fspath(root))]
    while todo:
        rel, d = todo.pop()
        for p in _children(d):
            name = posixpath.join(rel, posixpath.basename(p)) if rel else posixpath.basename(p)
            if isdir(p):
                todo.append((name, p))
            else:
                out.append(name)
    return sorted(out)


def _gfile_not_found():
    import tensorflow as tf

    return tf.errors.NotFoundError


def remove(path) -> None:
    if is_remote(path):
        _gfile().remove(path)
    else:
        os.remove(path)


def rmtree(path, ignore_errors: bool = False) -> None:
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=ignore_errors)
        return
    try:
        try:
            _gfile().rmtree(path)
        except _gfile_not_found():  # ram:// lists children by name prefix (see _children): delete by our listing
            _rmtree_by_listing(path)
    except Exception:
        if not ignore_errors:
            raise


def _rmtree_by_listing(path) -> None:
    dirs, todo = [], [os.fspath(path)]
    while todo:
        d = todo.pop()
        dirs.append(d)
        for p in _children(d):
            if isdir(p):
                todo.append(p)
            else:
                _gfile().remove(p)
    for d in sorted(dirs, key=len, reverse=True):  # deepest first, each empty by then
        if _gfile().exists(d):
            _gfile().remove(d)


def copy(src, dst, overwrite: bool = False) -> None:
    """One file; either side may be local or remote."""
    if not (is_remote(src) or is_remote(dst)):
        if not overwrite and os.path.exists(dst):
            raise FileExistsError(dst)
        shutil.copy2(src, dst)
        return
    _gfile().copy(os.fspath(src), os.fspath(dst), overwrite=overwrite)


def copytree(src, dst) -> None:
    """A directory tree into `dst` (created; must not exist locally, as shutil.copytree); either side may be
    local or remote: a local tree uploads to a URI and back."""
    if not (is_remote(src) or is_remote(dst)):
        shutil.copytree(src, dst)
        return
    if exists(dst):
        raise FileExistsError(f"{dst} exists")
    makedirs(dst)
    for rel in walk_files(src):
        target = join(dst, *rel.split("/"))
        makedirs(dirname(target))
        _gfile().copy(join(src, *rel.split("/")), target, overwrite=True)


def rename(src, dst) -> None:
    """A file or directory to a new name that must not exist. Local: os.rename (atomic on one filesystem).
    Remote: a file through gfile; a directory by copy then delete, since object stores have no directory rename
    (neither does TF's ram:// filesystem, whose rename leaves the files behind), so it is not atomic there."""
    if not is_remote(src):
        os.rename(src, dst)
        return
    if exists(dst):
        raise FileExistsError(f"{dst} exists")
    if isdir(src):
        copytree(src, dst)
        rmtree(src)
    else:
        _gfile().rename(src, dst, overwrite=False)


def read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write_bytes(path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def read_text(path) -> str:
    with open(path, "r") as f:
        return f.read()


def write_text(path, text: str) -> None:
    with open(path, "w", newline="\n") as f:
        f.write(text)


def read_json(path):
    return json.loads(read_text(path))


def write_json(path, obj, **dump_kw) -> None:
    write_text(path, json.dumps(obj, **dump_kw))


def np_load(path) -> np.ndarray:
    if is_remote(path):
        return np.load(io.BytesIO(read_bytes(path)), allow_pickle=False)
    return np.load(path, allow_pickle=False)


def np_save(path, array) -> None:
    if not is_remote(path):
        np.save(path, array)
        return
    buf = io.BytesIO()
    np.save(buf, array)
    write_bytes(path, buf.getvalue())


def read_parquet(path, columns=None, filters=None) -> pa.Table:
    """A Parquet file as a Table, optionally only the rows pyarrow's `filters` keep (the local file memory-mapped
    by pyarrow; a remote one read as bytes)."""
    if is_remote(path):
        return pq.read_table(pa.BufferReader(read_bytes(path)), columns=columns, filters=filters)
    return pq.read_table(path, columns=columns, filters=filters)


def write_parquet(table: pa.Table, path, **kw) -> None:
    if not is_remote(path):
        pq.write_table(table, path, **kw)
        return
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, **kw)
    write_bytes(path, buf.getvalue().to_pybytes())


class _GFileReader(io.RawIOBase):
    """A GFile as the raw seekable stream pyarrow's ParquetFile reads (GFile has no `closed`/`readinto`), so that
    a row count or a row-group iteration reads the footer and the groups it needs, not the whole object."""

    def __init__(self, f):
        self._f = f

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        return self._f.seek(offset, whence)

    def tell(self):
        return self._f.tell()

    def readinto(self, b):
        data = self._f.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self):
        self._f.close()
        super().close()


def parquet_file(path) -> pq.ParquetFile:
    """pq.ParquetFile on a local path or a URI (metadata and row groups read on demand)."""
    if is_remote(path):
        return pq.ParquetFile(_GFileReader(_gfile().GFile(os.fspath(path), "rb")))
    return pq.ParquetFile(path)


@contextlib.contextmanager
def local_copy(path) -> Iterator[str]:
    """A local path holding what `path` holds, for libraries that read only local files (ScaNN's loader): the
    path itself when local, else a temporary download (a file or a whole directory), deleted afterwards."""
    if not is_remote(path):
        yield os.fspath(path)
        return
    with tempfile.TemporaryDirectory(prefix="pinsage-get-") as tmp:
        local = os.path.join(tmp, posixpath.basename(os.fspath(path).rstrip("/")) or "data")
        if isdir(path):
            copytree(path, local)
        else:
            copy(path, local, overwrite=True)
        yield local


@contextlib.contextmanager
def staged_dir(path) -> Iterator[str]:
    """A local directory to write into for libraries that write only local files (ScaNN's serialize): `path`
    itself (created) when local, else a temporary one uploaded to `path` when the block succeeds."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)
        yield os.fspath(path)
        return
    with tempfile.TemporaryDirectory(prefix="pinsage-put-") as tmp:
        yield tmp
        copytree(tmp, path)
