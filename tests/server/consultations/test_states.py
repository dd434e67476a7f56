"""The state machine alone: every (state, action) pair, legal or not, against a table written out here."""

from __future__ import annotations

import pytest

from server.consultations.errors import ConsentNotRecorded, IdentityNotConfirmed
from server.consultations.states import Action, ConsultationState, check, check_ready_to_start
from server.errors import InvalidState

S = ConsultationState
# Written out by hand from the design, not derived from the code under test.
LEGAL: dict[tuple[ConsultationState, Action], ConsultationState] = {
    (S.SCHEDULED, Action.OPEN): S.OPEN,
    (S.OPEN, Action.START): S.LIVE,
    (S.OPEN, Action.END): S.ENDED,
    (S.LIVE, Action.END): S.ENDED,
    (S.SCHEDULED, Action.CANCEL): S.CANCELLED,
    (S.OPEN, Action.CANCEL): S.CANCELLED,
    (S.SCHEDULED, Action.NO_SHOW): S.NO_SHOW,
    (S.OPEN, Action.NO_SHOW): S.NO_SHOW,
    (S.SCHEDULED, Action.CONFIRM_IDENTITY): S.SCHEDULED,
    (S.OPEN, Action.CONFIRM_IDENTITY): S.OPEN,
    (S.SCHEDULED, Action.RECORD_CONSENT): S.SCHEDULED,
    (S.OPEN, Action.RECORD_CONSENT): S.OPEN,
    (S.SCHEDULED, Action.INVITE): S.SCHEDULED,
    (S.OPEN, Action.INVITE): S.OPEN,
    (S.LIVE, Action.INVITE): S.LIVE,
    (S.SCHEDULED, Action.JOIN): S.SCHEDULED,
    (S.OPEN, Action.JOIN): S.OPEN,
    (S.LIVE, Action.JOIN): S.LIVE,
}
PAIRS = [(state, action) for state in ConsultationState for action in Action]


@pytest.mark.parametrize(("state", "action"), [p for p in PAIRS if p in LEGAL])
def test_legal_actions_lead_where_the_design_says(state: ConsultationState, action: Action) -> None:
    assert check(state, action) is LEGAL[(state, action)]


@pytest.mark.parametrize(("state", "action"), [p for p in PAIRS if p not in LEGAL])
def test_illegal_actions_are_refused_naming_the_state(state: ConsultationState, action: Action) -> None:
    with pytest.raises(InvalidState) as refused:
        check(state, action)
    assert refused.value.state == state.value
    assert str(refused.value) == f'Cannot {action.value} in state "{state.value}"'
    assert refused.value.code == "invalid_state" and refused.value.status == 409


def test_final_states_allow_nothing() -> None:
    for state in (S.ENDED, S.CANCELLED, S.NO_SHOW):
        assert not [a for a in Action if (state, a) in LEGAL]
        for action in Action:
            with pytest.raises(InvalidState):
                check(state, action)


def test_going_live_needs_identity_then_consent() -> None:
    with pytest.raises(IdentityNotConfirmed) as no_identity:
        check_ready_to_start(state=S.OPEN, identity_confirmed=False, consent_recorded=True)
    assert no_identity.value.code == "identity_not_confirmed" and no_identity.value.state == "open"
    with pytest.raises(ConsentNotRecorded) as no_consent:
        check_ready_to_start(state=S.OPEN, identity_confirmed=True, consent_recorded=False)
    assert no_consent.value.code == "consent_not_recorded" and 'state "open"' in str(no_consent.value)
    assert check_ready_to_start(state=S.OPEN, identity_confirmed=True, consent_recorded=True) is S.LIVE


def test_going_live_from_the_wrong_state_names_that_state_before_anything_else() -> None:
    with pytest.raises(InvalidState) as refused:
        check_ready_to_start(state=S.SCHEDULED, identity_confirmed=False, consent_recorded=False)
    assert type(refused.value) is InvalidState
    assert str(refused.value) == 'Cannot start in state "scheduled"'
