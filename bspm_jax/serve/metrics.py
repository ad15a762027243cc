"""The server's Prometheus metrics, in a registry of its own (no global state): requests and errors by endpoint
and status, latencies by endpoint, batch sizes, reloads."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """Counters and histograms of one server; :meth:`text` is the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("bspm_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.errors = Counter("bspm_request_errors", "requests answered with a 4xx or 5xx status, by endpoint",
                              ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("bspm_request_seconds", "seconds from a request's arrival to its answer, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("bspm_batch_rows", "histories scored together in one call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.reloads = Counter("bspm_reloads", "model reloads, by outcome", ["outcome"], registry=self.registry)
        self.loaded = Gauge("bspm_model_loaded_timestamp_seconds", "when the served model was loaded",
                            registry=self.registry)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
