"""`--enable_batching` for related_items and similar_items: concurrent one-item requests are queued and up to
`max_batch_size` of them answered by one ScaNN `search_batched` call per signature's query vectors.

The scheduling follows TF Serving's BasicBatchScheduler: a batch closes when it is full or when its first request
has waited `batch_timeout_micros`; at most `max_enqueued_batches` batches wait, beyond that a request is refused
with UNAVAILABLE (load shedding, bounded memory) instead of queueing without limit.

Searches run on the asyncio loop that answers the gRPC requests, not on batch threads: a first version with
`num_batch_threads` worker threads (as TF Serving has) answered well below the unbatched server's QPS, because
every hand-off between the loop thread and a batch thread waits for the GIL (docs/DESIGN.md), and a search is
~0.1 ms. Multi-id requests are one batched search already and are not queued. recommend requests (checked before
they are queued) are batched too: the histories of a batch padded to one width, one call of the version's tower
(its SavedModel's recommend_query) and one search. A tower call takes milliseconds, mostly outside the GIL, so
these batches run on `num_batch_threads` batch threads (one hand-off per batch), while the loop goes on reading
and answering requests; a batch that finds every thread busy waits and takes what arrived meanwhile, up to
`max_batch_size`, once one is free (a thread beats the loop here: docs/PERFORMANCE.md, `bench/serving.py
--workload recommend --enable-batching`).

Hand-written because TF Serving's batcher batches TensorFlow session runs in C++, which this server does not
have (ScaNN is called from Python), and neither grpc nor asyncio has a request batcher.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any, List, Optional

import grpc
import numpy as np
import tensorflow as tf

from serving import metrics
from serving.errors import ServingError
from serving.model_config import BatchingOptions

log = logging.getLogger("pinsage.serving.batching")
HISTORIES = object()  # the "query vectors" of a recommend task: its histories go through the tower first


class Batcher:
    """The same batching on the asyncio loop that answers the requests: no threads for searches, so no GIL
    hand-offs; recommend batches on `num_batch_threads` batch threads.

    submit() (on the loop) queues a task and returns an asyncio future; the batch is searched on the loop when
    it is full, or by a callback `batch_timeout_micros` after its first task (call_soon for 0: whatever arrived
    in the same loop iteration, i.e. while the previous batch was searched, goes together). A recommend batch
    (a tower call of milliseconds, most of it outside the GIL) runs on a batch thread instead, so the loop keeps
    reading and answering requests meanwhile; while every batch thread is busy its tasks wait, and the next batch
    takes what arrived in the meantime (up to max_batch_size) as soon as a thread is free."""

    def __init__(self, options: BatchingOptions, loop):
        self.options, self.loop = options, loop
        self._pending: List[tuple] = []
        self._handle = None
        self._limit = options.max_enqueued_batches * options.max_batch_size
        self._threads = max(1, options.num_batch_threads)
        self._pool: Optional[futures.ThreadPoolExecutor] = None
        self._running = 0  # recommend batches on the batch threads now

    def submit(self, version, row: int, k: int, *, vectors=None):
        """Queues top-k of vectors[row] (the signature's query vectors; default version.queries, related_items')."""
        return self._enqueue(version, version.queries if vectors is None else vectors, row, k)

    def submit_histories(self, version, ids: np.ndarray, weights: np.ndarray, k: int):
        """Queues recommend for histories ids [n, L] (weights [n, L]); the future gets its outputs dict."""
        return self._enqueue(version, HISTORIES, (ids, weights), k)

    def _enqueue(self, version, vectors, payload, k: int):
        if len(self._pending) >= self._limit:
            raise ServingError(
                grpc.StatusCode.UNAVAILABLE,
                f"the batch queue is full ({self.options.max_enqueued_batches} batches of "
                f"{self.options.max_batch_size}); retry later",
            )
        fut = self.loop.create_future()
        self._pending.append((version, vectors, payload, k, fut))
        if len(self._pending) >= self.options.max_batch_size:
            self.loop.call_soon(self._flush)
        elif self._handle is None:
            t = self.options.batch_timeout_micros / 1e6
            self._handle = self.loop.call_later(t, self._flush) if t > 0 else self.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        size = self.options.max_batch_size
        searches = [t for t in self._pending if t[1] is not HISTORIES]
        self._pending = [t for t in self._pending if t[1] is HISTORIES]
        for at in range(0, len(searches), size):
            settle(run_batch(searches[at : at + size]))
        while self._pending and self._running < self._threads:
            batch, self._pending = self._pending[:size], self._pending[size:]
            if self._pool is None:
                self._pool = futures.ThreadPoolExecutor(self._threads, thread_name_prefix="batch")
            self._running += 1
            self.loop.run_in_executor(self._pool, run_batch, batch).add_done_callback(self._batch_done)

    def _batch_done(self, done) -> None:
        """On the loop: a batch thread's answers set, and the tasks that waited for a free thread started."""
        self._running -= 1
        settle(done.result())  # run_batch catches what its batch raises
        if self._pending:
            self._flush()


def run_batch(tasks: List[tuple]) -> List[tuple]:
    """[(future, result, exception)] for a batch's tasks: one search (recommend: one tower call and one search) per
    version and query vectors; a failure fails its group only. The futures are not touched: they belong to the
    loop, and this may run on a batch thread."""
    groups: dict = {}  # one search per version and query vectors (related_items' / similar_items' / histories)
    for t in tasks:
        groups.setdefault((id(t[0]), id(t[1])), []).append(t)
    out = []
    for group in groups.values():
        v, vectors = group[0][0], group[0][1]
        run = recommend_batch if vectors is HISTORIES else search_batch
        try:
            out += [(t[4], res, None) for t, res in zip(group, run(v, [(r, k) for _, _, r, k, _ in group], vectors))]
        except Exception as e:
            log.exception("batch of %d failed", len(group))
            out += [(t[4], None, e) for t in group]
    return out


def settle(answers: List[tuple]) -> None:
    """run_batch's answers into their futures, on the loop (a future already cancelled is left as it is)."""
    for fut, res, exc in answers:
        if fut.done():
            continue
        if exc is None:
            fut.set_result(res)
        else:
            fut.set_exception(exc)


def recommend_batch(v: Any, queries: List[tuple], _=None) -> list:
    """[((ids [n, L], weights [n, L]), k)] -> [outputs] from one tower call and one search over every history,
    the rows padded to the widest ("" and weight 0: no item) and each answer cut to its k."""
    metrics.BATCH_SIZE.labels(v.model_name).observe(len(queries))
    width = max(ids.shape[1] for (ids, _), _ in queries)
    total = sum(len(ids) for (ids, _), _ in queries)
    all_ids, all_w = np.full((total, width), b"", object), np.zeros((total, width), np.float32)
    at = 0
    for (ids, w), _ in queries:
        all_ids[at : at + len(ids), : ids.shape[1]], all_w[at : at + len(ids), : ids.shape[1]] = ids, w
        at += len(ids)
    u, rows, used = v.saved_model.recommend_query(tf.constant(all_ids), tf.constant(all_w))
    idx, scores = v.search_excluding(u.numpy(), rows.numpy(), max(k for _, k in queries))
    used, out, at = used.numpy(), [], 0
    for (ids, _), k in queries:
        part = slice(at, at + len(ids))
        out.append(dict(v.outputs(idx[part, :k], scores[part, :k]), history_used=used[part]))
        at += len(ids)
    return out


def search_batch(v: Any, queries: List[tuple], vectors=None) -> list:
    """[(row, k)] -> [(ids, scores)] from one ScaNN call for vectors[row] (default v.queries), the query row
    dropped (else the (k+1)-th)."""
    vectors = v.queries if vectors is None else vectors
    metrics.BATCH_SIZE.labels(v.model_name).observe(len(queries))
    kmax = max(k for _, k in queries) + 1
    if len(queries) == 1:
        idx, dist = v.index.searcher.search(vectors[queries[0][0]], final_num_neighbors=kmax)
        idx, dist = np.asarray(idx)[None], np.asarray(dist, np.float32)[None]
    else:
        rows = np.fromiter((r for r, _ in queries), np.int64, len(queries))
        idx, dist = v.index.searcher.search_batched(vectors[rows], final_num_neighbors=kmax)
        idx, dist = np.asarray(idx), np.asarray(dist, np.float32)
    out = []
    for (row, k), ids, scores in zip(queries, idx.tolist(), dist):
        if row in ids:
            j = ids.index(row)
            del ids[j]
            scores = np.delete(scores, j)
        out.append((ids[:k], scores[:k]))
    return out
