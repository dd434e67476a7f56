"""Take part in a consultation: get a join token, connect, wait to be admitted, run the call.

:class:`ConsultationSession` ties a :class:`~clinic_client.signalling.SignallingClient` to a
:class:`~clinic_client.call.Call`: when the server admits us it connects media to every
admitted participant, hangs up with anyone who leaves, is sent back, suspended or denied,
hangs up with everyone when we are sent back or suspended, after a resumed socket
negotiates fresh peer connections for the media paths that broke (aiortc has no ICE restart),
takes the server's view when it says ``resync`` (messages between server nodes were lost),
and hands the call every set of TURN credentials the server sends (the welcome's, then each
renewal before they expire), so a recovery late in a long consultation still gets a relay.

Example — a clinician hosting from a laptop::

    import asyncio
    from clinic_client.session import ConsultationSession, host_join_token, login

    async def main() -> None:
        server = "https://telemed.example.org"
        access = await login(server, "dr.jones", password)
        ticket = await host_join_token(server, access, consultation_id, posture=agent)
        async with await ConsultationSession.join(server, ticket.token, posture=agent) as session:
            state = await session.wait_until(lambda s: any(p.status == "waiting" for p in s.others))
            await session.admit(state.others[0].id)
            await session.wait_until(lambda s: s.media_connected)
            print(await session.stats())                      # RTT, jitter, loss, bitrates
            await session.end("consultation complete")

    asyncio.run(main())

A room endpoint uses :func:`room_join_token` (its posture agent is the credential) and a
specialist :func:`redeem_invite` (the invite link's token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import httpx

from clinic_client.call import (
    Call,
    CallError,
    CallEvent,
    CallStats,
    LocalMedia,
    MediaFileRecorder,
    RecoveryPolicy,
    UnknownParticipant,
)
from clinic_client.signalling import (
    Participant,
    PostureSource,
    ServerEvent,
    SignallingClient,
    SignallingError,
    Welcome,
)

log = logging.getLogger("telemed.client.session")

SIGNALLING_PATH = "/ws/v1/signalling"
Status = Literal[
    "connecting", "waiting", "admitted", "suspended", "reconnecting", "ended", "denied", "closed"
]
ResumePolicy = Literal["broken", "all"]


class SessionError(Exception):
    """A REST call of the session helpers failed; ``code`` is the server's problem code."""

    def __init__(self, message: str, *, code: str = "error", status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


# --- REST helpers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinTicket:
    """A join token and what the server says about it."""

    token: str = field(repr=False)
    participant_id: str
    role: str
    name: str
    consultation_id: str
    not_before: datetime
    expires_at: datetime
    # The consultation's public view: who hosts it and when (what a room's screen shows).
    host_name: str = ""
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None


def signalling_url(server_url: str) -> str:
    """The signalling socket URL of a server: ``https://h`` → ``wss://h/ws/v1/signalling``."""
    parts = urlsplit(server_url)
    scheme = {"https": "wss", "http": "ws", "wss": "wss", "ws": "ws"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f'Cannot talk to a server at a "{parts.scheme}" URL')
    return urlunsplit((scheme, parts.netloc, SIGNALLING_PATH, "", ""))


async def _post(url: str, *, json: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30.0) as http:
        try:
            response = await http.post(url, json=json, headers=headers)
        except httpx.TransportError as exc:
            raise SessionError(f"Cannot reach {url}: {type(exc).__name__}", code="unreachable") from exc
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400:
        raise SessionError(
            str(body.get("detail") or response.reason_phrase),
            code=str(body.get("code", f"http_{response.status_code}")),
            status=response.status_code,
        )
    return body


def _ticket(body: dict[str, Any]) -> JoinTicket:
    consultation = body["consultation"]
    start, end = consultation.get("scheduled_start"), consultation.get("scheduled_end")
    return JoinTicket(
        token=str(body["token"]),
        participant_id=str(body["participant_id"]),
        role=str(body["role"]),
        name=str(body["name"]),
        consultation_id=str(consultation["id"]),
        not_before=datetime.fromisoformat(str(body["not_before"])),
        expires_at=datetime.fromisoformat(str(body["expires_at"])),
        host_name=str(consultation.get("host_name") or ""),
        scheduled_start=datetime.fromisoformat(str(start)) if start else None,
        scheduled_end=datetime.fromisoformat(str(end)) if end else None,
    )


async def login(server_url: str, username: str, password: str) -> str:
    """Sign in; returns the (15-minute) access token.

    Example::

        access = await login("https://telemed.example.org", "dr.jones", password)
    """
    body = await _post(
        f"{server_url.rstrip('/')}/api/v1/auth/login", json={"username": username, "password": password}
    )
    return str(body["access_token"])


async def host_join_token(
    server_url: str, access_token: str, consultation_id: str, *, posture: PostureSource | None = None
) -> JoinTicket:
    """The host's join token; with a posture agent it names (and binds to) the laptop.

    Example::

        ticket = await host_join_token(server, access, "c0ffee…", posture=agent)
    """
    url = f"{server_url.rstrip('/')}/api/v1/consultations/{consultation_id}/join-token"
    headers = {"Authorization": f"Bearer {access_token}"}
    if posture is not None:
        headers.update(await _posture_headers(posture, "POST", url))
    return _ticket(await _post(url, headers=headers))


async def room_join_token(server_url: str, posture: PostureSource) -> JoinTicket:
    """A room endpoint's join token for the consultation booked for it now (its posture is the credential).

    Example::

        ticket = await room_join_token(server, agent)     # 404 not_found when nothing is booked
    """
    url = f"{server_url.rstrip('/')}/api/v1/devices/me/join-token"
    return _ticket(await _post(url, headers=await _posture_headers(posture, "POST", url)))


async def redeem_invite(server_url: str, invite_token: str) -> JoinTicket:
    """A specialist's join token from the invite link's token (single use).

    Example::

        ticket = await redeem_invite(server, link.split("#", 1)[1])
    """
    return _ticket(
        await _post(f"{server_url.rstrip('/')}/api/v1/invites/redeem", json={"token": invite_token})
    )


async def _posture_headers(posture: PostureSource, method: str, url: str) -> dict[str, str]:
    result = posture.current
    if result is None or (result.expires_at - datetime.now(result.expires_at.tzinfo)).total_seconds() < 60:
        result = await posture.attest()
    return {"X-Posture-Token": result.token, "X-Posture-Proof": posture.proof(method, url, token=result)}


# --- the session ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionState:
    """What a UI shows: where we are, who else is there, whether media flows."""

    status: Status
    consultation_state: str
    participant_id: str | None
    role: str | None
    others: tuple[Participant, ...]
    media: dict[str, str]
    reason: str | None = None
    reconnects: int = 0

    @property
    def media_connected(self) -> bool:
        """True when media is connected with every admitted participant (and there is one)."""
        admitted = [p.id for p in self.others if p.status == "admitted"]
        return bool(admitted) and all(self.media.get(pid) == "connected" for pid in admitted)


class ConsultationSession:
    """One participant in one consultation: signalling plus media (see the module docstring)."""

    def __init__(
        self,
        url: str,
        join_token: str,
        *,
        media: LocalMedia | None = None,
        posture: PostureSource | None = None,
        recovery: RecoveryPolicy | None = None,
        renegotiate_on_resume: ResumePolicy = "broken",
        on_change: Callable[[SessionState], None] | None = None,
        client: SignallingClient | None = None,
    ) -> None:
        self.client = client or SignallingClient(url, join_token, posture=posture)
        self._media = media or LocalMedia()
        self._recovery = recovery
        self._renegotiate_on_resume = renegotiate_on_resume
        self._on_change = on_change
        self.call: Call | None = None
        self._others: dict[str, Participant] = {}
        self._state = SessionState(
            status="connecting",
            consultation_state="scheduled",
            participant_id=None,
            role=None,
            others=(),
            media={},
        )
        self._changed = asyncio.Event()
        self._engine: asyncio.Task[None] | None = None
        self._recorders: list[MediaFileRecorder] = []

    @classmethod
    async def join(
        cls,
        server_url: str,
        join_token: str,
        **options: Any,
    ) -> ConsultationSession:
        """Connect to ``server_url``'s signalling socket with ``join_token`` and start.

        Example::

            session = await ConsultationSession.join("https://telemed.example.org", ticket.token,
                                                     media=open_devices())
        """
        session = cls(signalling_url(server_url), join_token, **options)
        await session.start()
        return session

    async def start(self) -> Welcome:
        """Connect and start following the consultation (raises ``JoinRefused``)."""
        welcome = await self.client.connect()
        self.call = Call(
            participant_id=welcome.participant_id,
            signalling=self.client,
            ice=welcome.ice,
            local_media=self._media,
            recovery=self._recovery,
            on_event=self._on_call_event,
        )
        await self._on_welcome(welcome)
        self._engine = asyncio.create_task(self._follow(), name="consultation-session")
        return welcome

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- state ---------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """The current state (a snapshot)."""
        return self._state

    async def wait_until(
        self, predicate: Callable[[SessionState], bool], timeout: float = 30.0
    ) -> SessionState:
        """Wait until ``predicate(state)`` holds; TimeoutError names the state it was stuck in.

        Example::

            await session.wait_until(lambda s: s.status == "admitted")
        """
        async with asyncio.timeout(timeout):
            while not predicate(self._state):
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    # Media states change inside the call; look again now and then.
                    await asyncio.wait_for(changed.wait(), 0.5)
        return self._state

    async def wait_admitted(self, timeout: float = 60.0) -> SessionState:
        """Wait until the host admits us (raises if we are denied or the consultation ends)."""
        state = await self.wait_until(
            lambda s: s.status in ("admitted", "denied", "ended", "closed"), timeout
        )
        if state.status != "admitted":
            raise SignallingError(f'Not admitted: the session is "{state.status}"', code=state.status)
        return state

    def _update(self, **changes: Any) -> None:
        media: dict[str, str] = {}
        if self.call is not None:
            for pid in self.call.participants:
                with contextlib.suppress(UnknownParticipant):
                    media[pid] = self.call.state(pid)
        self._state = replace(
            self._state,
            others=tuple(self._others.values()),
            media=media,
            reconnects=self.client.reconnects,
            **changes,
        )
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self._on_change is not None:
            try:
                self._on_change(self._state)
            except Exception:
                log.exception("on_change callback failed")

    def _on_call_event(self, event: CallEvent) -> None:
        self._update()

    # --- following the server ----------------------------------------------------------

    async def _follow(self) -> None:
        async for event in self.client:
            try:
                await self._handle(event)
            except CallError as exc:
                log.warning("call refused a signalling message: %s", exc.code)
            except Exception:
                log.exception("handling %s failed", event.type)
        await self._hang_up_all()
        if self._state.status not in ("ended", "denied"):
            self._update(status="closed")

    async def _handle(self, event: ServerEvent) -> None:
        kind = event.type
        if kind in ("offer", "answer", "ice") and event.sender and self.call is not None:
            payload = dict(event.data)
            await self.call.handle_remote(event.sender, kind, payload)
        elif kind == "ice_servers" and event.ice is not None and self.call is not None:
            # Fresh TURN credentials: live peer connections keep their allocations, and
            # every new one (recovery, restart, someone admitted later) uses these.
            self.call.update_ice(event.ice)
        elif kind == "admitted":
            for participant in event.participants:
                self._others[participant.id] = participant
            self._update(status="admitted")
            await self._connect_admitted()
        elif kind.startswith("participant.") and event.participant is not None:
            await self._on_participant(kind, event.participant, event.reason)
        elif kind in ("returned", "suspended"):
            await self._hang_up_all()
            self._update(status="waiting" if kind == "returned" else "suspended", reason=event.reason)
        elif kind == "denied":
            await self._hang_up_all()
            self._update(status="denied", reason=event.reason)
        elif kind == "consultation.live":
            self._update(consultation_state="live")
        elif kind == "consultation.ended":
            await self._hang_up_all()
            self._update(status="ended", consultation_state="ended", reason=event.reason)
        elif kind == "reconnecting":
            self._update(status="reconnecting")
        elif kind == "reconnected" and event.welcome is not None:
            await self._on_welcome(event.welcome)
        elif kind == "resync":
            # Messages between server nodes were lost: the server's view replaces ours.
            await self._reconcile(
                str(event.data.get("status", "waiting")),
                str(event.data.get("consultation_state", self._state.consultation_state)),
                event.participants,
            )

    async def _on_welcome(self, welcome: Welcome) -> None:
        assert self.call is not None  # noqa: S101 - created before the first welcome
        self.call.update_ice(welcome.ice)
        self._update(participant_id=welcome.participant_id, role=welcome.role)
        admitted = await self._reconcile(welcome.status, welcome.consultation_state, welcome.participants)
        if admitted and welcome.resumed:
            # The media path may have survived the socket; renegotiate the ones that did not.
            for pid in list(self.call.participants):
                if self._renegotiate_on_resume == "all" or self.call.state(pid) != "connected":
                    with contextlib.suppress(CallError):
                        await self.call.restart_peer(pid)

    async def _reconcile(
        self, server_status: str, consultation_state: str, participants: tuple[Participant, ...]
    ) -> bool:
        """Take the server's view (a welcome or a resync): our status, who is there; fix the media.

        Returns True when we are admitted.
        """
        assert self.call is not None  # noqa: S101 - created before the first welcome
        self._others = {p.id: p for p in participants}
        status: Status = "admitted" if server_status == "admitted" else "waiting"
        if server_status == "suspended":
            status = "suspended"
        self._update(status=status, consultation_state=consultation_state)
        if status != "admitted":
            await self._hang_up_all()
            return False
        for pid in list(self.call.participants):
            if pid not in self._others or self._others[pid].status != "admitted":
                await self._hang_up(pid)
        await self._connect_admitted()
        return True

    async def _on_participant(self, kind: str, participant: Participant, reason: str | None) -> None:
        if kind == "participant.left" or kind == "participant.denied":
            self._others.pop(participant.id, None)
        else:
            self._others[participant.id] = participant
        self._update()
        if self._state.status != "admitted":
            return
        if participant.status == "admitted" and kind != "participant.left":
            await self._connect(participant.id)
        else:
            await self._hang_up(participant.id)

    async def _connect_admitted(self) -> None:
        for participant in list(self._others.values()):
            if participant.status == "admitted":
                await self._connect(participant.id)

    async def _connect(self, participant_id: str) -> None:
        if self.call is None:
            return
        try:
            await self.call.connect_to(participant_id)
        except CallError as exc:
            log.warning("cannot connect media to %s: %s", participant_id, exc.code)
        self._update()

    async def _hang_up(self, participant_id: str) -> None:
        if self.call is not None and participant_id in self.call.participants:
            with contextlib.suppress(UnknownParticipant):
                await self.call.remove_participant(participant_id)
            self._update()

    async def _hang_up_all(self) -> None:
        if self.call is not None:
            for pid in list(self.call.participants):
                await self._hang_up(pid)

    # --- media -----------------------------------------------------------------------------

    async def stats(self) -> dict[str, CallStats]:
        """RTT, jitter, loss and bitrates per participant (rates since the previous call)."""
        if self.call is None:
            return {}
        return await self.call.stats()

    async def record(self, participant_id: str, path: str | Path) -> MediaFileRecorder:
        """Record what a participant sends (audio and video) into ``path`` until :meth:`close`.

        Example::

            await session.record("room:room-01", "consultation.mkv")
        """
        if self.call is None:
            raise SignallingError("Not connected", code="not_connected")
        recorder = await self.call.record(participant_id, path)
        self._recorders.append(recorder)
        return recorder

    # --- host controls ---------------------------------------------------------------------

    async def admit(self, participant_id: str) -> None:
        """Host: admit a waiting participant."""
        await self.client.admit(participant_id)

    async def deny(self, participant_id: str, reason: str | None = None) -> None:
        """Host: refuse a waiting participant."""
        await self.client.deny(participant_id, reason)

    async def return_to_waiting(self, participant_id: str, reason: str | None = None) -> None:
        """Host: send an admitted participant back to the waiting room."""
        await self.client.return_to_waiting(participant_id, reason)

    async def start_consultation(self) -> None:
        """Host: go live."""
        await self.client.start()

    async def end(self, reason: str | None = None) -> None:
        """Host: end the consultation for everyone."""
        await self.client.end(reason)

    # --- leaving ---------------------------------------------------------------------------

    async def leave(self) -> None:
        """Leave now and release everything."""
        await self.client.leave()
        await self.close()

    async def close(self) -> None:
        """Hang up, stop recordings, close the socket (the media sources are the caller's)."""
        for recorder in self._recorders:
            with contextlib.suppress(Exception):
                await recorder.stop()
        self._recorders.clear()
        await self.client.close()
        if self._engine is not None:
            self._engine.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._engine
            self._engine = None
        if self.call is not None:
            await self.call.close()
        if self._state.status not in ("ended", "denied"):
            self._update(status="closed")
