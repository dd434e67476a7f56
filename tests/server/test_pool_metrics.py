"""/metrics shows the database connection pool, so a stalled or leaking pool can be seen."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def gauge(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} is not on /metrics"
    return float(found.group(1))


def test_metrics_show_the_pool_and_requests_give_their_connections_back(client: TestClient) -> None:
    before = client.get("/metrics").text
    assert gauge(before, "telemed_db_pool_size") == 10
    for _ in range(3):
        assert client.get("/readyz").status_code == 200  # each takes a connection and returns it
    after = client.get("/metrics").text
    assert gauge(after, "telemed_db_pool_checked_out") == 0
    assert gauge(after, "telemed_db_pool_checked_in") >= 1
