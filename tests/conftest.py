"""Shared fixtures: databases (SQLite and the real PostgreSQL), settings, app and client."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from server.app import create_app
from server.db import make_engine, upgrade_database
from server.models import metadata
from server.services import Services
from server.settings import Environment, Settings
from tests.support.services import port_open, service_missing

PG_ADMIN_URL = os.environ.get("TELEMED_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TEST_SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    if not port_open("127.0.0.1", 5432):
        service_missing("PostgreSQL on 127.0.0.1:5432")
    name = f"telemed_t_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # name is ours, not input
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    upgrade_database(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate_all(engine: Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using it runs twice: on a SQLite file and on the real PostgreSQL."""
    if request.param == "sqlite":
        yield migrated_sqlite(request, tmp_path)
        return
    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    _truncate_all(engine)
    engine.dispose()
    yield url


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated SQLite database, for tests that are not about the database."""
    return migrated_sqlite(request, tmp_path)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated once per session; each test gets a copy (the migrations run once)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "telemed.db"
    upgrade_database(f"sqlite:///{path}")
    return path


def migrated_sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A private copy of the migrated template database in the test's own directory."""
    template: Path = request.getfixturevalue("sqlite_template")
    target = tmp_path / "telemed.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


def make_settings(db: str, data_dir: Path, **overrides: object) -> Settings:
    """Test settings: test environment, a real secret, the given database."""
    values: dict[str, object] = {
        "environment": Environment.TEST,
        "secret_key": TEST_SECRET,
        "data_dir": data_dir,
        "database_url": db,
        "log_json": False,
        "records_kek_dir": data_dir / "keys" / "records",  # outside development keys are explicit
        "audit_key_file": data_dir / "keys" / "audit-ed25519.pem",
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path / "data")


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = Services.build(settings)
    yield built
    built.engine.dispose()


@pytest.fixture
def app(settings: Settings, services: Services) -> FastAPI:
    return create_app(settings, services=services)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c
