"""ICE configuration and the relay-only policy, enforced in three places.

1. **Gathering** — aiortc 1.16 honours ``RTCConfiguration.iceTransportPolicy``: with
   ``RELAY`` its ICE agent (aioice) gathers no host or server-reflexive candidate at all,
   only the TURN allocation, and hides the related (real) address of the relay candidate.
   (An aiortc without that field refuses the keyword, so the policy cannot silently lapse.)
2. **Signalling** — before an offer/answer leaves this process every ``a=candidate`` line
   that is not ``typ relay`` is removed (:func:`keep_only_relay_candidates`), and if no relay
   candidate remains the negotiation stops with :class:`RelayUnavailable` instead of
   sending an SDP that could only lead to a direct path.
3. **Connection** — once ICE has nominated a pair, the local candidate must be a relay
   candidate (:func:`selected_pair`); otherwise the peer connection is closed and reported
   as :class:`RelayPolicyViolation`.

Remote candidates are accepted whatever their type: with a relay-only local side every
packet still leaves through our TURN server, whichever remote address it goes to.

An empty server list really means "no STUN/TURN": aiortc would otherwise fall back to a
public Google STUN server, which a prison endpoint must never contact.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
)
from aiortc.sdp import candidate_from_sdp

from clinic_client.call.errors import InvalidSignal

log = logging.getLogger(__name__)

IcePolicy = Literal["relay", "all"]


@dataclass(frozen=True)
class IceServer:
    """One STUN/TURN server entry, as the server hands it out (an ``RTCIceServer``)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("An ICE server needs at least one url")
        for url in self.urls:
            if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise ValueError("ICE server urls must be stun:, stuns:, turn: or turns:")


@dataclass(frozen=True)
class IceConfig:
    """ICE servers plus the transport policy ("relay" = TURN only, "all" = any path)."""

    servers: tuple[IceServer, ...] = ()
    policy: IcePolicy = "all"

    def __post_init__(self) -> None:
        if self.policy not in ("relay", "all"):
            raise ValueError('ICE policy must be "relay" or "all"')

    @classmethod
    def from_turn_credentials(cls, credentials: Mapping[str, Any], *, policy: IcePolicy) -> IceConfig:
        """Build from the server's TURN credential JSON: {urls, username, credential}."""
        urls = credentials.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
            raise ValueError("TURN credentials need a list of urls")
        username = credentials.get("username")
        credential = credentials.get("credential")
        if not isinstance(username, str) or not isinstance(credential, str):
            raise ValueError("TURN credentials need a username and a credential")
        server = IceServer(urls=tuple(urls), username=username, credential=credential)
        return cls(servers=(server,), policy=policy)

    @property
    def has_turn(self) -> bool:
        """True if at least one TURN url is configured."""
        return any(u.startswith(("turn:", "turns:")) for s in self.servers for u in s.urls)

    def rtc_configuration(self) -> RTCConfiguration:
        """The aiortc configuration: max-bundle (one transport, one TURN allocation)."""
        return RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
                for s in self.servers
            ],
            iceTransportPolicy=(
                RTCIceTransportPolicy.RELAY if self.policy == "relay" else RTCIceTransportPolicy.ALL
            ),
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )


def candidate_type(candidate_line: str) -> str | None:
    """The ``typ`` of an SDP candidate (``candidate:...`` or ``a=candidate:...``)."""
    parts = candidate_line.split()
    for i, word in enumerate(parts[:-1]):
        if word == "typ":
            return parts[i + 1]
    return None


def sdp_candidate_types(sdp: str) -> list[str]:
    """Types of all ``a=candidate`` lines in an SDP, in order."""
    types = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            types.append(candidate_type(line) or "unknown")
    return types


def keep_only_relay_candidates(sdp: str) -> tuple[str, int]:
    """Remove every non-relay ``a=candidate`` line; returns (sdp, number removed).

    Each media section's default address (``m=`` port and ``c=`` line), which aiortc takes
    from the first candidate, is pointed at the first remaining relay candidate, or at the
    RFC 8839 placeholder ``0.0.0.0:9`` when none is left, so no other address survives.
    """
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    removed = 0
    out: list[str] = list(sections[0])
    for section in sections[1:]:
        kept: list[str] = []
        relay: tuple[str, str] | None = None
        for line in section:
            if line.startswith("a=candidate:"):
                if candidate_type(line) != "relay":
                    removed += 1
                    continue
                parts = line.split()
                if relay is None and len(parts) > 5:
                    relay = (parts[4], parts[5])
            kept.append(line)
        address, port = relay or ("0.0.0.0", "9")  # noqa: S104 - SDP placeholder, not a bind
        family = "IP6" if ":" in address else "IP4"
        for i, line in enumerate(kept):
            if line.startswith("m="):
                words = line.split(" ")
                words[1] = port
                kept[i] = " ".join(words)
            elif line.startswith("c=IN "):
                kept[i] = f"c=IN {family} {address}"
        out += kept
    return "\r\n".join(out) + "\r\n", removed


@dataclass(frozen=True)
class SelectedPair:
    """The candidate pair ICE nominated: what the media path actually is."""

    local_type: str
    local_address: tuple[str, int]
    remote_type: str
    remote_address: tuple[str, int]
    protocol: str


def selected_pair(pc: RTCPeerConnection) -> SelectedPair | None:
    """The nominated candidate pair of the (bundled) transport, or None before connection.

    aiortc exposes no selected-pair API; this reads aioice's nominated pair, the only
    place the information exists (aioice 0.10-0.13).
    """
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        nominated: Mapping[int, Any] = getattr(connection, "_nominated", {})
        pair = nominated.get(1)
        if pair is None:
            continue
        local = pair.local_candidate
        remote = pair.remote_candidate
        return SelectedPair(
            local_type=str(local.type),
            local_address=(str(local.host), int(local.port)),
            remote_type=str(remote.type),
            remote_address=(str(remote.host), int(remote.port)),
            protocol=str(local.transport),
        )
    return None


def parse_remote_candidate(
    candidate: str, *, sdp_mid: str | None, sdp_mline_index: int | None
) -> RTCIceCandidate:
    """Turn a browser's trickled candidate string into an aiortc ``RTCIceCandidate``."""
    text = candidate.strip()
    if text.startswith("a="):
        text = text[2:]
    if not text.startswith("candidate:"):
        raise InvalidSignal('ICE candidate must start with "candidate:"')
    try:
        parsed = candidate_from_sdp(text[len("candidate:") :])
    except (AssertionError, ValueError, IndexError):
        # aiortc validates candidate syntax with assert statements.
        raise InvalidSignal("ICE candidate could not be parsed") from None
    parsed.sdpMid = sdp_mid
    parsed.sdpMLineIndex = sdp_mline_index
    return parsed


def describe_servers(servers: Sequence[IceServer]) -> list[str]:
    """Server urls for logs (never usernames or credentials)."""
    return [u for s in servers for u in s.urls]
