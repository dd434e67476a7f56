"""Prometheus metrics, one registry per app so test apps do not collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The server's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "telemed_http_requests_total",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "telemed_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
        )
        self.logins = Counter(
            "telemed_logins_total", "Login attempts by outcome", ["outcome"], registry=self.registry
        )
        self.ws_connections = Gauge(
            "telemed_signalling_connections", "Open signalling sockets", registry=self.registry
        )
        self.ws_messages = Counter(
            "telemed_signalling_messages_total",
            "Signalling messages by type and outcome",
            ["type", "outcome"],
            registry=self.registry,
        )
