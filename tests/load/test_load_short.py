"""The short load runs, in CI: nothing a user would notice goes wrong, memory stays flat, the
database pool gives its connections back. Figures are printed (``-s``), never asserted on time."""

from __future__ import annotations

import sys

import pytest

from tests.load.common import PG_ADMIN_URL
from tests.load.http import HttpModel, run_http
from tests.load.signalling import SignallingModel, run_signalling
from tests.support.services import port_open, service_missing

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _postgres() -> None:
    host_port = PG_ADMIN_URL.rsplit("@", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    if not port_open(host, int(port or 5432)):
        service_missing(f"PostgreSQL on {host_port}")


def show(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + "\n")


def test_fifty_consultations_relay_everything_and_the_server_memory_stays_flat() -> None:
    report = run_signalling(SignallingModel(consultations=50, seconds=8.0, warmup_s=4.0))
    show(report.lines())
    assert report.errors == []
    assert (report.joined, report.ended) == (50, 50)
    assert report.open_sockets_after == 0  # the server let go of every socket
    assert report.relayed > 50 * 10  # every consultation negotiated at least once
    assert report.memory_flat, (
        f"server RSS grew {report.memory_growth_mb:.1f} MB > {report.memory_bound_mb:.1f} MB"
    )


def test_fifty_clients_get_no_5xx_and_the_pool_returns_to_its_baseline() -> None:
    report = run_http(HttpModel(clients=50, seconds=10.0))
    show(report.lines())
    assert report.failures == []
    assert report.server_errors == 0
    assert report.unexpected == 0, report.examples
    assert set(report.latencies) == {"GET /schedule", "GET /consultations/{id}",
                                     "GET /records/documents/{id}/content", "POST /records/notes",
                                     "POST /records/grants"}  # fmt: skip
    assert report.pool_before["checked_out"] == 0
    assert report.pool_after["checked_out"] == report.pool_before["checked_out"]
    assert report.pool_peak_checked_out > 0  # the gauge moved: the requests did use the pool
