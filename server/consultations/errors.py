"""Errors of the consultations feature, placed in the server's error tree.

::

    InvalidState                         409 invalid_state
    ├── IdentityNotConfirmed             409 identity_not_confirmed
    ├── ConsentNotRecorded               409 consent_not_recorded
    ├── NotYetDue                        409 not_yet_due
    └── JoinWindowClosed                 409 join_window_closed
    AccessDenied                         403 access_denied
    └── InviteInvalid                    403 invite_invalid
        ├── InviteUsed                   410 invite_used
        └── InviteExpired                410 invite_expired

Messages name the state that refused and never carry a token or patient data.
"""

from __future__ import annotations

from server.errors import AccessDenied, InvalidState


class IdentityNotConfirmed(InvalidState):
    code, title = "identity_not_confirmed", "The patient's identity has not been confirmed"


class ConsentNotRecorded(InvalidState):
    code, title = "consent_not_recorded", "The patient's consent has not been recorded"


class NotYetDue(InvalidState):
    code, title = "not_yet_due", "The consultation's scheduled start has not been reached"


class JoinWindowClosed(InvalidState):
    code, title = "join_window_closed", "The consultation's joining window has closed"


class InviteInvalid(AccessDenied):
    code, title = "invite_invalid", "The invite is not valid"


class InviteUsed(InviteInvalid):
    code, status, title = "invite_used", 410, "The invite has already been used"


class InviteExpired(InviteInvalid):
    code, status, title = "invite_expired", 410, "The invite has expired"
