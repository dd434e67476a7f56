"""The settings object: embedded defaults, and refusal of insecure ones outside development."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.settings import DEV_SECRET, Environment, Settings


def test_defaults_work_with_no_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in (
        "TELEMED_ENVIRONMENT",
        "TELEMED_DATABASE_URL",
        "TELEMED_SECRET_KEY",
        "TELEMED_REDIS_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TELEMED_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'telemed.db'}"
    assert settings.redis_url is None
    assert repr(settings.secret_key) == "SecretStr('**********')"


@pytest.mark.parametrize("env", ["production", "test"])
def test_default_secret_refused_outside_development(env: str) -> None:
    with pytest.raises(ValidationError, match="TELEMED_SECRET_KEY"):
        Settings(environment=Environment(env), secret_key=DEV_SECRET)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(environment=Environment(env), secret_key="short")  # type: ignore[arg-type]


def test_secret_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMED_ENVIRONMENT", "production")
    monkeypatch.setenv("TELEMED_SECRET_KEY", "s" * 40)
    settings = Settings()
    assert "s" * 40 not in repr(settings) and "s" * 40 not in str(settings.model_dump())


def test_access_tokens_cannot_outlive_fifteen_minutes() -> None:
    with pytest.raises(ValidationError, match="15 minutes"):
        Settings(access_token_ttl=timedelta(minutes=16))
