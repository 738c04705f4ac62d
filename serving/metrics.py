"""The server's Prometheus metrics (prometheus_client), in one registry that both front ends share: the gRPC
handlers and the REST handlers record into it, and the REST port exposes it at the monitoring path when
`--monitoring_config_file` enables Prometheus (TF Serving's `prometheus_config { enable: true }`).

Names follow TF Serving's own `:tensorflow:serving:*` metrics in spirit (request count by model, signature and
status, request latency, loaded versions), spelled as valid Prometheus names.
"""

from __future__ import annotations

import time

import prometheus_client

REGISTRY = prometheus_client.CollectorRegistry(auto_describe=True)

REQUESTS = prometheus_client.Counter(
    "pinsage_serving_requests",
    "Requests answered, by API, model, signature and status code",
    ["api", "model", "signature", "status"],
    registry=REGISTRY,
)
LATENCY = prometheus_client.Histogram(
    "pinsage_serving_request_latency_seconds",
    "Wall time per request from receipt to response, by API, model and signature",
    ["api", "model", "signature"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
    registry=REGISTRY,
)
LOADED_VERSIONS = prometheus_client.Gauge(
    "pinsage_serving_loaded_versions", "Model versions loaded and AVAILABLE, by model", ["model"], registry=REGISTRY
)
BATCH_SIZE = prometheus_client.Histogram(
    "pinsage_serving_batch_size",
    "Requests merged into one index search by --enable_batching",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)


def prometheus_text() -> bytes:
    """The registry in the Prometheus text exposition format."""
    return prometheus_client.generate_latest(REGISTRY)


_CHILDREN: dict = {}


def record(api: str, model: str, signature: str, status: str, start: float) -> None:
    """Counts one answered request and its latency since `start` (time.perf_counter()). The labelled children
    are cached: prometheus_client's .labels() costs a lock and a tuple per call, on the hottest path there is."""
    key = (api, model, signature, status)
    pair = _CHILDREN.get(key)
    if pair is None:
        pair = _CHILDREN.setdefault(key, (REQUESTS.labels(*key), LATENCY.labels(api, model, signature)))
    pair[0].inc()
    pair[1].observe(time.perf_counter() - start)
