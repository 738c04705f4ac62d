"""The version loader of one model: which versions of a base path to serve, loading, warmup, retries, unloading,
and the per-version states GetModelStatus reports (TF Serving's AspiredVersionsManager, in miniature).

What it guarantees, with the server answering throughout:
- Only plain ASCII-digit directory names in canonical form (`7`, not `007` or `²`) are versions. Anything else
  that is not a dot-name (the Pusher's `.tmp-` / `.del-` dirs) is ignored and logged once, never retried.
- `latest { num_versions: n }` serves the n newest versions that *load*: a newer version that fails (junk, half
  written) is skipped and the next older one takes its place, so one bad directory never hides the rest, at
  start-up or later.
- A version that failed is retried on later polls with exponential back-off (poll, 2 x poll, 4 x ... up to
  `retry_max_seconds`), so a version completed in place after a failed load is picked up.
- A new version is loaded (and warmed up) before the one it replaces is unloaded; readers take the `available`
  dict by reference (it is replaced, never mutated), so a request in flight keeps the version it started with.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import grpc
from tensorflow_serving.apis import get_model_status_pb2

from schema.versions import is_version_name
from serving import metrics
from serving.errors import ServingError
from serving.model_config import ModelSpec

log = logging.getLogger("pinsage.serving.loader")
State = get_model_status_pb2.ModelVersionStatus


def scan(base_path: str) -> Tuple[List[int], List[str]]:
    """(versions ascending, ignored entries) of a model's base path; a missing base path has neither."""
    try:
        entries = os.listdir(base_path)
    except OSError:
        return [], []
    found, ignored = [], []
    for name in entries:
        if name.startswith("."):
            continue  # the Pusher's temp and retiring directories
        if is_version_name(name) and os.path.isdir(os.path.join(base_path, name)):
            found.append(int(name))
        else:
            ignored.append(name)
    return sorted(found), sorted(ignored)


@dataclasses.dataclass
class VersionRecord:
    """One version's state as GetModelStatus reports it; `error` set means the last load failed."""

    state: int = State.START
    error: Optional[str] = None
    failures: int = 0
    retry_at: float = 0.0


class ModelVersions:
    """The versions of one model. `poll()` (the poller thread) changes what is loaded; `resolve()` and
    `statuses()` (request threads) only read."""

    def __init__(
        self,
        spec: ModelSpec,
        load: Callable[[str, str, int], Any],
        warmup: Optional[Callable[[Any], int]],
        poll_seconds: float,
        retry_max_seconds: float,
    ):
        self.spec, self._load, self._warmup = spec, load, warmup
        self.poll_seconds, self.retry_max_seconds = poll_seconds, retry_max_seconds
        self.available: Dict[int, Any] = {}
        self.newest: Optional[Any] = None
        self.records: Dict[int, VersionRecord] = {}
        self._ignored_logged: set = set()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.spec.name

    # -- loading
    def poll(self) -> None:
        """Brings the loaded versions in line with the directory and the version policy."""
        with self._lock:
            present, ignored = scan(self.spec.base_path)
            for name in ignored:
                if name not in self._ignored_logged:
                    self._ignored_logged.add(name)
                    log.warning(
                        "%s: ignoring '%s' in %s: not a version directory", self.name, name, self.spec.base_path
                    )
            keep = self._choose(present)
            for v in sorted(set(self.available) - keep):
                self._unload(v)
            gone = [v for v, r in self.records.items() if v not in present and r.state == State.END]
            for v in gone:  # bounded: only versions still on disk keep an END record
                del self.records[v]

    def _choose(self, present: List[int]) -> set:
        """The versions to serve under the policy, loading the ones not loaded yet (newest first)."""
        policy = self.spec.policy
        if policy.kind == "specific":
            wanted, limit = [v for v in reversed(present) if v in policy.versions], len(present)
        elif policy.kind == "all":
            wanted, limit = list(reversed(present)), len(present)
        else:
            wanted, limit = list(reversed(present)), policy.num_versions
        chosen, now = set(), time.time()
        for v in wanted:
            if len(chosen) >= limit:
                break
            rec = self.records.get(v)
            if v in self.available or ((rec is None or rec.error is None or now >= rec.retry_at) and self._try(v)):
                chosen.add(v)
        return chosen

    def _try(self, version: int) -> bool:
        rec = self.records.setdefault(version, VersionRecord())
        rec.state = State.LOADING
        path = os.path.join(self.spec.base_path, str(version))
        start = time.time()
        try:
            loaded = self._load(self.name, path, version)
            warmed = self._warmup(loaded) if self._warmup else 0
        except Exception as e:  # a broken version is reported and retried later; the others keep serving
            rec.failures += 1
            delay = min(self.poll_seconds * 2 ** (rec.failures - 1), self.retry_max_seconds)
            rec.state, rec.error, rec.retry_at = State.END, f"{type(e).__name__}: {e}", time.time() + delay
            log.warning(
                "%s version %d failed to load (attempt %d, next try in %.1f s): %s",
                self.name,
                version,
                rec.failures,
                delay,
                rec.error,
                exc_info=rec.failures == 1,
            )
            return False
        available = dict(self.available)
        available[version] = loaded
        self.available, self.newest = available, available[max(available)]
        rec.state, rec.error = State.AVAILABLE, None
        metrics.LOADED_VERSIONS.labels(self.name).set(len(available))
        log.info(
            "%s version %d AVAILABLE (loaded in %.1f s, %d warmup requests)",
            self.name,
            version,
            time.time() - start,
            warmed,
        )
        return True

    def _unload(self, version: int) -> None:
        rec = self.records.setdefault(version, VersionRecord())
        rec.state = State.UNLOADING
        available = {v: m for v, m in self.available.items() if v != version}
        self.available, self.newest = available, (available[max(available)] if available else None)
        rec.state = State.END
        metrics.LOADED_VERSIONS.labels(self.name).set(len(available))
        log.info("%s version %d unloaded", self.name, version)

    def unload_all(self) -> None:
        with self._lock:
            for v in sorted(self.available):
                self._unload(v)
            try:
                metrics.LOADED_VERSIONS.remove(self.name)
            except KeyError:  # never had a version loaded
                pass

    def update(self, spec: ModelSpec) -> None:
        """A new config for the same model (policy or labels changed); the next poll applies it."""
        with self._lock:
            if spec.base_path != self.spec.base_path:  # another directory: its versions are other models
                for v in sorted(self.available):
                    self._unload(v)
                self.records, self._ignored_logged = {}, set()
            self.spec = spec

    # -- reading
    def resolve(self, model_spec) -> Any:
        """The loaded version a request's ModelSpec names: a number, a label, or (neither) the newest."""
        available, newest = self.available, self.newest
        if newest is None:
            raise ServingError(grpc.StatusCode.UNAVAILABLE, f"no version of '{self.name}' is available yet")
        choice = model_spec.WhichOneof("version_choice")
        if choice is None:
            return newest
        if choice == "version":
            v = available.get(model_spec.version.value)
            if v is None:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"version {model_spec.version.value} of '{self.name}' is not available "
                    f"(available: {sorted(available)})",
                )
            return v
        label = model_spec.version_label
        labels = self.spec.label_map
        if label not in labels:
            if label in ("latest", "stable"):  # not configured: both name the newest available version
                return newest
            known = sorted(set(labels) | {"latest", "stable"})
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"version label '{label}' is not defined for '{self.name}' (known: {known})"
            )
        v = available.get(labels[label])
        if v is None:
            raise ServingError(
                grpc.StatusCode.UNAVAILABLE,
                f"version label '{label}' of '{self.name}' names version {labels[label]}, which is not available "
                f"(available: {sorted(available)})",
            )
        return v

    def statuses(self, version: Optional[int] = None) -> List[Tuple[int, int, Optional[str]]]:
        """(version, state, error) per known version, ascending (one when `version` is given)."""
        records = dict(self.records)
        if version is not None:
            if version not in records:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"version {version} of '{self.name}' is not known")
            records = {version: records[version]}
        return [(v, r.state, r.error) for v, r in sorted(records.items())]
