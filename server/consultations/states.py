"""The consultation state machine: one table of which action is allowed from which state.

::

    scheduled ──open──▶ open ──start──▶ live ──end──▶ ended
        │                 │  └───────────end──────────▶ ended
        ├──cancel─────────┴──▶ cancelled
        └──mark no-show───┴──▶ no_show

``open`` happens when the host's socket is authenticated, ``live`` only on the host's
explicit start once identity is confirmed and consent recorded. Actions that do not move
the state (confirming identity, inviting, joining) are in the same table, so every
"may I do this now?" question has one answer, and every refusal names the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from server.consultations.errors import ConsentNotRecorded, IdentityNotConfirmed
from server.errors import InvalidState


class ConsultationState(StrEnum):
    """Where a consultation is in its life."""

    SCHEDULED = "scheduled"
    OPEN = "open"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


class Action(StrEnum):
    """Something a caller may ask of a consultation; the value reads well in an error message."""

    OPEN = "open"
    START = "start"
    END = "end"
    CANCEL = "cancel"
    NO_SHOW = "mark no-show"
    CONFIRM_IDENTITY = "confirm identity"
    RECORD_CONSENT = "record consent"
    INVITE = "invite"
    JOIN = "join"


S = ConsultationState


@dataclass(frozen=True)
class Rule:
    """The states an action is allowed from, and the state it leads to (None: no change)."""

    allowed_from: frozenset[ConsultationState]
    leads_to: ConsultationState | None = None


RULES: dict[Action, Rule] = {
    Action.OPEN: Rule(frozenset({S.SCHEDULED}), S.OPEN),
    Action.START: Rule(frozenset({S.OPEN}), S.LIVE),
    Action.END: Rule(frozenset({S.OPEN, S.LIVE}), S.ENDED),
    Action.CANCEL: Rule(frozenset({S.SCHEDULED, S.OPEN}), S.CANCELLED),
    Action.NO_SHOW: Rule(frozenset({S.SCHEDULED, S.OPEN}), S.NO_SHOW),
    Action.CONFIRM_IDENTITY: Rule(frozenset({S.SCHEDULED, S.OPEN})),
    Action.RECORD_CONSENT: Rule(frozenset({S.SCHEDULED, S.OPEN})),
    Action.INVITE: Rule(frozenset({S.SCHEDULED, S.OPEN, S.LIVE})),
    Action.JOIN: Rule(frozenset({S.SCHEDULED, S.OPEN, S.LIVE})),
}

# States from which nothing can happen any more.
FINAL_STATES = frozenset({S.ENDED, S.CANCELLED, S.NO_SHOW})
# States in which participants may hold join tokens and connect.
JOINABLE_STATES = RULES[Action.JOIN].allowed_from


def check(state: ConsultationState, action: Action) -> ConsultationState:
    """Return the state ``action`` leads to from ``state`` (the same state if none); refuse otherwise."""
    rule = RULES[action]
    if state not in rule.allowed_from:
        raise InvalidState(f'Cannot {action.value} in state "{state.value}"', state=state.value)
    return rule.leads_to or state


def check_ready_to_start(
    *, state: ConsultationState, identity_confirmed: bool, consent_recorded: bool
) -> ConsultationState:
    """Return the live state, refusing until the host has confirmed identity and recorded consent."""
    live = check(state, Action.START)
    if not identity_confirmed:
        raise IdentityNotConfirmed(
            f'Cannot start in state "{state.value}": the patient\'s identity has not been confirmed',
            state=state.value,
        )
    if not consent_recorded:
        raise ConsentNotRecorded(
            f'Cannot start in state "{state.value}": the patient\'s consent has not been recorded',
            state=state.value,
        )
    return live
