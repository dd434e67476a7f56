"""Errors raised by the call package: each has a stable ``code`` and an HTTP-ish ``status``.

Grouped by what the caller can do about it::

    CallError                      500 call_error
    ├── InvalidCallState           409 invalid_call_state      the call or peer is closed / busy
    ├── CallFull                   409 call_full               a mesh call has at most two peers
    ├── UnknownParticipant         404 unknown_participant     connect_to() first
    ├── InvalidSignal              400 invalid_signal          a malformed offer/answer/ice payload
    ├── NoIceCandidates            503 no_ice_candidates       no network path could be gathered
    │   └── RelayUnavailable       503 relay_unavailable       relay-only and TURN gave no relay
    ├── RecoveryExhausted          503 recovery_exhausted      bounded attempts to reconnect all failed
    └── RelayPolicyViolation       500 relay_policy_violation  a non-relay path was selected

Messages name the state that refused and never carry SDP, credentials or tokens.
"""

from __future__ import annotations

from typing import Any


class CallError(Exception):
    """Base of every error the call package raises."""

    code = "call_error"
    status = 500
    title = "Call error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class InvalidCallState(CallError):
    """The operation is not possible in the current state of the call or peer."""

    code, status, title = "invalid_call_state", 409, "Invalid call state"


class CallFull(CallError):
    """The call already has the maximum number of remote participants."""

    code, status, title = "call_full", 409, "Call is full"


class UnknownParticipant(CallError):
    """The participant is not part of this call."""

    code, status, title = "unknown_participant", 404, "Unknown participant"


class InvalidSignal(CallError):
    """A signalling message from a remote participant is malformed."""

    code, status, title = "invalid_signal", 400, "Invalid signalling message"


class NoIceCandidates(CallError):
    """ICE gathering produced no candidate, so no connection can be attempted."""

    code, status, title = "no_ice_candidates", 503, "No ICE candidates"


class RelayUnavailable(NoIceCandidates):
    """Relay-only ICE got no relay candidate: TURN unreachable or credentials refused."""

    code, status, title = "relay_unavailable", 503, "TURN relay unavailable"


class RecoveryExhausted(CallError):
    """Every attempt to (re)connect a participant failed; the call stops trying on its own."""

    code, status, title = "recovery_exhausted", 503, "Could not connect the participant"


class RelayPolicyViolation(CallError):
    """Under the relay-only policy a connection used a non-relay local candidate."""

    code, status, title = "relay_policy_violation", 500, "Relay policy violated"
