"""The agent's state: who is signed in (and their tokens), this laptop's posture, the record grants.

One :class:`ConsoleAgent` serves one clinician at a time. It keeps the access and refresh
tokens (refreshing a minute before the access token lapses), re-attests the laptop before
its posture token lapses while someone is signed in, and holds the record grants. Nothing
it returns to the page carries a token, a proof or the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinic_client.console.errors import NOT_COMPLIANT, NOT_SIGNED_IN, ConsoleError, unreachable
from clinic_client.console.grants import GrantKeeper
from clinic_client.console.posture import ObservedPosture
from clinic_client.console.server_api import ServerApi
from clinic_client.posture import FactSource, PostureAgent, PostureError, ServerUnreachable
from clinic_client.records import RecordsClient
from clinic_client.signalling import SignallingClient

log = logging.getLogger("telemed.console.session")

CLINICIAN = "clinician"
USER_FIELDS = ("id", "username", "display_name", "role")


@dataclass
class Credentials:
    """The signed-in clinician's tokens (never in a repr) and who they are."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_expires_at: datetime
    user: dict[str, Any]


def q(value: str) -> str:
    """One path segment, escaped."""
    return quote(value, safe="")


class ConsoleAgent:
    """Everything the agent holds for the page (see the module docstring)."""

    def __init__(
        self,
        *,
        server_url: str,
        device_id: str,
        private_key: Ed25519PrivateKey,
        source: FactSource,
        http: httpx.AsyncClient | None = None,
        refresh_margin: timedelta = timedelta(seconds=60),
        reattest_margin: timedelta = timedelta(seconds=90),
        grant_margin: timedelta = timedelta(seconds=60),
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.device_id = device_id
        self.api = ServerApi(self.server_url, http=http)
        self.posture = ObservedPosture(
            PostureAgent(
                server_url=self.server_url,
                device_id=device_id,
                private_key=private_key,
                source=source,
                client=self.api.http,
            )
        )
        self.records = RecordsClient(
            server_url=self.server_url,
            access_token=self._current_access_token,
            posture=self.posture,
            private_key=private_key,
            http=self.api.http,
        )
        self.grants = GrantKeeper(self.records, state_of=self.consultation_state, margin=grant_margin)
        self._refresh_margin = refresh_margin
        self._reattest_margin = reattest_margin
        self._creds: Credentials | None = None
        self._refresh_lock = asyncio.Lock()
        self._keeper: asyncio.Task[None] | None = None
        self.calls: set[SignallingClient] = set()
        self.device_kind = "prison_laptop"

    # --- state -----------------------------------------------------------------------------

    @property
    def signed_in(self) -> bool:
        """True while a clinician is signed in."""
        return self._creds is not None

    def secrets(self) -> list[str]:
        """Every token the agent holds now (for tests that prove none reaches the page)."""
        held: list[str] = []
        for client in list(self.calls):
            # The signalling client keeps these to itself; a test needs to know them.
            held += [getattr(client, "_join_token", ""), getattr(client, "_resume_token", None) or ""]
        if self._creds is not None:
            held += [self._creds.access_token, self._creds.refresh_token]
        current = self.posture.agent.current
        if current is not None:
            held.append(current.token)
        held += [grant.token for grant in self.grants.held_all()]
        return held

    def state(self) -> dict[str, Any]:
        """``GET /api/state``: who is signed in, this device, the server and the latest posture."""
        view = self.posture.view
        return {
            "signed_in": self._creds is not None,
            "user": dict(self._creds.user) if self._creds else None,
            "device": {"id": self.device_id, "kind": self.device_kind},
            "server_url": self.server_url,
            "posture": view.to_wire() if view else None,
        }

    def require_signed_in(self) -> Credentials:
        """The signed-in clinician's credentials, or 401 ``not_signed_in``."""
        if self._creds is None:
            raise ConsoleError(401, "not_signed_in", NOT_SIGNED_IN)
        return self._creds

    def require_ready(self) -> None:
        """Signed in and on a compliant laptop, or 401 ``not_signed_in`` / 403 ``device_not_compliant``."""
        self.require_signed_in()
        if not self.posture.compliant_now():
            raise ConsoleError(403, "device_not_compliant", NOT_COMPLIANT)

    # --- signing in and out --------------------------------------------------------------

    async def sign_in(self, username: str, password: str) -> dict[str, Any]:
        """Sign in at the server (clinicians only); the new state."""
        if self._creds is not None:
            await self.sign_out()
        body = await self.api.json(
            "POST", "/api/v1/auth/login", json={"username": username, "password": password}
        )
        creds = self._credentials(body)
        if creds.user.get("role") != CLINICIAN:
            with contextlib.suppress(ConsoleError):
                await self._server_logout(creds)
            raise ConsoleError(
                403,
                "not_a_clinician",
                "Only clinicians can use the console. Sign in with a clinician account.",
            )
        self._creds = creds
        log.info("signed in (user %s)", creds.user.get("id"))
        self._start_keeper()
        return self.state()

    async def sign_out(self) -> None:
        """Sign out at the server and forget the tokens and grants."""
        creds, self._creds = self._creds, None
        self.grants.drop_all()
        await self._stop_keeper()
        for client in list(self.calls):
            await client.leave()
        if creds is not None:
            with contextlib.suppress(ConsoleError):
                await self._server_logout(creds)
            log.info("signed out (user %s)", creds.user.get("id"))

    async def _server_logout(self, creds: Credentials) -> None:
        await self.api.send(
            "POST",
            "/api/v1/auth/logout",
            bearer=creds.access_token,
            json={"refresh_token": creds.refresh_token},
        )

    def _credentials(self, body: Any) -> Credentials:
        try:
            user = body["user"]
            return Credentials(
                access_token=str(body["access_token"]),
                refresh_token=str(body["refresh_token"]),
                access_expires_at=datetime.now(UTC) + timedelta(seconds=int(body["expires_in"])),
                user={k: user.get(k) for k in USER_FIELDS},
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise unreachable(502) from None

    def _current_access_token(self) -> str:
        return self.require_signed_in().access_token

    async def access_token(self) -> str:
        """The access token, refreshed first when it lapses within the margin."""
        creds = self.require_signed_in()
        if creds.access_expires_at - datetime.now(UTC) > self._refresh_margin:
            return creds.access_token
        await self._refresh()
        return self.require_signed_in().access_token

    async def _refresh(self) -> None:
        # One refresh at a time: a refresh token used twice ends the whole session.
        async with self._refresh_lock:
            creds = self.require_signed_in()
            if creds.access_expires_at - datetime.now(UTC) > self._refresh_margin:
                return
            try:
                body = await self.api.json(
                    "POST", "/api/v1/auth/refresh", json={"refresh_token": creds.refresh_token}
                )
            except ConsoleError as exc:
                if exc.code != "server_unreachable":
                    log.warning("token refresh refused (%s); signing out", exc.code)
                    self._forget()
                raise
            if self._creds is creds:
                self._creds = self._credentials(body)

    def _forget(self) -> None:
        self._creds = None
        self.grants.drop_all()
        if self._keeper is not None and self._keeper is not asyncio.current_task():
            self._keeper.cancel()
            self._keeper = None

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A server API call as the signed-in clinician (JSON in and out)."""
        token = await self.access_token()
        try:
            return await self.api.json(method, path, bearer=token, **kwargs)
        except ConsoleError as exc:
            if exc.status == 401 and exc.code in ("invalid_token", "authentication_required"):
                # The server ended this session (disabled, revoked): the page must sign in again.
                log.warning("server refused the access token (%s); signing out", exc.code)
                self._forget()
            raise

    # --- posture ---------------------------------------------------------------------------

    async def device_check(self) -> dict[str, Any]:
        """Attest now; the new posture (a failed check is a result, an unreachable server is 503)."""
        try:
            await self.posture.attest()
        except ServerUnreachable:
            raise unreachable() from None
        except PostureError:
            pass  # the view says why
        view = self.posture.view
        assert view is not None  # noqa: S101 - set by every attest outcome but unreachable
        return view.to_wire()

    async def fresh_posture(self) -> None:
        """Make sure the posture token has a while to live (attest if not); 403 when not compliant."""
        current = self.posture.current
        if current is None or current.expires_in() < self._reattest_margin:
            with contextlib.suppress(PostureError):
                await self.posture.attest()
        if not self.posture.compliant_now():
            view = self.posture.view
            if view is not None and view.error and view.error["code"] == "server_unreachable":
                raise unreachable()
            raise ConsoleError(403, "device_not_compliant", NOT_COMPLIANT)

    def _start_keeper(self) -> None:
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name="console-keeper")

    async def _stop_keeper(self) -> None:
        task, self._keeper = self._keeper, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _keep(self) -> None:
        """While signed in: refresh the access token and re-attest before either lapses."""
        retry = 0.0
        while self._creds is not None:
            await asyncio.sleep(max(retry, min(self._next_due(), 5.0)))
            retry = 0.0
            try:
                creds = self._creds
                if creds is not None and creds.access_expires_at - datetime.now(UTC) <= self._refresh_margin:
                    await self._refresh()
                current = self.posture.current
                if current is not None and current.expires_in() <= self._reattest_margin:
                    await self.posture.attest()
            except asyncio.CancelledError:
                raise
            except (ConsoleError, PostureError) as exc:
                log.warning("background renewal failed: %s", exc.code)
                retry = 15.0

    def _next_due(self) -> float:
        now = datetime.now(UTC)
        due = [timedelta(seconds=60)]
        if self._creds is not None:
            due.append(self._creds.access_expires_at - now - self._refresh_margin)
        current = self.posture.current
        if current is not None:
            due.append(current.expires_at - now - self._reattest_margin)
        return max(0.0, min(due).total_seconds())

    # --- consultations ---------------------------------------------------------------------

    async def consultation_state(self, consultation_id: str) -> str:
        """The consultation's state, as the server has it now."""
        body = await self.call("GET", f"/api/v1/consultations/{q(consultation_id)}")
        return str(body.get("state", "")) if isinstance(body, dict) else ""

    async def host_join_token(self, consultation_id: str) -> str:
        """The host's join token for this laptop (posture headers; the posture made fresh first)."""
        await self.fresh_posture()
        path = f"/api/v1/consultations/{q(consultation_id)}/join-token"
        headers = self.posture.request_headers("POST", self.api.url(path))
        body = await self.call("POST", path, headers=headers)
        try:
            return str(body["token"])
        except (KeyError, TypeError):
            raise unreachable(502) from None

    async def aclose(self) -> None:
        """Sign out and release the HTTP client (agent shutdown)."""
        await self.sign_out()
        await self.api.aclose()
