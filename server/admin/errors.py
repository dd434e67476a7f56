"""Errors of the admin console, under the server's tree (``server.errors``)::

    TelemedError
    ├── AuthenticationRequired        401 authentication_required  -- sign in
    │   ├── SessionExpired            401 session_expired          -- idle or too old: sign in again
    │   ├── SecondFactorRequired      401 second_factor_required   -- finish the second step first
    │   ├── InvalidCode               401 invalid_code             -- wrong code (counts towards lockout)
    │   └── CodeReused                401 code_reused              -- wait for the next code
    ├── AccessDenied                  403 access_denied
    │   └── CsrfRefused               403 csrf_refused             -- reload the console from its own address
    ├── Conflict                      409 conflict
    │   ├── OwnAccount                409 own_account              -- ask another admin
    │   └── AlreadySignedOff          409 already_signed_off       -- reload: someone signed it off
    └── ValidationFailed              422 validation_error
        ├── UnknownPatient            422 unknown_patient          -- check the prison number
        ├── UnknownUser               422 unknown_user             -- check the username
        ├── EnrolmentTextInvalid      422 enrolment_text_invalid   -- paste the whole line
        └── ExportTooLarge            422 export_too_large         -- narrow the search

Messages never carry a code, a secret, a session token or patient data.
"""

from __future__ import annotations

from server.errors import AccessDenied, AuthenticationRequired, Conflict, ValidationFailed


class SessionExpired(AuthenticationRequired):
    code, title = "session_expired", "The console session has ended"


class SecondFactorRequired(AuthenticationRequired):
    code, title = "second_factor_required", "The second sign-in step is not done"


class InvalidCode(AuthenticationRequired):
    code, title = "invalid_code", "The code is not right"


class CodeReused(AuthenticationRequired):
    code, title = "code_reused", "This code has already been used"


class CsrfRefused(AccessDenied):
    code, title = "csrf_refused", "The request did not come from the console"


class OwnAccount(Conflict):
    code, title = "own_account", "Not allowed on your own account"


class AlreadySignedOff(Conflict):
    code, title = "already_signed_off", "Already signed off"


class UnknownPatient(ValidationFailed):
    code, title = "unknown_patient", "No such patient"


class UnknownUser(ValidationFailed):
    code, title = "unknown_user", "No such user"


class EnrolmentTextInvalid(ValidationFailed):
    code, title = "enrolment_text_invalid", "The enrolment text cannot be read"


class ExportTooLarge(ValidationFailed):
    code, title = "export_too_large", "Too many entries to export at once"
