"""The record grants the agent holds: one per live consultation, renewed before expiry, dropped at the end.

The page never sees a grant. It asks for records; the agent gets a grant the first time it
is needed during the live consultation (with the laptop's posture and device key), renews it
in the background a minute before it lapses, and forgets it when the consultation ends, the
clinician signs out, or the server says it is no longer good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from clinic_client.console.errors import ConsoleError, unreachable
from clinic_client.records import Grant, RecordsClient, RecordsError, RecordsRefused, RecordsUnreachable

log = logging.getLogger("telemed.console.grants")

T = TypeVar("T")
StateLookup = Callable[[str], Awaitable[str]]

LIVE = "live"
CLOSED_STATES = frozenset({"ended", "cancelled", "no_show"})
# The server's answers that mean "this grant is no good any more".
_DEAD_GRANT = frozenset({"grant_revoked", "grant_expired", "grant_invalid", "consultation_not_live"})


def not_live(state: str) -> ConsoleError:
    """Records are only open during the live consultation."""
    return ConsoleError(
        409, "not_live", f'The records open when the consultation is live (it is "{state}").', state=state
    )


def consultation_ended(state: str) -> ConsoleError:
    """The consultation is over: no more records through it."""
    return ConsoleError(
        410, "consultation_ended", "The consultation has ended; its records are closed.", state=state
    )


def refused(exc: RecordsError) -> ConsoleError:
    """A records error as the page sees it."""
    if isinstance(exc, RecordsUnreachable):
        return unreachable(503 if exc.status is None else 502)
    return ConsoleError(exc.status or 502, exc.code, exc.detail)


class GrantKeeper:
    """Holds, renews and drops the agent's record grants (one per consultation)."""

    def __init__(
        self, records: RecordsClient, *, state_of: StateLookup, margin: timedelta = timedelta(seconds=60)
    ) -> None:
        self.records = records
        self._state_of = state_of
        self._margin = margin
        self._grants: dict[str, Grant] = {}
        self._renewers: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()

    def held(self, consultation_id: str) -> Grant | None:
        """The grant held for a consultation, if any."""
        return self._grants.get(consultation_id)

    def held_all(self) -> list[Grant]:
        """Every grant held now."""
        return list(self._grants.values())

    async def grant_for(self, consultation_id: str) -> Grant:
        """A good grant for this consultation: the one held, renewed, or a new one."""
        async with self._lock:
            grant = self._grants.get(consultation_id)
            if grant is not None and grant.expires_in() > self._margin:
                return grant
            if grant is not None:
                with contextlib.suppress(RecordsRefused):
                    return self._keep(consultation_id, await self.records.renew(grant))
                self.drop(consultation_id)
            await self._require_live(consultation_id)
            try:
                new = await self.records.grant(consultation_id)
            except RecordsRefused as exc:
                if exc.code == "consultation_not_live":
                    await self._require_live(consultation_id)
                raise refused(exc) from None
            except RecordsError as exc:
                raise refused(exc) from None
            log.info("record grant obtained (jti %s)", new.jti)
            return self._keep(consultation_id, new)

    async def use(self, consultation_id: str, call: Callable[[Grant], Awaitable[T]]) -> T:
        """Run ``call`` with the consultation's grant; a dead grant is dropped and the state explained."""
        grant = await self.grant_for(consultation_id)
        try:
            return await call(grant)
        except RecordsRefused as exc:
            if exc.code in _DEAD_GRANT:
                log.info("record grant refused by the server: %s (jti %s)", exc.code, grant.jti)
                self.drop(consultation_id)
                await self._require_live(consultation_id)
            raise refused(exc) from None
        except RecordsError as exc:
            raise refused(exc) from None

    async def _require_live(self, consultation_id: str) -> None:
        state = await self._state_of(consultation_id)
        if state in CLOSED_STATES:
            self.drop(consultation_id)
            raise consultation_ended(state)
        if state != LIVE:
            raise not_live(state)

    def _keep(self, consultation_id: str, grant: Grant) -> Grant:
        self._grants[consultation_id] = grant
        if consultation_id not in self._renewers:
            self._renewers[consultation_id] = asyncio.create_task(
                self._renew_forever(consultation_id), name=f"grant-renewal-{consultation_id[:8]}"
            )
        return grant

    async def _renew_forever(self, consultation_id: str) -> None:
        while True:
            grant = self._grants.get(consultation_id)
            if grant is None:
                return
            await asyncio.sleep(max(0.0, (grant.expires_in() - self._margin).total_seconds()))
            async with self._lock:
                if self._grants.get(consultation_id) is not grant:
                    continue
                try:
                    self._grants[consultation_id] = await self.records.renew(grant)
                except RecordsError as exc:
                    # The consultation ended, the laptop failed a check, or the network is down:
                    # the next use gets a fresh grant if it still may.
                    log.info("record grant not renewed: %s (jti %s)", exc.code, grant.jti)
                    self._grants.pop(consultation_id, None)
                    self._renewers.pop(consultation_id, None)
                    return

    def drop(self, consultation_id: str) -> None:
        """Forget the consultation's grant (the consultation ended, or the server refused it)."""
        grant = self._grants.pop(consultation_id, None)
        task = self._renewers.pop(consultation_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if grant is not None:
            log.info("record grant dropped (jti %s)", grant.jti)

    def drop_all(self) -> None:
        """Forget every grant (sign-out, shutdown)."""
        for consultation_id in list(self._grants) + list(self._renewers):
            self.drop(consultation_id)
