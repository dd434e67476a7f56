"""The agent's refusals, as RFC 9457 problem documents the page can show.

::

    ConsoleError (code, status, detail)
    ├── raised by the guard:   wrong_host 421, wrong_origin 403, no_session 401,
    │                          launch_code_used 403, launch_code_invalid 403
    ├── raised by the agent:   not_signed_in 401, not_a_clinician 403, device_not_compliant 403,
    │                          not_live 409, consultation_ended 410, server_unreachable 502/503
    └── passed through:        the server's own problem code and status (invalid_credentials…)

``detail`` is plain words fit to show a clinician: never a token, a proof or patient data.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ConsoleError(Exception):
    """A refusal with a stable ``code``, an HTTP ``status`` and words for people."""

    def __init__(
        self, status: int, code: str, detail: str, *, title: str | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or detail
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The problem document."""
        return {
            "type": f"urn:telemed:console:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
            **self.extra,
        }

    def response(self) -> JSONResponse:
        """The problem+json response (with ``Retry-After`` when the server gave one)."""
        headers = {}
        retry = self.extra.get("retry_after_s")
        if isinstance(retry, int):
            headers["Retry-After"] = str(retry)
        return JSONResponse(
            self.body(), status_code=self.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
        )


def unreachable(status: int = 503) -> ConsoleError:
    """The telemed server gave no answer (or none the agent understands)."""
    return ConsoleError(
        status,
        "server_unreachable",
        "The telemed server cannot be reached. Check the laptop's network connection and try again.",
    )


NOT_SIGNED_IN = "Sign in first."
NOT_COMPLIANT = "This laptop has not passed its device check, so it cannot be used for consultations."
