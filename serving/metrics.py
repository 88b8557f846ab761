"""Prometheus metrics for the API, one registry per app so several apps can live in one process."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Buckets sized for a CPU model: a few ms for triage up to seconds for LLM drafts.
LATENCY_BUCKETS = (0.005, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    def __init__(self) -> None:
        # `*_created` timestamp series double the scrape size and no dashboard here uses them.
        disable_created_metrics()
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ticketops_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "ticketops_http_request_duration_seconds",
            "Request latency by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "ticketops_predictions",
            "Tickets triaged, by endpoint and predicted topic",
            ["endpoint", "topic"],
            registry=r,
        )
        self.low_confidence = Counter(
            "ticketops_low_confidence_predictions",
            "Tickets triaged below the confidence threshold",
            ["endpoint"],
            registry=r,
        )
        self.answer_modes = Counter("ticketops_answers", "Drafted answers by mode", ["mode"], registry=r)
        self.model_info = Gauge(
            "ticketops_model_info",
            "The model version being served (value 1)",
            ["name", "version"],
            registry=r,
        )
        self.model_reloads = Counter(
            "ticketops_model_reloads", "Hot swaps to a new model version", registry=r
        )
        self.kb_info = Gauge(
            "ticketops_kb_info",
            "The knowledge-base index version being served (value 1)",
            ["version"],
            registry=r,
        )
        self.batch_size = Histogram(
            "ticketops_inference_batch_size",
            "Tickets per embedding/prediction batch (micro-batching merges concurrent requests)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.log_queue = Gauge(
            "ticketops_prediction_log_queue_size", "Prediction rows waiting to be written", registry=r
        )
        self.log_written = Counter(
            "ticketops_prediction_log_written", "Prediction rows written to ops.predictions", registry=r
        )
        self.log_dropped = Counter(
            "ticketops_prediction_log_dropped",
            "Prediction rows dropped because the buffer was full",
            registry=r,
        )

        self.log_rejected = Counter(
            "ticketops_prediction_log_dead_letters",
            "Rows the database refused, moved to ops.predictions_rejected / ops.feedback_rejected",
            ["kind"],
            registry=r,
        )
        self.spool_outstanding = Gauge(
            "ticketops_spool_outstanding_rows",
            "Acknowledged rows in the local spool that are not in PostgreSQL yet",
            registry=r,
        )
        self.database_up = Gauge(
            "ticketops_database_up",
            "1 when the last database operation (log write or readiness check) succeeded, else 0",
            registry=r,
        )

    def set_model(self, name: str, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name=name, version=version).set(1)

    def set_kb(self, version: str) -> None:
        self.kb_info.clear()
        self.kb_info.labels(version=version).set(1)

    def bind_queue_size(self, read_size: Callable[[], int]) -> None:
        self.log_queue.set_function(read_size)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): counts and times every request.

    The route label is the matched path template (``/v1/triage``), never the raw path, so unknown
    URLs cannot blow up the label cardinality.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()
            self.metrics.latency.labels(method=method, route=route).observe(time.perf_counter() - started)
