"""The long-lived objects one server process holds, built once from the settings.

Routes reach them through ``server.deps``; nothing reaches for a module-level global.
Features add their own objects here as they are built (the signalling hub, the
records vault, the audit log…).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from server.db import make_engine
from server.devices.replay import InMemoryProofReplayCache, ProofReplayCache, build_replay_cache
from server.identity.service import LoginPolicy
from server.ops.metrics import Metrics
from server.records_runtime import RecordsRuntime
from server.security.jwt import JwtService
from server.security.keys import KeyRing
from server.security.throttle import LoginThrottle, build_login_throttle
from server.settings import Settings
from server.signalling.factory import build_hub
from server.signalling.hub import Hub


@dataclass
class Services:
    """Everything a request handler may need, wired once per app."""

    settings: Settings
    engine: Engine
    keys: KeyRing
    jwt: JwtService
    metrics: Metrics
    login_policy: LoginPolicy
    login_throttle: LoginThrottle
    extras: dict[str, Any] = field(default_factory=dict)
    proof_replay: ProofReplayCache = field(default_factory=InMemoryProofReplayCache)
    hub: Hub | None = None
    records: RecordsRuntime | None = None

    @classmethod
    def build(cls, settings: Settings, *, engine: Engine | None = None) -> Services:
        """Wire the services for ``settings`` (the database must already be migrated)."""
        engine = engine or make_engine(settings.resolved_database_url)
        secret = settings.secret_key.get_secret_value().encode()
        keys = KeyRing(engine=engine, secret=secret)
        services = cls(
            settings=settings,
            engine=engine,
            keys=keys,
            jwt=JwtService(keys=keys, issuer=settings.issuer, leeway_s=settings.jwt_leeway_s),
            metrics=Metrics(),
            login_throttle=build_login_throttle(settings),
            login_policy=LoginPolicy(
                access_ttl=settings.access_token_ttl,
                refresh_ttl=settings.refresh_token_ttl,
            ),
        )
        services.metrics.watch_pool(engine)
        replay = services.proof_replay = build_replay_cache(settings)

        async def close_replay() -> None:
            replay.close()

        services.extras.setdefault("shutdown", []).append(close_replay)

        async def close_throttle() -> None:
            services.login_throttle.store.close()

        services.extras["shutdown"].append(close_throttle)
        services.hub = build_hub(services)
        services.records = RecordsRuntime(settings=settings, engine=engine)
        return services
