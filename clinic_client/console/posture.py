"""This laptop's posture as the console shows it, kept current from every attestation.

:class:`ObservedPosture` wraps the device's :class:`~clinic_client.posture.PostureAgent`:
whoever attests through it — the device check, the background re-attestation, the
signalling client's renewal during a call, the records client before a grant — updates the
one :class:`PostureView` the page sees, and listeners hear of each new one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from clinic_client.posture import (
    FailedRule,
    PostureAgent,
    PostureCheckFailed,
    PostureError,
    PostureResult,
    ServerUnreachable,
)
from device_policy.policy import PolicyResult, RuleResult
from device_policy.policy.model import Severity

log = logging.getLogger("telemed.console.posture")

Listener = Callable[["PostureView"], Awaitable[None] | None]


@dataclass(frozen=True)
class PostureView:
    """One device check's outcome: the ``Posture`` object of docs/console.md (no token in it)."""

    compliant: bool
    checked_at: datetime
    expires_at: datetime | None
    policy_version: str | None
    rules: tuple[dict[str, Any], ...]
    error: dict[str, str] | None = None

    def compliant_at(self, now: datetime) -> bool:
        """True while the check passed and its token has not lapsed."""
        return self.compliant and self.expires_at is not None and self.expires_at > now

    def to_wire(self, now: datetime | None = None) -> dict[str, Any]:
        """The JSON the page gets; a lapsed pass shows as not compliant, ``posture_expired``."""
        now = now or datetime.now(UTC)
        error = self.error
        compliant = self.compliant_at(now)
        if self.compliant and not compliant and error is None:
            error = {"code": "posture_expired", "detail": "The last device check has expired."}
        return {
            "compliant": compliant,
            "checked_at": self.checked_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "policy_version": self.policy_version,
            "rules": [dict(rule) for rule in self.rules],
            "error": error,
        }


def _outcome(result: RuleResult) -> str:
    if result.outcome.value == "pass":
        return "pass"
    return "warn" if result.severity is Severity.WARN else result.outcome.value


def _rules(report: PolicyResult) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "id": r.rule_id,
            "title": r.title,
            "outcome": _outcome(r),
            "actual": r.actual,
            "remediation": None if r.outcome.value == "pass" else r.remediation,
        }
        for r in report.results
    )


def _failed_rules(rules: tuple[FailedRule, ...], warn: bool) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "id": r.id,
            "title": r.title,
            "outcome": "warn" if warn else r.outcome,
            "actual": r.actual,
            "remediation": r.remediation,
        }
        for r in rules
    )


def view_of_result(result: PostureResult, now: datetime) -> PostureView:
    """A passed check."""
    return PostureView(
        compliant=True,
        checked_at=now,
        expires_at=result.expires_at,
        policy_version=result.policy_version,
        rules=_rules(result.report),
    )


def view_of_error(error: PostureError, now: datetime) -> PostureView:
    """A failed check: the rules that failed (all rules when the server sent its report), or why not."""
    if isinstance(error, PostureCheckFailed):
        if error.report is not None:
            rules, version = _rules(error.report), error.report.policy_version
        else:
            rules = _failed_rules(error.failed_rules, False) + _failed_rules(error.warnings, True)
            version = None
        return PostureView(
            compliant=False,
            checked_at=now,
            expires_at=None,
            policy_version=version,
            rules=rules,
            error={"code": error.code, "detail": "This laptop does not meet the device policy."},
        )
    return PostureView(
        compliant=False,
        checked_at=now,
        expires_at=None,
        policy_version=None,
        rules=(),
        error={"code": error.code, "detail": _refusal_words(error.code)},
    )


_WORDS = {
    "unknown_device": "This laptop is not enrolled with the telemed server. Ask an administrator.",
    "device_revoked": "This laptop's enrolment has been revoked. Ask an administrator.",
    "simulated_source_refused": "The server does not accept simulated device checks.",
    "bad_signature": "The server did not accept this laptop's device key. Ask an administrator.",
}


def _refusal_words(code: str) -> str:
    return _WORDS.get(code, "The server refused this laptop's device check. Try again.")


class ObservedPosture:
    """A :class:`PostureAgent` that updates the console's :class:`PostureView` on every attestation.

    It satisfies the posture protocols of ``clinic_client.signalling`` and
    ``clinic_client.records``, so the signalling and records clients attest through it.
    """

    def __init__(self, agent: PostureAgent) -> None:
        self.agent = agent
        self.view: PostureView | None = None
        self._listeners: list[Listener] = []

    @property
    def current(self) -> PostureResult | None:
        """The latest posture token, while the latest check passed (else None)."""
        if self.view is None or not self.view.compliant:
            return None
        return self.agent.current

    def compliant_now(self) -> bool:
        """True while the latest check passed and has not lapsed."""
        return self.view is not None and self.view.compliant_at(datetime.now(UTC))

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear of every new view; returns the function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    async def attest(self) -> PostureResult:
        """Attest now; the view follows the outcome (raises what the agent raises)."""
        now = datetime.now(UTC)
        try:
            result = await self.agent.attest()
        except ServerUnreachable as exc:
            log.warning("device check: server unreachable (%s)", exc.code)
            if self.view is not None:
                words = "The telemed server could not be reached for the device check."
                await self._publish(replace(self.view, error={"code": "server_unreachable", "detail": words}))
            raise
        except PostureError as exc:
            log.warning("device check refused: %s", exc.code)
            await self._publish(view_of_error(exc, now))
            raise
        await self._publish(view_of_result(result, now))
        return result

    def proof(self, method: str, url: str, *, nonce: str | None = None, token: Any = None) -> str:
        """A request proof bound to the posture token (see :meth:`PostureAgent.proof`)."""
        return self.agent.proof(method, url, nonce=nonce, token=token)

    def request_headers(self, method: str, url: str) -> dict[str, str]:
        """Posture token and a fresh proof (see :meth:`PostureAgent.request_headers`)."""
        return self.agent.request_headers(method, url)

    async def _publish(self, view: PostureView) -> None:
        self.view = view
        for listener in list(self._listeners):
            try:
                outcome = listener(view)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("a posture listener failed")
