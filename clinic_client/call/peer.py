"""One RTCPeerConnection to one remote participant, with our ICE policy applied.

A :class:`CallPeer` lives for one ``connection_id``. aiortc has no ICE restart, so
recovering from a network drop means closing the peer and negotiating a new one (see
:class:`clinic_client.call.Call`); a peer is never reused after it failed.

Local media is attached when the first description is made, not before: for an offer in
a fixed order (audio, video, both kinds always), for an answer *after* the remote offer
is applied, onto the transceivers the offer created — so any m-line order is answered.
(aiortc 1.16 with max-bundle gathers no candidate for an answer whose transceivers were
added in another order than the offer's m-lines, e.g. a browser offering video first.)

aiortc gathers every candidate inside ``setLocalDescription``, so our offers and answers
carry all candidates (and ``a=end-of-candidates``) and we never trickle. Candidates
trickled by a browser are accepted with :meth:`CallPeer.add_remote_candidate`, buffered
until the remote description is known.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal

from aiortc import RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription
from aiortc.stats import RTCStatsReport

from clinic_client.call.errors import (
    CallError,
    InvalidCallState,
    NoIceCandidates,
    RelayPolicyViolation,
    RelayUnavailable,
)
from clinic_client.call.ice import (
    IceConfig,
    SelectedPair,
    keep_only_relay_candidates,
    sdp_candidate_types,
    selected_pair,
)
from clinic_client.call.jitter import use_audio_jitter_buffer

log = logging.getLogger(__name__)

PeerState = Literal["new", "connecting", "connected", "failed", "closed"]


class CallPeer:
    """Media with one remote participant over one peer connection."""

    def __init__(
        self,
        *,
        remote_id: str,
        connection_id: str,
        ice: IceConfig,
        audio: MediaStreamTrack | None,
        video: MediaStreamTrack | None,
        on_track: Callable[[CallPeer, MediaStreamTrack], None],
        on_state_change: Callable[[CallPeer], None],
    ) -> None:
        self.remote_id = remote_id
        self.connection_id = connection_id
        self.ice = ice
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self.failure_reason: str | None = None
        # The error behind ``failure_reason`` when there is one to show (``relay_unavailable``…).
        self.failure_error: CallError | None = None
        self._closed_locally = False
        self._policy_close: asyncio.Future[None] | None = None
        self._local_tracks = [t for t in (audio, video) if t is not None]
        self._audio = audio
        self._video = video
        self._media_attached = False
        self._pending_candidates: list[RTCIceCandidate | None] = []
        self._on_track = on_track
        self._on_state_change = on_state_change
        self._pc = RTCPeerConnection(configuration=ice.rtc_configuration())
        self._pc.on("track", self._handle_track)
        self._pc.on("connectionstatechange", self._handle_state_change)

    def __repr__(self) -> str:
        return f"CallPeer(remote={self.remote_id!r}, connection={self.connection_id!r}, state={self.state!r})"

    # --- state ---------------------------------------------------------------------------

    @property
    def pc(self) -> RTCPeerConnection:
        """The underlying aiortc peer connection (for diagnostics and tests)."""
        return self._pc

    @property
    def state(self) -> PeerState:
        """new / connecting / connected / failed / closed (failed includes policy refusals)."""
        if self.failure_reason is not None:
            return "failed"
        state = self._pc.connectionState
        if state in ("new", "connecting", "connected", "failed", "closed"):
            return state  # type: ignore[return-value]
        return "connecting"

    @property
    def closed_locally(self) -> bool:
        """True if we closed this peer (as opposed to the remote end or the network)."""
        return self._closed_locally

    @property
    def signaling_state(self) -> str:
        """The JSEP signalling state (stable, have-local-offer, ...)."""
        return self._pc.signalingState

    def fail(self, reason: str) -> None:
        """Mark the peer failed for a reason of our own (timeout, policy, stall)."""
        if self.failure_reason is None:
            self.failure_reason = reason
            self._on_state_change(self)

    # --- negotiation ---------------------------------------------------------------------

    async def create_offer(self) -> str:
        """Create and apply a local offer; returns the SDP to send."""
        self._assert_open("create an offer")
        if not self._media_attached:
            # Fixed m-line order (audio, video) and always both kinds, so either side can
            # receive even when it has nothing to send of that kind.
            for kind, track in (("audio", self._audio), ("video", self._video)):
                if track is not None:
                    self._pc.addTrack(track)
                else:
                    self._pc.addTransceiver(kind, direction="recvonly")
            self._media_attached = True
            use_audio_jitter_buffer(self._pc)
        await self._pc.setLocalDescription(await self._pc.createOffer())
        return self._outgoing_sdp()

    async def accept_offer(self, sdp: str) -> str:
        """Apply a remote offer and return our answer's SDP."""
        self._assert_open("accept an offer")
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if not self._media_attached:
            self._attach_to_offer()
        use_audio_jitter_buffer(self._pc)  # before any audio arrives (see jitter.py)
        await self._flush_candidates()
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        return self._outgoing_sdp()

    def _attach_to_offer(self) -> None:
        # The offer made one transceiver per m-line, in its order; addTrack reuses the first
        # of the track's kind that sends nothing yet. A kind the offer lacks is not sent
        # (an answer cannot add m-lines); a kind we lack stays receive-only.
        for track in (self._audio, self._video):
            if track is None:
                continue
            if any(t.kind == track.kind and t.sender.track is None for t in self._pc.getTransceivers()):
                self._pc.addTrack(track)
        self._media_attached = True

    async def accept_answer(self, sdp: str) -> None:
        """Apply the remote answer to our pending offer."""
        self._assert_open("accept an answer")
        if self._pc.signalingState != "have-local-offer":
            raise InvalidCallState(f'Cannot accept an answer in signaling state "{self._pc.signalingState}"')
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        await self._flush_candidates()

    async def add_remote_candidate(self, candidate: RTCIceCandidate | None) -> None:
        """Add a trickled remote candidate (None = end-of-candidates)."""
        if self.state == "closed":
            return
        if self._pc.remoteDescription is None:
            self._pending_candidates.append(candidate)
            return
        await self._pc.addIceCandidate(candidate)

    async def _flush_candidates(self) -> None:
        pending, self._pending_candidates = self._pending_candidates, []
        for candidate in pending:
            await self._pc.addIceCandidate(candidate)

    def _outgoing_sdp(self) -> str:
        description = self._pc.localDescription
        sdp = description.sdp
        if self.ice.policy == "relay":
            sdp, removed = keep_only_relay_candidates(sdp)
            if removed:
                # The ICE agent should not have gathered these; never send them.
                log.warning("removed %d non-relay candidates for peer %s", removed, self.remote_id)
        if not sdp_candidate_types(sdp):
            error: NoIceCandidates
            if self.ice.policy == "relay":
                error = RelayUnavailable(
                    "No relay candidate gathered under the relay-only policy "
                    "(TURN unreachable or credentials refused)"
                )
            else:
                error = NoIceCandidates('No ICE candidate gathered under policy "all"')
            if self.failure_reason is None:
                self.failure_error = error
            self.fail(error.code)
            raise error
        return sdp

    def _assert_open(self, action: str) -> None:
        if self._closed_locally or self._pc.connectionState == "closed":
            raise InvalidCallState(f'Cannot {action} for peer in state "closed"')
        if self.failure_reason is not None:
            raise InvalidCallState(f'Cannot {action} for peer in state "failed"')

    # --- events --------------------------------------------------------------------------

    def _handle_track(self, track: MediaStreamTrack) -> None:
        self._on_track(self, track)

    def _handle_state_change(self) -> None:
        if self._pc.connectionState == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
            self._check_relay_policy()
        self._on_state_change(self)

    def _check_relay_policy(self) -> None:
        if self.ice.policy != "relay":
            return
        pair = self.selected_pair()
        if pair is not None and pair.local_type == "relay":
            return
        error = RelayPolicyViolation(
            "Connection selected a non-relay local candidate under the relay-only policy"
        )
        log.error("%s (peer %s, connection %s)", error, self.remote_id, self.connection_id)
        self.failure_reason = error.code
        # Cut the media path right away; the state callback reports the failure.
        self._policy_close = asyncio.ensure_future(self._pc.close())

    # --- inspection ----------------------------------------------------------------------

    def selected_pair(self) -> SelectedPair | None:
        """The candidate pair ICE nominated, once connected."""
        return selected_pair(self._pc)

    def local_candidate_types(self) -> list[str]:
        """Types of the candidates in our current local description (what we sent)."""
        description = self._pc.localDescription
        if description is None:
            return []
        sdp = description.sdp
        if self.ice.policy == "relay":
            sdp, _ = keep_only_relay_candidates(sdp)
        return sdp_candidate_types(sdp)

    def clock_rates(self) -> dict[str, int]:
        """RTP clock rate of the negotiated (first) codec per media kind."""
        description = self._pc.remoteDescription
        if description is None:
            return {}
        rates: dict[str, int] = {}
        for media in SessionDescription.parse(description.sdp).media:
            if media.kind in ("audio", "video") and media.rtp.codecs:
                rates.setdefault(media.kind, media.rtp.codecs[0].clockRate)
        return rates

    async def get_stats(self) -> RTCStatsReport:
        """aiortc's stats report for this peer connection."""
        return await self._pc.getStats()

    # --- teardown ------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the peer connection and stop the tracks it was given."""
        self._closed_locally = True
        await self._pc.close()
        for track in self._local_tracks:
            track.stop()
