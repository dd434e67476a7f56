"""Every operation of the OpenAPI schema, fuzzed by Schemathesis with every check: no 500,
no status, content type, header or body the schema does not declare, no valid request refused.

Bounded so that it stays a CI test (:data:`EXAMPLES` per operation, no deadline, no shrinking
hunt). The requests go to a real uvicorn server signed in as an admin, so they reach past
authentication; all failures are collected and reported together.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.config import SchemathesisConfig

from server.app import create_app
from server.identity.models import Role
from server.services import Services
from tests.conftest import make_settings
from tests.server.factories import PASSWORD, add_user
from tests.support.live_server import LiveServer

EXAMPLES = 8
#: a refusal that a generated but meaningless value earns (an unknown id, a state that refuses)
ACCEPTED = ["2xx", "401", "403", "404", "409"]


@pytest.fixture(scope="module")
def live(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("api-schema")
    shutil.copyfile(sqlite_template, tmp / "telemed.db")
    config = make_settings(f"sqlite:///{tmp / 'telemed.db'}", tmp / "data")
    services = Services.build(config)
    add_user(services, "fuzz-admin", Role.ADMIN)
    with LiveServer(create_app(config, services=services)) as server:
        yield server
    services.engine.dispose()


def test_every_operation_conforms(live: LiveServer) -> None:
    login = {"username": "fuzz-admin", "password": PASSWORD}
    token = httpx.post(f"{live.base_url}/api/v1/auth/login", json=login).json()["access_token"]
    config = SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}}}
    )
    schema = schemathesis.openapi.from_url(f"{live.base_url}/openapi.json", config=config)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case: schemathesis.Case) -> None:
            headers = (
                {}
                if case.headers and "Authorization" in case.headers
                else {"Authorization": f"Bearer {token}"}
            )
            case.call_and_validate(base_url=live.base_url, headers=headers)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # every operation is reported, not just the first
            failures.append(f"{operation.label}: {str(exc)[:600]}")
    assert operations > 50
    assert not failures, "\n\n".join(failures)
