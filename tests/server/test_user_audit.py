"""Adding and disabling accounts is audited once per change, whichever way it is done (API, CLI, console)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session

from records.audit.chain import AuditEntry
from records.audit.log import iter_entries
from server.admin import users as console_accounts
from server.db import make_engine, session_scope
from server.identity.models import Role
from server.services import Services
from tests.server.factories import PASSWORD, add_user, bearer, login
from tests.server.test_cli import run_cli


def _user_entries(session: Session) -> list[AuditEntry]:
    return [e for e in iter_entries(session=session) if e.action.startswith("user.")]


def _entries(services: Services) -> list[AuditEntry]:
    with session_scope(services.engine) as session:
        return _user_entries(session)


def _no_secret(entry: AuditEntry, *secrets: str) -> None:
    text = json.dumps(entry.to_export())
    for secret in secrets:
        assert secret not in text


def test_the_api_audits_every_account_change_and_refusal(client: TestClient, services: Services) -> None:
    admin_id = add_user(services, "root", role=Role.ADMIN)
    headers = bearer(login(client, "root")["access_token"])
    body = {
        "username": "nurse.jones",
        "password": PASSWORD,
        "role": "clinician",
        "display_name": "Nurse Jones",
    }

    def rid(value: str) -> dict[str, str]:
        return {**headers, "X-Request-ID": value}

    created = client.post("/api/v1/users", json=body, headers=rid("req-create"))
    assert created.status_code == 201, created.text
    new_id = created.json()["id"]
    dup = client.post("/api/v1/users", json=body, headers=rid("req-duplicate"))
    assert dup.status_code == 409 and dup.json()["code"] == "already_exists"
    disabled = client.post(f"/api/v1/users/{new_id}/disable", headers=rid("req-disable"))
    assert disabled.status_code == 200, disabled.text
    own = client.post(f"/api/v1/users/{admin_id}/disable", headers=rid("req-own-account"))
    assert own.status_code == 409 and own.json()["code"] == "own_account"
    missing = client.post("/api/v1/users/nobody-here/disable", headers=rid("req-not-found"))
    assert missing.status_code == 404

    entries = _entries(services)
    assert [
        (
            e.action,
            e.outcome,
            e.actor_id,
            e.actor_role,
            e.request_id,
            e.detail.get("user_id"),
            e.detail.get("reason"),
        )
        for e in entries
    ] == [
        ("user.create", "success", admin_id, "admin", "req-create", new_id, None),
        ("user.create", "denied", admin_id, "admin", "req-duplicate", None, "already_exists"),
        ("user.disable", "success", admin_id, "admin", "req-disable", new_id, None),
        ("user.disable", "denied", admin_id, "admin", "req-own-account", admin_id, "own_account"),
        ("user.disable", "denied", admin_id, "admin", "req-not-found", None, "not_found"),
    ]
    for entry in entries:
        assert entry.ip == "testclient" and entry.detail["via"] == "api"
        assert entry.purpose_of_use == "HSYSADMIN"
        _no_secret(entry, PASSWORD, "nobody-here")
    assert entries[0].detail["role"] == "clinician" and entries[2].detail["changed"] is True


def test_the_cli_audits_init_add_and_disable(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert run_cli("init", data_dir=data_dir).returncode == 0
    assert run_cli(
        "user", "add", "nurse.jones", "--role", "clinician", "--display-name", "N J", data_dir=data_dir
    )
    again = run_cli(
        "user", "add", "nurse.jones", "--role", "clinician", "--display-name", "N J", data_dir=data_dir
    )
    assert again.returncode == 1
    assert run_cli("user", "disable", "nurse.jones", data_dir=data_dir).returncode == 0
    assert run_cli("user", "disable", "nobody", data_dir=data_dir).returncode == 1

    engine = make_engine(f"sqlite:///{(data_dir / 'telemed.db').resolve()}")
    try:
        with session_scope(engine) as session:
            entries = _user_entries(session)
    finally:
        engine.dispose()
    assert [(e.action, e.outcome, e.detail["via"], e.detail.get("reason")) for e in entries] == [
        ("user.create", "success", "init", None),
        ("user.create", "success", "cli", None),
        ("user.create", "denied", "cli", "already_exists"),
        ("user.disable", "success", "cli", None),
        ("user.disable", "denied", "cli", "not_found"),
    ]
    assert {e.actor_role for e in entries} == {"operator"}
    assert all(e.actor_id and e.actor_id.startswith("cli:") for e in entries)
    assert entries[0].detail["role"] == "admin" and entries[1].detail["role"] == "clinician"


def test_the_console_service_leaves_the_entry_to_the_console(services: Services) -> None:
    """The console records ``admin.user.*`` itself; its account service must not add a second entry."""
    admin_id = add_user(services, "root", role=Role.ADMIN)
    with session_scope(services.engine) as session:
        user, _password = console_accounts.create_account(
            session=session,
            username="nurse.jones",
            display_name="N J",
            role=Role.CLINICIAN,
            establishment=None,
        )
        console_accounts.set_enabled(
            session=session, acting_user_id=admin_id, user_id=user.id, enabled=False, now=user.created_at
        )
    assert _entries(services) == []
