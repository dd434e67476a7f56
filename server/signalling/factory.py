"""Build the hub a server process runs: in-process by default, Redis when ``TELEMED_REDIS_URL`` is set."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from server.signalling.bus import Bus, InProcessBus, RedisBus
from server.signalling.hub import Hub
from server.signalling.limits import SignallingLimits
from server.signalling.ports import DbAudit, DbConsultations, DevicePosture, TurnIce
from server.signalling.presence import InMemoryPresence, Presence, RedisPresence

if TYPE_CHECKING:
    from server.services import Services
    from server.settings import Settings


def limits_from(settings: Settings) -> SignallingLimits:
    """The per-connection limits the settings ask for."""
    return SignallingLimits(
        max_message_bytes=settings.signalling_max_message_bytes,
        rate_per_s=settings.signalling_rate_per_s,
        burst=settings.signalling_burst,
        hello_timeout=settings.signalling_hello_timeout,
        resume_grace=settings.signalling_resume_grace,
    )


def build_hub(services: Services) -> Hub:
    """Wire a hub for ``services``; registers its start/stop and (with Redis) a readiness probe."""
    settings = services.settings
    grace_s = int(settings.signalling_resume_grace.total_seconds())
    bus: Bus
    presence: Presence
    client: aioredis.Redis | None = None
    if settings.redis_url:
        # Connections are opened lazily, in the event loop that serves the app.
        client = aioredis.Redis.from_url(settings.redis_url, health_check_interval=30)
        bus = RedisBus(client)
        presence = RedisPresence(client, prefix=settings.redis_prefix, room_ttl_s=max(3600, 4 * grace_s))
    else:
        bus = InProcessBus()
        presence = InMemoryPresence()

    async def close_redis() -> None:
        if client is not None:
            await client.aclose()

    hub = Hub(
        bus=bus,
        presence=presence,
        consultations=DbConsultations(services),
        posture=DevicePosture(services),
        audit=DbAudit(services.engine),
        ice=TurnIce(settings),
        limits=limits_from(settings),
        metrics=services.metrics,
        prefix=settings.redis_prefix,
        on_close=close_redis,
    )
    services.extras.setdefault("startup", []).append(hub.start)
    services.extras.setdefault("shutdown", []).append(hub.close)
    if client is not None:
        services.extras.setdefault("readiness_probes", {})["redis"] = hub.ping
    return hub
