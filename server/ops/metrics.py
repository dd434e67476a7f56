"""Prometheus metrics, one registry per app so test apps do not collide."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Engine


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

    def watch_pool(self, engine: Engine) -> None:
        """Export the engine's connection pool (checked out, idle, overflow, size) as gauges.

        Read when scraped, so a stalled or leaking pool shows on /metrics (the load test checks
        that checked-out connections return to their baseline after a run).
        """
        pool = engine.pool
        readings = {
            "checked_out": ("checkedout", "Database connections in use by requests or background work"),
            "checked_in": ("checkedin", "Idle database connections held in the pool"),
            "overflow": ("overflow", "Connections opened beyond the pool size (negative: not yet opened)"),
            "size": ("size", "Connections the pool keeps open"),
        }
        for name, (method, documentation) in readings.items():
            read = getattr(pool, method, None)
            if read is None:  # SQLite in memory uses a pool without counters
                continue
            gauge = Gauge(f"telemed_db_pool_{name}", documentation, registry=self.registry)
            gauge.set_function(_reader(read))


def _reader(read: Callable[[], Any]) -> Callable[[], float]:
    return lambda: float(read())
