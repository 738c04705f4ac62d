"""`--enable_batching` for related_items: concurrent requests' query rows go into a queue, and a batch thread
answers up to `max_batch_size` of them with one ScaNN `search_batched` call.

Why: one batched search over B queries costs much less than B single searches (ScaNN scores the partition
centroids and the asymmetric-hashing tables for the whole batch at once, and the pybind call overhead is paid
once). The scheduling follows TF Serving's BasicBatchScheduler: a batch closes when it is full or when its first
request has waited `batch_timeout_micros`; at most `max_enqueued_batches` batches wait, beyond that a request is
refused with UNAVAILABLE (load shedding, bounded memory) instead of queueing without limit;
`num_batch_threads` threads run batches.

Hand-written because TF Serving's batcher batches TensorFlow session runs in C++, which this server does not
have (ScaNN is called from Python), and tf.data / grpc have no request batcher.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent import futures
from typing import Any, List, Optional

import grpc
import numpy as np

from serving import metrics
from serving.errors import ServingError
from serving.model_config import BatchingOptions

log = logging.getLogger("pinsage.serving.batching")


class _Task:
    __slots__ = ("version", "row", "k", "future", "enqueued")

    def __init__(self, version, row: int, k: int):
        self.version, self.row, self.k = version, row, k
        self.future: futures.Future = futures.Future()
        self.enqueued = time.perf_counter()


class Batcher:
    """Batches (version, query row, k) tasks; each task's future gets (ids as a list of rows, scores float32)
    with the query row itself dropped, exactly as the unbatched path answers."""

    def __init__(self, options: BatchingOptions):
        self.options = options
        self._queue: "queue.Queue[Optional[_Task]]" = queue.Queue(
            maxsize=options.max_enqueued_batches * options.max_batch_size
        )
        self._threads = [
            threading.Thread(target=self._run, name=f"batch-{i}", daemon=True) for i in range(options.num_batch_threads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, version, row: int, k: int) -> futures.Future:
        task = _Task(version, row, k)
        try:
            self._queue.put_nowait(task)
        except queue.Full:
            raise ServingError(
                grpc.StatusCode.UNAVAILABLE,
                f"the batch queue is full ({self.options.max_enqueued_batches} batches of "
                f"{self.options.max_batch_size}); retry later",
            ) from None
        return task.future

    def search_rows(self, version, rows: np.ndarray, k: int):
        """[B] rows -> ([B, k] rows, [B, k] scores) through the batches (for multi-id requests)."""
        fs = [self.submit(version, int(r), k) for r in rows]
        got = [f.result() for f in fs]
        idx = np.array([g[0] for g in got], np.int64).reshape(len(rows), k)
        return idx, np.array([g[1] for g in got], np.float32).reshape(len(rows), k)

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=10)

    # -- the batch threads
    def _next_batch(self) -> Optional[List[_Task]]:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = first.enqueued + self.options.batch_timeout_micros / 1e6
        while len(batch) < self.options.max_batch_size:
            wait = deadline - time.perf_counter()
            try:
                task = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if task is None:  # stop: finish this batch, then let the thread end
                self._queue.put(None)
                break
            batch.append(task)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            groups: dict = {}
            for t in batch:  # a version swap can put two versions in one batch
                groups.setdefault(id(t.version), []).append(t)
            for tasks in groups.values():
                try:
                    self._answer(tasks[0].version, tasks)
                except Exception as e:  # a bug or a broken index: every task of the batch gets the error
                    log.exception("batch of %d failed", len(tasks))
                    for t in tasks:
                        if not t.future.done():
                            t.future.set_exception(e)

    @staticmethod
    def _answer(v: Any, tasks: List[_Task]) -> None:
        metrics.BATCH_SIZE.labels(v.model_name).observe(len(tasks))
        kmax = max(t.k for t in tasks) + 1
        if len(tasks) == 1:
            idx, dist = v.index.searcher.search(v.queries[tasks[0].row], final_num_neighbors=kmax)
            idx, dist = np.asarray(idx)[None], np.asarray(dist, np.float32)[None]
        else:
            queries = v.queries[np.fromiter((t.row for t in tasks), np.int64, len(tasks))]
            idx, dist = v.index.searcher.search_batched(queries, final_num_neighbors=kmax)
            idx, dist = np.asarray(idx), np.asarray(dist, np.float32)
        for t, ids, scores in zip(tasks, idx.tolist(), dist):
            if t.row in ids:  # drop the query item itself, else the (k+1)-th
                j = ids.index(t.row)
                del ids[j]
                scores = np.delete(scores, j)
            t.future.set_result((ids[: t.k], scores[: t.k]))
