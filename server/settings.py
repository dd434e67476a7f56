"""One typed settings object for the whole server, read from ``TELEMED_*`` variables.

Embedded defaults work with no configuration at all: a SQLite file under the data
directory, the in-process signalling bus, no TURN. Outside development mode the
server refuses to start on the built-in development secret.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "telemed-development-secret-do-not-use-in-production"  # noqa: S105


class Environment(StrEnum):
    """Where the server runs; only ``development`` accepts insecure defaults."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class InsecureConfiguration(ValueError):
    """The settings would run the server with a known or weak secret."""


class Settings(BaseSettings):
    """Everything the server can be configured with (env prefix ``TELEMED_``)."""

    model_config = SettingsConfigDict(env_prefix="TELEMED_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    data_dir: Path = Field(
        default=Path(".telemed"),
        description="Where the SQLite file, keys and encrypted blobs live.",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite in data_dir."
    )
    redis_url: str | None = Field(
        default=None, description="Redis for the cross-node signalling bus; default in-process."
    )
    secret_key: SecretStr = Field(default=SecretStr(DEV_SECRET), description="Encrypts signing keys at rest.")

    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    issuer: str = "telemed"

    access_token_ttl: timedelta = timedelta(minutes=15)
    refresh_token_ttl: timedelta = timedelta(hours=12)
    jwt_leeway_s: int = Field(default=30, ge=0, le=60)
    signing_key_retention: timedelta = Field(
        default=timedelta(hours=24),
        description="How long a rotated-out key still verifies: the longest token lifetime.",
    )
    login_free_attempts_per_account_client: int = Field(
        default=5, ge=1, le=100, description="Sign-in attempts at one username from one IP before delays."
    )
    login_free_attempts_per_account: int = Field(
        default=20, ge=1, le=1000, description="Sign-in attempts at one username from any IP before delays."
    )
    login_free_attempts_per_client: int = Field(
        default=20, ge=1, le=1000, description="Sign-in attempts at any username from one IP before delays."
    )
    login_backoff_base: timedelta = Field(
        default=timedelta(seconds=2),
        ge=timedelta(seconds=1),
        le=timedelta(minutes=5),
        description="First delay once a counter's free attempts are used; it doubles with each attempt.",
    )
    login_backoff_max: timedelta = Field(
        default=timedelta(minutes=15),
        ge=timedelta(seconds=1),
        le=timedelta(hours=24),
        description="Longest delay between sign-in attempts.",
    )
    login_throttle_window: timedelta = Field(
        default=timedelta(hours=1),
        ge=timedelta(minutes=1),
        le=timedelta(days=7),
        description="A sign-in counter is forgotten this long after its last attempt (>= login_backoff_max).",
    )
    login_trusted_client_ttl: timedelta = Field(
        default=timedelta(days=30),
        ge=timedelta(0),
        le=timedelta(days=365),
        description="How long an IP that completed a sign-in skips the per-account and per-IP counters.",
    )
    admin_idle_timeout: timedelta = Field(
        default=timedelta(minutes=15),
        gt=timedelta(0),
        description="Admin console: a session ends after this long without a request.",
    )
    admin_session_lifetime: timedelta = Field(
        default=timedelta(hours=8),
        gt=timedelta(0),
        description="Admin console: a session ends this long after its second sign-in step.",
    )

    policy_file: Path | None = Field(default=None, description="Device policy YAML (default: shipped).")
    records_kek_dir: Path | None = Field(
        default=None,
        description="Key-encryption keys kek-<n>.key; development default data_dir/keys/records, "
        "required outside development.",
    )
    audit_key_file: Path | None = Field(
        default=None,
        description="Ed25519 audit checkpoint key (PEM); development default "
        "data_dir/keys/audit-ed25519.pem, required outside development.",
    )
    audit_checkpoint_interval: timedelta = Field(default=timedelta(seconds=5), gt=timedelta(0))
    records_max_document_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    max_request_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest request body (bytes) on every route but document import "
        "(records_max_document_bytes); larger is refused with 413 payload_too_large before it is read.",
    )
    max_request_header_bytes: int = Field(
        default=16 * 1024,
        ge=4096,
        le=1024 * 1024,
        description="Largest total of request header names and values (bytes); larger is refused "
        "with 431 request_headers_too_large (telemed serve also caps uvicorn's parser near it).",
    )

    turn_urls: list[str] = Field(default_factory=list)
    turn_secret: SecretStr | None = None
    turn_ttl: timedelta = Field(
        default=timedelta(hours=1),
        ge=timedelta(seconds=5),
        le=timedelta(days=1),
        description="Lifetime of each TURN credential, 5 s to 1 day: clients renew a third of a short "
        "TTL before expiry (so they need a few seconds), and coturn credentials should stay short-lived.",
    )
    signalling_hello_timeout: timedelta = Field(default=timedelta(seconds=5), gt=timedelta(0))
    signalling_resume_grace: timedelta = Field(default=timedelta(seconds=30), ge=timedelta(0))
    signalling_max_message_bytes: int = Field(default=65536, ge=1024, le=131072)
    signalling_rate_per_s: float = Field(default=50.0, gt=0)
    signalling_burst: int = Field(default=200, ge=1)
    redis_prefix: str = Field(default="telemed", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    support_contact: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Who a remote specialist can ask for help, shown on the /join page's message "
        "screens (e.g. 'Healthcare team, HMP Example, weekdays 8:00-18:00'). Never anything about a patient.",
    )
    support_phone: str | None = Field(
        default=None,
        pattern=r"^\+?[0-9][0-9 ()-]{2,29}$",
        description="A telephone number for that contact, shown as a tel: link.",
    )

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("support_contact", "support_phone", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # TELEMED_SUPPORT_CONTACT= (empty) in an env file means "none", not an invalid contact.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _refuse_insecure_outside_development(self) -> Self:
        if self.access_token_ttl > timedelta(minutes=15):
            raise ValueError("access_token_ttl must be at most 15 minutes")
        if (
            self.login_throttle_window < self.login_backoff_max
            or self.login_backoff_base > self.login_backoff_max
        ):
            raise ValueError("login_backoff_base <= login_backoff_max <= login_throttle_window is required")
        if self.environment is Environment.DEVELOPMENT:
            return self
        secret = self.secret_key.get_secret_value()
        if secret == DEV_SECRET or len(secret) < 32:
            raise InsecureConfiguration(
                "TELEMED_SECRET_KEY must be set to a random value of at least 32 characters "
                f"outside development mode (environment is {self.environment.value!r})"
            )
        return self

    @property
    def is_development(self) -> bool:
        """True when insecure conveniences (simulated posture, dev secret) are allowed."""
        return self.environment is Environment.DEVELOPMENT

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'telemed.db').resolve()}"
