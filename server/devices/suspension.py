"""Telling the signalling hub that a device may no longer take part in a call."""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("telemed.devices")


async def suspend_in_calls(services: Services, *, device_id: str, reason: str) -> None:
    """Suspend ``device_id`` in any live call at once (no-op without a signalling hub)."""
    hub = getattr(services, "hub", None)
    if hub is None:
        return
    try:
        outcome = hub.suspend_device(device_id, reason)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        # The refusal stands either way; the posture token is also refused on its next use.
        log.exception("could not suspend device in calls", extra={"device_id": device_id})
