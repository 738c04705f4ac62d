"""A non-local filesystem that needs no network, for the remote-I/O tests: TensorFlow's in-memory `ram://`
(tf.io.gfile knows it), made visible to the two other file layers a pipeline stage goes through, the way
apache-beam[gcp] and TFX's TensorFlow plugin make `gs://` visible to them:

- TFX's fileio (tfx.dsl.io): its TensorFlow plugin lists '', gs://, hdfs://, s3:// only, so a subclass that
  lists ram:// is registered;
- Beam (apache_beam.io.filesystems): a `FileSystem` subclass for the scheme `ram`, registered by being defined
  (Beam picks a filesystem among FileSystem's subclasses by scheme), over tf.io.gfile.

Importing this module registers both. ram:// lives in this process's memory only, so the Beam pipelines that
use it must run in-process (DirectRunner, one worker).
"""

from __future__ import annotations

import io
import posixpath
import uuid

import tensorflow as tf
from apache_beam.io.filesystem import BeamIOError, CompressedFile, CompressionTypes, FileMetadata, FileSystem
from tfx.dsl.io import filesystem_registry
from tfx.dsl.io.plugins.tensorflow_gfile import TensorflowFilesystem

gfile = tf.io.gfile


class RamTfxFilesystem(TensorflowFilesystem):
    SUPPORTED_SCHEMES = ["ram://"]


filesystem_registry.DEFAULT_FILESYSTEM_REGISTRY.register(RamTfxFilesystem, priority=10)


class _Download(io.BytesIO):
    """A read channel: the object's bytes (Beam's CompressedFile reads the `mode` of what it wraps)."""

    mode = "rb"


class _Upload(io.BytesIO):
    """A write channel: the bytes go to gfile in one write when Beam closes it (as an object store uploads)."""

    mode = "wb"

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def close(self):
        if not self.closed:
            gfile.makedirs(posixpath.dirname(self._path))
            with gfile.GFile(self._path, "wb") as f:
                f.write(self.getvalue())
        super().close()


class RamBeamFileSystem(FileSystem):
    """Beam's FileSystem interface over tf.io.gfile for ram:// paths (the methods LocalFileSystem implements)."""

    @classmethod
    def scheme(cls):
        return "ram"

    def join(self, basepath, *paths):
        return posixpath.join(basepath, *paths)

    def split(self, path):
        return posixpath.dirname(path), posixpath.basename(path)

    def mkdirs(self, path):
        gfile.makedirs(path)

    def has_dirs(self):
        return True

    def _list(self, dir_or_prefix):
        if not gfile.exists(dir_or_prefix):
            return
        for d, _, names in gfile.walk(dir_or_prefix):
            for n in names:
                path = posixpath.join(d, n)
                yield FileMetadata(path, gfile.stat(path).length, gfile.stat(path).mtime_nsec / 1e9)

    def _wrap(self, raw, path, compression_type):
        compression_type = FileSystem._get_compression_type(path, compression_type)
        return raw if compression_type == CompressionTypes.UNCOMPRESSED else CompressedFile(raw, compression_type)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._wrap(_Upload(path), path, compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        with gfile.GFile(path, "rb") as f:
            return self._wrap(_Download(f.read()), path, compression_type)

    def copy(self, source_file_names, destination_file_names):
        for s, d in zip(source_file_names, destination_file_names):
            gfile.makedirs(posixpath.dirname(d))
            gfile.copy(s, d, overwrite=True)

    def rename(self, source_file_names, destination_file_names):
        for s, d in zip(source_file_names, destination_file_names):
            gfile.makedirs(posixpath.dirname(d))
            gfile.rename(s, d, overwrite=True)

    def exists(self, path):
        return gfile.exists(path)

    def size(self, path):
        return gfile.stat(path).length

    def last_updated(self, path):
        return gfile.stat(path).mtime_nsec / 1e9

    def checksum(self, path):
        return str(gfile.stat(path).length)

    def metadata(self, path):
        if not gfile.exists(path):
            raise BeamIOError(f"Path does not exist: {path}")
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        for p in paths:
            if gfile.isdir(p):
                gfile.rmtree(p)
            elif gfile.exists(p):
                gfile.remove(p)


def fresh_root() -> str:
    """A new, empty ram:// directory for one test."""
    root = f"ram://pinsage-{uuid.uuid4().hex[:8]}"
    gfile.makedirs(root)
    return root
