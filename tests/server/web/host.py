"""The clinician's side of a browser test: clinic_client's ConsultationSession on the live server.

The session's Call sends marked synthetic video and a tone; it connects media to whoever
the host admits and hangs up with whoever leaves, exactly as on a clinician's laptop.
:class:`Host` adds what a test needs to read: every state the session went through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from clinic_client.call import Call, synthetic_media
from clinic_client.session import ConsultationSession, SessionState
from clinic_client.signalling import Participant

HOST_TAG = 7
TIMEOUT = 20.0


class Host:
    """A hosting session and the history of its states."""

    def __init__(self, session: ConsultationSession, history: list[SessionState]) -> None:
        self.session = session
        self.history = history

    @property
    def participant_id(self) -> str:
        pid = self.session.state.participant_id
        assert pid is not None
        return pid

    @property
    def call(self) -> Call:
        assert self.session.call is not None
        return self.session.call

    def other(self, participant_id: str, state: SessionState | None = None) -> Participant | None:
        """What the host knows about a participant now (or in ``state``)."""
        state = state or self.session.state
        return next((p for p in state.others if p.id == participant_id), None)

    async def sees(
        self, participant_id: str, check: Callable[[Participant], bool] = lambda p: True
    ) -> Participant:
        """Wait until the host knows the participant and ``check`` holds for them."""
        await self.session.wait_until(
            lambda s: (p := self.other(participant_id, s)) is not None and check(p), TIMEOUT
        )
        found = self.other(participant_id)
        assert found is not None
        return found

    async def loses(self, participant_id: str) -> None:
        """Wait until the participant has left the host's roster."""
        await self.session.wait_until(lambda s: self.other(participant_id, s) is None, TIMEOUT)

    def went_through(self, participant_id: str, *checks: Callable[[Participant], bool]) -> bool:
        """True if the host saw the participant pass each check, in this order."""
        remaining = list(checks)
        for state in self.history:
            p = self.other(participant_id, state)
            if remaining and p is not None and remaining[0](p):
                remaining.pop(0)
        return not remaining


@asynccontextmanager
async def hosting(ws_url: str, join_token: str) -> AsyncIterator[Host]:
    """The host joined to the live server with synthetic media, for the duration of the block."""
    media = synthetic_media(source_tag=HOST_TAG)
    history: list[SessionState] = []
    session = ConsultationSession(ws_url, join_token, media=media, on_change=history.append)
    await session.start()
    try:
        yield Host(session, history)
    finally:
        await session.close()
        media.stop()
